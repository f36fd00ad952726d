//! The kubelet API's streaming endpoints: `/exec/<ns>/<pod>/<container>`, `/attach/<ns>/<pod>/<container>` and
//! `/portForward/<ns>/<pod>`, which the apiserver proxies `pods/exec`, `pods/attach` and `pods/portforward` to.
//!
//! The runtime does the work: CRI `Exec`, `Attach` and `PortForward` return a URL of containerd's streaming server,
//! which the kubelet dials with SPDY ([`proto::streaming`]). Towards the client the kubelet speaks what kubectl
//! offers:
//! - exec and attach over a WebSocket with any channel protocol upstream accepts: `v5.channel.k8s.io`,
//!   `v4.channel.k8s.io`, `v3.channel.k8s.io`, `v2.channel.k8s.io`, the legacy `channel.k8s.io` (also when no
//!   protocol is offered) and the base64 variants (`base64.channel.k8s.io`, `v4.base64.channel.k8s.io`,
//!   `v5.base64.channel.k8s.io`): messages whose first byte is the channel (0 stdin, 1 stdout, 2 stderr, 3 status,
//!   4 resize, 255 close in v5; in base64 text messages the channel's digit and the data base64-encoded), translated
//!   to and from the runtime's SPDY streams; v4 and v5 carry the command's Status as JSON, older versions its error
//!   text only;
//! - exec and attach over SPDY (kubectl's fallback) and port-forward over SPDY, directly or tunnelled in WebSocket
//!   binary messages (`SPDY/3.1+portforward.k8s.io`): each stream the client opens is opened with the same headers
//!   on the runtime's session and the two are spliced.

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use proto::cri::{AttachRequest, ContainerState, ContainerStatusRequest, ExecRequest, PortForwardRequest};
use proto::spdy::{Session, Stream};
use proto::streaming::{self, ExecStreams};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, frame::coding::CloseCode};
use tokio_tungstenite::tungstenite::{Message, handshake::derive_accept_key};

use crate::pods::PodManager;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// WebSocket subprotocols for exec and attach (the client's order decides among them, as upstream's wsstream).
const WS_EXEC: [&str; 9] = [
    "v5.channel.k8s.io",
    "v5.base64.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
    // No Sec-WebSocket-Protocol at all: the legacy binary protocol.
    "",
];
const WS_PORT_FORWARD: &str = "SPDY/3.1+portforward.k8s.io";

/// How a WebSocket channel protocol frames data and reports the command's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Channels {
    /// Text messages: the channel as a digit, the data base64-encoded.
    base64: bool,
    /// 1 for the legacy protocols, then 2 to 5.
    version: u8,
}

impl Channels {
    fn of(protocol: &str) -> Option<Channels> {
        let (base64, version) = match protocol {
            "" | "channel.k8s.io" => (false, 1),
            "base64.channel.k8s.io" => (true, 1),
            "v2.channel.k8s.io" => (false, 2),
            "v3.channel.k8s.io" => (false, 3),
            "v4.channel.k8s.io" => (false, 4),
            "v4.base64.channel.k8s.io" => (true, 4),
            "v5.channel.k8s.io" => (false, 5),
            "v5.base64.channel.k8s.io" => (true, 5),
            _ => return None,
        };
        Some(Channels { base64, version })
    }

    fn encode(&self, channel: u8, data: &[u8]) -> Message {
        use base64::Engine;
        if self.base64 {
            let mut text = String::with_capacity(1 + data.len() * 4 / 3 + 4);
            text.push(char::from(b'0' + channel));
            text.push_str(&base64::engine::general_purpose::STANDARD.encode(data));
            Message::Text(text.into())
        } else {
            let mut m = Vec::with_capacity(data.len() + 1);
            m.push(channel);
            m.extend_from_slice(data);
            Message::Binary(m.into())
        }
    }

    /// The channel and data of a message from the client (None for one that carries none).
    fn decode(&self, msg: &Message) -> Option<(u8, Vec<u8>)> {
        use base64::Engine;
        match msg {
            Message::Binary(b) if !self.base64 && !b.is_empty() => Some((b[0], b[1..].to_vec())),
            Message::Text(t) if self.base64 && !t.is_empty() => {
                let channel = t.as_bytes()[0].checked_sub(b'0')?;
                Some((channel, base64::engine::general_purpose::STANDARD.decode(&t.as_bytes()[1..]).ok()?))
            }
            _ => None,
        }
    }

