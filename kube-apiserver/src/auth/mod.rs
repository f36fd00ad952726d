//! Authentication, as upstream's union of authenticators: front proxies' request headers ([`request_header`]),
//! x509 client certificates (verified against `--client-ca-file`), static tokens (`--token-auth-file`), service-account tokens, bootstrap tokens, and anonymous
//! requests (`--anonymous-auth`); then impersonation.

pub mod bootstrap_token;
pub mod impersonation;
pub mod keys;
pub mod request_header;
pub mod serviceaccount;
pub mod token_file;

use std::collections::HashMap;

use api_types::ApiError;
use api_types::resources::find;
use serde_json::Value;

use crate::registry::Registry;
use serviceaccount::{TokenAuthority, TokenClaims, TokenError};

/// Who is asking, as upstream's `user.Info`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// Extra attributes (`authentication.kubernetes.io/pod-name`, credential ids, scopes...).
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn anonymous() -> Self {
        UserInfo {
            username: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
            extra: Default::default(),
        }
    }

    pub fn authenticated(username: String, uid: String, mut groups: Vec<String>) -> Self {
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        UserInfo { username, uid, groups, extra: Default::default() }
    }
}

/// Every way a request may prove who it is.
#[derive(Default)]
pub struct Authenticator {
    pub tokens: HashMap<String, UserInfo>,
    pub anonymous: bool,
    /// Service-account tokens (`--service-account-key-file`, `--service-account-issuer`).
    pub service_accounts: Option<TokenAuthority>,
    /// `--enable-bootstrap-token-auth`.
    pub bootstrap_tokens: bool,
}

/// An object from the watch cache (storage when the cache does not have it yet).
pub async fn lookup(registry: &Registry, group: &str, plural: &str, ns: Option<&str>, name: &str) -> Option<Value> {
    let res = find(group, "v1", plural)?;
    if let Ok(cache) = registry.cacher.cache(res).await
        && let Some(obj) = cache.get(&crate::registry::key(res, ns, name))
    {
        return Some((*obj).clone());
    }
    registry.get(res, ns, name).await.ok()
}

impl Authenticator {
    pub fn new(anonymous: bool) -> Self {
        Authenticator { anonymous, ..Default::default() }
    }

    /// Authenticates a request from its verified client certificate identity and Authorization header.
    pub async fn authenticate(
        &self,
        registry: &Registry,
        cert: Option<&(String, Vec<String>)>,
        authorization: Option<&str>,
    ) -> Result<UserInfo, ApiError> {
        if let Some((cn, orgs)) = cert {
            return Ok(UserInfo::authenticated(cn.clone(), String::new(), orgs.clone()));
        }
        if let Some(header) = authorization {
            let token = header.strip_prefix("Bearer ").map(str::trim).filter(|t| !t.is_empty());
            // A token nobody issued is refused, even when anonymous requests are allowed (as upstream).
            let Some(token) = token else { return Err(ApiError::unauthorized()) };
            return self
                .authenticate_token(registry, token, None)
                .await
                .map(|(u, _)| u)
                .map_err(|_| ApiError::unauthorized());
        }
        if self.anonymous { Ok(UserInfo::anonymous()) } else { Err(ApiError::unauthorized()) }
    }

