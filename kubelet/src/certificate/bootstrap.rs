//! TLS bootstrap (upstream's `pkg/kubelet/certificate/bootstrap`): when `--kubeconfig` is missing or its client
//! certificate expired, the bootstrap kubeconfig's credentials (a bootstrap token) request a certificate for
//! `system:node:<name>` in group `system:nodes` from the `kubernetes.io/kube-apiserver-client-kubelet` signer, under
//! a name digested from the key and subject (so a restart finds its earlier request); the issued pair goes to
//! `<cert-dir>/kubelet-client-current.pem` and `--kubeconfig` is written pointing at it.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use client::Client;
use rcgen::PublicKeyData;

use super::store::{FileStore, Pair};

/// The key of a request still in flight, kept until the certificate arrives.
const TMP_PRIVATE_KEY_FILE: &str = "kubelet-client.key.tmp";

/// Requests a client certificate with the bootstrap kubeconfig unless `kubeconfig` is valid, then writes
/// `kubeconfig` (upstream's `LoadClientCert`).
pub async fn load_client_cert(kubeconfig: &Path, bootstrap: &Path, cert_dir: &Path, node: &str) -> Result<(), String> {
    if client_config_still_valid(kubeconfig)? {
        tracing::info!(path = %kubeconfig.display(), "Kubeconfig exists and is valid, skipping bootstrap");
        return Ok(());
    }
    tracing::info!("Using bootstrap kubeconfig to generate TLS client cert, key and kubeconfig file");
    let bootstrap_cfg =
        client::Config::from_kubeconfig(bootstrap).map_err(|e| format!("unable to load bootstrap kubeconfig: {e}"))?;
    let client = Client::new(&bootstrap_cfg)
        .map_err(|e| format!("unable to create certificates signing request client: {e}"))?;
    let store = FileStore::new("kubelet-client", cert_dir, None, None)?;
    // The current pair's key if there is a pair, else the key of an earlier attempt, else a new one.
    let tmp_key = cert_dir.join(TMP_PRIVATE_KEY_FILE);
    let key = match store.current().ok().flatten().and_then(|p| rcgen::KeyPair::from_pem(&p.key_pem).ok()) {
        Some(k) => k,
        None => load_or_generate_key(&tmp_key)?,
    };
    if let Err(e) = wait_for_server(&client, Duration::from_secs(60)).await {
        tracing::info!(error = %e, "Error waiting for apiserver to come up");
    }
    let cert = request_node_certificate(&client, &key, node).await?;
    store.update(&cert, key.serialize_pem().as_bytes())?;
    if let Err(e) = std::fs::remove_file(&tmp_key)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::info!(path = %tmp_key.display(), error = %e, "Failed cleaning up private key file");
    }
    write_kubeconfig(&bootstrap_cfg, kubeconfig, &store.current_path())
}

/// Whether `kubeconfig` exists, loads, and its client certificates have not expired.
pub fn client_config_still_valid(kubeconfig: &Path) -> Result<bool, String> {
    match std::fs::metadata(kubeconfig) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("error reading existing bootstrap kubeconfig {}: {e}", kubeconfig.display())),
        Ok(_) => {}
    }
    let cfg = match client::Config::from_kubeconfig(kubeconfig) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "unable to read existing bootstrap client config from {}", kubeconfig.display());
            return Ok(false);
        }
    };
    let (Some(cert), Some(key)) = (&cfg.client_cert_pem, &cfg.client_key_pem) else {
        tracing::error!(
            "unable to read TLS certificates from existing bootstrap client config read from {}",
            kubeconfig.display()
        );
        return Ok(false);
    };
    match Pair::parse(cert, key) {
        Ok(p) if p.not_after > jiff::Timestamp::now() => Ok(true),
        Ok(p) => {
            tracing::error!(
                "part of the existing bootstrap client certificate in {} is expired: {}",
                kubeconfig.display(),
                p.not_after
            );
            Ok(false)
        }
        Err(e) => {
            tracing::error!(error = %e, "unable to load TLS certificates from existing bootstrap client config read from {}", kubeconfig.display());
            Ok(false)
        }
    }
}

