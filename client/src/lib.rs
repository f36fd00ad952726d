//! The REST and watch client every component uses to talk to the apiserver: kubeconfig or in-cluster config,
//! rustls with client certificates or bearer tokens, HTTP/2, and an [`Api`] per resource (from the resource
//! table) with get, list, create, replace, patch, delete and watch on JSON objects. Errors from the server come
//! back as the [`ApiError`] Status they were sent as.

pub mod config;
pub mod listdecode;
pub mod rotation;
pub mod token_source;

use std::sync::Arc;
use std::time::Duration;

pub use api_types::ApiError;
use api_types::patch::PatchType;
use api_types::resources::{self, Resource};
use bytes::Bytes;
pub use config::Config;
use futures_util::StreamExt;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
pub use rotation::RotatingCert;
use serde_json::{Value, json};
pub use token_source::TokenSource;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("request failed: {0}")]
    Transport(String),
    #[error("{0}")]
    Api(ApiError),
    #[error("decoding the response: {0}")]
    Decode(String),
    #[error("no resource {0} in the resource table")]
    UnknownResource(String),
    /// The [`TokenSource`] could not produce a token.
    #[error("credentials: {0}")]
    Credentials(String),
}

impl Error {
    /// The HTTP status code of an API error (404, 409, ...), if this is one.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Api(e) => Some(e.code),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

type Connector = hyper_rustls::HttpsConnector<rotation::TrackingConnector>;

/// A connection pool to one apiserver. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: HyperClient<Connector, Full<Bytes>>,
    base: String,
    token: Option<Arc<str>>,
    /// Replaces `token` when set: asked for the bearer token of every request.
    token_source: Option<Arc<dyn TokenSource>>,
    pub namespace: String,
    /// Retry 429 Too Many Requests after Retry-After (on by default).
    pub retry_429: bool,
}

/// Accepts any server certificate (`insecure-skip-tls-verify: true`).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn pem_certs(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    rustls_pemfile::certs(&mut &pem[..])
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(e.to_string()))
}

/// The rustls client configuration a [`Config`] describes (CA or insecure, client certificate), without ALPN.
pub fn rustls_config(cfg: &Config) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = if cfg.insecure_skip_tls_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let ca = cfg.ca_pem.as_ref().ok_or_else(|| Error::Tls("no certificate authority configured".into()))?;
        for c in pem_certs(ca)? {
            roots.add(c).map_err(|e| Error::Tls(e.to_string()))?;
        }
        builder.with_root_certificates(roots)
    };
    // ALPN (h2, http/1.1) is set by the connector.
    let tls = match (&cfg.client_cert_pem, &cfg.client_key_pem) {
        _ if cfg.rotating_cert.is_some() => {
            builder.with_client_cert_resolver(cfg.rotating_cert.clone().expect("checked"))
        }
        (Some(cert), Some(key)) => {
            let key = rustls_pemfile::private_key(&mut &key[..])
                .map_err(|e| Error::Tls(e.to_string()))?
                .ok_or_else(|| Error::Tls("no private key in client-key".into()))?;
            builder.with_client_auth_cert(pem_certs(cert)?, key).map_err(|e| Error::Tls(e.to_string()))?
        }
        _ => builder.with_no_client_auth(),
    };
    let mut tls = tls;
    if cfg.rotating_cert.is_some() {
        // A resumed session keeps the identity of the handshake it resumes: after a rotation the server would
        // still see the old certificate.
        tls.resumption = rustls::client::Resumption::disabled();
    }
    Ok(tls)
}

