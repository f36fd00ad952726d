//! The kubelet's flags (upstream names) and its `--config` KubeletConfiguration file
//! (kubelet.config.k8s.io/v1beta1); flags given on the command line win over the file, as upstream.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(clap::Parser, Debug, Clone, Default)]
#[command(name = "kubelet", version, about = "The Kubernetes node agent")]
pub struct Flags {
    /// Path to a kubeconfig with the apiserver's address and this node's credentials.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// A KubeletConfiguration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The CRI endpoint.
    #[arg(long)]
    pub container_runtime_endpoint: Option<String>,
    /// The node's IP address (InternalIP).
    #[arg(long)]
    pub node_ip: Option<String>,
    /// The node name to use instead of the hostname.
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// Directory of static pod manifests.
    #[arg(long)]
    pub pod_manifest_path: Option<PathBuf>,
    /// Labels to add when registering the node (`key=value,...`).
    #[arg(long, value_delimiter = ',')]
    pub node_labels: Vec<String>,
    /// Taints to register the node with (`key=value:Effect,...`).
    #[arg(long, value_delimiter = ',')]
    pub register_with_taints: Vec<String>,
    /// The kubelet's state directory.
    #[arg(long)]
    pub root_dir: Option<PathBuf>,
    /// The port of the kubelet API.
    #[arg(long)]
    pub port: Option<u16>,
    /// A kubeconfig whose (bootstrap token) credentials request the client certificate when `--kubeconfig` is
    /// missing or its certificate expired; the kubeconfig is then written pointing at the issued certificate.
    #[arg(long)]
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// Where the kubelet's TLS certificates are (`kubelet-client-current.pem`, `kubelet-server-current.pem`,
    /// self-signed `kubelet.crt`); ours defaults to `<root-dir>/pki` (upstream: /var/lib/kubelet/pki).
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,
    /// Rotate the client certificate: request a new one (a CSR) at 70-90% of its lifetime (`rotateCertificates`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub rotate_certificates: Option<bool>,
    /// Request the serving certificate from the API (signer kubernetes.io/kubelet-serving) and rotate it
    /// (`serverTLSBootstrap`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub rotate_server_certificates: Option<bool>,
    /// The serving certificate of the kubelet API (`tlsCertFile`).
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// The serving certificate's key (`tlsPrivateKeyFile`).
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,
    /// Client certificates signed by this CA authenticate to the kubelet API (`authentication.x509.clientCAFile`).
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// Requests without credentials are `system:anonymous` (`authentication.anonymous.enabled`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub anonymous_auth: Option<bool>,
    /// Bearer tokens are checked with TokenReviews (`authentication.webhook.enabled`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub authentication_token_webhook: Option<bool>,
    /// How long TokenReview answers are cached (`authentication.webhook.cacheTTL`).
    #[arg(long)]
    pub authentication_token_webhook_cache_ttl: Option<String>,
    /// AlwaysAllow or Webhook (SubjectAccessReviews) (`authorization.mode`).
    #[arg(long)]
    pub authorization_mode: Option<String>,
    /// How long allowed SubjectAccessReview answers are cached (`authorization.webhook.cacheAuthorizedTTL`).
    #[arg(long)]
    pub authorization_webhook_cache_authorized_ttl: Option<String>,
    /// How long other answers are cached (`authorization.webhook.cacheUnauthorizedTTL`).
    #[arg(long)]
    pub authorization_webhook_cache_unauthorized_ttl: Option<String>,
    /// The port of the unauthenticated local `/healthz` (`healthzPort`, 10248; 0 disables it).
    #[arg(long)]
    pub healthz_port: Option<u16>,
    /// The address of that `/healthz` (`healthzBindAddress`, 127.0.0.1).
    #[arg(long)]
    pub healthz_bind_address: Option<String>,
    /// The root of the pods' cgroup tree (`cgroupRoot`; default `/`): pods live under `<root>/kubepods`.
    #[arg(long)]
    pub cgroup_root: Option<String>,
    /// Unsafe sysctls or sysctl patterns (ending in `*`) pods may set besides the safe ones
    /// (`allowedUnsafeSysctls`), e.g. `kernel.msg*,net.core.somaxconn`.
    #[arg(long, value_delimiter = ',')]
    pub allowed_unsafe_sysctls: Option<Vec<String>>,
    /// Keep the QoS and pod cgroup tree (`cgroupsPerQOS`, default true).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub cgroups_per_qos: Option<bool>,
    /// Which reservations the kubelet enforces with cgroups (`enforceNodeAllocatable`: `pods`, or `none`).
    #[arg(long, value_delimiter = ',')]
    pub enforce_node_allocatable: Option<Vec<String>>,
    /// The most processes a pod may run (`podPidsLimit`; -1: no limit).
    #[arg(long)]
    pub pod_max_pids: Option<i64>,
    /// Ours: route the other nodes' pod CIDRs via their InternalIPs (flannel's host-gw; `podNetworkRoutes`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub pod_network_routes: Option<bool>,
    /// Ours: run this many hollow nodes (kubelets on fake runtimes) in this process instead of one real kubelet.
    #[arg(long, default_value_t = 0)]
    pub hollow_nodes: usize,
    /// Ours: the name prefix of hollow nodes.
    #[arg(long, default_value = "hollow")]
    pub hollow_prefix: String,
}

