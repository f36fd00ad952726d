//! `csrsigning`: signs approved CertificateSigningRequests of the `kubernetes.io` signers with a CA on disk, as
//! upstream's `pkg/controller/certificates/signer`.
//!
//! One signer per signer name (`kube-apiserver-client`, `kube-apiserver-client-kubelet`, `kubelet-serving`,
//! `legacy-unknown`), each with `--cluster-signing-cert-file`/`--cluster-signing-key-file` or, when any
//! per-signer file is given, its own `--cluster-signing-<signer>-{cert,key}-file` (the two styles exclude each
//! other; with neither the controller is skipped). A request that is approved (and not denied), not failed and not
//! yet issued is validated as its signer requires; an invalid one gets a `Failed` condition (reason
//! `SignerValidationFailure`, the validation error as message), a valid one `status.certificate`, both through
//! `/status`. Certificates live `--cluster-signing-duration`, or `spec.expirationSeconds` when shorter (at least
//! 10 minutes); they start 5 minutes in the past, long-lived ones (8 h or more) end 5 minutes early, and none
//! outlives the CA. Requested usages become the key usage and extended key usage extensions; the request's other
//! extensions are dropped, SANs (DNS, IP, email, URI) and the subject are kept.
//!
//! Deliberate gaps: the CA files are read once at start (upstream reloads them when they change); a subject with
//! more than two values of one attribute type cannot be encoded (rcgen keeps one value per type, and a second as a
//! custom type of the same OID).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use runtime::{Action, Controller, Notification};
use serde_json::{Value, json};
use tokio::sync::watch;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::controllers::certificates::{self as csrs, Request};
use crate::options::Options;
use crate::pki::{self, PrivateKey};
use crate::{BoxError, Context, stopped};

/// Backdating of NotBefore; always below the shortest duration a request may ask for.
pub const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// Certificates shorter than this are not shortened by the backdate at their end.
pub const SHORT: Duration = Duration::from_secs(8 * 3600);
/// The shortest duration honoured from `spec.expirationSeconds`.
pub const MIN_DURATION: Duration = Duration::from_secs(10 * 60);

/// A CA on disk: its certificate and key.
pub struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    not_after: jiff::Timestamp,
}

impl Ca {
    pub fn load(cert_file: &std::path::Path, key_file: &std::path::Path) -> Result<Ca, String> {
        let cert_pem =
            std::fs::read(cert_file).map_err(|e| format!("error reading CA cert file {cert_file:?}: {e}"))?;
        let key_pem = std::fs::read(key_file).map_err(|e| format!("error reading CA key file {key_file:?}: {e}"))?;
        Ca::from_pem(&cert_pem, &key_pem)
    }

    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Ca, String> {
        let der = pki::pem_block(cert_pem, "CERTIFICATE").ok_or("the CA file holds no certificate")?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| format!("parsing the CA: {e}"))?;
        let not_after = jiff::Timestamp::from_second(cert.validity().not_after.timestamp())
            .map_err(|e| format!("the CA's NotAfter: {e}"))?;
        let key = PrivateKey::from_pem(key_pem)?.key_pair()?;
        let issuer =
            rcgen::Issuer::from_ca_cert_der(&der.as_slice().into(), key).map_err(|e| format!("loading the CA: {e}"))?;
        Ok(Ca { issuer, not_after })
    }
}

/// What the signer does with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not this signer's, not approved, failed or already issued.
    Ignore,
    /// Invalid for this signer: the message of the `Failed` condition.
    Failed(String),
    /// The issued certificate, PEM.
    Signed(String),
}

/// One signer (upstream's `signer`): a signer name, its CA and the longest certificate it issues.
pub struct Signer {
    pub signer_name: &'static str,
    ca: Ca,
    cert_ttl: Duration,
}

/// The signer names this controller serves.
pub const SIGNERS: [&str; 4] =
    [csrs::KUBELET_SERVING, csrs::KUBE_APISERVER_CLIENT_KUBELET, csrs::KUBE_APISERVER_CLIENT, csrs::LEGACY_UNKNOWN];

impl Signer {
    pub fn new(signer_name: &str, ca: Ca, cert_ttl: Duration) -> Result<Signer, String> {
        let signer_name = SIGNERS
            .into_iter()
            .find(|s| *s == signer_name)
            .ok_or(format!("unrecognized signerName: {signer_name:?}"))?;
        Ok(Signer { signer_name, ca, cert_ttl })
    }

