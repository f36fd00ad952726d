//! Upstream's `k8s.io/controller-manager/pkg/clientbuilder`: the client each controller talks to the apiserver
//! with. Without `--use-service-account-credentials` every controller shares the manager's own client
//! (`SimpleControllerClientBuilder`). With it, [`DynamicClientBuilder`] makes each controller the service account
//! `kube-system/<name>` (`system:serviceaccount:kube-system:deployment-controller`, ...), whose rights are the
//! `system:controller:<name>` roles of the RBAC bootstrap policy: the manager's own identity creates the account
//! when missing and requests bound tokens for it (TokenRequest, one hour, the API's audience), and the controller's
//! client carries the current token, renewed once 80% of its life has passed or when the apiserver answers 401.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use client::{Client, Config, TokenSource};
use serde_json::{Value, json};

use crate::BoxError;

/// Upstream's `defaultExpirationSeconds`: the lifetime asked of every TokenRequest.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Upstream's `defaultLeewayPercent`: the share of a token's life left when it is renewed.
pub const DEFAULT_LEEWAY_PERCENT: u32 = 20;
/// A token is kept at least this long whatever its expiry says (upstream pins a shorter lifetime, a likely clock
/// skew, to the ten-minute minimum of TokenRequest).
const MIN_LIFETIME: Duration = Duration::from_secs(600);

/// How controllers get their clients (upstream's `ControllerClientBuilder`).
#[derive(Clone)]
pub enum ClientBuilder {
    /// Every controller uses the manager's own client.
    Simple(Box<Client>),
    /// Every controller is its own service account (`--use-service-account-credentials`).
    Dynamic(Arc<DynamicClientBuilder>),
}

impl ClientBuilder {
    /// The client of the controller whose service account is `name` (e.g. `deployment-controller`).
    pub async fn client(&self, name: &str) -> Result<Client, BoxError> {
        match self {
            ClientBuilder::Simple(c) => Ok(Client::clone(c)),
            ClientBuilder::Dynamic(b) => b.client(name).await,
        }
    }
}

/// Upstream's `DynamicControllerClientBuilder`: one service account and one token source per controller name.
pub struct DynamicClientBuilder {
    /// Where the apiserver is, without the manager's credentials (`restclient.AnonymousClientConfig`).
    base: Config,
    /// The manager's own client: creates the accounts and requests their tokens.
    core: Client,
    namespace: String,
    expiration_seconds: i64,
    leeway_percent: u32,
    clients: Mutex<HashMap<String, (Client, Arc<ServiceAccountTokenSource>)>>,
}

/// The configuration `cfg` without its credentials: same server and CA, no client certificate, no token.
pub fn anonymous(cfg: &Config) -> Config {
    Config { client_cert_pem: None, client_key_pem: None, token: None, ..cfg.clone() }
}

impl DynamicClientBuilder {
    /// Controllers reach the server of `cfg` (whose credentials are dropped) as service accounts of `namespace`,
    /// created and given tokens through `core`.
    pub fn new(cfg: &Config, core: Client, namespace: &str) -> Self {
        DynamicClientBuilder {
            base: anonymous(cfg),
            core,
            namespace: namespace.to_string(),
            expiration_seconds: DEFAULT_EXPIRATION_SECONDS,
            leeway_percent: DEFAULT_LEEWAY_PERCENT,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// For tests, as upstream's `NewTestDynamicClientBuilder`: tokens of `expiration_seconds` (600 at least, the
    /// apiserver's minimum), renewed when `leeway_percent` of their life is left (99: after six seconds of ten
    /// minutes).
    #[doc(hidden)]
    pub fn with_token_lifetime(mut self, expiration_seconds: i64, leeway_percent: u32) -> Self {
        self.expiration_seconds = expiration_seconds;
        self.leeway_percent = leeway_percent.min(100);
        self
    }

    /// The client of service account `name`, creating the account if it is missing (upstream's `Config`); the
    /// same client (and token) for every caller of one name.
    pub async fn client(&self, name: &str) -> Result<Client, BoxError> {
        get_or_create_service_account(&self.core, &self.namespace, name).await?;
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((c, _)) = clients.get(name) {
            return Ok(c.clone());
        }
        let source = Arc::new(ServiceAccountTokenSource {
            core: self.core.clone(),
            namespace: self.namespace.clone(),
            name: name.to_string(),
            expiration_seconds: self.expiration_seconds,
            leeway_percent: self.leeway_percent,
            cached: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            issued: AtomicU64::new(0),
        });
        let client = Client::new(&self.base)?.with_token_source(source.clone());
        clients.insert(name.to_string(), (client.clone(), source));
        Ok(client)
    }

    /// How many tokens were obtained for service account `name` so far (0 if it has no client).
    pub fn tokens_issued(&self, name: &str) -> u64 {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.get(name).map_or(0, |(_, s)| s.issued.load(Ordering::Relaxed))
    }

    /// The service accounts that have clients, sorted.
    pub fn accounts(&self) -> Vec<String> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = clients.keys().cloned().collect();
        names.sort();
        names
    }
}

/// Upstream's `getOrCreateServiceAccount`: gets the account, else makes sure its namespace exists (tolerating a
/// refusal, the manager may not create namespaces) and creates it.
async fn get_or_create_service_account(core: &Client, ns: &str, name: &str) -> Result<Value, BoxError> {
    let accounts = core.api("", "v1", "serviceaccounts")?.namespaced(ns);
    match accounts.get(name).await {
        Ok(sa) => return Ok(sa),
        Err(e) if e.code() == Some(404) => {}
        Err(e) => return Err(e.into()),
    }
    let namespaces = core.api("", "v1", "namespaces")?;
    if let Err(e) = namespaces.get(ns).await
        && e.code() == Some(404)
        && let Err(e) =
            namespaces.create(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})).await
        && e.code() != Some(409)
    {
        tracing::info!(namespace = ns, error = %e, "create non-exist namespace");
    }
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"namespace": ns, "name": name}});
    match accounts.create(&sa).await {
        Ok(sa) => Ok(sa),
        Err(e) if e.code() == Some(409) => Ok(accounts.get(name).await?),
        Err(e) => Err(e.into()),
    }
}

