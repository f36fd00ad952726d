//! kubeadm's PKI: key pairs and certificates with upstream's names, subjects, SANs, usages and lifetimes
//! ([`certlist`]), created through the filesystem trait, existing files reused, external-CA mode; parsing back
//! for `certs check-expiration`; CSRs for `certs generate-csr` and `renew --csr-only`.

pub mod certlist;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::SecureRandom;

use crate::fs::Fs;

/// Ours: ECDSA P-256 (upstream defaults to RSA-2048, which ring cannot generate; `encryptionAlgorithm` accepts
/// the ECDSA values upstream accepts).
pub const DEFAULT_ENCRYPTION_ALGORITHM: &str = "ECDSA-P256";
/// Upstream's `CertificateBackdate`: certificates start five minutes in the past to tolerate clock skew.
pub const BACKDATE: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("failure loading {what}: {msg}")]
    Parse { what: String, msg: String },
    #[error("couldn't generate {what}: {source}")]
    Generate { what: String, source: rcgen::Error },
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    EcdsaP256,
    EcdsaP384,
}

impl KeyAlgorithm {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ECDSA-P256" | "ECDSA" => Some(KeyAlgorithm::EcdsaP256),
            "ECDSA-P384" => Some(KeyAlgorithm::EcdsaP384),
            _ => None,
        }
    }

    pub fn generate(self) -> Result<KeyPair> {
        let alg = match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        };
        KeyPair::generate_for(alg).map_err(|source| Error::Generate { what: "private key".into(), source })
    }
}

/// A certificate's purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    ServerAndClient,
}

/// Subject alternative names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AltNames {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl AltNames {
    /// Adds a name or address (deduplicated), as upstream's `appendSANsToAltNames`.
    pub fn add(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        match s.parse::<IpAddr>() {
            Ok(ip) if !self.ips.contains(&ip) => self.ips.push(ip),
            Ok(_) => {}
            Err(_) if !self.dns.iter().any(|d| d == s) => self.dns.push(s.to_string()),
            Err(_) => {}
        }
    }
}

/// What a certificate says: CN, O, SANs, usages and lifetime.
#[derive(Clone, Debug)]
pub struct CertConfig {
    pub common_name: String,
    pub organization: Vec<String>,
    pub alt_names: AltNames,
    pub usage: Usage,
    pub validity: Duration,
}

fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b[0] &= 0x7f;
    b[0] |= 0x01;
    SerialNumber::from_slice(&b)
}

/// Seconds since the epoch as the `time` crate's date rcgen takes (not re-exported by rcgen).
fn epoch_plus(t: jiff::Timestamp) -> Duration {
    Duration::from_secs(t.as_second().max(0) as u64)
}

