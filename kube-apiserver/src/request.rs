//! Request info: what a URL and method mean to the API (verb, group, version, resource, namespace, name,
//! subresource), parsed as upstream's RequestInfoFactory does, plus query-string access.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestInfo {
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// Path segments after the subresource (proxy paths).
    pub rest: Vec<String>,
}

/// Subresources of namespaces that keep the `namespaces/<name>/<sub>` shape.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Parses an API path (`/api/v1/...` or `/apis/<group>/<version>/...`); None for anything else.
pub fn parse(method: &str, path: &str, watch_param: bool) -> Option<RequestInfo> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    let (group, version, mut rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest.to_vec()),
        ["apis", group, version, rest @ ..] => (*group, *version, rest.to_vec()),
        _ => return None,
    };
    if rest.is_empty() {
        return None;
    }
    let mut watch = watch_param;
    if rest[0] == "watch" {
        watch = true;
        rest.remove(0);
    }
    let mut info = RequestInfo { group: group.into(), version: version.into(), ..Default::default() };
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        info.namespace = Some(rest[1].to_string());
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            rest.drain(..2);
        }
    }
    info.resource = rest.first()?.to_string();
    info.name = rest.get(1).map(|s| s.to_string());
    info.subresource = rest.get(2).map(|s| s.to_string());
    info.rest = rest.iter().skip(3).map(|s| s.to_string()).collect();
    if info.resource == "namespaces" && info.name.is_some() && info.namespace.as_deref() == info.name.as_deref() {
        // `/api/v1/namespaces/<name>`: the namespace object itself (cluster-scoped).
        info.namespace = None;
    }
    info.verb = match (method, info.name.is_some()) {
        ("GET" | "HEAD", true) if watch => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) if watch => "watch",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (other, _) => {
            return Some(RequestInfo { verb: other.to_lowercase(), ..info });
        }
    }
    .to_string();
    Some(info)
}

/// The query string as a map (last value wins).
pub fn query(q: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(q.unwrap_or_default().as_bytes()).into_owned().collect()
}

pub fn flag(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key).is_some_and(|v| v == "true" || v == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(method: &str, path: &str) -> RequestInfo {
        parse(method, path, false).unwrap()
    }

    #[test]
    fn paths_as_upstream_reads_them() {
        let r = p("GET", "/api/v1/namespaces/default/pods/nginx");
        assert_eq!(
            (r.verb.as_str(), r.namespace.as_deref(), r.resource.as_str(), r.name.as_deref()),
            ("get", Some("default"), "pods", Some("nginx"))
        );
        let r = p("GET", "/api/v1/pods");
        assert_eq!((r.verb.as_str(), r.namespace, r.resource.as_str()), ("list", None, "pods"));
        let r = p("GET", "/api/v1/namespaces/kube-system");
        assert_eq!((r.resource.as_str(), r.name.as_deref(), r.namespace), ("namespaces", Some("kube-system"), None));
        let r = p("PUT", "/api/v1/namespaces/x/finalize");
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref(), r.subresource.as_deref()),
            ("namespaces", Some("x"), Some("finalize"))
        );
        let r = p("PATCH", "/apis/apps/v1/namespaces/default/deployments/web/scale");
        assert_eq!((r.verb.as_str(), r.group.as_str(), r.subresource.as_deref()), ("patch", "apps", Some("scale")));
        let r = p("DELETE", "/api/v1/namespaces/default/pods");
        assert_eq!(r.verb, "deletecollection");
        let r = p("GET", "/api/v1/watch/namespaces/default/pods");
        assert_eq!(r.verb, "watch");
        let r = parse("GET", "/api/v1/namespaces/default/pods", true).unwrap();
        assert_eq!(r.verb, "watch");
        let r = p("GET", "/api/v1/nodes/n1/proxy/stats/summary");
        assert_eq!(
            (r.subresource.as_deref(), r.rest.clone()),
            (Some("proxy"), vec!["stats".to_string(), "summary".to_string()])
        );
        assert!(parse("GET", "/healthz", false).is_none());
        assert!(parse("GET", "/api/v1", false).is_none());
    }
}
