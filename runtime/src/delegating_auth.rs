//! Delegated authentication and authorization, as `k8s.io/apiserver`'s DelegatingAuthenticationOptions and
//! DelegatingAuthorizationOptions give kube-controller-manager and kube-scheduler (and, through the webhook pieces,
//! the kubelet): a client certificate of the client CA (`--client-ca-file`, else the `client-ca-file` of the
//! `kube-system/extension-apiserver-authentication` ConfigMap), a front proxy's headers (its certificate signed by
//! the requestheader CA, from `--requestheader-client-ca-file` or that ConfigMap), a bearer token checked with a
//! TokenReview through `--authentication-kubeconfig`, else anonymous. Requests are allowed on
//! `--authorization-always-allow-paths` (`/healthz`, `/readyz`, `/livez`), for `system:masters`, or by a
//! SubjectAccessReview through `--authorization-kubeconfig`; otherwise 403 as upstream words it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use client::Client;
use http::{HeaderMap, Method, header};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use serde_json::{Value, json};

/// An authenticated user (the fields a TokenReview or SubjectAccessReview carries).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Answers of a webhook, by key, until they expire.
pub struct Cache<V> {
    entries: Mutex<HashMap<String, (V, Instant)>>,
}

impl<V: Clone> Default for Cache<V> {
    fn default() -> Self {
        Cache { entries: Mutex::new(HashMap::new()) }
    }
}