fn encode_query(pairs: &[(&str, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// One event of a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    Added(Value),
    Modified(Value),
    Deleted(Value),
    /// A resourceVersion the client may resume from.
    Bookmark(String),
    /// The server ended the watch with an error (410 Expired: relist).
    Error(ApiError),
}

/// What a list or watch selects.
#[derive(Debug, Default, Clone)]
pub struct ListParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<u32>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub timeout_seconds: Option<u32>,
    pub bookmarks: bool,
}

impl ListParams {
    fn query(&self, watch: bool) -> String {
        let mut q: Vec<(&str, String)> = Vec::new();
        if let Some(l) = &self.label_selector {
            q.push(("labelSelector", l.clone()));
        }
        if let Some(f) = &self.field_selector {
            q.push(("fieldSelector", f.clone()));
        }
        if let Some(l) = self.limit.filter(|_| !watch) {
            q.push(("limit", l.to_string()));
        }
        if let Some(c) = self.continue_token.as_ref().filter(|_| !watch) {
            q.push(("continue", c.clone()));
        }
        if let Some(rv) = &self.resource_version {
            q.push(("resourceVersion", rv.clone()));
        }
        if watch {
            q.push(("watch", "true".into()));
            if self.bookmarks {
                q.push(("allowWatchBookmarks", "true".into()));
            }
            if let Some(t) = self.timeout_seconds {
                q.push(("timeoutSeconds", t.to_string()));
            }
        }
        encode_query(&q)
    }
}

impl Client {
    pub fn new(cfg: &Config) -> Result<Self> {
        let tls = rustls_config(cfg)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_all_versions()
            .wrap_connector(rotation::TrackingConnector {
                http,
                tracker: cfg.rotating_cert.as_ref().map(|r| r.tracker.clone()),
            });
        let http =
            HyperClient::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(90)).build(connector);
        Ok(Client {
            http,
            base: cfg.server.trim_end_matches('/').to_string(),
            token: cfg.token.as_deref().map(Arc::from),
            token_source: None,
            namespace: cfg.namespace.clone(),
            retry_429: true,
        })
    }

    /// This client authenticating every request with the bearer token `source` hands out at that moment instead
    /// of the configuration's static token; a 401 answer makes the source drop the token it gave (client-go's
    /// `ResettableTokenSourceWrapTransport`). Build it from a configuration without a client certificate: the
    /// apiserver authenticates a certificate before a token.
    pub fn with_token_source(mut self, source: Arc<dyn TokenSource>) -> Self {
        self.token = None;
        self.token_source = Some(source);
        self
    }

    /// From `$KUBECONFIG`, `~/.kube/config` or the in-cluster service account.
    pub fn infer() -> Result<Self> {
        Self::new(&Config::infer()?)
    }

    /// Sends a request; a 429 is retried (up to 5 times) after the server's Retry-After, as client-go does.
    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(Bytes, &str)>,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let mut attempt = 0;
        loop {
            let resp = self.send_once(method.clone(), path_and_query, body.clone()).await?;
            if resp.status() != StatusCode::TOO_MANY_REQUESTS || attempt >= 5 || !self.retry_429 {
                return Ok(resp);
            }
            let secs = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1);
            tokio::time::sleep(Duration::from_secs(secs.clamp(1, 10))).await;
            attempt += 1;
        }
    }

    async fn send_once(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(Bytes, &str)>,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        self.send_accepting(method, path_and_query, "application/json", body).await
    }

    /// Sends a request with the given `Accept` (`application/vnd.kubernetes.protobuf, */*` is client-go's default
    /// for built-in kinds) and hands the response back as it is.
    pub async fn send_accepting(
        &self,
        method: Method,
        path_and_query: &str,
        accept: &str,
        body: Option<(Bytes, &str)>,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.base))
            .header(header::ACCEPT, accept);
        let sent_at = std::time::Instant::now();
        let token = match &self.token_source {
            Some(source) => Some(Arc::from(source.token().await?)),
            None => self.token.clone(),
        };
        if let Some(t) = &token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some((b, ct)) => {
                req = req.header(header::CONTENT_TYPE, ct);
                b
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(body)).map_err(|e| Error::Transport(e.to_string()))?;
        let resp = self.http.request(req).await.map_err(|e| Error::Transport(format!("{e:?}")))?;
        if resp.status() == StatusCode::UNAUTHORIZED
            && let Some(source) = &self.token_source
        {
            source.reset_older_than(sent_at);
        }
        Ok(resp)
    }

    /// Sends a request and decodes the JSON answer; a non-2xx answer becomes `Error::Api` with the Status.
    pub async fn request(&self, method: Method, path_and_query: &str, body: Option<(Bytes, &str)>) -> Result<Value> {
        let resp = self.send(method, path_and_query, body).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.map_err(|e| Error::Transport(e.to_string()))?.to_bytes();
        if !status.is_success() {
            return Err(Error::Api(status_error(status, &bytes)));
        }
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
    }

    /// A GET whose response is handed back as it is, body streaming (logs with follow, proxies).
    pub async fn get_stream(&self, path_and_query: &str) -> Result<hyper::Response<hyper::body::Incoming>> {
        self.send(Method::GET, path_and_query, None).await
    }

    /// The raw body of a GET (`/healthz`, `/metrics`, logs).
    pub async fn get_raw(&self, path_and_query: &str) -> Result<Bytes> {
        let resp = self.send(Method::GET, path_and_query, None).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.map_err(|e| Error::Transport(e.to_string()))?.to_bytes();
        if !status.is_success() {
            return Err(Error::Api(status_error(status, &bytes)));
        }
        Ok(bytes)
    }

    /// The API of one resource, by group, version and plural name (`"apps", "v1", "deployments"`).
    pub fn api(&self, group: &str, version: &str, plural: &str) -> Result<Api> {
        let res = resources::find(group, version, plural)
            .ok_or_else(|| Error::UnknownResource(format!("{plural}.{group}/{version}")))?;
        Ok(Api { client: self.clone(), res, namespace: None })
    }

    /// The API of a resource row already resolved (built-in or made by [`Client::api_dynamic`]).
    pub fn api_for(&self, res: &'static Resource) -> Api {
        Api { client: self.clone(), res, namespace: None }
    }

    /// The resources of the named groups at their preferred versions, from aggregated discovery (`/apis`):
    /// built-in and custom alike, for controllers that must cover custom resources (namespace deletion).
    pub async fn discover_resources(&self) -> Result<Vec<Discovered>> {
        let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
        let resp = self.send_accepting(Method::GET, "/apis", accept, None).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.map_err(|e| Error::Transport(e.to_string()))?.to_bytes();
        if !status.is_success() {
            return Err(Error::Api(status_error(status, &bytes)));
        }
        let doc: Value = serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))?;
        let mut out = Vec::new();
        for group in doc["items"].as_array().into_iter().flatten() {
            let name = group["metadata"]["name"].as_str().unwrap_or_default();
            let Some(preferred) = group["versions"].as_array().and_then(|v| v.first()) else { continue };
            let version = preferred["version"].as_str().unwrap_or_default();
            for r in preferred["resources"].as_array().into_iter().flatten() {
                out.push(Discovered {
                    group: name.to_string(),
                    version: version.to_string(),
                    plural: r["resource"].as_str().unwrap_or_default().to_string(),
                    kind: r.pointer("/responseKind/kind").and_then(Value::as_str).unwrap_or_default().to_string(),
                    namespaced: r["scope"] == "Namespaced",
                    verbs: r["verbs"]
                        .as_array()
                        .map(|v| v.iter().filter_map(Value::as_str).map(str::to_string).collect())
                        .unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }

    /// The API of a resource outside the built-in table (a custom resource): its rows are made once per distinct
    /// (group, version, plural, kind, scope) and kept for the life of the process.
    pub fn api_dynamic(&self, group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Api {
        if let Some(res) = resources::find(group, version, plural) {
            return Api { client: self.clone(), res, namespace: None };
        }
        type Rows = std::sync::Mutex<std::collections::HashMap<String, &'static Resource>>;
        static ROWS: std::sync::OnceLock<Rows> = std::sync::OnceLock::new();
        let key = format!("{group}/{version}/{plural}/{kind}/{namespaced}");
        let mut rows = ROWS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
        let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
        let res = *rows.entry(key).or_insert_with(|| {
            Box::leak(Box::new(Resource {
                group: leak(group),
                version: leak(version),
                kind: leak(kind),
                plural: leak(plural),
                singular: leak(&kind.to_lowercase()),
                namespaced,
                short_names: &[],
                categories: &[],
                verbs: &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                subresources: &[],
                // Unique per resource: informer factories and the garbage collector key resources by it.
                storage: leak(&format!("{group}/{plural}")),
                custom: true,
                selectable_fields: &[],
            }))
        });
        Api { client: self.clone(), res, namespace: None }
    }
}

fn status_error(status: StatusCode, body: &[u8]) -> ApiError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    match parsed.filter(|v| v["kind"] == "Status") {
        Some(s) => ApiError {
            code: status.as_u16(),
            reason: reason_static(s["reason"].as_str().unwrap_or_default()),
            message: s["message"].as_str().unwrap_or_default().to_string(),
            details: s.get("details").cloned().map(Box::new),
            retry_after: s.pointer("/details/retryAfterSeconds").and_then(Value::as_u64),
            continue_token: s.pointer("/metadata/continue").and_then(Value::as_str).map(str::to_string),
        },
        None => ApiError::new(status.as_u16(), "Unknown", String::from_utf8_lossy(body).into_owned()),
    }
}

/// Upstream's reasons as static strings (ApiError keeps `&'static str`).
fn reason_static(r: &str) -> &'static str {
    const REASONS: &[&str] = &[
        "NotFound",
        "AlreadyExists",
        "Conflict",
        "Invalid",
        "BadRequest",
        "Expired",
        "Gone",
        "Forbidden",
        "Unauthorized",
        "MethodNotAllowed",
        "UnsupportedMediaType",
        "NotAcceptable",
        "RequestEntityTooLarge",
        "TooManyRequests",
        "ServiceUnavailable",
        "InternalError",
        "Timeout",
    ];
    REASONS.iter().find(|x| **x == r).copied().unwrap_or("Unknown")
}

/// A resource as aggregated discovery lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl Discovered {
    /// Whether the built-in table does not know it (a custom or aggregated resource).
    pub fn is_custom(&self) -> bool {
        resources::find(&self.group, &self.version, &self.plural).is_none()
    }
}

