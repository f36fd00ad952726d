//! kubeconfig files as upstream's `phases/kubeconfig` writes them: admin.conf (`kubeadm:cluster-admins`),
//! super-admin.conf (`system:masters`), kubelet.conf (`system:node:<name>`), controller-manager.conf and
//! scheduler.conf, each with an embedded client certificate signed by the cluster CA; token kubeconfigs for
//! bootstrap; and reading them back (`certs check-expiration`, `renew`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::config::InitConfig;
use crate::constants as k;
use crate::fs::Fs;
use crate::pki::{self, AltNames, Ca, CertConfig, KeyAlgorithm, Usage};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Pki(#[from] pki::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One kubeconfig kubeadm writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    pub file: &'static str,
    /// `kubeadm init phase kubeconfig <phase>`.
    pub phase: &'static str,
    pub short: &'static str,
    /// Whether it points at this node's apiserver rather than the control-plane endpoint.
    pub local_endpoint: bool,
}

pub const ADMIN: Spec = Spec {
    file: k::ADMIN_KUBECONFIG,
    phase: "admin",
    short: "Generate a kubeconfig file for the admin to use and for kubeadm itself",
    local_endpoint: false,
};
pub const SUPER_ADMIN: Spec = Spec {
    file: k::SUPER_ADMIN_KUBECONFIG,
    phase: "super-admin",
    short: "Generate a kubeconfig file for the super-admin",
    local_endpoint: false,
};
pub const KUBELET: Spec = Spec {
    file: k::KUBELET_KUBECONFIG,
    phase: "kubelet",
    short: "Generate a kubeconfig file for the kubelet to use *only* for cluster bootstrapping purposes",
    local_endpoint: false,
};
pub const CONTROLLER_MANAGER: Spec = Spec {
    file: k::CONTROLLER_MANAGER_KUBECONFIG,
    phase: "controller-manager",
    short: "Generate a kubeconfig file for the controller manager to use",
    local_endpoint: true,
};
pub const SCHEDULER: Spec = Spec {
    file: k::SCHEDULER_KUBECONFIG,
    phase: "scheduler",
    short: "Generate a kubeconfig file for the scheduler to use",
    local_endpoint: true,
};

/// In upstream's order.
pub const ALL: [Spec; 5] = [ADMIN, SUPER_ADMIN, KUBELET, CONTROLLER_MANAGER, SCHEDULER];

/// The client identity of a kubeconfig (CN, O).
pub fn identity(spec: &Spec, cfg: &InitConfig) -> (String, Vec<String>) {
    match spec.file {
        k::ADMIN_KUBECONFIG => ("kubernetes-admin".into(), vec![k::CLUSTER_ADMINS_GROUP.into()]),
        k::SUPER_ADMIN_KUBECONFIG => ("kubernetes-super-admin".into(), vec![k::SYSTEM_PRIVILEGED_GROUP.into()]),
        k::KUBELET_KUBECONFIG => (format!("{}{}", k::NODE_USER_PREFIX, cfg.node_name()), vec![k::NODES_GROUP.into()]),
        k::CONTROLLER_MANAGER_KUBECONFIG => (k::CONTROLLER_MANAGER_USER.into(), vec![]),
        _ => (k::SCHEDULER_USER.into(), vec![]),
    }
}

/// The server a kubeconfig points at.
pub fn server(spec: &Spec, cfg: &InitConfig) -> String {
    if spec.local_endpoint {
        format!("https://{}", crate::util::join_host_port(cfg.advertise_address(), cfg.bind_port()))
    } else {
        cfg.control_plane_url()
    }
}

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A kubeconfig with an embedded client certificate (upstream's `CreateWithCerts`), as YAML.
pub fn with_certs(cluster: &str, server: &str, ca_pem: &str, user: &str, cert_pem: &str, key_pem: &str) -> String {
    crate::config::marshal(&json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"certificate-authority-data": b64(ca_pem.as_bytes()), "server": server}}],
        "contexts": [{"name": format!("{user}@{cluster}"), "context": {"cluster": cluster, "user": user}}],
        "current-context": format!("{user}@{cluster}"),
        "preferences": {},
        "users": [{"name": user, "user": {"client-certificate-data": b64(cert_pem.as_bytes()), "client-key-data": b64(key_pem.as_bytes())}}],
    }))
}

/// A kubeconfig authenticating with a token (upstream's `CreateWithToken`).
pub fn with_token(cluster: &str, server: &str, ca_pem: &str, user: &str, token: &str) -> String {
    crate::config::marshal(&json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"certificate-authority-data": b64(ca_pem.as_bytes()), "server": server}}],
        "contexts": [{"name": format!("{user}@{cluster}"), "context": {"cluster": cluster, "user": user}}],
        "current-context": format!("{user}@{cluster}"),
        "preferences": {},
        "users": [{"name": user, "user": {"token": token}}],
    }))
}

