//! A custom resource's JSON as CEL values, typed by its structural schema (upstream `UnstructuredToVal` and
//! `model.SchemaDeclType`): objects with declared properties are CEL objects whose fields are the escaped property
//! names (null fields are absent, undeclared fields kept only under `x-kubernetes-preserve-unknown-fields`), maps
//! (`additionalProperties`) keep their keys verbatim, `integer` is int, `number` is double even when written as an
//! integer, int-or-string stays int or string, `format: byte|date|date-time|duration` strings become bytes,
//! timestamps and durations, and the root and embedded resources expose `apiVersion`, `kind` and only
//! `metadata.name`/`metadata.generateName`.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use kube_cel::cel::Value;
use kube_cel::cel::objects::{Key, Map};
use serde_json::Value as Json;

use super::escaping::escape;
use crate::apiextensions::schema::structural::Structural;

/// The CEL value of `v` at a node of schema `s`; `resource_root` for the CR root and embedded resources.
pub fn to_cel(v: &Json, s: &Structural, resource_root: bool) -> Value {
    if v.is_null() {
        return Value::Null;
    }
    if s.extensions.int_or_string {
        return untyped(v);
    }
    match (s.generic.type_.as_str(), v) {
        ("object", Json::Object(m)) => object(m, s, resource_root || s.extensions.embedded_resource),
        ("array", Json::Array(items)) => {
            let list = match s.items.as_deref() {
                Some(item) => items.iter().map(|i| to_cel(i, item, item.extensions.embedded_resource)).collect(),
                None => items.iter().map(untyped).collect(),
            };
            Value::List(Arc::new(list))
        }
        ("integer", Json::Number(n)) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        ("number", Json::Number(n)) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        ("boolean", Json::Bool(b)) => Value::Bool(*b),
        ("string", Json::String(st)) => formatted(st, &s.value_validation.format),
        _ => untyped(v),
    }
}

fn object(m: &serde_json::Map<String, Json>, s: &Structural, resource_root: bool) -> Value {
    let additional = s.generic.additional_properties.as_ref();
    let is_map = s.properties.is_empty() && additional.is_some_and(|a| a.structural.is_some() || a.allows);
    let mut out = HashMap::with_capacity(m.len());
    if is_map {
        let item = additional.and_then(|a| a.structural.as_deref());
        for (k, v) in m {
            let value = match item {
                Some(item) => to_cel(v, item, item.extensions.embedded_resource),
                None => untyped(v),
            };
            out.insert(key(k), value);
        }
        return Value::Map(Map { map: Arc::new(out) });
    }
    let type_meta = resource_root && !declares_type_and_object_meta(s);
    for (k, v) in m {
        if v.is_null() {
            continue;
        }
        let value = match (k.as_str(), s.properties.get(k)) {
            ("apiVersion" | "kind", _) if type_meta => untyped(v),
            ("metadata", _) if type_meta => metadata(v),
            (_, Some(p)) => to_cel(v, p, p.extensions.embedded_resource),
            (_, None) if s.extensions.preserve_unknown_fields => untyped(v),
            (_, None) => continue,
        };
        let Some(name) = escape(k) else { continue };
        if name.len() == k.len() + 4 && name.starts_with("__") {
            // A reserved word is selectable escaped (`self.__namespace__`) and, after a dot, as written.
            out.insert(key(k), value.clone());
        }
        out.insert(Key::String(Arc::new(name)), value);
    }
    Value::Map(Map { map: Arc::new(out) })
}

/// upstream `WithTypeAndObjectMeta` leaves a resource root alone when it declares `kind`, `apiVersion` and
/// `metadata.name`/`generateName` as strings; otherwise those are added with metadata limited to the two names.
pub fn declares_type_and_object_meta(s: &Structural) -> bool {
    let is = |s: Option<&Structural>, ty: &str| s.is_some_and(|s| s.generic.type_ == ty);
    let meta = s.properties.get("metadata");
    is(s.properties.get("kind"), "string")
        && is(s.properties.get("apiVersion"), "string")
        && is(meta, "object")
        && is(meta.and_then(|m| m.properties.get("name")), "string")
        && is(meta.and_then(|m| m.properties.get("generateName")), "string")
}

