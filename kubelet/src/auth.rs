//! Who may use the kubelet API (upstream's `pkg/kubelet/server/auth.go` with the delegating authenticator and
//! authorizer of `k8s.io/apiserver`): a client certificate verified against `authentication.x509.clientCAFile`
//! (user = common name, groups = organizations), else a bearer token checked with a TokenReview (cached for
//! `authentication.webhook.cacheTTL`), else — when `authentication.anonymous.enabled` and no credential failed —
//! `system:anonymous`. Requests are then authorized as `nodes/<subresource>` of this node
//! ([`request_attributes`]) by `authorization.mode`: AlwaysAllow, or Webhook (a SubjectAccessReview, allowed answers
//! cached for `cacheAuthorizedTTL`, others for `cacheUnauthorizedTTL`).

use std::time::Duration;

use base64::Engine;
use client::Client;
use http::{HeaderMap, Method, header};
use serde_json::{Value, json};

use crate::options::{AuthConfig, AuthorizationMode};

pub use runtime::delegating_auth::{Decision, SubjectAccessReviewer, TokenReviewer, UserInfo, subject_of};

/// The bearer token of a request: `Authorization: Bearer <token>`, or the WebSocket subprotocol
/// `base64url.bearer.authorization.k8s.io.<token>` of an upgrade (browsers cannot set headers).
fn bearer_token(headers: &HeaderMap) -> Result<Option<String>, String> {
    if let Some(auth) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let mut parts = auth.trim().splitn(3, ' ');
        if let (Some(scheme), Some(token)) = (parts.next(), parts.next())
            && scheme.eq_ignore_ascii_case("bearer")
            && !token.is_empty()
        {
            return Ok(Some(token.to_string()));
        }
    }
    let upgrade =
        headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        return Ok(None);
    }
    const PREFIX: &str = "base64url.bearer.authorization.k8s.io.";
    for value in headers.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter().filter_map(|v| v.to_str().ok()) {
        for proto in value.split(',').map(str::trim) {
            if let Some(encoded) = proto.strip_prefix(PREFIX) {
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(encoded)
                    .map_err(|_| "invalid base64.bearer.authorization token encoding".to_string())?;
                let token =
                    String::from_utf8(raw).map_err(|_| "invalid base64.bearer.authorization token".to_string())?;
                if token.is_empty() {
                    return Err("invalid bearer token".into());
                }
                return Ok(Some(token));
            }
        }
    }
    Ok(None)
}

/// The kubelet's authenticator.
pub struct Authenticator {
    /// Whether client certificates count (a client CA is configured; the TLS handshake verified them).
    x509: bool,
    webhook: Option<TokenReviewer>,
    anonymous: bool,
}

impl Authenticator {
    pub fn new(x509: bool, webhook: Option<TokenReviewer>, anonymous: bool) -> Self {
        Authenticator { x509, webhook, anonymous }
    }