    /// Upstream's `duration`: the requested duration when shorter than the TTL, at least 10 minutes.
    pub fn duration(&self, expiration_seconds: Option<i64>) -> Duration {
        let Some(secs) = expiration_seconds else { return self.cert_ttl };
        let requested = Duration::from_secs(secs.max(0) as u64);
        if requested > self.cert_ttl {
            self.cert_ttl
        } else if requested < MIN_DURATION {
            MIN_DURATION
        } else {
            requested
        }
    }

    /// The per-signer check (upstream's `isRequestForSignerFn`).
    fn validate(&self, req: &Request, usages: &[String]) -> Result<(), String> {
        match self.signer_name {
            csrs::KUBELET_SERVING => csrs::validate_kubelet_serving(req, usages),
            csrs::KUBE_APISERVER_CLIENT_KUBELET => csrs::validate_kubelet_client(req, usages),
            csrs::KUBE_APISERVER_CLIENT => csrs::validate_apiserver_client_usages(usages),
            // No restrictions on legacy-unknown, for compatibility.
            _ => Ok(()),
        }
    }

    /// Upstream's `handle`, without the write.
    pub fn handle(&self, csr: &Value, now: jiff::Timestamp) -> Result<Outcome, String> {
        if csrs::certificate(csr).is_some()
            || !csrs::is_approved(csr)
            || csrs::has_true_condition(csr, "Failed")
            || csrs::signer_name(csr) != self.signer_name
        {
            return Ok(Outcome::Ignore);
        }
        let req = csrs::parse_request(csr).map_err(|e| format!("unable to parse csr {:?}: {e}", runtime::name(csr)))?;
        let usages = csrs::usages(csr);
        if let Err(message) = self.validate(&req, &usages) {
            return Ok(Outcome::Failed(message));
        }
        let expiration = csr.pointer("/spec/expirationSeconds").and_then(Value::as_i64);
        self.sign(&req.der, &usages, expiration, now)
            .map(Outcome::Signed)
            .map_err(|e| format!("error auto signing csr: {e}"))
    }

    /// Issues a certificate for the DER request (upstream's `sign` with the `PermissiveSigningPolicy`).
    pub fn sign(
        &self,
        request_der: &[u8],
        usages: &[String],
        expiration_seconds: Option<i64>,
        now: jiff::Timestamp,
    ) -> Result<String, String> {
        let (_, cr) = X509CertificationRequest::from_der(request_der)
            .map_err(|e| format!("unable to parse certificate request: {e}"))?;
        cr.verify_signature().map_err(|e| format!("unable to verify certificate request signature: {e}"))?;
        let info = &cr.certification_request_info;

        let mut params = rcgen::CertificateParams::default();
        params.serial_number = Some(serial()?);
        params.distinguished_name = distinguished_name(&info.subject)?;
        params.subject_alt_names = subject_alt_names(&cr)?;
        let (key_usages, extended) = key_usages(usages)?;
        params.key_usages = key_usages;
        params.extended_key_usages = extended;
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;

        let (not_before, not_after) = self.validity(expiration_seconds, now)?;
        // rcgen's time type, reached from its one constructor (midnight of a date); whole seconds are enough.
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        let since_epoch = |t: jiff::Timestamp| Duration::from_secs(t.as_second().max(0) as u64);
        params.not_before = epoch + since_epoch(not_before);
        params.not_after = epoch + since_epoch(not_after);

        let public_key = rcgen::SubjectPublicKeyInfo::from_der(info.subject_pki.raw)
            .map_err(|e| format!("unsupported public key: {e}"))?;
        let cert =
            params.signed_by(&public_key, &self.ca.issuer).map_err(|e| format!("failed to sign certificate: {e}"))?;
        Ok(cert.pem())
    }

