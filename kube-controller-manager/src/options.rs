//! Upstream's kube-controller-manager flags (the ones that mean something here, and `--cluster-name`, which only
//! cloud providers use).

use std::path::PathBuf;
use std::time::Duration;

fn duration(s: &str) -> Result<Duration, String> {
    api_types::duration::parse(s).ok_or_else(|| format!("invalid duration {s:?} (e.g. 40s, 5m, 1h30m)"))
}

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "kube-controller-manager", about = "Runs the controllers of a Kubernetes cluster")]
pub struct Options {
    /// Path to a kubeconfig with the apiserver and credentials (in-cluster config when absent).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Each controller talks to the apiserver as its own service account in kube-system (created if missing, with
    /// bound tokens from TokenRequest); otherwise every controller uses the kubeconfig's credentials.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub use_service_account_credentials: bool,
    /// Controllers to enable: `*` for the default set, `name` to add one, `-name` to remove one.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
    /// Elect a leader on the `kube-system/kube-controller-manager` Lease before running the controllers.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "true")]
    pub leader_elect: bool,
    #[arg(long, value_parser = duration, default_value = "15s")]
    pub leader_elect_lease_duration: Duration,
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub leader_elect_renew_deadline: Duration,
    #[arg(long, value_parser = duration, default_value = "2s")]
    pub leader_elect_retry_period: Duration,
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    #[arg(long, default_value = "kube-controller-manager")]
    pub leader_elect_resource_name: String,
    /// Address of the health and metrics port.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: std::net::IpAddr,
    /// HTTPS port for /healthz, /livez, /readyz and /metrics (0 turns it off).
    #[arg(long, default_value_t = 10257)]
    pub secure_port: u16,
    /// The CIDR of pods in the cluster (node IPAM hands out node CIDRs from it).
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// Allocate `spec.podCIDR` to nodes from `--cluster-cidr`.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub allocate_node_cidrs: bool,
    /// Size of each node's CIDR (IPv4).
    #[arg(long, default_value_t = 24)]
    pub node_cidr_mask_size: u8,
    #[arg(long)]
    pub service_cluster_ip_range: Option<String>,
    /// How long a node may go without heartbeats before it is marked unhealthy.
    #[arg(long, value_parser = duration, default_value = "40s")]
    pub node_monitor_grace_period: Duration,
    /// How often node health is checked.
    #[arg(long, value_parser = duration, default_value = "5s")]
    pub node_monitor_period: Duration,
    /// Terminated pods kept before the pod GC deletes the oldest (0: no limit).
    #[arg(long, default_value_t = 12500)]
    pub terminated_pod_gc_threshold: usize,
    /// The cluster CA certificate published as the `kube-root-ca.crt` ConfigMap in every namespace.
    #[arg(long)]
    pub root_ca_file: Option<PathBuf>,
    /// PEM private key (RSA or ECDSA) that signs the tokens of legacy service-account token Secrets.
    #[arg(long)]
    pub service_account_private_key_file: Option<PathBuf>,
    /// PEM CA certificate of every `kubernetes.io` CSR signer (unless per-signer files are given).
    #[arg(long)]
    pub cluster_signing_cert_file: Option<PathBuf>,
    /// PEM private key (RSA or ECDSA) of `--cluster-signing-cert-file`.
    #[arg(long)]
    pub cluster_signing_key_file: Option<PathBuf>,
    /// CA certificate for `kubernetes.io/kubelet-serving`.
    #[arg(long)]
    pub cluster_signing_kubelet_serving_cert_file: Option<PathBuf>,
    #[arg(long)]
    pub cluster_signing_kubelet_serving_key_file: Option<PathBuf>,
    /// CA certificate for `kubernetes.io/kube-apiserver-client-kubelet`.
    #[arg(long)]
    pub cluster_signing_kubelet_client_cert_file: Option<PathBuf>,
    #[arg(long)]
    pub cluster_signing_kubelet_client_key_file: Option<PathBuf>,
    /// CA certificate for `kubernetes.io/kube-apiserver-client`.
    #[arg(long)]
    pub cluster_signing_kube_apiserver_client_cert_file: Option<PathBuf>,
    #[arg(long)]
    pub cluster_signing_kube_apiserver_client_key_file: Option<PathBuf>,
    /// CA certificate for `kubernetes.io/legacy-unknown`.
    #[arg(long)]
    pub cluster_signing_legacy_unknown_cert_file: Option<PathBuf>,
    #[arg(long)]
    pub cluster_signing_legacy_unknown_key_file: Option<PathBuf>,
    /// The longest duration of signed certificates (`spec.expirationSeconds` may ask for less).
    #[arg(long, value_parser = duration, default_value = "8760h0m0s")]
    pub cluster_signing_duration: Duration,
    /// Service-account token Secrets synced at once.
    #[arg(long, default_value_t = 5)]
    pub concurrent_serviceaccount_token_syncs: usize,
    /// Who may use the secure port: `--authentication-kubeconfig`, `--authorization-kubeconfig`,
    /// `--client-ca-file`, `--requestheader-*`, `--authorization-always-allow-paths`.
    #[command(flatten)]
    pub delegating: runtime::delegating_auth::Flags,
    /// The cluster's instance prefix, for cloud providers' resources (there is no cloud provider here: unused).
    #[arg(long, default_value = "kubernetes")]
    pub cluster_name: String,
    #[arg(long, default_value_t = 5)]
    pub concurrent_deployment_syncs: usize,
    #[arg(long, default_value_t = 5)]
    pub concurrent_replicaset_syncs: usize,
    #[arg(long, default_value_t = 5)]
    pub concurrent_statefulset_syncs: usize,
    #[arg(long, default_value_t = 2)]
    pub concurrent_daemonset_syncs: usize,
    #[arg(long, default_value_t = 5)]
    pub concurrent_job_syncs: usize,
    #[arg(long, default_value_t = 5)]
    pub concurrent_endpoint_syncs: usize,
    #[arg(long, default_value_t = 20)]
    pub concurrent_gc_syncs: usize,
    #[arg(long, default_value_t = 10)]
    pub concurrent_namespace_syncs: usize,
    #[arg(long, default_value_t = 5)]
    pub concurrent_service_endpoint_syncs: usize,
    /// Endpoints per EndpointSlice at most.
    #[arg(long, default_value_t = 100)]
    pub max_endpoints_per_slice: usize,
    #[arg(long, default_value_t = 5)]
    pub concurrent_ttl_after_finished_syncs: usize,
    #[arg(long, default_value_t = 20.0)]
    pub kube_api_qps: f64,
    #[arg(long, default_value_t = 30)]
    pub kube_api_burst: u32,
    /// klog verbosity, accepted for compatibility (use RUST_LOG).
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,
}