    /// What goes on the status channel when the command ends, from the runtime's Status JSON: v4 and v5 carry the
    /// Status itself (a Success one when the runtime sent none); older versions only a failure's message.
    fn status(&self, runtime_status: &[u8]) -> Option<Vec<u8>> {
        let status: Value = serde_json::from_slice(runtime_status).unwrap_or(Value::Null);
        let success = runtime_status.is_empty() || status.get("status").and_then(Value::as_str) == Some("Success");
        if self.version >= 4 {
            return Some(if runtime_status.is_empty() {
                br#"{"metadata":{},"status":"Success"}"#.to_vec()
            } else {
                runtime_status.to_vec()
            });
        }
        if success {
            return None;
        }
        let message = status.get("message").and_then(Value::as_str).map(String::from);
        Some(message.unwrap_or_else(|| String::from_utf8_lossy(runtime_status).into_owned()).into_bytes())
    }
}

fn text(code: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(msg.into())).boxed_unsync());
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim)
}

/// How the client asked to upgrade.
enum Upgrade {
    /// A WebSocket with this subprotocol; the response carries this accept key.
    WebSocket { protocol: String, accept: String },
    /// SPDY/3.1 with this stream protocol.
    Spdy { protocol: String },
}

/// The upgrade a request asks for and the protocol chosen: the first the client offers that is supported (no
/// WebSocket protocol offered at all is the empty one).
fn negotiate(h: &HeaderMap, ws: &[&str], spdy: &[&str]) -> Result<Upgrade, String> {
    let upgrade = h.get(header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    if upgrade == "websocket" {
        let key = h.get("sec-websocket-key").ok_or("missing Sec-WebSocket-Key")?;
        let mut offered: Vec<&str> = values(h, "sec-websocket-protocol").filter(|p| !p.is_empty()).collect();
        if offered.is_empty() {
            offered.push("");
        }
        let protocol = offered
            .iter()
            .find(|p| ws.contains(p))
            .ok_or_else(|| format!("requested protocol(s) are not supported: {offered:?}; supports {ws:?}"))?;
        return Ok(Upgrade::WebSocket { protocol: protocol.to_string(), accept: derive_accept_key(key.as_bytes()) });
    }
    if upgrade.starts_with("spdy/3.1") {
        let offered: Vec<&str> = values(h, "x-stream-protocol-version").collect();
        let protocol = offered
            .iter()
            .find(|p| spdy.contains(p))
            .ok_or_else(|| format!("none of the offered stream protocols {offered:?} is supported (want {spdy:?})"))?;
        return Ok(Upgrade::Spdy { protocol: protocol.to_string() });
    }
    Err("the request must upgrade the connection to websocket or SPDY/3.1".into())
}

fn switching(upgrade: &Upgrade) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()).boxed_unsync());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    match upgrade {
        Upgrade::WebSocket { protocol, accept } => {
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            h.insert("sec-websocket-accept", HeaderValue::from_str(accept).expect("base64 is a valid header"));
            if !protocol.is_empty() {
                h.insert("sec-websocket-protocol", HeaderValue::from_str(protocol).expect("negotiated from a header"));
            }
        }
        Upgrade::Spdy { protocol } => {
            h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
            h.insert("x-stream-protocol-version", HeaderValue::from_str(protocol).expect("negotiated from a header"));
        }
    }
    r
}

fn find_pod(manager: &PodManager, ns: &str, name: &str) -> Option<std::sync::Arc<Value>> {
    manager.desired_pods().into_iter().find(|p| {
        p.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
            && p.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
    })
}

fn flag(q: &HashMap<String, Vec<String>>, k: &str) -> bool {
    q.get(k).and_then(|v| v.first()).is_some_and(|v| v == "true" || v == "1")
}

