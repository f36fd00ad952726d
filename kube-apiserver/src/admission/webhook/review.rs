//! The AdmissionReview sent to a webhook and the checks on its answer (upstream's `webhook/request`
//! `CreateV1AdmissionReview` and `VerifyAdmissionResponse`), and a denial as the Status the client gets
//! (`webhook/errors.ToStatusErr`).

use api_types::{ApiError, Resource};
use serde::Serialize;
use serde_json::Value;

use crate::admission::{Operation, Request};
use crate::auth::UserInfo;

/// The AdmissionReview version a webhook accepts, first of its `admissionReviewVersions` that we speak.
pub fn version(accepted: &[String]) -> Result<&'static str, String> {
    for v in accepted {
        match v.as_str() {
            "v1" => return Ok("v1"),
            "v1beta1" => return Ok("v1beta1"),
            _ => {}
        }
    }
    Err("webhook does not accept known AdmissionReview versions (v1, v1beta1)".into())
}

#[derive(Serialize)]
struct Gvk<'a> {
    group: &'a str,
    version: &'a str,
    kind: &'a str,
}

#[derive(Serialize)]
struct Gvr<'a> {
    group: &'a str,
    version: &'a str,
    resource: &'a str,
}

#[derive(Serialize)]
struct User<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    username: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    uid: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    groups: &'a [String],
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    extra: &'a std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AdmissionRequest<'a> {
    uid: &'a str,
    kind: Gvk<'a>,
    resource: Gvr<'a>,
    #[serde(skip_serializing_if = "str::is_empty")]
    sub_resource: &'a str,
    request_kind: Gvk<'a>,
    request_resource: Gvr<'a>,
    #[serde(skip_serializing_if = "str::is_empty")]
    request_sub_resource: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    namespace: &'a str,
    operation: &'a str,
    user_info: User<'a>,
    object: Option<&'a Value>,
    old_object: Option<&'a Value>,
    dry_run: bool,
    options: Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AdmissionReview<'a> {
    kind: &'static str,
    api_version: &'static str,
    request: AdmissionRequest<'a>,
}

/// The operation's options object (`CreateOptions`, `UpdateOptions`, `DeleteOptions`; null for a connect, whose
/// options are its object).
pub fn options(op: Operation, dry_run: bool) -> Value {
    let kind = match op {
        Operation::Create => "CreateOptions",
        Operation::Update => "UpdateOptions",
        Operation::Delete => "DeleteOptions",
        Operation::Connect => return Value::Null,
    };
    let mut o = serde_json::json!({"kind": kind, "apiVersion": "meta.k8s.io/v1"});
    if dry_run {
        o["dryRun"] = serde_json::json!(["All"]);
    }
    o
}

/// The namespace a request names: a Namespace's own requests carry its name, as upstream's RequestInfo does.
pub fn request_namespace<'a>(r: &Request<'a>) -> &'a str {
    if r.namespace.is_empty() && r.resource.group.is_empty() && r.resource.plural == "namespaces" {
        r.name
    } else {
        r.namespace
    }
}

/// The JSON body of an AdmissionReview request for one webhook call: `kind` and `resource` as the webhook's rules
/// matched the request (another version of its resource under matchPolicy Equivalent, the objects then converted
/// to it), `requestKind` and `requestResource` as requested.
pub fn request_body(
    version: &str,
    uid: &str,
    r: &Request<'_>,
    matched: &Resource,
    object: Option<&Value>,
    old: Option<&Value>,
) -> Result<Vec<u8>, String> {
    let res: &Resource = r.resource;
    let gvk = |res: &Resource| {
        let (group, version, kind) = r.kind_of(res);
        Gvk { group, version, kind }
    };
    let gvr = |res: &Resource| Gvr { group: res.group, version: res.version, resource: res.plural };
    let user: &UserInfo = r.user;
    // On create the name may still be empty (generateName); upstream sends the one the object has then.
    let name = match (r.name, object) {
        ("", Some(o)) => crate::registry::meta_str(o, "name").unwrap_or_default(),
        (n, _) => n,
    };
    let review = AdmissionReview {
        kind: "AdmissionReview",
        api_version: if version == "v1beta1" { "admission.k8s.io/v1beta1" } else { "admission.k8s.io/v1" },
        request: AdmissionRequest {
            uid,
            kind: gvk(matched),
            resource: gvr(matched),
            sub_resource: r.subresource,
            request_kind: gvk(res),
            request_resource: gvr(res),
            request_sub_resource: r.subresource,
            name,
            namespace: request_namespace(r),
            operation: r.operation.as_str(),
            user_info: User { username: &user.username, uid: &user.uid, groups: &user.groups, extra: &user.extra },
            object,
            old_object: old,
            dry_run: r.dry_run,
            options: options(r.operation, r.dry_run),
        },
    };
    serde_json::to_vec(&review).map_err(|e| e.to_string())
}

