//! Request-header authentication (upstream's `headerrequest` authenticator behind its x509 verifier): a front proxy
//! presenting a client certificate signed by `--requestheader-client-ca-file`, with a common name in
//! `--requestheader-allowed-names` (any when the list is empty), may assert the user in headers: the username from
//! the first non-empty `--requestheader-username-headers`, the UID from `--requestheader-uid-headers`, groups from
//! every value of `--requestheader-group-headers`, extra attributes from `--requestheader-extra-headers-prefix`
//! headers (`X-Remote-Extra-Scopes: a` is extra `scopes: [a]`; keys are lower-cased and percent-decoded).
//! Client certificates are checked per CA here: one signed by the requestheader CA authenticates only as a proxy,
//! one signed by `--client-ca-file` only as its own subject.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use http::HeaderMap;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;

use super::UserInfo;

/// A verifier of client certificates against one CA bundle.
#[derive(Clone)]
pub struct CaVerifier(Arc<dyn ClientCertVerifier>);

impl std::fmt::Debug for CaVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaVerifier")
    }
}

impl CaVerifier {
    pub fn from_pem_file(path: &Path) -> Result<Self, String> {
        let certs = crate::pki::load_certs(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in certs {
            roots.add(c).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(CaVerifier(verifier))
    }

    /// Whether the chain (leaf first) is a valid client certificate of this CA now.
    pub fn verifies(&self, chain: &[CertificateDer<'_>]) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else { return false };
        self.0.verify_client_cert(leaf, intermediates, UnixTime::now()).is_ok()
    }
}

/// The `--requestheader-*` configuration.
#[derive(Debug, Clone)]
pub struct RequestHeader {
    pub ca: CaVerifier,
    /// The CA bundle's PEM (published in the `extension-apiserver-authentication` ConfigMap).
    pub ca_pem: String,
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub uid_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_headers_prefix: Vec<String>,
}

/// Flag values trimmed, empty ones dropped.
fn clean(v: &[String]) -> Vec<String> {
    v.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

impl RequestHeader {
    /// From the flags; None without `--requestheader-client-ca-file`.
    pub fn from_options(o: &crate::options::Options) -> Result<Option<Self>, String> {
        let Some(path) = &o.requestheader_client_ca_file else { return Ok(None) };
        let ca_pem = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Some(RequestHeader {
            ca: CaVerifier::from_pem_file(path)?,
            ca_pem,
            allowed_names: clean(&o.requestheader_allowed_names),
            username_headers: clean(&o.requestheader_username_headers),
            uid_headers: clean(&o.requestheader_uid_headers),
            group_headers: clean(&o.requestheader_group_headers),
            extra_headers_prefix: clean(&o.requestheader_extra_headers_prefix),
        }))
    }

    /// Whether a connection's client certificate chain is a front proxy's: signed by the requestheader CA, with an
    /// allowed common name.
    pub fn is_proxy(&self, chain: &[CertificateDer<'_>]) -> bool {
        if !self.ca.verifies(chain) {
            return false;
        }
        if self.allowed_names.is_empty() {
            return true;
        }
        let cn = chain.first().and_then(|c| crate::pki::cert_identity(c.as_ref())).map(|(cn, _)| cn);
        cn.is_some_and(|cn| self.allowed_names.contains(&cn))
    }

    /// The user a proxy's request asserts; None without a username (other authenticators are tried then).
    pub fn user(&self, headers: &HeaderMap) -> Option<UserInfo> {
        let first = |names: &[String]| {
            names.iter().find_map(|n| {
                headers.get(n.as_str()).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()).map(String::from)
            })
        };
        let username = first(&self.username_headers)?;
        let uid = first(&self.uid_headers).unwrap_or_default();
        let groups: Vec<String> = self
            .group_headers
            .iter()
            .flat_map(|n| headers.get_all(n.as_str()).iter())
            .filter_map(|v| v.to_str().ok().map(String::from))
            .collect();
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in headers {
            let lower = name.as_str().to_ascii_lowercase();
            let Some(key) = self.extra_headers_prefix.iter().find_map(|p| lower.strip_prefix(&p.to_ascii_lowercase()))
            else {
                continue;
            };
            let key = percent_decode(key);
            if let Ok(v) = value.to_str() {
                extra.entry(key).or_default().push(v.to_string());
            }
        }
        let mut user = UserInfo::authenticated(username, uid, groups);
        user.extra = extra;
        Some(user)
    }

    /// Headers that must not reach anything downstream once the request is authenticated (upstream's
    /// `ClearAuthenticationHeaders`).
    pub fn strip(&self, headers: &mut HeaderMap) {
        for n in self.username_headers.iter().chain(&self.uid_headers).chain(&self.group_headers) {
            headers.remove(n.as_str());
        }
        let prefixes: Vec<String> = self.extra_headers_prefix.iter().map(|p| p.to_ascii_lowercase()).collect();
        let extra: Vec<http::HeaderName> =
            headers.keys().filter(|k| prefixes.iter().any(|p| k.as_str().starts_with(p.as_str()))).cloned().collect();
        for k in extra {
            headers.remove(k);
        }
    }
}

/// `%xx` sequences decoded (upstream unescapes extra keys with `url.PathUnescape`); invalid ones kept as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, allowed: &[&str]) -> (RequestHeader, crate::pki::Ca) {
        let ca = crate::pki::Ca::new("front-proxy-ca").unwrap();
        std::fs::write(dir.join("fp-ca.crt"), &ca.cert_pem).unwrap();
        let rh = RequestHeader {
            ca: CaVerifier::from_pem_file(&dir.join("fp-ca.crt")).unwrap(),
            ca_pem: ca.cert_pem.clone(),
            allowed_names: allowed.iter().map(|s| s.to_string()).collect(),
            username_headers: vec!["X-Remote-User".into()],
            uid_headers: vec![],
            group_headers: vec!["X-Remote-Group".into()],
            extra_headers_prefix: vec!["X-Remote-Extra-".into()],
        };
        (rh, ca)
    }

    fn der(pem: &str) -> Vec<CertificateDer<'static>> {
        rustls_pemfile::certs(&mut pem.as_bytes()).map(|c| c.unwrap()).collect()
    }

