//! The `FieldsV1` encoding of a field set, as managedFields stores it (structured-merge-diff's
//! `fieldpath/serialize.go`): `{"f:spec":{"f:ports":{"k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:port":{}}}}}`,
//! where `.` marks a path that is itself a member and has members below it.

use serde_json::{Map, Value};

use super::fieldpath::{PathElement, Set};

/// The JSON key of a path element: `f:<name>`, `k:<keys as JSON>`, `v:<value as JSON>`, `i:<index>`.
pub fn element_key(pe: &PathElement) -> String {
    match pe {
        PathElement::Field(name) => format!("f:{name}"),
        PathElement::Key(keys) => {
            let mut m = Map::new();
            for (k, v) in keys {
                m.insert(k.clone(), v.clone());
            }
            format!("k:{}", Value::Object(m))
        }
        PathElement::Value(v) => format!("v:{v}"),
        PathElement::Index(i) => format!("i:{i}"),
    }
}

/// Parses a JSON key back into a path element.
pub fn parse_element(key: &str) -> Result<PathElement, String> {
    let (kind, rest) = key.split_once(':').ok_or_else(|| format!("missing colon: {key}"))?;
    match kind {
        "f" => Ok(PathElement::Field(rest.to_string())),
        "k" => {
            let Ok(Value::Object(m)) = serde_json::from_str::<Value>(rest) else {
                return Err(format!("invalid key: {rest}"));
            };
            let mut keys: Vec<(String, Value)> = m.into_iter().collect();
            keys.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(PathElement::Key(keys))
        }
        "v" => serde_json::from_str(rest).map(PathElement::Value).map_err(|e| format!("invalid value {rest}: {e}")),
        "i" => rest.parse().map(PathElement::Index).map_err(|_| format!("invalid index: {rest}")),
        _ => Err(format!("unknown path element kind: {kind}")),
    }
}

/// Encodes a set as FieldsV1.
pub fn encode(set: &Set) -> Value {
    Value::Object(encode_level(set, false))
}

fn encode_level(set: &Set, include_self: bool) -> Map<String, Value> {
    let mut out = Map::new();
    if include_self {
        out.insert(".".into(), Value::Object(Map::new()));
    }
    let (mut mi, mut ci) = (0, 0);
    while mi < set.members.len() || ci < set.children.len() {
        let m = set.members.get(mi);
        let c = set.children.get(ci);
        match (m, c) {
            (Some(m), Some((pe, child))) if m == pe => {
                out.insert(element_key(m), Value::Object(encode_level(child, true)));
                mi += 1;
                ci += 1;
            }
            (Some(m), Some((pe, _))) if m < pe => {
                out.insert(element_key(m), Value::Object(Map::new()));
                mi += 1;
            }
            (Some(m), None) => {
                out.insert(element_key(m), Value::Object(Map::new()));
                mi += 1;
            }
            (_, Some((pe, child))) => {
                if !child.is_empty() {
                    out.insert(element_key(pe), Value::Object(encode_level(child, false)));
                }
                ci += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// Decodes FieldsV1 into a set.
pub fn decode(v: &Value) -> Result<Set, String> {
    let Value::Object(m) = v else { return Err("FieldsV1 must be an object".into()) };
    let mut set = Set::new();
    decode_into(m, &mut set)?;
    Ok(set)
}

fn decode_into(m: &Map<String, Value>, set: &mut Set) -> Result<(), String> {
    let mut entries: Vec<(PathElement, &Value)> = Vec::with_capacity(m.len());
    for (k, v) in m {
        if k == "." {
            continue;
        }
        entries.push((parse_element(k)?, v));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (pe, v) in entries {
        let Value::Object(inner) = v else { return Err(format!("{} must map to an object", element_key(&pe))) };
        if inner.is_empty() || inner.contains_key(".") {
            set.members.push(pe.clone());
        }
        if inner.keys().any(|k| k != ".") {
            let mut child = Set::new();
            decode_into(inner, &mut child)?;
            set.children.push((pe, child));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Upstream fieldpath/serialize_test.go: round trips of every element kind, `.` for members with children.
    #[test]
    fn round_trips_every_element_kind() {
        let fields = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:targetPort": {}}},
                "f:finalizers": {"v:\"a\"": {}},
                "f:args": {"i:0": {}},
                "f:replicas": {}
            }
        });
        let set = decode(&fields).unwrap();
        let back = encode(&set);
        assert_eq!(back, fields);
        let printed = back.to_string();
        assert!(printed.contains(r#""k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:port":{},"f:targetPort":{}}"#));
        assert_eq!(decode(&back).unwrap(), set);
    }

    #[test]
    fn keys_are_sorted_and_garbage_is_refused() {
        let set = decode(&json!({"f:b": {}, "f:a": {}})).unwrap();
        assert_eq!(encode(&set).to_string(), r#"{"f:a":{},"f:b":{}}"#);
        assert!(decode(&json!({"x:a": {}})).is_err());
        assert!(decode(&json!({"f:a": 1})).is_err());
        assert!(decode(&json!([])).is_err());
    }
}
