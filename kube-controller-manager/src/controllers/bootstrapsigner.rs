//! `bootstrapsigner`: signs the `kube-public/cluster-info` ConfigMap with every bootstrap token, as upstream's
//! `pkg/controller/bootstrap/bootstrapsigner.go`.
//!
//! For each valid bootstrap-token Secret in `kube-system` (type `bootstrap.kubernetes.io/token`, named
//! `bootstrap-token-<id>` with a matching `token-id`, a `token-secret`, `usage-bootstrap-signing: "true"`, not
//! expired) the ConfigMap gets `jws-kubeconfig-<id>`: a detached JWS (RFC 7515 appendix F) of its `kubeconfig`,
//! HS256 with the token secret as key and the token id as `kid` (`k8s.io/cluster-bootstrap/token/jws`). Entries
//! of tokens that are gone or no longer valid are removed. Off by default, as upstream.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use runtime::{Action, Controller};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{BoxError, Context, stopped};

pub const SECRET_TYPE_BOOTSTRAP_TOKEN: &str = "bootstrap.kubernetes.io/token";
pub const TOKEN_SECRET_PREFIX: &str = "bootstrap-token-";
pub const TOKEN_NAMESPACE: &str = "kube-system";
pub const CONFIG_MAP_NAMESPACE: &str = "kube-public";
pub const CONFIG_MAP_CLUSTER_INFO: &str = "cluster-info";
pub const KUBECONFIG_KEY: &str = "kubeconfig";
pub const JWS_SIGNATURE_KEY_PREFIX: &str = "jws-kubeconfig-";

/// Upstream's `GetData`: a data key of a Secret, decoded (empty when absent).
pub fn secret_data(secret: &Value, key: &str) -> String {
    secret
        .pointer("/data")
        .and_then(|d| d.get(key))
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Upstream's `ParseName`: the token id of a `bootstrap-token-<[a-z0-9]{6}>` name.
pub fn parse_name(name: &str) -> Option<&str> {
    let id = name.strip_prefix(TOKEN_SECRET_PREFIX)?;
    (id.len() == 6 && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())).then_some(id)
}

/// Upstream's `GetExpiration`: the time left and whether the token has expired. No `expiration`: no time left,
/// not expired; an unparseable one counts as expired.
pub fn expiration(secret: &Value, now: jiff::Timestamp) -> (Duration, bool) {
    let exp = secret_data(secret, "expiration");
    if exp.is_empty() {
        return (Duration::ZERO, false);
    }
    let Ok(at) = exp.parse::<jiff::Timestamp>() else {
        tracing::debug!(secret = %runtime::object_key(secret), expiration = %exp, "unparseable expiration time, treating as expired");
        return (Duration::ZERO, true);
    };
    match Duration::try_from(now.duration_until(at)) {
        Ok(left) if !left.is_zero() => (left, false),
        _ => (Duration::ZERO, true),
    }
}

/// `jws.ComputeDetachedSignature`: the compact JWS of `content` with the content part left out.
pub fn compute_detached_signature(content: &str, token_id: &str, token_secret: &str) -> Result<String, String> {
    // As upstream, a secret shorter than 32 bytes is zero-padded to 32 (go-jose's minimum HS256 key size).
    let mut key = token_secret.as_bytes().to_vec();
    if key.len() < 32 {
        key.resize(32, 0);
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(json!({"alg": "HS256", "kid": token_id}).to_string());
    let signing_input = format!("{header}.{}", b64.encode(content));
    let signature = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(&key),
        jsonwebtoken::Algorithm::HS256,
    )
    .map_err(|e| format!("can't HS256-sign the given token: {e}"))?;
    Ok(format!("{header}..{signature}"))
}

/// Upstream's `validateSecretForSigning`: the token id and secret of a Secret that may sign.
pub fn token_for_signing(secret: &Value, now: jiff::Timestamp) -> Option<(String, String)> {
    let name_id = parse_name(runtime::name(secret))?;
    let id = secret_data(secret, "token-id");
    if id.is_empty() || id != name_id {
        return None;
    }
    let token_secret = secret_data(secret, "token-secret");
    if token_secret.is_empty() || expiration(secret, now).1 {
        return None;
    }
    (secret_data(secret, "usage-bootstrap-signing") == "true").then_some((id, token_secret))
}

