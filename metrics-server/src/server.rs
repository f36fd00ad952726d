//! The secure port (upstream's generic apiserver as metrics-server configures it, and `pkg/server`): HTTPS with
//! the serving certificate, every request authenticated and authorized by delegation ([`runtime::delegating_auth`]:
//! resource requests with their resource attributes), the API ([`crate::api`]), `/openapi/v2`, `/openapi/v3`, `/version`, the
//! health checks (`/healthz`: informers synced; `/livez`: the last scrape started within 1.5 resolutions;
//! `/readyz`: informers synced and metrics stored for nodes and pods) and Prometheus `/metrics`. The scrape loop
//! ([`Server::run_scrape`]) scrapes and stores every resolution.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use runtime::delegating_auth::{Attributes, DelegatingAuth, Verdict};
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};

use crate::api::{Api, Output, Target};
use crate::metrics::TypeLabels;
use crate::scraper::Scraper;

type Body = Full<Bytes>;

fn respond(code: u16, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_response(code: u16, body: &Value) -> Response<Body> {
    respond(code, "application/json", body.to_string())
}

/// The serving certificate: the given files, else a self-signed one for localhost and 127.0.0.1 kept in
/// `cert_dir` as `apiserver.crt` and `apiserver.key` (upstream's `MaybeDefaultWithSelfSignedCerts`).
pub fn serving_certificate(
    cert_file: Option<&Path>,
    key_file: Option<&Path>,
    cert_dir: &Path,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    if let (Some(c), Some(k)) = (cert_file, key_file) {
        return Ok((read(c)?, read(k)?));
    }
    let (crt, key) = (cert_dir.join("apiserver.crt"), cert_dir.join("apiserver.key"));
    if crt.exists() && key.exists() {
        return Ok((read(&crt)?, read(&key)?));
    }
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(|e| format!("unable to generate self signed cert: {e}"))?;
    let (cert_pem, key_pem) = (certified.cert.pem(), certified.signing_key.serialize_pem());
    std::fs::create_dir_all(cert_dir)
        .and_then(|_| std::fs::write(&crt, &cert_pem))
        .and_then(|_| std::fs::write(&key, &key_pem))
        .map_err(|e| format!("error creating self-signed certificates: {}: {e}", cert_dir.display()))?;
    tracing::info!(cert = %crt.display(), "Generated self-signed cert");
    Ok((cert_pem.into_bytes(), key_pem.into_bytes()))
}

/// The TLS configuration of the secure port: client certificates requested, judged per request.
pub fn tls_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs = rustls_pemfile::certs(&mut &cert_pem[..]).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| e.to_string())?
        .ok_or("no private key in the serving key file")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(runtime::delegating_auth::DeferredClientCerts::new(provider))
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The running server: API, scraper and health state.
pub struct Server {
    pub api: Api,
    pub scraper: Scraper,
    pub auth: Arc<DelegatingAuth>,
    pub resolution: Duration,
    /// When the current (or last) scrape cycle started.
    tick_last_start: Mutex<Option<Instant>>,
}

impl Server {
    pub fn new(api: Api, scraper: Scraper, auth: Arc<DelegatingAuth>, resolution: Duration) -> Arc<Self> {
        Arc::new(Server { api, scraper, auth, resolution, tick_last_start: Mutex::new(None) })
    }

