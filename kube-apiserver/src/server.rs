//! The HTTPS server: listener (rustls, HTTP/1.1 and HTTP/2), authentication, max-in-flight limits, request
//! timeout and body limit, health, metrics, discovery and OpenAPI, then the resource API ([`crate::api`]).
//! Stops accepting on SIGTERM and gives open requests a moment to finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use api_types::ApiError;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::auth::{Authenticator, UserInfo};
use crate::discovery;
use crate::metrics::Metrics;
use crate::options::Options;
use crate::parseerror::StatusOnParseError;
use crate::registry::Registry;
use crate::request;
use crate::storage::etcd::{EtcdConfig, EtcdStore};
use crate::storage::sqlite::{SqliteConfig, SqliteStore};
use crate::storage::{Backend, Storage, compactor};

pub type Body = UnsyncBoxBody<Bytes, Infallible>;
pub type Resp = Response<Body>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Concurrent HTTP/2 streams per connection (upstream's --http2-max-streams-per-connection default).
pub const HTTP2_MAX_STREAMS: u32 = 1000;

/// Bodies over this are refused with 413 (upstream's 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

pub fn json_response(code: StatusCode, v: &Value) -> Resp {
    json_with_type(code, v, "application/json")
}

/// A JSON body with the trailing newline upstream's encoder (Go's `json.Encoder`) writes.
pub fn json_with_type(code: StatusCode, v: &Value, content_type: &str) -> Resp {
    let mut body = serde_json::to_vec(v).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(full(body));
    *r.status_mut() = code;
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    r
}

/// A response with a body already encoded.
pub fn bytes_response(code: StatusCode, body: Vec<u8>, content_type: &'static str) -> Resp {
    let mut r = Response::new(full(body));
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    r
}

pub fn error_response(e: &ApiError) -> Resp {
    error_response_as(e, crate::negotiation::Encoding::Json)
}

/// A `Status` for an error, in the encoding negotiated for the request.
pub fn error_response_as(e: &ApiError, encoding: crate::negotiation::Encoding) -> Resp {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = crate::api::encode_response(code, &e.to_status(), encoding);
    if let Some(secs) = e.retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

fn text(code: StatusCode, body: String) -> Resp {
    let mut r = Response::new(full(body));
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}

/// The shared state of a running apiserver.
pub struct Apiserver {
    pub registry: Registry,
    pub auth: Authenticator,
    /// The `--authorization-mode` chain, after the system:masters check.
    pub authz: crate::authorization::Chain,
    /// The RBAC snapshot (the authorizer when RBAC is a mode; the escalation checks always).
    pub rbac: Arc<crate::authorization::rbac::RbacAuthorizer>,
    /// The indexed authorizers' first lists are in (readiness waits for it).
    pub authz_synced: Arc<crate::authorization::feed::Synced>,
    indexed: Vec<Arc<dyn crate::authorization::feed::Indexed>>,
    /// The admission plugins in force.
    pub admission_plugins: Vec<String>,
    /// The admission webhooks in force and the client that calls them.
    pub webhooks: crate::admission::webhook::Webhooks,
    /// The ValidatingAdmissionPolicies in force.
    pub policies: crate::admission::policy::Policies,
    /// How the apiserver talks to kubelets (`--kubelet-client-certificate`/`-key`, `--kubelet-certificate-authority`);
    /// `server` is filled per node.
    pub kubelet_client: client::Config,
    /// `--client-ca-file`, to tell its client certificates from front proxies'.
    pub client_ca: Option<crate::auth::request_header::CaVerifier>,
    /// `--requestheader-*`: front proxies that assert users in headers.
    pub request_header: Option<crate::auth::request_header::RequestHeader>,
    pub metrics: Metrics,
    /// The built-in and custom resources served now (CRDs change it at run time).
    pub served: Arc<crate::apiextensions::served::Served>,
    /// Routes of remote group-versions (APIServices with a service).
    pub aggregator: Arc<crate::aggregator::Aggregator>,
    /// `/openapi/v2` with the custom resources of the moment.
    openapi_v2: crate::openapi_v2::Cache,
    pub opts: Options,
    pub advertise: IpAddr,
    pub started: Instant,
    readonly: Semaphore,
    mutating: Semaphore,
    bootstrapped: AtomicBool,
    feeding: AtomicBool,
    shutting_down: AtomicBool,
    stop: tokio::sync::watch::Sender<bool>,
}

/// Counts an open watch in the metrics while it lives.
pub struct WatchGauge(Arc<Apiserver>);

impl Drop for WatchGauge {
    fn drop(&mut self) {
        self.0.metrics.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What we know about the connection a request came on.
#[derive(Clone, Debug, Default)]
pub struct ConnInfo {
    /// The subject of a client certificate signed by `--client-ca-file`.
    pub cert_identity: Option<(String, Vec<String>)>,
    /// The client certificate is a front proxy's (`--requestheader-client-ca-file`, an allowed name).
    pub front_proxy: bool,
    pub remote: Option<SocketAddr>,
}

/// The storage backend the flags choose: etcd with `--etcd-servers`, otherwise the embedded store.
pub async fn open_storage(opts: &Options) -> Result<Backend, BoxError> {
    if opts.etcd_servers.is_empty() {
        let config = SqliteConfig::in_dir(&opts.data_dir);
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(config)).await??;
        Ok(Backend::Sqlite(store))
    } else {
        let mut config = EtcdConfig::new(opts.etcd_servers.clone());
        config.prefix = opts.etcd_prefix.clone();
        config.ca_file = opts.etcd_cafile.clone();
        config.cert_file = opts.etcd_certfile.clone();
        config.key_file = opts.etcd_keyfile.clone();
        Ok(Backend::Etcd(Box::new(EtcdStore::connect(config).await?)))
    }
}

/// The first non-loopback IPv4 address of this host, as upstream picks a default advertise address.
fn default_advertise(bind: IpAddr) -> IpAddr {
    if !bind.is_unspecified() {
        return bind;
    }
    // A UDP "connection" to a documentation address picks the outgoing interface without sending anything.
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

impl Apiserver {
    pub async fn new(opts: Options) -> Result<Arc<Self>, BoxError> {
        let store = Arc::new(open_storage(&opts).await?);
        let mut auth = Authenticator::new(opts.anonymous_auth);
        if let Some(path) = &opts.token_auth_file {
            auth.tokens = crate::auth::token_file::load(path)?;
        }
        auth.service_accounts = service_account_tokens(&opts)?;
        auth.bootstrap_tokens = opts.enable_bootstrap_token_auth;
        let rbac = Arc::new(crate::authorization::rbac::RbacAuthorizer::new());
        let (authz, indexed) = crate::authorization::from_modes(&opts.authorization_mode, rbac.clone())?;
        let admission_plugins =
            crate::admission::enabled_plugins(&opts.enable_admission_plugins, &opts.disable_admission_plugins)?;
        let kubelet_client = kubelet_client(&opts)?;
        let client_ca =
            opts.client_ca_file.as_deref().map(crate::auth::request_header::CaVerifier::from_pem_file).transpose()?;
        let request_header = crate::auth::request_header::RequestHeader::from_options(&opts)?;
        check_proxy_client(&opts)?;
        let advertise = opts.advertise_address.unwrap_or_else(|| default_advertise(opts.bind_address));
        if !opts.etcd_compaction_interval.is_zero() {
            compactor::spawn(store.clone(), opts.etcd_compaction_interval, compactor::DEFAULT_MIN_RETAIN);
        }
        let mut registry = Registry::new(store);
        registry.storage_media_type = opts.storage_media_type;
        let allocators = crate::service::Allocators::new(
            registry.store.clone(),
            &opts.service_cluster_ip_range,
            &opts.service_node_port_range,
        )?;
        let _ = registry.service_allocators.set(allocators);
        let served = registry.served.clone();
        let server = Arc::new(Apiserver {
            registry,
            auth,
            authz,
            rbac,
            authz_synced: Default::default(),
            indexed,
            webhooks: crate::admission::webhook::Webhooks::new(&admission_plugins),
            policies: crate::admission::policy::Policies::new(&admission_plugins),
            admission_plugins,
            kubelet_client,
            client_ca,
            request_header,
            metrics: Metrics::default(),
            served,
            aggregator: Default::default(),
            openapi_v2: Default::default(),
            readonly: Semaphore::new(opts.max_requests_inflight.max(1)),
            mutating: Semaphore::new(opts.max_mutating_requests_inflight.max(1)),
            advertise,
            opts,
            started: Instant::now(),
            bootstrapped: AtomicBool::new(false),
            feeding: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            stop: tokio::sync::watch::Sender::new(false),
        });
        let weak = Arc::downgrade(&server);
        let _ = server.webhooks.authorizer.set(Arc::new(move |a: &crate::authorization::Attributes| {
            weak.upgrade()
                .map(|s| s.authz.authorize(a))
                .unwrap_or((crate::authorization::Decision::NoOpinion, String::new()))
        }));
        let plugins = crate::admission::Plugins { server: Arc::downgrade(&server) };
        let _ = server.registry.admission.set(Arc::new(plugins));
        let converter = crate::apiextensions::conversion::ServerConverter { server: Arc::downgrade(&server) };
        let _ = server.registry.converter.set(Arc::new(converter));
        Ok(server)
    }

    /// Creates the default namespaces and the `kubernetes` Service; readiness waits for it.
    pub async fn bootstrap(self: &Arc<Self>) -> Result<(), ApiError> {
        // What ResourceQuota and LimitRanger read, cached from the start as upstream's plugins read informers.
        for (plugin, plural) in [
            (crate::admission::resourcequota::NAME, "resourcequotas"),
            (crate::admission::limitranger::NAME, "limitranges"),
        ] {
            if self.admission_enabled(plugin)
                && let Some(res) = api_types::resources::find("", "v1", plural)
            {
                self.registry.cacher.cache(res).await?;
            }
        }
        if self.admission_enabled(crate::admission::noderestriction::NAME) {
            for (group, plural) in crate::admission::NODE_RESTRICTION_READS {
                if let Some(res) = api_types::resources::find(group, "v1", plural) {
                    self.registry.cacher.cache(res).await?;
                }
            }
        }
        if !self.feeding.swap(true, Ordering::AcqRel) {
            for index in &self.indexed {
                crate::authorization::feed::spawn(self.registry.clone(), index.clone(), self.authz_synced.clone());
            }
            crate::apiextensions::controller::spawn(self.registry.clone(), self.served.clone(), self.stop_signal());
            crate::aggregator::controller::spawn(self);
            crate::admission::webhook::source::spawn(
                self.registry.clone(),
                self.webhooks.source.clone(),
                self.stop_signal(),
            );
            if self.policies.enabled() {
                crate::admission::policy::source::spawn(
                    self.registry.clone(),
                    self.policies.source.clone(),
                    self.stop_signal(),
                );
            }
            crate::admission::policy::status::spawn(self.registry.clone(), self.served.clone(), self.stop_signal());
        }
        crate::bootstrap::run(self).await?;
        self.bootstrapped.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether an admission plugin is on (`--enable-admission-plugins`, `--disable-admission-plugins`).
    pub fn admission_enabled(&self, name: &str) -> bool {
        self.admission_plugins.iter().any(|p| p == name)
    }

    async fn storage_ok(&self) -> bool {
        tokio::time::timeout(Duration::from_secs(2), self.registry.store.current_revision())
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// `/healthz`, `/livez`, `/readyz` with upstream's per-check detail (`?verbose`, `/readyz/<check>`).
    async fn health(&self, path: &str, verbose: bool) -> Resp {
        let kind = path.trim_start_matches('/').split('/').next().unwrap_or("healthz");
        // Upstream names the storage check "etcd" whichever backend serves it.
        let storage = "etcd";
        let mut checks: Vec<(&str, bool)> = vec![("ping", true), ("log", true), (storage, self.storage_ok().await)];
        checks.push(("poststarthook/bootstrap-controller", self.bootstrapped.load(Ordering::Acquire)));
        if !self.indexed.is_empty() {
            checks.push((
                "poststarthook/rbac/bootstrap-roles",
                self.authz_synced.all() && self.bootstrapped.load(Ordering::Acquire),
            ));
        }
        checks.push(("poststarthook/crd-informer-synced", self.served.synced.load(Ordering::Acquire)));
        if kind == "readyz" {
            checks.push(("shutdown", !self.shutting_down.load(Ordering::Acquire)));
        }
        let wanted = path.trim_start_matches('/').split_once('/').map(|(_, c)| c);
        if let Some(check) = wanted {
            return match checks.iter().find(|(n, _)| *n == check) {
                Some((_, true)) => text(StatusCode::OK, "ok".into()),
                Some((n, false)) => {
                    text(StatusCode::INTERNAL_SERVER_ERROR, format!("internal server error: {n} check failed"))
                }
                None => text(StatusCode::NOT_FOUND, "404 page not found\n".into()),
            };
        }
        let ok = checks.iter().all(|(_, ok)| *ok);
        if !verbose && ok {
            return text(StatusCode::OK, "ok".into());
        }
        let mut body = String::new();
        for (name, ok) in &checks {
            body.push_str(&if *ok {
                format!("[+]{name} ok\n")
            } else {
                format!("[-]{name} failed: reason withheld\n")
            });
        }
        body.push_str(&if ok { format!("{kind} check passed\n") } else { format!("{kind} check failed\n") });
        text(if ok { StatusCode::OK } else { StatusCode::INTERNAL_SERVER_ERROR }, body)
    }

    /// Everything that is not a resource: health, metrics, version, discovery, OpenAPI.
    async fn non_resource(&self, req: &Request<Incoming>) -> Option<Resp> {
        let path = req.uri().path();
        let query = request::query(req.uri().query());
        let accept = req.headers().get(header::ACCEPT).and_then(|a| a.to_str().ok()).unwrap_or_default();
        Some(match path {
            p if p.starts_with("/healthz") || p.starts_with("/livez") || p.starts_with("/readyz") => {
                self.health(p, query.contains_key("verbose")).await
            }
            "/metrics" => {
                let mut r = text(StatusCode::OK, self.metrics.render());
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
                r
            }
            "/version" | "/version/" => json_response(StatusCode::OK, &discovery::version()),
            crate::oidc::DISCOVERY_PATH | crate::oidc::JWKS_PATH => {
                let a = self.auth.service_accounts.as_ref()?;
                let doc = crate::oidc::configuration(a, self.opts.service_account_jwks_uri.as_deref())?;
                if path == crate::oidc::JWKS_PATH {
                    json_with_type(StatusCode::OK, &crate::oidc::jwks(a), "application/jwk-set+json")
                } else {
                    json_response(StatusCode::OK, &doc)
                }
            }
            "/api" | "/api/" if discovery::wants_aggregated(accept) => json_with_type(
                StatusCode::OK,
                &discovery::aggregated(&self.served.load(), true),
                discovery::AGGREGATED_CONTENT_TYPE,
            ),
            "/apis" | "/apis/" if discovery::wants_aggregated(accept) => {
                let mut doc = discovery::aggregated(&self.served.load(), false);
                if let Some(items) = doc["items"].as_array_mut() {
                    items.extend(self.aggregator.aggregated_groups());
                }
                json_with_type(StatusCode::OK, &doc, discovery::AGGREGATED_CONTENT_TYPE)
            }
            "/api" | "/api/" => json_response(
                StatusCode::OK,
                &discovery::api_versions(&format!("{}:{}", self.advertise, self.opts.secure_port)),
            ),
            "/apis" | "/apis/" => {
                let mut doc = discovery::api_group_list(&self.served.load());
                if let Some(groups) = doc["groups"].as_array_mut() {
                    groups.extend(self.aggregator.api_groups());
                }
                json_response(StatusCode::OK, &doc)
            }
            "/openapi/v2" => {
                crate::openapi_v2::respond(req.headers(), &self.openapi_v2.get(&self.served, &self.aggregator))
            }
            "/openapi/v3" | "/openapi/v3/" => {
                let mut index = discovery::openapi_index(&self.served.load());
                discovery::add_to_openapi_index(&mut index, &self.aggregator.openapi_documents());
                json_response(StatusCode::OK, &index)
            }
            p if p.starts_with("/openapi/v3/") => {
                let gv = p.trim_start_matches("/openapi/v3/");
                let (group, version) = match gv.split('/').collect::<Vec<_>>().as_slice() {
                    ["api", v] => ("", *v),
                    ["apis", g, v] => (*g, *v),
                    _ => {
                        return Some(error_response(&ApiError::new(
                            404,
                            "NotFound",
                            "the server could not find the requested resource",
                        )));
                    }
                };
                let local = discovery::openapi_gv(&self.served.load(), group, version);
                let aggregated = || self.aggregator.openapi_document(group, version).map(|d| (*d).clone());
                match local.or_else(aggregated) {
                    Some(doc) => {
                        let mut r = json_response(StatusCode::OK, &doc);
                        if query.contains_key("hash") {
                            r.headers_mut()
                                .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, immutable"));
                            r.headers_mut()
                                .insert(header::EXPIRES, HeaderValue::from_static("Thu, 01 Jan 2099 00:00:00 GMT"));
                        }
                        r
                    }
                    None => error_response(&ApiError::new(
                        404,
                        "NotFound",
                        "the server could not find the requested resource",
                    )),
                }
            }
            p => {
                let parts: Vec<&str> = p.trim_matches('/').split('/').collect();
                match parts.as_slice() {
                    ["api", v] => discovery::resource_list(&self.served.load(), "", v)
                        .map(|d| json_response(StatusCode::OK, &d))?,
                    ["apis", g] => discovery::group(&self.served.load(), g)
                        .or_else(|| self.aggregator.api_group(g))
                        .map(|d| json_response(StatusCode::OK, &d))?,
                    ["apis", g, v] => discovery::resource_list(&self.served.load(), g, v)
                        .map(|d| json_response(StatusCode::OK, &d))?,
                    _ => return None,
                }
            }
        })
    }

    /// The APIService route of a `/apis/<group>/<version>/...` path served by an extension apiserver.
    fn remote_route(&self, path: &str) -> Option<crate::aggregator::Route> {
        let mut parts = path.strip_prefix("/apis/")?.split('/');
        let (group, version) = (parts.next()?, parts.next()?);
        self.aggregator.route(group, version)
    }

    /// Serves one request: authentication, limits, routing, metrics.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, conn: ConnInfo) -> Result<Resp, Infallible> {
        let started = Instant::now();
        if let Err(e) = check_request_size(&req) {
            return Ok(error_response(&e));
        }
        let mut req = req;
        let proxied = match (&self.request_header, conn.front_proxy) {
            (Some(rh), true) => rh.user(req.headers()).inspect(|_| rh.strip(req.headers_mut())),
            _ => None,
        };
        let user = match proxied {
            Some(u) => u,
            None => {
                let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
                match self.auth.authenticate(&self.registry, conn.cert_identity.as_ref(), authorization).await {
                    Ok(u) => u,
                    Err(e) => return Ok(error_response(&e)),
                }
            }
        };
        let user = match crate::auth::impersonation::impersonate(&user, req.headers(), &self.authz) {
            Ok(u) => u,
            Err(e) => return Ok(error_response(&e)),
        };
        let method = req.method().clone();
        let q = request::query(req.uri().query());
        let info = request::parse(method.as_str(), req.uri().path(), request::flag(&q, "watch"));
        let attributes = match &info {
            Some(info) => crate::authorization::with_field_selector(
                crate::authorization::resource_attributes(&user, info),
                q.get("fieldSelector").map(String::as_str),
            ),
            None => crate::authorization::non_resource_attributes(&user, method.as_str(), req.uri().path()),
        };
        match self.authz.authorize(&attributes) {
            (crate::authorization::Decision::Allow, _) => {}
            (_, reason) => return Ok(error_response(&crate::authorization::forbidden(&attributes, &reason))),
        }
        if let Some(route) = self.remote_route(req.uri().path()) {
            return Ok(crate::aggregator::proxy::serve(&self, &route, req, &user).await);
        }
        let Some(info) = info else {
            let resp = match self.non_resource(&req).await {
                Some(r) => r,
                None => {
                    error_response(&ApiError::new(404, "NotFound", "the server could not find the requested resource"))
                }
            };
            return Ok(resp);
        };
        let long_running = info.verb == "watch"
            || matches!(info.subresource.as_deref(), Some("log" | "exec" | "attach" | "portforward" | "proxy"));
        let mutating = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
        let _permit = if long_running {
            None
        } else {
            let (sem, gauge) = if mutating {
                (&self.mutating, &self.metrics.inflight_mutating)
            } else {
                (&self.readonly, &self.metrics.inflight_readonly)
            };
            match sem.try_acquire() {
                Ok(p) => Some(InFlight::new(p, gauge)),
                Err(_) => {
                    let e = ApiError::too_many_requests("Too many requests, please try again later.", 1);
                    return Ok(error_response(&e));
                }
            }
        };
        let labels = (
            method.as_str().to_string(),
            info.group.clone(),
            info.version.clone(),
            info.resource.clone(),
            info.subresource.clone().unwrap_or_default(),
            if info.name.is_some() {
                "resource"
            } else if info.namespace.is_some() {
                "namespace"
            } else {
                "cluster"
            }
            .to_string(),
        );
        let accept = req.headers().get(header::ACCEPT).and_then(|a| a.to_str().ok()).unwrap_or_default();
        let error_encoding = if crate::negotiation::prefers_protobuf(accept) {
            crate::negotiation::Encoding::Protobuf
        } else {
            crate::negotiation::Encoding::Json
        };
        let this = self.clone();
        let work = crate::admission::REQUEST_USER
            .scope(user.clone(), async move { crate::api::serve(&this, req, info, q, user).await });
        let mut work = std::pin::pin!(crate::admission::WARNINGS.scope(Default::default(), work));
        let resp = if long_running {
            (&mut work).await
        } else {
            match tokio::time::timeout(self.opts.request_timeout, &mut work).await {
                Ok(r) => r,
                Err(_) => Err(ApiError::timeout("Timeout: request did not complete within the allotted timeout")),
            }
        };
        let resp = resp.unwrap_or_else(|e| error_response_as(&e, error_encoding));
        // Warnings admission added (webhooks'), on success and failure alike, as upstream.
        let warnings = work.as_mut().take_value().map(std::cell::RefCell::into_inner).unwrap_or_default();
        let resp = crate::api::with_warnings(resp, &warnings);
        self.metrics.observe(labels, resp.status().as_u16(), started.elapsed());
        Ok(resp)
    }

    pub fn watch_gauge(self: &Arc<Self>) -> WatchGauge {
        self.metrics.watchers.fetch_add(1, Ordering::Relaxed);
        WatchGauge(self.clone())
    }

    /// Changes when the server shuts down; long-running requests end then.
    pub fn stop_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}

/// A held in-flight slot, counted in the gauge.
struct InFlight<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
    gauge: &'a std::sync::atomic::AtomicI64,
}

impl<'a> InFlight<'a> {
    fn new(permit: tokio::sync::SemaphorePermit<'a>, gauge: &'a std::sync::atomic::AtomicI64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        InFlight { _permit: permit, gauge }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.gauge.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads a request body, refusing more than 3 MiB with 413.
pub async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    read_limited(body, MAX_BODY).await
}

/// Reads a body of at most `limit` bytes. A longer one is 413, answered only after the rest of it has been read
/// (and dropped, up to [`MAX_DRAIN`] more bytes or [`DRAIN_TIME`]): answering while the client is still sending
/// would close the connection under it, and the client would see a reset instead of the Status.
async fn read_limited<B>(mut body: B, limit: usize) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut buf = bytes::BytesMut::new();
    let mut over = false;
    let mut drained = 0usize;
    let deadline = tokio::time::Instant::now() + DRAIN_TIME;
    loop {
        let frame = if over {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(f) => f,
                Err(_) => break,
            }
        } else {
            body.frame().await
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        if over {
            drained += data.len();
            if drained > MAX_DRAIN {
                break;
            }
        } else if buf.len() + data.len() > limit {
            over = true;
            buf = bytes::BytesMut::new();
        } else {
            buf.extend_from_slice(&data);
        }
    }
    if over { Err(ApiError::too_large()) } else { Ok(buf.freeze()) }
}

/// How much of an oversized body is read and dropped before the 413 goes out.
const MAX_DRAIN: usize = 64 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Upstream's request-line and header limits (Go's DefaultMaxHeaderBytes, 1 MiB): longer headers are answered with
/// a 431 Status rather than hyper's bodiless answer, whose buffer is set above this. A request line can in fact be at
/// most 64 KiB (the `http` crate's URI limit): longer ones get hyper's 414, given a Status body by
/// [`crate::parseerror`].
pub const MAX_REQUEST_LINE: usize = 1024 * 1024;
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;
const HTTP1_BUFFER: usize = 4 * 1024 * 1024;

/// 414 or 431 for a request line or headers over upstream's limits.
fn check_request_size<B>(req: &Request<B>) -> Result<(), ApiError> {
    let line = req.method().as_str().len() + req.uri().to_string().len() + 10;
    if line > MAX_REQUEST_LINE {
        return Err(ApiError::new(414, "RequestURITooLong", "the request URI is too long"));
    }
    let headers: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if headers > MAX_HEADER_BYTES {
        return Err(ApiError::new(431, "RequestHeaderFieldsTooLarge", "the request header fields are too large"));
    }
    Ok(())
}

/// The client configuration for kubelets: our client certificate when given, the kubelet CA when given (otherwise
/// the kubelet's serving certificate is not verified, as upstream without `--kubelet-certificate-authority`).
fn kubelet_client(opts: &Options) -> Result<client::Config, BoxError> {
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()));
    let mut cfg = client::Config::default();
    match (&opts.kubelet_client_certificate, &opts.kubelet_client_key) {
        (Some(c), Some(k)) => {
            cfg.client_cert_pem = Some(read(c)?);
            cfg.client_key_pem = Some(read(k)?);
        }
        (None, None) => {}
        _ => return Err("--kubelet-client-certificate and --kubelet-client-key go together".into()),
    }
    match &opts.kubelet_certificate_authority {
        Some(ca) => cfg.ca_pem = Some(read(ca)?),
        None => cfg.insecure_skip_tls_verify = true,
    }
    client::rustls_config(&cfg)?;
    Ok(cfg)
}

/// `--proxy-client-cert-file` and `--proxy-client-key-file`: the identity the apiserver presents to aggregated API
/// servers. They must come together and form a pair, as upstream checks at start; nothing here is aggregated yet, so
/// they are not used further.
fn check_proxy_client(opts: &Options) -> Result<(), BoxError> {
    match (&opts.proxy_client_cert_file, &opts.proxy_client_key_file) {
        (None, None) => Ok(()),
        (Some(c), Some(k)) => {
            let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()));
            let cfg = client::Config {
                client_cert_pem: Some(read(c)?),
                client_key_pem: Some(read(k)?),
                insecure_skip_tls_verify: true,
                ..Default::default()
            };
            client::rustls_config(&cfg)
                .map_err(|e| format!("--proxy-client-cert-file/--proxy-client-key-file: {e}"))?;
            Ok(())
        }
        _ => Err("--proxy-client-cert-file and --proxy-client-key-file go together".into()),
    }
}

