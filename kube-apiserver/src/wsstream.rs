//! A streamed response (`pods/log`) over a WebSocket, as upstream's `wsstream.Reader` serves it when the request
//! is a WebSocket upgrade.
//!
//! As upstream (`NewReader(out, true, NewDefaultReaderProtocols())`): the subprotocols are `binary.k8s.io` (binary
//! messages, the bytes as read), `base64.binary.k8s.io` (text messages, the bytes base64-encoded) and none at all
//! (binary); the first one the client offers that is supported wins, and is echoed in `Sec-WebSocket-Protocol`.
//! An empty message comes first, then one message per read of at most 2048 bytes; messages from the client are
//! ignored. When the stream ends the server sends a Close (1000) and closes; when the client goes away the stream
//! is dropped. A refused handshake is answered as golang.org/x/net/websocket does: 403 with an empty body for
//! unsupported subprotocols, 400 for a missing key or an unsupported version.
//!
//! One difference: when no subprotocol was offered, upstream answers with an empty `Sec-WebSocket-Protocol`
//! header, which RFC 6455 clients (tungstenite, browsers) reject; it is left out here, as the kubelet does.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, Stream, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, frame::coding::CloseCode};
use tokio_tungstenite::tungstenite::{Message, handshake::derive_accept_key};

use crate::server::Resp;

/// Binary messages carrying the stream's bytes.
pub const BINARY: &str = "binary.k8s.io";
/// Text messages carrying the stream's bytes base64-encoded.
pub const BASE64_BINARY: &str = "base64.binary.k8s.io";

/// The most a message carries (upstream copies through a 2 KiB buffer, one message per read).
const MESSAGE_MAX: usize = 2048;

/// Whether the request asks for a WebSocket: `Upgrade: websocket` and an `upgrade` token in `Connection`
/// (upstream's `IsWebSocketRequest`).
pub fn is_websocket_request(headers: &HeaderMap) -> bool {
    let first = |name| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !first(header::UPGRADE).eq_ignore_ascii_case("websocket") {
        return false;
    }
    // `(^|.*,\s*)upgrade($|\s*,)` on the lowercased value.
    let connection = first(header::CONNECTION).to_ascii_lowercase();
    let tokens: Vec<&str> = connection.split(',').collect();
    tokens.iter().enumerate().any(|(i, t)| {
        let t = if i == 0 { t } else { t.trim_start() };
        let t = if i + 1 < tokens.len() { t.trim_end() } else { t };
        t == "upgrade"
    })
}

fn refuse(code: StatusCode, body: &'static str) -> Resp {
    let mut r = Resp::new(Full::new(Bytes::from_static(body.as_bytes())).boxed_unsync());
    *r.status_mut() = code;
    r
}

/// The subprotocol chosen among those the client offers (the first `Sec-WebSocket-Protocol` header, split on
/// commas, in the client's order; none offered is the empty protocol), or None.
fn negotiate(headers: &HeaderMap) -> Option<&'static str> {
    let offered = headers.get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).unwrap_or_default();
    offered.trim().split(',').map(str::trim).find_map(|p| [BINARY, BASE64_BINARY, ""].into_iter().find(|s| *s == p))
}