/// The fields of KubeletConfiguration this kubelet reads (camelCase, as upstream's file).
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct KubeletConfiguration {
    pub container_runtime_endpoint: Option<String>,
    pub static_pod_path: Option<PathBuf>,
    pub cgroup_driver: Option<String>,
    pub cgroup_root: Option<String>,
    #[serde(rename = "cgroupsPerQOS")]
    pub cgroups_per_qos: Option<bool>,
    pub enforce_node_allocatable: Option<Vec<String>>,
    pub pod_pids_limit: Option<i64>,
    pub max_pods: Option<i64>,
    pub kube_reserved: BTreeMap<String, String>,
    pub system_reserved: BTreeMap<String, String>,
    pub eviction_hard: BTreeMap<String, String>,
    pub file_check_frequency: Option<String>,
    pub node_status_update_frequency: Option<String>,
    pub node_status_report_frequency: Option<String>,
    pub sync_frequency: Option<String>,
    /// Upstream spells these `podCIDR` and `clusterDNS`, not camelCase.
    #[serde(rename = "podCIDR", alias = "podCidr")]
    pub pod_cidr: Option<String>,
    pub port: Option<u16>,
    #[serde(rename = "clusterDNS", alias = "clusterDns")]
    pub cluster_dns: Vec<String>,
    pub cluster_domain: Option<String>,
    /// The resolver configuration pods' DNS starts from (upstream's default /etc/resolv.conf; "": none).
    pub resolv_conf: Option<String>,
    pub pod_logs_dir: Option<PathBuf>,
    pub node_status_max_images: Option<i64>,
    /// Ours: where the kubelet writes the bridge network config for its pod CIDR (empty: it does not).
    pub cni_conf_dir: Option<PathBuf>,
    /// Ours: the bridge's name.
    pub cni_bridge: Option<String>,
    /// Ours: route the other nodes' pod CIDRs via their InternalIPs ([`crate::routes`]; default off).
    pub pod_network_routes: Option<bool>,
    pub authentication: Option<FileAuthentication>,
    pub authorization: Option<FileAuthorization>,
    pub rotate_certificates: Option<bool>,
    #[serde(rename = "serverTLSBootstrap")]
    pub server_tls_bootstrap: Option<bool>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    pub healthz_port: Option<u16>,
    pub healthz_bind_address: Option<String>,
    pub allowed_unsafe_sysctls: Option<Vec<String>>,
}

