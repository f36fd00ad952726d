//! Embedded ObjectMeta and TypeMeta (upstream `schema/objectmeta/coerce.go`, `algorithm.go`, `validation.go`):
//! `metadata` is decoded as Go decodes a `metav1.ObjectMeta` (typed fields, unknown fields dropped and reported,
//! malformed fields an error or, from storage, dropped) and written back normalized; apiVersion/kind must be
//! strings; embedded resources need apiVersion and kind and get ObjectMeta validation.

use super::field::{FieldError, child, index, key};
use super::structural::Structural;
use crate::validation::{is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_label_value};
use serde_json::{Map, Value};

/// upstream `ObjectMetaOptions`.
#[derive(Debug, Clone, Default)]
pub struct ObjectMetaOptions {
    /// Drop fields of a wrong type instead of failing (used when reading from storage).
    pub drop_malformed_fields: bool,
    /// Report unknown fields (`metadata.foo`) for `fieldValidation`.
    pub return_unknown_field_paths: bool,
    /// The path of the object holding `metadata` (empty at the root).
    pub parent_path: String,
}

/// Normalized metadata and the paths of its unknown fields.
pub type DecodedObjectMeta = (Map<String, Value>, Vec<String>);

/// upstream `GetObjectMetaWithOptions`: the `metadata` of `obj` decoded into ObjectMeta and re-encoded as upstream's
/// unstructured form (empty fields omitted, timestamps in UTC seconds), with the unknown field paths. `Ok(None)`
/// when there is no `metadata`.
pub fn get_object_meta(
    obj: &Map<String, Value>,
    opts: &ObjectMetaOptions,
) -> Result<Option<DecodedObjectMeta>, String> {
    let Some(metadata) = obj.get("metadata") else { return Ok(None) };
    let prefix = child(&opts.parent_path, "metadata");
    let m = match metadata {
        Value::Object(m) => m,
        Value::Null => return Ok(Some((Map::new(), Vec::new()))),
        other if !opts.drop_malformed_fields => {
            return Err(format!("json: cannot unmarshal {} into Go value of type v1.ObjectMeta", json_type(other)));
        }
        other => return Err(format!("invalid metadata: expected object, got {}", go_type(other))),
    };
    let mut out = Map::new();
    let mut unknown = Vec::new();
    let mut first_err = None;
    for (name, kind) in OBJECT_META {
        let Some(v) = m.get(*name) else { continue };
        let mut field_unknown = Vec::new();
        match decode(v, *kind, &format!("ObjectMeta.{name}"), name, &mut field_unknown) {
            Ok(Some(d)) => {
                out.insert(name.to_string(), d);
                unknown.extend(field_unknown);
            }
            Ok(None) => unknown.extend(field_unknown),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err
        && !opts.drop_malformed_fields
    {
        return Err(e);
    }
    for k in m.keys() {
        if !OBJECT_META.iter().any(|(n, _)| n == k) {
            unknown.push(k.clone());
        }
    }
    let unknown = if opts.return_unknown_field_paths {
        unknown.into_iter().map(|p| format!("{prefix}.{p}")).collect()
    } else {
        Vec::new()
    };
    Ok(Some((out, unknown)))
}

/// upstream `CoerceOptions`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoerceOptions {
    pub drop_invalid_fields: bool,
    pub return_unknown_field_paths: bool,
}

/// upstream `CoerceWithOptions`: type-checks apiVersion/kind and normalizes metadata of every embedded resource
/// (and of the root when `is_resource_root`), returning the sorted unknown metadata field paths.
pub fn coerce(
    path: &str,
    obj: &mut Value,
    s: Option<&Structural>,
    is_resource_root: bool,
    opts: CoerceOptions,
) -> Result<Vec<String>, Box<FieldError>> {
    let mut unknown = Vec::new();
    if is_resource_root {
        let mut root = s.cloned().unwrap_or_default();
        root.extensions.embedded_resource = true;
        coerce_node(path, obj, Some(&root), opts, &mut unknown)?;
    } else {
        coerce_node(path, obj, s, opts, &mut unknown)?;
    }
    unknown.sort();
    Ok(unknown)
}

fn coerce_node(
    path: &str,
    x: &mut Value,
    s: Option<&Structural>,
    opts: CoerceOptions,
    unknown: &mut Vec<String>,
) -> Result<(), Box<FieldError>> {
    let Some(s) = s else { return Ok(()) };
    match x {
        Value::Object(m) => {
            if s.extensions.embedded_resource {
                for k in ["apiVersion", "kind"] {
                    match m.get(k) {
                        Some(Value::String(_)) | None => {}
                        Some(_) if opts.drop_invalid_fields => {
                            m.remove(k);
                        }
                        Some(v) => {
                            return Err(Box::new(FieldError::invalid(&child(path, k), v.clone(), "must be a string")));
                        }
                    }
                }
                if m.contains_key("metadata") {
                    let mopts = ObjectMetaOptions {
                        drop_malformed_fields: opts.drop_invalid_fields,
                        return_unknown_field_paths: opts.return_unknown_field_paths,
                        parent_path: path.to_string(),
                    };
                    match get_object_meta(m, &mopts) {
                        Ok(Some((meta, paths))) => {
                            unknown.extend(paths);
                            m.insert("metadata".into(), Value::Object(meta));
                        }
                        Ok(None) => {}
                        Err(_) if opts.drop_invalid_fields => {}
                        Err(e) => {
                            return Err(Box::new(FieldError::invalid(
                                &child(path, "metadata"),
                                m["metadata"].clone(),
                                e,
                            )));
                        }
                    }
                }
            }
            let ap = s.generic.additional_properties.as_ref();
            for (k, v) in m.iter_mut() {
                if let Some(p) = s.properties.get(k) {
                    coerce_node(&child(path, k), v, Some(p), opts, unknown)?;
                } else if let Some(ap) = ap {
                    coerce_node(&key(path, k), v, ap.structural.as_deref(), opts, unknown)?;
                }
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter_mut().enumerate() {
                coerce_node(&index(path, i), v, s.items.as_deref(), opts, unknown)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// upstream `objectmeta.Validate`: embedded resources (and the root when `is_resource_root`) need apiVersion and
/// kind, and their metadata passes ObjectMeta validation.
pub fn validate(path: &str, obj: &Value, s: Option<&Structural>, is_resource_root: bool) -> Vec<FieldError> {
    if is_resource_root {
        let mut root = s.cloned().unwrap_or_default();
        root.extensions.embedded_resource = true;
        validate_node(path, obj, Some(&root))
    } else {
        validate_node(path, obj, s)
    }
}

fn validate_node(path: &str, x: &Value, s: Option<&Structural>) -> Vec<FieldError> {
    let Some(s) = s else { return Vec::new() };
    let mut errs = Vec::new();
    match x {
        Value::Object(m) => {
            if s.extensions.embedded_resource {
                errs.extend(validate_embedded_resource(path, m));
            }
            for (k, v) in m {
                if let Some(p) = s.properties.get(k) {
                    errs.extend(validate_node(&child(path, k), v, Some(p)));
                } else if let Some(ap) = &s.generic.additional_properties {
                    errs.extend(validate_node(&key(path, k), v, ap.structural.as_deref()));
                }
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                errs.extend(validate_node(&index(path, i), v, s.items.as_deref()));
            }
        }
        _ => {}
    }
    errs
}

fn validate_embedded_resource(path: &str, x: &Map<String, Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !x.contains_key("apiVersion") {
        errs.push(FieldError::required(&child(path, "apiVersion"), ""));
    }
    if !x.contains_key("kind") {
        errs.push(FieldError::required(&child(path, "kind"), ""));
    }
    for (k, v) in x {
        match k.as_str() {
            "apiVersion" => match v.as_str() {
                None => errs.push(FieldError::invalid(&child(path, "apiVersion"), v.clone(), "must be a string")),
                Some("") => errs.push(FieldError::required(&child(path, "apiVersion"), "")),
                Some(gv) if gv != "/" && gv.matches('/').count() > 1 => errs.push(FieldError::invalid(
                    &child(path, "apiVersion"),
                    v.clone(),
                    format!("unexpected GroupVersion string: {gv}"),
                )),
                Some(_) => {}
            },
            "kind" => match v.as_str() {
                None => errs.push(FieldError::invalid(&child(path, "kind"), v.clone(), "must be a string")),
                Some("") => errs.push(FieldError::required(&child(path, "kind"), "")),
                Some(kind) => {
                    let msgs = dns1035_label_errors(&kind.to_lowercase());
                    if !msgs.is_empty() {
                        errs.push(FieldError::invalid(
                            &child(path, "kind"),
                            v.clone(),
                            format!("may have mixed case, but should otherwise match: {}", msgs.join(",")),
                        ));
                    }
                }
            },
            "metadata" => match get_object_meta(x, &ObjectMetaOptions::default()) {
                Err(e) => errs.push(FieldError::invalid(&child(path, "metadata"), v.clone(), e)),
                Ok(meta) => {
                    let meta = meta.map(|(m, _)| m).unwrap_or_default();
                    errs.extend(validate_object_meta(&meta, &child(path, "metadata")));
                }
            },
            _ => {}
        }
    }
    errs
}

const MAX_LEN_63: &str = "must be no more than 63 characters";

fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let ex: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!("{msg} (e.g. {}regex used for validation is '{fmt}')", ex.join(" or "))
}

fn dns1035_label_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(MAX_LEN_63.to_string());
    }
    let regex_ok = is_dns1035_label(s) || (s.len() > 63 && is_dns1035_label(&s[..63]));
    if !regex_ok {
        errs.push(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            "[a-z]([-a-z0-9]*[a-z0-9])?",
            &["my-name", "abc-123"],
        ));
    }
    errs
}

fn dns1123_label_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(MAX_LEN_63.to_string());
    }
    let regex_ok = is_dns1123_label(s) || (s.len() > 63 && is_dns1123_label(&s[..63]));
    if !regex_ok {
        errs.push(regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            "[a-z0-9]([-a-z0-9]*[a-z0-9])?",
            &["my-name", "123-abc"],
        ));
    }
    errs
}