/// A token and when it must be replaced.
struct Cached {
    token: Arc<str>,
    obtained: Instant,
    renew_at: Instant,
}

/// The bound tokens of one service account (upstream's `tokenSourceImpl` behind client-go's caching token source):
/// requests share the current token; the first request after its renewal time, or after the apiserver refused it,
/// requests a new one.
pub struct ServiceAccountTokenSource {
    core: Client,
    namespace: String,
    name: String,
    expiration_seconds: i64,
    leeway_percent: u32,
    cached: Mutex<Option<Cached>>,
    /// Held while a token is requested, so concurrent requests wait for one TokenRequest.
    fetching: tokio::sync::Mutex<()>,
    issued: AtomicU64,
}

impl ServiceAccountTokenSource {
    fn current(&self) -> Option<Arc<str>> {
        let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        cached.as_ref().filter(|c| Instant::now() < c.renew_at).map(|c| c.token.clone())
    }

    /// One TokenRequest: the token and how long it lives.
    async fn request(&self) -> Result<(String, Duration), BoxError> {
        get_or_create_service_account(&self.core, &self.namespace, &self.name).await?;
        let path = format!("/api/v1/namespaces/{}/serviceaccounts/{}/token", self.namespace, self.name);
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": self.expiration_seconds},
        });
        let tr = self
            .core
            .request(http::Method::POST, &path, Some((Bytes::from(body.to_string()), "application/json")))
            .await?;
        let token = tr.pointer("/status/token").and_then(Value::as_str).filter(|t| !t.is_empty());
        let token = token.ok_or("the TokenRequest has no status.token")?.to_string();
        let expiry = tr.pointer("/status/expirationTimestamp").and_then(Value::as_str).unwrap_or_default();
        let expiry: jiff::Timestamp =
            expiry.parse().map_err(|e| format!("status.expirationTimestamp {expiry:?}: {e}"))?;
        let left = expiry.duration_since(jiff::Timestamp::now());
        let lifetime = Duration::try_from(left).unwrap_or_default();
        Ok((token, lifetime))
    }

    /// Upstream's `Token`: up to four TokenRequests, 0.5 s apart and doubling.
    async fn fetch(&self) -> Result<Cached, BoxError> {
        let mut delay = Duration::from_millis(500);
        let mut attempt = 1;
        let (token, lifetime) = loop {
            match self.request().await {
                Ok(t) => break t,
                Err(e) if attempt < 4 => {
                    tracing::info!(namespace = %self.namespace, service_account = %self.name, error = %e, "get token failed");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => {
                    return Err(format!("failed to get token for {}/{}: {e}", self.namespace, self.name).into());
                }
            }
        };
        let lifetime = lifetime.max(MIN_LIFETIME);
        let leeway = lifetime * self.leeway_percent / 100;
        let now = Instant::now();
        self.issued.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(service_account = %self.name, renew_in = ?(lifetime - leeway), "obtained a token");
        Ok(Cached { token: Arc::from(token), obtained: now, renew_at: now + (lifetime - leeway) })
    }
}

impl TokenSource for ServiceAccountTokenSource {
    fn token(&self) -> Pin<Box<dyn Future<Output = client::Result<String>> + Send + '_>> {
        Box::pin(async move {
            if let Some(t) = self.current() {
                return Ok(t.to_string());
            }
            let _one_at_a_time = self.fetching.lock().await;
            if let Some(t) = self.current() {
                return Ok(t.to_string());
            }
            match self.fetch().await {
                Ok(fresh) => {
                    let token = fresh.token.to_string();
                    *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh);
                    Ok(token)
                }
                Err(e) => {
                    // As client-go's caching source: keep using the token we have while renewing fails.
                    let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
                    match cached.as_ref() {
                        Some(c) => {
                            tracing::error!(service_account = %self.name, error = %e, "Unable to rotate token");
                            Ok(c.token.to_string())
                        }
                        None => Err(client::Error::Credentials(e.to_string())),
                    }
                }
            }
        })
    }

    fn reset_older_than(&self, sent_at: Instant) {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if cached.as_ref().is_some_and(|c| c.obtained < sent_at) {
            tracing::info!(service_account = %self.name, "the apiserver refused the token; requesting another");
            *cached = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_drops_credentials_only() {
        let cfg = Config {
            server: "https://10.0.0.1:6443".into(),
            ca_pem: Some(b"CA".to_vec()),
            client_cert_pem: Some(b"CERT".to_vec()),
            client_key_pem: Some(b"KEY".to_vec()),
            token: Some("secret".into()),
            namespace: "kube-system".into(),
            ..Default::default()
        };
        let a = anonymous(&cfg);
        assert_eq!(
            (a.server.as_str(), a.ca_pem.as_deref(), a.namespace.as_str()),
            (cfg.server.as_str(), Some(&b"CA"[..]), "kube-system")
        );
        assert!(a.client_cert_pem.is_none() && a.client_key_pem.is_none() && a.token.is_none());
    }
}