/// What a webhook answered.
#[derive(Debug, Default)]
pub struct Response {
    pub allowed: bool,
    /// A JSONPatch (mutating webhooks).
    pub patch: Option<Vec<u8>>,
    pub result: Option<Value>,
    pub warnings: Vec<String>,
}

/// Checks an AdmissionReview response (upstream's `VerifyAdmissionResponse`); an error is a failed call.
pub fn verify(version: &str, uid: &str, mutating: bool, body: &[u8]) -> Result<Response, String> {
    let review: Value = serde_json::from_slice(body).map_err(|e| format!("received invalid webhook response: {e}"))?;
    let invalid = |m: String| format!("received invalid webhook response: {m}");
    let Some(resp) = review.get("response").filter(|r| r.is_object()) else {
        return Err(invalid("webhook response was absent".into()));
    };
    let patch = resp
        .get("patch")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(|p| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(p)
                .map_err(|e| invalid(format!("illegal base64 data in response.patch: {e}")))
        })
        .transpose()?;
    let patch_type = resp.get("patchType").filter(|t| !t.is_null());
    if version == "v1" {
        let got = resp["uid"].as_str().unwrap_or_default();
        if got != uid {
            return Err(invalid(format!("expected response.uid={uid:?}, got {got:?}")));
        }
        let gvk = (review["apiVersion"].as_str().unwrap_or_default(), review["kind"].as_str().unwrap_or_default());
        if gvk != ("admission.k8s.io/v1", "AdmissionReview") {
            let got = match gvk.0.split_once('/') {
                Some((g, v)) => format!("{g}/{v}, Kind={}", gvk.1),
                None => format!("/{}, Kind={}", gvk.0, gvk.1),
            };
            return Err(invalid(format!(
                "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {got}"
            )));
        }
        if mutating {
            match (&patch, patch_type) {
                (Some(_), None) => {
                    return Err(invalid("webhook returned response.patch but not response.patchType".into()));
                }
                (None, Some(_)) => {
                    return Err(invalid("webhook returned response.patchType but not response.patch".into()));
                }
                (Some(_), Some(t)) if t.as_str() != Some("JSONPatch") => {
                    return Err(format!("unsupported patch type {:?}", t.as_str().unwrap_or_default()));
                }
                _ => {}
            }
        } else if patch.is_some() {
            return Err(invalid("validating webhook may not return response.patch".into()));
        } else if patch_type.is_some() {
            return Err(invalid("validating webhook may not return response.patchType".into()));
        }
    }
    Ok(Response {
        allowed: resp["allowed"].as_bool().unwrap_or(false),
        patch: if mutating { patch } else { None },
        result: resp.get("status").or_else(|| resp.get("result")).filter(|s| s.is_object()).cloned(),
        warnings: resp["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
    })
}

/// The `StatusReason`s upstream defines, as the static strings our Status carries.
const REASONS: &[&str] = &[
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "AlreadyExists",
    "Conflict",
    "Gone",
    "Invalid",
    "ServerTimeout",
    "StoreReadError",
    "Timeout",
    "TooManyRequests",
    "BadRequest",
    "MethodNotAllowed",
    "NotAcceptable",
    "RequestEntityTooLarge",
    "UnsupportedMediaType",
    "InternalError",
    "Expired",
    "ServiceUnavailable",
];

/// Distinct reasons outside [`REASONS`] kept (each leaked once, so a webhook inventing reasons cannot grow memory
/// without bound).
const MAX_OTHER_REASONS: usize = 64;

fn reason(r: &str) -> &'static str {
    if let Some(known) = REASONS.iter().find(|k| **k == r) {
        return known;
    }
    if r.is_empty() {
        return "";
    }
    static OTHERS: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut others = OTHERS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(o) = others.iter().find(|o| **o == r) {
        return o;
    }
    if others.len() >= MAX_OTHER_REASONS {
        return "";
    }
    let leaked: &'static str = Box::leak(r.to_string().into_boxed_str());
    others.push(leaked);
    leaked
}

