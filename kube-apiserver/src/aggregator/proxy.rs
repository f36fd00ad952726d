//! The proxy to an extension apiserver (upstream's `handler_proxy.go`): the request goes to an endpoint of the
//! APIService's Service over TLS, checked against `caBundle` (or not, with `insecureSkipTLSVerify`) and presenting
//! the `--proxy-client-cert-file` certificate, with the authenticated user in `X-Remote-User`, `X-Remote-Group` and
//! `X-Remote-Extra-*` (the client's own credentials and impersonation headers are not passed on). Endpoints are
//! chosen directly (upstream's `--enable-aggregator-routing=true`), so no service proxy is needed on this host.

use std::sync::Arc;

use api_types::ApiError;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use super::Route;
use crate::auth::UserInfo;
use crate::proxy::Target;
use crate::registry::Shared;
use crate::server::{Apiserver, Resp};

/// Why a backend cannot be reached: upstream's availability reason and message.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreachable {
    pub reason: &'static str,
    pub message: String,
}

fn unreachable(reason: &'static str, message: String) -> Unreachable {
    Unreachable { reason, message }
}

/// An endpoint (IP, port) of the route's Service, as upstream's `ResolveEndpoint`.
pub async fn endpoint(server: &Apiserver, route: &Route) -> Result<(String, u16), Unreachable> {
    service_endpoint(server, &route.service_namespace, &route.service_name, route.port).await
}

/// An object of the watch cache, or from storage when the cache has not seen it (yet).
async fn cached(server: &Apiserver, res: &'static api_types::Resource, ns: &str, name: &str) -> Option<Shared> {
    if let Ok(cache) = server.registry.cacher.cache(res).await
        && let Some(o) = cache.get(&crate::registry::key(res, Some(ns), name))
    {
        return Some(o);
    }
    server.registry.get(res, Some(ns), name).await.ok().map(Shared::new)
}

/// An endpoint (IP, port) of Service `ns/name` for its port `port` (also how admission webhooks are reached).
pub async fn service_endpoint(
    server: &Apiserver,
    ns: &str,
    name: &str,
    port: u16,
) -> Result<(String, u16), Unreachable> {
    let services = api_types::resources::find("", "v1", "services").expect("services are in the table");
    let svc = cached(server, services, ns, name)
        .await
        .ok_or_else(|| unreachable("ServiceNotFound", format!("service/{name} in \"{ns}\" is not present")))?;
    let svc_port = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["port"].as_u64() == Some(port as u64))
        .ok_or_else(|| {
            unreachable("ServicePortError", format!("service/{name} in \"{ns}\" is not listening on port {port}"))
        })?;
    let port_name = svc_port["name"].as_str().unwrap_or_default().to_string();
    let endpoints = api_types::resources::find("", "v1", "endpoints").expect("endpoints are in the table");
    let eps = cached(server, endpoints, ns, name).await.ok_or_else(|| {
        unreachable("EndpointsNotFound", format!("cannot find endpoints for service/{name} in \"{ns}\""))
    })?;
    for subset in eps["subsets"].as_array().into_iter().flatten() {
        let Some(p) = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or_default() == port_name)
            .and_then(|p| p["port"].as_u64())
        else {
            continue;
        };
        if let Some(ip) = subset["addresses"].as_array().and_then(|a| a.first()).and_then(|a| a["ip"].as_str()) {
            return Ok((ip.to_string(), p as u16));
        }
    }
    Err(unreachable(
        "MissingEndpoints",
        format!("endpoints for service/{name} in \"{ns}\" have no addresses with port name \"{port_name}\""),
    ))
}

/// The TLS settings and address of the route's backend.
pub async fn target(server: &Apiserver, route: &Route) -> Result<Target, Unreachable> {
    let (ip, port) = endpoint(server, route).await?;
    let read = |p: &Option<std::path::PathBuf>| p.as_ref().and_then(|p| std::fs::read(p).ok());
    let cfg = client::Config {
        ca_pem: route.ca_bundle.clone(),
        insecure_skip_tls_verify: route.insecure,
        client_cert_pem: read(&server.opts.proxy_client_cert_file),
        client_key_pem: read(&server.opts.proxy_client_key_file),
        ..Default::default()
    };
    let mut tls = client::rustls_config(&cfg)
        .map_err(|e| unreachable("FailedDiscoveryCheck", format!("no TLS configuration for the backend: {e}")))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let host = format!("{}.{}.svc", route.service_name, route.service_namespace);
    let server_name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| unreachable("FailedDiscoveryCheck", e.to_string()))?;
    Ok(Target { tls: Some((tls, server_name)), ip, port, what: format!("service {host}") })
}

