//! The review resources (create-only, never stored): `SelfSubjectReview` (`kubectl auth whoami`), the access reviews
//! (`kubectl auth can-i`) and rules reviews answered by the real authorizer chain, and `TokenReview` answered by
//! every authenticator.

use api_types::{ApiError, Cause, Resource};
use serde_json::{Map, Value, json};

use crate::auth::UserInfo;
use crate::authorization::{Attributes, Decision};
use crate::server::{Apiserver, User};

/// A user as the review kinds show it (`username`, `uid`, `groups`, `extra`, empty ones left out).
pub fn user_info(u: &User) -> Value {
    let mut v = json!({"username": u.username});
    if !u.uid.is_empty() {
        v["uid"] = json!(u.uid);
    }
    if !u.groups.is_empty() {
        v["groups"] = json!(u.groups);
    }
    if !u.extra.is_empty() {
        v["extra"] = json!(u.extra);
    }
    v
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(String::from).collect()
}

/// The attributes a SubjectAccessReview-like spec asks about, for `user`.
fn spec_attributes(res: &Resource, name: &str, spec: &Value, user: UserInfo) -> Result<Attributes, ApiError> {
    let ra = spec.get("resourceAttributes").filter(|v| v.is_object());
    let na = spec.get("nonResourceAttributes").filter(|v| v.is_object());
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    match (ra, na) {
        (Some(ra), None) => Ok(Attributes {
            user,
            verb: s(ra, "verb"),
            resource_request: true,
            path: String::new(),
            api_group: s(ra, "group"),
            api_version: s(ra, "version"),
            namespace: s(ra, "namespace"),
            resource: s(ra, "resource"),
            subresource: s(ra, "subresource"),
            name: s(ra, "name"),
            field_selector: ra
                .pointer("/fieldSelector/rawSelector")
                .and_then(Value::as_str)
                .and_then(|f| api_types::selector::FieldSelector::parse(f).ok()),
        }),
        (None, Some(na)) => Ok(Attributes {
            user,
            verb: s(na, "verb"),
            resource_request: false,
            path: s(na, "path"),
            ..Default::default()
        }),
        (ra, _) => {
            let (field, why) = if ra.is_some() {
                ("spec.resourceAttributes", "cannot be specified in combination with nonResourceAttributes")
            } else {
                (
                    "spec.resourceAttributes",
                    "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                )
            };
            Err(invalid(res, name, field, &Value::Null, why))
        }
    }
}

fn invalid(res: &Resource, name: &str, field: &str, value: &Value, why: &str) -> ApiError {
    let cause =
        if value.is_null() { Cause::invalid(field, &json!("null"), why) } else { Cause::invalid(field, value, why) };
    ApiError::invalid(res.group, res.kind, name, vec![cause])
}

/// The status of an access review: allowed, denied (only when an authorizer denied), reason.
fn access_status(server: &Apiserver, a: &Attributes) -> Value {
    let (decision, reason) = server.authz.authorize(a);
    let mut st = Map::new();
    st.insert("allowed".into(), json!(decision == Decision::Allow));
    if decision == Decision::Deny {
        st.insert("denied".into(), json!(true));
    }
    if !reason.is_empty() {
        st.insert("reason".into(), json!(reason));
    }
    Value::Object(st)
}

fn rules_status(server: &Apiserver, user: &UserInfo, ns: &str) -> Value {
    let (rr, nr, incomplete) = server.authz.rules_for(user, ns);
    let list = |v: &[String]| (!v.is_empty()).then(|| json!(v));
    let rr: Vec<Value> = rr
        .iter()
        .map(|r| {
            let mut o = Map::new();
            o.insert("verbs".into(), json!(r.verbs));
            for (k, v) in
                [("apiGroups", &r.api_groups), ("resources", &r.resources), ("resourceNames", &r.resource_names)]
            {
                if let Some(v) = list(v) {
                    o.insert(k.into(), v);
                }
            }
            Value::Object(o)
        })
        .collect();
    let nr: Vec<Value> = nr
        .iter()
        .map(|r| {
            let mut o = Map::new();
            o.insert("verbs".into(), json!(r.verbs));
            if let Some(v) = list(&r.non_resource_urls) {
                o.insert("nonResourceURLs".into(), v);
            }
            Value::Object(o)
        })
        .collect();
    json!({"resourceRules": rr, "nonResourceRules": nr, "incomplete": incomplete})
}

pub async fn create(
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
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    match res.kind {
        "SelfSubjectReview" => obj["status"] = json!({"userInfo": user_info(user)}),
        "SelfSubjectAccessReview" => {
            let a = spec_attributes(res, &name, &spec, user.clone())?;
            obj["status"] = access_status(server, &a);
        }
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let subject = UserInfo {
                username: spec.get("user").and_then(Value::as_str).unwrap_or_default().to_string(),
                uid: spec.get("uid").and_then(Value::as_str).unwrap_or_default().to_string(),
                groups: strings(spec.get("groups")),
                extra: spec
                    .get("extra")
                    .and_then(Value::as_object)
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), strings(Some(v)))).collect())
                    .unwrap_or_default(),
            };
            if subject.username.is_empty() && subject.groups.is_empty() {
                return Err(invalid(
                    res,
                    &name,
                    "spec.user",
                    &json!(""),
                    "at least one of user or group must be specified",
                ));
            }
            let a = spec_attributes(res, &name, &spec, subject)?;
            if res.kind == "LocalSubjectAccessReview" {
                let ns = ns.unwrap_or_default();
                if !a.resource_request {
                    return Err(invalid(
                        res,
                        &name,
                        "spec.nonResourceAttributes",
                        &json!("non-null"),
                        "disallowed on this kind of request",
                    ));
                }
                if a.namespace != ns {
                    return Err(invalid(
                        res,
                        &name,
                        "spec.resourceAttributes.namespace",
                        &json!(a.namespace),
                        "must match metadata.namespace",
                    ));
                }
            }
            obj["status"] = access_status(server, &a);
        }
        "SelfSubjectRulesReview" => {
            let ns = spec.get("namespace").and_then(Value::as_str).unwrap_or_default();
            obj["status"] = rules_status(server, user, ns);
        }
        "TokenReview" => {
            let token = spec.get("token").and_then(Value::as_str).unwrap_or_default();
            if token.is_empty() {
                return Err(ApiError::bad_request("token is required for TokenReview in authentication"));
            }
            let wanted = spec.get("audiences").map(|a| strings(Some(a))).filter(|a| !a.is_empty());
            obj["status"] = match server.auth.authenticate_token(&server.registry, token, wanted.as_deref()).await {
                Ok((u, audiences)) => {
                    let mut st = json!({"authenticated": true, "user": user_info(&u)});
                    if !audiences.is_empty() {
                        st["audiences"] = json!(audiences);
                    }
                    st
                }
                Err(why) => json!({"user": {}, "error": format!("[invalid bearer token, {why}]")}),
            };
        }
        other => {
            return Err(ApiError::method_not_allowed(format!("{other} cannot be created here")));
        }
    }
    Ok(obj)
}
