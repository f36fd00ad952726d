//! Certificates: loading the serving pair and client CA into rustls, generating the self-signed serving pair
//! upstream writes into `--cert-dir` when none is given, and a small CA for tests (and kubeadm later) that issues
//! server and client certificates (CN = user, O = groups).

use std::io::BufReader;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}: no certificate found")]
    NoCertificate(PathBuf),
    #[error("{0}: no private key found")]
    NoKey(PathBuf),
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Tls(String),
}

pub type Result<T, E = PkiError> = std::result::Result<T, E>;

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| PkiError::Io { path: path.to_path_buf(), source })
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(&pem[..]))
        .collect::<std::result::Result<_, _>>()
        .map_err(|source| PkiError::Io { path: path.to_path_buf(), source })?;
    if certs.is_empty() {
        return Err(PkiError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut BufReader::new(&pem[..]))
        .map_err(|source| PkiError::Io { path: path.to_path_buf(), source })?
        .ok_or_else(|| PkiError::NoKey(path.to_path_buf()))
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io { path: dir.to_path_buf(), source })?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| PkiError::Io { path: path.to_path_buf(), source })?;
    f.write_all(contents.as_bytes()).map_err(|source| PkiError::Io { path: path.to_path_buf(), source })
}

/// A certificate and key in PEM.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pair {
    pub fn write(&self, cert: &Path, key: &Path) -> Result<()> {
        write_private(cert, &self.cert_pem)?;
        write_private(key, &self.key_pem)
    }
}

fn san(name: &str) -> Result<SanType> {
    Ok(match name.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(name.try_into()?),
    })
}

/// A certificate authority that issues server and client certificates.
pub struct Ca {
    pub cert_pem: String,
    key: KeyPair,
    params: CertificateParams,
}

impl Ca {
    /// A new self-signed CA (kubeadm names it `kubernetes`).
    pub fn new(common_name: &str) -> Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2099, 1, 1);
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert_pem: cert.pem(), key, params })
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Issues a certificate. `sans` (DNS names or IPs) make it a serving certificate; without them it is a client
    /// certificate for user `cn` in groups `orgs`.
    pub fn issue(&self, cn: &str, orgs: &[&str], sans: &[&str]) -> Result<Pair> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = sans.iter().map(|s| san(s)).collect::<Result<_>>()?;
        params.distinguished_name = DistinguishedName::new();
        // rcgen keeps one value per attribute type: a second Organization goes in as the same OID (2.5.4.10)
        // spelled as a custom type, which encodes identically. Two groups is what kubeadm's certificates need.
        if let Some(o) = orgs.first() {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        if let Some(o) = orgs.get(1) {
            params.distinguished_name.push(DnType::CustomDnType(vec![2, 5, 4, 10]), *o);
        }
        if orgs.len() > 2 {
            return Err(PkiError::Tls("at most two groups (Organizations) per certificate".into()));
        }
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = if sans.is_empty() {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        } else {
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
        };
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2099, 1, 1);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Pair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// The names a serving certificate for the apiserver carries, as upstream's self-signed one.
pub fn apiserver_sans(advertise: Option<IpAddr>, service_ip: Option<IpAddr>) -> Vec<String> {
    let mut sans: Vec<String> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "127.0.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sans.extend(advertise.map(|a| a.to_string()));
    sans.extend(service_ip.map(|a| a.to_string()));
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        sans.push(host.trim().to_string());
    }
    sans.dedup();
    sans
}

/// The serving pair: the given files, or a self-signed pair in `cert_dir` (`apiserver.crt`/`apiserver.key`),
/// generated on first start and reused after.
pub fn serving_pair(
    cert: Option<&Path>,
    key: Option<&Path>,
    cert_dir: &Path,
    sans: &[String],
) -> Result<(PathBuf, PathBuf)> {
    if let (Some(c), Some(k)) = (cert, key) {
        return Ok((c.to_path_buf(), k.to_path_buf()));
    }
    let (c, k) = (cert_dir.join("apiserver.crt"), cert_dir.join("apiserver.key"));
    if c.exists() && k.exists() {
        return Ok((c, k));
    }
    let ca = Ca::new(&format!("localhost-ca@{}", std::process::id()))?;
    let names: Vec<&str> = sans.iter().map(String::as_str).collect();
    let pair = ca.issue("localhost", &[], &names)?;
    let chain = Pair { cert_pem: format!("{}{}", pair.cert_pem, ca.cert_pem), key_pem: pair.key_pem };
    chain.write(&c, &k)?;
    tracing::info!(cert = %c.display(), "generated a self-signed serving certificate");
    Ok((c, k))
}

/// The rustls server configuration: the serving pair, optional client certificate verification against
/// `client_ca` (a client without a certificate is still accepted, then authenticated otherwise), ALPN h2 and
/// http/1.1.
pub fn server_config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Arc<rustls::ServerConfig>> {
    server_config_with_cas(cert, key, client_ca.as_slice())
}

/// As [`server_config`], with client certificates of any of several CA bundles accepted by the handshake (the
/// client CA and the requestheader CA; which one signed a certificate is checked per request).
pub fn server_config_with_cas(cert: &Path, key: &Path, client_cas: &[&Path]) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Tls(e.to_string()))?;
    let builder = match client_cas {
        [] => builder.with_no_client_auth(),
        cas => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in cas {
                for c in load_certs(ca)? {
                    roots.add(c).map_err(|e| PkiError::Tls(e.to_string()))?;
                }
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| PkiError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config =
        builder.with_single_cert(load_certs(cert)?, load_key(key)?).map_err(|e| PkiError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The user a verified client certificate names: CommonName, and Organizations as groups.
pub fn cert_identity(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let cn = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let orgs = subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    Some((cn, orgs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_client_certs_carry_user_and_groups() {
        let ca = Ca::new("kubernetes").unwrap();
        let pair = ca.issue("kubernetes-admin", &["system:masters", "dev"], &[]).unwrap();
        let der = rustls_pemfile::certs(&mut pair.cert_pem.as_bytes()).next().unwrap().unwrap();
        let (cn, orgs) = cert_identity(&der).unwrap();
        assert_eq!(cn, "kubernetes-admin");
        assert_eq!(orgs, ["system:masters", "dev"]);
    }

    #[test]
    fn self_signed_pair_is_generated_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let sans = apiserver_sans(Some("10.1.2.3".parse().unwrap()), None);
        let (c, k) = serving_pair(None, None, dir.path(), &sans).unwrap();
        let first = std::fs::read(&c).unwrap();
        let (c2, _) = serving_pair(None, None, dir.path(), &sans).unwrap();
        assert_eq!(first, std::fs::read(c2).unwrap());
        assert!(server_config(&c, &k, None).is_ok());
    }
}
