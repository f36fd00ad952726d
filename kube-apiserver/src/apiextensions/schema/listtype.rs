//! List types (upstream `schema/listtype/validation.go`): `x-kubernetes-list-type: set` items and `map` keys must
//! be unique; every duplicate after the first is a `Duplicate value`, and list-type map items must be objects.

use super::field::{FieldError, child, go_json, index, key};
use super::structural::Structural;
use serde_json::{Map, Value};

/// upstream `ValidateListSetsAndMaps(fldPath, s, obj)` for an object (a CR, `path` empty for the root).
pub fn validate_list_sets_and_maps(path: &str, s: Option<&Structural>, obj: &Map<String, Value>) -> Vec<FieldError> {
    let Some(s) = s else { return Vec::new() };
    let mut errs = Vec::new();
    if let Some(ap) = s.generic.additional_properties.as_ref().and_then(|a| a.structural.as_deref()) {
        for (k, v) in obj {
            errs.extend(value(&key(path, k), ap, v));
        }
    }
    for (k, v) in obj {
        if let Some(sub) = s.properties.get(k) {
            errs.extend(value(&child(path, k), sub, v));
        }
    }
    errs
}

fn value(path: &str, s: &Structural, obj: &Value) -> Vec<FieldError> {
    match obj {
        Value::Array(a) => array(path, s, a),
        Value::Object(m) => validate_list_sets_and_maps(path, Some(s), m),
        _ => Vec::new(),
    }
}

fn array(path: &str, s: &Structural, obj: &[Value]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match s.extensions.list_type.as_deref() {
        Some("set") => {
            for i in non_unique(obj) {
                errs.push(FieldError::duplicate(&index(path, i), obj[i].clone()));
            }
        }
        Some("map") => errs.extend(list_map(path, s, obj)),
        _ => {}
    }
    if let Some(items) = s.items.as_deref() {
        for (i, x) in obj.iter().enumerate() {
            errs.extend(value(&index(path, i), items, x));
        }
    }
    errs
}

/// The indices of the first repeat of each non-unique item; compound items compare by their JSON.
fn non_unique(obj: &[Value]) -> Vec<usize> {
    let mut seen: Vec<(Value, usize)> = Vec::new();
    let mut seen_compound: std::collections::HashMap<String, usize> = Default::default();
    let mut out = Vec::new();
    for (i, x) in obj.iter().enumerate() {
        let times = match x {
            Value::Object(_) | Value::Array(_) => {
                let n = seen_compound.entry(go_json(x)).or_insert(0);
                *n += 1;
                *n
            }
            _ => match seen.iter_mut().find(|(v, _)| v == x) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    seen.push((x.clone(), 1));
                    1
                }
            },
        };
        if times == 2 {
            out.push(i);
        }
    }
    out
}

