//! Defaulting (upstream `schema/defaulting/algorithm.go` and `prunenulls.go`): missing fields, and nulls where the
//! schema is not nullable, take the schema's `default` (deep-copied), through properties, additionalProperties
//! and items; non-nullable nulls without a default are dropped first.

use super::structural::Structural;
use serde_json::Value;

fn non_nullable_null(x: &Value, s: Option<&Structural>) -> bool {
    x.is_null() && s.is_some_and(|s| !s.generic.nullable)
}

/// Whether the schema has a `default` anywhere (objects read from storage are defaulted only then).
pub fn has_defaults(s: &Structural) -> bool {
    s.generic.default.is_some()
        || s.properties.values().any(has_defaults)
        || s.items.as_deref().is_some_and(has_defaults)
        || s.generic.additional_properties.as_ref().and_then(|a| a.structural.as_deref()).is_some_and(has_defaults)
}

/// upstream `Default`: applies the schema's defaults to `x` in place.
pub fn apply_defaults(x: &mut Value, s: Option<&Structural>) {
    let Some(s) = s else { return };
    match x {
        Value::Object(m) => {
            for (k, prop) in &s.properties {
                let Some(d) = &prop.generic.default else { continue };
                match m.get(k) {
                    None => {
                        m.insert(k.clone(), d.clone());
                    }
                    Some(v) if non_nullable_null(v, Some(prop)) => {
                        m.insert(k.clone(), d.clone());
                    }
                    _ => {}
                }
            }
            let ap = s.generic.additional_properties.as_ref().and_then(|a| a.structural.as_deref());
            let has_ap = s.generic.additional_properties.is_some();
            for (k, v) in m.iter_mut() {
                if let Some(prop) = s.properties.get(k) {
                    apply_defaults(v, Some(prop));
                } else if has_ap {
                    if non_nullable_null(v, ap) {
                        *v = ap.and_then(|a| a.generic.default.clone()).unwrap_or(Value::Null);
                    }
                    apply_defaults(v, ap);
                }
            }
        }
        Value::Array(a) => {
            let items = s.items.as_deref();
            for v in a.iter_mut() {
                if non_nullable_null(v, items) {
                    *v = items.and_then(|i| i.generic.default.clone()).unwrap_or(Value::Null);
                }
                apply_defaults(v, items);
            }
        }
        _ => {}
    }
}