impl Default for Options {
    fn default() -> Self {
        <Options as clap::Parser>::parse_from(["kube-controller-manager"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The command kubeadm 1.33 writes into kube-controller-manager.yaml (with a pod subnet).
    #[test]
    fn kubeadms_command_line() {
        let o = Options::try_parse_from([
            "kube-controller-manager",
            "--allocate-node-cidrs=true",
            "--authentication-kubeconfig=/etc/kubernetes/controller-manager.conf",
            "--authorization-kubeconfig=/etc/kubernetes/controller-manager.conf",
            "--bind-address=127.0.0.1",
            "--client-ca-file=/etc/kubernetes/pki/ca.crt",
            "--cluster-cidr=10.244.0.0/16",
            "--cluster-name=kubernetes",
            "--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt",
            "--cluster-signing-key-file=/etc/kubernetes/pki/ca.key",
            "--controllers=*,bootstrapsigner,tokencleaner",
            "--kubeconfig=/etc/kubernetes/controller-manager.conf",
            "--leader-elect=true",
            "--requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt",
            "--root-ca-file=/etc/kubernetes/pki/ca.crt",
            "--service-account-private-key-file=/etc/kubernetes/pki/sa.key",
            "--service-cluster-ip-range=10.96.0.0/12",
            "--use-service-account-credentials=true",
        ])
        .unwrap();
        assert!(o.allocate_node_cidrs && o.leader_elect && o.use_service_account_credentials);
        assert_eq!(o.controllers, ["*", "bootstrapsigner", "tokencleaner"]);
        assert_eq!(o.bind_address.to_string(), "127.0.0.1");
        assert_eq!(o.secure_port, 10257, "kubeadm's probe port");
        let d = &o.delegating;
        assert_eq!(d.authentication_kubeconfig, Some(PathBuf::from("/etc/kubernetes/controller-manager.conf")));
        assert_eq!(d.client_ca_file, Some(PathBuf::from("/etc/kubernetes/pki/ca.crt")));
        assert_eq!(d.requestheader_client_ca_file, Some(PathBuf::from("/etc/kubernetes/pki/front-proxy-ca.crt")));
        assert_eq!(d.authorization_always_allow_paths, ["/healthz", "/readyz", "/livez"]);
        assert_eq!(d.requestheader_username_headers, ["x-remote-user"]);
    }
}