/// `/exec/...` and `/attach/...`.
pub async fn exec(manager: &PodManager, mut req: Request<Incoming>, attach: bool) -> Response<Body> {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(4, '/').collect();
    let [_, ns, pod, container] = parts.as_slice() else {
        return text(StatusCode::BAD_REQUEST, "expected /exec|attach/<namespace>/<pod>/<container>");
    };
    let mut q: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()) {
        q.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    let (stdin, stdout, stderr, tty) = (flag(&q, "stdin"), flag(&q, "stdout"), flag(&q, "stderr"), flag(&q, "tty"));
    let cmd = q.get("command").cloned().unwrap_or_default();
    if !attach && cmd.is_empty() {
        return text(StatusCode::BAD_REQUEST, "you must specify at least one command for the container");
    }
    if !(stdin || stdout || stderr) {
        return text(StatusCode::BAD_REQUEST, "you must specify at least one of stdin, stdout, stderr");
    }
    let upgrade = match negotiate(req.headers(), &WS_EXEC, &[streaming::EXEC_PROTOCOL]) {
        Ok(u) => u,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let Some(p) = find_pod(manager, ns, pod) else {
        return text(StatusCode::NOT_FOUND, format!("pod {ns}/{pod} is not on this node"));
    };
    let uid = p.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
    let Some(id) = manager.running_container_id(uid, container).await else {
        return text(StatusCode::BAD_REQUEST, format!("container {container:?} in pod {pod:?} is not running"));
    };
    let mut rt = manager.cri.runtime.clone();
    let stderr = stderr && !tty;
    let container_id = id.clone();
    let url = if attach {
        rt.attach(AttachRequest { container_id: id, stdin, tty, stdout, stderr }).await.map(|r| r.into_inner().url)
    } else {
        rt.exec(ExecRequest { container_id: id, cmd, tty, stdin, stdout, stderr }).await.map(|r| r.into_inner().url)
    };
    let url = match url {
        Ok(u) => u,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("the runtime refused: {}", e.message())),
    };
    // Dial the runtime before answering, so that a failure is still an HTTP error the client can show.
    let on_upgrade = hyper::upgrade::on(&mut req);
    let resp = switching(&upgrade);
    match upgrade {
        Upgrade::WebSocket { protocol, .. } => {
            let attached_at = std::time::SystemTime::now();
            let streams = match streaming::open_exec(&url, stdin, stdout, stderr, tty).await {
                Ok(s) => s,
                Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            };
            let early = attach.then(|| EarlyOutput { runtime: rt, id: container_id, attached_at, stdout, stderr });
            tokio::spawn(async move {
                let Ok(io) = on_upgrade.await else { return };
                let ws = WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
                let channels = Channels::of(&protocol).expect("negotiated from WS_EXEC");
                websocket_exec(ws, streams, channels, early).await;
            });
        }
        Upgrade::Spdy { .. } => {
            let (upstream, _) = match streaming::connect(&url, streaming::EXEC_PROTOCOL).await {
                Ok(s) => s,
                Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            };
            tokio::spawn(async move {
                let Ok(io) = on_upgrade.await else { return };
                let (_client, incoming) = Session::new(TokioIo::new(io), false);
                relay(incoming, upstream).await;
            });
        }
    }
    resp
}

/// `/portForward/<ns>/<pod>`.
pub async fn port_forward(manager: &PodManager, mut req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(3, '/').collect();
    let [_, ns, pod] = parts.as_slice() else {
        return text(StatusCode::BAD_REQUEST, "expected /portForward/<namespace>/<pod>");
    };
    let upgrade = match negotiate(req.headers(), &[WS_PORT_FORWARD], &[streaming::PORT_FORWARD_PROTOCOL]) {
        Ok(u) => u,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let Some(p) = find_pod(manager, ns, pod) else {
        return text(StatusCode::NOT_FOUND, format!("pod {ns}/{pod} is not on this node"));
    };
    let uid = p.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
    let Some(sandbox) = manager.sandbox_id(uid).await else {
        return text(StatusCode::BAD_REQUEST, format!("pod {pod:?} has no running sandbox"));
    };
    let mut rt = manager.cri.runtime.clone();
    let url = match rt.port_forward(PortForwardRequest { pod_sandbox_id: sandbox, port: vec![] }).await {
        Ok(r) => r.into_inner().url,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("the runtime refused: {}", e.message())),
    };
    let (upstream, _) = match streaming::connect(&url, streaming::PORT_FORWARD_PROTOCOL).await {
        Ok(s) => s,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let resp = switching(&upgrade);
    let websocket = matches!(upgrade, Upgrade::WebSocket { .. });
    tokio::spawn(async move {
        let Ok(io) = on_upgrade.await else { return };
        let incoming = if websocket {
            let ws = WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
            let (near, far) = tokio::io::duplex(64 * 1024);
            tokio::spawn(tunnel(ws, far));
            Session::new(near, false).1
        } else {
            Session::new(TokioIo::new(io), false).1
        };
        relay(incoming, upstream).await;
    });
    resp
}

type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// Carries a byte stream in WebSocket binary messages (SPDY tunnelled by kubectl's port-forward).
async fn tunnel(mut ws: Ws, mut io: tokio::io::DuplexStream) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if io.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Text(_) | Message::Frame(_))) => {}
                _ => break,
            },
            n = io.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if ws.send(Message::Binary(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        break;
                    }
                }
            },
        }
    }
    let _ = ws.close(None).await;
}