    /// NotBefore and NotAfter, as the permissive signing policy sets them.
    fn validity(
        &self,
        expiration_seconds: Option<i64>,
        now: jiff::Timestamp,
    ) -> Result<(jiff::Timestamp, jiff::Timestamp), String> {
        let ttl = self.duration(expiration_seconds);
        let span = |d: Duration| jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
        let not_before = now - span(BACKDATE);
        let mut not_after = if ttl < SHORT { now + span(ttl) } else { now + span(ttl) - span(BACKDATE) };
        let ca_not_after = self.ca.not_after;
        if not_after >= ca_not_after {
            not_after = ca_not_after;
        }
        if not_before >= ca_not_after {
            return Err(format!("the signer has expired: NotAfter={ca_not_after}"));
        }
        if now >= ca_not_after {
            return Err(format!("refusing to sign a certificate that expired in the past: NotAfter={ca_not_after}"));
        }
        Ok((not_before, not_after))
    }
}

/// A random positive serial below 2^128.
fn serial() -> Result<rcgen::SerialNumber, String> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| "unable to generate a serial number".to_string())?;
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}

/// The request's subject, attribute by attribute (a second value of a type goes in as a custom type of the same
/// OID, which encodes identically).
fn distinguished_name(subject: &x509_parser::x509::X509Name<'_>) -> Result<rcgen::DistinguishedName, String> {
    use x509_parser::der_parser::asn1_rs::Tag;
    let mut dn = rcgen::DistinguishedName::new();
    for attr in subject.iter_attributes() {
        let oid: Vec<u64> = attr.attr_type().iter().ok_or("subject attribute with an oversized OID")?.collect();
        let text = attr.as_str().map_err(|e| format!("subject attribute {}: {e}", attr.attr_type()))?;
        let value = match attr.attr_value().header.tag() {
            Tag::PrintableString => rcgen::DnValue::PrintableString(text.try_into().map_err(|e| format!("{e}"))?),
            Tag::Ia5String => rcgen::DnValue::Ia5String(text.try_into().map_err(|e| format!("{e}"))?),
            _ => rcgen::DnValue::Utf8String(text.to_string()),
        };
        let named = rcgen::DnType::from_oid(&oid);
        let ty = if dn.get(&named).is_none() {
            named
        } else {
            let custom = rcgen::DnType::CustomDnType(oid);
            if dn.get(&custom).is_some() {
                return Err(format!(
                    "more than two values of subject attribute {} are not supported",
                    attr.attr_type()
                ));
            }
            custom
        };
        dn.push(ty, value);
    }
    Ok(dn)
}

/// The DNS, IP, email and URI names of the request (Go's template copies exactly these).
fn subject_alt_names(cr: &X509CertificationRequest<'_>) -> Result<Vec<rcgen::SanType>, String> {
    let mut sans = Vec::new();
    for ext in cr.requested_extensions().into_iter().flatten() {
        let ParsedExtension::SubjectAlternativeName(san) = ext else { continue };
        for name in &san.general_names {
            let ia5 = |s: &str| rcgen::string::Ia5String::try_from(s).map_err(|e| format!("subjectAltName {s:?}: {e}"));
            sans.push(match name {
                GeneralName::DNSName(n) => rcgen::SanType::DnsName(ia5(n)?),
                GeneralName::RFC822Name(n) => rcgen::SanType::Rfc822Name(ia5(n)?),
                GeneralName::URI(n) => rcgen::SanType::URI(ia5(n)?),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => rcgen::SanType::IpAddress(<[u8; 4]>::try_from(*b).map_err(|e| e.to_string())?.into()),
                    16 => rcgen::SanType::IpAddress(<[u8; 16]>::try_from(*b).map_err(|e| e.to_string())?.into()),
                    _ => continue,
                },
                _ => continue,
            });
        }
    }
    Ok(sans)
}