fn is_token_secret(secret: &Value) -> bool {
    secret["type"] == SECRET_TYPE_BOOTSTRAP_TOKEN && runtime::namespace(secret) == TOKEN_NAMESPACE
}

/// Upstream's `signConfigMap` without the write: the ConfigMap with its signatures recomputed, or None when they
/// are already right (or there is no `kubeconfig` to sign).
pub fn signed_config_map(cm: &Value, secrets: &[Arc<Value>], now: jiff::Timestamp) -> Option<Value> {
    let data = cm.get("data").and_then(Value::as_object).cloned().unwrap_or_default();
    let content = data.get(KUBECONFIG_KEY).and_then(Value::as_str)?.to_string();
    let mut old: BTreeMap<String, Value> = BTreeMap::new();
    let mut new_data = serde_json::Map::new();
    for (k, v) in data {
        match k.strip_prefix(JWS_SIGNATURE_KEY_PREFIX) {
            Some(id) => {
                old.insert(id.to_string(), v);
            }
            None => {
                new_data.insert(k, v);
            }
        }
    }
    let mut tokens: BTreeMap<String, String> = BTreeMap::new();
    for secret in secrets.iter().filter(|s| is_token_secret(s)) {
        let Some((id, token_secret)) = token_for_signing(secret, now) else { continue };
        if tokens.contains_key(&id) {
            tracing::info!(token_id = %id, "bootstrapsigner: duplicate bootstrap tokens found for id, ignoring the duplicate");
            continue;
        }
        tokens.insert(id, token_secret);
    }
    let mut changed = false;
    for (id, token_secret) in tokens {
        let sig = match compute_detached_signature(&content, &id, &token_secret) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(token_id = %id, error = %e, "bootstrapsigner");
                continue;
            }
        };
        if old.remove(&id).as_ref().and_then(Value::as_str) != Some(sig.as_str()) {
            changed = true;
        }
        new_data.insert(format!("{JWS_SIGNATURE_KEY_PREFIX}{id}"), json!(sig));
    }
    if !changed && old.is_empty() {
        return None;
    }
    let mut updated = cm.clone();
    updated["data"] = Value::Object(new_data);
    Some(updated)
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let configmaps = ctx.informer("", "v1", "configmaps");
    let secrets = ctx.informer("", "v1", "secrets");
    let key = runtime::key(CONFIG_MAP_NAMESPACE, CONFIG_MAP_CLUSTER_INFO);
    let (k1, k2) = (key.clone(), key);
    let c = ctx.clone();
    Controller::new(runtime::controller::Config::default())
        .watches(&configmaps, move |n| if n.key() == k1 { vec![k1.clone()] } else { vec![] })
        .watches(&secrets, move |n| if is_token_secret(n.object()) { vec![k2.clone()] } else { vec![] })
        .run(
            move |key: String| {
                let (c, configmaps, secrets) = (c.clone(), configmaps.clone(), secrets.clone());
                async move {
                    let Some(cm) = configmaps.store().get_by_key(&key) else { return Ok::<_, BoxError>(Action::Done) };
                    let Some(updated) = signed_config_map(&cm, &secrets.store().list(), jiff::Timestamp::now()) else {
                        return Ok(Action::Done);
                    };
                    let api = c.api("", "v1", "configmaps").namespaced(CONFIG_MAP_NAMESPACE);
                    match api.replace(CONFIG_MAP_CLUSTER_INFO, &updated).await {
                        Ok(_) => Ok(Action::Done),
                        Err(e) if matches!(e.code(), Some(404 | 409)) => Ok(Action::Done),
                        Err(e) => Err(e.into()),
                    }
                }
            },
            stopped(stop),
        )
        .await;
}

#[cfg(test)]
pub mod testing {
    //! Bootstrap-token Secrets for the tests (upstream's `newTokenSecret`).

    use base64::Engine;
    use serde_json::{Value, json};

