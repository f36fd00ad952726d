//! `serviceaccount-token`: populates legacy service-account token Secrets, as upstream's
//! `pkg/controller/serviceaccount/tokens_controller.go`.
//!
//! A Secret of type `kubernetes.io/service-account-token` naming its ServiceAccount in the
//! `kubernetes.io/service-account.name` annotation (and optionally `.../service-account.uid`) gets `token` (a JWT
//! signed with `--service-account-private-key-file`, with upstream's legacy claims), `ca.crt` (the cluster CA)
//! and `namespace`, and both annotations set to its ServiceAccount's name and uid; only what is missing (or a
//! `ca.crt` that differs) is written, to the live Secret when it is still the one seen. A token Secret whose
//! ServiceAccount does not exist (or has another uid) is deleted; when a ServiceAccount is deleted its token
//! Secrets are, and when a token Secret is deleted its ServiceAccount's `secrets` stops referring to it. Not
//! started without `--service-account-private-key-file`, as upstream.
//!
//! The token is RS256 for an RSA key and ES256/ES384 for a P-256/P-384 key, with `kid` upstream's
//! `keyIDFromPublicKey` (base64url SHA-256 of the DER public key) and no `typ`, as go-jose writes it.

use std::sync::Arc;

use base64::Engine;
use runtime::{Action, Controller, Notification};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::pki::{self, Curve, PrivateKey};
use crate::{BoxError, Context, stopped};

pub const SECRET_TYPE_SERVICE_ACCOUNT_TOKEN: &str = "kubernetes.io/service-account-token";
pub const SERVICE_ACCOUNT_NAME_KEY: &str = "kubernetes.io/service-account.name";
pub const SERVICE_ACCOUNT_UID_KEY: &str = "kubernetes.io/service-account.uid";
/// The issuer of legacy tokens (`serviceaccount.LegacyIssuer`).
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

/// Upstream's `LegacyClaims` with the legacy issuer, in go-jose's (sorted) key order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LegacyClaims {
    pub iss: String,
    #[serde(rename = "kubernetes.io/serviceaccount/namespace")]
    pub namespace: String,
    #[serde(rename = "kubernetes.io/serviceaccount/secret.name")]
    pub secret_name: String,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.name")]
    pub service_account_name: String,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.uid")]
    pub service_account_uid: String,
    pub sub: String,
}

impl LegacyClaims {
    pub fn new(sa: &Value, secret: &Value) -> LegacyClaims {
        let (ns, name) = (runtime::namespace(sa), runtime::name(sa));
        LegacyClaims {
            iss: LEGACY_ISSUER.into(),
            namespace: ns.into(),
            secret_name: runtime::name(secret).into(),
            service_account_name: name.into(),
            service_account_uid: runtime::uid(sa).into(),
            sub: format!("system:serviceaccount:{ns}:{name}"),
        }
    }
}

/// Signs tokens with the service-account key (upstream's `JWTTokenGenerator`).
pub struct TokenGenerator {
    key: jsonwebtoken::EncodingKey,
    header: jsonwebtoken::Header,
}

impl TokenGenerator {
    pub fn new(key: &PrivateKey) -> Result<TokenGenerator, String> {
        let (encoding, alg) = match key {
            PrivateKey::Rsa { pkcs1, .. } => {
                (jsonwebtoken::EncodingKey::from_rsa_der(pkcs1), jsonwebtoken::Algorithm::RS256)
            }
            PrivateKey::Ec { curve: Curve::P256, pkcs8 } => {
                (jsonwebtoken::EncodingKey::from_ec_der(pkcs8), jsonwebtoken::Algorithm::ES256)
            }
            PrivateKey::Ec { curve: Curve::P384, pkcs8 } => {
                (jsonwebtoken::EncodingKey::from_ec_der(pkcs8), jsonwebtoken::Algorithm::ES384)
            }
        };
        let mut header = jsonwebtoken::Header::new(alg);
        header.typ = None;
        header.kid = Some(pki::key_id(&key.public_key_der()?));
        Ok(TokenGenerator { key: encoding, header })
    }

    pub fn from_file(path: &std::path::Path) -> Result<TokenGenerator, String> {
        let pem = std::fs::read(path).map_err(|e| format!("error reading key file {path:?}: {e}"))?;
        TokenGenerator::new(&PrivateKey::from_pem(&pem).map_err(|e| format!("{path:?}: {e}"))?)
    }