/// A webhook's denial as the client sees it (upstream 1.33 `ToStatusErr`): `admission webhook "<name>" denied the
/// request: <message>` (or its reason, or "without explanation"), with the webhook's code (400 if it gave none or
/// one below 400), reason and details.
pub fn denied(webhook: &str, result: Option<&Value>) -> ApiError {
    let empty = Value::Null;
    let result = result.unwrap_or(&empty);
    let message = result["message"].as_str().unwrap_or_default();
    let why = result["reason"].as_str().unwrap_or_default();
    let denied_by = format!("admission webhook {webhook:?} denied the request");
    let message = if !message.is_empty() {
        format!("{denied_by}: {message}")
    } else if !why.is_empty() {
        format!("{denied_by}: {why}")
    } else {
        format!("{denied_by} without explanation")
    };
    let code = result["code"].as_u64().filter(|c| (400..600).contains(c)).unwrap_or(400) as u16;
    let mut e = ApiError::new(code, reason(why), message);
    e.details = result.get("details").filter(|d| d.is_object()).map(|d| Box::new(d.clone()));
    e
}

/// A failed call under failurePolicy Fail: upstream's `NewInternalError(ErrCallingWebhook)`.
pub fn failed_calling(webhook: &str, why: &str) -> ApiError {
    let inner = format!("failed calling webhook {webhook:?}: {why}");
    let mut e = ApiError::internal(inner.clone());
    e.details = Some(Box::new(serde_json::json!({"causes": [{"message": inner}]})));
    e
}

/// 400 for a dry run sent to a webhook that may have side effects (upstream's `NewDryRunUnsupportedErr`).
pub fn dry_run_unsupported(webhook: &str) -> ApiError {
    ApiError::bad_request(format!("admission webhook {webhook:?} does not support dry run"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn denials_read_as_upstream() {
        let e = denied("foo", None);
        assert_eq!((e.code, e.reason), (400, ""));
        assert_eq!(e.message, "admission webhook \"foo\" denied the request without explanation");
        let e = denied("foo", Some(&json!({"message": "you shall not pass", "code": 403})));
        assert_eq!(
            (e.code, e.message.as_str()),
            (403, "admission webhook \"foo\" denied the request: you shall not pass")
        );
        let e = denied("foo", Some(&json!({"reason": "Forbidden", "code": 200})));
        assert_eq!(
            (e.code, e.reason, e.message.as_str()),
            (400, "Forbidden", "admission webhook \"foo\" denied the request: Forbidden")
        );
        let e =
            denied("foo", Some(&json!({"reason": "MyOwnReason", "code": 429, "details": {"retryAfterSeconds": 3}})));
        assert_eq!((e.code, e.reason), (429, "MyOwnReason"));
        assert_eq!(e.to_status()["details"], json!({"retryAfterSeconds": 3}));
        let e = failed_calling("w", "failed to call webhook: boom");
        assert_eq!(e.code, 500);
        assert_eq!(e.message, "Internal error occurred: failed calling webhook \"w\": failed to call webhook: boom");
        assert_eq!(dry_run_unsupported("w").message, "admission webhook \"w\" does not support dry run");
    }

    #[test]
    fn responses_are_checked_as_upstream() {
        let ok = |v: Value| verify("v1", "u1", true, v.to_string().as_bytes());
        let base = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
        let with = |resp: Value| {
            let mut r = base.clone();
            r["response"] = resp;
            r
        };
        assert!(ok(base.clone()).unwrap_err().contains("webhook response was absent"));
        assert!(
            ok(with(json!({"uid": "other", "allowed": true})))
                .unwrap_err()
                .contains("expected response.uid=\"u1\", got \"other\"")
        );
        let wrong = json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "response": {"uid": "u1", "allowed": true}});
        assert!(
            ok(wrong.clone())
                .unwrap_err()
                .contains("expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview")
        );
        // v1beta1 answers are not checked for uid or kind.
        assert!(verify("v1beta1", "u1", true, wrong.to_string().as_bytes()).unwrap().allowed);
        assert!(
            ok(with(json!({"uid": "u1", "allowed": true, "patch": "W10="})))
                .unwrap_err()
                .contains("but not response.patchType")
        );
        assert!(
            ok(with(json!({"uid": "u1", "allowed": true, "patchType": "JSONPatch"})))
                .unwrap_err()
                .contains("but not response.patch")
        );
        let r = ok(with(
            json!({"uid": "u1", "allowed": true, "patch": "W10=", "patchType": "JSONPatch", "warnings": ["w1"]}),
        ))
        .unwrap();
        assert_eq!((r.patch.as_deref(), r.warnings), (Some(&b"[]"[..]), vec!["w1".to_string()]));
        let v = verify(
            "v1",
            "u1",
            false,
            with(json!({"uid": "u1", "allowed": true, "patch": "W10="})).to_string().as_bytes(),
        );
        assert!(v.unwrap_err().contains("validating webhook may not return response.patch"));
        assert!(verify("v1", "u1", false, b"not json").unwrap_err().starts_with("received invalid webhook response"));
        assert_eq!(version(&["v2".into(), "v1beta1".into()]), Ok("v1beta1"));
        assert!(version(&["v2".into()]).is_err());
    }
}
