//! `csrcleaner`: garbage-collects CertificateSigningRequests, as upstream's `pkg/controller/certificates/cleaner`.
//!
//! Every hour (and once at start) every CSR is checked and deleted when it was approved and issued more than an
//! hour ago, denied or failed more than an hour ago (by the condition's `lastUpdateTime`), is still pending (no
//! conditions) a day after its creation, or was approved and issued a certificate that has expired.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::controllers::certificates as csrs;
use crate::{Context, stopped};

/// How often every CSR is checked.
pub const POLLING_INTERVAL: Duration = Duration::from_secs(3600);
pub const APPROVED_EXPIRATION: Duration = Duration::from_secs(3600);
pub const DENIED_EXPIRATION: Duration = Duration::from_secs(3600);
pub const PENDING_EXPIRATION: Duration = Duration::from_secs(24 * 3600);

/// Upstream's `isOlderThan`: a set time more than `d` before now.
fn older_than(t: Option<&Value>, d: Duration, now: jiff::Timestamp) -> bool {
    let Some(t) = t.and_then(Value::as_str).and_then(|t| t.parse::<jiff::Timestamp>().ok()) else { return false };
    let d = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    t.duration_until(now) > d
}

/// Upstream's `isExpired`: the issued certificate's NotAfter has passed (false when it does not parse).
fn is_expired(csr: &Value, now: jiff::Timestamp) -> bool {
    let Some(pem) = csrs::certificate(csr) else { return false };
    let Some((_, der)) = crate::pki::pem_blocks(&pem).into_iter().next() else { return false };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else { return false };
    now.as_second() > cert.validity().not_after.timestamp()
}

/// Why a CSR is to be deleted (upstream's log lines), None when it stays.
pub fn cleanup_reason(csr: &Value, now: jiff::Timestamp) -> Option<String> {
    let conditions = runtime::array(csr, "/status/conditions");
    let issued = csrs::certificate(csr).is_some();
    let of_type_older =
        |t: &str, d: Duration| conditions.iter().any(|c| c["type"] == t && older_than(c.get("lastUpdateTime"), d, now));
    if issued && of_type_older("Approved", APPROVED_EXPIRATION) {
        return Some(format!("it is more than {APPROVED_EXPIRATION:?} old and approved"));
    }
    if of_type_older("Denied", DENIED_EXPIRATION) {
        return Some(format!("it is more than {DENIED_EXPIRATION:?} old and denied"));
    }
    if of_type_older("Failed", DENIED_EXPIRATION) {
        return Some(format!("it is more than {DENIED_EXPIRATION:?} old and failed"));
    }
    if conditions.is_empty() && older_than(csr.pointer("/metadata/creationTimestamp"), PENDING_EXPIRATION, now) {
        return Some(format!("it is more than {PENDING_EXPIRATION:?} old and unhandled"));
    }
    if issued && conditions.iter().any(|c| c["type"] == "Approved") && is_expired(csr, now) {
        return Some("the associated certificate is expired".into());
    }
    None
}