    #[test]
    fn only_allowed_proxies_of_the_requestheader_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (rh, ca) = config(dir.path(), &["front-proxy-client"]);
        let proxy = ca.issue("front-proxy-client", &[], &[]).unwrap();
        let other_name = ca.issue("someone-else", &[], &[]).unwrap();
        let other_ca = crate::pki::Ca::new("kubernetes").unwrap();
        let foreign = other_ca.issue("front-proxy-client", &[], &[]).unwrap();
        assert!(rh.is_proxy(&der(&proxy.cert_pem)));
        assert!(!rh.is_proxy(&der(&other_name.cert_pem)), "CN not in --requestheader-allowed-names");
        assert!(!rh.is_proxy(&der(&foreign.cert_pem)), "signed by another CA");
        let (any, ca2) = config(dir.path(), &[]);
        assert!(any.is_proxy(&der(&ca2.issue("whoever", &[], &[]).unwrap().cert_pem)), "no names: any of the CA");
    }

    #[test]
    fn users_from_headers() {
        let dir = tempfile::tempdir().unwrap();
        let (rh, _) = config(dir.path(), &[]);
        let mut h = HeaderMap::new();
        assert!(rh.user(&h).is_none(), "no username: not this authenticator's request");
        h.insert("x-remote-user", "alice".parse().unwrap());
        h.append("x-remote-group", "devs".parse().unwrap());
        h.append("x-remote-group", "ops".parse().unwrap());
        h.append("x-remote-extra-scopes", "a".parse().unwrap());
        h.append("x-remote-extra-scopes", "b".parse().unwrap());
        h.append("x-remote-extra-example.org%2fkey", "v".parse().unwrap());
        let u = rh.user(&h).unwrap();
        assert_eq!(u.username, "alice");
        assert_eq!(u.groups, ["devs", "ops", "system:authenticated"]);
        assert_eq!(u.extra["scopes"], ["a", "b"]);
        assert_eq!(u.extra["example.org/key"], ["v"]);
        rh.strip(&mut h);
        assert!(h.is_empty(), "{h:?}");
    }
}
