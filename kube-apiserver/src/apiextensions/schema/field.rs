//! Field errors as upstream's `k8s.io/apimachinery/pkg/util/validation/field`: a type, a path, the bad value and a
//! detail, rendered with Go's formatting (`%q` strings, `%v` numbers, `%#v` maps and lists) so messages match
//! upstream's byte for byte. [`FieldError::to_cause`] gives the `Cause` an `ApiError::invalid` carries.

use api_types::Cause;
use serde_json::Value;
use std::fmt;

/// upstream's `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    Internal,
    TypeInvalid,
}

impl ErrorType {
    /// The `reason` of a StatusCause (`FieldValueInvalid`...).
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Internal => "InternalError",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// upstream's `ErrorType.String()`.
    pub fn text(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid | ErrorType::TypeInvalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
        }
    }
}

/// One field error. `field` is the rendered path (`spec.items[0].name`, `<nil>` for the nil root, as upstream);
/// `bad_value` is `None` where upstream omits it.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: ErrorType,
    pub field: String,
    pub bad_value: Option<Value>,
    pub detail: String,
}

/// A path as `field.Path.String()` renders it; the empty path is upstream's nil path.
fn shown(path: &str) -> String {
    if path.is_empty() { "<nil>".to_string() } else { path.to_string() }
}

impl FieldError {
    pub fn required(path: &str, detail: impl Into<String>) -> Self {
        FieldError {
            kind: ErrorType::Required,
            field: shown(path),
            bad_value: Some(Value::from("")),
            detail: detail.into(),
        }
    }

    pub fn invalid(path: &str, value: Value, detail: impl Into<String>) -> Self {
        FieldError { kind: ErrorType::Invalid, field: shown(path), bad_value: Some(value), detail: detail.into() }
    }

    pub fn type_invalid(path: &str, value: Value, detail: impl Into<String>) -> Self {
        FieldError { kind: ErrorType::TypeInvalid, field: shown(path), bad_value: Some(value), detail: detail.into() }
    }

    pub fn forbidden(path: &str, detail: impl Into<String>) -> Self {
        FieldError {
            kind: ErrorType::Forbidden,
            field: shown(path),
            bad_value: Some(Value::from("")),
            detail: detail.into(),
        }
    }

    pub fn duplicate(path: &str, value: Value) -> Self {
        FieldError { kind: ErrorType::Duplicate, field: shown(path), bad_value: Some(value), detail: String::new() }
    }

