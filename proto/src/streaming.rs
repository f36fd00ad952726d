//! A client of the CRI streaming server: the URL that `Exec`, `Attach` and `PortForward` return is dialled with an
//! HTTP/1.1 upgrade to SPDY/3.1 and a Kubernetes stream protocol (`v4.channel.k8s.io` for exec and attach,
//! `portforward.k8s.io` for port forwarding), as the kubelet's streaming proxy does upstream.

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use crate::spdy::{self, Session, Stream};

/// The exec/attach protocol spoken to the runtime: status on the error stream, stdin closed by half-closing it.
pub const EXEC_PROTOCOL: &str = "v4.channel.k8s.io";
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("streaming URL {0:?}: only http://host:port/path is supported")]
    Url(String),
    #[error("connecting to the runtime's streaming server: {0}")]
    Connect(String),
    #[error("the runtime's streaming server refused the upgrade ({status}): {body}")]
    Refused { status: StatusCode, body: String },
    #[error(transparent)]
    Spdy(#[from] spdy::Error),
}

/// Dials `url` and upgrades to a SPDY session speaking `protocol`.
pub async fn connect(url: &str, protocol: &str) -> Result<(Session, mpsc::Receiver<Stream>), Error> {
    let uri: http::Uri = url.parse().map_err(|_| Error::Url(url.to_string()))?;
    if uri.scheme_str() != Some("http") {
        return Err(Error::Url(url.to_string()));
    }
    let host = uri.host().ok_or_else(|| Error::Url(url.to_string()))?;
    let addr = format!("{host}:{}", uri.port_u16().unwrap_or(80));
    let tcp = tokio::net::TcpStream::connect(&addr).await.map_err(|e| Error::Connect(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| Error::Connect(e.to_string()))?;
    tokio::spawn(conn.with_upgrades());
    let req = Request::post(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(header::HOST, addr.as_str())
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", protocol)
        .body(Empty::<Bytes>::new())
        .map_err(|e| Error::Connect(e.to_string()))?;
    let resp = send.send_request(req).await.map_err(|e| Error::Connect(e.to_string()))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status();
        let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        return Err(Error::Refused { status, body: String::from_utf8_lossy(&body).trim().to_string() });
    }
    let upgraded = hyper::upgrade::on(resp).await.map_err(|e| Error::Connect(e.to_string()))?;
    Ok(Session::new(TokioIo::new(upgraded), true))
}

/// The streams of one exec or attach session with the runtime.
pub struct ExecStreams {
    pub session: Session,
    /// Carries the final `Status` (JSON) of the command.
    pub error: Stream,
    pub stdin: Option<Stream>,
    pub stdout: Option<Stream>,
    pub stderr: Option<Stream>,
    /// Terminal sizes as JSON `{"Width":..,"Height":..}`, with a TTY.
    pub resize: Option<Stream>,
}

fn typed(kind: &str) -> spdy::Headers {
    vec![("streamtype".to_string(), kind.to_string())]
}

/// Opens an exec or attach session on the URL the runtime returned, with the streams it expects: error first,
/// then stdin, stdout, stderr (not with a TTY) and resize (only with a TTY).
pub async fn open_exec(url: &str, stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Result<ExecStreams, Error> {
    let (session, _incoming) = connect(url, EXEC_PROTOCOL).await?;
    let error = session.open(typed("error")).await?;
    let stdin = if stdin { Some(session.open(typed("stdin")).await?) } else { None };
    let stdout = if stdout { Some(session.open(typed("stdout")).await?) } else { None };
    let stderr = if stderr && !tty { Some(session.open(typed("stderr")).await?) } else { None };
    let resize = if tty { Some(session.open(typed("resize")).await?) } else { None };
    Ok(ExecStreams { session, error, stdin, stdout, stderr, resize })
}