/// Opens each stream the client opens on the runtime's session too, with the same headers, and splices the two.
pub async fn relay(mut incoming: mpsc::Receiver<Stream>, upstream: Session) {
    while let Some(down) = incoming.recv().await {
        let upstream = upstream.clone();
        tokio::spawn(async move {
            match upstream.open(down.headers.clone()).await {
                Ok(up) => splice(down, up).await,
                Err(e) => {
                    tracing::debug!(error = %e, "the runtime refused a stream");
                    down.writer().reset().await;
                }
            }
        });
    }
    upstream.close().await;
}

async fn splice(a: Stream, b: Stream) {
    async fn copy(mut from: mpsc::Receiver<Bytes>, to: proto::spdy::StreamWriter) {
        while let Some(d) = from.recv().await {
            if to.send(&d).await.is_err() {
                return;
            }
        }
        let _ = to.close().await;
    }
    let ((ar, aw), (br, bw)) = (a.split(), b.split());
    tokio::join!(copy(ar, bw), copy(br, aw));
}

/// How long before an attach a container may have started for its earlier output to be replayed ([`EarlyOutput`]).
const EARLY: std::time::Duration = std::time::Duration::from_secs(2);
/// The most of a container's log an attach replays.
const EARLY_MAX: u64 = 1 << 20;

/// What an attached container wrote before the attach began, sent when the container started moments before the
/// attach and ended without writing anything more. `kubectl run -i` attaches once the pod is Running and Ready,
/// and a short command (`echo`, `nslookup`) has often written everything and exited by then. Upstream's kubelet
/// notices a started container at its next PLEG relist (up to a second later), so kubectl mostly finds such a pod
/// completed and prints its logs; ours reports Running at once, and without this the output was lost.
struct EarlyOutput {
    runtime: proto::cri::runtime_service_client::RuntimeServiceClient<proto::Transport>,
    id: String,
    attached_at: std::time::SystemTime,
    stdout: bool,
    stderr: bool,
}