fn list_map(path: &str, s: &Structural, obj: &[Value]) -> Vec<FieldError> {
    for (i, x) in obj.iter().enumerate() {
        if !x.is_null() && !x.is_object() {
            return vec![FieldError::invalid(
                &index(path, i),
                x.clone(),
                "must be an object for an array of list-type map",
            )];
        }
    }
    if obj.len() <= 1 {
        return Vec::new();
    }
    // A key object per item: the key fields present ({} for null items); one key field compares by its value, and
    // an item without it by "unspecified".
    let keys: Vec<Value> = obj
        .iter()
        .map(|x| {
            let mut k = Map::new();
            if let Some(m) = x.as_object() {
                for f in &s.extensions.list_map_keys {
                    if let Some(v) = m.get(f) {
                        k.insert(f.clone(), v.clone());
                    }
                }
            }
            Value::Object(k)
        })
        .collect();
    let comparable: Vec<Value> = if s.extensions.list_map_keys.len() == 1 {
        let f = &s.extensions.list_map_keys[0];
        // {"$unspecified": true} cannot collide with a real key value, which is compared as itself.
        keys.iter()
            .map(|k| {
                k.get(f).map(|v| serde_json::json!([v])).unwrap_or_else(|| serde_json::json!({"$unspecified": true}))
            })
            .collect()
    } else {
        keys.clone()
    };
    non_unique(&comparable).into_iter().map(|i| FieldError::duplicate(&index(path, i), keys[i].clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(schema: Value, obj: Value) -> Vec<(String, &'static str)> {
        let s = Structural::new(&schema).unwrap();
        let mut got: Vec<(String, &'static str)> =
            validate_list_sets_and_maps("root", Some(&s), obj.as_object().unwrap())
                .into_iter()
                .map(|e| (e.field, e.kind.reason()))
                .collect();
        got.sort();
        got
    }

    fn dup(p: &str) -> (String, &'static str) {
        (p.to_string(), "FieldValueDuplicate")
    }

    fn inv(p: &str) -> (String, &'static str) {
        (p.to_string(), "FieldValueInvalid")
    }

    fn sorted(mut v: Vec<(String, &'static str)>) -> Vec<(String, &'static str)> {
        v.sort();
        v
    }

    fn array(list: &str, items: Value) -> Value {
        json!({"type": "array", "x-kubernetes-list-type": list, "items": items})
    }

    /// upstream TestValidateListSetsAndMaps.
    #[test]
    fn sets() {
        assert!(validate_list_sets_and_maps("root", None, &Map::new()).is_empty());
        assert!(run(json!({}), json!({"array": ["a", "b", "a"]})).is_empty(), "list without schema");
        assert!(
            run(
                json!({"type": "object", "properties": {"array": {"type": "array"}}}),
                json!({"array": ["a", "b", "a"]})
            )
            .is_empty()
        );
        let set =
            json!({"type": "object", "properties": {"array": {"type": "array", "x-kubernetes-list-type": "set"}}});
        assert!(run(set.clone(), json!({"array": ["a"]})).is_empty());
        assert_eq!(run(set.clone(), json!({"array": ["a", "a"]})), vec![dup("root.array[1]")]);
        assert!(run(set.clone(), json!({"array": ["a", "b"]})).is_empty());
        assert_eq!(
            run(set, json!({"array": ["a", "a", "b", "c", "d", "c"]})),
            vec![dup("root.array[1]"), dup("root.array[5]")]
        );
        assert!(
            run(
                json!({"type": "object", "properties": {"array": {"type": "array", "items": {"type": "string"}}}}),
                json!({"array": ["a", "b", "a"]})
            )
            .is_empty()
        );
        assert_eq!(
            run(
                json!({"type": "object", "properties": {"array": array("set", json!({"type": "string"}))}}),
                json!({"array": ["a", "b", "a"]})
            ),
            vec![dup("root.array[2]")]
        );
        assert_eq!(
            run(
                json!({"type": "object", "additionalProperties": array("set", json!({"type": "string"}))}),
                json!({"array": ["a", "b", "a"]})
            ),
            vec![dup("root[array][2]")]
        );
        assert_eq!(
            run(
                json!({"type": "object", "properties": {"array": {"type": "array", "items": array("set", json!({"type": "string"}))}}}),
                json!({"array": [["a", "b", "a"], ["b", "b", "a"]]})
            ),
            vec![dup("root.array[0][2]"), dup("root.array[1][1]")]
        );
        assert_eq!(
            run(
                json!({"type": "object", "properties": {"array": array("set", json!({"type": "array", "x-kubernetes-list-type": "set"}))}}),
                json!({"array": ["a", "b", "a", ["b", "b", "a"]]})
            ),
            vec![dup("root.array[2]"), dup("root.array[3][1]")]
        );
        let str_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
        let nullable_map = json!({"type": "object", "additionalProperties": {"type": "string", "nullable": true}});
        assert_eq!(
            run(
                json!({"type": "object", "properties": {
                    "strings": array("set", json!({"type": "string"})),
                    "integers": array("set", json!({"type": "integer"})),
                    "booleans": array("set", json!({"type": "boolean"})),
                    "float64": array("set", json!({"type": "number"})),
                    "nil": array("set", json!({"type": "string", "nullable": true})),
                    "empty maps": array("set", str_map.clone()),
                    "map values": array("set", str_map.clone()),
                    "nil values": array("set", nullable_map),
                    "array": array("set", json!({"type": "array", "items": {"type": "string"}})),
                    "nil array": array("set", json!({"type": "array", "items": {"type": "string", "nullable": true}})),
                    "multiple duplicates": array("set", str_map),
                }}),
                json!({
                    "strings": ["a", "b", "a"],
                    "integers": [1, 2, 1],
                    "booleans": [false, true, true],
                    "float64": [1.0, 2.0, 2.0],
                    "nil": ["a", null, null],
                    "empty maps": [{"a": "b"}, {}, {}],
                    "map values": [{"a": "b"}, {"a": "c"}, {"a": "b"}],
                    "nil values": [{"a": null}, {"b": "c", "a": null}],
                    "array": [[], ["a"], ["b"], ["a"]],
                    "nil array": [[], [null], [null, null], [null], ["a"]],
                    "multiple duplicates": [{"a": "b"}, {"a": "c"}, {"a": "b"}, {"a": "c"}, {"a": "c"}],
                })
            ),
            sorted(vec![
                dup("root.strings[2]"),
                dup("root.integers[2]"),
                dup("root.booleans[2]"),
                dup("root.float64[2]"),
                dup("root.nil[2]"),
                dup("root.empty maps[2]"),
                dup("root.map values[2]"),
                dup("root.array[3]"),
                dup("root.nil array[3]"),
                dup("root.multiple duplicates[2]"),
                dup("root.multiple duplicates[3]"),
            ])
        );
        assert_eq!(
            run(
                json!({"type": "object", "properties": {"array": array("set", json!({"type": "string"}))}}),
                json!({"array": [[], ["a"], ["a"]]})
            ),
            vec![dup("root.array[2]")]
        );
    }

    #[test]
    fn maps() {
        let map = |keys: Value, items: Value| json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": keys, "items": items});
        let str_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
        let nullable_map = json!({"type": "object", "additionalProperties": {"type": "string", "nullable": true}});
        let keyed = json!({"type": "object", "properties": {"a": {"type": "array", "nullable": true, "items": {"type": "string"}}, "c": {"type": "string"}}});
        let keyed_b = json!({"type": "object", "properties": {"a": {"type": "array", "nullable": true, "items": {"type": "string"}}, "b": {"type": "string"}, "c": {"type": "string"}}});
        let got = run(
            json!({"type": "object", "properties": {
                "strings": map(json!(["a"]), json!({"type": "string"})),
                "integers": map(json!(["a"]), json!({"type": "integer"})),
                "booleans": map(json!(["a"]), json!({"type": "boolean"})),
                "float64": map(json!(["a"]), json!({"type": "number"})),
                "nil": map(json!(["a"]), json!({"type": "string", "nullable": true})),
                "array": map(json!(["a"]), json!({"type": "array", "items": {"type": "string"}})),
                "one key": map(json!(["a"]), str_map.clone()),
                "two keys": map(json!(["a", "b"]), str_map.clone()),
                "undefined key": map(json!(["a", "b"]), str_map),
                "compound key": map(json!(["a"]), nullable_map.clone()),
                "nil key": map(json!(["a"]), keyed.clone()),
                "nil item": map(json!(["a"]), keyed),
                "nil item multiple keys": map(json!(["a", "b"]), keyed_b),
                "multiple duplicates": map(json!(["a"]), nullable_map),
            }}),
            json!({
                "strings": ["a"],
                "integers": [1],
                "booleans": [false],
                "float64": [1.0],
                "nil": [null],
                "array": [["a"]],
                "one key": [{"a": "0", "c": "2"}, {"a": "1", "c": "1"}, {"a": "1", "c": "2"}, {}],
                "two keys": [{"a": "1", "b": "1", "c": "1"}, {"a": "1", "b": "2", "c": "2"}, {"a": "1", "b": "2", "c": "3"}, {}],
                "undefined key": [{"a": "1", "b": "1", "c": "1"}, {"a": "1", "c": "2"}, {"a": "1", "c": "3"}, {}],
                "compound key": [{"a": [], "c": "1"}, {"a": null, "c": "1"}, {"a": ["a"], "c": "1"}, {"a": ["a", 42], "c": "2"}, {"a": ["a", 42], "c": ["3"]}],
                "nil key": [{"a": [], "c": "1"}, {"a": null, "c": "1"}, {"c": "1"}, {"a": null}],
                "nil item": [null, {"a": "0", "c": "1"}, {"a": null}, {"c": "1"}],
                "nil item multiple keys": [null, {"b": "0", "c": "1"}, {"a": null}, {"c": "1"}],
                "multiple duplicates": [
                    {"a": [], "c": "1"}, {"a": null, "c": "1"}, {"a": ["a"], "c": "1"}, {"a": ["a", 42], "c": "2"},
                    {"a": ["a", 42], "c": ["3"]}, {"a": ["a"], "c": "1", "d": "1"}, {"a": ["a"], "c": "1", "d": "2"},
                ],
            }),
        );
        assert_eq!(
            got,
            sorted(vec![
                inv("root.strings[0]"),
                inv("root.integers[0]"),
                inv("root.booleans[0]"),
                inv("root.float64[0]"),
                inv("root.array[0]"),
                dup("root.one key[2]"),
                dup("root.two keys[2]"),
                dup("root.undefined key[2]"),
                dup("root.compound key[4]"),
                dup("root.nil key[3]"),
                dup("root.nil item[3]"),
                dup("root.nil item multiple keys[3]"),
                dup("root.multiple duplicates[4]"),
                dup("root.multiple duplicates[5]"),
            ])
        );
    }

    #[test]
    fn duplicate_messages_show_the_key() {
        let s = Structural::new(&json!({"type": "object", "properties": {
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port"], "items": {"type": "object", "properties": {"port": {"type": "integer"}}}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        }}))
        .unwrap();
        let obj = json!({"ports": [{"port": 80}, {"port": 80}], "tags": ["a", "a"]});
        let errs: Vec<String> =
            validate_list_sets_and_maps("", Some(&s), obj.as_object().unwrap()).iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errs,
            vec!["ports[1]: Duplicate value: map[string]interface {}{\"port\":80}", "tags[1]: Duplicate value: \"a\"",]
        );
    }
}
