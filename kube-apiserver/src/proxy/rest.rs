//! `pods/proxy` and `services/proxy` (upstream's `ProxyREST` of `pkg/registry/core/pod/rest/subresources.go` and
//! `pkg/registry/core/service/proxy.go`, served by the upgrade-aware handler): the backend from
//! [`super::location`], the path after `/proxy` joined to it with its trailing slash kept, the query as sent.
//! A GET or HEAD of the bare `.../proxy` (empty backend path) is answered with a 301 to `.../proxy/`, as
//! upstream's `proxyRedirectsforRootPath`. Methods GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS are forwarded;
//! the client's headers go on except the hop's own (its credentials were consumed by authentication), the answer
//! comes back with its headers through [`super::transport`], and upgrades are spliced.

use std::sync::Arc;

use api_types::{ApiError, Resource};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::location::{self, Location};
use super::transport::{Transport, dropped_response_header};
use super::upgradeaware::{Answer, Target, Unreachable, host_port, send, stream};
use crate::server::{Apiserver, Resp};

/// Upstream's `proxyMethods`.
pub const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Request headers not passed to the backend: the hop's own and the credentials and impersonation headers the
/// apiserver consumed.
fn dropped_request_header(name: &str, upgrade: bool) -> bool {
    matches!(
        name,
        "host" | "authorization" | "keep-alive" | "proxy-connection" | "te" | "trailer" | "transfer-encoding"
    ) || (!upgrade && matches!(name, "connection" | "upgrade"))
        || name.starts_with("impersonate-")
}

/// The path after `<name>/proxy` as upstream's connect options carry it (the request's segments after the
/// subresource, cleaned as `path.Join` does, with the request's trailing slash); empty for the bare `.../proxy`.
fn subpath(segments: &[String], trailing_slash: bool) -> String {
    let joined = segments.iter().filter(|s| !s.is_empty()).cloned().collect::<Vec<_>>().join("/");
    let mut p = if joined.is_empty() { String::new() } else { super::transport::join("", &format!("/{joined}")) };
    if trailing_slash && !p.ends_with('/') {
        p.push('/');
    }
    p
}

fn redirect(location: &str) -> Result<Resp, ApiError> {
    let mut resp = Resp::new(http_body_util::Full::new(Bytes::new()).boxed_unsync());
    *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
    let value = HeaderValue::from_str(location).map_err(|e| ApiError::bad_request(e.to_string()))?;
    resp.headers_mut().insert(header::LOCATION, value);
    Ok(resp)
}