async fn clean(ctx: &Context, csrs: &[Arc<Value>]) {
    let api = ctx.api("certificates.k8s.io", "v1", "certificatesigningrequests");
    let now = jiff::Timestamp::now();
    for csr in csrs {
        let Some(reason) = cleanup_reason(csr, now) else { continue };
        tracing::info!(csr = runtime::name(csr), %reason, "csrcleaner: cleaning CSR");
        match api.delete(runtime::name(csr), None).await {
            Ok(_) => {}
            Err(e) if e.code() == Some(404) => {}
            Err(e) => tracing::warn!(csr = runtime::name(csr), error = %e, "csrcleaner: unable to delete CSR"),
        }
    }
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let csrs = ctx.informer("certificates.k8s.io", "v1", "certificatesigningrequests");
    tokio::select! {
        ok = csrs.wait_synced() => if !ok { return },
        _ = stopped(stop.clone()) => return,
    }
    loop {
        clean(&ctx, &csrs.store().list()).await;
        tokio::select! {
            _ = tokio::time::sleep(POLLING_INTERVAL) => {}
            _ = stopped(stop.clone()) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use serde_json::json;

    use super::*;

    // Upstream's cleaner_test.go certificates: one expired in 2017, one valid until 2117.
    const EXPIRED_CERT: &str = "-----BEGIN CERTIFICATE-----
MIICIzCCAc2gAwIBAgIJAOApTlMFDOUnMA0GCSqGSIb3DQEBCwUAMG0xCzAJBgNV
BAYTAkdCMQ8wDQYDVQQIDAZMb25kb24xDzANBgNVBAcMBkxvbmRvbjEYMBYGA1UE
CgwPR2xvYmFsIFNlY3VyaXR5MRYwFAYDVQQLDA1JVCBEZXBhcnRtZW50MQowCAYD
VQQDDAEqMB4XDTE3MTAwNDIwNDgzOFoXDTE3MTAwMzIwNDgzOFowbTELMAkGA1UE
BhMCR0IxDzANBgNVBAgMBkxvbmRvbjEPMA0GA1UEBwwGTG9uZG9uMRgwFgYDVQQK
DA9HbG9iYWwgU2VjdXJpdHkxFjAUBgNVBAsMDUlUIERlcGFydG1lbnQxCjAIBgNV
BAMMASowXDANBgkqhkiG9w0BAQEFAANLADBIAkEA3Gt0KmuRXDxvqZUiX/xqAn1t
nZZX98guZvPPyxnQtV3YpA274W0sX3jL+U71Ya+3kaUstXQa4YrWBUHiXoqJnwID
AQABo1AwTjAdBgNVHQ4EFgQUtDsIpzHoUiLsO88f9fm+G0tYSPowHwYDVR0jBBgw
FoAUtDsIpzHoUiLsO88f9fm+G0tYSPowDAYDVR0TBAUwAwEB/zANBgkqhkiG9w0B
AQsFAANBADfrlKof5CUkxGlX9Rifxv/mWOk8ZuTLWfMYQH2nycBHnmOxy6sR+87W
/Mb/uRz0TXVnGVcbu5E8Bz7e/Far1ZI=
-----END CERTIFICATE-----";
    const UNEXPIRED_CERT: &str = "-----BEGIN CERTIFICATE-----
MIICJTCCAc+gAwIBAgIJAIRjMToP+pPEMA0GCSqGSIb3DQEBCwUAMG0xCzAJBgNV
BAYTAkdCMQ8wDQYDVQQIDAZMb25kb24xDzANBgNVBAcMBkxvbmRvbjEYMBYGA1UE
CgwPR2xvYmFsIFNlY3VyaXR5MRYwFAYDVQQLDA1JVCBEZXBhcnRtZW50MQowCAYD
VQQDDAEqMCAXDTE3MTAwNDIwNDUyNFoYDzIxMTcwOTEwMjA0NTI0WjBtMQswCQYD
VQQGEwJHQjEPMA0GA1UECAwGTG9uZG9uMQ8wDQYDVQQHDAZMb25kb24xGDAWBgNV
BAoMD0dsb2JhbCBTZWN1cml0eTEWMBQGA1UECwwNSVQgRGVwYXJ0bWVudDEKMAgG
A1UEAwwBKjBcMA0GCSqGSIb3DQEBAQUAA0sAMEgCQQC7j9BAV5HqIJGi6r4G4YeI
ioHxH2loVu8IOKSK7xVs3v/EjR/eXbQzM+jZU7duyZqn6YjySZNLl0K0MfHCHBgX
AgMBAAGjUDBOMB0GA1UdDgQWBBTwxV40NFSNW7lpQ3eUWX7Mxs03yzAfBgNVHSME
GDAWgBTwxV40NFSNW7lpQ3eUWX7Mxs03yzAMBgNVHRMEBTADAQH/MA0GCSqGSIb3
DQEBCwUAA0EALDi9OidANHflx8q+w3p0rJo9gpA6cJcFpEtP2Lv4kvOtB1f6L0jY
MLd7MVm4cS/MNcx4L7l23UC3Hx4+nAxvIg==
-----END CERTIFICATE-----";

    #[test]
    fn cleans_as_upstream() {
        let now: jiff::Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
        let ago = |mins: i64| (now - jiff::SignedDuration::from_mins(mins)).to_string();
        let cond = |t: &str, mins: i64| json!({"type": t, "status": "True", "lastUpdateTime": ago(mins)});
        // Name, minutes since creation, certificate, conditions, whether it is deleted.
        type Case = (&'static str, i64, Option<&'static str>, Vec<Value>, bool);
        let cases: Vec<Case> = vec![
            ("no delete approved not passed deadline", 1, Some(UNEXPIRED_CERT), vec![cond("Approved", 50)], false),
            ("no delete approved passed deadline not issued", 1, None, vec![cond("Approved", 50)], false),
            ("delete approved passed deadline", 1, Some(UNEXPIRED_CERT), vec![cond("Approved", 120)], true),
            ("no delete denied not passed deadline", 1, None, vec![cond("Denied", 50)], false),
            ("delete denied passed deadline", 1, None, vec![cond("Denied", 120)], true),
            ("no delete failed not passed deadline", 1, None, vec![cond("Approved", 120), cond("Failed", 50)], false),
            ("delete failed passed deadline", 1, None, vec![cond("Approved", 120), cond("Failed", 120)], true),
            ("no delete pending not passed deadline", 5 * 60, None, vec![], false),
            ("delete pending passed deadline", 25 * 60, None, vec![], true),
            (
                "no delete approved not passed deadline unexpired",
                1,
                Some(UNEXPIRED_CERT),
                vec![cond("Approved", 50)],
                false,
            ),
            ("delete approved not passed deadline expired", 1, Some(EXPIRED_CERT), vec![cond("Approved", 50)], true),
            ("delete approved passed deadline unparseable", 1, Some("garbage"), vec![cond("Approved", 120)], true),
        ];
        for (name, created, cert, conditions, delete) in cases {
            let mut csr = json!({"metadata": {"name": "fake-csr", "creationTimestamp": ago(created)},
                "status": {"conditions": conditions}});
            if let Some(c) = cert {
                csr["status"]["certificate"] = json!(base64::engine::general_purpose::STANDARD.encode(c));
            }
            assert_eq!(cleanup_reason(&csr, now).is_some(), delete, "{name}: {:?}", cleanup_reason(&csr, now));
        }
    }
}