impl EarlyOutput {
    /// The container's log as (channel, bytes) messages, if it has exited and had started less than [`EARLY`]
    /// before the attach; nothing otherwise.
    async fn fetch(mut self) -> Vec<(u8, Vec<u8>)> {
        // The attach streams end as the process exits, a moment before the runtime reports the exit.
        let mut exited = None;
        for _ in 0..20 {
            let request = ContainerStatusRequest { container_id: self.id.clone(), verbose: false };
            let Ok(Some(status)) = self.runtime.container_status(request).await.map(|r| r.into_inner().status) else {
                return Vec::new();
            };
            if status.state != ContainerState::ContainerRunning as i32 {
                exited = Some(status);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let Some(status) = exited else { return Vec::new() };
        let started = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(status.started_at.max(0) as u64);
        if self.attached_at.duration_since(started).unwrap_or_default() > EARLY {
            return Vec::new();
        }
        // Its first MiB at most: what a command writes in its first moments, kept off the kubelet's heap otherwise.
        let Ok(file) = tokio::fs::File::open(&status.log_path).await else { return Vec::new() };
        let mut log = Vec::new();
        if file.take(EARLY_MAX).read_to_end(&mut log).await.is_err() {
            return Vec::new();
        }
        early_messages(&String::from_utf8_lossy(&log), self.stdout, self.stderr)
    }
}

/// A CRI log's lines as messages on the stdout (1) and stderr (2) channels asked for, consecutive lines of one
/// stream in one message.
fn early_messages(log: &str, stdout: bool, stderr: bool) -> Vec<(u8, Vec<u8>)> {
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    for line in log.lines() {
        let Some((_, stream, partial, content)) = crate::server::parse_cri_line(line) else { continue };
        let channel = match stream {
            "stdout" if stdout => 1,
            "stderr" if stderr => 2,
            _ => continue,
        };
        if out.last().is_none_or(|(c, _)| *c != channel) {
            out.push((channel, Vec::new()));
        }
        let data = &mut out.last_mut().expect("pushed above").1;
        data.extend_from_slice(content.as_bytes());
        if !partial {
            data.push(b'\n');
        }
    }
    out
}

/// Translates a channel protocol on a WebSocket to the runtime's SPDY streams, until the command ends (its status
/// goes on channel 3, then the socket is closed) or the client leaves. An attach passes its [`EarlyOutput`].
async fn websocket_exec(mut ws: Ws, s: ExecStreams, channels: Channels, mut early: Option<EarlyOutput>) {
    let ExecStreams { session, mut error, stdin, mut stdout, mut stderr, resize } = s;
    let stdin = stdin.map(|s| s.writer());
    let resize = resize.map(|s| s.writer());
    let mut status = Vec::new();
    let mut forwarded = false;
    async fn next(s: &mut Option<Stream>) -> Option<Bytes> {
        match s {
            Some(s) => s.recv().await,
            None => std::future::pending().await,
        }
    }
    // An empty message on the lowest channel written to tells the client the connection is established (upstream).
    let first = if stdout.is_some() {
        1
    } else if stderr.is_some() {
        2
    } else {
        3
    };
    // With a terminal, what the command writes waits for the client's first message (kubectl sends the terminal's
    // size as soon as its streams exist), for half a second at most: kubectl up to 1.33 starts reading before it has
    // created its streams and drops what arrives first (kubernetes#131189), which loses a shell's prompt.
    let mut held = resize.is_some().then(|| tokio::time::Instant::now() + std::time::Duration::from_millis(500));
    if held.is_none() && ws.send(channels.encode(first, &[])).await.is_err() {
        session.close().await;
        return;
    }
    loop {
        if held.is_some_and(|until| until <= tokio::time::Instant::now()) {
            held = None;
            if ws.send(channels.encode(first, &[])).await.is_err() {
                break;
            }
        }
        let hold = async move {
            match held {
                Some(until) => tokio::time::sleep_until(until).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = hold => {}
            msg = ws.next() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    session.close().await;
                    return;
                }
                Some(Ok(m)) => {
                    // The client's first message: its streams exist, the held output can go.
                    if held.is_some() {
                        held = Some(tokio::time::Instant::now());
                    }
                    match channels.decode(&m) {
                        Some((0, data)) => if let Some(w) = &stdin { let _ = w.send(&data).await; },
                        Some((4, data)) => if let Some(w) = &resize { let _ = w.send(&data).await; },
                        // v5's close signal: the client has no more stdin.
                        Some((255, data)) if channels.version >= 5 && data.first() == Some(&0) => {
                            if let Some(w) = &stdin { let _ = w.close().await; }
                        }
                        _ => {}
                    }
                }
            },
            b = next(&mut stdout), if held.is_none() => match b {
                Some(b) => {
                    forwarded |= !b.is_empty();
                    if ws.send(channels.encode(1, &b)).await.is_err() { break }
                }
                None => stdout = None,
            },
            b = next(&mut stderr), if held.is_none() => match b {
                Some(b) => {
                    forwarded |= !b.is_empty();
                    if ws.send(channels.encode(2, &b)).await.is_err() { break }
                }
                None => stderr = None,
            },
            b = error.recv(), if held.is_none() => match b {
                Some(b) => status.extend_from_slice(&b),
                None => {
                    // The command is over. What it wrote is sent before its status: read each output stream to its
                    // end (the runtime closes them with the connection), as its copy may finish after the status.
                    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
                    for (channel, s) in [(1u8, &mut stdout), (2, &mut stderr)] {
                        while let Some(s) = s.as_mut() {
                            match tokio::time::timeout_at(deadline, s.recv()).await {
                                Ok(Some(b)) => {
                                    forwarded |= !b.is_empty();
                                    let _ = ws.send(channels.encode(channel, &b)).await;
                                }
                                _ => break,
                            }
                        }
                    }
                    if !forwarded && let Some(early) = early.take() {
                        for (channel, data) in early.fetch().await {
                            let _ = ws.send(channels.encode(channel, &data)).await;
                        }
                    }
                    if let Some(report) = channels.status(&status) {
                        let _ = ws.send(channels.encode(3, &report)).await;
                    }
                    let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
                    let _ = ws.close(Some(close)).await;
                    // Let the client's close reply arrive before dropping the connection.
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
                        while let Some(Ok(_)) = ws.next().await {}
                    })
                    .await;
                    break;
                }
            },
        }
    }
    session.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ws_protocol(offered: Option<&str>) -> Result<String, String> {
        let mut h = vec![("upgrade", "websocket"), ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")];
        if let Some(o) = offered {
            h.push(("sec-websocket-protocol", o));
        }
        match negotiate(&headers(&h), &WS_EXEC, &[streaming::EXEC_PROTOCOL])? {
            Upgrade::WebSocket { protocol, .. } => Ok(protocol),
            Upgrade::Spdy { .. } => Err("spdy".into()),
        }
    }

    /// Every channel protocol upstream accepts, the client's first supported one chosen; none offered is the legacy
    /// binary protocol.
    #[test]
    fn websocket_protocols_as_upstream() {
        for p in WS_EXEC.iter().filter(|p| !p.is_empty()) {
            assert_eq!(ws_protocol(Some(p)).unwrap(), *p);
            assert!(Channels::of(p).is_some());
        }
        assert_eq!(ws_protocol(None).unwrap(), "");
        assert_eq!(
            ws_protocol(Some("v6.channel.k8s.io, base64.channel.k8s.io, v5.channel.k8s.io")).unwrap(),
            "base64.channel.k8s.io"
        );
        assert!(ws_protocol(Some("v6.channel.k8s.io")).unwrap_err().contains("not supported"));
        let response = switching(&Upgrade::WebSocket { protocol: String::new(), accept: "x".into() });
        assert!(response.headers().get("sec-websocket-protocol").is_none());
    }

    #[test]
    fn base64_and_binary_framing() {
        let b64 = Channels::of("v4.base64.channel.k8s.io").unwrap();
        assert_eq!(b64.encode(1, b"hello"), Message::Text("1aGVsbG8=".into()));
        assert_eq!(b64.encode(2, b""), Message::Text("2".into()));
        assert_eq!(b64.decode(&Message::Text("0aGk=".into())), Some((0, b"hi".to_vec())));
        assert_eq!(b64.decode(&Message::Binary(vec![0, 1].into())), None);
        let bin = Channels::of("channel.k8s.io").unwrap();
        assert_eq!(bin.encode(3, b"x"), Message::Binary(vec![3, b'x'].into()));
        assert_eq!(bin.decode(&Message::Binary(vec![4, b'{'].into())), Some((4, b"{".to_vec())));
    }

    /// v4 and v5 report the Status JSON; older protocols only a failure, as its message.
    #[test]
    fn early_output_per_stream() {
        let log = "2026-12-05T22:00:00.1Z stdout F one\n2026-12-05T22:00:00.2Z stdout P tw\n\
                   2026-12-05T22:00:00.3Z stdout F o\n2026-12-05T22:00:00.4Z stderr F oops\n\
                   2026-12-05T22:00:00.5Z stdout F three\n";
        assert_eq!(
            early_messages(log, true, true),
            vec![(1, b"one\ntwo\n".to_vec()), (2, b"oops\n".to_vec()), (1, b"three\n".to_vec())]
        );
        assert_eq!(early_messages(log, true, false), vec![(1, b"one\ntwo\nthree\n".to_vec())]);
        assert_eq!(early_messages(log, false, true), vec![(2, b"oops\n".to_vec())]);
    }

    #[test]
    fn status_per_version() {
        let failure = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit code 3","reason":"NonZeroExitCode"}"#;
        let success = br#"{"metadata":{},"status":"Success"}"#;
        for p in ["v4.channel.k8s.io", "v5.base64.channel.k8s.io"] {
            let c = Channels::of(p).unwrap();
            assert_eq!(c.status(failure).unwrap(), failure.to_vec());
            assert_eq!(c.status(b"").unwrap(), success.to_vec());
        }
        for p in ["channel.k8s.io", "base64.channel.k8s.io", "v2.channel.k8s.io", "v3.channel.k8s.io"] {
            let c = Channels::of(p).unwrap();
            assert_eq!(c.status(failure).unwrap(), b"command terminated with non-zero exit code: exit code 3".to_vec());
            assert_eq!(c.status(success), None);
            assert_eq!(c.status(b""), None);
        }
    }
}