fn params(cfg: &CertConfig, now: jiff::Timestamp, not_after_cap: Option<jiff::Timestamp>) -> Result<CertificateParams> {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    for o in &cfg.organization {
        p.distinguished_name.push(DnType::OrganizationName, o.as_str());
    }
    p.distinguished_name.push(DnType::CommonName, cfg.common_name.as_str());
    for d in &cfg.alt_names.dns {
        let name = d.clone().try_into().map_err(|source| Error::Generate { what: format!("SAN {d:?}"), source })?;
        p.subject_alt_names.push(SanType::DnsName(name));
    }
    for ip in &cfg.alt_names.ips {
        p.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    let start = now - jiff::SignedDuration::from_secs(BACKDATE.as_secs() as i64);
    let mut end = now + jiff::SignedDuration::from_secs(cfg.validity.as_secs() as i64);
    if let Some(cap) = not_after_cap
        && end > cap
    {
        end = cap;
    }
    p.not_before = rcgen::date_time_ymd(1970, 1, 1) + epoch_plus(start);
    p.not_after = rcgen::date_time_ymd(1970, 1, 1) + epoch_plus(end);
    p.serial_number = Some(random_serial());
    Ok(p)
}

/// A CA: its certificate (PEM) and, unless external, its key.
pub struct Ca {
    pub cert_pem: String,
    pub key: Option<KeyPair>,
    pub not_after: jiff::Timestamp,
}

impl Ca {
    /// A new self-signed CA (upstream's `NewSelfSignedCACert`: CertSign, DigitalSignature; CA:TRUE).
    pub fn generate(common_name: &str, validity: Duration, alg: KeyAlgorithm, now: jiff::Timestamp) -> Result<Self> {
        let key = alg.generate()?;
        let cfg = CertConfig {
            common_name: common_name.into(),
            organization: vec![],
            alt_names: AltNames { dns: vec![common_name.to_string()], ips: vec![] },
            usage: Usage::Server,
            validity,
        };
        let mut p = params(&cfg, now, None)?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign];
        let cert = p.self_signed(&key).map_err(|source| Error::Generate { what: common_name.into(), source })?;
        let not_after = parse_cert(cert.pem().as_bytes())?.not_after;
        Ok(Ca { cert_pem: cert.pem(), key: Some(key), not_after })
    }

    /// Loads `<base>.crt` and `<base>.key` (the key may be missing: external CA).
    pub fn load(fs: &dyn Fs, dir: &Path, base: &str) -> Result<Self> {
        let cert_path = dir.join(format!("{base}.crt"));
        let cert_pem = fs.read_string(&cert_path).map_err(|source| Error::Io { path: cert_path.clone(), source })?;
        let parsed = parse_cert(cert_pem.as_bytes())?;
        if !parsed.is_ca {
            return Err(Error::Other(format!("certificate {} is not a CA", cert_path.display())));
        }
        let key_path = dir.join(format!("{base}.key"));
        let key = match fs.read_string(&key_path) {
            Ok(pem) => Some(
                KeyPair::from_pem(&pem)
                    .map_err(|e| Error::Parse { what: key_path.display().to_string(), msg: e.to_string() })?,
            ),
            Err(_) => None,
        };
        Ok(Ca { cert_pem, key, not_after: parsed.not_after })
    }

    /// Signs a new key pair for `cfg` (upstream's `NewSignedCert`: DigitalSignature, the extended usages of
    /// `cfg.usage`, not after the CA).
    pub fn issue(&self, cfg: &CertConfig, alg: KeyAlgorithm, now: jiff::Timestamp) -> Result<(String, KeyPair)> {
        let key = alg.generate()?;
        let cert = self.sign(cfg, &key, now)?;
        Ok((cert, key))
    }

    /// Signs `cfg` for an existing key (renewal keeps the key, as upstream).
    pub fn sign(&self, cfg: &CertConfig, key: &KeyPair, now: jiff::Timestamp) -> Result<String> {
        let ca_key = self.key.as_ref().ok_or_else(|| {
            Error::Other(format!("the CA key of {:?} is not available (external CA)", cfg.common_name))
        })?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)
            .map_err(|source| Error::Generate { what: "the CA issuer".into(), source })?;
        let mut p = params(cfg, now, Some(self.not_after))?;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = match cfg.usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::ServerAndClient => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        };
        p.use_authority_key_identifier_extension = true;
        let cert =
            p.signed_by(key, &issuer).map_err(|source| Error::Generate { what: cfg.common_name.clone(), source })?;
        Ok(cert.pem())
    }
}

/// What `check-expiration` and the tests read back from a certificate.
#[derive(Clone, Debug)]
pub struct ParsedCert {
    pub common_name: String,
    pub organization: Vec<String>,
    pub issuer_cn: String,
    pub alt_names: AltNames,
    pub not_before: jiff::Timestamp,
    pub not_after: jiff::Timestamp,
    pub is_ca: bool,
    pub server_auth: bool,
    pub client_auth: bool,
    /// DER of the SubjectPublicKeyInfo (to match keys and pin CAs).
    pub spki: Vec<u8>,
}

