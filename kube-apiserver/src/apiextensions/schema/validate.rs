//! Custom resource validation against the `openAPIV3Schema`, with kube-openapi's `validate.SchemaValidator`
//! semantics (type, format, enum, pattern, bounds, lengths, items, properties, required, allOf/anyOf/oneOf/not,
//! nullable, int-or-string) and the field errors apiextensions' `ValidateCustomResource` makes of its results
//! (`kubeOpenAPIResultToFieldErrors`): `spec.replicas: Invalid value: "string": spec.replicas in body must be of
//! type integer: "string"`, `Required value`, `Unsupported value: "x": supported values: "a", "b"`...
//! The schema is compiled once ([`Validator::new`]); patterns use the `regex` crate (RE2 syntax, as Go's).

use super::field::{FieldError, child, go_float, go_json, go_quote, go_v};
use super::formats;
use super::structural_check::regex_error;
use regex::Regex;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A compiled `openAPIV3Schema`, as apiextensions converts a JSONSchemaProps into a kube-openapi `spec.Schema`
/// (`x-kubernetes-int-or-string` = types integer and string; unsupported formats stripped).
#[derive(Debug, Clone, Default)]
pub struct Schema {
    types: Vec<String>,
    nullable: bool,
    format: String,
    maximum: Option<f64>,
    exclusive_maximum: bool,
    minimum: Option<f64>,
    exclusive_minimum: bool,
    max_length: Option<i64>,
    min_length: Option<i64>,
    pattern: Option<(String, Result<Regex, String>)>,
    max_items: Option<i64>,
    min_items: Option<i64>,
    unique_items: bool,
    multiple_of: Option<f64>,
    enum_: Vec<Value>,
    max_properties: Option<i64>,
    min_properties: Option<i64>,
    required: Vec<String>,
    all_of: Vec<Schema>,
    one_of: Vec<Schema>,
    any_of: Vec<Schema>,
    not: Option<Box<Schema>>,
    properties: BTreeMap<String, Schema>,
    additional_properties: Option<(bool, Option<Box<Schema>>)>,
    items: Option<Box<Schema>>,
}

impl Schema {
    fn compile(s: &Value) -> Result<Schema, String> {
        let int = |k: &str| s.get(k).and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)));
        let list = |k: &str| -> Result<Vec<Schema>, String> {
            s.get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter().map(Schema::compile).collect())
                .unwrap_or(Ok(Vec::new()))
        };
        let mut types = Vec::new();
        if let Some(t) = s.get("type").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            types.push(t.to_string());
        }
        if s.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
            types = vec!["integer".into(), "string".into()];
        }
        let format = formats::strip_unsupported(s.get("format").and_then(Value::as_str).unwrap_or_default(), &types);
        if s.get("items").is_some_and(Value::is_array) {
            return Err("OpenAPIV3Schema 'items' must be a schema, but is an array".into());
        }
        let mut properties = BTreeMap::new();
        for (k, v) in s.get("properties").and_then(Value::as_object).into_iter().flatten() {
            properties.insert(k.clone(), Schema::compile(v)?);
        }
        Ok(Schema {
            types,
            nullable: s.get("nullable").and_then(Value::as_bool).unwrap_or(false),
            format,
            maximum: s.get("maximum").and_then(Value::as_f64),
            exclusive_maximum: s.get("exclusiveMaximum").and_then(Value::as_bool).unwrap_or(false),
            minimum: s.get("minimum").and_then(Value::as_f64),
            exclusive_minimum: s.get("exclusiveMinimum").and_then(Value::as_bool).unwrap_or(false),
            max_length: int("maxLength"),
            min_length: int("minLength"),
            pattern: s
                .get("pattern")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .map(|p| (p.to_string(), Regex::new(p).map_err(|e| regex_error(p, &e)))),
            max_items: int("maxItems"),
            min_items: int("minItems"),
            unique_items: s.get("uniqueItems").and_then(Value::as_bool).unwrap_or(false),
            multiple_of: s.get("multipleOf").and_then(Value::as_f64),
            enum_: s.get("enum").and_then(Value::as_array).cloned().unwrap_or_default(),
            max_properties: int("maxProperties"),
            min_properties: int("minProperties"),
            required: s
                .get("required")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
                .unwrap_or_default(),
            all_of: list("allOf")?,
            one_of: list("oneOf")?,
            any_of: list("anyOf")?,
            not: match s.get("not").filter(|n| n.is_object()) {
                Some(n) => Some(Box::new(Schema::compile(n)?)),
                None => None,
            },
            properties,
            additional_properties: match s.get("additionalProperties") {
                Some(Value::Bool(b)) => Some((*b, None)),
                Some(v @ Value::Object(_)) => Some((true, Some(Box::new(Schema::compile(v)?)))),
                _ => None,
            },
            items: match s.get("items").filter(|i| i.is_object()) {
                Some(i) => Some(Box::new(Schema::compile(i)?)),
                None => None,
            },
        })
    }
}

/// The validator of one CRD version's schema.
#[derive(Debug, Clone)]
pub struct Validator {
    root: Schema,
}