impl<V: Clone> Cache<V> {
    pub fn get(&self, key: &str) -> Option<V> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some((v, until)) if *until > Instant::now() => Some(v.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn set(&self, key: String, v: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if entries.len() > 4096 {
            entries.retain(|_, (_, until)| *until > now);
        }
        entries.insert(key, (v, now + ttl));
    }
}

/// POSTs a review, retrying failures that may pass (connection errors, 429 and 5xx) as upstream's
/// `DefaultAuthWebhookRetryBackoff` (0.5 s, ×1.5, 5 attempts).
pub async fn review(client: &Client, path: &str, body: &Value) -> Result<Value, String> {
    let mut delay = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        let sent = Bytes::from(body.to_string());
        let res = tokio::time::timeout(
            Duration::from_secs(10),
            client.request(Method::POST, path, Some((sent, "application/json"))),
        )
        .await
        .unwrap_or_else(|_| Err(client::Error::Transport("the review timed out".into())));
        match res {
            Ok(v) => return Ok(v),
            Err(e) if attempt < 5 && e.code().is_none_or(|c| c == 429 || c >= 500) => {
                tracing::debug!(error = %e, path, "review failed; retrying");
                tokio::time::sleep(delay).await;
                delay = delay.mul_f64(1.5);
                attempt += 1;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bearer tokens checked with TokenReviews (upstream's webhook token authenticator behind its cache).
pub struct TokenReviewer {
    client: Client,
    ttl: Duration,
    cache: Cache<Option<UserInfo>>,
}

impl TokenReviewer {
    pub fn new(client: Client, ttl: Duration) -> Self {
        TokenReviewer { client, ttl, cache: Cache::default() }
    }

    /// The user a token belongs to; None when the API says it is not authenticated.
    pub async fn authenticate_token(&self, token: &str) -> Result<Option<UserInfo>, String> {
        let key = hex(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
        if let Some(cached) = self.cache.get(&key) {
            return Ok(cached);
        }
        let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}});
        let answer = review(&self.client, "/apis/authentication.k8s.io/v1/tokenreviews", &body).await?;
        let status = answer.get("status").cloned().unwrap_or_default();
        if !status.get("authenticated").and_then(Value::as_bool).unwrap_or(false) {
            if let Some(err) = status.get("error").and_then(Value::as_str).filter(|e| !e.is_empty()) {
                return Err(err.to_string());
            }
            self.cache.set(key, None, self.ttl);
            return Ok(None);
        }
        let u = &status["user"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect()
        };
        let user = UserInfo {
            username: u["username"].as_str().unwrap_or_default().to_string(),
            uid: u["uid"].as_str().unwrap_or_default().to_string(),
            groups: strings(&u["groups"]),
            extra: u["extra"].as_object().into_iter().flatten().map(|(k, v)| (k.clone(), strings(v))).collect(),
        };
        self.cache.set(key, Some(user.clone()), self.ttl);
        Ok(Some(user))
    }
}

/// An authorizer's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    NoOpinion,
}

/// SubjectAccessReviews behind a cache (upstream's webhook authorizer): allowed answers kept for `allowed_ttl`,
/// others for `denied_ttl`.
pub struct SubjectAccessReviewer {
    client: Client,
    allowed_ttl: Duration,
    denied_ttl: Duration,
    cache: Cache<(Decision, String)>,
}

impl SubjectAccessReviewer {
    pub fn new(client: Client, allowed_ttl: Duration, denied_ttl: Duration) -> Self {
        SubjectAccessReviewer { client, allowed_ttl, denied_ttl, cache: Cache::default() }
    }

    /// The spec of a SubjectAccessReview for `user` with the given attributes (`resourceAttributes` or
    /// `nonResourceAttributes`).
    pub fn spec(user: &UserInfo, attributes: (&str, Value)) -> Value {
        let mut spec = json!({"user": user.username});
        spec[attributes.0] = attributes.1;
        if !user.groups.is_empty() {
            spec["groups"] = json!(user.groups);
        }
        if !user.extra.is_empty() {
            spec["extra"] = json!(user.extra);
        }
        if !user.uid.is_empty() {
            spec["uid"] = json!(user.uid);
        }
        spec
    }

    /// The decision on a SubjectAccessReview spec and its reason; Err when the API could not be asked.
    pub async fn authorize(&self, spec: Value) -> Result<(Decision, String), String> {
        let body = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec});
        let key = body["spec"].to_string();
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit);
        }
        let answer = review(&self.client, "/apis/authorization.k8s.io/v1/subjectaccessreviews", &body).await?;
        let status = answer.get("status").cloned().unwrap_or_default();
        let reason = status.get("reason").and_then(Value::as_str).unwrap_or_default().to_string();
        let decision = if status.get("allowed").and_then(Value::as_bool).unwrap_or(false) {
            Decision::Allow
        } else if status.get("denied").and_then(Value::as_bool).unwrap_or(false) {
            Decision::Deny
        } else {
            Decision::NoOpinion
        };
        let ttl = if decision == Decision::Allow { self.allowed_ttl } else { self.denied_ttl };
        self.cache.set(key, (decision, reason.clone()), ttl);
        Ok((decision, reason))
    }
}

/// The common name and organizations of a DER certificate's subject.
pub fn subject_of(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let cn = subject.iter_common_name().next().and_then(|a| a.as_str().ok()).unwrap_or_default().to_string();
    let orgs = subject.iter_organization().filter_map(|a| a.as_str().ok().map(String::from)).collect();
    Some((cn, orgs))
}

/// The delegating flags of kube-controller-manager and kube-scheduler, with upstream's defaults.
#[derive(Debug, Clone, clap::Args)]
pub struct Flags {
    /// A kubeconfig with rights to create TokenReviews (and read the extension-apiserver-authentication ConfigMap).
    #[arg(long)]
    pub authentication_kubeconfig: Option<PathBuf>,
    /// A kubeconfig with rights to create SubjectAccessReviews.
    #[arg(long)]
    pub authorization_kubeconfig: Option<PathBuf>,
    /// Client certificates signed by this CA authenticate as their common name (groups: organizations).
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// The CA of front proxies' client certificates (else the ConfigMap's).
    #[arg(long)]
    pub requestheader_client_ca_file: Option<PathBuf>,
    /// Common names a front proxy's certificate may have (empty: any).
    #[arg(long, value_delimiter = ',')]
    pub requestheader_allowed_names: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "x-remote-user")]
    pub requestheader_username_headers: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "x-remote-group")]
    pub requestheader_group_headers: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "x-remote-extra-")]
    pub requestheader_extra_headers_prefix: Vec<String>,
    /// Paths served without authorization (a trailing `*` matches a prefix).
    #[arg(long, value_delimiter = ',', default_value = "/healthz,/readyz,/livez")]
    pub authorization_always_allow_paths: Vec<String>,
}