fn load_or_generate_key(path: &Path) -> Result<rcgen::KeyPair, String> {
    if let Ok(pem) = std::fs::read_to_string(path)
        && let Ok(k) = rcgen::KeyPair::from_pem(&pem)
    {
        return Ok(k);
    }
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    write_private(path, key.serialize_pem().as_bytes())?;
    Ok(key)
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(data))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// A kubeconfig with the bootstrap kubeconfig's server and CA, authenticating with the pair at `pem` (certificate
/// and key in one file).
pub fn write_kubeconfig(bootstrap: &client::Config, kubeconfig: &Path, pem: &Path) -> Result<(), String> {
    let mut cluster = serde_json::json!({"server": bootstrap.server});
    if let Some(ca) = &bootstrap.ca_pem {
        cluster["certificate-authority-data"] = serde_json::json!(base64::engine::general_purpose::STANDARD.encode(ca));
    }
    if bootstrap.insecure_skip_tls_verify {
        cluster["insecure-skip-tls-verify"] = serde_json::json!(true);
    }
    let pem = pem.display().to_string();
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "default-cluster", "cluster": cluster}],
        "contexts": [{"name": "default-context",
            "context": {"cluster": "default-cluster", "namespace": "default", "user": "default-auth"}}],
        "current-context": "default-context",
        "preferences": {},
        "users": [{"name": "default-auth", "user": {"client-certificate": pem, "client-key": pem}}],
    });
    let text = serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())?;
    write_private(kubeconfig, text.as_bytes())
}

/// Polls the apiserver's `/healthz` until it answers or `deadline` passes.
async fn wait_for_server(client: &Client, deadline: Duration) -> Result<(), String> {
    let poll = async {
        loop {
            match tokio::time::timeout(Duration::from_secs(1), client.get_raw("/healthz")).await {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => tracing::info!(error = %e, "Failed to connect to apiserver"),
                Err(_) => tracing::info!("Failed to connect to apiserver: timed out"),
            }
            tokio::time::sleep(Duration::from_secs(2).mul_f64(1.0 + 0.2 * super::manager::unit_random())).await;
        }
    };
    tokio::time::timeout(deadline, poll).await.map_err(|_| "timed out waiting to connect to apiserver".to_string())
}

/// The usages of a node client certificate: key encipherment only for RSA keys (ours are ECDSA).
pub const CLIENT_USAGES: [&str; 2] = ["digital signature", "client auth"];

/// Requests the node's client certificate and waits (up to an hour) for it.
async fn request_node_certificate(client: &Client, key: &rcgen::KeyPair, node: &str) -> Result<Vec<u8>, String> {
    let template = super::manager::Template {
        common_name: format!("system:node:{node}"),
        organizations: vec!["system:nodes".into()],
        ..Default::default()
    };
    let csr = template.csr_pem(key)?;
    let name =
        digested_name(&key.subject_public_key_info(), &template.common_name, &template.organizations, &CLIENT_USAGES);
    let (name, uid) =
        super::csr::request_certificate(client, &csr, Some(&name), super::CLIENT_SIGNER, &CLIENT_USAGES, key).await?;
    tracing::info!("Waiting for client certificate to be issued");
    super::csr::wait_for_certificate(client, &name, &uid, Duration::from_secs(3600)).await
}

/// `node-csr-<digest>`: SHA-512/256 over the public key, common name, organizations and usages, each base64url
/// (unpadded) and followed by `|`, as upstream's `digestedName`.
pub fn digested_name(spki: &[u8], common_name: &str, organizations: &[String], usages: &[&str]) -> String {
    let encode = |d: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA512_256);
    let mut write = |d: &[u8]| {
        ctx.update(encode(d).as_bytes());
        ctx.update(b"|");
    };
    write(spki);
    write(common_name.as_bytes());
    for o in organizations {
        write(o.as_bytes());
    }
    for u in usages {
        write(u.as_bytes());
    }
    format!("node-csr-{}", encode(ctx.finish().as_ref()))
}