impl Validator {
    /// Compiles an `openAPIV3Schema` (JSONSchemaProps JSON).
    pub fn new(open_api_v3_schema: &Value) -> Result<Validator, String> {
        Ok(Validator { root: Schema::compile(open_api_v3_schema)? })
    }

    /// upstream `ValidateCustomResource(nil, obj, validator)`: the field errors of a custom resource.
    pub fn validate(&self, obj: &Value) -> Vec<FieldError> {
        self.validate_at("", obj)
    }

    /// The same, with the errors under `base` (upstream's `fldPath`).
    pub fn validate_at(&self, base: &str, obj: &Value) -> Vec<FieldError> {
        validate_schema(&self.root, "", obj).errors.into_iter().map(|e| e.into_field_error(base)).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    InvalidType,
    Required,
    TooLong,
    TooShort,
    Pattern,
    Enum,
    MultipleOf,
    Max,
    Min,
    Unique,
    MaxItems,
    MinItems,
    TooFewProperties,
    TooManyProperties,
    UnallowedProperty,
    MultipleOfMustBePositive,
}

/// kube-openapi's errors: an `errors.Validation` (code, name, value) or a plain error (composite messages, range
/// checks), which apiextensions reports at the root.
#[derive(Debug, Clone)]
enum OpenApiError {
    Validation {
        code: Code,
        name: String,
        value: Option<Value>,
        valid: Option<i64>,
        values: Vec<Value>,
        message: String,
    },
    Plain(String),
}

impl OpenApiError {
    fn message(&self) -> &str {
        match self {
            OpenApiError::Validation { message, .. } | OpenApiError::Plain(message) => message,
        }
    }

    fn v(code: Code, name: &str, value: Option<Value>, message: String) -> Self {
        OpenApiError::Validation { code, name: name.to_string(), value, valid: None, values: Vec::new(), message }
    }

    fn with_valid(mut self, n: i64) -> Self {
        if let OpenApiError::Validation { valid, .. } = &mut self {
            *valid = Some(n);
        }
        self
    }

    /// apiextensions' `kubeOpenAPIResultToFieldErrors`.
    fn into_field_error(self, base: &str) -> FieldError {
        let (code, name, value, valid, values, message) = match self {
            OpenApiError::Plain(m) => return FieldError::invalid(base, Value::from(""), m),
            OpenApiError::Validation { code, name, value, valid, values, message } => {
                (code, name, value, valid, values, message)
            }
        };
        let path = if !name.is_empty() && name != "." {
            child(base, name.strip_prefix('.').unwrap_or(&name))
        } else {
            base.to_string()
        };
        let value_or_empty = || value.clone().unwrap_or_else(|| Value::from(""));
        match code {
            Code::Required => FieldError::required(&path, ""),
            Code::Enum => {
                let allowed: Vec<String> =
                    values.iter().map(|v| v.as_str().map(String::from).unwrap_or_else(|| go_json(v))).collect();
                FieldError::not_supported(&path, value.unwrap_or(Value::Null), &allowed)
            }
            Code::TooLong => FieldError::too_long(&path, value_or_empty(), valid.unwrap_or(-1)),
            Code::MaxItems | Code::TooManyProperties => {
                FieldError::too_many(&path, value.as_ref().and_then(Value::as_i64).unwrap_or(-1), valid.unwrap_or(-1))
            }
            Code::InvalidType => FieldError::type_invalid(&path, value_or_empty(), message),
            _ => FieldError::invalid(&path, value_or_empty(), message),
        }
    }
}

/// kube-openapi's `validate.Result`: errors (deduplicated by message) and the match count anyOf/oneOf rank by.
#[derive(Debug, Default)]
struct Outcome {
    errors: Vec<OpenApiError>,
    count: usize,
}

impl Outcome {
    fn err(e: OpenApiError) -> Self {
        let mut o = Outcome::default();
        o.add(e);
        o
    }

    fn add(&mut self, e: OpenApiError) {
        if !self.errors.iter().any(|x| x.message() == e.message()) {
            self.errors.push(e);
        }
    }

    fn merge(&mut self, other: Outcome) {
        for e in other.errors {
            self.add(e);
        }
        self.count += other.count;
    }