/// The service-account token authority the flags describe (None without keys or issuer).
fn service_account_tokens(opts: &Options) -> Result<Option<crate::auth::serviceaccount::TokenAuthority>, BoxError> {
    use crate::auth::keys;
    let mut public = Vec::new();
    for f in &opts.service_account_key_file {
        public.extend(keys::load_public_keys(f)?);
    }
    let signing = opts.service_account_signing_key_file.as_deref().map(keys::load_signing_key).transpose()?;
    if let Some(k) = &signing
        && !public.iter().any(|p| p.kid == k.public.kid)
    {
        // Upstream requires the signing key's public half among the verification keys; adding it is kinder.
        public.push(k.public.clone());
    }
    if public.is_empty() && opts.service_account_issuer.is_empty() {
        return Ok(None);
    }
    if opts.service_account_issuer.is_empty() {
        return Err("--service-account-issuer is required with service-account keys".into());
    }
    if signing.is_some() && public.is_empty() {
        return Err("--service-account-key-file is required".into());
    }
    let mut a = crate::auth::serviceaccount::TokenAuthority::new(
        opts.service_account_issuer.clone(),
        opts.api_audiences.clone(),
        signing,
        public,
    );
    a.max_expiration = opts.service_account_max_token_expiration;
    a.extend_expiration = opts.service_account_extend_token_expiration;
    Ok(Some(a))
}

