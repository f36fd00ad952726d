//! Service-account tokens, as upstream's `pkg/serviceaccount`: bound JWTs issued by TokenRequest (claims `aud`,
//! `exp`, `iat`, `iss`, `jti`, `kubernetes.io` with namespace, service account, pod, secret and node bindings, `nbf`,
//! `sub`) and legacy Secret tokens; verification checks signature, issuer, expiry and audience, then that the
//! service account and the bound object still exist with the uids the token names.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Header, Validation};
use serde_json::{Value, json};

use super::UserInfo;
use super::keys::{PublicKey, SigningKey};

/// The issuer legacy Secret-based tokens carry.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";
/// Upstream's `ExpirationExtensionSeconds`: kube-api-access tokens (3607s) are valid for a year, warning after 3607s.
pub const EXTENDED_EXPIRATION: u64 = 365 * 24 * 3600;
/// The expiration kubelet-managed `kube-api-access-*` volumes ask for; the only one upstream extends.
pub const WARN_ONLY_EXPIRATION: u64 = 3607;

/// The object a token is bound to (`boundObjectRef`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundObject {
    /// Pod, Secret or Node.
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// What a token says about its holder, from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    pub namespace: String,
    pub service_account: String,
    pub service_account_uid: String,
    pub pod: Option<BoundObject>,
    pub secret: Option<BoundObject>,
    pub node: Option<BoundObject>,
    pub audiences: Vec<String>,
    pub jti: String,
    pub expires: u64,
    /// Legacy Secret tokens: the Secret's name (its data must still hold the token).
    pub legacy_secret: Option<String>,
}

impl TokenClaims {
    /// The user a verified token authenticates as, with upstream's extra attributes.
    pub fn user(&self) -> UserInfo {
        let mut u = UserInfo::authenticated(
            format!("system:serviceaccount:{}:{}", self.namespace, self.service_account),
            self.service_account_uid.clone(),
            vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{}", self.namespace)],
        );
        if let Some(p) = &self.pod {
            u.extra.insert("authentication.kubernetes.io/pod-name".into(), vec![p.name.clone()]);
            u.extra.insert("authentication.kubernetes.io/pod-uid".into(), vec![p.uid.clone()]);
        }
        if let Some(n) = &self.node {
            u.extra.insert("authentication.kubernetes.io/node-name".into(), vec![n.name.clone()]);
            u.extra.insert("authentication.kubernetes.io/node-uid".into(), vec![n.uid.clone()]);
        }
        if !self.jti.is_empty() {
            u.extra.insert("authentication.kubernetes.io/credential-id".into(), vec![format!("JTI={}", self.jti)]);
        }
        u
    }
}

/// What a TokenRequest asks for, after defaulting.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub namespace: String,
    pub service_account: String,
    pub service_account_uid: String,
    pub audiences: Vec<String>,
    pub expiration_seconds: u64,
    pub pod: Option<BoundObject>,
    pub secret: Option<BoundObject>,
    pub node: Option<BoundObject>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}

fn bound(b: &BoundObject) -> Value {
    json!({"name": b.name, "uid": b.uid})
}

/// Issues and verifies service-account tokens with the flags' keys.
pub struct TokenAuthority {
    /// `--service-account-issuer`: the first signs, all are accepted.
    pub issuers: Vec<String>,
    /// `--api-audiences` (defaults to the issuers).
    pub api_audiences: Vec<String>,
    pub signing: Option<SigningKey>,
    pub keys: Vec<PublicKey>,
    /// `--service-account-max-token-expiration` (0: no cap).
    pub max_expiration: Duration,
    /// `--service-account-extend-token-expiration`.
    pub extend_expiration: bool,
    /// Verified tokens (signature checked), so a repeated request costs a hash lookup.
    verified: Mutex<HashMap<String, TokenClaims>>,
}

/// Why a token was refused; the text is what TokenReview reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a service-account token (another authenticator may know it).
    #[error("not a service account token")]
    NotMine,
    #[error("{0}")]
    Invalid(String),
}

fn invalid(s: impl Into<String>) -> TokenError {
    TokenError::Invalid(s.into())
}