    fn valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// A JSON number as Go decodes it: int64 when integral and in range, else float64.
#[derive(Clone, Copy)]
enum Num {
    I(i64),
    F(f64),
}

fn num(n: &serde_json::Number) -> Num {
    match n.as_i64() {
        Some(i) => Num::I(i),
        None => Num::F(n.as_f64().unwrap_or(0.0)),
    }
}

fn num_value(n: Num) -> Value {
    match n {
        Num::I(i) => Value::from(i),
        Num::F(f) => Value::from(f),
    }
}

/// swag's `IsFloat64AJSONInteger`.
fn is_json_integer(f: f64) -> bool {
    const MAX: f64 = 9007199254740991.0;
    if !f.is_finite() || !(-MAX..=MAX).contains(&f) {
        return false;
    }
    let g = f.trunc();
    if f == g {
        return true;
    }
    let diff = (f - g).abs();
    if g == 0.0 { diff < 1e-12 } else { diff / (f.abs() + g.abs()).min(f64::MAX) < 1e-9 }
}

fn invalid_type(name: &str, type_name: &str, value: &str) -> OpenApiError {
    OpenApiError::v(
        Code::InvalidType,
        name,
        Some(Value::from(value)),
        format!("{name} in body must be of type {type_name}: {}", go_quote(value)),
    )
}

/// `SchemaValidator.Validate`: the validators in kube-openapi's order, each where it applies.
fn validate_schema(s: &Schema, path: &str, data: &Value) -> Outcome {
    let mut r = Outcome::default();
    if data.is_null() {
        r.merge(type_validator(s, path, data));
        r.merge(enum_validator(s, path, data));
        return r;
    }
    let step = |r: &mut Outcome, o: Outcome| {
        r.merge(o);
        r.count += 1;
    };
    if !s.types.is_empty() || !s.format.is_empty() {
        step(&mut r, type_validator(s, path, data));
    }
    step(&mut r, props_validator(s, path, data));
    if let Value::String(st) = data {
        step(&mut r, string_validator(s, path, st));
        if formats::known(&s.format) {
            let o = if formats::validates(&s.format, st) {
                Outcome::default()
            } else {
                Outcome::err(invalid_type(path, &s.format, st))
            };
            step(&mut r, o);
        }
    }
    if let Value::Number(n) = data {
        step(&mut r, number_validator(s, path, num(n)));
    }
    if let Value::Array(a) = data {
        step(&mut r, slice_validator(s, path, a));
    }
    step(&mut r, enum_validator(s, path, data));
    if let Value::Object(m) = data {
        step(&mut r, object_validator(s, path, m));
    }
    r.count += 1;
    r
}

fn type_validator(s: &Schema, path: &str, data: &Value) -> Outcome {
    let ok = Outcome { errors: Vec::new(), count: 1 };
    let has = |t: &str| s.types.iter().any(|x| x == t);
    let (sch_type, fmt) = match data {
        Value::Null => {
            if !s.types.is_empty() && !has("null") && !s.nullable {
                return Outcome::err(invalid_type(path, &s.types.join(","), "null"));
            }
            return ok;
        }
        Value::Bool(_) => ("boolean", ""),
        Value::String(_) => ("string", ""),
        Value::Number(n) if n.is_i64() => ("integer", "int64"),
        Value::Number(_) => ("number", "float64"),
        Value::Array(_) => ("array", ""),
        Value::Object(_) => ("object", ""),
    };
    let is_float_int = sch_type == "number" && data.as_f64().is_some_and(is_json_integer) && has("integer");
    let is_int_float = sch_type == "integer" && has("number");
    let string_or_slice = data.is_string() || data.is_array();
    let format_matches = has(sch_type) || fmt == s.format || is_float_int || is_int_float;
    if !string_or_slice && !s.format.is_empty() && !format_matches {
        return Outcome::err(invalid_type(path, &s.format, fmt));
    }
    let numeric = has("number") || has("integer");
    if !numeric && !s.format.is_empty() && string_or_slice {
        return ok;
    }
    if !(has(sch_type) || is_float_int || is_int_float) {
        return Outcome::err(invalid_type(path, &s.types.join(","), sch_type));
    }
    ok
}

fn props_validator(s: &Schema, path: &str, data: &Value) -> Outcome {
    let mut main = Outcome::default();
    let q = go_quote(path);
    if !s.any_of.is_empty() {
        let mut best: Option<Outcome> = None;
        let mut first_success: Option<Outcome> = None;
        for sub in &s.any_of {
            let r = validate_schema(sub, path, data);
            if r.valid() {
                best = None;
                first_success = Some(r);
                break;
            }
            if best.as_ref().is_none_or(|b| r.count > b.count) {
                best = Some(r);
            }
        }
        if first_success.is_none() {
            main.add(OpenApiError::Plain(format!("{q} must validate at least one schema (anyOf)")));
        }
        if let Some(b) = best {
            main.merge(b);
        } else if let Some(f) = first_success {
            main.merge(f);
        }
    }
    if !s.one_of.is_empty() {
        let mut best: Option<Outcome> = None;
        let mut first_success: Option<Outcome> = None;
        let mut validated = 0;
        for sub in &s.one_of {
            let r = validate_schema(sub, path, data);
            if r.valid() {
                validated += 1;
                best = None;
                first_success.get_or_insert(r);
                continue;
            }
            if validated == 0 && best.as_ref().is_none_or(|b| r.count > b.count) {
                best = Some(r);
            }
        }
        if validated != 1 {
            let why = if validated == 0 {
                "Found none valid".to_string()
            } else {
                format!("Found {validated} valid alternatives")
            };
            main.add(OpenApiError::Plain(format!("{q} must validate one and only one schema (oneOf). {why}")));
            if let Some(b) = best {
                main.merge(b);
            }
        } else if let Some(f) = first_success {
            main.merge(f);
        }
    }
    if !s.all_of.is_empty() {
        let mut validated = 0;
        for sub in &s.all_of {
            let r = validate_schema(sub, path, data);
            if r.valid() {
                validated += 1;
            }
            main.merge(r);
        }
        if validated != s.all_of.len() {
            let why = if validated == 0 { ". None validated" } else { "" };
            main.add(OpenApiError::Plain(format!("{q} must validate all the schemas (allOf){why}")));
        }
    }
    if let Some(not) = &s.not
        && validate_schema(not, path, data).valid()
    {
        main.add(OpenApiError::Plain(format!("{q} must not validate the schema (not)")));
    }
    main.count += 1;
    main
}

fn string_validator(s: &Schema, path: &str, data: &str) -> Outcome {
    let runes = data.chars().count() as i64;
    let value = || Some(Value::from(data));
    if let Some(max) = s.max_length.filter(|m| runes > *m) {
        return Outcome::err(
            OpenApiError::v(Code::TooLong, path, value(), format!("{path} in body should be at most {max} chars long"))
                .with_valid(max),
        );
    }
    if let Some(min) = s.min_length.filter(|m| runes < *m) {
        return Outcome::err(
            OpenApiError::v(
                Code::TooShort,
                path,
                value(),
                format!("{path} in body should be at least {min} chars long"),
            )
            .with_valid(min),
        );
    }
    if let Some((p, re)) = &s.pattern {
        match re {
            Err(e) => {
                return Outcome::err(OpenApiError::v(
                    Code::Pattern,
                    path,
                    value(),
                    format!("{path} in body should match '{p}, but pattern is invalid: {e}'"),
                ));
            }
            Ok(re) if !re.is_match(data) => {
                return Outcome::err(OpenApiError::v(
                    Code::Pattern,
                    path,
                    value(),
                    format!("{path} in body should match '{p}'"),
                ));
            }
            Ok(_) => {}
        }
    }
    Outcome::default()
}

/// `numberValidator` as kube-openapi has it in 1.33: multipleOf, minimum and maximum compared in the value's
/// native type (int64 or float64); no format range checks (those came to kube-openapi after 1.33).
fn number_validator(s: &Schema, path: &str, v: Num) -> Outcome {
    let value = Some(num_value(v));
    let mut res = Outcome::default();
    if let Some(factor) = s.multiple_of {
        let positive = |f: Value| {
            OpenApiError::v(
                Code::MultipleOfMustBePositive,
                path,
                Some(f.clone()),
                format!("factor MultipleOf declared for {path} must be positive: {}", go_v(&f)),
            )
        };
        let not_multiple = |f: Value| {
            OpenApiError::v(
                Code::MultipleOf,
                path,
                value.clone(),
                format!("{path} in body should be a multiple of {}", go_v(&f)),
            )
        };
        match v {
            Num::I(d) => {
                let f = factor as i64;
                if f <= 0 {
                    res.add(positive(Value::from(f)));
                } else if (d / f) * f != d {
                    res.add(not_multiple(Value::from(f)));
                }
            }
            Num::F(d) => {
                if factor <= 0.0 {
                    res.add(positive(Value::from(factor)));
                } else {
                    let mult = if factor < 1.0 { 1.0 / factor * d } else { d / factor };
                    if !is_json_integer(mult) {
                        res.add(not_multiple(Value::from(factor)));
                    }
                }
            }
        }
    }
    let mut bound = |limit: f64, exclusive: bool, is_max: bool| {
        let (violates, shown) = match v {
            Num::I(d) => {
                let l = limit as i64;
                (if is_max { d > l || (exclusive && d == l) } else { d < l || (exclusive && d == l) }, l.to_string())
            }
            Num::F(d) => (
                if is_max { d > limit || (exclusive && d >= limit) } else { d < limit || (exclusive && d <= limit) },
                go_float(limit),
            ),
        };
        if violates {
            let (code, rel) = match (is_max, exclusive) {
                (true, false) => (Code::Max, "less than or equal to"),
                (true, true) => (Code::Max, "less than"),
                (false, false) => (Code::Min, "greater than or equal to"),
                (false, true) => (Code::Min, "greater than"),
            };
            res.add(OpenApiError::v(code, path, value.clone(), format!("{path} in body should be {rel} {shown}")));
        }
    };
    if let Some(m) = s.minimum {
        bound(m, s.exclusive_minimum, false);
    }
    if let Some(m) = s.maximum {
        bound(m, s.exclusive_maximum, true);
    }
    res.count += 1;
    res
}

fn slice_validator(s: &Schema, path: &str, a: &[Value]) -> Outcome {
    let mut res = Outcome::default();
    if let Some(items) = &s.items {
        for (i, v) in a.iter().enumerate() {
            res.merge(validate_schema(items, &format!("{path}[{i}]"), v));
        }
    }
    let size = a.len() as i64;
    if let Some(min) = s.min_items.filter(|m| size < *m) {
        res.add(
            OpenApiError::v(
                Code::MinItems,
                path,
                Some(Value::from(size)),
                format!("{path} in body should have at least {min} items"),
            )
            .with_valid(min),
        );
    }
    if let Some(max) = s.max_items.filter(|m| size > *m) {
        res.add(
            OpenApiError::v(
                Code::MaxItems,
                path,
                Some(Value::from(size)),
                format!("{path} in body should have at most {max} items"),
            )
            .with_valid(max),
        );
    }
    if s.unique_items && a.iter().enumerate().any(|(i, x)| a[..i].contains(x)) {
        res.add(OpenApiError::v(Code::Unique, path, None, format!("{path} in body shouldn't contain duplicates")));
    }
    res.count += 1;
    res
}

/// `basicCommonValidator`: Go's `reflect` equality after converting the value to the enum entry's type (so numbers
/// compare across int64/float64, a float truncated to an integer entry).
fn enum_validator(s: &Schema, path: &str, data: &Value) -> Outcome {
    if s.enum_.is_empty() {
        return Outcome::default();
    }
    for e in &s.enum_ {
        let equal = match (data, e) {
            (_, Value::Null) | (Value::Null, _) => false,
            (Value::Number(d), Value::Number(n)) => match (num(d), num(n)) {
                (Num::I(a), Num::I(b)) => a == b,
                (Num::F(a), Num::F(b)) => a == b,
                (Num::I(a), Num::F(b)) => a as f64 == b,
                (Num::F(a), Num::I(b)) => a as i64 == b,
            },
            (d, e) => d == e,
        };
        if equal {
            return Outcome::default();
        }
    }
    Outcome::err(OpenApiError::Validation {
        code: Code::Enum,
        name: path.to_string(),
        value: Some(data.clone()),
        valid: None,
        values: s.enum_.clone(),
        message: format!("{path} in body should be one of {}", go_v(&Value::Array(s.enum_.clone()))),
    })
}

fn object_validator(s: &Schema, path: &str, m: &Map<String, Value>) -> Outcome {
    let mut res = Outcome::default();
    let n = m.len() as i64;
    if let Some(min) = s.min_properties.filter(|x| n < *x) {
        res.add(OpenApiError::v(
            Code::TooFewProperties,
            path,
            Some(Value::from(n)),
            format!("{path} in body should have at least {min} properties"),
        ));
    }
    if let Some(max) = s.max_properties.filter(|x| n > *x) {
        res.add(
            OpenApiError::v(
                Code::TooManyProperties,
                path,
                Some(Value::from(n)),
                format!("{path} in body should have at most {max} properties"),
            )
            .with_valid(max),
        );
    }
    match &s.additional_properties {
        Some((false, _)) => {
            for k in m.keys().filter(|k| !s.properties.contains_key(*k)) {
                res.add(OpenApiError::v(
                    Code::UnallowedProperty,
                    path,
                    Some(Value::from(k.as_str())),
                    format!("{path}.{k} in body is a forbidden property"),
                ));
            }
        }
        Some((true, Some(ap))) => {
            for (k, v) in m.iter().filter(|(k, _)| !s.properties.contains_key(*k)) {
                res.merge(validate_schema(ap, &format!("{path}.{k}"), v));
            }
        }
        _ => {}
    }
    for (name, ps) in &s.properties {
        if let Some(v) = m.get(name) {
            let r = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
            res.merge(validate_schema(ps, &r, v));
        }
    }
    for k in &s.required {
        if !m.contains_key(k) {
            let name = format!("{path}.{k}");
            let message = format!("{name} in body is required");
            res.add(OpenApiError::v(Code::Required, &name, None, message));
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errs(schema: Value, obj: Value) -> Vec<String> {
        Validator::new(&schema).unwrap().validate(&obj).iter().map(|e| e.to_string()).collect()
    }

    fn spec(props: Value) -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": props}}})
    }

    #[test]
    fn types() {
        assert_eq!(
            errs(spec(json!({"replicas": {"type": "integer"}})), json!({"spec": {"replicas": "3"}})),
            vec!["spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""]
        );
        let c = Validator::new(&spec(json!({"replicas": {"type": "integer"}})))
            .unwrap()
            .validate(&json!({"spec": {"replicas": true}}));
        assert_eq!(c[0].to_cause().reason, "FieldValueTypeInvalid");
        assert!(errs(spec(json!({"replicas": {"type": "integer"}})), json!({"spec": {"replicas": 3.0}})).is_empty());
        assert_eq!(
            errs(spec(json!({"replicas": {"type": "integer"}})), json!({"spec": {"replicas": 3.5}})),
            vec!["spec.replicas: Invalid value: \"number\": spec.replicas in body must be of type integer: \"number\""]
        );
        assert!(errs(spec(json!({"ratio": {"type": "number"}})), json!({"spec": {"ratio": 3}})).is_empty());
        assert_eq!(
            errs(spec(json!({"name": {"type": "string"}})), json!({"spec": {"name": null}})),
            vec!["spec.name: Invalid value: \"null\": spec.name in body must be of type string: \"null\""]
        );
        assert!(
            errs(spec(json!({"name": {"type": "string", "nullable": true}})), json!({"spec": {"name": null}}))
                .is_empty()
        );
        assert_eq!(
            errs(
                spec(json!({"tags": {"type": "array", "items": {"type": "string"}}})),
                json!({"spec": {"tags": ["a", 1]}})
            ),
            vec!["spec.tags[1]: Invalid value: \"integer\": spec.tags[1] in body must be of type string: \"integer\""]
        );
        assert_eq!(
            errs(spec(json!({"obj": {"type": "object"}})), json!({"spec": {"obj": []}})),
            vec!["spec.obj: Invalid value: \"array\": spec.obj in body must be of type object: \"array\""]
        );
        let ios = spec(
            json!({"port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}}),
        );
        assert!(errs(ios.clone(), json!({"spec": {"port": 80}})).is_empty());
        assert!(errs(ios.clone(), json!({"spec": {"port": "http"}})).is_empty());
        assert_eq!(
            errs(ios, json!({"spec": {"port": true}}))[0],
            "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\""
        );
        // The root type.
        assert_eq!(
            errs(json!({"type": "object"}), json!([])),
            vec!["<nil>: Invalid value: \"array\":  in body must be of type object: \"array\""]
        );
    }

    #[test]
    fn required_enum_and_strings() {
        assert_eq!(
            errs(
                json!({"type": "object", "required": ["spec"], "properties": {"spec": {"type": "object", "required": ["size"]}}}),
                json!({"spec": {}})
            ),
            vec!["spec.size: Required value"]
        );
        assert_eq!(errs(json!({"type": "object", "required": ["spec"]}), json!({})), vec!["spec: Required value"]);
        assert_eq!(
            errs(spec(json!({"mode": {"type": "string", "enum": ["a", "b"]}})), json!({"spec": {"mode": "x"}})),
            vec!["spec.mode: Unsupported value: \"x\": supported values: \"a\", \"b\""]
        );
        assert_eq!(
            errs(spec(json!({"n": {"type": "integer", "enum": [1, 2]}})), json!({"spec": {"n": 3}})),
            vec!["spec.n: Unsupported value: 3: supported values: \"1\", \"2\""]
        );
        assert!(errs(spec(json!({"n": {"type": "number", "enum": [1.0, 2.5]}})), json!({"spec": {"n": 1}})).is_empty());
        assert_eq!(
            errs(spec(json!({"name": {"type": "string", "pattern": "^a"}})), json!({"spec": {"name": "ba"}})),
            vec!["spec.name: Invalid value: \"ba\": spec.name in body should match '^a'"]
        );
        assert_eq!(
            errs(spec(json!({"name": {"type": "string", "maxLength": 3}})), json!({"spec": {"name": "abcd"}})),
            vec!["spec.name: Too long: may not be more than 3 bytes"]
        );
        assert!(
            errs(spec(json!({"name": {"type": "string", "maxLength": 3}})), json!({"spec": {"name": "äöü"}}))
                .is_empty(),
            "runes"
        );
        assert_eq!(
            errs(spec(json!({"name": {"type": "string", "minLength": 3}})), json!({"spec": {"name": "ab"}})),
            vec!["spec.name: Invalid value: \"ab\": spec.name in body should be at least 3 chars long"]
        );
    }

    #[test]
    fn numbers() {
        let size = spec(json!({"size": {"type": "integer", "minimum": 1, "maximum": 10}}));
        assert_eq!(
            errs(size.clone(), json!({"spec": {"size": 0}})),
            vec!["spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"]
        );
        assert_eq!(
            errs(size, json!({"spec": {"size": 11}})),
            vec!["spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"]
        );
        let excl = spec(
            json!({"r": {"type": "number", "minimum": 0.5, "exclusiveMinimum": true, "maximum": 2, "exclusiveMaximum": true}}),
        );
        assert_eq!(
            errs(excl.clone(), json!({"spec": {"r": 0.5}})),
            vec!["spec.r: Invalid value: 0.5: spec.r in body should be greater than 0.5"]
        );
        assert_eq!(
            errs(excl, json!({"spec": {"r": 2.0}})),
            vec!["spec.r: Invalid value: 2: spec.r in body should be less than 2"]
        );
        assert_eq!(
            errs(spec(json!({"n": {"type": "integer", "multipleOf": 3}})), json!({"spec": {"n": 4}})),
            vec!["spec.n: Invalid value: 4: spec.n in body should be a multiple of 3"]
        );
        // 1.33's kube-openapi does not range-check formats.
        assert!(
            errs(spec(json!({"n": {"type": "integer", "format": "int32"}})), json!({"spec": {"n": 3000000000i64}}))
                .is_empty()
        );
    }

    #[test]
    fn collections() {
        let list = spec(json!({"l": {"type": "array", "minItems": 2, "maxItems": 3, "items": {"type": "integer"}}}));
        assert_eq!(
            errs(list.clone(), json!({"spec": {"l": [1]}})),
            vec!["spec.l: Invalid value: 1: spec.l in body should have at least 2 items"]
        );
        assert_eq!(
            errs(list, json!({"spec": {"l": [1, 2, 3, 4]}})),
            vec!["spec.l: Too many: 4: must have at most 3 items"]
        );
        assert_eq!(
            errs(
                spec(json!({"l": {"type": "array", "uniqueItems": true, "items": {"type": "integer"}}})),
                json!({"spec": {"l": [1, 1]}})
            ),
            vec!["spec.l: Invalid value: \"\": spec.l in body shouldn't contain duplicates"]
        );
        let props = spec(
            json!({"m": {"type": "object", "minProperties": 1, "maxProperties": 2, "additionalProperties": {"type": "string"}}}),
        );
        assert_eq!(
            errs(props.clone(), json!({"spec": {"m": {}}})),
            vec!["spec.m: Invalid value: 0: spec.m in body should have at least 1 properties"]
        );
        assert_eq!(
            errs(props.clone(), json!({"spec": {"m": {"a": "", "b": "", "c": ""}}})),
            vec!["spec.m: Too many: 3: must have at most 2 items"]
        );
        assert_eq!(
            errs(props, json!({"spec": {"m": {"a": 1}}})),
            vec!["spec.m.a: Invalid value: \"integer\": spec.m.a in body must be of type string: \"integer\""]
        );
    }

    #[test]
    fn junctors() {
        let any = spec(json!({"a": {"type": "integer", "anyOf": [{"minimum": 5}, {"maximum": 1}]}}));
        assert!(errs(any.clone(), json!({"spec": {"a": 6}})).is_empty());
        assert_eq!(
            errs(any, json!({"spec": {"a": 3}})),
            vec![
                "<nil>: Invalid value: \"\": \"spec.a\" must validate at least one schema (anyOf)",
                "spec.a: Invalid value: 3: spec.a in body should be greater than or equal to 5",
            ]
        );
        let one = spec(json!({"a": {"type": "integer", "oneOf": [{"minimum": 1}, {"minimum": 2}]}}));
        assert!(errs(one.clone(), json!({"spec": {"a": 1}})).is_empty());
        assert_eq!(
            errs(one, json!({"spec": {"a": 3}})),
            vec![
                "<nil>: Invalid value: \"\": \"spec.a\" must validate one and only one schema (oneOf). Found 2 valid alternatives"
            ]
        );
        let all = spec(json!({"a": {"type": "string", "allOf": [{"pattern": "^a"}, {"maxLength": 2}]}}));
        assert_eq!(
            errs(all, json!({"spec": {"a": "abc"}})),
            vec![
                "spec.a: Too long: may not be more than 2 bytes",
                "<nil>: Invalid value: \"\": \"spec.a\" must validate all the schemas (allOf)",
            ]
        );
        let not = spec(json!({"a": {"type": "string", "not": {"enum": ["x"]}}}));
        assert_eq!(
            errs(not, json!({"spec": {"a": "x"}})),
            vec!["<nil>: Invalid value: \"\": \"spec.a\" must not validate the schema (not)"]
        );
    }

    #[test]
    fn formats_are_types() {
        let s = spec(
            json!({"at": {"type": "string", "format": "date-time"}, "ip": {"type": "string", "format": "ipv4"}, "q": {"type": "string", "format": "unknown-format"}}),
        );
        assert!(
            errs(s.clone(), json!({"spec": {"at": "2024-01-02T03:04:05Z", "ip": "10.0.0.1", "q": "anything"}}))
                .is_empty()
        );
        assert_eq!(
            errs(s, json!({"spec": {"at": "yesterday", "ip": "10.0.0"}})),
            vec![
                "spec.at: Invalid value: \"yesterday\": spec.at in body must be of type date-time: \"yesterday\"",
                "spec.ip: Invalid value: \"10.0.0\": spec.ip in body must be of type ipv4: \"10.0.0\"",
            ]
        );
        assert_eq!(
            errs(spec(json!({"b": {"type": "string", "format": "byte"}})), json!({"spec": {"b": "!!"}})),
            vec!["spec.b: Invalid value: \"!!\": spec.b in body must be of type byte: \"!!\""]
        );
    }

    #[test]
    fn forbidden_property() {
        assert_eq!(
            errs(
                spec(json!({"m": {"type": "object", "additionalProperties": false}})),
                json!({"spec": {"m": {"x": 1}}})
            ),
            vec!["spec.m: Invalid value: \"x\": spec.m.x in body is a forbidden property"]
        );
    }

    /// upstream apiextensions `validation_test.go` TestValidateCustomResource (the cases without CEL rules).
    #[test]
    fn validate_custom_resource_table() {
        let field = |f: Value| json!({"type": "object", "properties": {"field": f}});
        let type_errs = |ty: &str, got: &str| {
            format!("field: Invalid value: \"{got}\": field in body must be of type {ty}: \"{got}\"")
        };
        let others = [
            ("string", json!("foo")),
            ("integer", json!(42)),
            ("boolean", json!(true)),
            ("number", json!(1.2)),
            ("array", json!([])),
        ];
        let check = |schema: &Value, obj: Value, want: Vec<String>| {
            let mut got = errs(schema.clone(), obj.clone());
            got.sort();
            let mut want = want;
            want.sort();
            assert_eq!(got, want, "{obj}");
        };

        let s = field(json!({"type": "object", "nullable": false}));
        for ok in [json!({}), json!({"field": {}})] {
            check(&s, ok, vec![]);
        }
        for (got, v) in others.iter().cloned().chain([("null", Value::Null)]) {
            check(&s, json!({"field": v}), vec![type_errs("object", got)]);
        }

        let s = field(json!({"type": "object", "nullable": true}));
        for ok in [json!({}), json!({"field": {}}), json!({"field": null})] {
            check(&s, ok, vec![]);
        }
        for (got, v) in others.iter().cloned() {
            check(&s, json!({"field": v}), vec![type_errs("object", got)]);
        }

        let s = field(json!({"nullable": true}));
        for ok in [
            json!({}),
            json!({"field": {}}),
            json!({"field": null}),
            json!({"field": "foo"}),
            json!({"field": 42}),
            json!({"field": true}),
            json!({"field": 1.2}),
            json!({"field": []}),
        ] {
            check(&s, ok, vec![]);
        }

        let ios_failing =
            [("boolean", json!(true)), ("number", json!(1.2)), ("object", json!({})), ("array", json!([]))];
        let s = field(json!({"x-kubernetes-int-or-string": true}));
        for ok in [json!({}), json!({"field": 42}), json!({"field": "foo"})] {
            check(&s, ok, vec![]);
        }
        for (got, v) in ios_failing.iter().cloned().chain([("null", Value::Null)]) {
            check(&s, json!({"field": v}), vec![type_errs("integer,string", got)]);
        }

        let s = field(json!({"nullable": true, "x-kubernetes-int-or-string": true}));
        for ok in [json!({}), json!({"field": 42}), json!({"field": "foo"}), json!({"field": null})] {
            check(&s, ok, vec![]);
        }
        for (got, v) in ios_failing.iter().cloned() {
            check(&s, json!({"field": v}), vec![type_errs("integer,string", got)]);
        }

        let s = field(
            json!({"nullable": true, "x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}),
        );
        for ok in [json!({}), json!({"field": null}), json!({"field": 42}), json!({"field": "foo"})] {
            check(&s, ok, vec![]);
        }
        for (got, v) in ios_failing.iter().cloned() {
            check(
                &s,
                json!({"field": v}),
                vec![
                    "<nil>: Invalid value: \"\": \"field\" must validate at least one schema (anyOf)".to_string(),
                    type_errs("integer,string", got),
                    type_errs("integer", got),
                ],
            );
        }

        let s = field(
            json!({"nullable": true, "x-kubernetes-int-or-string": true, "allOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]}]}),
        );
        for ok in [json!({}), json!({"field": null}), json!({"field": 42}), json!({"field": "foo"})] {
            check(&s, ok, vec![]);
        }
        for (got, v) in ios_failing.iter().cloned() {
            check(
                &s,
                json!({"field": v}),
                vec![
                    "<nil>: Invalid value: \"\": \"field\" must validate all the schemas (allOf). None validated"
                        .to_string(),
                    "<nil>: Invalid value: \"\": \"field\" must validate at least one schema (anyOf)".to_string(),
                    type_errs("integer,string", got),
                    type_errs("integer", got),
                ],
            );
        }

        check(
            &field(json!({"type": "string", "pattern": "+"})),
            json!({"field": "foo"}),
            vec!["field: Invalid value: \"foo\": field in body should match '+, but pattern is invalid: error parsing regexp: missing argument to repetition operator: `+`'".to_string()],
        );

        let s = json!({"type": "object", "required": ["field"], "properties": {"field": {"type": "object", "required": ["nested"], "properties": {"nested": {}}}}});
        check(&s, json!({"test": "a"}), vec!["field: Required value".to_string()]);
        check(&s, json!({"field": {}}), vec!["field.nested: Required value".to_string()]);

        let s = field(json!({"type": "object", "required": ["nestedint", "nestedstring"], "properties": {
            "nestedint": {"type": "integer", "enum": [1, 2]},
            "nestedstring": {"type": "string", "enum": ["a", "b"]},
        }}));
        check(
            &s,
            json!({"field": {}}),
            vec!["field.nestedint: Required value".to_string(), "field.nestedstring: Required value".to_string()],
        );
        check(
            &s,
            json!({"field": {"nestedint": "x", "nestedstring": true}}),
            vec![
                "field.nestedint: Invalid value: \"string\": field.nestedint in body must be of type integer: \"string\"".to_string(),
                "field.nestedint: Unsupported value: \"x\": supported values: \"1\", \"2\"".to_string(),
                "field.nestedstring: Invalid value: \"boolean\": field.nestedstring in body must be of type string: \"boolean\"".to_string(),
                "field.nestedstring: Unsupported value: true: supported values: \"a\", \"b\"".to_string(),
            ],
        );

        let s = json!({"type": "object", "properties": {"fieldX": {"type": "object", "maxProperties": 2}}});
        check(
            &s,
            json!({"fieldX": {"a": true, "b": true, "c": true}}),
            vec!["fieldX: Too many: 3: must have at most 2 items".to_string()],
        );
        let s = json!({"type": "object", "properties": {"fieldX": {"type": "array", "maxItems": 2}}});
        check(
            &s,
            json!({"fieldX": ["a", "b", "c"]}),
            vec!["fieldX: Too many: 3: must have at most 2 items".to_string()],
        );
        let s = json!({"type": "object", "properties": {"fieldX": {"type": "string", "maxLength": 2}}});
        check(&s, json!({"fieldX": "abc"}), vec!["fieldX: Too long: may not be more than 2 bytes".to_string()]);

        // TestItemsProperty: a field called items is not an array schema's items.
        let s = json!({"properties": {"spec": {"properties": {"replicas": {"type": "integer"}}}}});
        check(&s, json!({"spec": {"replicas": 1, "items": ["1", "2"]}}), vec![]);
        let s = json!({"properties": {"secrets": {"type": "array", "items": {"type": "string"}}}});
        check(&s, json!({"secrets": ["1", "2"]}), vec![]);
    }
}