    pub fn generate(&self, claims: &LegacyClaims) -> Result<String, String> {
        jsonwebtoken::encode(&self.header, claims, &self.key).map_err(|e| format!("signing the token: {e}"))
    }
}

fn annotation<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.pointer("/metadata/annotations").and_then(|a| a.get(key)).and_then(Value::as_str).unwrap_or_default()
}

fn data(secret: &Value, key: &str) -> Vec<u8> {
    secret
        .pointer("/data")
        .and_then(|d| d.get(key))
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_default()
}

pub fn is_token_secret(secret: &Value) -> bool {
    secret["type"] == SECRET_TYPE_SERVICE_ACCOUNT_TOKEN && !annotation(secret, SERVICE_ACCOUNT_NAME_KEY).is_empty()
}

/// Upstream's `IsServiceAccountToken`: a token Secret of this ServiceAccount (name, and uid when annotated).
pub fn is_token_of(secret: &Value, sa_name: &str, sa_uid: &str) -> bool {
    let uid = annotation(secret, SERVICE_ACCOUNT_UID_KEY);
    secret["type"] == SECRET_TYPE_SERVICE_ACCOUNT_TOKEN
        && annotation(secret, SERVICE_ACCOUNT_NAME_KEY) == sa_name
        && (uid.is_empty() || uid == sa_uid)
}

/// Upstream's `secretUpdateNeeded`: whether the CA, the namespace and the token need writing.
pub fn update_needed(secret: &Value, root_ca: Option<&[u8]>) -> (bool, bool, bool) {
    let needs_ca = root_ca.is_some_and(|ca| !ca.is_empty() && data(secret, "ca.crt") != ca);
    (needs_ca, data(secret, "namespace").is_empty(), data(secret, "token").is_empty())
}

/// Upstream's `generateTokenIfNeeded` without the reads and the write: the Secret completed for its
/// ServiceAccount, None when nothing is missing.
pub fn populated(
    secret: &Value,
    sa: &Value,
    root_ca: Option<&[u8]>,
    tokens: &TokenGenerator,
) -> Result<Option<Value>, String> {
    let (needs_ca, needs_namespace, needs_token) = update_needed(secret, root_ca);
    if !needs_ca && !needs_namespace && !needs_token {
        return Ok(None);
    }
    let b64 = |b: &[u8]| json!(base64::engine::general_purpose::STANDARD.encode(b));
    let mut s = secret.clone();
    if !s.get("data").is_some_and(Value::is_object) {
        s["data"] = json!({});
    }
    if let (true, Some(ca)) = (needs_ca, root_ca) {
        s["data"]["ca.crt"] = b64(ca);
    }
    if needs_namespace {
        s["data"]["namespace"] = b64(runtime::namespace(secret).as_bytes());
    }
    if needs_token {
        s["data"]["token"] = b64(tokens.generate(&LegacyClaims::new(sa, secret))?.as_bytes());
    }
    if !s.pointer("/metadata/annotations").is_some_and(Value::is_object) {
        s["metadata"]["annotations"] = json!({});
    }
    s["metadata"]["annotations"][SERVICE_ACCOUNT_NAME_KEY] = json!(runtime::name(sa));
    s["metadata"]["annotations"][SERVICE_ACCOUNT_UID_KEY] = json!(runtime::uid(sa));
    Ok(Some(s))
}

/// The ServiceAccount without its reference to a deleted Secret; None when it has none.
pub fn without_reference(sa: &Value, secret_name: &str) -> Option<Value> {
    let refs = runtime::array(sa, "/secrets");
    if !refs.iter().any(|r| r["name"] == secret_name) {
        return None;
    }
    let mut updated = sa.clone();
    updated["secrets"] = json!(refs.iter().filter(|r| r["name"] != secret_name).collect::<Vec<_>>());
    Some(updated)
}

/// What the queue holds: a Secret to sync, a token Secret that was deleted, or a ServiceAccount that was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Secret(String),
    DeletedSecret { namespace: String, name: String, sa_name: String, sa_uid: String },
    DeletedServiceAccount { namespace: String, name: String, uid: String },
}

