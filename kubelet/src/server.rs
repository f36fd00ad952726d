//! The kubelet API on `--port` (10250) over TLS (a self-signed pair in `<root-dir>/pki` unless files are given):
//! `/healthz`, `/livez`, `/readyz`, Prometheus `/metrics`, `/pods`, `/stats/summary` ([`crate::stats`]), and `/containerLogs/<ns>/<pod>/<container>`
//! (follow, tailLines, timestamps, previous, sinceSeconds, limitBytes) which the apiserver proxies `pods/log` to.
//! `/exec`, `/attach` and `/portForward` are upgraded to streams ([`crate::streaming`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::options::Config;
use crate::pods::PodManager;

type Body = UnsyncBoxBody<Bytes, Infallible>;

fn text(code: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed_unsync());
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub log_requests: AtomicU64,
    pub stream_requests: AtomicU64,
}

/// One line of a CRI log file: `<RFC3339Nano> <stream> <P|F> <content>`.
pub fn parse_cri_line(line: &str) -> Option<(&str, &str, bool, &str)> {
    let mut parts = line.splitn(4, ' ');
    let ts = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or("");
    Some((ts, stream, tag == "P", content))
}

/// Renders CRI log lines as `kubectl logs` shows them (with the timestamp first when asked).
pub fn render(lines: &str, timestamps: bool, since: Option<jiff::Timestamp>) -> String {
    let mut out = String::new();
    for line in lines.lines() {
        let Some((ts, _stream, partial, content)) = parse_cri_line(line) else { continue };
        if let (Some(since), Ok(t)) = (since, ts.parse::<jiff::Timestamp>())
            && t < since
        {
            continue;
        }
        if timestamps {
            out.push_str(ts);
            out.push(' ');
        }
        out.push_str(content);
        if !partial {
            out.push('\n');
        }
    }
    out
}

fn log_dir(cfg: &Config, ns: &str, pod: &str, uid: &str, container: &str) -> PathBuf {
    cfg.pod_logs_dir.join(format!("{ns}_{pod}_{uid}")).join(container)
}

/// The log files of a container, oldest attempt first (`0.log`, `1.log`, ...).
fn attempts(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().strip_suffix(".log")?.parse::<u32>().ok()?;
            Some((n, e.path()))
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

struct Server {
    cfg: Config,
    manager: Arc<PodManager>,
    metrics: Metrics,
    cpu: crate::stats::CpuSampler,
}

impl Server {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        self.metrics.requests.fetch_add(1, Ordering::Relaxed);
        let path = req.uri().path().to_string();
        if path.starts_with("/exec/") || path.starts_with("/attach/") {
            self.metrics.stream_requests.fetch_add(1, Ordering::Relaxed);
            return Ok(crate::streaming::exec(&self.manager, req, path.starts_with("/attach/")).await);
        }
        if path.starts_with("/portForward/") {
            self.metrics.stream_requests.fetch_add(1, Ordering::Relaxed);
            return Ok(crate::streaming::port_forward(&self.manager, req).await);
        }
        let q: HashMap<String, String> =
            form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()).into_owned().collect();
        let resp = match path.as_str() {
            "/healthz" | "/livez" | "/readyz" => text(StatusCode::OK, "ok"),
            "/metrics" => text(
                StatusCode::OK,
                format!(
                    "# TYPE kubelet_http_requests_total counter\nkubelet_http_requests_total {}\n# TYPE kubelet_container_log_requests_total counter\nkubelet_container_log_requests_total {}\n# TYPE kubelet_stream_requests_total counter\nkubelet_stream_requests_total {}\n# TYPE kubelet_running_pods gauge\nkubelet_running_pods {}\n# HELP kubelet_prober_workers Number of live probe workers (one per probe of a running container).\n# TYPE kubelet_prober_workers gauge\nkubelet_prober_workers {}\n",
                    self.metrics.requests.load(Ordering::Relaxed),
                    self.metrics.log_requests.load(Ordering::Relaxed),
                    self.metrics.stream_requests.load(Ordering::Relaxed),
                    self.manager.desired_pods().len(),
                    self.manager.probers.live()
                ),
            ),
            "/pods" | "/pods/" => {
                let items: Vec<Value> = self.manager.desired_pods().iter().map(|p| (**p).clone()).collect();
                let mut r = Response::new(
                    Full::new(Bytes::from(
                        json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}).to_string(),
                    ))
                    .boxed_unsync(),
                );
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r
            }
            "/stats/summary" | "/stats/summary/" => {
                let summary = crate::stats::summary(&self.cfg, &self.manager, &self.cpu).await;
                let mut r = Response::new(Full::new(Bytes::from(summary.to_string())).boxed_unsync());
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r
            }
            p if p.starts_with("/containerLogs/") => {
                self.metrics.log_requests.fetch_add(1, Ordering::Relaxed);
                self.logs(p, &q).await
            }
            _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
        };
        Ok(resp)
    }

    async fn logs(&self, path: &str, q: &HashMap<String, String>) -> Response<Body> {
        let parts: Vec<&str> = path.trim_start_matches("/containerLogs/").split('/').collect();
        let [ns, pod, container] = parts.as_slice() else {
            return text(StatusCode::BAD_REQUEST, "expected /containerLogs/<namespace>/<pod>/<container>");
        };
        let Some(p) = self.manager.desired_pods().into_iter().find(|p| {
            p.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
                && p.pointer("/metadata/name").and_then(Value::as_str) == Some(pod)
        }) else {
            return text(StatusCode::NOT_FOUND, format!("pod {ns}/{pod} is not on this node"));
        };
        let uid = p.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
        let files = attempts(&log_dir(&self.cfg, ns, pod, uid, container));
        let previous = q.get("previous").is_some_and(|v| v == "true");
        let file = if previous { files.len().checked_sub(2).and_then(|i| files.get(i)) } else { files.last() };
        let Some(file) = file.cloned() else {
            let msg = if previous {
                format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
            } else {
                format!("container \"{container}\" in pod \"{pod}\" is waiting to start")
            };
            return text(StatusCode::BAD_REQUEST, msg);
        };
        let timestamps = q.get("timestamps").is_some_and(|v| v == "true");
        let since = q
            .get("sinceSeconds")
            .and_then(|s| s.parse::<i64>().ok())
            .map(|s| jiff::Timestamp::now() - jiff::SignedDuration::from_secs(s));
        let tail = q.get("tailLines").and_then(|t| t.parse::<usize>().ok());
        let limit = q.get("limitBytes").and_then(|t| t.parse::<usize>().ok());
        let follow = q.get("follow").is_some_and(|v| v == "true");
        let content = tokio::fs::read_to_string(&file).await.unwrap_or_default();
        let start = match tail {
            Some(n) => {
                let lines: Vec<&str> = content.lines().collect();
                lines[lines.len().saturating_sub(n)..].join("\n")
            }
            None => content.clone(),
        };
        let mut first = render(&start, timestamps, since);
        if let Some(l) = limit {
            first.truncate(l);
        }
        if !follow {
            return text(StatusCode::OK, first);
        }
        // Follow: send what is there, then what gets appended until the container stops or the client leaves.
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let mut offset = content.len() as u64;
        let manager = self.manager.clone();
        let (uid, container) = (uid.to_string(), container.to_string());
        tokio::spawn(async move {
            if tx.send(Bytes::from(first)).await.is_err() {
                return;
            }
            let mut pending = String::new();
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if tx.is_closed() {
                    return;
                }
                let Ok(mut f) = tokio::fs::File::open(&file).await else { return };
                if f.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
                    return;
                }
                let mut more = String::new();
                if let Ok(n) = f.read_to_string(&mut more).await {
                    offset += n as u64;
                }
                pending.push_str(&more);
                if let Some(cut) = pending.rfind('\n') {
                    let complete: String = pending.drain(..=cut).collect();
                    if !complete.is_empty() && tx.send(Bytes::from(render(&complete, timestamps, None))).await.is_err()
                    {
                        return;
                    }
                }
                if more.is_empty() && !manager.container_running(&uid, &container).await {
                    return;
                }
            }
        });
        let stream = futures_unfold(rx);
        let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        r
    }
}