/// Upgrades the request to a WebSocket and copies `data` into it; the answer is the 101 (or the handshake's
/// refusal). The copy runs in its own task once the connection is upgraded.
pub fn serve<S, E>(parts: &mut http::request::Parts, data: S) -> Resp
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Send + 'static,
{
    let Some(key) = parts.headers.get("sec-websocket-key").filter(|k| !k.is_empty()) else {
        return refuse(StatusCode::BAD_REQUEST, "mismatch challenge/response");
    };
    let version = parts.headers.get("sec-websocket-version").and_then(|v| v.to_str().ok());
    if !matches!(version, Some("13" | "8")) {
        let mut r = refuse(StatusCode::BAD_REQUEST, "bad protocol version");
        r.headers_mut().insert("sec-websocket-version", HeaderValue::from_static("13"));
        return r;
    }
    let Some(protocol) = negotiate(&parts.headers) else {
        return refuse(StatusCode::FORBIDDEN, "");
    };
    let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return refuse(StatusCode::BAD_REQUEST, "the connection cannot be upgraded (HTTP/1.1 is required)");
    };
    let accept = derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
        let Ok(io) = on_upgrade.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
        copy(ws, data, protocol == BASE64_BINARY).await;
    });
    let mut r = refuse(StatusCode::SWITCHING_PROTOCOLS, "");
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert("sec-websocket-accept", HeaderValue::from_str(&accept).expect("base64 is a valid header"));
    if !protocol.is_empty() {
        h.insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
    }
    r
}

fn message(data: &[u8], base64: bool) -> Message {
    use base64::Engine;
    if base64 {
        Message::Text(base64::engine::general_purpose::STANDARD.encode(data).into())
    } else {
        Message::Binary(Bytes::copy_from_slice(data))
    }
}

/// upstream's `messageCopy` with the ping message, and `IgnoreReceives` alongside.
async fn copy<IO, S, E>(ws: WebSocketStream<IO>, data: S, base64: bool)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    S: Stream<Item = Result<Bytes, E>>,
{
    let (mut tx, mut rx) = ws.split();
    let mut data = std::pin::pin!(data);
    if tx.send(message(&[], base64)).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            chunk = data.next() => match chunk {
                Some(Ok(bytes)) => {
                    for piece in bytes.chunks(MESSAGE_MAX) {
                        if tx.send(message(piece, base64)).await.is_err() {
                            return;
                        }
                    }
                }
                // The end of the stream, or an error reading it: close the socket.
                Some(Err(_)) | None => break,
            },
            received = rx.next() => match received {
                Some(Ok(m)) if !m.is_close() => {}
                // The client went away: the stream is dropped with it.
                _ => return,
            },
        }
    }
    let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
    if tx.send(Message::Close(Some(close))).await.is_err() {
        return;
    }
    // Give the client a moment to answer the Close, so that the connection ends cleanly.
    let _ = tokio::time::timeout(Duration::from_secs(5), async { while let Some(Ok(_)) = rx.next().await {} }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn websocket_requests_as_upstream() {
        assert!(is_websocket_request(&headers(&[("upgrade", "WebSocket"), ("connection", "Upgrade")])));
        assert!(is_websocket_request(&headers(&[("upgrade", "websocket"), ("connection", "keep-alive, Upgrade")])));
        assert!(is_websocket_request(&headers(&[("upgrade", "websocket"), ("connection", "upgrade , close")])));
        assert!(!is_websocket_request(&headers(&[("upgrade", "websocket"), ("connection", "keep-alive")])));
        assert!(!is_websocket_request(&headers(&[("upgrade", "SPDY/3.1"), ("connection", "Upgrade")])));
        assert!(!is_websocket_request(&headers(&[("connection", "Upgrade")])));
    }

    #[test]
    fn subprotocols_in_the_clients_order() {
        assert_eq!(negotiate(&headers(&[])), Some(""));
        assert_eq!(negotiate(&headers(&[("sec-websocket-protocol", "binary.k8s.io")])), Some(BINARY));
        let both = headers(&[("sec-websocket-protocol", "base64.binary.k8s.io, binary.k8s.io")]);
        assert_eq!(negotiate(&both), Some(BASE64_BINARY));
        assert_eq!(negotiate(&headers(&[("sec-websocket-protocol", "v5.channel.k8s.io")])), None);
    }

    #[test]
    fn messages_per_protocol() {
        assert_eq!(message(b"hi", false), Message::Binary(Bytes::from_static(b"hi")));
        assert_eq!(message(b"hi", true), Message::Text("aGk=".into()));
    }
}