/// upstream `IsQualifiedName`.
fn qualified_name_errors(value: &str) -> Vec<String> {
    const NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
    const NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
    let name_examples = ["MyName", "my.name", "123-abc"];
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else if !is_dns1123_subdomain(prefix) {
                if prefix.len() > 253 {
                    errs.push("prefix part must be no more than 253 characters".to_string());
                }
                errs.push(format!(
                    "prefix part {}",
                    regex_error(
                        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                        "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
                        &["example.com"],
                    )
                ));
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(NAME_MSG, NAME_FMT, &name_examples)
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push(format!("name part {MAX_LEN_63}"));
    }
    let b = name.as_bytes();
    let matches = !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric();
    if !matches {
        errs.push(format!("name part {}", regex_error(NAME_MSG, NAME_FMT, &name_examples)));
    }
    errs
}

fn label_value_errors(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(MAX_LEN_63.to_string());
    }
    let long_ok = v.len() > 63 && is_label_value(&v[..63]) && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric();
    if !is_label_value(v) && !long_ok {
        errs.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?",
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// upstream `IsValidPathSegmentName` (the name rule of custom resources).
fn path_segment_errors(name: &str, prefix: bool) -> Vec<String> {
    let mut errs = Vec::new();
    if !prefix && (name == "." || name == "..") {
        return vec![format!("may not be '{name}'")];
    }
    for c in ["/", "%"] {
        if name.contains(c) {
            errs.push(format!("may not contain '{c}'"));
        }
    }
    errs
}

/// The essentials of upstream `ValidateObjectMeta` for an embedded resource (name rule `ValidatePathSegmentName`):
/// name/generateName, namespace, generation, labels and annotations.
fn validate_object_meta(meta: &Map<String, Value>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let s = |k: &str| meta.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let generate_name = s("generateName");
    if !generate_name.is_empty() {
        for msg in path_segment_errors(&generate_name, true) {
            errs.push(FieldError::invalid(&child(path, "generateName"), Value::from(generate_name.as_str()), msg));
        }
    }
    let mut name = s("name");
    if name.is_empty() {
        name = "fakename".into();
    }
    for msg in path_segment_errors(&name, false) {
        errs.push(FieldError::invalid(&child(path, "name"), Value::from(name.as_str()), msg));
    }
    let ns = s("namespace");
    if !ns.is_empty() {
        for msg in dns1123_label_errors(&ns) {
            errs.push(FieldError::invalid(&child(path, "namespace"), Value::from(ns.as_str()), msg));
        }
    }
    if meta.get("generation").and_then(Value::as_i64).is_some_and(|g| g < 0) {
        errs.push(FieldError::invalid(
            &child(path, "generation"),
            meta["generation"].clone(),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            for msg in qualified_name_errors(k) {
                errs.push(FieldError::invalid(&child(path, "labels"), Value::from(k.as_str()), msg));
            }
            let v = v.as_str().unwrap_or_default();
            for msg in label_value_errors(v) {
                errs.push(FieldError::invalid(&child(path, "labels"), Value::from(v), msg));
            }
        }
    }
    if let Some(ann) = meta.get("annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (k, v) in ann {
            for msg in qualified_name_errors(&k.to_lowercase()) {
                errs.push(FieldError::invalid(&child(path, "annotations"), Value::from(k.as_str()), msg));
            }
            total += k.len() + v.as_str().map(str::len).unwrap_or(0);
        }
        if total > 256 * 1024 {
            errs.push(FieldError::too_long(&child(path, "annotations"), Value::from(""), 256 * 1024));
        }
    }
    errs
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int64,
    OptInt64,
    Time,
    OptTime,
    StrMap,
    StrList,
    OwnerRefs,
    ManagedFields,
}

/// ObjectMeta's fields in upstream's order, with their Go types.
const OBJECT_META: &[(&str, Kind)] = &[
    ("name", Kind::Str),
    ("generateName", Kind::Str),
    ("namespace", Kind::Str),
    ("selfLink", Kind::Str),
    ("uid", Kind::Str),
    ("resourceVersion", Kind::Str),
    ("generation", Kind::Int64),
    ("creationTimestamp", Kind::Time),
    ("deletionTimestamp", Kind::OptTime),
    ("deletionGracePeriodSeconds", Kind::OptInt64),
    ("labels", Kind::StrMap),
    ("annotations", Kind::StrMap),
    ("ownerReferences", Kind::OwnerRefs),
    ("finalizers", Kind::StrList),
    ("managedFields", Kind::ManagedFields),
];

fn json_type(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(_) => "number".into(),
        Value::String(_) => "string".into(),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
    }
}