    /// The user of a request: Ok(None) means no credential (401 unless anonymous), Err a credential that failed.
    /// `peer_cert` is the verified client certificate of the connection.
    pub async fn authenticate(
        &self,
        peer_cert: Option<&[u8]>,
        headers: &HeaderMap,
    ) -> Result<Option<UserInfo>, String> {
        let mut errors = Vec::new();
        let mut user = None;
        if self.x509
            && let Some(der) = peer_cert
        {
            match subject_of(der) {
                Some((cn, orgs)) if !cn.is_empty() => {
                    user = Some(UserInfo { username: cn, groups: orgs, ..Default::default() });
                }
                Some(_) => {}
                None => errors.push("unable to parse the client certificate".to_string()),
            }
        }
        if user.is_none()
            && let Some(webhook) = &self.webhook
        {
            match bearer_token(headers) {
                Ok(Some(token)) => match webhook.authenticate_token(&token).await {
                    Ok(Some(u)) => user = Some(u),
                    Ok(None) => errors.push("invalid bearer token".into()),
                    Err(e) => errors.push(e),
                },
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        match user {
            Some(mut u) => {
                if !u.groups.iter().any(|g| g == "system:authenticated") {
                    u.groups.push("system:authenticated".into());
                }
                Ok(Some(u))
            }
            None if !errors.is_empty() => Err(errors.join(", ")),
            None if self.anonymous => Ok(Some(UserInfo {
                username: "system:anonymous".into(),
                groups: vec!["system:unauthenticated".into()],
                ..Default::default()
            })),
            None => Ok(None),
        }
    }
}

/// What a request asks to do: `verb` on `nodes/<subresource>` named `name` (upstream's AttributesRecord of a
/// kubelet request: API version v1, the core group, no namespace, a resource request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub user: UserInfo,
    pub verb: String,
    pub subresource: String,
    pub name: String,
    pub path: String,
}

/// Whether `subpath` is `path` or below it (a trailing slash of `path` ignored).
fn is_subpath(subpath: &str, path: &str) -> bool {
    let path = path.trim_end_matches('/');
    subpath == path || (subpath.starts_with(path) && subpath.as_bytes().get(path.len()) == Some(&b'/'))
}

/// Upstream's `GetRequestAttributes` with fine-grained kubelet authorization (KubeletFineGrainedAuthz, on by
/// default in 1.33): `/stats`, `/metrics`, `/logs` and `/checkpoint` are `nodes/stats`, `nodes/metrics`,
/// `nodes/log` and `nodes/checkpoint`; `/pods`, `/runningpods/`, `/healthz` and `/configz` are first
/// `nodes/pods`, `nodes/healthz` or `nodes/configz`, then `nodes/proxy`; everything else `nodes/proxy`. Any of
/// the attributes allowed allows the request.
pub fn request_attributes(user: &UserInfo, method: &Method, path: &str, node: &str) -> Vec<Attributes> {
    let verb = match *method {
        Method::POST => "create",
        Method::GET => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    };
    let subresources: &[&str] = if is_subpath(path, "/stats/") {
        &["stats"]
    } else if is_subpath(path, "/metrics") {
        &["metrics"]
    } else if is_subpath(path, "/logs/") {
        &["log"]
    } else if is_subpath(path, "/checkpoint/") {
        &["checkpoint"]
    } else if is_subpath(path, "/pods") || is_subpath(path, "/runningpods/") {
        &["pods", "proxy"]
    } else if is_subpath(path, "/healthz") {
        &["healthz", "proxy"]
    } else if is_subpath(path, "/configz") {
        &["configz", "proxy"]
    } else {
        &["proxy"]
    };
    subresources
        .iter()
        .map(|sub| Attributes {
            user: user.clone(),
            verb: verb.to_string(),
            subresource: sub.to_string(),
            name: node.to_string(),
            path: path.to_string(),
        })
        .collect()
}

/// The kubelet's authorizer (`authorization.mode`).
pub enum Authorizer {
    AlwaysAllow,
    /// SubjectAccessReviews, with their answers cached.
    Webhook(Box<SubjectAccessReviewer>),
}

impl Authorizer {
    pub fn webhook(client: Client, allowed_ttl: Duration, denied_ttl: Duration) -> Self {
        Authorizer::Webhook(Box::new(SubjectAccessReviewer::new(client, allowed_ttl, denied_ttl)))
    }

    /// The SubjectAccessReview of the attributes (the body upstream's webhook authorizer sends).
    pub fn review_of(a: &Attributes) -> Value {
        let mut attributes = json!({"verb": a.verb, "version": "v1", "resource": "nodes", "name": a.name});
        if !a.subresource.is_empty() {
            attributes["subresource"] = json!(a.subresource);
        }
        if a.verb.is_empty() {
            attributes.as_object_mut().map(|m| m.remove("verb"));
        }
        let spec = SubjectAccessReviewer::spec(&a.user, ("resourceAttributes", attributes));
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec})
    }

    /// The decision and its reason; Err when the webhook could not be asked.
    pub async fn authorize(&self, a: &Attributes) -> Result<(Decision, String), String> {
        let Authorizer::Webhook(w) = self else {
            return Ok((Decision::Allow, String::new()));
        };
        w.authorize(Self::review_of(a)["spec"].take()).await
    }
}