/// Upstream's `keyUsagesFromStrings`: key usages, and extended key usages ordered as Go numbers them.
pub fn key_usages(
    usages: &[String],
) -> Result<(Vec<rcgen::KeyUsagePurpose>, Vec<rcgen::ExtendedKeyUsagePurpose>), String> {
    use rcgen::ExtendedKeyUsagePurpose as E;
    use rcgen::KeyUsagePurpose as K;
    let mut key = Vec::new();
    let mut ext: Vec<(u8, E)> = Vec::new();
    let mut unrecognized = Vec::new();
    for u in usages {
        let k = match u.as_str() {
            "signing" | "digital signature" => Some(K::DigitalSignature),
            "content commitment" => Some(K::ContentCommitment),
            "key encipherment" => Some(K::KeyEncipherment),
            "key agreement" => Some(K::KeyAgreement),
            "data encipherment" => Some(K::DataEncipherment),
            "cert sign" => Some(K::KeyCertSign),
            "crl sign" => Some(K::CrlSign),
            "encipher only" => Some(K::EncipherOnly),
            "decipher only" => Some(K::DecipherOnly),
            _ => None,
        };
        if let Some(k) = k {
            if !key.contains(&k) {
                key.push(k);
            }
            continue;
        }
        let e = match u.as_str() {
            "any" => Some((0, E::Any)),
            "server auth" => Some((1, E::ServerAuth)),
            "client auth" => Some((2, E::ClientAuth)),
            "code signing" => Some((3, E::CodeSigning)),
            "email protection" | "s/mime" => Some((4, E::EmailProtection)),
            "ipsec end system" => Some((5, E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 5]))),
            "ipsec tunnel" => Some((6, E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 6]))),
            "ipsec user" => Some((7, E::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 7]))),
            "timestamping" => Some((8, E::TimeStamping)),
            "ocsp signing" => Some((9, E::OcspSigning)),
            "microsoft sgc" => Some((10, E::Other(vec![1, 3, 6, 1, 4, 1, 311, 10, 3, 3]))),
            "netscape sgc" => Some((11, E::Other(vec![2, 16, 840, 1, 113730, 4, 1]))),
            _ => None,
        };
        match e {
            Some(e) if !ext.iter().any(|(n, _)| *n == e.0) => ext.push(e),
            Some(_) => {}
            None => unrecognized.push(format!("{u:?}")),
        }
    }
    if !unrecognized.is_empty() {
        return Err(format!("unrecognized usage values: [{}]", unrecognized.join(" ")));
    }
    ext.sort_by_key(|(n, _)| *n);
    Ok((key, ext.into_iter().map(|(_, e)| e).collect()))
}

/// The signers `--cluster-signing-*` configure, as upstream's `startCSRSigningController`: None when no CA is
/// configured (the controller is skipped).
pub fn signers_from_options(o: &Options) -> Result<Option<Vec<Signer>>, String> {
    let specific = [
        (
            csrs::KUBELET_SERVING,
            &o.cluster_signing_kubelet_serving_cert_file,
            &o.cluster_signing_kubelet_serving_key_file,
        ),
        (
            csrs::KUBE_APISERVER_CLIENT_KUBELET,
            &o.cluster_signing_kubelet_client_cert_file,
            &o.cluster_signing_kubelet_client_key_file,
        ),
        (
            csrs::KUBE_APISERVER_CLIENT,
            &o.cluster_signing_kube_apiserver_client_cert_file,
            &o.cluster_signing_kube_apiserver_client_key_file,
        ),
        (csrs::LEGACY_UNKNOWN, &o.cluster_signing_legacy_unknown_cert_file, &o.cluster_signing_legacy_unknown_key_file),
    ];
    let any_specific = specific.iter().any(|(_, c, k)| c.is_some() || k.is_some());
    let missing_single = o.cluster_signing_cert_file.is_none() || o.cluster_signing_key_file.is_none();
    if missing_single && !any_specific {
        return Ok(None);
    }
    if !missing_single && any_specific {
        return Err("cannot specify default and per controller certs at the same time".into());
    }
    let mut signers = Vec::new();
    for (name, cert, key) in specific {
        let (cert, key) = if any_specific {
            (cert.clone(), key.clone())
        } else {
            (o.cluster_signing_cert_file.clone(), o.cluster_signing_key_file.clone())
        };
        if cert.is_none() && key.is_none() {
            tracing::info!(signer = name, "csrsigning: specific files were given for other signers and not this one");
            continue;
        }
        let (cert, key) = (cert.unwrap_or_default(), key.unwrap_or_default());
        let ca = Ca::load(&cert, &key).map_err(|e| format!("failed to start {name} certificate controller: {e}"))?;
        signers.push(Signer::new(name, ca, o.cluster_signing_duration)?);
    }
    Ok(Some(signers))
}

