//! Admission of connect requests (upstream's `ConnectResource` handler): before `pods/exec`, `pods/attach`,
//! `pods/portforward` or a proxy subresource is connected, the options the query gives (`PodExecOptions`,
//! `PodAttachOptions`, `PodPortForwardOptions`, `PodProxyOptions`, `ServiceProxyOptions`, `NodeProxyOptions`) go
//! through admission as the object of a `CONNECT` request: mutating webhooks, then ValidatingAdmissionPolicy and
//! validating webhooks, any of which may refuse the connection.
//!
//! A mutating webhook's patch of the options is checked and applied to a copy, but the connection is made with
//! the options of the request (a deliberate difference: upstream connects with the patched options).

use std::sync::Arc;

use api_types::{ApiError, Resource};
use serde_json::{Map, Value, json};

use super::{Operation, Plugins, Request, Validating, current_user};
use crate::server::Apiserver;

/// The options kind of a connect subresource.
pub fn options_kind(plural: &str, sub: &str) -> Option<&'static str> {
    Some(match (plural, sub) {
        ("pods", "exec") => "PodExecOptions",
        ("pods", "attach") => "PodAttachOptions",
        ("pods", "portforward") => "PodPortForwardOptions",
        ("pods", "proxy") => "PodProxyOptions",
        ("services", "proxy") => "ServiceProxyOptions",
        ("nodes", "proxy") => "NodeProxyOptions",
        _ => return None,
    })
}

/// Go's `strconv.ParseBool` as query parameters are converted (anything else counts as unset).
fn parse_bool(v: &str) -> bool {
    matches!(v, "1" | "t" | "T" | "TRUE" | "true" | "True")
}

/// The options object of a connect request as upstream's versioned `v1` type encodes it (`omitempty` fields
/// left out, `command` always present): from the query, and for the proxies the path after the subresource
/// (`rest`, with a leading `/` and the request's trailing slash, as upstream's `getRequestOptions`: a `path`
/// query parameter does not count).
pub fn options(kind: &str, query: Option<&str>, rest: &[String], trailing_slash: bool) -> Value {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let last = |key: &str| pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let all = |key: &str| pairs.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect::<Vec<_>>();
    let mut out = Map::new();
    out.insert("kind".into(), json!(kind));
    out.insert("apiVersion".into(), json!("v1"));
    match kind {
        "PodExecOptions" | "PodAttachOptions" => {
            for flag in ["stdin", "stdout", "stderr", "tty"] {
                if last(flag).is_some_and(parse_bool) {
                    out.insert(flag.into(), json!(true));
                }
            }
            if let Some(c) = last("container").filter(|c| !c.is_empty()) {
                out.insert("container".into(), json!(c));
            }
            if kind == "PodExecOptions" {
                let command = all("command");
                out.insert("command".into(), if command.is_empty() { Value::Null } else { json!(command) });
            }
        }
        "PodPortForwardOptions" => {
            let ports: Vec<i64> = all("ports").iter().filter_map(|p| p.trim().parse().ok()).collect();
            if !ports.is_empty() {
                out.insert("ports".into(), json!(ports));
            }
        }
        _ => {
            let mut path = rest.join("/");
            if !path.is_empty() && !path.starts_with('/') {
                path.insert(0, '/');
            }
            if trailing_slash && !path.ends_with('/') {
                path.push('/');
            }
            if !path.is_empty() {
                out.insert("path".into(), json!(path));
            }
        }
    }
    Value::Object(out)
}

/// Admission of a connect request of an API client: mutating webhooks, then the validating policies and
/// webhooks; an error refuses the connection before anything is dialled.
pub async fn admit(
    server: &Arc<Apiserver>,
    res: &'static Resource,
    ns: Option<&str>,
    name: &str,
    sub: &str,
    rest: &[String],
    uri: &http::Uri,
) -> Result<(), ApiError> {
    let Some(kind) = options_kind(res.plural, sub) else { return Ok(()) };
    let Some(user) = current_user() else { return Ok(()) };
    let opts = options(kind, uri.query(), rest, uri.path().ends_with('/'));
    let mut r = Request {
        operation: Operation::Connect,
        resource: res,
        subresource: sub,
        namespace: ns.unwrap_or_default(),
        name,
        object: None,
        old: None,
        user: &user,
        dry_run: false,
    };
    if let Some(snap) = server.webhooks.mutating_candidates(&**server, &r) {
        let mut patched = opts.clone();
        server.webhooks.mutate(&**server, snap, &r, Some(&mut patched)).await?;
    }
    r.object = Some(&opts);
    let plugins = Plugins { server: Arc::downgrade(server) };
    if let Some(validating) = plugins.validate_webhooks(&r) {
        validating.await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_as_the_versioned_types_encode_them() {
        let exec = options(
            "PodExecOptions",
            Some("command=sh&command=-c&command=echo+hi&stdin=true&tty=0&container=c1"),
            &[],
            false,
        );
        assert_eq!(
            serde_json::to_string(&exec).unwrap(),
            r#"{"kind":"PodExecOptions","apiVersion":"v1","stdin":true,"container":"c1","command":["sh","-c","echo hi"]}"#
        );
        let attach =
            options("PodAttachOptions", Some("stdin=1&stdout=True&stderr=true&container=container1"), &[], false);
        assert_eq!(
            attach,
            json!({"kind": "PodAttachOptions", "apiVersion": "v1", "stdin": true, "stdout": true, "stderr": true, "container": "container1"})
        );
        assert_eq!(options("PodExecOptions", None, &[], false)["command"], Value::Null, "command is never omitted");
        let pf = options("PodPortForwardOptions", Some("ports=8080&ports=x&ports=53"), &[], false);
        assert_eq!(pf, json!({"kind": "PodPortForwardOptions", "apiVersion": "v1", "ports": [8080, 53]}));
        let rest = ["api".to_string(), "v1".to_string()];
        assert_eq!(options("ServiceProxyOptions", None, &rest, true)["path"], "/api/v1/");
        assert_eq!(options("NodeProxyOptions", None, &rest, false)["path"], "/api/v1");
        assert_eq!(
            options("PodProxyOptions", Some("path=/x"), &[], false),
            json!({"kind": "PodProxyOptions", "apiVersion": "v1"}),
            "no subpath: no path"
        );
    }

    #[test]
    fn only_connect_subresources_have_options() {
        assert_eq!(options_kind("pods", "exec"), Some("PodExecOptions"));
        assert_eq!(options_kind("nodes", "proxy"), Some("NodeProxyOptions"));
        assert_eq!(options_kind("pods", "log"), None);
        assert_eq!(options_kind("pods", "status"), None);
    }
}