/// What the auth filter decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Serve the request as this user.
    Allowed(UserInfo),
    /// Answer with this status and plain-text body.
    Refused(u16, String),
}

/// Authentication, attributes and authorization together (upstream's KubeletAuth and its filter).
pub struct KubeletAuth {
    pub authenticator: Authenticator,
    pub authorizer: Authorizer,
    pub node_name: String,
}

impl KubeletAuth {
    /// From the kubelet's configuration; the webhooks ask through `client`.
    pub fn new(cfg: &AuthConfig, node_name: &str, client: Option<Client>) -> Result<Self, String> {
        let webhook = match (cfg.webhook, &client) {
            (false, _) => None,
            (true, Some(c)) => Some(TokenReviewer::new(c.clone(), cfg.webhook_cache_ttl)),
            (true, None) => return Err("no client provided, cannot use webhook authentication".into()),
        };
        let authorizer = match (cfg.authorization_mode, client) {
            (AuthorizationMode::AlwaysAllow, _) => Authorizer::AlwaysAllow,
            (AuthorizationMode::Webhook, Some(c)) => {
                Authorizer::webhook(c, cfg.cache_authorized_ttl, cfg.cache_unauthorized_ttl)
            }
            (AuthorizationMode::Webhook, None) => {
                return Err("no client provided, cannot use webhook authorization".into());
            }
        };
        Ok(KubeletAuth {
            authenticator: Authenticator::new(cfg.client_ca_file.is_some(), webhook, cfg.anonymous),
            authorizer,
            node_name: node_name.to_string(),
        })
    }