/// One resource, in one namespace or across all.
#[derive(Clone)]
pub struct Api {
    client: Client,
    pub res: &'static Resource,
    namespace: Option<String>,
}

impl Api {
    /// Scoped to a namespace (namespaced resources only; cluster-scoped ones ignore it).
    pub fn namespaced(mut self, ns: &str) -> Self {
        self.namespace = self.res.namespaced.then(|| ns.to_string());
        self
    }

    fn collection(&self) -> String {
        let base = if self.res.group.is_empty() {
            format!("/api/{}", self.res.version)
        } else {
            format!("/apis/{}/{}", self.res.group, self.res.version)
        };
        match &self.namespace {
            Some(ns) => format!("{base}/namespaces/{ns}/{}", self.res.plural),
            None => format!("{base}/{}", self.res.plural),
        }
    }

    fn item(&self, name: &str) -> String {
        format!("{}/{name}", self.collection())
    }

    pub async fn get(&self, name: &str) -> Result<Value> {
        self.client.request(Method::GET, &self.item(name), None).await
    }

    /// One page (or everything, without a limit). Returns the List object.
    pub async fn list(&self, p: &ListParams) -> Result<Value> {
        self.client.request(Method::GET, &format!("{}?{}", self.collection(), p.query(false)), None).await
    }

