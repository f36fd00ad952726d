//! Upstream's kube-proxy flags; `--config` takes a KubeProxyConfiguration, and flags given on the command line
//! override it.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{LocalMode, ProxyConfig, ProxyMode};

#[derive(Debug, Clone, Default, clap::Parser)]
#[command(name = "kube-proxy", about = "Programs Services into this node's data plane (nftables, iptables or IPVS)")]
pub struct Options {
    /// A KubeProxyConfiguration file (kubeproxy.config.k8s.io/v1alpha1).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Path to a kubeconfig (in-cluster config when absent).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The apiserver's address (overrides the kubeconfig's server).
    #[arg(long)]
    pub master: Option<String>,
    /// The node name to use instead of the host name.
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// `nftables` (the default here), `iptables` or `ipvs`.
    #[arg(long)]
    pub proxy_mode: Option<String>,
    /// Remove every rule kube-proxy wrote (every mode) and exit.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub cleanup: Option<bool>,
    #[arg(long)]
    pub bind_address: Option<String>,
    /// Where /healthz and /livez listen (default 0.0.0.0:10256; empty turns them off).
    #[arg(long)]
    pub healthz_bind_address: Option<String>,
    /// Where /metrics listens (default 127.0.0.1:10249; empty turns it off).
    #[arg(long)]
    pub metrics_bind_address: Option<String>,
    /// The pods' CIDR range(s), comma-separated: traffic from elsewhere to a ClusterIP is masqueraded.
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub masquerade_all: Option<bool>,
    #[arg(long)]
    pub iptables_masquerade_bit: Option<u32>,
    #[arg(long)]
    pub iptables_sync_period: Option<String>,
    #[arg(long)]
    pub iptables_min_sync_period: Option<String>,
    /// The IPVS scheduler (`rr` by default; `lc`, `sh`, `mh`...).
    #[arg(long)]
    pub ipvs_scheduler: Option<String>,
    /// The sync periods in ipvs mode.
    #[arg(long)]
    pub ipvs_sync_period: Option<String>,
    #[arg(long)]
    pub ipvs_min_sync_period: Option<String>,
    /// arp_ignore=1 and arp_announce=2, so the Service IPs on kube-ipvs0 are not announced.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub ipvs_strict_arp: Option<bool>,
    /// Virtual servers in these CIDRs (comma-separated) are left alone.
    #[arg(long, value_delimiter = ',')]
    pub ipvs_exclude_cidrs: Vec<String>,
    /// IPVS connection timeouts (`ipvsadm --set`; 0 leaves the kernel's).
    #[arg(long)]
    pub ipvs_tcp_timeout: Option<String>,
    #[arg(long)]
    pub ipvs_tcpfin_timeout: Option<String>,
    #[arg(long)]
    pub ipvs_udp_timeout: Option<String>,
    /// CIDRs (or `primary`) whose addresses accept NodePort traffic, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub nodeport_addresses: Vec<String>,
    /// ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix.
    #[arg(long)]
    pub detect_local_mode: Option<String>,
    #[arg(long)]
    pub pod_bridge_interface: Option<String>,
    #[arg(long)]
    pub pod_interface_name_prefix: Option<String>,
    #[arg(long)]
    pub conntrack_max_per_core: Option<u32>,
    #[arg(long)]
    pub conntrack_min: Option<u32>,
    #[arg(long)]
    pub conntrack_tcp_timeout_established: Option<String>,
    #[arg(long)]
    pub conntrack_tcp_timeout_close_wait: Option<String>,
    /// klog verbosity, accepted for compatibility (use RUST_LOG).
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,
}

fn duration(flag: &str, s: &str) -> Result<Duration, String> {
    api_types::duration::parse(s).ok_or_else(|| format!("--{flag}: invalid duration {s:?}"))
}