fn futures_unfold(
    rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok(Frame::data(b)), rx)) })
}

/// A self-signed serving pair for the kubelet API (`<root-dir>/pki/kubelet.crt`), made once.
fn serving_pair(cfg: &Config) -> Result<(PathBuf, PathBuf), Box<dyn std::error::Error + Send + Sync>> {
    let dir = cfg.root_dir.join("pki");
    let (crt, key) = (dir.join("kubelet.crt"), dir.join("kubelet.key"));
    if crt.exists() && key.exists() {
        return Ok((crt, key));
    }
    std::fs::create_dir_all(&dir)?;
    let mut names = vec![cfg.node_name.clone(), "localhost".into()];
    names.push(cfg.node_ip.clone());
    let certified = rcgen::generate_simple_self_signed(names)?;
    std::fs::write(&crt, certified.cert.pem())?;
    std::fs::write(&key, certified.signing_key.serialize_pem())?;
    Ok((crt, key))
}

fn tls_config(crt: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, Box<dyn std::error::Error + Send + Sync>> {
    let certs = rustls_pemfile::certs(&mut &std::fs::read(crt)?[..]).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut &std::fs::read(key)?[..])?.ok_or("no private key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves the kubelet API until `stop`.
pub async fn serve(
    cfg: Config,
    manager: Arc<PodManager>,
    listener: tokio::net::TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (crt, key) = serving_pair(&cfg)?;
    let tls = tokio_rustls::TlsAcceptor::from(tls_config(&crt, &key)?);
    let server = Arc::new(Server { cfg, manager, metrics: Metrics::default(), cpu: Default::default() });
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            _ = stop.changed() => return Ok(()),
        };
        let (tls, server) = (tls.clone(), server.clone());
        tokio::spawn(async move {
            let Ok(stream) = tls.accept(tcp).await else { return };
            let svc = hyper::service::service_fn(move |req| server.clone().handle(req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_log_lines_render_as_kubectl_logs() {
        let log = "2024-01-01T00:00:01.000000001Z stdout F hello\n2024-01-01T00:00:02Z stderr P par\n2024-01-01T00:00:02Z stderr F tial\n";
        assert_eq!(render(log, false, None), "hello\npartial\n");
        assert_eq!(
            render(log, true, None),
            "2024-01-01T00:00:01.000000001Z hello\n2024-01-01T00:00:02Z par2024-01-01T00:00:02Z tial\n"
        );
        let since: jiff::Timestamp = "2024-01-01T00:00:01.5Z".parse().unwrap();
        assert_eq!(render(log, false, Some(since)), "partial\n");
    }
}