impl Default for Flags {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            f: Flags,
        }
        <P as clap::Parser>::parse_from(["x"]).f
    }
}

/// A client CA bundle: its PEM and a verifier of client certificates against it.
#[derive(Clone)]
struct Ca {
    pem: String,
    verifier: Arc<dyn ClientCertVerifier>,
}

impl Ca {
    fn from_pem(pem: &str) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut pem.as_bytes()) {
            roots.add(c.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Ca { pem: pem.to_string(), verifier })
    }

    fn verifies(&self, chain: &[CertificateDer<'_>]) -> bool {
        let Some((leaf, rest)) = chain.split_first() else { return false };
        self.verifier.verify_client_cert(leaf, rest, UnixTime::now()).is_ok()
    }
}

/// The CAs in force (from flags, or the ConfigMap as it was last read).
#[derive(Default, Clone)]
struct Cas {
    client: Option<Ca>,
    requestheader: Option<Ca>,
    /// From the ConfigMap when not from the flags.
    allowed_names: Vec<String>,
}

/// What a request may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed(UserInfo),
    /// The status code and upstream's Status body.
    Refused(u16, String),
}

fn status(code: u16, reason: &str, message: &str) -> String {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
        "reason": reason, "details": {}, "code": code})
    .to_string()
}

/// The delegating authenticator and authorizer of a component's secure port.
pub struct DelegatingAuth {
    flags: Flags,
    cas: RwLock<Cas>,
    tokens: Option<TokenReviewer>,
    access: Option<SubjectAccessReviewer>,
    /// For reading the extension-apiserver-authentication ConfigMap.
    reader: Option<Client>,
}

fn client_from(path: &Option<PathBuf>) -> Result<Option<Client>, String> {
    let Some(p) = path else { return Ok(None) };
    let cfg = client::Config::from_kubeconfig(p).map_err(|e| format!("{}: {e}", p.display()))?;
    Client::new(&cfg).map(Some).map_err(|e| e.to_string())
}

impl DelegatingAuth {
    /// From the flags; without `--authentication-kubeconfig` tokens are not accepted (and the ConfigMap is not
    /// read), without `--authorization-kubeconfig` only the always-allowed paths and system:masters are served, as
    /// upstream does when it cannot find those kubeconfigs.
    pub fn new(flags: Flags) -> Result<Arc<Self>, String> {
        Self::with_default_client(flags, None)
    }

    /// As [`DelegatingAuth::new`], with `default` for whichever of `--authentication-kubeconfig` and
    /// `--authorization-kubeconfig` is not given: aggregated API servers (metrics-server) use their own
    /// connection to the apiserver there, as upstream's generic apiserver falls back to the in-cluster config.
    pub fn with_default_client(flags: Flags, default: Option<Client>) -> Result<Arc<Self>, String> {
        let read = |p: &Option<PathBuf>| -> Result<Option<Ca>, String> {
            match p {
                Some(p) => {
                    let pem = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                    Ca::from_pem(&pem).map(Some).map_err(|e| format!("{}: {e}", p.display()))
                }
                None => Ok(None),
            }
        };
        let cas = Cas {
            client: read(&flags.client_ca_file)?,
            requestheader: read(&flags.requestheader_client_ca_file)?,
            allowed_names: Vec::new(),
        };
        let authn = client_from(&flags.authentication_kubeconfig)?.or_else(|| default.clone());
        if authn.is_none() {
            tracing::warn!(
                "No authentication-kubeconfig provided in order to lookup client-ca-file in configmap/extension-apiserver-authentication in kube-system, so client certificate authentication won't work."
            );
        }
        let authz = client_from(&flags.authorization_kubeconfig)?.or(default);
        if authz.is_none() {
            tracing::warn!(
                "No authorization-kubeconfig provided, so SubjectAccessReview of authorization tokens won't work."
            );
        }
        Ok(Arc::new(DelegatingAuth {
            tokens: authn.clone().map(|c| TokenReviewer::new(c, Duration::from_secs(10))),
            access: authz.map(|c| SubjectAccessReviewer::new(c, Duration::from_secs(10), Duration::from_secs(10))),
            reader: authn,
            cas: RwLock::new(cas),
            flags,
        }))
    }