/// The headers an extension apiserver's request-header authenticator reads.
fn user_headers(headers: &mut http::HeaderMap, user: &UserInfo) {
    if let Ok(v) = HeaderValue::from_str(&user.username) {
        headers.insert("x-remote-user", v);
    }
    for g in &user.groups {
        if let Ok(v) = HeaderValue::from_str(g) {
            headers.append("x-remote-group", v);
        }
    }
    for (k, vs) in &user.extra {
        let key: String = form_urlencoded::byte_serialize(k.as_bytes()).collect();
        let Ok(name) = http::HeaderName::from_bytes(format!("x-remote-extra-{key}").as_bytes()) else { continue };
        for v in vs {
            if let Ok(v) = HeaderValue::from_str(v) {
                headers.append(name.clone(), v);
            }
        }
    }
}

/// Forwards one request of a remote group-version (authentication and authorization have run).
pub async fn serve(server: &Arc<Apiserver>, route: &Route, req: Request<Incoming>, user: &UserInfo) -> Resp {
    if !route.available {
        return service_unavailable();
    }
    let target = match target(server, route).await {
        Ok(t) => t,
        Err(e) => {
            tracing::info!(apiservice = route.name, reason = e.reason, "{}", e.message);
            return service_unavailable();
        }
    };
    let (mut parts, body) = req.into_parts();
    let mut headers = http::HeaderMap::new();
    for (k, v) in &parts.headers {
        let n = k.as_str();
        if matches!(n, "host" | "authorization" | "keep-alive" | "proxy-connection")
            || n.starts_with("impersonate-")
            || n.starts_with("x-remote-")
        {
            continue;
        }
        headers.append(k, v.clone());
    }
    user_headers(&mut headers, user);
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    match crate::proxy::forward(target, &mut parts, &path, headers, body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(apiservice = route.name, error = %e, "extension apiserver did not answer");
            service_unavailable()
        }
    }
}

/// Upstream's answer for an unavailable APIService: a plain-text 503 (kubectl shows "the server is currently
/// unable to handle the request").
fn service_unavailable() -> Resp {
    let mut resp =
        Resp::new(http_body_util::Full::new(bytes::Bytes::from_static(b"service unavailable\n")).boxed_unsync());
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    resp
}

/// One GET of a JSON document from the backend as `system:kube-aggregator`, within 6 s.
async fn get_json(target: &Target, url: &str) -> Result<Value, String> {
    let fetch = async {
        let tcp = tokio::net::TcpStream::connect((target.ip.as_str(), target.port)).await.map_err(|e| e.to_string())?;
        let (tls, name) = target.tls.clone().ok_or("no TLS configuration")?;
        let stream =
            tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(name, tcp).await.map_err(|e| e.to_string())?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::get(url)
            .header(header::HOST, format!("{}:{}", target.ip, target.port))
            .header(header::ACCEPT, "application/json")
            .header("x-remote-user", "system:kube-aggregator")
            .header("x-remote-group", "system:masters")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        if !status.is_success() {
            return Err(format!("bad status from https://{}:{}{url}: {}", target.ip, target.port, status.as_u16()));
        }
        serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(6), fetch).await {
        Ok(r) => r,
        Err(_) => Err("Client.Timeout exceeded while awaiting headers".into()),
    }
}

/// The availability check (upstream's remote_available_controller): the backend's discovery document for the
/// group-version, as `system:kube-aggregator`; its `APIResourceList` on success.
pub async fn check(server: &Apiserver, route: &Route) -> Result<Value, Unreachable> {
    let target = target(server, route).await?;
    let url = format!("/apis/{}/{}", route.group, route.version);
    get_json(&target, &url).await.map_err(|e| {
        unreachable(
            "FailedDiscoveryCheck",
            format!("failing or missing response from https://{}:{}{url}: {e}", target_ip(&target), target.port),
        )
    })
}

/// The backend's OpenAPI v3 document of the route's group-version (upstream's aggregated OpenAPI v3 downloader):
/// its `/openapi/v3` index, then the document at the URL listed there, downloaded again only when that URL (whose
/// `hash` changes with the document) differs from `known`'s. None when the backend serves no such document.
pub async fn openapi_v3(server: &Apiserver, route: &Route, known: Option<&super::OpenApi>) -> Option<super::OpenApi> {
    let target = target(server, route).await.ok()?;
    let index = get_json(&target, "/openapi/v3").await.ok()?;
    let key = format!("apis/{}/{}", route.group, route.version);
    let url = index["paths"][&key]["serverRelativeURL"].as_str()?.to_string();
    if let Some(known) = known.filter(|k| k.url == url) {
        return Some(known.clone());
    }
    match get_json(&target, &url).await {
        Ok(doc) if doc["openapi"].is_string() => Some(super::OpenApi { url, document: Arc::new(doc) }),
        Ok(_) => None,
        Err(e) => {
            tracing::info!(apiservice = route.name, error = e, "could not download the OpenAPI v3 document");
            known.cloned()
        }
    }
}

fn target_ip(t: &Target) -> &str {
    &t.ip
}

/// Turns an `ApiError` from the local side into a response (used when a request cannot even be read).
pub fn error(e: &ApiError) -> Resp {
    crate::server::error_response(e)
}
