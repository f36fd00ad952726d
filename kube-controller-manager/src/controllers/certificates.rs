//! What the CertificateSigningRequest controllers share, as upstream's `pkg/controller/certificates` and
//! `pkg/apis/certificates` helpers: the request parsed from `spec.request`, the approval conditions, and the
//! validation of kubelet client and serving requests.

use std::collections::BTreeSet;
use std::net::IpAddr;

use base64::Engine;
use serde_json::{Value, json};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::pki;

pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
pub const KUBE_APISERVER_CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
pub const LEGACY_UNKNOWN: &str = "kubernetes.io/legacy-unknown";

/// A CSR's `status.conditions`.
fn conditions(csr: &Value) -> &[Value] {
    runtime::array(csr, "/status/conditions")
}

/// Upstream's `GetCertApprovalCondition`: whether an Approved and whether a Denied condition is present.
pub fn approval(csr: &Value) -> (bool, bool) {
    let has = |t: &str| conditions(csr).iter().any(|c| c["type"] == t);
    (has("Approved"), has("Denied"))
}

/// Upstream's `IsCertificateRequestApproved`: approved and not denied.
pub fn is_approved(csr: &Value) -> bool {
    let (approved, denied) = approval(csr);
    approved && !denied
}

/// Upstream's `HasTrueCondition`: a condition of the type whose status is True (or unset).
pub fn has_true_condition(csr: &Value, type_: &str) -> bool {
    conditions(csr).iter().any(|c| c["type"] == type_ && matches!(c["status"].as_str(), None | Some("" | "True")))
}

/// The issued certificate (PEM), if any.
pub fn certificate(csr: &Value) -> Option<Vec<u8>> {
    let b64 = csr.pointer("/status/certificate").and_then(Value::as_str).filter(|s| !s.is_empty())?;
    base64::engine::general_purpose::STANDARD.decode(b64).ok().filter(|c| !c.is_empty())
}

pub fn signer_name(csr: &Value) -> &str {
    csr.pointer("/spec/signerName").and_then(Value::as_str).unwrap_or_default()
}

pub fn usages(csr: &Value) -> Vec<String> {
    runtime::array(csr, "/spec/usages").iter().filter_map(Value::as_str).map(str::to_string).collect()
}

/// A condition as the controllers write it, stamped now.
pub fn condition(type_: &str, reason: &str, message: &str) -> Value {
    let now = jiff::Timestamp::now().round(jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default();
    json!({"type": type_, "status": "True", "reason": reason, "message": message,
        "lastUpdateTime": now, "lastTransitionTime": now})
}

/// The parts of an x509 certificate request the controllers look at (Go's `x509.CertificateRequest`).
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The DER of the request.
    pub der: Vec<u8>,
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
}

/// Upstream's `ParseCSR` of a CSR's `spec.request`: the first PEM block, which must be a `CERTIFICATE REQUEST`.
pub fn parse_request(csr: &Value) -> Result<Request, String> {
    let pem = csr
        .pointer("/spec/request")
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_default();
    match pki::pem_blocks(&pem).into_iter().next() {
        Some((label, der)) if label == "CERTIFICATE REQUEST" => parse_der(der),
        _ => Err("PEM block type must be CERTIFICATE REQUEST".into()),
    }
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Parses a DER certificate request.
pub fn parse_der(der: Vec<u8>) -> Result<Request, String> {
    let (_, cr) = X509CertificationRequest::from_der(&der).map_err(|e| format!("x509: {e}"))?;
    let info = &cr.certification_request_info;
    let mut req = Request::default();
    for attr in info.subject.iter_attributes() {
        let value = attr.as_str().map(str::to_string).unwrap_or_default();
        match attr.attr_type().to_id_string().as_str() {
            // Go keeps the last common name and every organization.
            "2.5.4.3" => req.common_name = value,
            "2.5.4.10" => req.organizations.push(value),
            _ => {}
        }
    }
    for ext in cr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(n) => req.dns_names.push(n.to_string()),
                    GeneralName::RFC822Name(n) => req.emails.push(n.to_string()),
                    GeneralName::URI(n) => req.uris.push(n.to_string()),
                    GeneralName::IPAddress(b) => req.ip_addresses.extend(ip_from_bytes(b)),
                    _ => {}
                }
            }
        }
    }
    req.der = der;
    Ok(req)
}

fn set(usages: &[&str]) -> BTreeSet<String> {
    usages.iter().map(|u| u.to_string()).collect()
}

/// Go's `%v` of a sorted string list: `[a b c]`.
fn listed(usages: &BTreeSet<String>) -> String {
    format!("[{}]", usages.iter().map(String::as_str).collect::<Vec<_>>().join(" "))
}

fn organization_is_system_nodes(req: &Request) -> Result<(), String> {
    if req.organizations != ["system:nodes"] {
        return Err("subject organization is not system:nodes".into());
    }
    Ok(())
}

fn common_name_is_node(req: &Request) -> Result<(), String> {
    if !req.common_name.starts_with("system:node:") {
        return Err("subject common name does not begin with system:node:".into());
    }
    Ok(())
}