/// Parses the first certificate of a PEM bundle.
pub fn parse_cert(pem: &[u8]) -> Result<ParsedCert> {
    let err = |msg: String| Error::Parse { what: "certificate".into(), msg };
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| err(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| err(e.to_string()))?;
    let cn = |n: &x509_parser::x509::X509Name<'_>| {
        n.iter_common_name().next().and_then(|c| c.as_str().ok()).unwrap_or_default().to_string()
    };
    let mut alt = AltNames::default();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => alt.dns.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                    4 => alt.ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())),
                    16 => alt.ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let (server_auth, client_auth) = match cert.extended_key_usage() {
        Ok(Some(e)) => (e.value.server_auth, e.value.client_auth),
        _ => (false, false),
    };
    let ts = |t: x509_parser::time::ASN1Time| {
        jiff::Timestamp::from_second(t.timestamp()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    };
    Ok(ParsedCert {
        common_name: cn(cert.subject()),
        organization: cert.subject().iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect(),
        issuer_cn: cn(cert.issuer()),
        alt_names: alt,
        not_before: ts(cert.validity().not_before),
        not_after: ts(cert.validity().not_after),
        is_ca: cert.is_ca(),
        server_auth,
        client_auth,
        spki: cert.tbs_certificate.subject_pki.raw.to_vec(),
    })
}

/// The DER SubjectPublicKeyInfo of a key pair.
pub fn key_spki(key: &KeyPair) -> Vec<u8> {
    use rcgen::PublicKeyData;
    key.subject_public_key_info()
}

/// Writes a certificate (0644) and its key (0600) as `<dir>/<base>.crt|.key`.
pub fn write_pair(fs: &dyn Fs, dir: &Path, base: &str, cert_pem: &str, key: &KeyPair) -> Result<()> {
    let c = dir.join(format!("{base}.crt"));
    fs.write(&c, cert_pem.as_bytes(), 0o644).map_err(|source| Error::Io { path: c.clone(), source })?;
    let k = dir.join(format!("{base}.key"));
    fs.write(&k, key.serialize_pem().as_bytes(), 0o600).map_err(|source| Error::Io { path: k.clone(), source })
}

/// A CSR (PEM) for `cfg` and a new key: what `certs generate-csr` writes as `<base>.csr` and `<base>.key`.
pub fn csr(cfg: &CertConfig, key: &KeyPair) -> Result<String> {
    let mut p = params(cfg, jiff::Timestamp::now(), None)?;
    p.serial_number = None;
    let req = p
        .serialize_request(key)
        .map_err(|source| Error::Generate { what: format!("a CSR for {}", cfg.common_name), source })?;
    req.pem().map_err(|source| Error::Generate { what: "CSR PEM".into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_carry_subject_sans_usages_and_lifetimes() {
        let now = jiff::Timestamp::now();
        let ca = Ca::generate("kubernetes", Duration::from_secs(87600 * 3600), KeyAlgorithm::EcdsaP256, now).unwrap();
        let pc = parse_cert(ca.cert_pem.as_bytes()).unwrap();
        assert!(pc.is_ca);
        assert_eq!(pc.common_name, "kubernetes");
        let mut alt = AltNames::default();
        alt.add("kubernetes");
        alt.add("10.96.0.1");
        alt.add("10.96.0.1");
        let cfg = CertConfig {
            common_name: "kube-apiserver".into(),
            organization: vec![],
            alt_names: alt,
            usage: Usage::Server,
            validity: Duration::from_secs(8760 * 3600),
        };
        let (pem, key) = ca.issue(&cfg, KeyAlgorithm::EcdsaP256, now).unwrap();
        let c = parse_cert(pem.as_bytes()).unwrap();
        assert_eq!(c.issuer_cn, "kubernetes");
        assert_eq!(c.alt_names.dns, vec!["kubernetes"]);
        assert_eq!(c.alt_names.ips, vec!["10.96.0.1".parse::<IpAddr>().unwrap()]);
        assert!(c.server_auth && !c.client_auth && !c.is_ca);
        assert_eq!(c.spki, key_spki(&key));
        let life = c.not_after.as_second() - c.not_before.as_second();
        assert_eq!(life, 8760 * 3600 + 300);
        let csr = csr(&cfg, &key).unwrap();
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    }
}
