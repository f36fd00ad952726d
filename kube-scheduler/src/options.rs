//! Upstream's kube-scheduler flags; `--config` takes a KubeSchedulerConfiguration.

use std::path::PathBuf;

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "kube-scheduler", about = "Assigns pods to nodes")]
pub struct Options {
    /// Path to a kubeconfig (in-cluster config when absent; `clientConnection.kubeconfig` of --config wins).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// A KubeSchedulerConfiguration file (kubescheduler.config.k8s.io/v1).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Elect a leader on the `kube-system/kube-scheduler` Lease before scheduling.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: Option<bool>,
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: std::net::IpAddr,
    /// HTTPS port for /healthz, /livez, /readyz and /metrics (0 turns it off).
    #[arg(long, default_value_t = 10259)]
    pub secure_port: u16,
    /// Who may use the secure port: `--authentication-kubeconfig`, `--authorization-kubeconfig`,
    /// `--client-ca-file`, `--requestheader-*`, `--authorization-always-allow-paths`.
    #[command(flatten)]
    pub delegating: runtime::delegating_auth::Flags,
    #[arg(long, default_value_t = 50.0)]
    pub kube_api_qps: f64,
    #[arg(long, default_value_t = 100)]
    pub kube_api_burst: u32,
    /// klog verbosity, accepted for compatibility (use RUST_LOG).
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The command kubeadm 1.33 writes into kube-scheduler.yaml.
    #[test]
    fn kubeadms_command_line() {
        let o = Options::try_parse_from([
            "kube-scheduler",
            "--authentication-kubeconfig=/etc/kubernetes/scheduler.conf",
            "--authorization-kubeconfig=/etc/kubernetes/scheduler.conf",
            "--bind-address=127.0.0.1",
            "--kubeconfig=/etc/kubernetes/scheduler.conf",
            "--leader-elect=true",
        ])
        .unwrap();
        assert_eq!(o.leader_elect, Some(true));
        assert_eq!(o.secure_port, 10259, "kubeadm's probe port");
        assert_eq!(o.delegating.authorization_kubeconfig, Some(PathBuf::from("/etc/kubernetes/scheduler.conf")));
        assert_eq!(o.delegating.authorization_always_allow_paths, ["/healthz", "/readyz", "/livez"]);
    }
}