/// Go's `%T` of a decoded JSON value.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() => "int64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn type_err(v: &Value, go_path: &str, go_type: &str) -> String {
    format!("json: cannot unmarshal {} into Go struct field {go_path} of type {go_type}", json_type(v))
}

/// `metav1.Time`'s JSON form: RFC 3339 parsed as Go does, written back in UTC seconds.
fn decode_time(v: &Value) -> Result<Option<Value>, String> {
    let s = match v {
        Value::Null => return Ok(None),
        Value::String(s) => s,
        other => return Err(format!("json: cannot unmarshal {} into Go value of type string", json_type(other))),
    };
    let err = || {
        format!(
            "parsing time {} as \"2006-01-02T15:04:05Z07:00\": cannot parse {} as \"2006\"",
            super::field::go_quote(s),
            super::field::go_quote(s)
        )
    };
    let b = s.as_bytes();
    let shape = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && (s.ends_with('Z') || matches!(b[b.len() - 6], b'+' | b'-'));
    if !shape {
        return Err(err());
    }
    let t: jiff::Timestamp = s.parse().map_err(|_| err())?;
    if t.as_second() == -62135596800 {
        // Go's zero time (0001-01-01T00:00:00Z): omitted, as IsZero.
        return Ok(None);
    }
    Ok(Some(Value::from(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())))
}