/// A kubeconfig without credentials (the `cluster-info` payload: only the cluster, `name: ""`).
pub fn cluster_only(server: &str, ca_pem: &str) -> String {
    crate::config::marshal(&json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "", "cluster": {"certificate-authority-data": b64(ca_pem.as_bytes()), "server": server}}],
        "contexts": null,
        "current-context": "",
        "preferences": {},
        "users": null,
    }))
}

/// A client certificate config for a kubeconfig.
pub fn client_cert_config(cn: &str, orgs: Vec<String>, validity: Duration) -> CertConfig {
    CertConfig {
        common_name: cn.into(),
        organization: orgs,
        alt_names: AltNames::default(),
        usage: Usage::Client,
        validity,
    }
}

/// The parts of a kubeconfig file kubeadm checks.
#[derive(Clone, Debug, Default)]
pub struct Parsed {
    pub server: String,
    pub ca_pem: Vec<u8>,
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
    pub token: Option<String>,
    pub raw: Value,
}

fn decode(v: Option<&Value>) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(v?.as_str()?.trim()).ok()
}

/// Parses a kubeconfig's current context.
pub fn parse(text: &str) -> Result<Parsed> {
    let raw: Value = serde_yaml_ng::from_str(text).map_err(|e| Error::Invalid(format!("invalid kubeconfig: {e}")))?;
    let current = raw["current-context"].as_str().unwrap_or_default();
    let ctx =
        raw["contexts"].as_array().and_then(|c| c.iter().find(|c| c["name"] == current)).map(|c| c["context"].clone());
    let cluster_name = ctx.as_ref().and_then(|c| c["cluster"].as_str().map(str::to_string));
    let user_name = ctx.as_ref().and_then(|c| c["user"].as_str().map(str::to_string));
    let clusters = raw["clusters"].as_array().cloned().unwrap_or_default();
    let cluster = match &cluster_name {
        Some(n) => clusters.iter().find(|c| c["name"] == n.as_str()).cloned(),
        None => clusters.first().cloned(),
    }
    .ok_or_else(|| Error::Invalid("the kubeconfig has no cluster".into()))?;
    let users = raw["users"].as_array().cloned().unwrap_or_default();
    let user = user_name.and_then(|n| users.iter().find(|u| u["name"] == n.as_str()).cloned()).unwrap_or(Value::Null);
    Ok(Parsed {
        server: cluster["cluster"]["server"].as_str().unwrap_or_default().to_string(),
        ca_pem: decode(cluster["cluster"].get("certificate-authority-data")).unwrap_or_default(),
        client_cert_pem: decode(user["user"].get("client-certificate-data")),
        client_key_pem: decode(user["user"].get("client-key-data")),
        token: user["user"]["token"].as_str().map(str::to_string),
        raw,
    })
}

/// Writes one kubeconfig of `spec`, reusing an existing file with the same CA and server (upstream's
/// `createKubeConfigFileIfNotExists`). Returns whether it wrote a new file.
pub fn create(fs: &dyn Fs, dir: &Path, spec: &Spec, cfg: &InitConfig, ca: &Ca, now: jiff::Timestamp) -> Result<bool> {
    let path = dir.join(spec.file);
    let want_server = server(spec, cfg);
    if let Ok(text) = fs.read_string(&path) {
        let existing = parse(&text)?;
        if existing.ca_pem != ca.cert_pem.as_bytes() {
            return Err(Error::Invalid(format!(
                "a kubeconfig file {:?} exists already but has got the wrong CA cert",
                path.display()
            )));
        }
        if existing.server != want_server {
            return Err(Error::Invalid(format!(
                "a kubeconfig file {:?} exists already but has an unexpected API Server URL: expected: {want_server}, got: {}",
                path.display(),
                existing.server
            )));
        }
        return Ok(false);
    }
    let (cn, orgs) = identity(spec, cfg);
    let alg = KeyAlgorithm::parse(&cfg.cluster.encryption_algorithm).unwrap_or(KeyAlgorithm::EcdsaP256);
    let validity = cert_validity(cfg);
    let (cert, key) = ca.issue(&client_cert_config(&cn, orgs, validity), alg, now)?;
    let text = with_certs(&cfg.cluster.cluster_name, &want_server, &ca.cert_pem, &cn, &cert, &key.serialize_pem());
    fs.write(&path, text.as_bytes(), 0o600).map_err(|source| Error::Io { path, source })?;
    Ok(true)
}

/// The leaf certificate lifetime of a configuration.
pub fn cert_validity(cfg: &InitConfig) -> Duration {
    cfg.cluster
        .certificate_validity_period
        .as_deref()
        .and_then(|d| crate::config::duration::parse(d).ok())
        .unwrap_or(Duration::from_secs(k::CERTIFICATE_VALIDITY_HOURS * 3600))
}

/// The CA lifetime of a configuration.
pub fn ca_validity(cfg: &InitConfig) -> Duration {
    cfg.cluster
        .ca_certificate_validity_period
        .as_deref()
        .and_then(|d| crate::config::duration::parse(d).ok())
        .unwrap_or(Duration::from_secs(k::CA_CERTIFICATE_VALIDITY_HOURS * 3600))
}
