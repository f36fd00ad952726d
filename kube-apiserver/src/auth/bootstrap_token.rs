//! Bootstrap tokens (`--enable-bootstrap-token-auth`), as upstream's bootstrap authenticator: a `<id>.<secret>`
//! bearer token names the `bootstrap-token-<id>` Secret in kube-system, which must be of type
//! `bootstrap.kubernetes.io/token`, allow authentication, hold the same secret and not be expired; the user is
//! `system:bootstrap:<id>` in `system:bootstrappers` plus the Secret's `auth-extra-groups`.

use base64::Engine;
use serde_json::Value;

use super::UserInfo;

pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const SECRET_PREFIX: &str = "bootstrap-token-";

/// Splits a bootstrap token into its id and secret (`[a-z0-9]{6}.[a-z0-9]{16}`).
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// A data key of a Secret (base64 `data`, or `stringData` when the object was never stored).
pub fn secret_data(secret: &Value, key: &str) -> Option<String> {
    if let Some(v) = secret.pointer(&format!("/data/{key}")).and_then(Value::as_str) {
        return base64::engine::general_purpose::STANDARD.decode(v).ok().and_then(|b| String::from_utf8(b).ok());
    }
    secret.pointer(&format!("/stringData/{key}")).and_then(Value::as_str).map(String::from)
}

/// Whether an `expiration` (RFC 3339) has passed.
pub fn expired(secret: &Value) -> bool {
    secret_data(secret, "expiration")
        .map(|e| match e.parse::<jiff::Timestamp>() {
            Ok(t) => t <= jiff::Timestamp::now(),
            // Upstream treats an unparseable expiration as expired.
            Err(_) => true,
        })
        .unwrap_or(false)
}

fn valid_extra_group(g: &str) -> bool {
    g.strip_prefix("system:bootstrappers:").is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 256
            && rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
            && rest.bytes().last().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// The user a bootstrap token authenticates as, given the Secret it names (`None`: refused).
pub fn authenticate(token: &str, secret: Option<&Value>) -> Option<UserInfo> {
    let (id, token_secret) = parse(token)?;
    let secret = secret?;
    if secret.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
        || secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE)
    {
        return None;
    }
    let stored = secret_data(secret, "token-secret")?;
    // Compared in constant time, as upstream's subtle.ConstantTimeCompare.
    let same = stored.len() == token_secret.len()
        && stored.bytes().zip(token_secret.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !same || secret_data(secret, "token-id").as_deref() != Some(id) || expired(secret) {
        return None;
    }
    if secret_data(secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return None;
    }
    let mut groups = vec!["system:bootstrappers".to_string()];
    if let Some(extra) = secret_data(secret, "auth-extra-groups") {
        for g in extra.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            if !valid_extra_group(g) {
                return None;
            }
            if !groups.iter().any(|x| x == g) {
                groups.push(g.to_string());
            }
        }
    }
    Some(UserInfo::authenticated(format!("system:bootstrap:{id}"), String::new(), groups))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret(extra: &[(&str, &str)]) -> Value {
        let mut data = serde_json::Map::new();
        for (k, v) in
            [("token-id", "abcdef"), ("token-secret", "0123456789abcdef"), ("usage-bootstrap-authentication", "true")]
                .iter()
                .chain(extra)
        {
            data.insert(k.to_string(), json!(b64(v)));
        }
        json!({"metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"}, "type": SECRET_TYPE, "data": data})
    }

    #[test]
    fn authenticates_as_upstream() {
        let s = secret(&[("auth-extra-groups", "system:bootstrappers:kubeadm:default-node-token")]);
        let u = authenticate("abcdef.0123456789abcdef", Some(&s)).unwrap();
        assert_eq!(u.username, "system:bootstrap:abcdef");
        assert_eq!(
            u.groups,
            ["system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token", "system:authenticated"]
        );
        assert!(authenticate("abcdef.0123456789abcdee", Some(&s)).is_none(), "wrong secret");
        assert!(authenticate("abcdef.0123456789abcdef", None).is_none(), "no Secret");
        assert!(authenticate("ABCDEF.0123456789abcdef", Some(&s)).is_none(), "not a bootstrap token");
        let mut wrong_type = s.clone();
        wrong_type["type"] = json!("Opaque");
        assert!(authenticate("abcdef.0123456789abcdef", Some(&wrong_type)).is_none());
        let mut deleting = s.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2020-01-01T00:00:00Z");
        assert!(authenticate("abcdef.0123456789abcdef", Some(&deleting)).is_none());
    }

    #[test]
    fn expiry_usage_and_groups_are_honoured() {
        let past = secret(&[("expiration", "2000-01-01T00:00:00Z")]);
        assert!(authenticate("abcdef.0123456789abcdef", Some(&past)).is_none());
        let future = secret(&[("expiration", "2999-01-01T00:00:00Z")]);
        assert!(authenticate("abcdef.0123456789abcdef", Some(&future)).is_some());
        let no_auth = secret(&[("usage-bootstrap-authentication", "false")]);
        assert!(authenticate("abcdef.0123456789abcdef", Some(&no_auth)).is_none());
        let bad_group = secret(&[("auth-extra-groups", "system:masters")]);
        assert!(authenticate("abcdef.0123456789abcdef", Some(&bad_group)).is_none());
        assert_eq!(parse("abcdef.0123456789abcdef"), Some(("abcdef", "0123456789abcdef")));
        assert_eq!(parse("abcdef.0123456789abcde"), None);
    }
}