async fn sync(ctx: &Context, signers: &[Signer], csr: &Value) -> Result<Action, BoxError> {
    let Some(signer) = signers.iter().find(|s| s.signer_name == csrs::signer_name(csr)) else {
        return Ok(Action::Done);
    };
    let mut updated = csr.clone();
    match signer.handle(csr, jiff::Timestamp::now())? {
        Outcome::Ignore => return Ok(Action::Done),
        Outcome::Failed(message) => {
            tracing::info!(csr = runtime::name(csr), %message, "csrsigning: request failed validation");
            let mut conditions = csrs_conditions(csr);
            conditions.push(csrs::condition("Failed", "SignerValidationFailure", &message));
            updated["status"]["conditions"] = json!(conditions);
        }
        Outcome::Signed(pem) => {
            updated["status"]["certificate"] = json!(base64::engine::general_purpose::STANDARD.encode(pem));
        }
    }
    let api = ctx.api("certificates.k8s.io", "v1", "certificatesigningrequests");
    match api.replace_status(runtime::name(csr), &updated).await {
        Ok(_) => Ok(Action::Done),
        // Changed or gone meanwhile: the informer brings the new state.
        Err(e) if matches!(e.code(), Some(404 | 409)) => Ok(Action::Done),
        Err(e) => Err(format!("error updating signature for csr: {e}").into()),
    }
}

