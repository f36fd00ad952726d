//! Pruning (upstream `schema/pruning/algorithm.go`): fields the structural schema does not specify are dropped,
//! except under `x-kubernetes-preserve-unknown-fields` (which `properties`/`additionalProperties` below switch back
//! off) and apiVersion/kind/metadata of the resource root and of embedded resources. The dropped paths
//! (`spec.foo`, `items[1].b`) feed `fieldValidation=Strict|Warn`: `unknown field "spec.foo"`.

use super::structural::Structural;
use serde_json::Value;

const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Prunes `obj` in place and returns the sorted paths of what it dropped. `is_resource_root` keeps the root's
/// apiVersion/kind/metadata (a CR); with `false`, unknown root metadata fields are dropped without being reported.
pub fn prune(obj: &mut Value, s: Option<&Structural>, is_resource_root: bool) -> Vec<String> {
    let mut pruned = Vec::new();
    if is_resource_root {
        let mut root = s.cloned().unwrap_or_default();
        root.extensions.embedded_resource = true;
        walk(obj, Some(&root), "", &mut pruned);
    } else {
        walk(obj, s, "", &mut pruned);
    }
    pruned.sort();
    pruned
}

fn append_key(path: &str, k: &str) -> String {
    if path.is_empty() { k.to_string() } else { format!("{path}.{k}") }
}

fn walk(x: &mut Value, s: Option<&Structural>, path: &str, pruned: &mut Vec<String>) {
    if let Some(s) = s.filter(|s| s.extensions.preserve_unknown_fields) {
        return skip(x, s, path, pruned);
    }
    match x {
        Value::Object(m) => {
            let Some(s) = s else {
                pruned.extend(m.keys().map(|k| append_key(path, k)));
                m.clear();
                return;
            };
            let ap = s.generic.additional_properties.as_ref();
            m.retain(|k, v| {
                if s.extensions.embedded_resource && META_FIELDS.contains(&k.as_str()) {
                    return true;
                }
                if let Some(p) = s.properties.get(k) {
                    walk(v, Some(p), &append_key(path, k), pruned);
                    true
                } else if let Some(ap) = ap {
                    walk(v, ap.structural.as_deref(), &append_key(path, k), pruned);
                    true
                } else {
                    if !META_FIELDS.contains(&k.as_str()) || !path.is_empty() {
                        pruned.push(append_key(path, k));
                    }
                    false
                }
            });
        }
        Value::Array(a) => {
            let items = s.and_then(|s| s.items.as_deref());
            for (i, v) in a.iter_mut().enumerate() {
                walk(v, items, &format!("{path}[{i}]"), pruned);
            }
        }
        _ => {}
    }
}