    /// A list whose items are transformed as they are parsed ([`listdecode`]), so a large list never exists
    /// whole in memory when `transform` cuts items down.
    pub async fn list_transformed(&self, p: &ListParams, transform: listdecode::Transform) -> Result<Value> {
        let body = self.client.get_raw(&format!("{}?{}", self.collection(), p.query(false))).await?;
        listdecode::decode(&body, transform).map_err(|e| Error::Decode(e.to_string()))
    }

    pub async fn create(&self, obj: &Value) -> Result<Value> {
        let body = Bytes::from(serde_json::to_vec(obj).map_err(|e| Error::Decode(e.to_string()))?);
        self.client.request(Method::POST, &self.collection(), Some((body, "application/json"))).await
    }

    pub async fn replace(&self, name: &str, obj: &Value) -> Result<Value> {
        let body = Bytes::from(serde_json::to_vec(obj).map_err(|e| Error::Decode(e.to_string()))?);
        self.client.request(Method::PUT, &self.item(name), Some((body, "application/json"))).await
    }

    /// Replaces the status subresource.
    pub async fn replace_status(&self, name: &str, obj: &Value) -> Result<Value> {
        let body = Bytes::from(serde_json::to_vec(obj).map_err(|e| Error::Decode(e.to_string()))?);
        self.client.request(Method::PUT, &format!("{}/status", self.item(name)), Some((body, "application/json"))).await
    }

