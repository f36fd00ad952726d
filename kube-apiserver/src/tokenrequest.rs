//! `serviceaccounts/<name>/token` (TokenRequest), as upstream's token REST: validates the request, defaults
//! audiences and expiry, checks the bound object (Pod, Secret or Node, with its uid) and answers with a signed token
//! and its expiry (`kubectl create token`).

use api_types::resources::find;
use api_types::{ApiError, Cause};
use serde_json::{Value, json};

use crate::auth::serviceaccount::{BoundObject, TokenSpec};
use crate::registry::meta_str;
use crate::server::Apiserver;

fn invalid(name: &str, field: &str, value: &Value, why: &str) -> ApiError {
    ApiError::invalid("authentication.k8s.io", "TokenRequest", name, vec![Cause::invalid(field, value, why)])
}

async fn get(server: &Apiserver, plural: &str, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
    let res = find("", "v1", plural).ok_or_else(|| ApiError::internal(format!("no resource {plural}")))?;
    server.registry.get(res, ns, name).await
}

/// Creates a token for service account `name` in `ns` from a TokenRequest body.
pub async fn create(
    server: &Apiserver,
    ns: &str,
    name: &str,
    mut req: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let authority = server.auth.service_accounts.as_ref().filter(|a| a.signing.is_some()).ok_or_else(|| {
        ApiError::new(404, "NotFound", "the server could not find the requested resource (serviceaccounts/token)")
    })?;
    if !req.is_object() {
        return Err(ApiError::bad_request("the body of the request must be a TokenRequest object"));
    }
    let spec = req.get("spec").cloned().unwrap_or(json!({}));
    let exp = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => 3600,
        Some(v) => v.as_i64().ok_or_else(|| invalid(name, "spec.expirationSeconds", v, "must be an integer"))?,
    };
    if exp < 600 {
        return Err(invalid(
            name,
            "spec.expirationSeconds",
            &json!(exp),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if exp > 1 << 32 {
        return Err(invalid(
            name,
            "spec.expirationSeconds",
            &json!(exp),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let mut audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect();
    if audiences.is_empty() {
        audiences = authority.api_audiences.clone();
    }
    let sa = get(server, "serviceaccounts", Some(ns), name).await?;
    let mut token = TokenSpec {
        namespace: ns.to_string(),
        service_account: name.to_string(),
        service_account_uid: meta_str(&sa, "uid").unwrap_or_default().to_string(),
        audiences: audiences.clone(),
        expiration_seconds: exp as u64,
        pod: None,
        secret: None,
        node: None,
    };
    if let Some(r) = spec.get("boundObjectRef").filter(|r| r.is_object()) {
        let kind = r.get("kind").and_then(Value::as_str).unwrap_or_default();
        let api_version = r.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let obj_name = r.get("name").and_then(Value::as_str).unwrap_or_default();
        let want_uid = r.get("uid").and_then(Value::as_str).unwrap_or_default();
        let plural = match (api_version, kind) {
            ("v1", "Pod") => "pods",
            ("v1", "Secret") => "secrets",
            ("v1", "Node") => "nodes",
            _ => {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount {name:?} to object of type {api_version}, Kind={kind}"
                )));
            }
        };
        let obj = get(server, plural, (plural != "nodes").then_some(ns), obj_name).await?;
        let uid = meta_str(&obj, "uid").unwrap_or_default().to_string();
        if !want_uid.is_empty() && want_uid != uid {
            let why = format!(
                "the UID in the bound object reference ({want_uid}) does not match the UID in record. The object might have been deleted and then recreated"
            );
            return Err(ApiError::conflict("", kind, obj_name, &why));
        }
        let bound = BoundObject { kind: kind.to_string(), name: obj_name.to_string(), uid };
        match plural {
            "pods" => {
                let pod_sa = obj.pointer("/spec/serviceAccountName").and_then(Value::as_str).unwrap_or("default");
                if pod_sa != name {
                    return Err(ApiError::bad_request(format!(
                        "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
                    )));
                }
                // The pod's node goes into the token too (ServiceAccountTokenPodNodeInfo).
                if let Some(node) = obj.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty())
                    && let Ok(n) = get(server, "nodes", None, node).await
                {
                    token.node = Some(BoundObject {
                        kind: "Node".into(),
                        name: node.to_string(),
                        uid: meta_str(&n, "uid").unwrap_or_default().to_string(),
                    });
                }
                token.pod = Some(bound);
            }
            "secrets" => token.secret = Some(bound),
            _ => token.node = Some(bound),
        }
    }
    let (signed, expires) =
        if dry_run { (String::new(), 0) } else { authority.issue(&token).map_err(ApiError::internal)? };
    let expiry =
        jiff::Timestamp::from_second(expires as i64).unwrap_or_default().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    req["apiVersion"] = json!("authentication.k8s.io/v1");
    req["kind"] = json!("TokenRequest");
    let mut meta = req.get("metadata").cloned().filter(Value::is_object).unwrap_or(json!({}));
    meta["name"] = json!(name);
    meta["namespace"] = json!(ns);
    meta["creationTimestamp"] = Value::Null;
    req["metadata"] = meta;
    req["spec"]["audiences"] = json!(audiences);
    req["spec"]["expirationSeconds"] = json!(exp);
    if let Some(p) = token.pod.as_ref().or(token.secret.as_ref()).or(token.node.as_ref())
        && req.pointer("/spec/boundObjectRef").is_some()
    {
        req["spec"]["boundObjectRef"]["uid"] = json!(p.uid);
    }
    req["status"] = json!({"token": signed, "expirationTimestamp": expiry});
    Ok(req)
}
