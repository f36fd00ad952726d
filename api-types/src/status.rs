//! `metav1.Status` errors with upstream's codes, reasons and message wording.

use serde_json::{Value, json};

/// A field-level cause of an Invalid (422) error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`, `FieldValueDuplicate`, `FieldValueForbidden`...
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl Cause {
    /// `spec.containers[0].name: Required value`
    pub fn required(field: impl Into<String>) -> Self {
        Cause { reason: "FieldValueRequired", field: field.into(), message: "Required value".into() }
    }

    /// `metadata.name: Invalid value: "A": <detail>`
    pub fn invalid(field: impl Into<String>, value: &Value, detail: impl AsRef<str>) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {shown}: {}", detail.as_ref()),
        }
    }

    /// `spec.restartPolicy: Unsupported value: "x": supported values: "Always", "Never"`
    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[&str]) -> Self {
        let list = supported.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
        Cause {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!("Unsupported value: {value}: supported values: {list}"),
        }
    }

    /// `spec.containers[1].name: Duplicate value: "a"`
    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        Cause { reason: "FieldValueDuplicate", field: field.into(), message: format!("Duplicate value: {value}") }
    }

    /// `spec.x: Not found: "name"`
    pub fn not_found(field: impl Into<String>, value: &Value) -> Self {
        Cause { reason: "FieldValueNotFound", field: field.into(), message: format!("Not found: {value}") }
    }

    /// `spec.selector: Forbidden: <detail>` (also used for immutable fields, as upstream).
    pub fn forbidden(field: impl Into<String>, detail: impl AsRef<str>) -> Self {
        Cause { reason: "FieldValueForbidden", field: field.into(), message: format!("Forbidden: {}", detail.as_ref()) }
    }

    fn text(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

/// An API error, answered as a `Status`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Box<Value>>,
    /// Seconds a client should wait before retrying (429, 503).
    pub retry_after: Option<u64>,
    /// A fresh continue token (`metadata.continue` of the Status), for an expired one.
    pub continue_token: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.reason, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// StatusDetails in upstream's field order: `name`, `group`, `kind` (then `uid`, `causes`, `retryAfterSeconds`).
fn details(name: &str, group: &str, kind: &str) -> Value {
    let mut d = serde_json::Map::new();
    d.insert("name".into(), json!(name));
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    d.insert("kind".into(), json!(kind));
    Value::Object(d)
}

/// `pods` or `deployments.apps` (and `Pod` or `Deployment.apps` for a kind).
fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() { plural.to_string() } else { format!("{plural}.{group}") }
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None, retry_after: None, continue_token: None }
    }

    /// 404 `pods "x" not found`.
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        ApiError {
            details: Some(Box::new(details(name, group, plural))),
            ..Self::new(404, "NotFound", format!("{} {name:?} not found", qualified(group, plural)))
        }
    }

    /// 409 `pods "x" already exists`.
    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        ApiError {
            details: Some(Box::new(details(name, group, plural))),
            ..Self::new(409, "AlreadyExists", format!("{} {name:?} already exists", qualified(group, plural)))
        }
    }

    /// 409 Conflict, upstream's wording for a stale resourceVersion.
    pub fn conflict(group: &str, plural: &str, name: &str, why: &str) -> Self {
        ApiError {
            details: Some(Box::new(details(name, group, plural))),
            ..Self::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on {} {name:?}: {why}", qualified(group, plural)),
            )
        }
    }

    /// The usual conflict: the object changed since the client read it.
    pub fn stale(group: &str, plural: &str, name: &str) -> Self {
        Self::conflict(
            group,
            plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 `Deployment.apps "x" is invalid: [a: Required value, b: ...]` (the kind qualified by its group as
    /// upstream's `GroupKind.String()`; `Pod "x"` for the core group).
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let text: Vec<String> = causes.iter().map(Cause::text).collect();
        let summary = if text.len() == 1 { text[0].clone() } else { format!("[{}]", text.join(", ")) };
        let mut d = details(name, group, kind);
        d["causes"] = Value::Array(
            causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect(),
        );
        ApiError {
            details: Some(Box::new(d)),
            ..Self::new(422, "Invalid", format!("{} {name:?} is invalid: {summary}", qualified(group, kind)))
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 410 Expired (a too-old resourceVersion or continue token).
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"
            ),
        )
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    pub fn too_large() -> Self {
        Self::new(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")
    }

    /// 429 with Retry-After, as the max-in-flight filter answers.
    pub fn too_many_requests(message: impl Into<String>, retry_after: u64) -> Self {
        ApiError { retry_after: Some(retry_after), ..Self::new(429, "TooManyRequests", message) }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", format!("Internal error occurred: {}", message.into()))
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// The `Status` object sent to the client, its fields in upstream's order (`kind`, `apiVersion`, `metadata`,
    /// `status`, `message`, `reason`, `details`, `code`), as Go's encoder writes the struct.
    pub fn to_status(&self) -> Value {
        let metadata = match &self.continue_token {
            Some(token) => json!({"continue": token}),
            None => json!({}),
        };
        let mut details = self.details.as_deref().cloned();
        if let Some(secs) = self.retry_after {
            details.get_or_insert_with(|| json!({}))["retryAfterSeconds"] = json!(secs);
        }
        let mut s = serde_json::Map::new();
        s.insert("kind".into(), json!("Status"));
        s.insert("apiVersion".into(), json!("v1"));
        s.insert("metadata".into(), metadata);
        s.insert("status".into(), json!("Failure"));
        if !self.message.is_empty() {
            s.insert("message".into(), json!(self.message));
        }
        if !self.reason.is_empty() {
            s.insert("reason".into(), json!(self.reason));
        }
        if let Some(d) = details {
            s.insert("details".into(), d);
        }
        s.insert("code".into(), json!(self.code));
        Value::Object(s)
    }
}

/// A `Status` of success (delete of a resource without a body to return, eviction).
pub fn success(details: Option<Value>) -> Value {
    let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
    if let Some(d) = details {
        s["details"] = d;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_in_upstream_order() {
        let e = ApiError::not_found("apps", "deployments", "web");
        let text = serde_json::to_string(&e.to_status()).unwrap();
        assert_eq!(
            text,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"deployments.apps \"web\" not found","reason":"NotFound","details":{"name":"web","group":"apps","kind":"deployments"},"code":404}"#
        );
        let busy = ApiError { retry_after: Some(1), ..ApiError::new(429, "TooManyRequests", "slow down") };
        let text = serde_json::to_string(&busy.to_status()).unwrap();
        assert!(
            text.ends_with(r#""reason":"TooManyRequests","details":{"retryAfterSeconds":1},"code":429}"#),
            "{text}"
        );
    }

    #[test]
    fn messages_match_upstream() {
        let e = ApiError::not_found("", "pods", "nosuch");
        assert_eq!(e.message, "pods \"nosuch\" not found");
        assert_eq!(e.to_status()["details"], json!({"name": "nosuch", "kind": "pods"}));
        assert_eq!(
            ApiError::already_exists("apps", "deployments", "web").message,
            "deployments.apps \"web\" already exists"
        );
        let e = ApiError::invalid("", "Pod", "p", vec![Cause::required("spec.containers")]);
        assert_eq!(e.message, "Pod \"p\" is invalid: spec.containers: Required value");
        assert_eq!(e.to_status()["details"]["causes"][0]["field"], "spec.containers");
        let e = ApiError::invalid("", "Pod", "p", vec![Cause::required("a"), Cause::required("b")]);
        assert_eq!(e.message, "Pod \"p\" is invalid: [a: Required value, b: Required value]");
        let e = ApiError::invalid("apps", "Deployment", "web", vec![Cause::required("spec.selector")]);
        assert_eq!(e.message, "Deployment.apps \"web\" is invalid: spec.selector: Required value");
        assert_eq!(
            e.to_status()["details"],
            json!({"name": "web", "group": "apps", "kind": "Deployment", "causes": [{"reason": "FieldValueRequired", "message": "Required value", "field": "spec.selector"}]})
        );
        let s = ApiError::too_many_requests("slow down", 1).to_status();
        assert_eq!((s["code"].clone(), s["details"]["retryAfterSeconds"].clone()), (json!(429), json!(1)));
    }
}
