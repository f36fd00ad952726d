//! The upgrade-aware handler's transport (upstream's `k8s.io/apimachinery/pkg/util/proxy/upgradeaware.go`): one
//! HTTP/1.1 request to a backend, over TLS or plain TCP, so that it can be upgraded. When the backend switches
//! protocols (WebSocket or SPDY), the client gets its 101 and the two connections are spliced byte for byte;
//! any other answer is handed back to the caller ([`send`]), or passed on with a few headers ([`forward`], the
//! kubelet's and the aggregator's path).

use std::sync::Arc;

use api_types::ApiError;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::server::Resp;

/// Where a request goes: TLS settings and the name the certificate must have (None: plain HTTP), the address.
pub struct Target {
    pub tls: Option<(rustls::ClientConfig, rustls::pki_types::ServerName<'static>)>,
    pub ip: String,
    pub port: u16,
    /// Names the backend in errors ("the kubelet on node \"n1\"").
    pub what: String,
}

/// The backend's answer.
pub enum Answer {
    /// It switched protocols: the client's 101, the connections spliced.
    Switched(Resp),
    /// Any other answer, its body still to read.
    Response(http::Response<Incoming>),
}

/// Why a backend could not be reached (the dial, TLS or HTTP error as text).
#[derive(Debug)]
pub struct Unreachable(pub String);

async fn handshake<S>(stream: S) -> Result<hyper::client::conn::http1::SendRequest<Incoming>, Unreachable>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| Unreachable(e.to_string()))?;
    tokio::spawn(conn.with_upgrades());
    Ok(send)
}

/// Sends `parts`' method to `path` on the target with these headers (Host is the target's unless given) and the
/// body as it streams in.
pub async fn send(
    target: Target,
    parts: &mut http::request::Parts,
    path: &str,
    headers: http::HeaderMap,
    body: Incoming,
) -> Result<Result<Answer, Unreachable>, ApiError> {
    let Target { tls, ip, port, .. } = target;
    let tcp = match tokio::net::TcpStream::connect((ip.as_str(), port)).await {
        Ok(t) => t,
        Err(e) => return Ok(Err(Unreachable(format!("dial tcp {}: connect: {e}", host_port(&ip, port))))),
    };
    let _ = tcp.set_nodelay(true);
    let sender = match tls {
        Some((config, name)) => match tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await {
            Ok(s) => handshake(s).await,
            Err(e) => Err(Unreachable(e.to_string())),
        },
        None => handshake(tcp).await,
    };
    let mut sender = match sender {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let mut req = Request::builder().method(parts.method.clone()).uri(path);
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    if !headers.contains_key(header::HOST) {
        req = req.header(header::HOST, host_port(&ip, port));
    }
    let req = req.body(body).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut upstream = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => return Ok(Err(Unreachable(e.to_string()))),
    };
    if upstream.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Ok(Answer::Response(upstream)));
    }
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
    *resp.status_mut() = upstream.status();
    *resp.headers_mut() = upstream.headers().clone();
    Ok(Ok(Answer::Switched(resp)))
}

/// `ip:port`, with brackets for IPv6.
pub fn host_port(ip: &str, port: u16) -> String {
    if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") }
}

/// The backend's body streamed to the client as it comes; it ends quietly if the backend connection drops.
pub fn stream(body: Incoming) -> crate::server::Body {
    let stream = http_body_util::BodyDataStream::new(body)
        .take_while(|r| std::future::ready(r.is_ok()))
        .filter_map(|r| std::future::ready(r.ok()))
        .map(|b| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b)));
    http_body_util::StreamBody::new(stream).boxed_unsync()
}

/// Sends a request and passes the answer on: a 101 splices, a refused upgrade becomes a Status with the backend's
/// reason, anything else streams back with its content type and a few API headers.
pub async fn forward(
    target: Target,
    parts: &mut http::request::Parts,
    path: &str,
    headers: http::HeaderMap,
    body: Incoming,
) -> Result<Resp, ApiError> {
    let what = target.what.clone();
    let upstream = match send(target, parts, path, headers, body).await? {
        Ok(Answer::Switched(resp)) => return Ok(resp),
        Ok(Answer::Response(r)) => r,
        Err(Unreachable(e)) => return Err(ApiError::unavailable(format!("{what} did not answer: {e}"))),
    };
    let status = upstream.status();
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
    let mut resp = Resp::new(stream(upstream.into_body()));
    *resp.status_mut() = status;
    for (k, v) in passed {
        resp.headers_mut().append(k, v);
    }
    if !resp.headers().contains_key(header::CONTENT_TYPE) {
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    Ok(resp)
}
