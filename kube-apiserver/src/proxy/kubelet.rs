//! Proxying to the kubelet: `pods/exec`, `pods/attach`, `pods/portforward` and `nodes/proxy`. The request goes to
//! the kubelet of the pod's node over TLS with the apiserver's kubelet client certificate, at
//! `/exec/<ns>/<pod>/<container>`, `/attach/...`, `/portForward/<ns>/<pod>` or the node proxy path, through the
//! upgrade-aware handler ([`super::upgradeaware`]).

use std::sync::Arc;

use api_types::{ApiError, Resource};
use hyper::body::Incoming;
use serde_json::Value;

use super::upgradeaware::{Target, forward};
use crate::registry::meta_str;
use crate::request::RequestInfo;
use crate::server::{Apiserver, Resp};

/// Headers that describe the hop to the apiserver, not the request itself.
const HOP: [&str; 4] = ["host", "authorization", "keep-alive", "proxy-connection"];

/// The container a pod request means: the `container` parameter, or the only container.
pub fn container_of(pod: &Value, asked: Option<&str>) -> Result<String, ApiError> {
    let name = meta_str(pod, "name").unwrap_or_default();
    let containers: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    match asked.filter(|c| !c.is_empty()) {
        Some(c) => Ok(c.to_string()),
        None if containers.len() == 1 => Ok(containers[0].to_string()),
        None => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            containers.join(" ")
        ))),
    }
}

/// The node a pod runs on; a 400 as upstream's when it has none.
pub fn node_of(pod: &Value) -> Result<String, ApiError> {
    let name = meta_str(pod, "name").unwrap_or_default();
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_request(format!("pod {name} does not have a host assigned")))
}

/// Upstream's `GetPreferredNodeAddress`: the first address of the first type in `preferred` the node has (a
/// `Hostname` also from the node's `kubernetes.io/hostname` label).
pub fn preferred_address(node: &Value, preferred: &[String]) -> Result<String, String> {
    let addresses: Vec<&Value> =
        node.pointer("/status/addresses").and_then(Value::as_array).into_iter().flatten().collect();
    for t in preferred {
        if let Some(a) = addresses.iter().find(|a| a["type"] == t.as_str()).and_then(|a| a["address"].as_str()) {
            return Ok(a.to_string());
        }
        if t == "Hostname"
            && let Some(h) = node.pointer("/metadata/labels/kubernetes.io~1hostname").and_then(Value::as_str)
        {
            return Ok(h.to_string());
        }
    }
    let known: Vec<String> = addresses
        .iter()
        .map(|a| {
            format!("{{{} {}}}", a["type"].as_str().unwrap_or_default(), a["address"].as_str().unwrap_or_default())
        })
        .collect();
    Err(format!("no preferred addresses found; known addresses: [{}]", known.join(" ")))
}

/// Where a node's kubelet API is: its address by `--kubelet-preferred-address-types` and
/// `daemonEndpoints.kubeletEndpoint.Port`.
pub async fn kubelet_address(server: &Arc<Apiserver>, node: &str) -> Result<(String, u16), ApiError> {
    let nodes = api_types::resources::find("", "v1", "nodes").ok_or_else(|| ApiError::internal("no nodes resource"))?;
    let n = match server.registry.get(nodes, None, node).await {
        Ok(n) => n,
        Err(e) if e.code == 404 => {
            return Err(ApiError::unavailable(format!("node {node:?} is not registered: no kubelet serves it")));
        }
        Err(e) => return Err(e),
    };
    let ip = preferred_address(&n, &server.opts.kubelet_preferred_address_types).map_err(ApiError::unavailable)?;
    let port = n.pointer("/status/daemonEndpoints/kubeletEndpoint/Port").and_then(Value::as_u64).unwrap_or(10250);
    Ok((ip, u16::try_from(port).unwrap_or(10250)))
}

