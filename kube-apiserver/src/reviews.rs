//! The review resources (create-only, never stored): `SelfSubjectReview` (`kubectl auth whoami`), access reviews
//! (`kubectl auth can-i`, answered for the AlwaysAllow authorizer in force until RBAC), rules reviews and
//! `TokenReview` against the static token file.

use api_types::{ApiError, Resource};
use serde_json::{Value, json};

use crate::server::{Apiserver, User};

fn user_info(u: &User) -> Value {
    let mut v = json!({"username": u.username, "groups": u.groups});
    if !u.uid.is_empty() {
        v["uid"] = json!(u.uid);
    }
    v
}

pub fn create(
    server: &Apiserver,
    res: &Resource,
    ns: Option<&str>,
    mut obj: Value,
    user: &User,
) -> Result<Value, ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the object must be a JSON object"));
    }
    obj["apiVersion"] = json!(res.api_version());
    obj["kind"] = json!(res.kind);
    if obj.get("metadata").is_none_or(Value::is_null) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]["creationTimestamp"] = Value::Null;
    let allowed = json!({"allowed": true, "reason": "the AlwaysAllow authorizer allows every request"});
    match res.kind {
        "SelfSubjectReview" => obj["status"] = json!({"userInfo": user_info(user)}),
        "SelfSubjectAccessReview" => obj["status"] = allowed,
        "SubjectAccessReview" => obj["status"] = allowed,
        "LocalSubjectAccessReview" => {
            let ns = ns.unwrap_or_default();
            if obj.pointer("/spec/resourceAttributes/namespace").and_then(Value::as_str).is_some_and(|n| n != ns) {
                return Err(ApiError::bad_request("spec.resourceAttributes.namespace must match metadata.namespace"));
            }
            obj["status"] = allowed;
        }
        "SelfSubjectRulesReview" => {
            obj["status"] = json!({
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                "incomplete": false,
            })
        }
        "TokenReview" => {
            let token = obj.pointer("/spec/token").and_then(Value::as_str).unwrap_or_default();
            obj["status"] = match server.auth.authenticate(None, Some(&format!("Bearer {token}"))) {
                Ok(u) if !token.is_empty() => {
                    json!({"authenticated": true, "user": user_info(&u), "audiences": obj.pointer("/spec/audiences").cloned().unwrap_or(json!([]))})
                }
                _ => json!({"authenticated": false, "error": "invalid bearer token"}),
            };
        }
        other => {
            return Err(ApiError::method_not_allowed(format!("{other} cannot be created here")));
        }
    }
    Ok(obj)
}