    /// A bearer token's user and the audiences it was accepted for (TokenReview reports both); the error is the
    /// reason TokenReview gives.
    pub async fn authenticate_token(
        &self,
        registry: &Registry,
        token: &str,
        audiences: Option<&[String]>,
    ) -> Result<(UserInfo, Vec<String>), String> {
        let default_audiences = || match &self.service_accounts {
            Some(sa) => sa.api_audiences.clone(),
            None => vec![],
        };
        let accepted = |auds: Vec<String>| match audiences {
            Some(wanted) => wanted.to_vec(),
            None => auds,
        };
        if let Some(u) = self.tokens.get(token) {
            return Ok((u.clone(), accepted(default_audiences())));
        }
        if let Some(sa) = &self.service_accounts {
            match sa.verify(token, audiences) {
                Ok(claims) => {
                    check_bound(registry, &claims, token).await?;
                    let auds = match audiences {
                        Some(w) => claims.audiences.iter().filter(|a| w.contains(a)).cloned().collect(),
                        None => default_audiences(),
                    };
                    return Ok((claims.user(), auds));
                }
                Err(TokenError::NotMine) => {}
                Err(TokenError::Invalid(why)) => return Err(why),
            }
        }
        if self.bootstrap_tokens
            && let Some((id, _)) = bootstrap_token::parse(token)
        {
            let name = format!("{}{id}", bootstrap_token::SECRET_PREFIX);
            let secret = lookup(registry, "", "secrets", Some("kube-system"), &name).await;
            if let Some(u) = bootstrap_token::authenticate(token, secret.as_ref()) {
                return Ok((u, accepted(default_audiences())));
            }
            return Err("invalid bootstrap token".into());
        }
        Err("invalid bearer token".into())
    }
}

/// Upstream's validator checks: the service account (and the pod, secret or node the token is bound to) still
/// exists, with the uid the token names, and is not being deleted; a legacy token's Secret still holds it.
async fn check_bound(registry: &Registry, c: &TokenClaims, token: &str) -> Result<(), String> {
    let ns = Some(c.namespace.as_str());
    let sa = lookup(registry, "", "serviceaccounts", ns, &c.service_account)
        .await
        .ok_or_else(|| format!("serviceaccounts \"{}\" not found", c.service_account))?;
    let uid = |o: &Value| o.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
    let deleting = |o: &Value| o.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null());
    if !c.service_account_uid.is_empty() && uid(&sa) != c.service_account_uid {
        return Err(format!("service account UID ({}) does not match claim ({})", uid(&sa), c.service_account_uid));
    }
    if deleting(&sa) {
        return Err("service account has been deleted".into());
    }
    if let Some(secret) = &c.legacy_secret {
        let s = lookup(registry, "", "secrets", ns, secret).await.ok_or("token has been invalidated")?;
        if bootstrap_token::secret_data(&s, "token").as_deref() != Some(token) || deleting(&s) {
            return Err("token does not match server's copy".into());
        }
        return Ok(());
    }
    for (b, plural, scoped) in [(&c.pod, "pods", true), (&c.secret, "secrets", true), (&c.node, "nodes", false)] {
        let Some(b) = b else { continue };
        let obj = lookup(registry, "", plural, if scoped { ns } else { None }, &b.name).await;
        let what = b.kind.to_ascii_lowercase();
        // A node binding only comes with pod bindings (the pod's node) unless the token was bound to the node.
        let Some(obj) = obj else {
            return Err(format!("{what} \"{}\" not found", b.name));
        };
        if !b.uid.is_empty() && uid(&obj) != b.uid {
            return Err(format!("{} UID ({}) does not match claim ({})", b.kind, uid(&obj), b.uid));
        }
        if deleting(&obj) && plural != "pods" {
            return Err(format!("{what} has been deleted"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_come_first_and_unknown_tokens_are_refused() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store =
                crate::storage::sqlite::SqliteStore::open(crate::storage::sqlite::SqliteConfig::in_dir(dir.path()))
                    .unwrap();
            let registry = Registry::new(std::sync::Arc::new(crate::storage::Backend::Sqlite(store)));
            let mut a = Authenticator::new(true);
            a.tokens.insert("secret1".into(), UserInfo::authenticated("alice".into(), "1".into(), vec![]));
            assert_eq!(a.authenticate(&registry, None, Some("Bearer secret1")).await.unwrap().username, "alice");
            assert_eq!(a.authenticate(&registry, None, Some("Bearer nope")).await.unwrap_err().code, 401);
            assert_eq!(a.authenticate(&registry, None, None).await.unwrap().username, "system:anonymous");
            let cert = ("admin".to_string(), vec!["system:masters".to_string()]);
            assert_eq!(a.authenticate(&registry, Some(&cert), Some("Bearer secret1")).await.unwrap().username, "admin");
            assert_eq!(Authenticator::new(false).authenticate(&registry, None, None).await.unwrap_err().code, 401);
        });
    }
}
