//! Proxying to the kubelet: `pods/exec`, `pods/attach`, `pods/portforward` and `nodes/proxy`; `forward` is also
//! the aggregator's path to extension apiservers.
//!
//! As upstream's upgrade-aware handler: the request goes to the kubelet of the pod's node over TLS (HTTP/1.1, so
//! that it can be upgraded) at `/exec/<ns>/<pod>/<container>`, `/attach/...`, `/portForward/<ns>/<pod>` or the
//! node proxy path. When the kubelet switches protocols (WebSocket or SPDY), the client gets its 101 and the two
//! connections are spliced byte for byte; any other answer is passed back.

use std::sync::Arc;

use api_types::{ApiError, Resource};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;

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
    let target = Target { tls, server_name, ip, port, what: format!("the kubelet on node {node:?}") };
    forward(target, parts, &path, headers, body).await
}

/// Where `forward` sends a request: TLS settings, the name the certificate must have, the address.
pub struct Target {
    pub tls: rustls::ClientConfig,
    pub server_name: rustls::pki_types::ServerName<'static>,
    pub ip: String,
    pub port: u16,
    /// Names the backend in errors ("the kubelet on node \"n1\"").
    pub what: String,
}

/// Sends a request over TLS (HTTP/1.1, so that it can be upgraded) with the given headers and streams the answer
/// back; a 101 splices the two connections byte for byte (upstream's upgrade-aware handler).
pub async fn forward(
    target: Target,
    parts: &mut http::request::Parts,
    path: &str,
    headers: http::HeaderMap,
    body: Incoming,
) -> Result<Resp, ApiError> {
    let Target { tls, server_name, ip, port, what } = target;
    let unreachable = |e: String| ApiError::unavailable(format!("{what} did not answer: {e}"));
    let tcp = tokio::net::TcpStream::connect((ip.as_str(), port)).await.map_err(|e| unreachable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(server_name, tcp)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(conn.with_upgrades());
    let mut req = Request::builder().method(parts.method.clone()).uri(path);
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    let req =
        req.header(header::HOST, format!("{ip}:{port}")).body(body).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut upstream = send.send_request(req).await.map_err(|e| unreachable(e.to_string()))?;
    let status = upstream.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_side) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
            return Err(ApiError::bad_request("the connection cannot be upgraded (HTTP/1.1 is required)"));
        };
        let backend_side = hyper::upgrade::on(&mut upstream);
        tokio::spawn(async move {
            let (Ok(a), Ok(b)) = tokio::join!(client_side, backend_side) else { return };
            let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
            let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
        });
        let mut resp = Resp::new(http_body_util::Full::new(Bytes::new()).boxed_unsync());
        *resp.status_mut() = status;
        *resp.headers_mut() = upstream.headers().clone();
        return Ok(resp);
    }
    let upgrade_asked = parts.headers.contains_key(header::UPGRADE);
    if upgrade_asked && !status.is_success() {
        // The backend refused the stream: pass its reason on as a Status.
        let body = upstream.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let msg = String::from_utf8_lossy(&body).trim().to_string();
        return Err(match status.as_u16() {
            400 => ApiError::bad_request(msg),
            404 => ApiError::new(404, "NotFound", msg),
            _ => ApiError::internal(msg),
        });
    }
    let passed: Vec<(http::HeaderName, HeaderValue)> = upstream
        .headers()
        .iter()
        .filter(|(k, _)| {
            matches!(k.as_str(), "content-type" | "warning" | "audit-id" | "cache-control" | "etag" | "retry-after")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // The response streams as it comes; it ends quietly if the backend connection drops.
    let stream = http_body_util::BodyDataStream::new(upstream.into_body())
        .take_while(|r| std::future::ready(r.is_ok()))
        .filter_map(|r| std::future::ready(r.ok()))
        .map(|b| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b)));
    let mut resp = Resp::new(http_body_util::StreamBody::new(stream).boxed_unsync());
    *resp.status_mut() = status;
    for (k, v) in passed {
        resp.headers_mut().append(k, v);
    }
    if !resp.headers().contains_key(header::CONTENT_TYPE) {
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    Ok(resp)
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
