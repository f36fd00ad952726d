//! The certificate admission plugins, as upstream's `plugin/pkg/admission/certificates`: CertificateApproval (who
//! may approve or deny a CSR of a signer: the `approve` verb on `signers`), CertificateSigning (who may set
//! `status.certificate`: the `sign` verb), and CertificateSubjectRestriction (no `system:masters` through the
//! `kubernetes.io/kube-apiserver-client` signer).

use api_types::ApiError;
use serde_json::Value;

use super::{Operation, Request};
use crate::authorization::{Attributes, Chain, new_forbidden};

pub const APPROVAL: &str = "CertificateApproval";
pub const SIGNING: &str = "CertificateSigning";
pub const SUBJECT_RESTRICTION: &str = "CertificateSubjectRestriction";

fn signer_name(csr: &Value) -> &str {
    csr.pointer("/spec/signerName").and_then(Value::as_str).unwrap_or_default()
}

fn forbidden(r: &Request<'_>, why: &str) -> ApiError {
    new_forbidden(r.resource.group, r.resource.plural, r.name, why)
}

/// Whether the user holds `verb` on the signer, or on its `domain/*` wildcard (upstream's `IsAuthorizedForSignerName`).
pub fn authorized_for_signer(chain: &Chain, r: &Request<'_>, verb: &str, signer: &str) -> bool {
    let attrs = |name: &str| Attributes {
        user: r.user.clone(),
        verb: verb.into(),
        resource_request: true,
        api_group: "certificates.k8s.io".into(),
        api_version: "*".into(),
        resource: "signers".into(),
        name: name.into(),
        ..Default::default()
    };
    if chain.allows(&attrs(signer)) {
        return true;
    }
    match signer.split_once('/') {
        Some((domain, _)) => chain.allows(&attrs(&format!("{domain}/*"))),
        None => false,
    }
}

/// CertificateApproval: an update of `/approval` that changes the conditions needs `approve` on the signer.
pub fn approval(chain: &Chain, r: &Request<'_>) -> Result<(), ApiError> {
    if r.operation != Operation::Update || r.subresource != "approval" {
        return Ok(());
    }
    let (Some(new), Some(old)) = (r.object, r.old) else { return Ok(()) };
    if new.pointer("/status/conditions") == old.pointer("/status/conditions") {
        return Ok(());
    }
    let signer = signer_name(old);
    if authorized_for_signer(chain, r, "approve", signer) {
        return Ok(());
    }
    Err(forbidden(r, &format!("user not permitted to approve requests with signerName {signer:?}")))
}

/// CertificateSigning: an update of `/status` that changes `status.certificate` needs `sign` on the signer.
pub fn signing(chain: &Chain, r: &Request<'_>) -> Result<(), ApiError> {
    if r.operation != Operation::Update || r.subresource != "status" {
        return Ok(());
    }
    let (Some(new), Some(old)) = (r.object, r.old) else { return Ok(()) };
    if new.pointer("/status/certificate") == old.pointer("/status/certificate") {
        return Ok(());
    }
    let signer = signer_name(old);
    if authorized_for_signer(chain, r, "sign", signer) {
        return Ok(());
    }
    Err(forbidden(r, &format!("user not permitted to sign requests with signerName {signer:?}")))
}

/// CertificateSubjectRestriction: a kube-apiserver-client CSR may not ask for `system:masters`.
pub fn subject_restriction(r: &Request<'_>) -> Result<(), ApiError> {
    if r.operation != Operation::Create {
        return Ok(());
    }
    let Some(csr) = r.object else { return Ok(()) };
    if signer_name(csr) != "kubernetes.io/kube-apiserver-client" {
        return Ok(());
    }
    let Some(organizations) = csr_organizations(csr) else {
        return Err(forbidden(r, "failed to parse CSR"));
    };
    if organizations.iter().any(|o| o == "system:masters") {
        return Err(forbidden(
            r,
            "use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed",
        ));
    }
    Ok(())
}

