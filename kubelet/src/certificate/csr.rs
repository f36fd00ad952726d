//! CertificateSigningRequests (client-go's `util/certificate/csr`): create one (`certificates.k8s.io/v1`; a named
//! one that exists already is reused when it is compatible: same subject, signer and key), then watch it until it is
//! approved and issued, denied, failed or deleted.

use std::time::Duration;

use base64::Engine;
use client::{Client, ListParams, WatchEvent};
use rcgen::PublicKeyData;
use serde_json::{Value, json};
use x509_parser::prelude::FromDer;

fn csrs(client: &Client) -> Result<client::Api, String> {
    client.api("certificates.k8s.io", "v1", "certificatesigningrequests").map_err(|e| e.to_string())
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

/// Creates a CSR for `csr_pem` (named `name`, else `csr-<random>`) and returns its name and UID.
pub async fn request_certificate(
    client: &Client,
    csr_pem: &str,
    name: Option<&str>,
    signer: &str,
    usages: &[&str],
    key: &rcgen::KeyPair,
) -> Result<(String, String), String> {
    let api = csrs(client)?;
    let metadata = match name {
        Some(n) => json!({"name": n}),
        None => json!({"generateName": "csr-"}),
    };
    let csr = json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": metadata,
        "spec": {"request": b64(csr_pem.as_bytes()), "usages": usages, "signerName": signer},
    });
    match api.create(&csr).await {
        Ok(created) => {
            tracing::info!(csr = s(&created, "/metadata/name"), "Certificate signing request created");
            Ok((s(&created, "/metadata/name").to_string(), s(&created, "/metadata/uid").to_string()))
        }
        Err(e) if e.code() == Some(409) && name.is_some() => {
            let name = name.unwrap_or_default();
            tracing::info!(csr = name, "csr for this node already exists, reusing");
            let existing =
                api.get(name).await.map_err(|e| format!("cannot retrieve certificate signing request: {e}"))?;
            ensure_compatible(&existing, csr_pem, signer, key)
                .map_err(|e| format!("retrieved csr is not compatible: {e}"))?;
            tracing::info!(csr = name, "csr for this node is still valid");
            Ok((name.to_string(), s(&existing, "/metadata/uid").to_string()))
        }
        Err(e) => Err(format!("cannot create certificate signing request: {e}")),
    }
}

/// The PEM in a CSR's `spec.request` or `status.certificate` (base64 in JSON).
pub fn decode_pem_field(v: &Value, pointer: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(v.pointer(pointer)?.as_str()?).ok()
}

/// Whether an existing CSR was made for the same subject, signer and key (upstream's `ensureCompatible`), and its
/// certificate, if any, has not expired.
fn ensure_compatible(existing: &Value, csr_pem: &str, signer: &str, key: &rcgen::KeyPair) -> Result<(), String> {
    let parse = |pem: &[u8]| -> Result<(Vec<u8>, Vec<u8>), String> {
        let der = rustls_pemfile::csr(&mut &pem[..])
            .map_err(|e| e.to_string())?
            .ok_or("PEM block type must be CERTIFICATE REQUEST")?;
        let (_, req) = x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
            .map_err(|e| e.to_string())?;
        let info = &req.certification_request_info;
        Ok((info.subject.as_raw().to_vec(), info.subject_pki.raw.to_vec()))
    };
    let theirs = decode_pem_field(existing, "/spec/request").ok_or("unable to parse new csr: no request")?;
    let (their_subject, their_key) = parse(&theirs).map_err(|e| format!("unable to parse new csr: {e}"))?;
    let (our_subject, _) = parse(csr_pem.as_bytes()).map_err(|e| format!("unable to parse original csr: {e}"))?;
    if their_subject != our_subject {
        return Err("csr subjects differ".into());
    }
    let their_signer = s(existing, "/spec/signerName");
    if !their_signer.is_empty() && their_signer != signer {
        return Err(format!("csr signerNames differ: new {their_signer:?}, orig: {signer:?}"));
    }
    if their_key != key.subject_public_key_info() {
        return Err("error validating signature new CSR against old key".into());
    }
    if let Some(cert) = decode_pem_field(existing, "/status/certificate") {
        let pair_expired = rustls_pemfile::certs(&mut &cert[..]).flatten().any(|c| {
            x509_parser::parse_x509_certificate(&c)
                .map(|(_, x)| x.validity().not_after.timestamp() < jiff::Timestamp::now().as_second())
                .unwrap_or(true)
        });
        if pair_expired {
            return Err("one of the certificates for the CSR has expired".into());
        }
    }
    Ok(())
}

/// What a CSR's state means for the waiter: Some(certificate) issued, None still waiting, Err refused.
fn issued(csr: &Value, name: &str, uid: &str) -> Result<Option<Vec<u8>>, String> {
    if s(csr, "/metadata/uid") != uid {
        return Err(format!("csr {name:?} changed UIDs"));
    }
    let mut approved = false;
    for c in csr.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten() {
        let (reason, message) = (s(c, "/reason"), s(c, "/message"));
        match s(c, "/type") {
            "Denied" => {
                return Err(format!("certificate signing request is denied, reason: {reason}, message: {message}"));
            }
            "Failed" => {
                return Err(format!("certificate signing request failed, reason: {reason}, message: {message}"));
            }
            "Approved" => approved = true,
            _ => {}
        }
    }
    if approved && let Some(cert) = decode_pem_field(csr, "/status/certificate").filter(|c| !c.is_empty()) {
        tracing::info!(csr = name, "Certificate signing request is issued");
        return Ok(Some(cert));
    }
    Ok(None)
}

/// Waits up to `timeout` for the CSR to be issued: lists it by name, then watches it from there (relisting
/// when a watch ends), as upstream's `WaitForCertificate`.
pub async fn wait_for_certificate(
    client: &Client,
    name: &str,
    uid: &str,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let api = csrs(client)?;
    let by_name = format!("metadata.name={name}");
    let wait = async {
        loop {
            let list = match api.list(&ListParams { field_selector: Some(by_name.clone()), ..Default::default() }).await
            {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(error = %e, "Error fetching certificate signing request");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            for item in list.get("items").and_then(Value::as_array).into_iter().flatten() {
                if let Some(cert) = issued(item, name, uid)? {
                    return Ok(cert);
                }
            }
            let params = ListParams {
                field_selector: Some(by_name.clone()),
                resource_version: list.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(String::from),
                ..Default::default()
            };
            let mut events = match api.watch(&params).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::debug!(error = %e, "watching the certificate signing request");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            while let Some(ev) = events.recv().await {
                match ev {
                    Ok(WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
                        if let Some(cert) = issued(&o, name, uid)? {
                            return Ok(cert);
                        }
                    }
                    Ok(WatchEvent::Deleted(_)) => return Err(format!("csr {name:?} was deleted")),
                    Ok(_) | Err(_) => break,
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(r) => r.map_err(|e| format!("cannot watch on the certificate signing request: {e}")),
        Err(_) => Err("timed out waiting for the condition".into()),
    }
}
