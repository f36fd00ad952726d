//! Service-account issuer discovery, as upstream's `serviceaccount.OpenIDMetadata`: the OpenID Connect discovery
//! document at `/.well-known/openid-configuration` and the verification keys at `/openid/v1/jwks`, served when the
//! first `--service-account-issuer` is an https URL.

use serde_json::{Value, json};

use crate::auth::serviceaccount::TokenAuthority;

pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
pub const JWKS_PATH: &str = "/openid/v1/jwks";

/// The discovery document, or None when the issuer is not an https URL (upstream serves nothing then).
pub fn configuration(a: &TokenAuthority, jwks_uri: Option<&str>) -> Option<Value> {
    let issuer = a.issuers.first()?;
    let rest = issuer.strip_prefix("https://")?;
    let jwks = match jwks_uri {
        Some(u) => u.to_string(),
        None => {
            let host = rest.split('/').next().unwrap_or_default();
            format!("https://{host}{JWKS_PATH}")
        }
    };
    let mut algs: Vec<&str> =
        a.keys.iter().map(|k| if k.alg == jsonwebtoken::Algorithm::ES256 { "ES256" } else { "RS256" }).collect();
    algs.sort_unstable();
    algs.dedup();
    Some(json!({
        "issuer": issuer,
        "jwks_uri": jwks,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
    }))
}

/// The key set (`application/jwk-set+json`).
pub fn jwks(a: &TokenAuthority) -> Value {
    let mut seen = std::collections::HashSet::new();
    let keys: Vec<Value> = a.keys.iter().filter(|k| seen.insert(k.kid.clone())).map(|k| k.jwk.clone()).collect();
    json!({"keys": keys})
}