    /// Reads the ConfigMap for what the flags leave out, now and every minute (upstream's dynamic CA loading),
    /// until `stop`.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Some(client) = self.reader.clone() else { return };
        if self.flags.client_ca_file.is_some() && self.flags.requestheader_client_ca_file.is_some() {
            return;
        }
        let Ok(api) = client.api("", "v1", "configmaps") else { return };
        let api = api.namespaced("kube-system");
        loop {
            let wait = match api.get("extension-apiserver-authentication").await {
                Ok(cm) => {
                    self.load(&cm["data"]);
                    Duration::from_secs(60)
                }
                Err(e) => {
                    tracing::debug!(error = %e, "reading kube-system/extension-apiserver-authentication");
                    Duration::from_secs(2)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }

    fn load(&self, data: &Value) {
        let mut cas = self.cas.write().unwrap_or_else(|e| e.into_inner());
        let ca = |key: &str| {
            data.get(key).and_then(Value::as_str).filter(|p| !p.is_empty()).and_then(|p| Ca::from_pem(p).ok())
        };
        if self.flags.client_ca_file.is_none()
            && cas.client.as_ref().map(|c| c.pem.as_str()) != data["client-ca-file"].as_str()
        {
            cas.client = ca("client-ca-file");
        }
        if self.flags.requestheader_client_ca_file.is_none() {
            if cas.requestheader.as_ref().map(|c| c.pem.as_str()) != data["requestheader-client-ca-file"].as_str() {
                cas.requestheader = ca("requestheader-client-ca-file");
            }
            cas.allowed_names = data["requestheader-allowed-names"]
                .as_str()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default();
        }
    }

    /// The user of a request (upstream's union: front proxy, client certificate, token, anonymous).
    async fn authenticate(&self, chain: &[CertificateDer<'_>], headers: &HeaderMap) -> Result<UserInfo, String> {
        let cas = self.cas.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(rh) = &cas.requestheader
            && rh.verifies(chain)
        {
            let allowed = if self.flags.requestheader_client_ca_file.is_some() {
                &self.flags.requestheader_allowed_names
            } else {
                &cas.allowed_names
            };
            let cn = chain.first().and_then(|c| subject_of(c.as_ref())).map(|(cn, _)| cn).unwrap_or_default();
            let first = |names: &[String]| {
                names
                    .iter()
                    .find_map(|n| headers.get(n.as_str()).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()))
            };
            if (allowed.is_empty() || allowed.contains(&cn))
                && let Some(name) = first(&self.flags.requestheader_username_headers)
            {
                let groups = self
                    .flags
                    .requestheader_group_headers
                    .iter()
                    .flat_map(|n| headers.get_all(n.as_str()).iter())
                    .filter_map(|v| v.to_str().ok().map(String::from))
                    .collect();
                let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for (k, v) in headers {
                    let lower = k.as_str().to_ascii_lowercase();
                    let prefixes = &self.flags.requestheader_extra_headers_prefix;
                    if let Some(key) = prefixes.iter().find_map(|p| lower.strip_prefix(&p.to_ascii_lowercase()))
                        && let Ok(v) = v.to_str()
                    {
                        extra.entry(key.to_string()).or_default().push(v.to_string());
                    }
                }
                return Ok(authenticated(UserInfo { username: name.to_string(), groups, extra, ..Default::default() }));
            }
        }
        if let Some(ca) = &cas.client
            && ca.verifies(chain)
            && let Some((cn, orgs)) = chain.first().and_then(|c| subject_of(c.as_ref()))
        {
            return Ok(authenticated(UserInfo { username: cn, groups: orgs, ..Default::default() }));
        }
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        if let (Some(token), Some(reviewer)) = (token, &self.tokens) {
            return match reviewer.authenticate_token(token).await? {
                Some(u) => Ok(authenticated(u)),
                None => Err("invalid bearer token".into()),
            };
        }
        Ok(UserInfo {
            username: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            ..Default::default()
        })
    }

    /// Authenticates and authorizes a request to the secure port (`chain`: the client certificates the TLS
    /// handshake received, not yet verified) as a non-resource request on its path and method.
    pub async fn check(
        &self,
        chain: &[CertificateDer<'_>],
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Verdict {
        let verb = method.as_str().to_ascii_lowercase();
        self.check_request(chain, headers, path, &Attributes::NonResource { path: path.to_string(), verb }).await
    }

    /// Authenticates a request and authorizes it for `attributes` (an API server's resource requests carry
    /// resource attributes: `get` `pods` in `metrics.k8s.io` in a namespace...). The always-allowed paths match
    /// `path`.
    pub async fn check_request(
        &self,
        chain: &[CertificateDer<'_>],
        headers: &HeaderMap,
        path: &str,
        attributes: &Attributes,
    ) -> Verdict {
        let user = match self.authenticate(chain, headers).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "Unable to authenticate the request");
                return Verdict::Refused(401, status(401, "Unauthorized", "Unauthorized"));
            }
        };
        let always = self.flags.authorization_always_allow_paths.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == p,
        });
        if always || user.groups.iter().any(|g| g == "system:masters") {
            return Verdict::Allowed(user);
        }
        let Some(access) = &self.access else {
            return Verdict::Refused(403, attributes.forbidden(&user, ""));
        };
        let spec = SubjectAccessReviewer::spec(&user, attributes.review());
        match access.authorize(spec).await {
            Ok((Decision::Allow, _)) => Verdict::Allowed(user),
            Ok((_, reason)) => Verdict::Refused(403, attributes.forbidden(&user, &reason)),
            Err(e) => {
                Verdict::Refused(500, status(500, "InternalError", &format!("Internal Server Error: \"{path}\": {e}")))
            }
        }
    }
}