/// Upstream's `ValidateKubeletServingCSR`.
pub fn validate_kubelet_serving(req: &Request, usages: &[String]) -> Result<(), String> {
    organization_is_system_nodes(req)?;
    if req.dns_names.is_empty() && req.ip_addresses.is_empty() {
        return Err("DNS or IP subjectAltName is required".into());
    }
    if !req.emails.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !req.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    let required = set(&["digital signature", "key encipherment", "server auth"]);
    let required_no_rsa = set(&["digital signature", "server auth"]);
    let have: BTreeSet<String> = usages.iter().cloned().collect();
    if have != required && have != required_no_rsa {
        return Err(format!("usages did not match {}", listed(&required)));
    }
    common_name_is_node(req)
}

/// Upstream's `ValidateKubeletClientCSR`.
pub fn validate_kubelet_client(req: &Request, usages: &[String]) -> Result<(), String> {
    organization_is_system_nodes(req)?;
    if !req.dns_names.is_empty() {
        return Err("DNS subjectAltNames are not allowed".into());
    }
    if !req.emails.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !req.ip_addresses.is_empty() {
        return Err("IP subjectAltNames are not allowed".into());
    }
    if !req.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    common_name_is_node(req)?;
    let required = set(&["client auth", "digital signature", "key encipherment"]);
    let required_no_rsa = set(&["client auth", "digital signature"]);
    let have: BTreeSet<String> = usages.iter().cloned().collect();
    if have != required && have != required_no_rsa {
        return Err(format!("usages did not match {}", listed(&required)));
    }
    Ok(())
}

/// Upstream's `validAPIServerClientUsages`: `client auth`, optionally `digital signature` and `key encipherment`.
pub fn validate_apiserver_client_usages(usages: &[String]) -> Result<(), String> {
    let mut client_auth = false;
    for u in usages {
        match u.as_str() {
            "digital signature" | "key encipherment" => {}
            "client auth" => client_auth = true,
            other => return Err(format!("invalid usage for client certificate: {other}")),
        }
    }
    if !client_auth {
        return Err("missing required usage for client certificate: client auth".into());
    }
    Ok(())
}

#[cfg(test)]
pub mod testing {
    //! Certificate requests for the tests, built with rcgen.

    use base64::Engine;
    use serde_json::{Value, json};

    /// What a test request carries.
    #[derive(Default, Clone)]
    pub struct RequestBuilder {
        pub cn: String,
        pub orgs: Vec<String>,
        pub dns: Vec<String>,
        pub ips: Vec<std::net::IpAddr>,
        pub emails: Vec<String>,
    }

    impl RequestBuilder {
        /// The PEM of a request signed by a new P-256 key.
        pub fn pem(&self) -> String {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let mut params = rcgen::CertificateParams::default();
            params.distinguished_name = rcgen::DistinguishedName::new();
            if !self.cn.is_empty() {
                params.distinguished_name.push(rcgen::DnType::CommonName, self.cn.as_str());
            }
            for (i, o) in self.orgs.iter().enumerate() {
                let ty = if i == 0 {
                    rcgen::DnType::OrganizationName
                } else {
                    rcgen::DnType::CustomDnType(vec![2, 5, 4, 10])
                };
                params.distinguished_name.push(ty, o.as_str());
            }
            for d in &self.dns {
                params.subject_alt_names.push(rcgen::SanType::DnsName(d.as_str().try_into().unwrap()));
            }
            for ip in &self.ips {
                params.subject_alt_names.push(rcgen::SanType::IpAddress(*ip));
            }
            for e in &self.emails {
                params.subject_alt_names.push(rcgen::SanType::Rfc822Name(e.as_str().try_into().unwrap()));
            }
            params.serialize_request(&key).unwrap().pem().unwrap()
        }

