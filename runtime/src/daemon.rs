//! What every control-plane daemon shares: logging, SIGTERM/SIGINT handling, and the secure health port serving
//! `/healthz`, `/livez`, `/readyz` and Prometheus `/metrics` over TLS with a self-signed certificate (as upstream's
//! kube-controller-manager and kube-scheduler do without `--tls-cert-file`), each request authenticated and
//! authorized by [`crate::delegating_auth`] (the health paths are always allowed, `/metrics` needs a user allowed
//! to `get` it).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::CertificateDer;
use tokio::sync::watch;

use crate::delegating_auth::{DelegatingAuth, Verdict};

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// A switch that turns true on SIGTERM or SIGINT.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            tracing::info!("signal received; shutting down");
            let _ = tx.send(true);
        }
    });
    rx
}

/// Completes when `stop` turns true (or its sender is gone).
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Counters and gauges a daemon exposes on `/metrics` (name with labels -> value).
#[derive(Clone, Default)]
pub struct Metrics(Arc<Mutex<BTreeMap<String, f64>>>);

impl Metrics {
    pub fn add(&self, series: &str, v: f64) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()).entry(series.to_string()).or_default() += v;
    }

    pub fn set(&self, series: &str, v: f64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(series.to_string(), v);
    }

    pub fn get(&self, series: &str) -> f64 {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(series).copied().unwrap_or(0.0)
    }

    /// Prometheus text format.
    pub fn render(&self) -> String {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let mut last = "";
        for (series, v) in map.iter() {
            let name = series.split('{').next().unwrap_or(series);
            if name != last {
                out.push_str(&format!("# TYPE {name} untyped\n"));
                last = name;
            }
            out.push_str(&format!("{series} {v}\n"));
        }
        out
    }
}

fn text(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn tls(names: Vec<String>) -> Result<Arc<rustls::ServerConfig>, Box<dyn std::error::Error + Send + Sync>> {
    let certified = rcgen::generate_simple_self_signed(names)?;
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(crate::delegating_auth::DeferredClientCerts::new(provider))
        .with_single_cert(vec![cert], key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves the health port until `stop`. `ready` reports whether the daemon is ready (e.g. its caches synced);
/// `auth` decides who may ask what.
pub async fn serve_health(
    addr: SocketAddr,
    component: &'static str,
    metrics: Metrics,
    ready: watch::Receiver<bool>,
    auth: Arc<DelegatingAuth>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tokio::spawn(auth.clone().run(stop.clone()));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls(vec!["localhost".into(), addr.ip().to_string()])?);
    tracing::info!(%addr, component, "serving health and metrics securely");
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            _ = stop.changed() => return Ok(()),
        };
        let (acceptor, metrics, ready, auth) = (acceptor.clone(), metrics.clone(), ready.clone(), auth.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else { return };
            let chain: Arc<Vec<CertificateDer<'static>>> =
                Arc::new(stream.get_ref().1.peer_certificates().map(<[_]>::to_vec).unwrap_or_default());
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (metrics, ready, auth, chain) = (metrics.clone(), ready.clone(), auth.clone(), chain.clone());
                async move {
                    let path = req.uri().path().to_string();
                    if let Verdict::Refused(code, body) = auth.check(&chain, req.method(), &path, req.headers()).await {
                        let mut r = text(StatusCode::from_u16(code).unwrap_or(StatusCode::FORBIDDEN), body);
                        r.headers_mut()
                            .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
                        return Ok::<_, Infallible>(r);
                    }
                    let resp = match path.as_str() {
                        "/healthz" | "/livez" => text(StatusCode::OK, "ok".into()),
                        "/readyz" if *ready.borrow() => text(StatusCode::OK, "ok".into()),
                        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, format!("{component} is not ready")),
                        "/metrics" => text(StatusCode::OK, metrics.render()),
                        _ => text(StatusCode::NOT_FOUND, "404 page not found\n".into()),
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
