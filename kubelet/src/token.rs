//! Service account tokens for pods (upstream's `pkg/kubelet/token`): bound tokens from the TokenRequest API
//! (`serviceaccounts/<name>/token`), cached per service account, namespace, audiences, expiration and bound pod,
//! and requested anew when older than 80% of their lifetime or 24 hours (less a jitter of up to 10 seconds), or
//! when the clock went back before their issue. A failed refresh keeps the cached token while it is valid.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use client::Client;
use http::Method;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

/// Tokens are refreshed at the latest this long after their issue.
const MAX_TTL: SignedDuration = SignedDuration::from_hours(24);
/// Expired tokens leave the cache this often.
const GC_PERIOD: Duration = Duration::from_secs(60);
/// The refresh deadlines are moved earlier by up to this much.
const MAX_JITTER_SECS: f64 = 10.0;

/// What a projected `serviceAccountToken` source asks for (a TokenRequest's spec, bound to the pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub namespace: String,
    pub service_account: String,
    /// Empty: the API's default audiences.
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    pub pod_name: String,
    pub pod_uid: String,
}

impl TokenRequest {
    /// The cache key: nothing confidential, safe to log.
    fn key(&self) -> String {
        format!(
            "{:?}/{:?}/{:?}/{}/Pod/v1/{:?}/{:?}",
            self.service_account, self.namespace, self.audiences, self.expiration_seconds, self.pod_name, self.pod_uid
        )
    }

    /// The TokenRequest object sent, as upstream's kubelet builds it.
    pub fn body(&self) -> Value {
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": self.audiences,
                "expirationSeconds": self.expiration_seconds,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": self.pod_name, "uid": self.pod_uid},
            },
        })
    }
}

/// A token the API issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub token: String,
    pub expiration: Timestamp,
    /// The lifetime the API granted (the answer's `spec.expirationSeconds`).
    pub expiration_seconds: i64,
    pub pod_uid: String,
}

impl Token {
    fn expired(&self, now: Timestamp) -> bool {
        now > self.expiration
    }

    /// Upstream's `requiresRefresh`: past 24 hours after the issue, within 20% of the lifetime of the expiry
    /// (both less `jitter`), or the clock before the issue time.
    pub fn requires_refresh(&self, now: Timestamp, jitter: SignedDuration) -> bool {
        let issued = self.expiration - SignedDuration::from_secs(self.expiration_seconds);
        if now > issued + (MAX_TTL - jitter) {
            return true;
        }
        if now > self.expiration - SignedDuration::from_secs(self.expiration_seconds * 20 / 100) - jitter {
            return true;
        }
        now < issued
    }
}