    pub async fn patch(&self, name: &str, pt: PatchType, patch: &Value) -> Result<Value> {
        let body = Bytes::from(serde_json::to_vec(patch).map_err(|e| Error::Decode(e.to_string()))?);
        self.client.request(Method::PATCH, &self.item(name), Some((body, pt.content_type()))).await
    }

    pub async fn patch_status(&self, name: &str, pt: PatchType, patch: &Value) -> Result<Value> {
        let body = Bytes::from(serde_json::to_vec(patch).map_err(|e| Error::Decode(e.to_string()))?);
        self.client
            .request(Method::PATCH, &format!("{}/status", self.item(name)), Some((body, pt.content_type())))
            .await
    }

    /// Deletes with DeleteOptions (`{"propagationPolicy":"Foreground"}`, `{"gracePeriodSeconds":0}`).
    pub async fn delete(&self, name: &str, options: Option<&Value>) -> Result<Value> {
        let body = options.map(|o| (Bytes::from(o.to_string()), "application/json"));
        self.client.request(Method::DELETE, &self.item(name), body).await
    }

    /// Watches the collection; events arrive on the returned channel until the server ends the stream.
    pub async fn watch(&self, p: &ListParams) -> Result<tokio::sync::mpsc::Receiver<Result<WatchEvent>>> {
        let path = format!("{}?{}", self.collection(), p.query(true));
        let resp = self.client.send(Method::GET, &path, None).await?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.into_body().collect().await.map_err(|e| Error::Transport(e.to_string()))?.to_bytes();
            return Err(Error::Api(status_error(status, &bytes)));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let mut body = http_body_util::BodyDataStream::new(resp.into_body());
        tokio::spawn(async move {
            let mut buf = Vec::new();
            while let Some(chunk) = body.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(Error::Transport(e.to_string()))).await;
                        return;
                    }
                };
                buf.extend_from_slice(&chunk);
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    if tx.send(decode_event(&line)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}

/// One line of a watch stream.
pub fn decode_event(line: &[u8]) -> Result<WatchEvent> {
    let v: Value = serde_json::from_slice(line).map_err(|e| Error::Decode(e.to_string()))?;
    let obj = v.get("object").cloned().unwrap_or(json!({}));
    Ok(match v["type"].as_str() {
        Some("ADDED") => WatchEvent::Added(obj),
        Some("MODIFIED") => WatchEvent::Modified(obj),
        Some("DELETED") => WatchEvent::Deleted(obj),
        Some("BOOKMARK") => WatchEvent::Bookmark(
            obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default().to_string(),
        ),
        Some("ERROR") => WatchEvent::Error(status_error(
            StatusCode::from_u16(obj["code"].as_u64().unwrap_or(500) as u16)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            obj.to_string().as_bytes(),
        )),
        other => return Err(Error::Decode(format!("unknown watch event type {other:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_watch_lines() {
        let e = decode_event(br#"{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"a"}}}"#).unwrap();
        assert!(matches!(e, WatchEvent::Added(o) if o["metadata"]["name"] == "a"));
        let e = decode_event(br#"{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"12"}}}"#)
            .unwrap();
        assert_eq!(e, WatchEvent::Bookmark("12".into()));
        let e = decode_event(
            br#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old"}}"#,
        )
        .unwrap();
        assert!(matches!(e, WatchEvent::Error(s) if s.code == 410 && s.reason == "Expired"));
        assert!(decode_event(b"{}").is_err());
    }

    #[test]
    fn list_query_strings() {
        let p = ListParams {
            label_selector: Some("app=web".into()),
            limit: Some(5),
            resource_version: Some("0".into()),
            bookmarks: true,
            ..Default::default()
        };
        assert_eq!(p.query(false), "labelSelector=app%3Dweb&limit=5&resourceVersion=0");
        assert_eq!(p.query(true), "labelSelector=app%3Dweb&resourceVersion=0&watch=true&allowWatchBookmarks=true");
    }
}