/// `authentication` of the file.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct FileAuthentication {
    pub x509: FileX509,
    pub webhook: FileWebhookAuthn,
    pub anonymous: FileAnonymous,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct FileX509 {
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct FileWebhookAuthn {
    pub enabled: Option<bool>,
    #[serde(rename = "cacheTTL")]
    pub cache_ttl: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct FileAnonymous {
    pub enabled: Option<bool>,
}

/// `authorization` of the file.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct FileAuthorization {
    pub mode: Option<String>,
    pub webhook: FileWebhookAuthz,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct FileWebhookAuthz {
    #[serde(rename = "cacheAuthorizedTTL")]
    pub cache_authorized_ttl: Option<String>,
    #[serde(rename = "cacheUnauthorizedTTL")]
    pub cache_unauthorized_ttl: Option<String>,
}

/// `authorization.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationMode {
    AlwaysAllow,
    Webhook,
}

/// How the kubelet API authenticates and authorizes ([`crate::auth`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    pub client_ca_file: Option<PathBuf>,
    pub anonymous: bool,
    pub webhook: bool,
    pub webhook_cache_ttl: Duration,
    pub authorization_mode: AuthorizationMode,
    pub cache_authorized_ttl: Duration,
    pub cache_unauthorized_ttl: Duration,
}

impl Default for AuthConfig {
    /// Upstream's command-line defaults (no `--config`): anonymous requests, no token webhook, AlwaysAllow.
    fn default() -> Self {
        AuthConfig {
            client_ca_file: None,
            anonymous: true,
            webhook: false,
            webhook_cache_ttl: Duration::from_secs(120),
            authorization_mode: AuthorizationMode::AlwaysAllow,
            cache_authorized_ttl: Duration::from_secs(300),
            cache_unauthorized_ttl: Duration::from_secs(30),
        }
    }
}

impl AuthConfig {
    /// From the file (its v1beta1 defaults: no anonymous requests, the token webhook on, Webhook authorization)
    /// or, without one, upstream's legacy flag defaults; the flags win over both.
    fn resolve(file: Option<&KubeletConfiguration>, flags: &Flags) -> Result<Self, ConfigError> {
        let mut c = AuthConfig::default();
        if let Some(file) = file {
            let authn = file.authentication.clone().unwrap_or_default();
            let authz = file.authorization.clone().unwrap_or_default();
            c.client_ca_file = authn.x509.client_ca_file;
            c.anonymous = authn.anonymous.enabled.unwrap_or(false);
            c.webhook = authn.webhook.enabled.unwrap_or(true);
            c.webhook_cache_ttl = duration(authn.webhook.cache_ttl.as_deref(), c.webhook_cache_ttl)?;
            c.authorization_mode = parse_mode(authz.mode.as_deref().unwrap_or("Webhook"))?;
            c.cache_authorized_ttl = duration(authz.webhook.cache_authorized_ttl.as_deref(), c.cache_authorized_ttl)?;
            c.cache_unauthorized_ttl =
                duration(authz.webhook.cache_unauthorized_ttl.as_deref(), c.cache_unauthorized_ttl)?;
        }
        if let Some(f) = &flags.client_ca_file {
            c.client_ca_file = Some(f.clone());
        }
        c.anonymous = flags.anonymous_auth.unwrap_or(c.anonymous);
        c.webhook = flags.authentication_token_webhook.unwrap_or(c.webhook);
        c.webhook_cache_ttl = duration(flags.authentication_token_webhook_cache_ttl.as_deref(), c.webhook_cache_ttl)?;
        if let Some(m) = &flags.authorization_mode {
            c.authorization_mode = parse_mode(m)?;
        }
        c.cache_authorized_ttl =
            duration(flags.authorization_webhook_cache_authorized_ttl.as_deref(), c.cache_authorized_ttl)?;
        c.cache_unauthorized_ttl =
            duration(flags.authorization_webhook_cache_unauthorized_ttl.as_deref(), c.cache_unauthorized_ttl)?;
        Ok(c)
    }
}