    /// `Unsupported value: "x": supported values: "a", "b"`.
    pub fn not_supported(path: &str, value: Value, valid: &[String]) -> Self {
        let detail = if valid.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = valid.iter().map(|v| go_quote(v)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        FieldError { kind: ErrorType::NotSupported, field: shown(path), bad_value: Some(value), detail }
    }

    /// `Too long: may not be more than 5 bytes` (a negative maximum: `value is too long`).
    pub fn too_long(path: &str, value: Value, max: i64) -> Self {
        let detail = if max >= 0 {
            format!("may not be more than {max} {}", if max == 1 { "byte" } else { "bytes" })
        } else {
            "value is too long".to_string()
        };
        FieldError { kind: ErrorType::TooLong, field: shown(path), bad_value: Some(value), detail }
    }

    /// `Too many: 3: must have at most 2 items`.
    pub fn too_many(path: &str, actual: i64, max: i64) -> Self {
        let detail = if max >= 0 {
            format!("must have at most {max} {}", if max == 1 { "item" } else { "items" })
        } else {
            "has too many items".to_string()
        };
        let bad_value = (actual >= 0).then(|| Value::from(actual));
        FieldError { kind: ErrorType::TooMany, field: shown(path), bad_value, detail }
    }

    /// upstream's `ErrorBody()`: the message without the field.
    pub fn body(&self) -> String {
        let mut s = match (self.kind, &self.bad_value) {
            (ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong | ErrorType::Internal, _) | (_, None) => {
                self.kind.text().to_string()
            }
            (_, Some(v)) => format!("{}: {}", self.kind.text(), go_bad_value(v)),
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// The StatusCause of a 422: reason, field, message (the body).
    pub fn to_cause(&self) -> Cause {
        Cause { reason: self.kind.reason(), field: self.field.clone(), message: self.body() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// `child("spec", "replicas")` = `spec.replicas`; from the root, just the name.
pub fn child(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
}

/// `key("spec.labels", "a")` = `spec.labels[a]`.
pub fn key(path: &str, k: &str) -> String {
    format!("{path}[{k}]")
}

/// `index("spec.items", 0)` = `spec.items[0]`.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// A bad value as `ErrorBody` prints it: null as `"null"`, strings `%q`, numbers and booleans `%v`, the rest `%#v`.
fn go_bad_value(v: &Value) -> String {
    match v {
        Value::Null => go_quote("null"),
        Value::String(s) => go_quote(s),
        Value::Bool(_) | Value::Number(_) => go_v(v),
        Value::Array(_) | Value::Object(_) => go_sharp_v(v),
    }
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%v` of a float64 (`strconv.FormatFloat(f, 'g', -1, 64)` with Go's exponent rules: `1e+06`, `1.5`, `3`).
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    // Shortest round-trip digits and the decimal exponent, from Rust's `{:e}` (`1.234e6`).
    let sci = format!("{:e}", f);
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if neg { "-" } else { "" };
    // strconv's 'g' with the shortest precision: %e when the exponent is < -4 or >= 6.
    let use_exp = !(-4..6).contains(&exp);
    if use_exp {
        let (first, rest) = digits.split_at(1);
        let m = if rest.is_empty() { first.to_string() } else { format!("{first}.{rest}") };
        let es = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{es}{:02}", exp.abs())
    } else if exp < 0 {
        format!("{sign}0.{}{}", "0".repeat((-exp - 1) as usize), digits)
    } else if (exp + 1) as usize >= digits.len() {
        format!("{sign}{}{}", digits, "0".repeat((exp + 1) as usize - digits.len()))
    } else {
        let (a, b) = digits.split_at((exp + 1) as usize);
        format!("{sign}{a}.{b}")
    }
}

/// A JSON number as Go holds it after decoding (int64 when integral and in range, else float64), printed `%v`.
pub fn go_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() { i.to_string() } else { go_float(n.as_f64().unwrap_or(0.0)) }
}

/// Go's `%v` of a decoded JSON value: `<nil>`, `[a b]`, `map[k:v]` (sorted keys).
pub fn go_v(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_v).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys.iter().map(|k| format!("{k}:{}", go_v(&m[k.as_str()]))).collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// Go's `%#v` of a decoded JSON value: `map[string]interface {}{"a":1}`, `[]interface {}{"a", 1}`.
pub fn go_sharp_v(v: &Value) -> String {
    fn elem(v: &Value) -> String {
        match v {
            Value::Null => "interface {}(nil)".into(),
            Value::String(s) => go_quote(s),
            other => go_sharp_v(other),
        }
    }
    match v {
        Value::Null => "interface {}(nil)".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::String(s) => go_quote(s),
        Value::Array(a) => format!("[]interface {{}}{{{}}}", a.iter().map(elem).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys.iter().map(|k| format!("{}:{}", go_quote(k), elem(&m[k.as_str()]))).collect();
            format!("map[string]interface {{}}{{{}}}", parts.join(", "))
        }
    }
}

/// Go's `encoding/json.Marshal` of a decoded value: sorted keys, HTML-safe escaping, Go's float forms.
pub fn go_json(v: &Value) -> String {
    let mut out = String::new();
    write_json(v, &mut out);
    out
}

fn write_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_i64() {
            Some(i) => out.push_str(&i.to_string()),
            None => out.push_str(&json_float(n.as_f64().unwrap_or(0.0))),
        },
        Value::String(s) => write_json_string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(k, out);
                out.push(':');
                write_json(&m[k.as_str()], out);
            }
            out.push('}');
        }
    }
}

fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// encoding/json's float form: `%f` between 1e-6 and 1e21, else `%e` with a trimmed exponent (`1e-07`).
fn json_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let sci = format!("{:e}", f);
        let (m, e) = sci.split_once('e').unwrap_or((&sci, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        let es = if e < 0 { '-' } else { '+' };
        format!("{m}e{es}{:02}", e.abs())
    } else {
        let s = format!("{}", f);
        s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_render_like_upstream() {
        assert_eq!(FieldError::required("spec", "").to_string(), "spec: Required value");
        assert_eq!(
            FieldError::invalid("spec.x", json!("a"), "must be").to_string(),
            "spec.x: Invalid value: \"a\": must be"
        );
        assert_eq!(FieldError::invalid("spec.x", json!(3), "d").body(), "Invalid value: 3: d");
        assert_eq!(FieldError::invalid("spec.x", Value::Null, "d").body(), "Invalid value: \"null\": d");
        assert_eq!(
            FieldError::duplicate("a[1]", json!({"b": 1, "a": "x"})).body(),
            "Duplicate value: map[string]interface {}{\"a\":\"x\", \"b\":1}"
        );
        assert_eq!(
            FieldError::not_supported("spec.x", json!("x"), &["a".into(), "b".into()]).body(),
            "Unsupported value: \"x\": supported values: \"a\", \"b\""
        );
        assert_eq!(FieldError::too_long("s", json!("abcdef"), 5).body(), "Too long: may not be more than 5 bytes");
        assert_eq!(FieldError::too_many("s", 3, 2).body(), "Too many: 3: must have at most 2 items");
        assert_eq!(FieldError::forbidden("", "x").to_string(), "<nil>: Forbidden: x");
        let c = FieldError::type_invalid("spec.r", json!("string"), "m").to_cause();
        assert_eq!(
            (c.reason, c.field.as_str(), c.message.as_str()),
            ("FieldValueTypeInvalid", "spec.r", "Invalid value: \"string\": m")
        );
    }

    #[test]
    fn go_formatting() {
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(1234567.0), "1.234567e+06");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(-2.5), "-2.5");
        assert_eq!(go_v(&json!(["a", 1, {"k": true}])), "[a 1 map[k:true]]");
        assert_eq!(go_sharp_v(&json!(["a", 1, null])), "[]interface {}{\"a\", 1, interface {}(nil)}");
        assert_eq!(go_json(&json!({"b": [1, 2.5, 3.0], "a": "<x>"})), "{\"a\":\"\\u003cx\\u003e\",\"b\":[1,2.5,3]}");
        assert_eq!(go_quote("a\"b\n"), "\"a\\\"b\\n\"");
    }
}