        /// A CSR object for this request.
        pub fn csr(&self, signer: &str, usages: &[&str]) -> Value {
            let request = base64::engine::general_purpose::STANDARD.encode(self.pem());
            json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                "metadata": {"name": "csr"},
                "spec": {"request": request, "signerName": signer, "usages": usages},
                "status": {}})
        }
    }

    pub fn node_client(cn: &str) -> RequestBuilder {
        RequestBuilder { cn: cn.into(), orgs: vec!["system:nodes".into()], ..Default::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn usages(u: &[&str]) -> Vec<String> {
        u.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn requests_parse_as_go_reads_them() {
        let mut b = node_client("system:node:a");
        b.dns = vec!["a.example".into()];
        b.ips = vec!["10.0.0.1".parse().unwrap()];
        let csr = b.csr(KUBELET_SERVING, &[]);
        let req = parse_request(&csr).unwrap();
        assert_eq!(req.common_name, "system:node:a");
        assert_eq!(req.organizations, ["system:nodes"]);
        assert_eq!(req.dns_names, ["a.example"]);
        assert_eq!(req.ip_addresses, ["10.0.0.1".parse::<IpAddr>().unwrap()]);

        let not_csr = json!({"spec": {"request": base64::engine::general_purpose::STANDARD.encode(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")}});
        assert_eq!(parse_request(&not_csr).unwrap_err(), "PEM block type must be CERTIFICATE REQUEST");
        assert!(parse_request(&json!({})).is_err());
    }

    #[test]
    fn kubelet_client_requests_as_upstream() {
        let client = usages(&["key encipherment", "digital signature", "client auth"]);
        let ok = node_client("system:node:foo");
        let parse = |b: &RequestBuilder| parse_request(&b.csr(KUBE_APISERVER_CLIENT_KUBELET, &[])).unwrap();
        assert_eq!(validate_kubelet_client(&parse(&ok), &client), Ok(()));
        assert_eq!(validate_kubelet_client(&parse(&ok), &usages(&["digital signature", "client auth"])), Ok(()));

        let mut cn = ok.clone();
        cn.cn = "mike".into();
        assert_eq!(
            validate_kubelet_client(&parse(&cn), &client).unwrap_err(),
            "subject common name does not begin with system:node:"
        );
        let mut no_org = ok.clone();
        no_org.orgs = vec![];
        assert_eq!(
            validate_kubelet_client(&parse(&no_org), &client).unwrap_err(),
            "subject organization is not system:nodes"
        );
        let mut masters = ok.clone();
        masters.orgs = vec!["system:master".into()];
        assert!(validate_kubelet_client(&parse(&masters), &client).is_err());
        let mut two_orgs = ok.clone();
        two_orgs.orgs.push("other".into());
        assert!(validate_kubelet_client(&parse(&two_orgs), &client).is_err());
        let mut dns = ok.clone();
        dns.dns = vec!["x".into()];
        assert_eq!(validate_kubelet_client(&parse(&dns), &client).unwrap_err(), "DNS subjectAltNames are not allowed");
        let mut ip = ok.clone();
        ip.ips = vec!["10.0.0.1".parse().unwrap()];
        assert_eq!(validate_kubelet_client(&parse(&ip), &client).unwrap_err(), "IP subjectAltNames are not allowed");
        let mut email = ok.clone();
        email.emails = vec!["a@b.c".into()];
        assert_eq!(
            validate_kubelet_client(&parse(&email), &client).unwrap_err(),
            "Email subjectAltNames are not allowed"
        );
        let server = usages(&["key encipherment", "digital signature", "client auth", "server auth"]);
        assert_eq!(
            validate_kubelet_client(&parse(&ok), &server).unwrap_err(),
            "usages did not match [client auth digital signature key encipherment]"
        );
    }

    #[test]
    fn kubelet_serving_requests_as_upstream() {
        let serving = usages(&["server auth", "digital signature", "key encipherment"]);
        let mut ok = node_client("system:node:testnode");
        ok.dns = vec!["example.com".into()];
        let parse = |b: &RequestBuilder| parse_request(&b.csr(KUBELET_SERVING, &[])).unwrap();
        assert_eq!(validate_kubelet_serving(&parse(&ok), &serving), Ok(()));
        assert_eq!(validate_kubelet_serving(&parse(&ok), &usages(&["server auth", "digital signature"])), Ok(()));
        let mut no_san = ok.clone();
        no_san.dns = vec![];
        assert_eq!(
            validate_kubelet_serving(&parse(&no_san), &serving).unwrap_err(),
            "DNS or IP subjectAltName is required"
        );
        let mut ip_only = no_san.clone();
        ip_only.ips = vec!["10.0.0.1".parse().unwrap()];
        assert_eq!(validate_kubelet_serving(&parse(&ip_only), &serving), Ok(()));
        assert_eq!(
            validate_kubelet_serving(&parse(&ok), &usages(&["client auth", "digital signature"])).unwrap_err(),
            "usages did not match [digital signature key encipherment server auth]"
        );
        let mut cn = ok.clone();
        cn.cn = "testnode".into();
        assert_eq!(
            validate_kubelet_serving(&parse(&cn), &serving).unwrap_err(),
            "subject common name does not begin with system:node:"
        );
    }

    #[test]
    fn apiserver_client_usages_as_upstream() {
        assert_eq!(
            validate_apiserver_client_usages(&usages(&["client auth", "digital signature", "key encipherment"])),
            Ok(())
        );
        assert_eq!(
            validate_apiserver_client_usages(&usages(&["server auth", "client auth"])).unwrap_err(),
            "invalid usage for client certificate: server auth"
        );
        assert_eq!(
            validate_apiserver_client_usages(&usages(&["digital signature"])).unwrap_err(),
            "missing required usage for client certificate: client auth"
        );
    }

    #[test]
    fn approval_conditions() {
        let csr = |conds: Value| json!({"status": {"conditions": conds}});
        assert!(!is_approved(&csr(json!([]))));
        assert!(is_approved(&csr(json!([{"type": "Approved", "status": "True"}]))));
        assert!(!is_approved(&csr(json!([{"type": "Approved"}, {"type": "Denied"}]))));
        assert!(has_true_condition(&csr(json!([{"type": "Failed"}])), "Failed"));
        assert!(!has_true_condition(&csr(json!([{"type": "Failed", "status": "False"}])), "Failed"));
    }
}