/// Under x-kubernetes-preserve-unknown-fields: unknown fields stay, specified ones are pruned by their schema.
fn skip(x: &mut Value, s: &Structural, path: &str, pruned: &mut Vec<String>) {
    match x {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if s.extensions.embedded_resource && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                if let Some(p) = s.properties.get(k) {
                    walk(v, Some(p), &append_key(path, k), pruned);
                } else if let Some(ap) = &s.generic.additional_properties {
                    walk(v, ap.structural.as_deref(), &append_key(path, k), pruned);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = s.items.as_deref() {
                for (i, v) in a.iter_mut().enumerate() {
                    skip(v, items, &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(props: Value) -> Value {
        json!({"type": "object", "properties": props})
    }

    /// upstream TestPrune, with schemas written as JSONSchemaProps.
    #[test]
    fn prune_table() {
        type Case<'a> = (&'a str, Value, bool, Option<Value>, Value, Vec<&'a str>);
        let cases: Vec<Case<'_>> = vec![
            ("empty", json!(null), false, None, json!(null), vec![]),
            ("scalar", json!(4), false, Some(json!({})), json!(4), vec![]),
            ("scalar array", json!([1, 2]), false, Some(json!({"items": {}})), json!([1, 2]), vec![]),
            (
                "object array",
                json!([{"a": 1}, {"b": 1}, {"a": 1, "b": 2, "c": 3}]),
                false,
                Some(json!({"items": {"properties": {"a": {}, "c": {}}}})),
                json!([{"a": 1}, {}, {"a": 1, "c": 3}]),
                vec!["[1].b", "[2].b"],
            ),
            (
                "object array with nil schema",
                json!([{"a": 1}, {"b": 1}, {"a": 1, "b": 2, "c": 3}]),
                false,
                None,
                json!([{}, {}, {}]),
                vec!["[0].a", "[1].b", "[2].a", "[2].b", "[2].c"],
            ),
            (
                "object array object",
                json!({"array": [{"a": 1}, {"b": 1}, {"a": 1, "b": 2, "c": 3}], "unspecified": {"a": 1}, "specified": {"a": 1, "b": 2, "c": 3}}),
                false,
                Some(json!({"properties": {
                    "array": {"items": {"properties": {"a": {}, "c": {}}}},
                    "specified": {"properties": {"a": {}, "c": {}}},
                }})),
                json!({"array": [{"a": 1}, {}, {"a": 1, "c": 3}], "specified": {"a": 1, "c": 3}}),
                vec!["array[1].b", "array[2].b", "specified.b", "unspecified"],
            ),
            (
                "nested x-kubernetes-preserve-unknown-fields",
                json!({
                    "unspecified": "bar", "alpha": "abc", "beta": 42.0,
                    "unspecifiedObject": {"unspecified": "bar"},
                    "pruning": {"unspecified": "bar", "unspecifiedObject": {"unspecified": "bar"}, "pruning": {"unspecified": "bar"}, "apiVersion": "unknown", "preserving": {"unspecified": "bar"}},
                    "preserving": {"unspecified": "bar", "unspecifiedObject": {"unspecified": "bar"}, "pruning": {"unspecified": "bar"}, "preserving": {"unspecified": "bar"}},
                    "preservingAdditionalPropertiesNotInheritingXPreserveUnknownFields": {"foo": {"specified": {"unspecified": "bar"}, "unspecified": "bar"}},
                    "preservingAdditionalPropertiesKeyPruneValues": {"foo": {"specified": {"unspecified": "bar"}, "unspecified": "bar"}},
                }),
                false,
                Some(json!({
                    "type": "object", "x-kubernetes-preserve-unknown-fields": true,
                    "properties": {
                        "alpha": {"type": "string"},
                        "beta": {"type": "number"},
                        "pruning": object(json!({"preserving": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "pruning": {"type": "object"}})),
                        "preserving": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"preserving": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "pruning": {"type": "object"}}},
                        "preservingAdditionalPropertiesNotInheritingXPreserveUnknownFields": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "additionalProperties": object(json!({"specified": {"type": "object"}}))},
                        "preservingAdditionalPropertiesKeyPruneValues": {"type": "object", "additionalProperties": object(json!({"specified": {"type": "object"}}))},
                    },
                })),
                json!({
                    "unspecified": "bar", "alpha": "abc", "beta": 42.0,
                    "unspecifiedObject": {"unspecified": "bar"},
                    "pruning": {"pruning": {}, "preserving": {"unspecified": "bar"}},
                    "preserving": {"unspecified": "bar", "unspecifiedObject": {"unspecified": "bar"}, "pruning": {}, "preserving": {"unspecified": "bar"}},
                    "preservingAdditionalPropertiesNotInheritingXPreserveUnknownFields": {"foo": {"specified": {}}},
                    "preservingAdditionalPropertiesKeyPruneValues": {"foo": {"specified": {}}},
                }),
                vec![
                    "preserving.pruning.unspecified",
                    "preservingAdditionalPropertiesKeyPruneValues.foo.specified.unspecified",
                    "preservingAdditionalPropertiesKeyPruneValues.foo.unspecified",
                    "preservingAdditionalPropertiesNotInheritingXPreserveUnknownFields.foo.specified.unspecified",
                    "preservingAdditionalPropertiesNotInheritingXPreserveUnknownFields.foo.unspecified",
                    "pruning.apiVersion",
                    "pruning.pruning.unspecified",
                    "pruning.unspecified",
                    "pruning.unspecifiedObject",
                ],
            ),
            (
                "additionalProperties with schema",
                json!({"a": 1, "b": 1, "c": {"a": 1, "b": 2, "c": {"a": 1}}}),
                false,
                Some(json!({"properties": {"a": {}, "c": {"additionalProperties": {"type": "integer"}}}})),
                json!({"a": 1, "c": {"a": 1, "b": 2, "c": {}}}),
                vec!["b", "c.c.a"],
            ),
            (
                "additionalProperties with bool",
                json!({"a": 1, "b": 1, "c": {"a": 1, "b": 2, "c": {"a": 1, "apiVersion": "unknown"}}}),
                false,
                Some(json!({"properties": {"a": {}, "c": {"additionalProperties": false}}})),
                json!({"a": 1, "c": {"a": 1, "b": 2, "c": {}}}),
                vec!["b", "c.c.a", "c.c.apiVersion"],
            ),
        ];
        for (name, mut obj, root, schema, want, want_pruned) in cases {
            let s = schema.map(|s| Structural::new(&s).unwrap());
            let pruned = prune(&mut obj, s.as_ref(), root);
            assert_eq!(obj, want, "{name}");
            assert_eq!(pruned, want_pruned, "{name}");
        }
    }

    fn embedded_input() -> Value {
        let meta = json!({"name": "instance", "unspecified": "bar"});
        let res = |extra: Value| {
            let mut o = json!({"apiVersion": "foo/v1", "kind": "Foo", "unspecified": "bar", "metadata": meta.clone(), "spec": {"unspecified": "bar"}});
            for (k, v) in extra.as_object().unwrap() {
                o["spec"][k] = v.clone();
            }
            o
        };
        json!({
            "apiVersion": "foo/v1", "kind": "Foo", "metadata": meta.clone(), "unspecified": "bar",
            "pruned": res(json!({})),
            "preserving": res(json!({})),
            "nested": res(json!({"embedded": res(json!({}))})),
        })
    }

    fn embedded_schema() -> Value {
        json!({"type": "object", "properties": {
            "pruned": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object"}}},
            "preserving": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true},
            "nested": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object", "properties": {
                "embedded": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object"}}},
            }}}},
        }})
    }

    #[test]
    fn embedded_resources_keep_type_and_object_meta() {
        let meta = json!({"name": "instance", "unspecified": "bar"});
        let kept = |spec: Value| json!({"apiVersion": "foo/v1", "kind": "Foo", "metadata": meta.clone(), "spec": spec});
        let preserved = json!({"apiVersion": "foo/v1", "kind": "Foo", "unspecified": "bar", "metadata": meta.clone(), "spec": {"unspecified": "bar"}});
        let inner = json!({"pruned": kept(json!({})), "preserving": preserved, "nested": kept(json!({"embedded": kept(json!({}))}))});
        let want_pruned = vec![
            "nested.spec.embedded.spec.unspecified",
            "nested.spec.embedded.unspecified",
            "nested.spec.unspecified",
            "nested.unspecified",
            "pruned.spec.unspecified",
            "pruned.unspecified",
            "unspecified",
        ];
        let s = Structural::new(&embedded_schema()).unwrap();

        // Not a resource root: the root's apiVersion/kind/metadata go, without being reported.
        let mut obj = embedded_input();
        assert_eq!(prune(&mut obj, Some(&s), false), want_pruned);
        assert_eq!(obj, inner);

        // The resource root keeps them (metadata unknown fields are objectmeta's business).
        let mut obj = embedded_input();
        assert_eq!(prune(&mut obj, Some(&s), true), want_pruned);
        let mut want = inner.clone();
        want["apiVersion"] = json!("foo/v1");
        want["kind"] = json!("Foo");
        want["metadata"] = meta;
        assert_eq!(obj, want);
    }
}