struct Tokens {
    ctx: Arc<Context>,
    generator: TokenGenerator,
    secrets: runtime::Informer,
    accounts: runtime::Informer,
}

fn uid_precondition(obj: &Value) -> Value {
    json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": runtime::uid(obj)}})
}

impl Tokens {
    /// Upstream's `getServiceAccount` with a live lookup on a cache miss.
    async fn service_account(&self, ns: &str, name: &str, uid: &str) -> Result<Option<Value>, BoxError> {
        let matches = |sa: &Value| uid.is_empty() || runtime::uid(sa) == uid;
        if let Some(sa) = self.accounts.store().get(ns, name).filter(|sa| matches(sa)) {
            return Ok(Some((*sa).clone()));
        }
        match self.ctx.api("", "v1", "serviceaccounts").namespaced(ns).get(name).await {
            Ok(sa) if matches(&sa) => Ok(Some(sa)),
            Ok(_) => Ok(None),
            Err(e) if e.code() == Some(404) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_secret(&self, secret: &Value) -> Result<(), BoxError> {
        let api = self.ctx.api("", "v1", "secrets").namespaced(runtime::namespace(secret));
        match api.delete(runtime::name(secret), Some(&uid_precondition(secret))).await {
            Ok(_) => Ok(()),
            // Already gone, or replaced by another Secret of the name.
            Err(e) if matches!(e.code(), Some(404 | 409)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn sync_secret(&self, secret: &Value) -> Result<(), BoxError> {
        let (ns, name) = (runtime::namespace(secret), runtime::name(secret));
        let sa_name = annotation(secret, SERVICE_ACCOUNT_NAME_KEY);
        let Some(sa) = self.service_account(ns, sa_name, annotation(secret, SERVICE_ACCOUNT_UID_KEY)).await? else {
            tracing::info!(secret = %runtime::object_key(secret), "serviceaccount-token: service account does not exist, deleting token");
            return self.delete_secret(secret).await;
        };
        let root_ca = self.ctx.root_ca.as_deref().map(str::as_bytes);
        if populated(secret, &sa, root_ca, &self.generator)?.is_none() {
            return Ok(());
        }
        // Complete the live Secret, and only when it is the one the cache holds (else its update brings it back).
        let api = self.ctx.api("", "v1", "secrets").namespaced(ns);
        let live = match api.get(name).await {
            Ok(s) => s,
            Err(e) if e.code() == Some(404) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if runtime::resource_version(&live) != runtime::resource_version(secret) {
            return Ok(());
        }
        let Some(updated) = populated(&live, &sa, root_ca, &self.generator)? else { return Ok(()) };
        match api.replace(name, &updated).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.code(), Some(404 | 409)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A deleted token Secret: its ServiceAccount (if it still exists) stops referring to it.
    async fn remove_reference(&self, ns: &str, name: &str, sa_name: &str, sa_uid: &str) -> Result<(), BoxError> {
        if self.accounts.store().get(ns, sa_name).is_none_or(|sa| !sa_uid.is_empty() && runtime::uid(&sa) != sa_uid) {
            return Ok(());
        }
        let api = self.ctx.api("", "v1", "serviceaccounts").namespaced(ns);
        let live = match api.get(sa_name).await {
            Ok(sa) => sa,
            Err(e) if e.code() == Some(404) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if !sa_uid.is_empty() && runtime::uid(&live) != sa_uid {
            return Ok(());
        }
        let Some(updated) = without_reference(&live, name) else { return Ok(()) };
        match api.replace(sa_name, &updated).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn sync(&self, key: Key) -> Result<Action, BoxError> {
        match key {
            Key::Secret(key) => {
                if let Some(secret) = self.secrets.store().get_by_key(&key).filter(|s| is_token_secret(s)) {
                    self.sync_secret(&secret).await?;
                }
            }
            Key::DeletedSecret { namespace, name, sa_name, sa_uid } => {
                self.remove_reference(&namespace, &name, &sa_name, &sa_uid).await?
            }
            Key::DeletedServiceAccount { namespace, name, uid } => {
                // Recreated under the same name: the new one's tokens are not the old one's.
                if self.accounts.store().get(&namespace, &name).is_some_and(|sa| runtime::uid(&sa) == uid) {
                    return Ok(Action::Done);
                }
                let tokens =
                    self.secrets.store().list_by(|s| runtime::namespace(s) == namespace && is_token_of(s, &name, &uid));
                for secret in tokens {
                    self.delete_secret(&secret).await?;
                }
            }
        }
        Ok(Action::Done)
    }
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let Some(key_file) = ctx.options.service_account_private_key_file.clone() else {
        tracing::info!(
            "serviceaccount-token: disabled, because there is no private key (--service-account-private-key-file)"
        );
        return;
    };
    let generator = match TokenGenerator::from_file(&key_file) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(error = %e, "serviceaccount-token: not started");
            return;
        }
    };
    let secrets = ctx.informer("", "v1", "secrets");
    let accounts = ctx.informer("", "v1", "serviceaccounts");
    let tokens = Arc::new(Tokens { ctx: ctx.clone(), generator, secrets: secrets.clone(), accounts: accounts.clone() });
    let workers = ctx.options.concurrent_serviceaccount_token_syncs;
    Controller::new(runtime::controller::Config { workers, ..Default::default() })
        .watches(&secrets, |n| match n {
            Notification::Deleted(s) if is_token_secret(s) => vec![Key::DeletedSecret {
                namespace: runtime::namespace(s).into(),
                name: runtime::name(s).into(),
                sa_name: annotation(s, SERVICE_ACCOUNT_NAME_KEY).into(),
                sa_uid: annotation(s, SERVICE_ACCOUNT_UID_KEY).into(),
            }],
            n if is_token_secret(n.object()) => vec![Key::Secret(n.key())],
            _ => vec![],
        })
        .watches(&accounts, |n| match n {
            Notification::Deleted(sa) => vec![Key::DeletedServiceAccount {
                namespace: runtime::namespace(sa).into(),
                name: runtime::name(sa).into(),
                uid: runtime::uid(sa).into(),
            }],
            _ => vec![],
        })
        .run(
            move |key: Key| {
                let tokens = tokens.clone();
                async move { tokens.sync(key).await }
            },
            stopped(stop),
        )
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_KEY: &str = include_str!("../../testdata/rsa-ca.key");
    const EC_KEY: &str = include_str!("../../testdata/ec-sa.key");

    fn generator(pem: &str) -> (TokenGenerator, PrivateKey) {
        let key = PrivateKey::from_pem(pem.as_bytes()).unwrap();
        (TokenGenerator::new(&key).unwrap(), key)
    }

    fn sa() -> Value {
        json!({"metadata": {"namespace": "default", "name": "default", "uid": "12345"},
            "secrets": [{"name": "token-secret-1"}, {"name": "other"}]})
    }

    fn token_secret(data: Value) -> Value {
        json!({"metadata": {"namespace": "default", "name": "token-secret-1", "uid": "23456", "resourceVersion": "1",
                "annotations": {SERVICE_ACCOUNT_NAME_KEY: "default", SERVICE_ACCOUNT_UID_KEY: "12345"}},
            "type": SECRET_TYPE_SERVICE_ACCOUNT_TOKEN, "data": data})
    }

    fn b64(s: &str) -> Value {
        json!(base64::engine::general_purpose::STANDARD.encode(s))
    }

    fn verify(token: &str, key: &PrivateKey, alg: jsonwebtoken::Algorithm) -> LegacyClaims {
        let public = key.key_pair().unwrap().public_key_raw().to_vec();
        let decoding = match key {
            PrivateKey::Rsa { .. } => jsonwebtoken::DecodingKey::from_rsa_der(&public),
            PrivateKey::Ec { .. } => jsonwebtoken::DecodingKey::from_ec_der(&public),
        };
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        jsonwebtoken::decode::<LegacyClaims>(token, &decoding, &validation).unwrap().claims
    }

    #[test]
    fn legacy_tokens_as_upstream() {
        for (pem, alg, kid) in [
            (RSA_KEY, jsonwebtoken::Algorithm::RS256, "6zBt6ogg_K1hOHnzeS4nPXR-coxgM-SbNAv59wapZP8"),
            (EC_KEY, jsonwebtoken::Algorithm::ES256, "MBVLFt46kmQWtdCDZGuN-37hKse-LAFtShwMKmGrC0Y"),
        ] {
            let (g, key) = generator(pem);
            let token = g.generate(&LegacyClaims::new(&sa(), &token_secret(json!({})))).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.alg, alg);
            assert_eq!(header.kid.as_deref(), Some(kid));
            assert_eq!(header.typ, None);
            let header_json =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap();
            assert_eq!(String::from_utf8(header_json).unwrap(), format!(r#"{{"alg":"{alg:?}","kid":"{kid}"}}"#));
            let claims = verify(&token, &key, alg);
            assert_eq!(
                serde_json::to_value(&claims).unwrap(),
                json!({"iss": "kubernetes/serviceaccount",
                    "kubernetes.io/serviceaccount/namespace": "default",
                    "kubernetes.io/serviceaccount/secret.name": "token-secret-1",
                    "kubernetes.io/serviceaccount/service-account.name": "default",
                    "kubernetes.io/serviceaccount/service-account.uid": "12345",
                    "sub": "system:serviceaccount:default:default"})
            );
        }
    }

    #[test]
    fn token_secrets_are_completed_as_upstream() {
        let (g, key) = generator(RSA_KEY);
        let ca = b"CA PEM";
        // Without a token: everything is filled in.
        let updated = populated(&token_secret(json!({})), &sa(), Some(ca), &g).unwrap().unwrap();
        assert_eq!(updated["data"]["ca.crt"], b64("CA PEM"));
        assert_eq!(updated["data"]["namespace"], b64("default"));
        let token = String::from_utf8(data(&updated, "token")).unwrap();
        assert_eq!(verify(&token, &key, jsonwebtoken::Algorithm::RS256).secret_name, "token-secret-1");
        assert_eq!(annotation(&updated, SERVICE_ACCOUNT_UID_KEY), "12345");

        // Complete: nothing to do.
        let complete = token_secret(json!({"token": b64("ABC"), "ca.crt": b64("CA PEM"), "namespace": b64("default")}));
        assert_eq!(populated(&complete, &sa(), Some(ca), &g).unwrap(), None);
        // Without a CA known, the CA is left as it is.
        assert_eq!(populated(&complete, &sa(), None, &g).unwrap(), None);
        // A CA that differs is replaced; the token is kept.
        let updated = populated(&complete, &sa(), Some(b"NEW CA"), &g).unwrap().unwrap();
        assert_eq!(updated["data"]["ca.crt"], b64("NEW CA"));
        assert_eq!(updated["data"]["token"], b64("ABC"));
        // A missing namespace is filled.
        let no_ns = token_secret(json!({"token": b64("ABC"), "ca.crt": b64("CA PEM")}));
        let updated = populated(&no_ns, &sa(), Some(ca), &g).unwrap().unwrap();
        assert_eq!(updated["data"]["namespace"], b64("default"));
        assert_eq!(updated["data"]["token"], b64("ABC"));
        // Without annotations of the uid, the secret gets it.
        let mut no_uid = token_secret(json!({}));
        no_uid["metadata"]["annotations"] = json!({SERVICE_ACCOUNT_NAME_KEY: "default"});
        let updated = populated(&no_uid, &sa(), Some(ca), &g).unwrap().unwrap();
        assert_eq!(annotation(&updated, SERVICE_ACCOUNT_UID_KEY), "12345");
    }

    #[test]
    fn which_secrets_belong_to_which_account() {
        let s = token_secret(json!({}));
        assert!(is_token_secret(&s));
        assert!(is_token_of(&s, "default", "12345"));
        assert!(!is_token_of(&s, "default", "other-uid"));
        assert!(!is_token_of(&s, "other", "12345"));
        let mut no_uid = s.clone();
        no_uid["metadata"]["annotations"] = json!({SERVICE_ACCOUNT_NAME_KEY: "default"});
        assert!(is_token_of(&no_uid, "default", "any"));
        let mut opaque = s.clone();
        opaque["type"] = json!("Opaque");
        assert!(!is_token_secret(&opaque) && !is_token_of(&opaque, "default", "12345"));

        let without = without_reference(&sa(), "token-secret-1").unwrap();
        assert_eq!(without["secrets"], json!([{"name": "other"}]));
        assert_eq!(without_reference(&without, "token-secret-1"), None);
    }
}
