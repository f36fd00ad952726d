//! The kubelet API on `--port` (10250) over TLS (the serving certificate of [`crate::certificate`]; client
//! certificates requested, verified against the client CA): every request is authenticated and authorized first
//! ([`crate::auth`]: 401 `Unauthorized`, 403 `Forbidden (...)`), `/healthz` included as upstream's secure port.
//! `/healthz`, `/livez`, `/readyz`, Prometheus `/metrics`, `/metrics/resource` ([`crate::resource_metrics`], what
//! metrics-server scrapes), `/pods`, `/stats/summary` ([`crate::stats`]), and
//! `/containerLogs/<ns>/<pod>/<container>` (follow, tailLines, timestamps, previous, sinceSeconds, limitBytes) which
//! the apiserver proxies `pods/log` to. `/exec`, `/attach` and `/portForward` are upgraded to streams
//! ([`crate::streaming`]). The unauthenticated `/healthz` is served on `healthzBindAddress:healthzPort`
//! (127.0.0.1:10248) instead ([`serve_healthz`]).

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

use crate::auth::{KubeletAuth, Verdict};
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
    auth: Arc<KubeletAuth>,
    metrics: Metrics,
    cpu: crate::stats::CpuSampler,
}

impl Server {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: Option<Arc<Vec<u8>>>,
    ) -> Result<Response<Body>, Infallible> {
        self.metrics.requests.fetch_add(1, Ordering::Relaxed);
        let path = req.uri().path().to_string();
        if let Verdict::Refused(code, msg) =
            self.auth.check(peer.as_deref().map(Vec::as_slice), req.method(), &path, req.headers()).await
        {
            return Ok(text(StatusCode::from_u16(code).unwrap_or(StatusCode::FORBIDDEN), msg));
        }
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
            "/metrics/resource" => {
                let machine = crate::stats::measure(&self.cfg.root_dir);
                let summary = crate::stats::cpu_and_memory(&machine, &self.manager, &self.cpu).await;
                let mut r = text(StatusCode::OK, crate::resource_metrics::render(Ok(&summary)));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
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

/// The TLS configuration of the kubelet API: the serving certificate from `certs`; client certificates requested
/// (not required) and verified against the CA in `client_ca` when there is one.
pub fn tls_config(
    client_ca: Option<&Path>,
    certs: Arc<dyn rustls::server::ResolvesServerCert>,
) -> Result<Arc<rustls::ServerConfig>, Box<dyn std::error::Error + Send + Sync>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            let pem = std::fs::read(ca).map_err(|e| format!("reading the client CA {}: {e}", ca.display()))?;
            for c in rustls_pemfile::certs(&mut &pem[..]) {
                roots.add(c?)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves the kubelet API until `stop`: TLS by `tls`, every request through `auth`.
pub async fn serve(
    cfg: Config,
    manager: Arc<PodManager>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    auth: Arc<KubeletAuth>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let tls = tokio_rustls::TlsAcceptor::from(tls);
    let server = Arc::new(Server { cfg, manager, auth, metrics: Metrics::default(), cpu: Default::default() });
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            _ = stop.changed() => return Ok(()),
        };
        let (tls, server) = (tls.clone(), server.clone());
        tokio::spawn(async move {
            let Ok(stream) = tls.accept(tcp).await else { return };
            let peer = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| Arc::new(c.to_vec()));
            let svc = hyper::service::service_fn(move |req| server.clone().handle(req, peer.clone()));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Serves the local health endpoint on `address:port`; while the port cannot be bound, says so and tries again
/// every 5 s (upstream's "Failed to start healthz server").
pub async fn healthz(address: String, port: u16, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        match tokio::net::TcpListener::bind((address.as_str(), port)).await {
            Ok(l) => return serve_healthz(l, stop).await,
            Err(e) => tracing::error!(error = %e, address, port, "Failed to start healthz server"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The local health endpoint (upstream's healthz server): plain HTTP, no authentication, `/healthz` and
/// `/healthz/syncloop`.
pub async fn serve_healthz(listener: tokio::net::TcpListener, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            _ = stop.changed() => return,
        };
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                Ok::<_, Infallible>(match req.uri().path() {
                    "/healthz" | "/healthz/syncloop" => text(StatusCode::OK, "ok"),
                    _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
                })
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kubelet API end to end: TLS with client certificates requested and verified against the client CA,
    /// every path (`/healthz` too) authenticated and authorized with the reviews of a fake apiserver, upstream's
    /// 401 and 403 texts; the local healthz port open to all.
    #[tokio::test]
    async fn the_kubelet_api_authenticates_and_authorizes_every_request() {
        use crate::fake_apiserver::{FakeApiserver, json as reply};
        let fake = FakeApiserver::start(|seen| match seen.path.as_str() {
            "/apis/authentication.k8s.io/v1/tokenreviews" => {
                let ok = seen.body["spec"]["token"] == "viewer-token";
                let mut a = seen.body.clone();
                a["status"] = if ok {
                    json!({"authenticated": true, "user": {"username": "viewer", "groups": ["monitoring"]}})
                } else {
                    json!({"authenticated": false})
                };
                reply(201, a)
            }
            "/apis/authorization.k8s.io/v1/subjectaccessreviews" => {
                let spec = &seen.body["spec"];
                let sub = spec["resourceAttributes"]["subresource"].as_str().unwrap_or_default();
                let allowed = match spec["user"].as_str().unwrap_or_default() {
                    "kube-apiserver-kubelet-client" => true,
                    "viewer" => sub == "pods" || sub == "stats",
                    _ => false,
                };
                let mut a = seen.body.clone();
                a["status"] = json!({"allowed": allowed});
                reply(201, a)
            }
            _ => reply(404, json!({"kind": "Status", "code": 404})),
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, &fake.ca.pem).unwrap();
        let flags = crate::Flags {
            hostname_override: Some("n1".into()),
            root_dir: Some(dir.path().to_path_buf()),
            client_ca_file: Some(ca_file.clone()),
            anonymous_auth: Some(false),
            authentication_token_webhook: Some(true),
            authorization_mode: Some("Webhook".into()),
            ..Default::default()
        };
        let mut cfg = Config::resolve(flags).unwrap();
        cfg.pod_logs_dir = dir.path().join("logs");
        let cri = proto::Cri::local(proto::fake::FakeCri::with_images(crate::hollow::PRELOADED));
        let manager = PodManager::new(cri, fake.client(), cfg.clone()).unwrap();
        let auth = Arc::new(KubeletAuth::new(&cfg.auth, "n1", Some(fake.client())).unwrap());
        let (serving, _) = crate::certificate::serving(&cfg, None).unwrap();
        let tls = tls_config(Some(&ca_file), serving).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let healthz = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let healthz_port = healthz.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(serve(cfg, manager, listener, tls, auth, rx.clone()));
        tokio::spawn(serve_healthz(healthz, rx));
        let kubelet = |cert: Option<(String, String)>, token: Option<&str>| {
            let (client_cert_pem, client_key_pem) = match cert {
                Some((c, k)) => (Some(c.into_bytes()), Some(k.into_bytes())),
                None => (None, None),
            };
            client::Client::new(&client::Config {
                server: format!("https://127.0.0.1:{port}"),
                insecure_skip_tls_verify: true,
                client_cert_pem,
                client_key_pem,
                token: token.map(String::from),
                ..Default::default()
            })
            .unwrap()
        };
        let refused = |r: Result<Bytes, client::Error>| match r {
            Err(client::Error::Api(e)) => (e.code, e.message),
            other => panic!("expected a refusal, got {other:?}"),
        };
        let anonymous = kubelet(None, None);
        for path in ["/healthz", "/pods", "/metrics", "/stats/summary", "/containerLogs/ns/p/c", "/nope"] {
            assert_eq!(refused(anonymous.get_raw(path).await), (401, "Unauthorized".into()), "{path}");
        }
        assert_eq!(refused(kubelet(None, Some("wrong")).get_raw("/pods").await), (401, "Unauthorized".into()));
        // The apiserver's client certificate: everything.
        let apiserver = kubelet(
            Some(fake.client_cert(
                "kube-apiserver-kubelet-client",
                &["kubeadm:cluster-admins"],
                Duration::from_secs(600),
            )),
            None,
        );
        assert_eq!(apiserver.get_raw("/healthz").await.unwrap(), "ok");
        let pods: Value = serde_json::from_slice(&apiserver.get_raw("/pods").await.unwrap()).unwrap();
        assert_eq!(pods["kind"], "PodList");
        // The resource metrics metrics-server scrapes: the node's CPU and memory with millisecond timestamps.
        let resource = String::from_utf8(apiserver.get_raw("/metrics/resource").await.unwrap().to_vec()).unwrap();
        let sample = |name: &str| {
            resource.lines().find(|l| l.starts_with(&format!("{name} "))).map(|l| l.split(' ').collect::<Vec<_>>())
        };
        let now_ms = jiff::Timestamp::now().as_millisecond();
        for name in ["node_cpu_usage_seconds_total", "node_memory_working_set_bytes"] {
            let s = sample(name).unwrap_or_else(|| panic!("{name} in {resource}"));
            assert!(s[1].parse::<f64>().unwrap() > 0.0, "{resource}");
            assert!((now_ms - s[2].parse::<i64>().unwrap()).abs() < 60_000, "{resource}");
        }
        assert_eq!(sample("resource_scrape_error"), Some(vec!["resource_scrape_error", "0"]));
        assert!(resource.contains("# TYPE node_cpu_usage_seconds_total counter\n"), "{resource}");
        // A certificate from another CA fails the handshake.
        let other = crate::fake_apiserver::Ca::new().client_cert(
            "kube-apiserver-kubelet-client",
            &[],
            Duration::from_secs(600),
        );
        assert!(matches!(kubelet(Some(other), None).get_raw("/pods").await, Err(client::Error::Transport(_))));
        // A token: /pods through nodes/pods, not /metrics nor /healthz.
        let viewer = kubelet(None, Some("viewer-token"));
        assert!(viewer.get_raw("/pods").await.is_ok());
        assert_eq!(
            refused(viewer.get_raw("/metrics").await),
            (403, "Forbidden (user=viewer, verb=get, resource=nodes, subresource(s)=[metrics])\n".into())
        );
        assert_eq!(
            refused(viewer.get_raw("/metrics/resource").await),
            (403, "Forbidden (user=viewer, verb=get, resource=nodes, subresource(s)=[metrics])\n".into())
        );
        assert_eq!(
            refused(viewer.get_raw("/healthz").await),
            (403, "Forbidden (user=viewer, verb=get, resource=nodes, subresource(s)=[healthz proxy])\n".into())
        );
        // The local healthz: plain HTTP, no credentials.
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", healthz_port)).await.unwrap();
        use tokio::io::AsyncWriteExt;
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("ok"), "{answer}");
        tx.send(true).unwrap();
    }

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