/// The Organization values of the CSR's subject (None when `spec.request` is not a PEM CSR).
pub fn csr_organizations(csr: &Value) -> Option<Vec<String>> {
    use base64::Engine;
    use x509_parser::prelude::FromDer;
    let b64 = csr.pointer("/spec/request").and_then(Value::as_str)?;
    let pem = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
    let (_, req) = x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents).ok()?;
    Some(
        req.certification_request_info
            .subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(String::from))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::UserInfo;
    use crate::authorization::{Authorizer, Decision, NonResourceRule, ResourceRule};
    use serde_json::json;
    use std::sync::Arc;

    struct Signers(&'static str, &'static str);
    impl Authorizer for Signers {
        fn authorize(&self, a: &Attributes) -> (Decision, String) {
            let ok = a.resource == "signers" && a.verb == self.0 && a.name == self.1;
            (if ok { Decision::Allow } else { Decision::NoOpinion }, String::new())
        }
        fn rules_for(&self, _: &UserInfo, _: &str) -> (Vec<ResourceRule>, Vec<NonResourceRule>, bool) {
            (vec![], vec![], false)
        }
    }

    fn csr_pem(orgs: &[&str]) -> String {
        use base64::Engine;
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "u");
        for o in orgs {
            params.distinguished_name.push(rcgen::DnType::OrganizationName, *o);
        }
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        base64::engine::general_purpose::STANDARD.encode(pem)
    }

    fn request<'a>(
        op: Operation,
        sub: &'a str,
        new: Option<&'a Value>,
        old: Option<&'a Value>,
        user: &'a UserInfo,
    ) -> Request<'a> {
        Request {
            operation: op,
            resource: api_types::resources::find("certificates.k8s.io", "v1", "certificatesigningrequests").unwrap(),
            subresource: sub,
            namespace: "",
            name: "csr1",
            object: new,
            old,
            user,
            dry_run: false,
        }
    }

    #[test]
    fn approval_and_signing_need_the_signer_verbs() {
        let user = UserInfo::authenticated("approver".into(), String::new(), vec![]);
        let old = json!({"spec": {"signerName": "example.com/foo"}, "status": {}});
        let approved =
            json!({"spec": {"signerName": "example.com/foo"}, "status": {"conditions": [{"type": "Approved"}]}});
        let signed = json!({"spec": {"signerName": "example.com/foo"}, "status": {"certificate": "Y2VydA=="}});
        let chain = |verb, name| Chain { authorizers: vec![Arc::new(Signers(verb, name))] };
        let r = request(Operation::Update, "approval", Some(&approved), Some(&old), &user);
        assert!(approval(&chain("approve", "example.com/foo"), &r).is_ok());
        assert!(approval(&chain("approve", "example.com/*"), &r).is_ok(), "the domain wildcard");
        let e = approval(&chain("approve", "other.com/foo"), &r).unwrap_err();
        assert_eq!(
            e.message,
            r#"certificatesigningrequests.certificates.k8s.io "csr1" is forbidden: user not permitted to approve requests with signerName "example.com/foo""#
        );
        let r = request(Operation::Update, "status", Some(&signed), Some(&old), &user);
        assert!(signing(&chain("sign", "example.com/foo"), &r).is_ok());
        assert!(
            signing(&chain("approve", "example.com/foo"), &r).unwrap_err().message.contains("not permitted to sign")
        );
        // Unchanged certificate or conditions: nothing to check.
        let r = request(Operation::Update, "status", Some(&old), Some(&old), &user);
        assert!(signing(&chain("none", ""), &r).is_ok());
    }

    #[test]
    fn no_system_masters_through_the_client_signer() {
        let user = UserInfo::default();
        let csr = |orgs: &[&str], signer: &str| json!({"spec": {"signerName": signer, "request": csr_pem(orgs)}});
        let bad = csr(&["system:masters"], "kubernetes.io/kube-apiserver-client");
        let e = subject_restriction(&request(Operation::Create, "", Some(&bad), None, &user)).unwrap_err();
        assert!(
            e.message.ends_with(
                "use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"
            )
        );
        let ok = csr(&["devs"], "kubernetes.io/kube-apiserver-client");
        assert!(subject_restriction(&request(Operation::Create, "", Some(&ok), None, &user)).is_ok());
        let other = csr(&["system:masters"], "example.com/x");
        assert!(subject_restriction(&request(Operation::Create, "", Some(&other), None, &user)).is_ok());
        assert_eq!(csr_organizations(&ok).unwrap(), ["devs"]);
    }
}