/// The raw query without `container` (which moves into the kubelet path).
fn query_without_container(raw: Option<&str>) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if k != "container" {
            out.append_pair(&k, &v);
        }
    }
    out.finish()
}

/// Serves `pods/{exec,attach,portforward}` and `nodes/proxy` through the kubelet.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    server: &Arc<Apiserver>,
    res: &'static Resource,
    ns: Option<&str>,
    name: &str,
    sub: &str,
    info: &RequestInfo,
    parts: &mut http::request::Parts,
    body: Incoming,
) -> Result<Resp, ApiError> {
    let raw_query = parts.uri.query();
    let (node, path) = match (res.plural, sub) {
        ("pods", "exec" | "attach") => {
            let pod = server.registry.get(res, ns, name).await?;
            let asked = form_urlencoded::parse(raw_query.unwrap_or_default().as_bytes())
                .find(|(k, _)| k == "container")
                .map(|(_, v)| v.into_owned());
            let container = container_of(&pod, asked.as_deref())?;
            let ns = ns.unwrap_or_default();
            let node = node_of(&pod)?;
            (node, format!("/{sub}/{ns}/{name}/{container}?{}", query_without_container(raw_query)))
        }
        ("pods", "portforward") => {
            let pod = server.registry.get(res, ns, name).await?;
            let ns = ns.unwrap_or_default();
            (node_of(&pod)?, format!("/portForward/{ns}/{name}?{}", raw_query.unwrap_or_default()))
        }
        ("nodes", "proxy") => {
            let rest = info.rest.join("/");
            (name.to_string(), format!("/{rest}?{}", raw_query.unwrap_or_default()))
        }
        _ => return Err(ApiError::unavailable(format!("{}/{sub} is not implemented yet", res.plural))),
    };
    let (ip, port) = kubelet_address(server, &node).await?;
    let mut tls = client::rustls_config(&server.kubelet_client).map_err(|e| ApiError::internal(e.to_string()))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server_name = rustls::pki_types::ServerName::try_from(ip.clone())
        .map_err(|e| ApiError::unavailable(format!("the kubelet on node {node:?} did not answer: {e}")))?;
    let mut headers = http::HeaderMap::new();
    for (k, v) in &parts.headers {
        if !HOP.contains(&k.as_str()) {
            headers.append(k, v.clone());
        }
    }
    let target = Target { tls: Some((tls, server_name)), ip, port, what: format!("the kubelet on node {node:?}") };
    forward(target, parts, &path, headers, body).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn preferred_addresses_as_upstream() {
        let types = |s: &str| s.split(',').map(String::from).collect::<Vec<_>>();
        let node = json!({"metadata": {"labels": {"kubernetes.io/hostname": "h1"}},
            "status": {"addresses": [{"type": "Hostname", "address": "node1"}, {"type": "InternalIP", "address": "10.0.0.1"},
                                      {"type": "ExternalIP", "address": "1.2.3.4"}]}});
        // kubeadm's order, then upstream's default order.
        assert_eq!(preferred_address(&node, &types("InternalIP,ExternalIP,Hostname")).unwrap(), "10.0.0.1");
        assert_eq!(
            preferred_address(&node, &types("Hostname,InternalDNS,InternalIP,ExternalDNS,ExternalIP")).unwrap(),
            "node1"
        );
        assert_eq!(preferred_address(&node, &types("ExternalDNS,ExternalIP")).unwrap(), "1.2.3.4");
        let bare = json!({"metadata": {"labels": {"kubernetes.io/hostname": "h1"}}, "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}});
        assert_eq!(
            preferred_address(&bare, &types("Hostname,InternalIP")).unwrap(),
            "h1",
            "Hostname falls back to the label"
        );
        assert_eq!(
            preferred_address(&bare, &types("ExternalIP")).unwrap_err(),
            "no preferred addresses found; known addresses: [{InternalIP 10.0.0.1}]"
        );
    }
}