/// What a request asks to do, as a SubjectAccessReview describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attributes {
    NonResource {
        path: String,
        verb: String,
    },
    Resource {
        verb: String,
        group: String,
        version: String,
        resource: String,
        subresource: String,
        namespace: String,
        name: String,
    },
}

impl Attributes {
    /// The `resourceAttributes` or `nonResourceAttributes` of the review.
    fn review(&self) -> (&'static str, Value) {
        match self {
            Attributes::NonResource { path, verb } => ("nonResourceAttributes", json!({"path": path, "verb": verb})),
            Attributes::Resource { verb, group, version, resource, subresource, namespace, name } => {
                let mut a = json!({"verb": verb, "group": group, "version": version, "resource": resource});
                for (k, v) in [("subresource", subresource), ("namespace", namespace), ("name", name)] {
                    if !v.is_empty() {
                        a[k] = json!(v);
                    }
                }
                ("resourceAttributes", a)
            }
        }
    }

    /// The 403 Status upstream's apiserver writes (`responsewriters.forbiddenMessage`).
    fn forbidden(&self, user: &UserInfo, reason: &str) -> String {
        let (verb, group, resource, subresource, namespace, name) = match self {
            Attributes::NonResource { path, verb } => return forbidden(user, verb, path, reason),
            Attributes::Resource { verb, group, resource, subresource, namespace, name, .. } => {
                (verb, group, resource, subresource, namespace, name)
            }
        };
        let full = if subresource.is_empty() { resource.clone() } else { format!("{resource}/{subresource}") };
        let scope = if namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace \"{namespace}\"")
        };
        let mut message =
            format!("User \"{}\" cannot {verb} resource \"{full}\" in API group \"{group}\" {scope}", user.username);
        if !reason.is_empty() {
            message.push_str(": ");
            message.push_str(reason);
        }
        let qualified = if group.is_empty() { resource.clone() } else { format!("{resource}.{group}") };
        let subject = if name.is_empty() { qualified.clone() } else { format!("{qualified} \"{name}\"") };
        let mut body: Value =
            serde_json::from_str(&status(403, "Forbidden", &format!("{subject} is forbidden: {message}")))
                .unwrap_or_default();
        body["details"] = if name.is_empty() {
            json!({"group": group, "kind": resource})
        } else {
            json!({"name": name, "group": group, "kind": resource})
        };
        body.to_string()
    }
}