/// upstream `PruneNonNullableNullsWithoutDefaults`: drops `null` fields whose schema is neither nullable nor
/// defaulted (those with a default are left for [`apply_defaults`]).
pub fn prune_non_nullable_nulls_without_defaults(x: &mut Value, s: Option<&Structural>) {
    match x {
        Value::Object(m) => {
            m.retain(|k, v| {
                let fs = s.and_then(|s| s.field(k));
                if v.is_null() && fs.is_some_and(|f| !f.generic.nullable && f.generic.default.is_none()) {
                    return false;
                }
                prune_non_nullable_nulls_without_defaults(v, fs);
                true
            });
        }
        Value::Array(a) => {
            let items = s.and_then(|s| s.items.as_deref());
            for v in a.iter_mut() {
                prune_non_nullable_nulls_without_defaults(v, items);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// upstream TestDefault.
    #[test]
    fn default_table() {
        let cases: Vec<(&str, Value, Option<Value>, Value)> = vec![
            ("empty", json!(null), None, json!(null)),
            ("scalar", json!(4), Some(json!({"default": "foo"})), json!(4)),
            ("scalar array", json!([1, 2]), Some(json!({"items": {"default": "foo"}})), json!([1, 2])),
            (
                "object array",
                json!([{"a": 1}, {"b": 1}, {"c": 1}]),
                Some(
                    json!({"items": {"properties": {"a": {"default": "A"}, "b": {"default": "B"}, "c": {"default": "C"}}}}),
                ),
                json!([{"a": 1, "b": "B", "c": "C"}, {"a": "A", "b": 1, "c": "C"}, {"a": "A", "b": "B", "c": 1}]),
            ),
            (
                "object array object",
                json!({"array": [{"a": 1}, {"b": 2}], "object": {"a": 1}, "additionalProperties": {"x": {"a": 1}, "y": {"b": 2}}}),
                Some(json!({"properties": {
                    "array": {"items": {"properties": {"a": {"default": "A"}, "b": {"default": "B"}}}},
                    "object": {"properties": {"a": {"default": "N"}, "b": {"default": "O"}}},
                    "additionalProperties": {"additionalProperties": {"properties": {"a": {"default": "alpha"}, "b": {"default": "beta"}}}},
                    "foo": {"default": "bar"},
                }})),
                json!({"array": [{"a": 1, "b": "B"}, {"a": "A", "b": 2}], "object": {"a": 1, "b": "O"}, "additionalProperties": {"x": {"a": 1, "b": "beta"}, "y": {"a": "alpha", "b": 2}}, "foo": "bar"}),
            ),
            (
                "empty and null",
                json!([{}, {"a": 1}, {"a": 0}, {"a": 0.0}, {"a": ""}, {"a": null}, {"a": []}, {"a": {}}]),
                Some(json!({"items": {"properties": {"a": {"default": "A"}}}})),
                json!([{"a": "A"}, {"a": 1}, {"a": 0}, {"a": 0.0}, {"a": ""}, {"a": "A"}, {"a": []}, {"a": {}}]),
            ),
            (
                "null in nullable list",
                json!([null]),
                Some(json!({"nullable": true, "items": {"properties": {"a": {"default": "A"}}}})),
                json!([null]),
            ),
            (
                "null in non-nullable list",
                json!([null]),
                Some(json!({"nullable": false, "items": {"default": "A"}})),
                json!(["A"]),
            ),
            (
                "null in nullable object",
                json!({"a": null}),
                Some(json!({"properties": {"a": {"nullable": true, "default": "A"}}})),
                json!({"a": null}),
            ),
            (
                "null in non-nullable object",
                json!({"a": null}),
                Some(json!({"properties": {"a": {"nullable": false, "default": "A"}}})),
                json!({"a": "A"}),
            ),
            (
                "null in nullable object with additionalProperties",
                json!({"a": null}),
                Some(json!({"additionalProperties": {"nullable": true, "default": "A"}})),
                json!({"a": null}),
            ),
            (
                "null in non-nullable object with additionalProperties",
                json!({"a": null}),
                Some(json!({"additionalProperties": {"nullable": false, "default": "A"}})),
                json!({"a": "A"}),
            ),
            ("null unknown field", json!({"a": null}), Some(json!({"additionalProperties": true})), json!({"a": null})),
        ];
        for (name, mut obj, schema, want) in cases {
            let s = schema.map(|s| Structural::new(&s).unwrap());
            apply_defaults(&mut obj, s.as_ref());
            assert_eq!(obj, want, "{name}");
        }
    }

    /// upstream TestPruneNonNullableNullsWithoutDefaults.
    #[test]
    fn prune_nulls_table() {
        let cases: Vec<(&str, Value, Option<Value>, Value)> = vec![
            ("empty", json!(null), None, json!(null)),
            ("scalar", json!(4), Some(json!({"default": "foo"})), json!(4)),
            ("scalar array", json!([1, null]), None, json!([1, null])),
            (
                "object array",
                json!([{"a": null}, {"b": null}, {"c": null}, {"d": null}, {"e": null}]),
                Some(json!({"items": {"properties": {
                    "a": {"default": "A"},
                    "b": {"nullable": true},
                    "c": {"default": "C", "nullable": true},
                    "d": {},
                }}})),
                json!([{"a": null}, {"b": null}, {"c": null}, {}, {"e": null}]),
            ),
        ];
        for (name, mut obj, schema, want) in cases {
            let s = schema.map(|s| Structural::new(&s).unwrap());
            prune_non_nullable_nulls_without_defaults(&mut obj, s.as_ref());
            assert_eq!(obj, want, "{name}");
        }
    }
}