/// The user a request was authenticated as (for the review endpoints).
pub type User = UserInfo;

/// Runs the apiserver until SIGTERM or SIGINT.
pub async fn run(opts: Options) -> Result<(), BoxError> {
    let listener = TcpListener::bind((opts.bind_address, opts.secure_port)).await?;
    serve(opts, listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM, shutting down"),
        _ = int.recv() => tracing::info!("received SIGINT, shutting down"),
    }
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(opts: Options, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<(), BoxError> {
    let server = Apiserver::new(opts.clone()).await?;
    let service_ip = crate::ipalloc::first_service_ip(&opts.service_cluster_ip_range).ok();
    let sans = crate::pki::apiserver_sans(Some(server.advertise), service_ip);
    let (cert, key) = crate::pki::serving_pair(
        opts.tls_cert_file.as_deref(),
        opts.tls_private_key_file.as_deref(),
        &opts.cert_dir,
        &sans,
    )?;
    let cas: Vec<&std::path::Path> =
        opts.client_ca_file.iter().chain(&opts.requestheader_client_ca_file).map(|p| p.as_path()).collect();
    let tls = tokio_rustls::TlsAcceptor::from(crate::pki::server_config_with_cas(&cert, &key, &cas)?);
    {
        let s = server.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            while let Err(e) = s.bootstrap().await {
                tracing::warn!(error = %e, "bootstrap failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        });
    }
    tracing::info!(address = %listener.local_addr()?, advertise = %server.advertise, "serving securely");
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let (tls, server, watcher) = (tls.clone(), server.clone(), graceful.watcher());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let chain = stream.get_ref().1.peer_certificates().unwrap_or_default();
            // The handshake accepted certificates of either CA: which one signed this one decides what it proves.
            let of_client_ca = match (&server.client_ca, &server.request_header) {
                (Some(ca), Some(_)) => ca.verifies(chain),
                (Some(_), None) => true,
                (None, _) => false,
            };
            let cert_identity =
                chain.first().filter(|_| of_client_ca).and_then(|c| crate::pki::cert_identity(c.as_ref()));
            let front_proxy = server.request_header.as_ref().is_some_and(|rh| rh.is_proxy(chain));
            let conn = ConnInfo { cert_identity, front_proxy, remote: Some(remote) };
            let svc = hyper::service::service_fn(move |req| server.clone().handle(req, conn.clone()));
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // upstream's --http2-max-streams-per-connection default: informers multiplex many watches.
            builder.http2().max_concurrent_streams(HTTP2_MAX_STREAMS).max_header_list_size(HTTP1_BUFFER as u32);
            builder.http1().max_buf_size(HTTP1_BUFFER);
            let fut = builder.serve_connection_with_upgrades(TokioIo::new(StatusOnParseError::new(stream)), svc);
            if let Err(e) = watcher.watch(fut.into_owned()).await {
                tracing::debug!(%remote, error = %e, "connection ended");
            }
        });
    }
    server.shutting_down.store(true, Ordering::Release);
    server.stop.send_replace(true);
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await.is_err() {
        tracing::info!("open connections did not finish in 5s; closing them");
    }
    tracing::info!("apiserver stopped");
    Ok(())
}