/// Serves `<pods|services>/<id>/proxy[/path]` in namespace `ns`.
pub async fn serve(
    server: &Arc<Apiserver>,
    res: &'static Resource,
    ns: &str,
    id: &str,
    segments: &[String],
    parts: &mut http::request::Parts,
    body: Incoming,
) -> Result<Resp, ApiError> {
    if !METHODS.contains(&parts.method.as_str()) {
        return Err(ApiError::method_not_allowed(format!("{} is not supported on {}/proxy", parts.method, res.plural)));
    }
    let loc: Location = match res.plural {
        "pods" => match location::pod(server, ns, id).await? {
            Ok(l) => l,
            Err(dial) => return Err(ApiError::unavailable(format!("error trying to reach service: {dial}"))),
        },
        _ => location::service(server, ns, id).await?,
    };
    let request_path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    // The handler's location path, then the request's trailing slash (upstream's ServeHTTP).
    let location_path = subpath(segments, request_path.ends_with('/'));
    let mut backend_path = location_path.clone();
    if request_path.ends_with('/') && !backend_path.ends_with('/') {
        backend_path.push('/');
    }
    if backend_path.is_empty() && matches!(parts.method.as_str(), "GET" | "HEAD") {
        let q = query.as_deref().map(|q| format!("?{q}")).unwrap_or_default();
        return redirect(&format!("{request_path}/{q}"));
    }
    // What the client saw in front of the backend path: links and redirects are moved under it.
    let mut suffix = location_path.clone();
    if request_path.ends_with('/') && !suffix.ends_with('/') {
        suffix.push('/');
    }
    let transport = Transport {
        scheme: String::new(),
        host: String::new(),
        path_prepend: request_path.strip_suffix(suffix.as_str()).unwrap_or(&request_path).to_string(),
    };
    let request_host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let upgrade = parts.headers.contains_key(header::UPGRADE);
    let mut headers = http::HeaderMap::new();
    for (k, v) in &parts.headers {
        if !dropped_request_header(k.as_str(), upgrade) {
            headers.append(k, v.clone());
        }
    }
    // Go's reverse proxy keeps the Host the client asked for.
    if let Ok(h) = HeaderValue::from_str(&request_host)
        && !request_host.is_empty()
    {
        headers.insert(header::HOST, h);
    }
    let wire_path = if backend_path.is_empty() { "/".to_string() } else { backend_path.clone() };
    transport.forwarded_headers(&mut headers, &wire_path);
    let path_and_query = match &query {
        Some(q) => format!("{wire_path}?{q}"),
        None => wire_path,
    };
    let tls = if loc.https {
        // Pods and Services are reached by IP: no name to verify (upstream's proxy transport skips verification).
        let cfg = client::Config { insecure_skip_tls_verify: true, ..Default::default() };
        let mut tls = client::rustls_config(&cfg).map_err(|e| ApiError::internal(e.to_string()))?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name =
            rustls::pki_types::ServerName::try_from(loc.ip.clone()).map_err(|e| ApiError::internal(e.to_string()))?;
        Some((tls, name))
    } else {
        None
    };
    let backend_host = host_port(&loc.ip, loc.port);
    let target = Target { tls, ip: loc.ip.clone(), port: loc.port, what: backend_host.clone() };
    let upstream = match send(target, parts, &path_and_query, headers, body).await? {
        Ok(Answer::Switched(resp)) => return Ok(resp),
        Ok(Answer::Response(r)) => r,
        Err(Unreachable(e)) => return Err(ApiError::unavailable(format!("error trying to reach service: {e}"))),
    };
    let (head, body) = upstream.into_parts();
    let mut resp_headers = http::HeaderMap::new();
    for (k, v) in &head.headers {
        if !dropped_response_header(k.as_str()) {
            resp_headers.append(k, v.clone());
        }
    }
    let redirect_to = resp_headers.get(header::LOCATION).and_then(|l| l.to_str().ok()).map(str::to_string);
    let content_type = resp_headers.get(header::CONTENT_TYPE).and_then(|c| c.to_str().ok()).unwrap_or_default();
    let html = content_type.split(';').next().unwrap_or_default().trim() == "text/html";
    let body = if let Some(to) = redirect_to {
        let rewritten = transport.rewrite_url(&to, &backend_host, &request_host);
        if let Ok(v) = HeaderValue::from_str(&rewritten) {
            resp_headers.insert(header::LOCATION, v);
        }
        stream(body)
    } else if html && parts.method != http::Method::HEAD {
        let page = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let encoding = resp_headers.get(header::CONTENT_ENCODING).and_then(|e| e.to_str().ok()).unwrap_or_default();
        match transport.rewrite_body(&page, encoding, &backend_host, &request_host) {
            Some(rewritten) => {
                resp_headers.remove(header::CONTENT_LENGTH);
                http_body_util::Full::new(Bytes::from(rewritten)).boxed_unsync()
            }
            None => http_body_util::Full::new(page).boxed_unsync(),
        }
    } else {
        stream(body)
    };
    let mut resp = Resp::new(body);
    *resp.status_mut() = head.status;
    *resp.headers_mut() = resp_headers;
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subpaths_as_upstream_connect_options() {
        let seg = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(subpath(&[], false), "");
        assert_eq!(subpath(&[], true), "/");
        assert_eq!(subpath(&seg(&["a", "b"]), false), "/a/b");
        assert_eq!(subpath(&seg(&["a", "b"]), true), "/a/b/");
        assert_eq!(subpath(&seg(&["a", "", "..", "b"]), false), "/b");
    }
}