/// A whole number of seconds in [0, 10), as upstream's `time.Duration(rand.Float64()*maxJitter.Seconds())`.
fn jitter() -> SignedDuration {
    let r = (uuid::Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0;
    SignedDuration::from_secs((r * MAX_JITTER_SECS) as i64)
}

/// The kubelet's service account tokens.
pub struct TokenManager {
    client: Option<Client>,
    cache: Mutex<HashMap<String, Token>>,
    last_gc: Mutex<Instant>,
}

impl TokenManager {
    /// A manager asking through `client` (None: a kubelet without an apiserver, which cannot have tokens).
    pub fn new(client: Option<Client>) -> Self {
        TokenManager { client, cache: Mutex::default(), last_gc: Mutex::new(Instant::now()) }
    }

    /// The token for `req`: the cached one unless it needs a refresh; else a new one from the API; if that fails,
    /// the cached one while it has not expired.
    pub async fn get_service_account_token(&self, req: &TokenRequest) -> Result<Token, String> {
        self.gc();
        let key = req.key();
        let cached = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned();
        let now = Timestamp::now();
        if let Some(t) = &cached
            && !t.requires_refresh(now, jitter())
        {
            return Ok(t.clone());
        }
        match self.request(req).await {
            Ok(t) => {
                self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(key, t.clone());
                Ok(t)
            }
            Err(e) => match cached {
                None => Err(format!("failed to fetch token: {e}")),
                Some(t) if t.expired(Timestamp::now()) => Err(format!("token {key} expired and refresh failed: {e}")),
                Some(t) => {
                    tracing::error!(cache_key = %key, error = %e, "Couldn't update token");
                    Ok(t)
                }
            },
        }
    }

    /// Forgets the tokens bound to a pod (when it is deleted).
    pub fn delete_service_account_token(&self, pod_uid: &str) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, t| t.pod_uid != pod_uid);
    }

    /// How many tokens are cached.
    pub fn cached(&self) -> usize {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Drops expired tokens, at most once a [`GC_PERIOD`].
    fn gc(&self) {
        let mut last = self.last_gc.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() < GC_PERIOD {
            return;
        }
        *last = Instant::now();
        let now = Timestamp::now();
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, t| !t.expired(now));
    }

    async fn request(&self, req: &TokenRequest) -> Result<Token, String> {
        let Some(client) = &self.client else {
            return Err("cannot use TokenManager when kubelet is in standalone mode".into());
        };
        let path = format!("/api/v1/namespaces/{}/serviceaccounts/{}/token", req.namespace, req.service_account);
        let body = Bytes::from(req.body().to_string());
        let answer = match client.request(Method::POST, &path, Some((body, "application/json"))).await {
            Ok(a) => a,
            Err(e) if e.code() == Some(404) && !token_requests_supported(client).await => {
                return Err("the API server does not have TokenRequest endpoints enabled".into());
            }
            Err(e) => return Err(e.to_string()),
        };
        let token = answer.pointer("/status/token").and_then(Value::as_str).unwrap_or_default();
        let expiration = answer
            .pointer("/status/expirationTimestamp")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<Timestamp>().ok())
            .ok_or("the TokenRequest answer has no status.expirationTimestamp")?;
        let expiration_seconds =
            answer.pointer("/spec/expirationSeconds").and_then(Value::as_i64).unwrap_or(req.expiration_seconds);
        Ok(Token { token: token.to_string(), expiration, expiration_seconds, pod_uid: req.pod_uid.clone() })
    }
}