fn authenticated(mut u: UserInfo) -> UserInfo {
    if !u.groups.iter().any(|g| g == "system:authenticated") {
        u.groups.push("system:authenticated".into());
    }
    u
}

fn forbidden(user: &UserInfo, verb: &str, path: &str, reason: &str) -> String {
    let mut message = format!("forbidden: User \"{}\" cannot {verb} path \"{path}\"", user.username);
    if !reason.is_empty() {
        message.push_str(": ");
        message.push_str(reason);
    }
    status(403, "Forbidden", &message)
}

/// Requests client certificates without judging them in the handshake (they are checked per request against the
/// CAs in force, which may change while the server runs), as upstream's dynamic client CA.
#[derive(Debug)]
pub struct DeferredClientCerts(Arc<rustls::crypto::CryptoProvider>);

impl DeferredClientCerts {
    pub fn new(provider: Arc<rustls::crypto::CryptoProvider>) -> Arc<Self> {
        Arc::new(DeferredClientCerts(provider))
    }
}

impl ClientCertVerifier for DeferredClientCerts {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resource requests are reviewed with resourceAttributes and refused in upstream's words.
    #[test]
    fn resource_attributes_review_and_refusal() {
        let pods = Attributes::Resource {
            verb: "get".into(),
            group: "metrics.k8s.io".into(),
            version: "v1beta1".into(),
            resource: "pods".into(),
            subresource: String::new(),
            namespace: "kube-system".into(),
            name: "coredns".into(),
        };
        assert_eq!(
            pods.review(),
            (
                "resourceAttributes",
                json!({"verb": "get", "group": "metrics.k8s.io", "version": "v1beta1", "resource": "pods",
                    "namespace": "kube-system", "name": "coredns"})
            )
        );
        let user = UserInfo { username: "bob".into(), ..Default::default() };
        let body: Value = serde_json::from_str(&pods.forbidden(&user, "")).unwrap();
        assert_eq!(
            body["message"],
            "pods.metrics.k8s.io \"coredns\" is forbidden: User \"bob\" cannot get resource \"pods\" in API group \"metrics.k8s.io\" in the namespace \"kube-system\""
        );
        assert_eq!(body["details"], json!({"name": "coredns", "group": "metrics.k8s.io", "kind": "pods"}));
        let nodes = Attributes::Resource {
            verb: "list".into(),
            group: "metrics.k8s.io".into(),
            version: "v1beta1".into(),
            resource: "nodes".into(),
            subresource: String::new(),
            namespace: String::new(),
            name: String::new(),
        };
        let body: Value = serde_json::from_str(&nodes.forbidden(&user, "no RBAC policy matched")).unwrap();
        assert_eq!(
            body["message"],
            "nodes.metrics.k8s.io is forbidden: User \"bob\" cannot list resource \"nodes\" in API group \"metrics.k8s.io\" at the cluster scope: no RBAC policy matched"
        );
        assert_eq!(body["code"], 403);
        let path = Attributes::NonResource { path: "/metrics".into(), verb: "get".into() };
        assert_eq!(path.review(), ("nonResourceAttributes", json!({"path": "/metrics", "verb": "get"})));
    }
}