fn csrs_conditions(csr: &Value) -> Vec<Value> {
    runtime::array(csr, "/status/conditions").to_vec()
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let signers = match signers_from_options(&ctx.options) {
        Ok(Some(s)) => Arc::new(s),
        Ok(None) => {
            tracing::info!("csrsigning: skipping, because no csr cert/key was specified");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "csrsigning: not started");
            return;
        }
    };
    let csrs = ctx.informer("certificates.k8s.io", "v1", "certificatesigningrequests");
    let c = ctx.clone();
    Controller::new(runtime::controller::Config { workers: 5, ..Default::default() })
        .watches(&csrs, |n| match n {
            Notification::Deleted(_) => vec![],
            _ => vec![n.key()],
        })
        .run(
            move |key: String| {
                let (c, csrs, signers) = (c.clone(), csrs.clone(), signers.clone());
                async move {
                    let Some(csr) = csrs.store().get_by_key(&key) else { return Ok::<_, BoxError>(Action::Done) };
                    sync(&c, &signers, &csr).await
                }
            },
            stopped(stop),
        )
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::certificates::testing::{RequestBuilder, node_client};

    const RSA_CA_CRT: &str = include_str!("../../testdata/rsa-ca.crt");
    const RSA_CA_KEY: &str = include_str!("../../testdata/rsa-ca.key");

    fn rsa_ca() -> Ca {
        Ca::from_pem(RSA_CA_CRT.as_bytes(), RSA_CA_KEY.as_bytes()).unwrap()
    }

    fn ec_ca() -> (Ca, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2090, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        (Ca::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap(), cert.pem())
    }

    fn now() -> jiff::Timestamp {
        "2026-03-01T12:00:00Z".parse().unwrap()
    }

    fn parse(pem: &str) -> Vec<u8> {
        pki::pem_block(pem.as_bytes(), "CERTIFICATE").unwrap()
    }

    #[test]
    fn signs_as_upstream_test_signer() {
        let s = Signer::new(csrs::LEGACY_UNKNOWN, rsa_ca(), Duration::from_secs(3600)).unwrap();
        let mut b = node_client("system:node:k-a-node-s36b");
        b.dns = vec!["node.example".into()];
        let req = csrs::parse_request(&b.csr(csrs::LEGACY_UNKNOWN, &[])).unwrap();
        let usages: Vec<String> =
            ["signing", "key encipherment", "server auth", "client auth"].iter().map(|s| s.to_string()).collect();
        // Asking for longer than the TTL is ignored.
        let pem = s.sign(&req.der, &usages, Some(3 * 3600), now()).unwrap();
        let der = parse(&pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(cert.version(), x509_parser::x509::X509Version::V3);
        assert_eq!(cert.subject().iter_common_name().next().unwrap().as_str().unwrap(), "system:node:k-a-node-s36b");
        assert_eq!(cert.subject().iter_organization().next().unwrap().as_str().unwrap(), "system:nodes");
        assert_eq!(cert.issuer().to_string(), "CN=rsa-test-ca");
        assert_eq!(cert.validity().not_before.timestamp(), now().as_second() - 300);
        assert_eq!(cert.validity().not_after.timestamp(), now().as_second() + 3600);
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        assert!(ku.value.digital_signature() && ku.value.key_encipherment() && !ku.value.key_cert_sign());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth && !eku.code_signing);
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(!bc.value.ca);
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names, vec![GeneralName::DNSName("node.example")]);
        assert_eq!(
            cert.signature_algorithm.algorithm,
            x509_parser::oid_registry::OID_PKCS1_SHA256WITHRSA,
            "signed by the RSA CA"
        );
        // The CA verifies it.
        let ca_der = parse(RSA_CA_CRT);
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        cert.verify_signature(Some(ca.public_key())).unwrap();
        assert_eq!(cert.issuer().as_raw(), ca.subject().as_raw());
    }

    #[test]
    fn long_lived_certificates_end_early_and_never_outlive_the_ca() {
        let (ca, ca_pem) = ec_ca();
        let s = Signer::new(csrs::KUBE_APISERVER_CLIENT, ca, Duration::from_secs(8760 * 3600)).unwrap();
        let req = csrs::parse_request(&RequestBuilder { cn: "u".into(), ..Default::default() }.csr("", &[])).unwrap();
        let usages = vec!["client auth".to_string()];
        let pem = s.sign(&req.der, &usages, None, now()).unwrap();
        let der = parse(&pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(cert.validity().not_after.timestamp(), now().as_second() + 8760 * 3600 - 300);
        let ca_der = parse(&ca_pem);
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        cert.verify_signature(Some(ca.public_key())).unwrap();

        let late: jiff::Timestamp = "2089-12-31T12:00:00Z".parse().unwrap();
        let der = parse(&s.sign(&req.der, &usages, None, late).unwrap());
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(cert.validity().not_after, ca.validity().not_after);
        let expired: jiff::Timestamp = "2091-01-01T00:00:00Z".parse().unwrap();
        assert!(s.sign(&req.der, &usages, None, expired).unwrap_err().starts_with("the signer has expired"));
        assert_eq!(
            s.sign(&req.der, &["nonsense".to_string()], None, now()).unwrap_err(),
            r#"unrecognized usage values: ["nonsense"]"#
        );
    }

    #[test]
    fn duration_as_upstream() {
        let s = Signer::new(csrs::LEGACY_UNKNOWN, rsa_ca(), Duration::from_secs(3600)).unwrap();
        assert_eq!(s.duration(Some(30 * 60)), Duration::from_secs(30 * 60));
        assert_eq!(s.duration(Some(3 * 3600)), Duration::from_secs(3600));
        assert_eq!(s.duration(Some(-60)), MIN_DURATION);
        assert_eq!(s.duration(Some(10 * 60 - 1)), MIN_DURATION);
        assert_eq!(s.duration(Some(10 * 60)), MIN_DURATION);
        assert_eq!(s.duration(Some(3600)), Duration::from_secs(3600));
        assert_eq!(s.duration(None), Duration::from_secs(3600));
    }

    fn approved(mut csr: Value, failed: bool) -> Value {
        let mut conds = vec![json!({"type": "Approved", "status": "True"})];
        if failed {
            conds.push(json!({"type": "Failed", "status": "True"}));
        }
        csr["status"]["conditions"] = json!(conds);
        csr
    }

    #[test]
    fn handle_as_upstream() {
        let signer = |name: &str| Signer::new(name, rsa_ca(), Duration::from_secs(3600));
        let signed = |o: Outcome| matches!(o, Outcome::Signed(_));
        let client = ["client auth", "digital signature", "key encipherment"];

        let user = RequestBuilder { cn: "hello-world".into(), orgs: vec!["some-org".into()], ..Default::default() };
        let s = signer(csrs::KUBE_APISERVER_CLIENT).unwrap();
        assert!(signed(s.handle(&approved(user.csr(csrs::KUBE_APISERVER_CLIENT, &client), false), now()).unwrap()));
        let with_server = ["server auth", "client auth", "digital signature", "key encipherment"];
        assert_eq!(
            s.handle(&approved(user.csr(csrs::KUBE_APISERVER_CLIENT, &with_server), false), now()).unwrap(),
            Outcome::Failed("invalid usage for client certificate: server auth".into())
        );
        // Another signer's request is not this signer's business.
        assert_eq!(
            s.handle(&approved(user.csr(csrs::KUBELET_SERVING, &client), false), now()).unwrap(),
            Outcome::Ignore
        );

        let node = node_client("system:node:hello-world");
        let s = signer(csrs::KUBE_APISERVER_CLIENT_KUBELET).unwrap();
        assert!(signed(
            s.handle(&approved(node.csr(csrs::KUBE_APISERVER_CLIENT_KUBELET, &client), false), now()).unwrap()
        ));

        let s = signer(csrs::LEGACY_UNKNOWN).unwrap();
        let empty = RequestBuilder::default();
        assert!(signed(s.handle(&approved(empty.csr(csrs::LEGACY_UNKNOWN, &[]), false), now()).unwrap()));

        let mut serving = node_client("system:node:testnode");
        serving.dns = vec!["example.com".into()];
        let serving_usages = ["server auth", "digital signature", "key encipherment"];
        let s = signer(csrs::KUBELET_SERVING).unwrap();
        let csr = serving.csr(csrs::KUBELET_SERVING, &serving_usages);
        assert!(signed(s.handle(&approved(csr.clone(), false), now()).unwrap()));
        assert_eq!(s.handle(&approved(csr.clone(), true), now()).unwrap(), Outcome::Ignore, "failed");
        assert_eq!(s.handle(&csr, now()).unwrap(), Outcome::Ignore, "not approved");
        let mut denied = approved(csr.clone(), false);
        denied["status"]["conditions"].as_array_mut().unwrap().push(json!({"type": "Denied", "status": "True"}));
        assert_eq!(s.handle(&denied, now()).unwrap(), Outcome::Ignore, "denied");
        let mut issued = approved(csr, false);
        issued["status"]["certificate"] = json!("Y2VydA==");
        assert_eq!(s.handle(&issued, now()).unwrap(), Outcome::Ignore, "already issued");

        for name in ["kubernetes.io/not-recognised", "example.com/sample-name"] {
            assert_eq!(signer(name).err().unwrap(), format!("unrecognized signerName: {name:?}"));
        }
    }

    #[test]
    fn a_subject_keeps_two_organizations_and_its_string_types() {
        let (ca, _) = ec_ca();
        let s = Signer::new(csrs::KUBE_APISERVER_CLIENT, ca, Duration::from_secs(3600)).unwrap();
        let b = RequestBuilder { cn: "jane".into(), orgs: vec!["a".into(), "b".into()], ..Default::default() };
        let req = csrs::parse_request(&b.csr("", &[])).unwrap();
        let der = parse(&s.sign(&req.der, &["client auth".to_string()], None, now()).unwrap());
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let orgs: Vec<_> = cert.subject().iter_organization().map(|o| o.as_str().unwrap()).collect();
        assert_eq!(orgs, ["a", "b"]);
        assert_eq!(
            cert.subject().as_raw(),
            X509CertificationRequest::from_der(&req.der).unwrap().1.certification_request_info.subject.as_raw()
        );
    }

    #[test]
    fn options_choose_the_signers_as_upstream() {
        let dir = std::env::temp_dir().join(format!("csrsigning-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
        std::fs::write(&crt, RSA_CA_CRT).unwrap();
        std::fs::write(&key, RSA_CA_KEY).unwrap();
        let opts = |args: &[String]| {
            <Options as clap::Parser>::parse_from(std::iter::once("kcm".to_string()).chain(args.iter().cloned()))
        };
        let (c, k) = (crt.display(), key.display());
        assert!(signers_from_options(&opts(&[])).unwrap().is_none());
        let all = signers_from_options(&opts(&[
            format!("--cluster-signing-cert-file={c}"),
            format!("--cluster-signing-key-file={k}"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(all.iter().map(|s| s.signer_name).collect::<Vec<_>>(), SIGNERS);
        assert_eq!(all[0].cert_ttl, Duration::from_secs(8760 * 3600));
        let one = signers_from_options(&opts(&[
            format!("--cluster-signing-kubelet-client-cert-file={c}"),
            format!("--cluster-signing-kubelet-client-key-file={k}"),
            "--cluster-signing-duration=1h".into(),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(one.iter().map(|s| s.signer_name).collect::<Vec<_>>(), [csrs::KUBE_APISERVER_CLIENT_KUBELET]);
        assert_eq!(one[0].cert_ttl, Duration::from_secs(3600));
        let both = signers_from_options(&opts(&[
            format!("--cluster-signing-cert-file={c}"),
            format!("--cluster-signing-key-file={k}"),
            format!("--cluster-signing-kubelet-client-cert-file={c}"),
        ]));
        assert_eq!(both.err().unwrap(), "cannot specify default and per controller certs at the same time");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