impl TokenAuthority {
    pub fn new(
        issuers: Vec<String>,
        api_audiences: Vec<String>,
        signing: Option<SigningKey>,
        keys: Vec<PublicKey>,
    ) -> Self {
        let api_audiences = if api_audiences.is_empty() { issuers.clone() } else { api_audiences };
        TokenAuthority {
            issuers,
            api_audiences,
            signing,
            keys,
            max_expiration: Duration::ZERO,
            extend_expiration: true,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Signs a bound token (TokenRequest); returns the token and its expiry (seconds since the epoch).
    pub fn issue(&self, spec: &TokenSpec) -> Result<(String, u64), String> {
        let key = self.signing.as_ref().ok_or("no --service-account-signing-key-file is configured")?;
        let issuer = self.issuers.first().ok_or("no --service-account-issuer is configured")?;
        let iat = now();
        let mut exp_secs = spec.expiration_seconds;
        let mut warn_after = None;
        if !self.max_expiration.is_zero() && exp_secs > self.max_expiration.as_secs() {
            exp_secs = self.max_expiration.as_secs();
        }
        if self.extend_expiration && spec.expiration_seconds == WARN_ONLY_EXPIRATION && spec.pod.is_some() {
            warn_after = Some(iat + exp_secs);
            exp_secs = exp_secs.max(EXTENDED_EXPIRATION);
        }
        let mut k8s = serde_json::Map::new();
        k8s.insert("namespace".into(), json!(spec.namespace));
        if let Some(n) = &spec.node {
            k8s.insert("node".into(), bound(n));
        }
        if let Some(p) = &spec.pod {
            k8s.insert("pod".into(), bound(p));
        }
        if let Some(s) = &spec.secret {
            k8s.insert("secret".into(), bound(s));
        }
        k8s.insert("serviceaccount".into(), json!({"name": spec.service_account, "uid": spec.service_account_uid}));
        if let Some(w) = warn_after {
            k8s.insert("warnafter".into(), json!(w));
        }
        // Keys in alphabetical order, as upstream's JSON of its claims map.
        let claims = json!({
            "aud": spec.audiences,
            "exp": iat + exp_secs,
            "iat": iat,
            "iss": issuer,
            "jti": uuid::Uuid::new_v4().to_string(),
            "kubernetes.io": Value::Object(k8s),
            "nbf": iat,
            "sub": format!("system:serviceaccount:{}:{}", spec.namespace, spec.service_account),
        });
        let mut header = Header::new(key.public.alg);
        header.typ = None;
        header.kid = Some(key.public.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|e| format!("signing: {e}"))?;
        Ok((token, iat + exp_secs))
    }

    /// Verifies signature, issuer, time and audience (`audiences`: the TokenReview's, else `--api-audiences`);
    /// the bound objects are checked by the caller against storage.
    pub fn verify(&self, token: &str, audiences: Option<&[String]>) -> Result<TokenClaims, TokenError> {
        let cached = self.verified.lock().unwrap_or_else(|e| e.into_inner()).get(token).cloned();
        let claims = match cached {
            Some(c) => c,
            None => {
                let c = self.verify_signature(token)?;
                let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
                if cache.len() > 4096 {
                    let t = now();
                    cache.retain(|_, c| c.expires > t);
                    if cache.len() > 4096 {
                        cache.clear();
                    }
                }
                cache.insert(token.to_string(), c.clone());
                c
            }
        };
        if claims.expires != 0 && now() >= claims.expires {
            return Err(invalid("service account token has expired"));
        }
        let wanted = audiences.unwrap_or(&self.api_audiences);
        if claims.legacy_secret.is_none() && !claims.audiences.iter().any(|a| wanted.contains(a)) {
            return Err(invalid("token audiences is invalid for the target audiences"));
        }
        Ok(claims)
    }

    fn verify_signature(&self, token: &str) -> Result<TokenClaims, TokenError> {
        if token.split('.').count() != 3 {
            return Err(TokenError::NotMine);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::NotMine)?;
        let unverified = unverified_claims(token).ok_or(TokenError::NotMine)?;
        let iss = unverified.get("iss").and_then(Value::as_str).unwrap_or_default();
        let legacy = iss == LEGACY_ISSUER;
        if !legacy && !self.issuers.iter().any(|i| i == iss) {
            return Err(TokenError::NotMine);
        }
        let mut validation = Validation::new(header.alg);
        validation.validate_aud = false;
        validation.validate_exp = !legacy;
        validation.validate_nbf = !legacy;
        validation.leeway = 0;
        validation.required_spec_claims.clear();
        let candidates =
            self.keys.iter().filter(|k| k.alg == header.alg && header.kid.as_ref().is_none_or(|kid| *kid == k.kid));
        let mut expired = false;
        let mut verified = None;
        for k in candidates {
            match jsonwebtoken::decode::<Value>(token, &k.decoding, &validation) {
                Ok(data) => {
                    verified = Some(data.claims);
                    break;
                }
                Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => expired = true,
                Err(_) => {}
            }
        }
        let claims = match verified {
            Some(c) => c,
            None if expired => return Err(invalid("service account token has expired")),
            None => return Err(invalid("square/go-jose: error in cryptographic primitive")),
        };
        if legacy {
            return legacy_claims(&claims);
        }
        let k8s = claims.get("kubernetes.io").ok_or_else(|| invalid("service account token claims missing"))?;
        let obj = |field: &str| -> Option<BoundObject> {
            let v = k8s.get(field)?;
            Some(BoundObject {
                kind: field.into(),
                name: v.get("name")?.as_str()?.to_string(),
                uid: v.get("uid").and_then(Value::as_str).unwrap_or_default().to_string(),
            })
        };
        let sa = obj("serviceaccount").ok_or_else(|| invalid("service account token claims missing serviceaccount"))?;
        let audiences = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(String::from).collect(),
            _ => vec![],
        };
        Ok(TokenClaims {
            namespace: k8s.get("namespace").and_then(Value::as_str).unwrap_or_default().to_string(),
            service_account: sa.name,
            service_account_uid: sa.uid,
            pod: obj("pod").map(|b| BoundObject { kind: "Pod".into(), ..b }),
            secret: obj("secret").map(|b| BoundObject { kind: "Secret".into(), ..b }),
            node: obj("node").map(|b| BoundObject { kind: "Node".into(), ..b }),
            audiences,
            jti: claims.get("jti").and_then(Value::as_str).unwrap_or_default().to_string(),
            expires: claims.get("exp").and_then(Value::as_u64).unwrap_or(0),
            legacy_secret: None,
        })
    }
}

/// The claims of a token without verifying it (to pick the validator by issuer).
fn unverified_claims(token: &str) -> Option<Value> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Upstream's legacy claims (`kubernetes.io/serviceaccount/...`) of a Secret-based token.
fn legacy_claims(c: &Value) -> Result<TokenClaims, TokenError> {
    let s = |k: &str| c.get(format!("kubernetes.io/serviceaccount/{k}")).and_then(Value::as_str).map(String::from);
    let (Some(namespace), Some(secret), Some(sa), Some(uid)) =
        (s("namespace"), s("secret.name"), s("service-account.name"), s("service-account.uid"))
    else {
        return Err(invalid("service account token claims missing"));
    };
    Ok(TokenClaims {
        namespace,
        service_account: sa,
        service_account_uid: uid,
        pod: None,
        secret: None,
        node: None,
        audiences: vec![],
        jti: String::new(),
        expires: 0,
        legacy_secret: Some(secret),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::{load_public_keys, load_signing_key, tests::openssl_key};

    fn spec(exp: u64) -> TokenSpec {
        TokenSpec {
            namespace: "ns1".into(),
            service_account: "robot".into(),
            service_account_uid: "sa-uid".into(),
            audiences: vec!["https://kubernetes.default.svc.cluster.local".into()],
            expiration_seconds: exp,
            pod: Some(BoundObject { kind: "Pod".into(), name: "p".into(), uid: "pod-uid".into() }),
            secret: None,
            node: Some(BoundObject { kind: "Node".into(), name: "n1".into(), uid: "node-uid".into() }),
        }
    }

    fn authority(dir: &std::path::Path, form: &str) -> TokenAuthority {
        let key = openssl_key(dir, &format!("{form}.key"), form);
        let signing = load_signing_key(&key).unwrap();
        let keys = load_public_keys(&key).unwrap();
        TokenAuthority::new(vec!["https://kubernetes.default.svc.cluster.local".into()], vec![], Some(signing), keys)
    }

    #[test]
    fn issue_and_verify_rs256_and_es256_with_upstream_claims() {
        let dir = tempfile::tempdir().unwrap();
        for form in ["rsa", "ec"] {
            let a = authority(dir.path(), form);
            let (token, exp) = a.issue(&spec(3600)).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.kid.as_deref(), Some(a.keys[0].kid.as_str()));
            assert_eq!(header.typ, None);
            let raw = unverified_claims(&token).unwrap();
            let keys: Vec<&str> = raw.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys, ["aud", "exp", "iat", "iss", "jti", "kubernetes.io", "nbf", "sub"]);
            assert_eq!(raw["sub"], "system:serviceaccount:ns1:robot");
            assert_eq!(raw["kubernetes.io"]["pod"], json!({"name": "p", "uid": "pod-uid"}));
            assert_eq!(raw["kubernetes.io"]["node"], json!({"name": "n1", "uid": "node-uid"}));
            assert_eq!(raw["exp"].as_u64().unwrap() - raw["iat"].as_u64().unwrap(), 3600);
            let c = a.verify(&token, None).unwrap();
            assert_eq!(c.expires, exp);
            let u = c.user();
            assert_eq!(u.username, "system:serviceaccount:ns1:robot");
            assert_eq!(u.uid, "sa-uid");
            assert_eq!(u.groups, ["system:serviceaccounts", "system:serviceaccounts:ns1", "system:authenticated"]);
            assert_eq!(u.extra["authentication.kubernetes.io/pod-name"], ["p"]);
            assert_eq!(u.extra["authentication.kubernetes.io/node-uid"], ["node-uid"]);
            assert!(u.extra["authentication.kubernetes.io/credential-id"][0].starts_with("JTI="));
        }
    }

    #[test]
    fn refuses_wrong_audience_issuer_key_and_expired_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let a = authority(dir.path(), "rsa");
        let (token, _) = a.issue(&spec(3600)).unwrap();
        assert_eq!(
            a.verify(&token, Some(&["other".to_string()])).unwrap_err(),
            invalid("token audiences is invalid for the target audiences")
        );
        // Another issuer's token is not ours to judge.
        let mut other = authority(dir.path(), "ec");
        other.issuers = vec!["https://elsewhere".into()];
        let (foreign, _) = other.issue(&spec(3600)).unwrap();
        assert_eq!(a.verify(&foreign, None).unwrap_err(), TokenError::NotMine);
        // Our issuer, a key we do not hold.
        other.issuers = a.issuers.clone();
        let (forged, _) = other.issue(&spec(3600)).unwrap();
        assert!(matches!(a.verify(&forged, None).unwrap_err(), TokenError::Invalid(_)));
        assert_eq!(a.verify("not-a-jwt", None).unwrap_err(), TokenError::NotMine);
        // Expired: signed by our key with exp in the past.
        let key = a.signing.as_ref().unwrap();
        let mut header = Header::new(key.public.alg);
        header.kid = Some(key.public.kid.clone());
        let past = now() - 100;
        let claims = json!({"aud": a.api_audiences, "exp": past, "iat": past - 700, "iss": a.issuers[0], "nbf": past - 700,
            "sub": "system:serviceaccount:ns1:robot", "kubernetes.io": {"namespace": "ns1", "serviceaccount": {"name": "robot", "uid": "u"}}});
        let old = jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap();
        assert_eq!(a.verify(&old, None).unwrap_err(), invalid("service account token has expired"));
    }