fn parse_mode(m: &str) -> Result<AuthorizationMode, ConfigError> {
    match m {
        "AlwaysAllow" => Ok(AuthorizationMode::AlwaysAllow),
        "Webhook" => Ok(AuthorizationMode::Webhook),
        "" => Err(ConfigError::Invalid("no authorization mode specified".into())),
        other => Err(ConfigError::Invalid(format!("unknown authorization mode {other}"))),
    }
}

/// Everything resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub kubeconfig: Option<PathBuf>,
    pub runtime_endpoint: String,
    pub node_name: String,
    pub node_ip: String,
    pub pod_manifest_path: Option<PathBuf>,
    pub node_labels: BTreeMap<String, String>,
    pub taints: Vec<serde_json::Value>,
    pub root_dir: PathBuf,
    pub cgroup_driver: String,
    /// `cgroupRoot` (`/`): the pods' cgroups are under `<cgroup_root>/kubepods` ([`crate::cm`]).
    pub cgroup_root: String,
    /// `cgroupsPerQOS`: the kubelet keeps the QoS and pod cgroups (off for hollow nodes and fake runtimes).
    pub cgroups_per_qos: bool,
    /// `enforceNodeAllocatable` (`["pods"]`).
    pub enforce_node_allocatable: Vec<String>,
    /// `podPidsLimit` (-1: none).
    pub pod_pids_limit: i64,
    pub max_pods: i64,
    pub kube_reserved: BTreeMap<String, String>,
    pub system_reserved: BTreeMap<String, String>,
    pub eviction_hard: BTreeMap<String, String>,
    pub file_check_frequency: Duration,
    pub node_status_update_frequency: Duration,
    /// The node status is posted when it changed, or at least this often (upstream: 5 min).
    pub node_status_report_frequency: Duration,
    pub pod_cidr: Option<String>,
    pub port: u16,
    /// How often a settled pod is synced again anyway (`syncFrequency`, upstream: 1 min).
    pub sync_frequency: Duration,
    /// How often the PLEG relists the runtime (upstream: 1 s).
    pub pleg_period: Duration,
    /// Where container logs go (`podLogsDir`, /var/log/pods).
    pub pod_logs_dir: PathBuf,
    /// Where the bridge CNI config for the pod CIDR is written (None: left to a network add-on).
    pub cni_conf_dir: Option<PathBuf>,
    pub cni_bridge: String,
    /// Whether to keep routes to the other nodes' pod CIDRs ([`crate::routes`], flannel's host-gw).
    pub pod_network_routes: bool,
    /// Whether to serve the kubelet API (hollow nodes do not).
    pub serve_api: bool,
    /// How many images the node status lists, largest first (`nodeStatusMaxImages`, upstream's 50; -1: all).
    pub node_status_max_images: i64,
    /// Whether the kubelet records Events (hollow nodes do not).
    pub record_events: bool,
    /// The cluster's DNS domain (`clusterDomain`; ours defaults to kubeadm's `cluster.local`), for pods' domains.
    pub cluster_domain: String,
    /// The cluster DNS servers of ClusterFirst pods (`clusterDNS`; none: they use the node's resolver).
    pub cluster_dns: Vec<String>,
    /// The node's resolver configuration pods' DNS starts from (`resolvConf`, /etc/resolv.conf; "": none).
    pub resolv_conf: String,
    /// The kubelet API's authentication and authorization.
    pub auth: AuthConfig,
    /// `--bootstrap-kubeconfig`: TLS bootstrap of the client certificate.
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// `--cert-dir`.
    pub cert_dir: PathBuf,
    /// `rotateCertificates`: the client certificate is renewed through CSRs.
    pub rotate_certificates: bool,
    /// `serverTLSBootstrap`: the serving certificate comes from CSRs (signer kubernetes.io/kubelet-serving).
    pub server_tls_bootstrap: bool,
    /// `tlsCertFile` and `tlsPrivateKeyFile` (neither: a self-signed pair in `cert_dir`).
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    /// `healthzPort` (0: none) and `healthzBindAddress` of the local unauthenticated `/healthz`.
    pub healthz_port: u16,
    pub healthz_bind_address: String,
    /// The sysctls pods may set: the safe ones of this kernel plus `allowedUnsafeSysctls` ([`crate::sysctl`]).
    pub sysctls: crate::sysctl::Allowlist,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("parsing {0}: {1}")]
    Parse(PathBuf, String),
    #[error("{0}")]
    Invalid(String),
}