    /// Upstream's auth filter: 401 `Unauthorized` without a user; a 500 when authorization fails; the request
    /// allowed by any of its attributes, else 403 `Forbidden (user=..., verb=..., resource=nodes,
    /// subresource(s)=[...])`.
    pub async fn check(&self, peer_cert: Option<&[u8]>, method: &Method, path: &str, headers: &HeaderMap) -> Verdict {
        let user = match self.authenticator.authenticate(peer_cert, headers).await {
            Ok(Some(u)) => u,
            Ok(None) => return Verdict::Refused(401, "Unauthorized".into()),
            Err(e) => {
                tracing::error!(error = %e, "Unable to authenticate the request due to an error");
                return Verdict::Refused(401, "Unauthorized".into());
            }
        };
        let attrs = request_attributes(&user, method, path, &self.node_name);
        for a in &attrs {
            match self.authorizer.authorize(a).await {
                Ok((Decision::Allow, _)) => return Verdict::Allowed(user),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, user = %user.username, verb = %a.verb, subresource = %a.subresource, "Authorization error");
                    return Verdict::Refused(
                        500,
                        format!(
                            "Authorization error (user={}, verb={}, resource=nodes, subresource={})",
                            user.username, a.verb, a.subresource
                        ),
                    );
                }
            }
        }
        let subs: Vec<&str> = attrs.iter().map(|a| a.subresource.as_str()).collect();
        let verb = attrs.first().map(|a| a.verb.as_str()).unwrap_or_default();
        tracing::debug!(user = %user.username, verb, subresources = ?subs, "Forbidden");
        Verdict::Refused(
            403,
            format!(
                "Forbidden (user={}, verb={verb}, resource=nodes, subresource(s)=[{}])\n",
                user.username,
                subs.join(" ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_apiserver::{FakeApiserver, json as reply};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn user(name: &str) -> UserInfo {
        UserInfo { username: name.into(), ..Default::default() }
    }

    fn subs(method: Method, path: &str) -> Vec<(String, String)> {
        request_attributes(&user("u"), &method, path, "n1").into_iter().map(|a| (a.verb, a.subresource)).collect()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    /// Upstream's TestAuthFilters/GetRequestAttributes table with fine-grained authorization on.
    #[test]
    fn request_attributes_as_upstream() {
        assert_eq!(subs(Method::GET, "/stats/summary"), pairs(&[("get", "stats")]));
        assert_eq!(subs(Method::GET, "/stats"), pairs(&[("get", "stats")]));
        assert_eq!(subs(Method::GET, "/metrics"), pairs(&[("get", "metrics")]));
        assert_eq!(subs(Method::GET, "/metrics/cadvisor"), pairs(&[("get", "metrics")]));
        assert_eq!(subs(Method::GET, "/metricsfoo"), pairs(&[("get", "proxy")]), "not below /metrics");
        assert_eq!(subs(Method::GET, "/logs/"), pairs(&[("get", "log")]));
        assert_eq!(subs(Method::GET, "/logs/syslog"), pairs(&[("get", "log")]));
        assert_eq!(subs(Method::POST, "/checkpoint/ns/p/c"), pairs(&[("create", "checkpoint")]));
        assert_eq!(subs(Method::GET, "/pods"), pairs(&[("get", "pods"), ("get", "proxy")]));
        assert_eq!(subs(Method::GET, "/pods/"), pairs(&[("get", "pods"), ("get", "proxy")]));
        assert_eq!(subs(Method::GET, "/runningpods/"), pairs(&[("get", "pods"), ("get", "proxy")]));
        assert_eq!(subs(Method::GET, "/healthz"), pairs(&[("get", "healthz"), ("get", "proxy")]));
        assert_eq!(subs(Method::GET, "/healthz/ping"), pairs(&[("get", "healthz"), ("get", "proxy")]));
        assert_eq!(subs(Method::GET, "/configz"), pairs(&[("get", "configz"), ("get", "proxy")]));
        assert_eq!(subs(Method::GET, "/spec/"), pairs(&[("get", "proxy")]));
        assert_eq!(subs(Method::POST, "/exec/ns/p/c"), pairs(&[("create", "proxy")]));
        assert_eq!(subs(Method::GET, "/containerLogs/ns/p/c"), pairs(&[("get", "proxy")]));
        assert_eq!(subs(Method::PUT, "/x"), pairs(&[("update", "proxy")]));
        assert_eq!(subs(Method::PATCH, "/x"), pairs(&[("patch", "proxy")]));
        assert_eq!(subs(Method::DELETE, "/x"), pairs(&[("delete", "proxy")]));
        assert_eq!(subs(Method::HEAD, "/x"), pairs(&[("", "proxy")]));
        let a = &request_attributes(&user("u"), &Method::GET, "/pods", "n1")[0];
        assert_eq!((a.name.as_str(), a.path.as_str()), ("n1", "/pods"));
    }

    #[test]
    fn bearer_tokens_from_headers_and_websocket_protocols() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), Ok(None));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&h), Ok(None));
        h.insert(header::AUTHORIZATION, "bearer tok".parse().unwrap());
        assert_eq!(bearer_token(&h), Ok(Some("tok".into())));
        let mut ws = HeaderMap::new();
        ws.insert(header::UPGRADE, "websocket".parse().unwrap());
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("wstoken");
        ws.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            format!("v4.channel.k8s.io, base64url.bearer.authorization.k8s.io.{encoded}").parse().unwrap(),
        );
        assert_eq!(bearer_token(&ws), Ok(Some("wstoken".into())));
        ws.insert(header::SEC_WEBSOCKET_PROTOCOL, "base64url.bearer.authorization.k8s.io.!!".parse().unwrap());
        assert!(bearer_token(&ws).is_err());
    }

    /// The fake answers TokenReviews (token "good" is alice; "broken" an error) and SubjectAccessReviews (alice
    /// may get nodes/stats and nodes/pods; bob is denied everything).
    async fn reviews() -> (FakeApiserver, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let (tr, sar) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (tr2, sar2) = (tr.clone(), sar.clone());
        let fake = FakeApiserver::start(move |seen| match seen.path.as_str() {
            "/apis/authentication.k8s.io/v1/tokenreviews" => {
                tr2.fetch_add(1, Ordering::SeqCst);
                let mut answer = seen.body.clone();
                answer["status"] = match seen.body["spec"]["token"].as_str() {
                    Some("good") => json!({"authenticated": true, "user": {"username": "alice", "uid": "a-1",
                        "groups": ["devs"], "extra": {"scopes": ["x"]}}}),
                    Some("broken") => json!({"authenticated": false, "error": "the token issuer is unreachable"}),
                    _ => json!({"authenticated": false}),
                };
                reply(201, answer)
            }
            "/apis/authorization.k8s.io/v1/subjectaccessreviews" => {
                sar2.fetch_add(1, Ordering::SeqCst);
                let spec = &seen.body["spec"];
                let sub = spec["resourceAttributes"]["subresource"].as_str().unwrap_or_default();
                let mut answer = seen.body.clone();
                answer["status"] = match (spec["user"].as_str(), sub) {
                    (Some("alice"), "stats" | "pods") => json!({"allowed": true, "reason": "RBAC"}),
                    (Some("bob"), _) => json!({"allowed": false, "denied": true, "reason": "no"}),
                    (Some("system:node:n1"), _) => {
                        return reply(500, json!({"kind": "Status", "code": 500, "message": "boom"}));
                    }
                    _ => json!({"allowed": false}),
                };
                reply(201, answer)
            }
            _ => reply(404, json!({})),
        })
        .await;
        (fake, tr, sar)
    }

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
        h
    }

    fn webhook_auth(fake: &FakeApiserver, anonymous: bool) -> KubeletAuth {
        let cfg = AuthConfig {
            client_ca_file: Some("/ca.crt".into()),
            anonymous,
            webhook: true,
            webhook_cache_ttl: Duration::from_secs(120),
            authorization_mode: AuthorizationMode::Webhook,
            cache_authorized_ttl: Duration::from_secs(300),
            cache_unauthorized_ttl: Duration::from_secs(30),
        };
        KubeletAuth::new(&cfg, "n1", Some(fake.client())).unwrap()
    }

    #[tokio::test]
    async fn tokens_are_reviewed_and_requests_authorized_by_subject_access_reviews() {
        let (fake, token_reviews, access_reviews) = reviews().await;
        let auth = webhook_auth(&fake, false);
        let get = Method::GET;
        // No credentials, anonymous off: 401.
        assert_eq!(
            auth.check(None, &get, "/pods", &HeaderMap::new()).await,
            Verdict::Refused(401, "Unauthorized".into())
        );
        // A token the API does not know: 401, not anonymous.
        assert_eq!(auth.check(None, &get, "/pods", &bearer("bad")).await, Verdict::Refused(401, "Unauthorized".into()));
        assert_eq!(
            auth.check(None, &get, "/pods", &bearer("broken")).await,
            Verdict::Refused(401, "Unauthorized".into())
        );
        // alice: /pods allowed through nodes/pods; /stats/summary through nodes/stats.
        let Verdict::Allowed(alice) = auth.check(None, &get, "/pods", &bearer("good")).await else { panic!() };
        assert_eq!(alice.username, "alice");
        assert_eq!(alice.groups, vec!["devs".to_string(), "system:authenticated".into()]);
        assert!(matches!(auth.check(None, &get, "/stats/summary", &bearer("good")).await, Verdict::Allowed(_)));
        // alice may not exec (nodes/proxy, create).
        assert_eq!(
            auth.check(None, &Method::POST, "/exec/ns/p/c", &bearer("good")).await,
            Verdict::Refused(
                403,
                "Forbidden (user=alice, verb=create, resource=nodes, subresource(s)=[proxy])\n".into()
            )
        );
        // The reviews sent: the token as is, the attributes as upstream's webhook authorizer writes them.
        let tr = fake.seen_at("/apis/authentication.k8s.io/v1/tokenreviews");
        assert_eq!(
            tr[0].body,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "bad"}})
        );
        let sar = fake.seen_at("/apis/authorization.k8s.io/v1/subjectaccessreviews");
        assert_eq!(
            sar[0].body,
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
                "resourceAttributes": {"verb": "get", "version": "v1", "resource": "nodes", "subresource": "pods", "name": "n1"},
                "user": "alice", "uid": "a-1", "groups": ["devs", "system:authenticated"], "extra": {"scopes": ["x"]}}})
        );
        // Answers are cached: the token review of "good" and the decisions are not asked again.
        let (t, s) = (token_reviews.load(Ordering::SeqCst), access_reviews.load(Ordering::SeqCst));
        assert!(matches!(auth.check(None, &get, "/pods", &bearer("good")).await, Verdict::Allowed(_)));
        auth.check(None, &Method::POST, "/exec/ns/p/c", &bearer("good")).await;
        auth.check(None, &get, "/pods", &bearer("bad")).await;
        assert_eq!(token_reviews.load(Ordering::SeqCst), t, "token reviews cached, also negative ones");
        assert_eq!(access_reviews.load(Ordering::SeqCst), s, "decisions cached");
        // A client certificate: its CN and O, no token review.
        let (cert, _) = fake.client_cert("bob", &["ops"], Duration::from_secs(600));
        let der = rustls_pemfile::certs(&mut cert.as_bytes()).next().unwrap().unwrap();
        assert_eq!(
            auth.check(Some(&der), &get, "/healthz", &bearer("good")).await,
            Verdict::Refused(
                403,
                "Forbidden (user=bob, verb=get, resource=nodes, subresource(s)=[healthz proxy])\n".into()
            )
        );
        assert_eq!(token_reviews.load(Ordering::SeqCst), t, "the certificate decided");
        let Ok(Some(bob)) = auth.authenticator.authenticate(Some(&der), &HeaderMap::new()).await else { panic!() };
        assert_eq!(bob.groups, vec!["ops".to_string(), "system:authenticated".into()]);
        // The webhook failing: 500 with upstream's text.
        let (node, _) = fake.client_cert("system:node:n1", &["system:nodes"], Duration::from_secs(600));
        let der = rustls_pemfile::certs(&mut node.as_bytes()).next().unwrap().unwrap();
        assert_eq!(
            auth.check(Some(&der), &get, "/metrics", &HeaderMap::new()).await,
            Verdict::Refused(
                500,
                "Authorization error (user=system:node:n1, verb=get, resource=nodes, subresource=metrics)".into()
            )
        );
    }

    #[tokio::test]
    async fn anonymous_requests_when_enabled() {
        let (fake, _, _) = reviews().await;
        let auth = webhook_auth(&fake, true);
        assert_eq!(
            auth.check(None, &Method::GET, "/pods", &HeaderMap::new()).await,
            Verdict::Refused(
                403,
                "Forbidden (user=system:anonymous, verb=get, resource=nodes, subresource(s)=[pods proxy])\n".into()
            )
        );
        let anon = fake.seen_at("/apis/authorization.k8s.io/v1/subjectaccessreviews");
        assert_eq!(anon[0].body["spec"]["groups"], json!(["system:unauthenticated"]));
        // A bad token is not anonymous.
        assert_eq!(
            auth.check(None, &Method::GET, "/pods", &bearer("bad")).await,
            Verdict::Refused(401, "Unauthorized".into())
        );
        // AlwaysAllow without webhooks: anonymous users are let through.
        let open = KubeletAuth::new(&AuthConfig::default(), "n1", None).unwrap();
        assert_eq!(
            open.check(None, &Method::GET, "/pods", &HeaderMap::new()).await,
            Verdict::Allowed(UserInfo {
                username: "system:anonymous".into(),
                groups: vec!["system:unauthenticated".into()],
                ..Default::default()
            })
        );
        let webhook_without_client =
            AuthConfig { authorization_mode: AuthorizationMode::Webhook, ..Default::default() };
        assert_eq!(
            KubeletAuth::new(&webhook_without_client, "n1", None).err().unwrap(),
            "no client provided, cannot use webhook authorization"
        );
    }
}