    pub fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    pub fn token_secret(id: &str, secret: &str) -> Value {
        json!({"metadata": {"namespace": "kube-system", "name": format!("bootstrap-token-{id}"), "uid": "uid-1",
                "resourceVersion": "1"},
            "type": "bootstrap.kubernetes.io/token",
            "data": {"token-id": b64(id), "token-secret": b64(secret)}})
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    const TEST_TOKEN_ID: &str = "abc123";
    const SIGNATURE: &str = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiYzEyMyJ9..QSxpUG7Q542CirTI2ECPSZjvBOJURUW5a7XqFpNI958";

    #[test]
    fn detached_signatures_as_upstreams_jws_test() {
        let content = "Hello from the other side. I must have called a thousand times.";
        let (secret, id) = ("my voice is my passcode", "joshua");
        assert_eq!(
            compute_detached_signature(content, id, secret).unwrap(),
            "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..VShe2taLd-YTrmWuRkcL_8QTNDHYxQIEBsAYYiIj1_8"
        );
        assert_eq!(
            compute_detached_signature("", id, secret).unwrap(),
            "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..7Ui1ALizW4jXphVUB7xUqC9vLYLL9RZeOFfVLoB7Tgk"
        );
        assert_eq!(
            compute_detached_signature(content, id, "").unwrap(),
            "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..UfkqvDGiIFxrMnFseDj9LYJOLNrvjW8aHhF71mvvAs8"
        );
    }

    fn config_map(token_id: &str, signature: &str) -> Value {
        let mut cm = json!({"metadata": {"namespace": "kube-public", "name": "cluster-info", "resourceVersion": "1"},
            "data": {"kubeconfig": "payload"}});
        if !token_id.is_empty() {
            cm["data"][format!("jws-kubeconfig-{token_id}")] = json!(signature);
        }
        cm
    }

    fn signing_secret() -> Arc<Value> {
        let mut s = token_secret(TEST_TOKEN_ID, "tokenSecret");
        s["data"]["usage-bootstrap-signing"] = json!(b64("true"));
        Arc::new(s)
    }

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::now()
    }

    #[test]
    fn signs_as_upstreams_bootstrapsigner_test() {
        // Simple sign.
        assert_eq!(
            signed_config_map(&config_map("", ""), &[signing_secret()], now()),
            Some(config_map(TEST_TOKEN_ID, SIGNATURE))
        );
        // No sign needed.
        assert_eq!(signed_config_map(&config_map(TEST_TOKEN_ID, SIGNATURE), &[signing_secret()], now()), None);
        // Update a wrong signature.
        assert_eq!(
            signed_config_map(&config_map(TEST_TOKEN_ID, "old signature"), &[signing_secret()], now()),
            Some(config_map(TEST_TOKEN_ID, SIGNATURE))
        );
        // Remove a signature whose token is gone.
        assert_eq!(
            signed_config_map(&config_map(TEST_TOKEN_ID, "old signature"), &[], now()),
            Some(config_map("", ""))
        );
        // Nothing to sign.
        assert_eq!(
            signed_config_map(&json!({"metadata": {"name": "cluster-info"}, "data": {}}), &[signing_secret()], now()),
            None
        );
    }

    #[test]
    fn only_valid_signing_tokens_sign() {
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let now = at("2026-03-01T00:00:00Z");
        assert_eq!(token_for_signing(&signing_secret(), now), Some((TEST_TOKEN_ID.into(), "tokenSecret".into())));
        let mut not_signing = (*signing_secret()).clone();
        not_signing["data"]["usage-bootstrap-signing"] = json!(b64("false"));
        assert_eq!(token_for_signing(&not_signing, now), None);
        let mut expired = (*signing_secret()).clone();
        expired["data"]["expiration"] = json!(b64("2026-02-28T00:00:00Z"));
        assert_eq!(token_for_signing(&expired, now), None);
        let mut garbled = (*signing_secret()).clone();
        garbled["data"]["expiration"] = json!(b64("tomorrow"));
        assert_eq!(token_for_signing(&garbled, now), None);
        let mut wrong_name = (*signing_secret()).clone();
        wrong_name["metadata"]["name"] = json!("bootstrap-token-xyz789");
        assert_eq!(token_for_signing(&wrong_name, now), None);
        let mut later = (*signing_secret()).clone();
        later["data"]["expiration"] = json!(b64("2026-03-02T00:00:00Z"));
        assert!(token_for_signing(&later, now).is_some());
        assert_eq!(expiration(&later, now), (Duration::from_secs(86400), false));

        assert_eq!(parse_name("bootstrap-token-abc123"), Some("abc123"));
        for bad in ["bootstrap-token-ABC123", "bootstrap-token-abc12", "bootstrap-token-abc1234", "token-abc123"] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }
}