fn duration(s: Option<&str>, default: Duration) -> Result<Duration, ConfigError> {
    match s {
        None => Ok(default),
        Some(s) => parse_duration(s).ok_or_else(|| ConfigError::Invalid(format!("invalid duration {s:?}"))),
    }
}

/// `10s`, `1m0s`, `500ms` (Go's duration syntax).
pub fn parse_duration(s: &str) -> Option<Duration> {
    api_types::duration::parse(s)
}

/// `key=value:Effect` (or `key:Effect`) as a Node taint.
pub fn parse_taint(s: &str) -> Result<serde_json::Value, ConfigError> {
    let (kv, effect) = s.rsplit_once(':').ok_or_else(|| ConfigError::Invalid(format!("invalid taint {s:?}")))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(ConfigError::Invalid(format!("invalid taint effect {effect:?} in {s:?}")));
    }
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    let mut t = serde_json::json!({"key": key, "effect": effect});
    if !value.is_empty() {
        t["value"] = serde_json::json!(value);
    }
    Ok(t)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

impl Config {
    pub fn resolve(flags: Flags) -> Result<Self, ConfigError> {
        let from_file = match &flags.config {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError::Read(p.clone(), e))?;
                Some(
                    serde_yaml_ng::from_str::<KubeletConfiguration>(&text)
                        .map_err(|e| ConfigError::Parse(p.clone(), e.to_string()))?,
                )
            }
            None => None,
        };
        let auth = AuthConfig::resolve(from_file.as_ref(), &flags)?;
        let file = from_file.unwrap_or_default();
        let root_dir = flags.root_dir.clone().unwrap_or_else(|| PathBuf::from("/var/lib/kubelet"));
        let mut node_labels = BTreeMap::new();
        for l in flags.node_labels.iter().filter(|l| !l.is_empty()) {
            let (k, v) = l.split_once('=').ok_or_else(|| ConfigError::Invalid(format!("invalid node label {l:?}")))?;
            node_labels.insert(k.to_string(), v.to_string());
        }
        let taints = flags
            .register_with_taints
            .iter()
            .filter(|t| !t.is_empty())
            .map(|t| parse_taint(t))
            .collect::<Result<_, _>>()?;
        let unsafe_sysctls =
            flags.allowed_unsafe_sysctls.clone().or(file.allowed_unsafe_sysctls.clone()).unwrap_or_default();
        let sysctls = crate::sysctl::Allowlist::for_node(&unsafe_sysctls).map_err(ConfigError::Invalid)?;
        Ok(Config {
            sysctls,
            kubeconfig: flags.kubeconfig,
            runtime_endpoint: flags
                .container_runtime_endpoint
                .or(file.container_runtime_endpoint)
                .unwrap_or_else(|| proto::DEFAULT_ENDPOINT.to_string()),
            node_name: flags.hostname_override.unwrap_or_else(hostname),
            node_ip: flags.node_ip.unwrap_or_else(default_node_ip),
            pod_manifest_path: flags.pod_manifest_path.or(file.static_pod_path),
            node_labels,
            taints,
            cert_dir: flags.cert_dir.unwrap_or_else(|| root_dir.join("pki")),
            root_dir,
            cgroup_driver: file.cgroup_driver.unwrap_or_else(|| "cgroupfs".into()),
            cgroup_root: flags.cgroup_root.or(file.cgroup_root).filter(|r| !r.is_empty()).unwrap_or_else(|| "/".into()),
            cgroups_per_qos: flags.cgroups_per_qos.or(file.cgroups_per_qos).unwrap_or(true),
            enforce_node_allocatable: flags
                .enforce_node_allocatable
                .or(file.enforce_node_allocatable)
                .unwrap_or_else(|| vec!["pods".into()])
                .into_iter()
                .filter(|e| !e.is_empty() && e != "none")
                .collect(),
            pod_pids_limit: flags.pod_max_pids.or(file.pod_pids_limit).unwrap_or(-1),
            max_pods: file.max_pods.unwrap_or(110),
            kube_reserved: file.kube_reserved,
            system_reserved: file.system_reserved,
            eviction_hard: file.eviction_hard,
            file_check_frequency: duration(file.file_check_frequency.as_deref(), Duration::from_secs(20))?,
            node_status_update_frequency: duration(
                file.node_status_update_frequency.as_deref(),
                Duration::from_secs(10),
            )?,
            node_status_report_frequency: duration(
                file.node_status_report_frequency.as_deref(),
                Duration::from_secs(300),
            )?,
            pod_cidr: file.pod_cidr,
            port: flags.port.or(file.port).unwrap_or(10250),
            sync_frequency: duration(file.sync_frequency.as_deref(), Duration::from_secs(60))?,
            pleg_period: Duration::from_secs(1),
            pod_logs_dir: file.pod_logs_dir.unwrap_or_else(|| PathBuf::from("/var/log/pods")),
            cni_conf_dir: Some(file.cni_conf_dir.unwrap_or_else(|| PathBuf::from("/etc/cni/net.d"))),
            cni_bridge: file.cni_bridge.unwrap_or_else(|| "cni0".into()),
            pod_network_routes: flags.pod_network_routes.or(file.pod_network_routes).unwrap_or(false),
            serve_api: true,
            record_events: true,
            node_status_max_images: file.node_status_max_images.unwrap_or(50),
            cluster_domain: file.cluster_domain.filter(|d| !d.is_empty()).unwrap_or_else(|| "cluster.local".into()),
            cluster_dns: file.cluster_dns,
            resolv_conf: file.resolv_conf.unwrap_or_else(|| "/etc/resolv.conf".into()),
            auth,
            bootstrap_kubeconfig: flags.bootstrap_kubeconfig,
            rotate_certificates: flags.rotate_certificates.or(file.rotate_certificates).unwrap_or(false),
            server_tls_bootstrap: flags.rotate_server_certificates.or(file.server_tls_bootstrap).unwrap_or(false),
            tls_cert_file: flags.tls_cert_file.or(file.tls_cert_file),
            tls_private_key_file: flags.tls_private_key_file.or(file.tls_private_key_file),
            healthz_port: flags.healthz_port.or(file.healthz_port).unwrap_or(10248),
            healthz_bind_address: flags
                .healthz_bind_address
                .or(file.healthz_bind_address)
                .unwrap_or_else(|| "127.0.0.1".into()),
        })
    }
}

