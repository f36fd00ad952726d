//! The certificate and token controllers against a real apiserver: CSR approval, signing and failure, bootstrap
//! token signing and cleanup, ClusterRole aggregation and legacy service-account token Secrets.

mod support;

use base64::Engine;
use serde_json::{Value, json};
use support::Cluster;

const RSA_CA_CRT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/rsa-ca.crt");
const RSA_CA_KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/rsa-ca.key");
const EC_SA_KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/ec-sa.key");

fn b64(b: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default()).unwrap_or_default()
}

/// A PEM certificate request for `cn` in `orgs`, with a new P-256 key.
fn request(cn: &str, orgs: &[&str]) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    for o in orgs {
        params.distinguished_name.push(rcgen::DnType::OrganizationName, *o);
    }
    params.serialize_request(&key).unwrap().pem().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_client_requests_are_approved_and_signed_and_invalid_ones_fail() {
    let flags =
        [format!("--cluster-signing-cert-file={RSA_CA_CRT}"), format!("--cluster-signing-key-file={RSA_CA_KEY}")];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let c = Cluster::start(&["csrapproving", "csrsigning", "csrcleaner"], &flags).await;
    let csrs = c.api("certificates.k8s.io", "v1", "certificatesigningrequests", "");

    let csr = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "node-csr"},
        "spec": {"request": b64(request("system:node:worker-1", &["system:nodes"])),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet", "expirationSeconds": 3600,
            "usages": ["digital signature", "client auth"]}});
    csrs.create(&csr).await.unwrap();
    let issued = c
        .until(
            30,
            "the kubelet client certificate",
            || async { csrs.get("node-csr").await.ok() },
            |csr| csr.pointer("/status/certificate").is_some(),
        )
        .await;
    let approved = &issued["status"]["conditions"][0];
    assert_eq!(approved["type"], "Approved");
    assert_eq!(approved["reason"], "AutoApproved");
    assert!(approved["message"].as_str().unwrap().ends_with("kubelet client certificate after SubjectAccessReview."));
    let pem = unb64(&issued["status"]["certificate"]);
    let der = kube_controller_manager::pki::pem_block(&pem, "CERTIFICATE").unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(cert.subject().to_string(), "CN=system:node:worker-1, O=system:nodes");
    assert_eq!(cert.issuer().to_string(), "CN=rsa-test-ca");
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert_eq!(lifetime, 3600 + 300, "an hour as asked, backdated 5 minutes");

    // A client request with a server usage, approved by hand: the signer fails it.
    let bad = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "jane"},
        "spec": {"request": b64(request("jane", &["devs"])), "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["client auth", "server auth"]}});
    let mut bad = csrs.create(&bad).await.unwrap();
    bad["status"]["conditions"] = json!([{"type": "Approved", "status": "True", "reason": "ByHand", "message": "ok"}]);
    let body = bytes::Bytes::from(serde_json::to_vec(&bad).unwrap());
    c.client()
        .request(
            http::Method::PUT,
            "/apis/certificates.k8s.io/v1/certificatesigningrequests/jane/approval",
            Some((body, "application/json")),
        )
        .await
        .unwrap();
    let failed = c
        .until(
            30,
            "the Failed condition",
            || async { csrs.get("jane").await.ok() },
            |csr| runtime::array(csr, "/status/conditions").iter().any(|c| c["type"] == "Failed"),
        )
        .await;
    let cond = runtime::array(&failed, "/status/conditions").iter().find(|c| c["type"] == "Failed").unwrap().clone();
    assert_eq!(cond["reason"], "SignerValidationFailure");
    assert_eq!(cond["message"], "invalid usage for client certificate: server auth");
    assert!(failed.pointer("/status/certificate").is_none());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_tokens_sign_cluster_info_and_expired_ones_are_removed() {
    let c = Cluster::start(&["bootstrapsigner", "tokencleaner"], &[]).await;
    let cms = c.api("", "v1", "configmaps", "kube-public");
    cms.create(&json!({"metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": {"kubeconfig": "payload"}}))
        .await
        .unwrap();
    let secrets = c.api("", "v1", "secrets", "kube-system");
    let token = |id: &str, expiration: Option<&str>| {
        let mut s = json!({"metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
            "type": "bootstrap.kubernetes.io/token",
            "data": {"token-id": b64(id), "token-secret": b64("tokenSecret"), "usage-bootstrap-signing": b64("true")}});
        if let Some(e) = expiration {
            s["data"]["expiration"] = json!(b64(e));
        }
        s
    };
    secrets.create(&token("abc123", None)).await.unwrap();
    let cm = c
        .until(
            30,
            "the JWS of abc123",
            || async { cms.get("cluster-info").await.ok() },
            |cm| cm.pointer("/data/jws-kubeconfig-abc123").is_some(),
        )
        .await;
    assert_eq!(
        cm["data"]["jws-kubeconfig-abc123"],
        "eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiYzEyMyJ9..QSxpUG7Q542CirTI2ECPSZjvBOJURUW5a7XqFpNI958"
    );

    // An expired token is deleted, and never signs.
    secrets.create(&token("def456", Some("2020-01-01T00:00:00Z"))).await.unwrap();
    c.until(
        30,
        "the expired token deleted",
        || async { Some(json!(secrets.get("bootstrap-token-def456").await.is_err())) },
        |gone| gone == &json!(true),
    )
    .await;
    // A token that is deleted takes its signature with it.
    secrets.delete("bootstrap-token-abc123", None).await.unwrap();
    let cm = c
        .until(
            30,
            "the JWS of abc123 removed",
            || async { cms.get("cluster-info").await.ok() },
            |cm| cm.pointer("/data/jws-kubeconfig-abc123").is_none(),
        )
        .await;
    assert_eq!(cm["data"], json!({"kubeconfig": "payload"}));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_cluster_roles_follow_the_roles_they_select() {
    let c = Cluster::start(&["clusterrole-aggregation"], &[]).await;
    let roles = c.api("rbac.authorization.k8s.io", "v1", "clusterroles", "");
    let role =
        |name: &str, labels: Value, rules: Value| json!({"metadata": {"name": name, "labels": labels}, "rules": rules});
    roles
        .create(&role(
            "hammer",
            json!({"agg": "tools"}),
            json!([{"verbs": ["hammer"], "apiGroups": [""], "resources": ["nails"]}]),
        ))
        .await
        .unwrap();
    roles
        .create(&role(
            "chisel",
            json!({"agg": "tools"}),
            json!([{"verbs": ["chisel"], "apiGroups": [""], "resources": ["mortises"]}]),
        ))
        .await
        .unwrap();
    roles
        .create(&json!({"metadata": {"name": "toolbox"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "tools"}}]}}))
        .await
        .unwrap();
    let verbs = |r: &Value| runtime::array(r, "/rules").iter().map(|r| r["verbs"][0].clone()).collect::<Vec<_>>();
    c.until(
        30,
        "the aggregated rules",
        || async { roles.get("toolbox").await.ok() },
        |r| verbs(r) == [json!("chisel"), json!("hammer")],
    )
    .await;
    // A selected role changes: the aggregate follows.
    let mut hammer = roles.get("hammer").await.unwrap();
    hammer["rules"] = json!([{"verbs": ["sledge"], "apiGroups": [""], "resources": ["nails"]}]);
    roles.replace("hammer", &hammer).await.unwrap();
    c.until(
        30,
        "the aggregate to follow",
        || async { roles.get("toolbox").await.ok() },
        |r| verbs(r) == [json!("chisel"), json!("sledge")],
    )
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_token_secrets_are_populated_and_go_with_their_service_account() {
    let key_flag = format!("--service-account-private-key-file={EC_SA_KEY}");
    let c = Cluster::start(&["serviceaccount-token"], &[&key_flag]).await;
    let sas = c.api("", "v1", "serviceaccounts", "default");
    let sa = sas.create(&json!({"metadata": {"name": "builder", "namespace": "default"}})).await.unwrap();
    let secrets = c.api("", "v1", "secrets", "default");
    secrets
        .create(&json!({"metadata": {"name": "builder-token", "namespace": "default",
                "annotations": {"kubernetes.io/service-account.name": "builder"}},
            "type": "kubernetes.io/service-account-token"}))
        .await
        .unwrap();
    let secret = c
        .until(
            30,
            "the token",
            || async { secrets.get("builder-token").await.ok() },
            |s| s.pointer("/data/token").is_some(),
        )
        .await;
    assert_eq!(unb64(&secret["data"]["namespace"]), b"default");
    let ca = c.api.config.ca_pem.clone().unwrap();
    assert_eq!(unb64(&secret["data"]["ca.crt"]), ca);
    assert_eq!(secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"], sa["metadata"]["uid"]);
    let token = String::from_utf8(unb64(&secret["data"]["token"])).unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["iss"], "kubernetes/serviceaccount");
    assert_eq!(claims["sub"], "system:serviceaccount:default:builder");
    assert_eq!(claims["kubernetes.io/serviceaccount/secret.name"], "builder-token");
    assert_eq!(claims["kubernetes.io/serviceaccount/service-account.uid"], sa["metadata"]["uid"]);

    // A token Secret of a ServiceAccount that does not exist is deleted; so are the tokens of a deleted one.
    secrets
        .create(&json!({"metadata": {"name": "ghost-token", "namespace": "default",
                "annotations": {"kubernetes.io/service-account.name": "ghost"}},
            "type": "kubernetes.io/service-account-token"}))
        .await
        .unwrap();
    sas.delete("builder", None).await.unwrap();
    for name in ["ghost-token", "builder-token"] {
        c.until(30, name, || async { Some(json!(secrets.get(name).await.is_err())) }, |gone| gone == &json!(true))
            .await;
    }
    c.stop().await;
}