    #[test]
    fn key_rotation_verifies_with_either_key() {
        let dir = tempfile::tempdir().unwrap();
        let old = authority(dir.path(), "rsa");
        let mut new = authority(dir.path(), "ec");
        let (old_token, _) = old.issue(&spec(3600)).unwrap();
        // The new signer still trusts the old key (both in --service-account-key-file).
        new.keys.extend(old.keys.iter().cloned());
        assert!(new.verify(&old_token, None).is_ok());
        let (new_token, _) = new.issue(&spec(3600)).unwrap();
        assert!(new.verify(&new_token, None).is_ok());
        assert!(old.verify(&new_token, None).is_err());
    }

    #[test]
    fn kube_api_access_tokens_are_extended_and_max_expiration_caps() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = authority(dir.path(), "rsa");
        let (token, exp) = a.issue(&spec(WARN_ONLY_EXPIRATION)).unwrap();
        let raw = unverified_claims(&token).unwrap();
        assert_eq!(exp - raw["iat"].as_u64().unwrap(), EXTENDED_EXPIRATION);
        assert_eq!(raw["kubernetes.io"]["warnafter"].as_u64().unwrap(), raw["iat"].as_u64().unwrap() + 3607);
        a.max_expiration = Duration::from_secs(7200);
        let (token, _) = a.issue(&spec(86400)).unwrap();
        let raw = unverified_claims(&token).unwrap();
        assert_eq!(raw["exp"].as_u64().unwrap() - raw["iat"].as_u64().unwrap(), 7200);
    }
}