fn decode_str(v: &Value, go_path: &str) -> Result<String, String> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        other => Err(type_err(other, go_path, "string")),
    }
}

fn decode_int(v: &Value, go_path: &str) -> Result<Option<i64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Ok(Some(i)),
            None => Err(format!("json: cannot unmarshal number {n} into Go struct field {go_path} of type int64")),
        },
        other => Err(type_err(other, go_path, "int64")),
    }
}

fn decode_bool(v: &Value, go_path: &str) -> Result<Option<bool>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        other => Err(type_err(other, go_path, "bool")),
    }
}

/// Decodes one ObjectMeta field as Go would, into its unstructured form (`None` = omitted). `json_path` is the
/// field's path for unknown nested fields (`ownerReferences[0].x`).
fn decode(
    v: &Value,
    kind: Kind,
    go_path: &str,
    json_path: &str,
    unknown: &mut Vec<String>,
) -> Result<Option<Value>, String> {
    Ok(match kind {
        Kind::Str => Some(decode_str(v, go_path)?).filter(|s| !s.is_empty()).map(Value::from),
        Kind::Int64 => decode_int(v, go_path)?.filter(|i| *i != 0).map(Value::from),
        Kind::OptInt64 => decode_int(v, go_path)?.map(Value::from),
        Kind::Time | Kind::OptTime => decode_time(v)?,
        Kind::StrMap => match v {
            Value::Null => None,
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, x) in m {
                    out.insert(k.clone(), Value::from(decode_str(x, go_path)?));
                }
                (!out.is_empty()).then_some(Value::Object(out))
            }
            other => return Err(type_err(other, go_path, "map[string]string")),
        },
        Kind::StrList => match v {
            Value::Null => None,
            Value::Array(a) => {
                let out: Vec<Value> =
                    a.iter().map(|x| decode_str(x, go_path).map(Value::from)).collect::<Result<_, _>>()?;
                (!out.is_empty()).then_some(Value::Array(out))
            }
            other => return Err(type_err(other, go_path, "[]string")),
        },
        Kind::OwnerRefs => {
            decode_list(v, go_path, json_path, "[]v1.OwnerReference", "v1.OwnerReference", unknown, decode_owner_ref)?
        }
        Kind::ManagedFields => decode_list(
            v,
            go_path,
            json_path,
            "[]v1.ManagedFieldsEntry",
            "v1.ManagedFieldsEntry",
            unknown,
            decode_managed_fields,
        )?,
    })
}