/// The node's address without `--node-ip`, as upstream's kubelet finds it: the host name's first non-loopback
/// address, else the address of the interface holding the default route (the kernel's source address for it; a
/// UDP `connect` only looks the route up and sends nothing), else 127.0.0.1.
fn default_node_ip() -> String {
    use std::net::ToSocketAddrs;
    let by_name = (hostname().as_str(), 0u16)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.find(|a| !a.ip().is_loopback() && !a.ip().is_unspecified()))
        .map(|a| a.ip());
    let by_route = || {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        socket.connect("192.0.2.1:9").ok()?;
        Some(socket.local_addr().ok()?.ip()).filter(|ip| !ip.is_unspecified())
    };
    by_name.or_else(by_route).map(|ip| ip.to_string()).unwrap_or_else(|| "127.0.0.1".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn flags_win_over_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.yaml");
        std::fs::write(
            &cfg,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncontainerRuntimeEndpoint: unix:///file.sock\nmaxPods: 50\nnodeStatusUpdateFrequency: 4s\nsyncFrequency: 30s\nkubeReserved: {cpu: 100m}\nstaticPodPath: /etc/kubernetes/manifests\npodCIDR: 10.244.3.0/24\nclusterDNS: [10.96.0.10]\n",
        )
        .unwrap();
        let flags = Flags::try_parse_from([
            "kubelet",
            "--config",
            cfg.to_str().unwrap(),
            "--container-runtime-endpoint=unix:///flag.sock",
            "--hostname-override=n1",
            "--node-labels=a=b,c=d",
            "--register-with-taints=k=v:NoSchedule",
        ])
        .unwrap();
        let c = Config::resolve(flags).unwrap();
        assert_eq!(c.runtime_endpoint, "unix:///flag.sock");
        assert_eq!(c.max_pods, 50);
        assert_eq!(c.node_status_update_frequency, Duration::from_secs(4));
        assert_eq!(c.sync_frequency, Duration::from_secs(30));
        assert_eq!(c.node_status_report_frequency, Duration::from_secs(300), "upstream's default");
        assert_eq!(c.node_name, "n1");
        assert_eq!(c.node_labels.get("c").map(String::as_str), Some("d"));
        assert_eq!(c.taints[0], serde_json::json!({"key": "k", "value": "v", "effect": "NoSchedule"}));
        assert_eq!(c.pod_manifest_path, Some(PathBuf::from("/etc/kubernetes/manifests")));
        assert_eq!(c.kube_reserved.get("cpu").map(String::as_str), Some("100m"));
        assert_eq!(c.pod_cidr.as_deref(), Some("10.244.3.0/24"), "upstream spells it podCIDR");
        assert!(parse_taint("bad").is_err());
        assert!(!c.pod_network_routes, "off unless asked for");
        std::fs::write(&cfg, "kind: KubeletConfiguration\npodNetworkRoutes: true\n").unwrap();
        let on = Config::resolve(Flags { config: Some(cfg.clone()), ..Default::default() }).unwrap();
        assert!(on.pod_network_routes);
        let flags = Flags::try_parse_from(["kubelet", "--config", cfg.to_str().unwrap(), "--pod-network-routes=false"]);
        assert!(!Config::resolve(flags.unwrap()).unwrap().pod_network_routes, "the flag wins");
    }

    /// `allowedUnsafeSysctls` from the file or `--allowed-unsafe-sysctls`; a sysctl not known to be namespaced
    /// stops the kubelet, as upstream's.
    #[test]
    fn allowed_unsafe_sysctls() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.yaml");
        std::fs::write(&cfg, "kind: KubeletConfiguration\nallowedUnsafeSysctls: [\"kernel.msg*\"]\n").unwrap();
        let msgmax =
            serde_json::json!({"spec": {"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}}});
        let c = Config::resolve(Flags { config: Some(cfg.clone()), ..Default::default() }).unwrap();
        assert_eq!(c.sysctls.admit(&msgmax), Ok(()));
        assert!(Config::resolve(Flags::default()).unwrap().sysctls.admit(&msgmax).is_err(), "unsafe by default");
        let flags =
            Flags::try_parse_from(["kubelet", "--allowed-unsafe-sysctls=net.core.somaxconn,kernel.sem"]).unwrap();
        assert!(Config::resolve(flags).unwrap().sysctls.admit(&msgmax).is_err(), "the flag wins");
        let flags = Flags::try_parse_from(["kubelet", "--allowed-unsafe-sysctls=vm.swappiness"]).unwrap();
        assert_eq!(
            Config::resolve(flags).unwrap_err().to_string(),
            "the sysctl \"vm.swappiness\" are not known to be namespaced"
        );
    }

    /// Upstream's two sets of defaults: the command line's legacy ones (anonymous, AlwaysAllow) without a file,
    /// the v1beta1 ones (no anonymous, token webhook, Webhook authorization) with one; flags win.
    #[test]
    fn authentication_and_authorization_defaults() {
        let c = Config::resolve(Flags::default()).unwrap();
        assert_eq!(c.auth, AuthConfig::default());
        assert!(c.auth.anonymous && !c.auth.webhook && c.auth.authorization_mode == AuthorizationMode::AlwaysAllow);
        assert_eq!((c.healthz_port, c.healthz_bind_address.as_str()), (10248, "127.0.0.1"));
        assert_eq!(c.cert_dir, PathBuf::from("/var/lib/kubelet/pki"));
        assert!(!c.rotate_certificates && !c.server_tls_bootstrap);
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.yaml");
        std::fs::write(&empty, "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n").unwrap();
        let c = Config::resolve(Flags { config: Some(empty.clone()), ..Default::default() }).unwrap();
        assert!(!c.auth.anonymous && c.auth.webhook);
        assert_eq!(c.auth.authorization_mode, AuthorizationMode::Webhook);
        assert_eq!(
            (c.auth.webhook_cache_ttl, c.auth.cache_authorized_ttl, c.auth.cache_unauthorized_ttl),
            (Duration::from_secs(120), Duration::from_secs(300), Duration::from_secs(30))
        );
        let full = dir.path().join("full.yaml");
        std::fs::write(
            &full,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nauthentication:\n  x509: {clientCAFile: /etc/kubernetes/pki/ca.crt}\n  webhook: {enabled: true, cacheTTL: 1m}\n  anonymous: {enabled: true}\nauthorization:\n  mode: AlwaysAllow\n  webhook: {cacheAuthorizedTTL: 10s, cacheUnauthorizedTTL: 5s}\nrotateCertificates: true\nserverTLSBootstrap: true\nhealthzPort: 0\n",
        )
        .unwrap();
        let c = Config::resolve(Flags { config: Some(full.clone()), ..Default::default() }).unwrap();
        assert_eq!(c.auth.client_ca_file, Some(PathBuf::from("/etc/kubernetes/pki/ca.crt")));
        assert!(c.auth.anonymous);
        assert_eq!(c.auth.authorization_mode, AuthorizationMode::AlwaysAllow);
        assert_eq!(
            (c.auth.webhook_cache_ttl, c.auth.cache_authorized_ttl),
            (Duration::from_secs(60), Duration::from_secs(10))
        );
        assert!(c.rotate_certificates && c.server_tls_bootstrap);
        assert_eq!(c.healthz_port, 0);
        let flags = Flags::try_parse_from([
            "kubelet",
            "--config",
            full.to_str().unwrap(),
            "--anonymous-auth=false",
            "--authorization-mode=Webhook",
            "--client-ca-file=/ca.pem",
            "--authentication-token-webhook",
            "--rotate-certificates=false",
            "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
            "--cert-dir=/pki",
        ])
        .unwrap();
        let c = Config::resolve(flags).unwrap();
        assert!(!c.auth.anonymous && c.auth.webhook && !c.rotate_certificates);
        assert_eq!(c.auth.authorization_mode, AuthorizationMode::Webhook);
        assert_eq!(c.auth.client_ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(c.bootstrap_kubeconfig, Some(PathBuf::from("/etc/kubernetes/bootstrap-kubelet.conf")));
        assert_eq!(c.cert_dir, PathBuf::from("/pki"));
        let bad = Flags::try_parse_from(["kubelet", "--authorization-mode=RBAC"]).unwrap();
        assert_eq!(Config::resolve(bad).unwrap_err().to_string(), "unknown authorization mode RBAC");
    }
}