impl Options {
    /// The configuration file (or the defaults) with the flags applied.
    pub fn proxy_config(&self) -> Result<ProxyConfig, String> {
        let mut c = match &self.config {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| format!("--config {}: {e}", p.display()))?;
                ProxyConfig::parse(&text).map_err(|e| e.to_string())?
            }
            None => ProxyConfig::default(),
        };
        if let Some(m) = &self.proxy_mode {
            c.mode = ProxyMode::parse(m).map_err(|e| e.to_string())?;
        }
        if let Some(k) = &self.kubeconfig {
            c.kubeconfig = Some(k.display().to_string());
        }
        if let Some(h) = &self.hostname_override {
            c.hostname_override = h.clone();
        }
        if let Some(v) = &self.bind_address {
            c.bind_address = v.clone();
        }
        if let Some(v) = &self.healthz_bind_address {
            c.healthz_bind_address = v.clone();
        }
        if let Some(v) = &self.metrics_bind_address {
            c.metrics_bind_address = v.clone();
        }
        if let Some(v) = &self.cluster_cidr {
            c.cluster_cidr = v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
        }
        if let Some(v) = self.masquerade_all {
            c.masquerade_all = v;
        }
        if let Some(v) = self.iptables_masquerade_bit {
            c.masquerade_bit = v;
        }
        if let Some(v) = &self.iptables_sync_period {
            c.sync_period = duration("iptables-sync-period", v)?;
        }
        if let Some(v) = &self.iptables_min_sync_period {
            c.min_sync_period = duration("iptables-min-sync-period", v)?;
        }
        if c.mode == ProxyMode::Ipvs {
            if let Some(v) = &self.ipvs_sync_period {
                c.sync_period = duration("ipvs-sync-period", v)?;
            }
            if let Some(v) = &self.ipvs_min_sync_period {
                c.min_sync_period = duration("ipvs-min-sync-period", v)?;
            }
        }
        if let Some(v) = &self.ipvs_scheduler {
            c.ipvs_scheduler = v.clone();
        }
        if let Some(v) = self.ipvs_strict_arp {
            c.ipvs_strict_arp = v;
        }
        if !self.ipvs_exclude_cidrs.is_empty() {
            c.ipvs_exclude_cidrs = self.ipvs_exclude_cidrs.clone();
        }
        for (flag, v, dst) in [
            ("ipvs-tcp-timeout", &self.ipvs_tcp_timeout, &mut c.ipvs_tcp_timeout),
            ("ipvs-tcpfin-timeout", &self.ipvs_tcpfin_timeout, &mut c.ipvs_tcp_fin_timeout),
            ("ipvs-udp-timeout", &self.ipvs_udp_timeout, &mut c.ipvs_udp_timeout),
        ] {
            if let Some(v) = v {
                *dst = duration(flag, v)?;
            }
        }
        if !self.nodeport_addresses.is_empty() {
            c.node_port_addresses = self.nodeport_addresses.clone();
        }
        if let Some(v) = &self.detect_local_mode {
            c.detect_local_mode = LocalMode::parse(v).map_err(|e| e.to_string())?;
        }
        if let Some(v) = &self.pod_bridge_interface {
            c.bridge_interface = v.clone();
        }
        if let Some(v) = &self.pod_interface_name_prefix {
            c.interface_name_prefix = v.clone();
        }
        if let Some(v) = self.conntrack_max_per_core {
            c.conntrack.max_per_core = v;
        }
        if let Some(v) = self.conntrack_min {
            c.conntrack.min = v;
        }
        if let Some(v) = &self.conntrack_tcp_timeout_established {
            c.conntrack.tcp_established_timeout = duration("conntrack-tcp-timeout-established", v)?;
        }
        if let Some(v) = &self.conntrack_tcp_timeout_close_wait {
            c.conntrack.tcp_close_wait_timeout = duration("conntrack-tcp-timeout-close-wait", v)?;
        }
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.conf");
        std::fs::write(&path, "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: iptables\nclusterCIDR: 10.0.0.0/8\n").unwrap();
        let o = Options::try_parse_from([
            "kube-proxy",
            "--config",
            path.to_str().unwrap(),
            "--hostname-override=n1",
            "--nodeport-addresses=10.0.0.0/8,primary",
            "--cleanup",
        ])
        .unwrap();
        let c = o.proxy_config().unwrap();
        assert_eq!(c.mode, ProxyMode::Iptables);
        assert_eq!(c.hostname_override, "n1");
        assert_eq!(c.node_port_addresses, ["10.0.0.0/8", "primary"]);
        assert_eq!(o.cleanup, Some(true));
        let o = Options::try_parse_from(["kube-proxy", "--proxy-mode=nftables", "--iptables-sync-period=5s"]).unwrap();
        let c = o.proxy_config().unwrap();
        assert_eq!((c.mode, c.sync_period), (ProxyMode::Nftables, Duration::from_secs(5)));
        let o = Options::try_parse_from([
            "kube-proxy",
            "--proxy-mode=ipvs",
            "--ipvs-scheduler=lc",
            "--ipvs-sync-period=10s",
            "--ipvs-strict-arp",
            "--ipvs-exclude-cidrs=10.250.0.0/16,fd00::/64",
            "--ipvs-tcp-timeout=15m",
        ])
        .unwrap();
        let c = o.proxy_config().unwrap();
        assert_eq!(
            (c.mode, c.ipvs_scheduler.as_str(), c.sync_period),
            (ProxyMode::Ipvs, "lc", Duration::from_secs(10))
        );
        assert!(c.ipvs_strict_arp);
        assert_eq!(c.ipvs_exclude_cidrs, ["10.250.0.0/16", "fd00::/64"]);
        assert_eq!(c.ipvs_tcp_timeout, Duration::from_secs(900));
        assert!(Options::try_parse_from(["kube-proxy", "--ipvs-exclude-cidrs=nope"]).unwrap().proxy_config().is_err());
    }
}