type ItemDecoder = fn(&Map<String, Value>, &str, &str, &mut Vec<String>) -> Result<Map<String, Value>, String>;

fn decode_list(
    v: &Value,
    go_path: &str,
    json_path: &str,
    list_type: &str,
    item_type: &str,
    unknown: &mut Vec<String>,
    item: ItemDecoder,
) -> Result<Option<Value>, String> {
    let a = match v {
        Value::Null => return Ok(None),
        Value::Array(a) => a,
        other => return Err(type_err(other, go_path, list_type)),
    };
    let mut out = Vec::new();
    for (i, x) in a.iter().enumerate() {
        let empty = Map::new();
        let m = match x {
            Value::Null => &empty,
            Value::Object(m) => m,
            other => return Err(type_err(other, go_path, item_type)),
        };
        out.push(Value::Object(item(m, go_path, &format!("{json_path}[{i}]"), unknown)?));
    }
    Ok((!out.is_empty()).then_some(Value::Array(out)))
}

fn decode_owner_ref(
    m: &Map<String, Value>,
    go_path: &str,
    json_path: &str,
    unknown: &mut Vec<String>,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for k in ["apiVersion", "kind", "name", "uid"] {
        let s = m.get(k).map(|v| decode_str(v, &format!("{go_path}.{k}"))).transpose()?.unwrap_or_default();
        out.insert(k.into(), Value::from(s));
    }
    for k in ["controller", "blockOwnerDeletion"] {
        if let Some(b) = m.get(k).map(|v| decode_bool(v, &format!("{go_path}.{k}"))).transpose()?.flatten() {
            out.insert(k.into(), Value::from(b));
        }
    }
    for k in m.keys() {
        if !["apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion"].contains(&k.as_str()) {
            unknown.push(format!("{json_path}.{k}"));
        }
    }
    Ok(out)
}