/// The metadata a rule sees: only `name` and `generateName`.
fn metadata(v: &Json) -> Value {
    let mut out = HashMap::new();
    if let Some(m) = v.as_object() {
        for k in ["name", "generateName"] {
            if let Some(Json::String(s)) = m.get(k) {
                out.insert(key(k), Value::String(Arc::new(s.clone())));
            }
        }
    }
    Value::Map(Map { map: Arc::new(out) })
}

fn key(k: &str) -> Key {
    Key::String(Arc::new(k.to_string()))
}

/// A string of a schema `format`: bytes, date, date-time and duration have CEL types of their own.
fn formatted(s: &str, format: &str) -> Value {
    let string = || Value::String(Arc::new(s.to_string()));
    match format {
        "byte" => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(|b| Value::Bytes(Arc::new(b)))
            .unwrap_or_else(|_| string()),
        "date" => timestamp(&format!("{s}T00:00:00Z")).unwrap_or_else(string),
        "date-time" => timestamp(s).unwrap_or_else(string),
        "duration" => kube_cel::cel::functions::time::duration(Arc::new(s.to_string())).unwrap_or_else(|_| string()),
        _ => string(),
    }
}

fn timestamp(s: &str) -> Option<Value> {
    kube_cel::cel::functions::time::timestamp(Arc::new(s.to_string())).ok()
}

/// A value without a usable schema: JSON as CEL, map keys verbatim.
pub fn untyped(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => match n.as_u64() {
                Some(u) => Value::UInt(u),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
        },
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(a) => Value::List(Arc::new(a.iter().map(untyped).collect())),
        Json::Object(m) => Value::Map(Map { map: Arc::new(m.iter().map(|(k, v)| (key(k), untyped(v))).collect()) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Json) -> Structural {
        Structural::new(&v).unwrap()
    }

    fn get<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
        match v {
            Value::Map(m) => m.map.get(&key(k)),
            _ => None,
        }
    }

    #[test]
    fn objects_maps_and_scalars_follow_the_schema() {
        let s = schema(json!({"type": "object", "properties": {
            "n": {"type": "number"}, "i": {"type": "integer"}, "ios": {"x-kubernetes-int-or-string": true},
            "b": {"type": "string", "format": "byte"}, "d": {"type": "string", "format": "duration"},
            "dash-name": {"type": "string"}, "if": {"type": "string"}, "nul": {"type": "string", "nullable": true},
            "m": {"type": "object", "additionalProperties": {"type": "integer"}},
            "bad@name": {"type": "string"},
        }}));
        let v = to_cel(
            &json!({"n": 1, "i": 2, "ios": "25%", "b": "QUI=", "d": "1h", "dash-name": "x", "if": "y", "nul": null,
                    "m": {"a-b": 1, "int": 2}, "bad@name": "z", "undeclared": 1}),
            &s,
            false,
        );
        assert_eq!(get(&v, "n"), Some(&Value::Float(1.0)));
        assert_eq!(get(&v, "i"), Some(&Value::Int(2)));
        assert_eq!(get(&v, "ios"), Some(&Value::String(Arc::new("25%".into()))));
        assert_eq!(get(&v, "b"), Some(&Value::Bytes(Arc::new(b"AB".to_vec()))));
        assert!(matches!(get(&v, "d"), Some(Value::Duration(_))));
        assert!(get(&v, "dash__dash__name").is_some() && get(&v, "__if__").is_some());
        assert!(get(&v, "nul").is_none(), "null fields are absent");
        assert!(get(&v, "undeclared").is_none() && get(&v, "bad@name").is_none());
        let m = get(&v, "m").unwrap();
        assert_eq!(get(m, "a-b"), Some(&Value::Int(1)), "map keys are not escaped");
    }

    #[test]
    fn resource_roots_expose_type_and_object_meta() {
        let s = schema(json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"e": {"type": "object", "x-kubernetes-embedded-resource": true,
                                 "x-kubernetes-preserve-unknown-fields": true}}}}}));
        let obj = json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "n", "namespace": "ns"},
                         "spec": {"e": {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "g", "labels": {}}}}});
        let v = to_cel(&obj, &s, true);
        assert_eq!(get(&v, "kind"), Some(&Value::String(Arc::new("K".into()))));
        let meta = get(&v, "metadata").unwrap();
        assert!(get(meta, "name").is_some() && get(meta, "namespace").is_none());
        let e = get(get(&v, "spec").unwrap(), "e").unwrap();
        let meta = get(e, "metadata").unwrap();
        assert!(get(meta, "generateName").is_some() && get(meta, "labels").is_none());
    }
}