/// Whether the API lists `serviceaccounts/token` (for a clearer message on a 404).
async fn token_requests_supported(client: &Client) -> bool {
    let Ok(list) = client.request(Method::GET, "/api/v1", None).await else { return false };
    list.get("resources")
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|r| r["name"] == "serviceaccounts/token"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_apiserver::{FakeApiserver, json as reply};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn token(expiration: Timestamp, seconds: i64) -> Token {
        Token { token: "t".into(), expiration, expiration_seconds: seconds, pod_uid: "u".into() }
    }

    /// Upstream's TestRequiresRefresh cases: 80% of the lifetime, 24 hours, the clock before the issue.
    #[test]
    fn refresh_rule() {
        let start: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let none = SignedDuration::ZERO;
        let hour = token(start + SignedDuration::from_hours(1), 3600);
        assert!(!hour.requires_refresh(start + SignedDuration::from_mins(47), none), "79% of its lifetime");
        assert!(hour.requires_refresh(start + SignedDuration::from_mins(49), none), "81% of its lifetime");
        let near = start + SignedDuration::from_mins(47) + SignedDuration::from_secs(55);
        assert!(!hour.requires_refresh(near, none));
        assert!(hour.requires_refresh(near, SignedDuration::from_secs(10)), "the jitter moves the deadline earlier");
        assert!(hour.requires_refresh(start - SignedDuration::from_secs(1), none), "the clock went back");
        // A token of two days is refreshed after 24 hours, before 80% of its lifetime.
        let days = token(start + SignedDuration::from_hours(48), 48 * 3600);
        assert!(!days.requires_refresh(start + SignedDuration::from_hours(23), none));
        assert!(days.requires_refresh(start + SignedDuration::from_hours(24) + SignedDuration::from_secs(1), none));
        let early = start + SignedDuration::from_hours(24) - SignedDuration::from_secs(5);
        assert!(days.requires_refresh(early, SignedDuration::from_secs(9)), "the jitter moves the deadline earlier");
    }

    fn request(uid: &str) -> TokenRequest {
        TokenRequest {
            namespace: "ns".into(),
            service_account: "sa".into(),
            audiences: vec![],
            expiration_seconds: 3607,
            pod_name: "p".into(),
            pod_uid: uid.into(),
        }
    }

    /// The request has upstream's shape; a cached token is reused until it needs a refresh; tokens of other
    /// pods or audiences are separate; a failed refresh keeps a valid token, and deleting the pod forgets it.
    #[tokio::test]
    async fn tokens_are_requested_cached_and_refreshed() {
        let issued = Arc::new(AtomicUsize::new(0));
        // How long the issued tokens have left (their lifetime is the one asked for).
        let remaining = Arc::new(std::sync::atomic::AtomicI64::new(3607));
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (i2, l2, f2) = (issued.clone(), remaining.clone(), fail.clone());
        let fake = FakeApiserver::start(move |seen| {
            if f2.load(Ordering::SeqCst) {
                return reply(500, json!({"kind": "Status", "code": 500, "message": "etcd is down"}));
            }
            let n = i2.fetch_add(1, Ordering::SeqCst);
            let mut answer = seen.body.clone();
            let exp = Timestamp::now() + SignedDuration::from_secs(l2.load(Ordering::SeqCst));
            answer["status"] = json!({"token": format!("token-{n}"), "expirationTimestamp": exp.to_string()});
            reply(201, answer)
        })
        .await;
        let tokens = TokenManager::new(Some(fake.client()));
        let t = tokens.get_service_account_token(&request("u1")).await.unwrap();
        assert_eq!(t.token, "token-0");
        let sent = fake.seen();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].method, "POST");
        assert_eq!(sent[0].path, "/api/v1/namespaces/ns/serviceaccounts/sa/token");
        assert_eq!(
            sent[0].body,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {
                "audiences": [], "expirationSeconds": 3607,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "u1"}}})
        );
        assert_eq!(tokens.get_service_account_token(&request("u1")).await.unwrap().token, "token-0", "cached");
        assert_eq!(tokens.get_service_account_token(&request("u2")).await.unwrap().token, "token-1", "another pod");
        let mut aud = request("u1");
        aud.audiences = vec!["vault".into()];
        assert_eq!(tokens.get_service_account_token(&aud).await.unwrap().token, "token-2", "another audience");
        assert_eq!(fake.seen().last().unwrap().body["spec"]["audiences"], json!(["vault"]));
        // Tokens of an hour that expire in a minute (issued 59 minutes ago): within 20% of their expiry, every
        // call refreshes them.
        remaining.store(60, Ordering::SeqCst);
        let mut short = request("u3");
        short.expiration_seconds = 3600;
        assert_eq!(tokens.get_service_account_token(&short).await.unwrap().token, "token-3");
        assert_eq!(tokens.get_service_account_token(&short).await.unwrap().token, "token-4", "refreshed");
        // The refresh fails: the valid token stays.
        fail.store(true, Ordering::SeqCst);
        assert_eq!(tokens.get_service_account_token(&short).await.unwrap().token, "token-4");
        let err = tokens.get_service_account_token(&request("u9")).await.unwrap_err();
        assert!(err.starts_with("failed to fetch token: "), "{err}");
        assert!(err.contains("etcd is down"), "{err}");
        assert_eq!(tokens.cached(), 4);
        tokens.delete_service_account_token("u1");
        assert_eq!(tokens.cached(), 2, "both tokens of u1 are gone");
        assert_eq!(issued.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_standalone_kubelet_has_no_tokens() {
        let err = TokenManager::new(None).get_service_account_token(&request("u")).await.unwrap_err();
        assert_eq!(err, "failed to fetch token: cannot use TokenManager when kubelet is in standalone mode");
    }
}