fn decode_managed_fields(
    m: &Map<String, Value>,
    go_path: &str,
    json_path: &str,
    unknown: &mut Vec<String>,
) -> Result<Map<String, Value>, String> {
    const KNOWN: [&str; 7] = ["manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1", "subresource"];
    let mut out = Map::new();
    for k in KNOWN {
        let Some(v) = m.get(k) else { continue };
        let d = match k {
            "time" => decode_time(v)?,
            "fieldsV1" => Some(v.clone()).filter(|v| !v.is_null()),
            _ => Some(decode_str(v, &format!("{go_path}.{k}"))?).filter(|s| !s.is_empty()).map(Value::from),
        };
        if let Some(d) = d {
            out.insert(k.into(), d);
        }
    }
    for k in m.keys() {
        if !KNOWN.contains(&k.as_str()) {
            unknown.push(format!("{json_path}.{k}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta_of(v: Value) -> Map<String, Value> {
        json!({"kind": "Pod", "apiVersion": "v1", "metadata": v}).as_object().unwrap().clone()
    }

    /// upstream TestGetObjectMetaWithOptions.
    #[test]
    fn get_object_meta_options() {
        let unknown_and_malformed = meta_of(
            json!({"name": "my-meta", "unknownField": "foo", "generateName": null, "generation": null, "labels": {"foo": "bar"}, "annotations": 11}),
        );
        let unknown_only = meta_of(
            json!({"name": "my-meta", "unknownField": "foo", "generateName": null, "generation": null, "labels": {"foo": "bar"}}),
        );
        let malformed_only = meta_of(
            json!({"name": "my-meta", "generateName": null, "generation": null, "labels": {"foo": "bar"}, "annotations": 11}),
        );
        let want = json!({"name": "my-meta", "labels": {"foo": "bar"}}).as_object().unwrap().clone();
        let err = "json: cannot unmarshal number into Go struct field ObjectMeta.annotations of type map[string]string";
        let opts = |drop, ret| ObjectMetaOptions {
            drop_malformed_fields: drop,
            return_unknown_field_paths: ret,
            parent_path: String::new(),
        };
        let unknown = vec!["metadata.unknownField".to_string()];
        for (obj, drop, ret, expect) in [
            (&unknown_and_malformed, false, false, Err(err)),
            (&unknown_and_malformed, true, false, Ok(vec![])),
            (&unknown_and_malformed, false, true, Err(err)),
            (&unknown_and_malformed, true, true, Ok(unknown.clone())),
            (&unknown_only, false, false, Ok(vec![])),
            (&unknown_only, true, false, Ok(vec![])),
            (&unknown_only, false, true, Ok(unknown.clone())),
            (&unknown_only, true, true, Ok(unknown.clone())),
            (&malformed_only, false, false, Err(err)),
            (&malformed_only, true, false, Ok(vec![])),
            (&malformed_only, false, true, Err(err)),
            (&malformed_only, true, true, Ok(vec![])),
        ] {
            match (get_object_meta(obj, &opts(drop, ret)), expect) {
                (Ok(Some((m, paths))), Ok(want_paths)) => {
                    assert_eq!(m, want);
                    assert_eq!(paths, want_paths);
                }
                (Err(e), Err(want_err)) => assert_eq!(e, want_err),
                (got, want) => panic!("{drop} {ret}: got {got:?}, want {want:?}"),
            }
        }
    }

    /// upstream TestGetObjectMetaNils and TestGetObjectMeta.
    #[test]
    fn nils_and_case_sensitivity() {
        let (m, _) = get_object_meta(
            &meta_of(json!({"generateName": null, "generation": null, "labels": {"foo": null}})),
            &ObjectMetaOptions { drop_malformed_fields: true, ..Default::default() },
        )
        .unwrap()
        .unwrap();
        assert_eq!(Value::Object(m), json!({"labels": {"foo": ""}}));
        let obj = meta_of(json!({
            "name": "good", "Name": "bad1", "nAme": "bad2", "naMe": "bad3", "namE": "bad4",
            "namespace": "good", "Namespace": "bad1", "nAmespace": "bad2", "naMespace": "bad3", "namEspace": "bad4",
            "creationTimestamp": "a",
        }));
        let (m, _) = get_object_meta(&obj, &ObjectMetaOptions { drop_malformed_fields: true, ..Default::default() })
            .unwrap()
            .unwrap();
        assert_eq!(Value::Object(m), json!({"name": "good", "namespace": "good"}));
    }

    #[test]
    fn round_trip_normalizes() {
        let obj = meta_of(json!({
            "name": "a", "generation": 0, "creationTimestamp": "2024-01-02T03:04:05.123+01:00",
            "deletionGracePeriodSeconds": 0, "finalizers": [], "labels": {},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u", "controller": true, "x": 1}],
            "managedFields": [{"manager": "m", "operation": "Update", "time": "2024-01-02T03:04:05Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}],
        }));
        let (m, unknown) =
            get_object_meta(&obj, &ObjectMetaOptions { return_unknown_field_paths: true, ..Default::default() })
                .unwrap()
                .unwrap();
        assert_eq!(
            Value::Object(m),
            json!({
                "name": "a", "creationTimestamp": "2024-01-02T02:04:05Z", "deletionGracePeriodSeconds": 0,
                "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u", "controller": true}],
                "managedFields": [{"manager": "m", "operation": "Update", "time": "2024-01-02T03:04:05Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}],
            })
        );
        assert_eq!(unknown, vec!["metadata.ownerReferences[0].x"]);
        assert_eq!(
            get_object_meta(&meta_of(json!({"generation": 1.5})), &ObjectMetaOptions::default()).unwrap_err(),
            "json: cannot unmarshal number 1.5 into Go struct field ObjectMeta.generation of type int64"
        );
        assert_eq!(
            get_object_meta(&meta_of(json!([42])), &ObjectMetaOptions::default()).unwrap_err(),
            "json: cannot unmarshal array into Go value of type v1.ObjectMeta"
        );
        assert_eq!(
            get_object_meta(
                &meta_of(json!([42])),
                &ObjectMetaOptions { drop_malformed_fields: true, ..Default::default() }
            )
            .unwrap_err(),
            "invalid metadata: expected object, got []interface {}"
        );
    }

    fn embedded_schema() -> Structural {
        Structural::new(&json!({"type": "object", "properties": {
            "pruned": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object"}}},
            "preserving": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true},
            "nested": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object", "properties": {
                "embedded": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object"}}},
            }}}},
        }}))
        .unwrap()
    }

    fn resource(meta: Value, extra_spec: Value) -> Value {
        let mut o = json!({"apiVersion": "foo/v1", "kind": "Foo", "unspecified": "bar", "metadata": meta, "spec": {"unspecified": "bar"}});
        for (k, v) in extra_spec.as_object().unwrap() {
            o["spec"][k] = v.clone();
        }
        o
    }

    /// upstream TestCoerce.
    #[test]
    fn coerce_table() {
        let dirty = json!({"name": "instance", "unspecified": "bar"});
        let clean = json!({"name": "instance"});
        let input = |root_meta: Value| {
            json!({
                "apiVersion": "foo/v1", "kind": "Foo", "metadata": root_meta, "unspecified": "bar",
                "pruned": resource(dirty.clone(), json!({})),
                "preserving": resource(dirty.clone(), json!({})),
                "nested": resource(dirty.clone(), json!({"embedded": resource(dirty.clone(), json!({}))})),
            })
        };
        let want = |root_meta: Value| {
            json!({
                "apiVersion": "foo/v1", "kind": "Foo", "metadata": root_meta, "unspecified": "bar",
                "pruned": resource(clean.clone(), json!({})),
                "preserving": resource(clean.clone(), json!({})),
                "nested": resource(clean.clone(), json!({"embedded": resource(clean.clone(), json!({}))})),
            })
        };
        let s = embedded_schema();
        let mut obj = input(dirty.clone());
        let opts = CoerceOptions { return_unknown_field_paths: true, ..Default::default() };
        let unknown = coerce("", &mut obj, Some(&s), false, opts).unwrap();
        assert_eq!(obj, want(dirty.clone()));
        assert_eq!(
            unknown,
            vec![
                "nested.metadata.unspecified",
                "nested.spec.embedded.metadata.unspecified",
                "preserving.metadata.unspecified",
                "pruned.metadata.unspecified",
            ]
        );

        let mut obj = input(dirty.clone());
        coerce("", &mut obj, Some(&s), true, CoerceOptions::default()).unwrap();
        assert_eq!(obj, want(clean.clone()));

        // without name
        let mut obj = json!({"apiVersion": "foo/v1", "kind": "Foo", "metadata": {"name": "instance"}, "pruned": {"apiVersion": "foo/v1", "kind": "Foo", "metadata": {"namespace": "kube-system"}}});
        let before = obj.clone();
        let s2 = Structural::new(&json!({"type": "object", "properties": {"pruned": {"type": "object", "x-kubernetes-embedded-resource": true}}})).unwrap();
        coerce("", &mut obj, Some(&s2), false, CoerceOptions::default()).unwrap();
        assert_eq!(obj, before);

        // dropInvalidFields
        let drop = CoerceOptions { drop_invalid_fields: true, ..Default::default() };
        let mut obj = json!({"apiVersion": "foo/v1", "kind": "Foo", "metadata": {"name": "instance"},
            "pruned": {"apiVersion": 42, "kind": 42, "metadata": {"name": "instance", "namespace": ["abc"], "labels": {"foo": 42}}}});
        coerce("", &mut obj, Some(&s), false, drop).unwrap();
        assert_eq!(
            obj,
            json!({"apiVersion": "foo/v1", "kind": "Foo", "metadata": {"name": "instance"}, "pruned": {"metadata": {"name": "instance"}}})
        );
        let mut obj = json!({"apiVersion": "foo/v1", "kind": "Foo", "metadata": {"name": "instance"}, "pruned": {"apiVersion": 42, "kind": 42, "metadata": [42]}});
        coerce("", &mut obj, Some(&s2), false, drop).unwrap();
        assert_eq!(
            obj,
            json!({"apiVersion": "foo/v1", "kind": "Foo", "metadata": {"name": "instance"}, "pruned": {"metadata": [42]}})
        );

        // Without dropping, a wrong type is an error at its path.
        let mut obj = json!({"pruned": {"apiVersion": 42, "kind": "Foo"}});
        assert_eq!(
            coerce("", &mut obj, Some(&s), false, CoerceOptions::default()).unwrap_err().to_string(),
            "pruned.apiVersion: Invalid value: 42: must be a string"
        );
    }

    fn kinds(errs: Vec<FieldError>) -> Vec<(String, &'static str)> {
        let mut v: Vec<(String, &'static str)> = errs.into_iter().map(|e| (e.field, e.kind.reason())).collect();
        v.sort();
        v
    }

    /// upstream TestValidateEmbeddedResource.
    #[test]
    fn embedded_resource_table() {
        let req = |p: &str| (p.to_string(), "FieldValueRequired");
        let inv = |p: &str| (p.to_string(), "FieldValueInvalid");
        let run = |o: Value| kinds(validate_embedded_resource("", o.as_object().unwrap()));
        assert_eq!(run(json!({})), vec![req("apiVersion"), req("kind")]);
        assert!(run(json!({"apiVersion": "foo/v1", "kind": "Foo"})).is_empty());
        assert_eq!(run(json!({"apiVersion": "foo/v1", "kind": "foo.bar-com"})), vec![inv("kind")]);
        assert!(
            run(json!({"apiVersion": "foo/v1", "kind": "Foo", "metadata": {"namespace": "kube-system"}})).is_empty()
        );
        assert!(run(json!({"apiVersion": "foo/v1", "kind": "Foo", "metadata": {"name": "foo"}})).is_empty());
        assert_eq!(
            run(
                json!({"apiVersion": "foo/v1", "kind": "Foo", "metadata": {"name": "..", "namespace": "$$$", "labels": {"#": "#"}, "annotations": {"#": "#"}}})
            ),
            vec![
                inv("metadata.annotations"),
                inv("metadata.labels"),
                inv("metadata.labels"),
                inv("metadata.name"),
                inv("metadata.namespace")
            ]
        );
        let errs = validate_embedded_resource(
            "",
            json!({"apiVersion": "a/b/c", "kind": "Foo", "metadata": {"name": "a/b"}}).as_object().unwrap(),
        );
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            msgs,
            vec![
                "apiVersion: Invalid value: \"a/b/c\": unexpected GroupVersion string: a/b/c",
                "metadata.name: Invalid value: \"a/b\": may not contain '/'",
            ]
        );
    }

    /// upstream TestValidate.
    #[test]
    fn validate_table() {
        let s = Structural::new(&json!({"properties": {
            "embedded": {"x-kubernetes-embedded-resource": true},
            "nested": {"x-kubernetes-embedded-resource": true, "properties": {"embedded": {"x-kubernetes-embedded-resource": true}}},
            "items": {"items": {"x-kubernetes-embedded-resource": true}},
            "additionalProperties": {"additionalProperties": {"x-kubernetes-embedded-resource": true}},
        }}))
        .unwrap();
        let req = |p: &str| (p.to_string(), "FieldValueRequired");
        let run = |o: Value, root: bool| kinds(validate("", &o, Some(&s), root));
        assert!(run(json!({}), false).is_empty());
        assert_eq!(run(json!({}), true), vec![req("apiVersion"), req("kind")]);
        assert_eq!(run(json!({"embedded": {}}), false), vec![req("embedded.apiVersion"), req("embedded.kind")]);
        assert_eq!(
            run(json!({"nested": {"embedded": {}}}), false),
            vec![
                req("nested.apiVersion"),
                req("nested.embedded.apiVersion"),
                req("nested.embedded.kind"),
                req("nested.kind")
            ]
        );
        assert_eq!(run(json!({"items": [{}]}), false), vec![req("items[0].apiVersion"), req("items[0].kind")]);
        assert_eq!(
            run(json!({"additionalProperties": {"foo": {}}}), false),
            vec![req("additionalProperties[foo].apiVersion"), req("additionalProperties[foo].kind")]
        );
    }

    #[test]
    fn upstream_name_messages() {
        assert_eq!(
            qualified_name_errors("#"),
            vec![
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
            ]
        );
        assert_eq!(
            dns1035_label_errors("foo.bar-com"),
            vec![
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
    }
}