    /// One cycle: scrape every node, store the batch (bounded by the resolution).
    pub async fn tick(&self) {
        let start = Instant::now();
        *self.tick_last_start.lock().unwrap_or_else(|e| e.into_inner()) = Some(start);
        match tokio::time::timeout(self.resolution, self.scraper.scrape()).await {
            Ok(batch) => self.api.storage.store(&batch),
            Err(_) => tracing::error!("Scraping cycle did not finish within the metric resolution"),
        }
        let (nodes, containers) = self.api.storage.points();
        let m = &self.api.metrics;
        m.points_stored.get_or_create(&TypeLabels { r#type: "node" }).set(nodes as i64);
        m.points_stored.get_or_create(&TypeLabels { r#type: "container" }).set(containers as i64);
        m.tick_duration.observe(start.elapsed().as_secs_f64());
    }

    /// Scrapes now and every resolution until `stop` (upstream's `runScrape`).
    pub async fn run_scrape(self: Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.resolution);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.tick().await,
                _ = runtime::daemon::stopped(stop.clone()) => return,
            }
        }
    }

    /// The named checks of `/healthz`, `/livez` or `/readyz` with their failures.
    fn checks(&self, endpoint: &str) -> Vec<(&'static str, Option<&'static str>)> {
        let synced = self.api.nodes.has_synced() && self.api.pods.has_synced();
        let mut checks = vec![("ping", None), ("log", None)];
        match endpoint {
            "/healthz" => checks.push(("metadata-informer-sync", (!synced).then_some("informers not started yet"))),
            "/livez" => {
                let last = *self.tick_last_start.lock().unwrap_or_else(|e| e.into_inner());
                let late = last.is_some_and(|t| t.elapsed() > self.resolution.mul_f64(1.5));
                checks.push(("metric-collection-timely", late.then_some("metric collection didn't finish on time")));
            }
            _ => {
                checks.push(("informer-sync", None));
                checks.push(("metric-storage-ready", (!self.api.storage.ready()).then_some("no metrics to serve")));
                checks.push(("metric-informer-sync", (!synced).then_some("cache for node informer has not synced")));
            }
        }
        checks
    }

    /// A health endpoint as upstream's healthz handler answers: `ok`, or each check's verdict and 500.
    fn health(&self, endpoint: &str, query: &HashMap<String, String>) -> Response<Body> {
        let checks = self.checks(endpoint);
        let failed = checks.iter().any(|(_, f)| f.is_some());
        if !failed && !query.contains_key("verbose") {
            return respond(200, "text/plain; charset=utf-8", "ok");
        }
        let mut out = String::new();
        for (name, failure) in &checks {
            match failure {
                None => out.push_str(&format!("[+]{name} ok\n")),
                Some(reason) => {
                    tracing::info!(probe = name, err = reason, "Failed probe");
                    out.push_str(&format!("[-]{name} failed: reason withheld\n"));
                }
            }
        }
        let name = endpoint.trim_start_matches('/');
        if failed {
            out.push_str(&format!("{name} check failed\n"));
            respond(500, "text/plain; charset=utf-8", out)
        } else {
            out.push_str(&format!("{name} check passed\n"));
            respond(200, "text/plain; charset=utf-8", out)
        }
    }

    /// Answers one request (`chain`: the client's certificates).
    pub async fn handle(&self, req: Request<Incoming>, chain: &[CertificateDer<'_>]) -> Response<Body> {
        let path = req.uri().path().to_string();
        let query: HashMap<String, String> =
            form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()).into_owned().collect();
        let target = Target::parse(&path);
        let verb = match (&target, req.method()) {
            (Some(t), &Method::GET) => t.verb(&query).to_string(),
            (_, m) => m.as_str().to_ascii_lowercase(),
        };
        let attributes = match &target {
            Some(t) => Attributes::Resource {
                verb: verb.clone(),
                group: crate::api::GROUP.into(),
                version: crate::api::VERSION.into(),
                resource: t.resource.into(),
                subresource: String::new(),
                namespace: t.namespace.clone(),
                name: t.name.clone(),
            },
            None => Attributes::NonResource { path: path.clone(), verb: verb.clone() },
        };
        if let Verdict::Refused(code, body) = self.auth.check_request(chain, req.headers(), &path, &attributes).await {
            return respond(code, "application/json", body);
        }
        if let Some(t) = &target {
            if req.method() != Method::GET {
                let e = api_types::ApiError::method_not_allowed(format!(
                    "{verb} is not supported on resources of kind \"{}.{}\"",
                    t.resource,
                    crate::api::GROUP
                ));
                return json_response(405, &e.to_status());
            }
            let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
            let answer = self.api.get(t, &query, Output::from_accept(accept));
            return json_response(answer.code, &answer.body);
        }
        if req.method() != Method::GET {
            return respond(405, "text/plain; charset=utf-8", "405: Method Not Allowed");
        }
        match path.trim_end_matches('/') {
            "/healthz" | "/livez" | "/readyz" => self.health(&path, &query),
            p if p.starts_with("/healthz/") || p.starts_with("/livez/") || p.starts_with("/readyz/") => {
                let (endpoint, check) = p[1..].split_once('/').unwrap_or((p, ""));
                match self.checks(&format!("/{endpoint}")).into_iter().find(|(n, _)| *n == check) {
                    Some((_, None)) => respond(200, "text/plain; charset=utf-8", "ok"),
                    Some((_, Some(_))) => {
                        respond(500, "text/plain; charset=utf-8", "internal server error: reason withheld\n")
                    }
                    None => respond(404, "text/plain; charset=utf-8", "404 page not found\n"),
                }
            }
            "/metrics" => respond(200, "text/plain; version=0.0.4; charset=utf-8", self.api.metrics.render()),
            "/apis" => json_response(200, &crate::api::group_list()),
            "/apis/metrics.k8s.io" => json_response(200, &crate::api::group()),
            "/apis/metrics.k8s.io/v1beta1" => json_response(200, &crate::api::resource_list()),
            "/openapi/v2" => json_response(200, &crate::api::openapi_v2()),
            "/openapi/v3" => json_response(200, &crate::api::openapi_v3_index()),
            "/openapi/v3/apis/metrics.k8s.io/v1beta1" => json_response(200, &crate::api::openapi_v3()),
            "/version" => json_response(
                200,
                &json!({"major": "", "minor": "", "gitVersion": concat!("v", env!("CARGO_PKG_VERSION")),
                    "gitCommit": "", "gitTreeState": "", "buildDate": "", "goVersion": "", "compiler": "rustc",
                    "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH)}),
            ),
            p if p.starts_with("/apis/") => {
                let e = api_types::ApiError::new(404, "NotFound", "the server could not find the requested resource");
                let mut status = e.to_status();
                status["details"] = json!({});
                json_response(404, &status)
            }
            _ => respond(404, "text/plain; charset=utf-8", "404 page not found\n"),
        }
    }

    /// Serves the secure port on `listener` until `stop`.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        tls: Arc<rustls::ServerConfig>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        loop {
            let (tcp, _) = tokio::select! {
                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                _ = stop.changed() => return,
            };
            let (acceptor, server) = (acceptor.clone(), self.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else { return };
                let chain: Arc<Vec<CertificateDer<'static>>> =
                    Arc::new(stream.get_ref().1.peer_certificates().map(<[_]>::to_vec).unwrap_or_default());
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (server, chain) = (server.clone(), chain.clone());
                    async move { Ok::<_, Infallible>(server.handle(req, &chain).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }
}
