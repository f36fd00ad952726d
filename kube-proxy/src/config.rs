//! KubeProxyConfiguration (`kubeproxy.config.k8s.io/v1alpha1`): parsing with upstream's defaults
//! (`pkg/proxy/apis/config/v1alpha1/defaults.go`). One deliberate difference: `mode` defaults to `nftables`.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("decoding KubeProxyConfiguration: {0}")]
    Decode(String),
    #[error("unsupported {field}: {value:?}")]
    Invalid { field: &'static str, value: String },
}

/// Proxy modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Nftables,
    Iptables,
    Ipvs,
}

impl ProxyMode {
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "" | "nftables" => Ok(ProxyMode::Nftables),
            "iptables" => Ok(ProxyMode::Iptables),
            "ipvs" => Ok(ProxyMode::Ipvs),
            other => Err(Error::Invalid { field: "mode", value: other.to_string() }),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ProxyMode::Nftables => "nftables",
            ProxyMode::Iptables => "iptables",
            ProxyMode::Ipvs => "ipvs",
        }
    }
}

/// `detectLocalMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalMode {
    ClusterCidr,
    NodeCidr,
    BridgeInterface,
    InterfaceNamePrefix,
}

impl LocalMode {
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "" | "ClusterCIDR" => Ok(LocalMode::ClusterCidr),
            "NodeCIDR" => Ok(LocalMode::NodeCidr),
            "BridgeInterface" => Ok(LocalMode::BridgeInterface),
            "InterfaceNamePrefix" => Ok(LocalMode::InterfaceNamePrefix),
            other => Err(Error::Invalid { field: "detectLocalMode", value: other.to_string() }),
        }
    }
}

/// The `conntrack` section: sysctls kube-proxy sets at start (0 leaves the kernel's value).
#[derive(Debug, Clone, PartialEq)]
pub struct Conntrack {
    pub max_per_core: u32,
    pub min: u32,
    pub tcp_established_timeout: Duration,
    pub tcp_close_wait_timeout: Duration,
    pub udp_timeout: Duration,
    pub udp_stream_timeout: Duration,
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    pub mode: ProxyMode,
    pub kubeconfig: Option<String>,
    pub cluster_cidr: Vec<String>,
    pub bind_address: String,
    pub healthz_bind_address: String,
    pub metrics_bind_address: String,
    pub hostname_override: String,
    pub sync_period: Duration,
    pub min_sync_period: Duration,
    pub masquerade_all: bool,
    pub masquerade_bit: u32,
    pub node_port_addresses: Vec<String>,
    pub detect_local_mode: LocalMode,
    pub bridge_interface: String,
    pub interface_name_prefix: String,
    pub ipvs_scheduler: String,
    /// `ipvs.strictARP`.
    pub ipvs_strict_arp: bool,
    /// `ipvs.excludeCIDRs`: virtual servers kube-proxy leaves alone.
    pub ipvs_exclude_cidrs: Vec<String>,
    /// `ipvs.tcpTimeout`, `ipvs.tcpFinTimeout`, `ipvs.udpTimeout` (0: the kernel's).
    pub ipvs_tcp_timeout: Duration,
    pub ipvs_tcp_fin_timeout: Duration,
    pub ipvs_udp_timeout: Duration,
    pub conntrack: Conntrack,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            mode: ProxyMode::Nftables,
            kubeconfig: None,
            cluster_cidr: Vec::new(),
            bind_address: "0.0.0.0".into(),
            healthz_bind_address: "0.0.0.0:10256".into(),
            metrics_bind_address: "127.0.0.1:10249".into(),
            hostname_override: String::new(),
            sync_period: Duration::from_secs(30),
            min_sync_period: Duration::from_secs(1),
            masquerade_all: false,
            masquerade_bit: 14,
            node_port_addresses: Vec::new(),
            detect_local_mode: LocalMode::ClusterCidr,
            bridge_interface: String::new(),
            interface_name_prefix: String::new(),
            ipvs_scheduler: "rr".into(),
            ipvs_strict_arp: false,
            ipvs_exclude_cidrs: Vec::new(),
            ipvs_tcp_timeout: Duration::ZERO,
            ipvs_tcp_fin_timeout: Duration::ZERO,
            ipvs_udp_timeout: Duration::ZERO,
            conntrack: Conntrack {
                max_per_core: 32768,
                min: 131072,
                tcp_established_timeout: Duration::from_secs(24 * 3600),
                tcp_close_wait_timeout: Duration::from_secs(3600),
                udp_timeout: Duration::ZERO,
                udp_stream_timeout: Duration::ZERO,
            },
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ModeFile {
    sync_period: Option<String>,
    min_sync_period: Option<String>,
    masquerade_all: Option<bool>,
    masquerade_bit: Option<u32>,
    scheduler: Option<String>,
    #[serde(rename = "strictARP")]
    strict_arp: Option<bool>,
    #[serde(rename = "excludeCIDRs")]
    exclude_cidrs: Option<Vec<String>>,
    tcp_timeout: Option<String>,
    tcp_fin_timeout: Option<String>,
    udp_timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ConntrackFile {
    max_per_core: Option<u32>,
    min: Option<u32>,
    tcp_established_timeout: Option<String>,
    tcp_close_wait_timeout: Option<String>,
    udp_timeout: Option<String>,
    udp_stream_timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ClientConnectionFile {
    kubeconfig: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DetectLocalFile {
    bridge_interface: Option<String>,
    interface_name_prefix: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct File {
    api_version: Option<String>,
    kind: Option<String>,
    mode: Option<String>,
    #[serde(rename = "clusterCIDR")]
    cluster_cidr: Option<String>,
    bind_address: Option<String>,
    healthz_bind_address: Option<String>,
    metrics_bind_address: Option<String>,
    hostname_override: Option<String>,
    masquerade_all: Option<bool>,
    node_port_addresses: Option<Vec<String>>,
    detect_local_mode: Option<String>,
    detect_local: Option<DetectLocalFile>,
    client_connection: Option<ClientConnectionFile>,
    iptables: Option<ModeFile>,
    ipvs: Option<ModeFile>,
    nftables: Option<ModeFile>,
    conntrack: Option<ConntrackFile>,
}

fn duration(field: &'static str, v: &Option<String>) -> Result<Option<Duration>, Error> {
    v.as_ref()
        .map(|s| api_types::duration::parse(s).ok_or_else(|| Error::Invalid { field, value: s.clone() }))
        .transpose()
}

impl ProxyConfig {
    /// Parses a KubeProxyConfiguration (YAML or JSON) over the defaults.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let f: File = serde_yaml_ng::from_str(text).map_err(|e| Error::Decode(e.to_string()))?;
        if let Some(v) = &f.api_version
            && v != "kubeproxy.config.k8s.io/v1alpha1"
        {
            return Err(Error::Invalid { field: "apiVersion", value: v.clone() });
        }
        if let Some(k) = &f.kind
            && k != "KubeProxyConfiguration"
        {
            return Err(Error::Invalid { field: "kind", value: k.clone() });
        }
        let mut c = ProxyConfig::default();
        if let Some(m) = &f.mode {
            c.mode = ProxyMode::parse(m)?;
        }
        if let Some(cidr) = f.cluster_cidr {
            c.cluster_cidr = cidr.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
        }
        if let Some(v) = f.bind_address.filter(|s| !s.is_empty()) {
            c.bind_address = v;
        }
        if let Some(v) = f.healthz_bind_address {
            c.healthz_bind_address = v;
        }
        if let Some(v) = f.metrics_bind_address {
            c.metrics_bind_address = v;
        }
        if let Some(v) = f.hostname_override {
            c.hostname_override = v;
        }
        if let Some(v) = f.node_port_addresses {
            c.node_port_addresses = v;
        }
        if let Some(m) = &f.detect_local_mode {
            c.detect_local_mode = LocalMode::parse(m)?;
        }
        if let Some(d) = f.detect_local {
            c.bridge_interface = d.bridge_interface.unwrap_or_default();
            c.interface_name_prefix = d.interface_name_prefix.unwrap_or_default();
        }
        c.kubeconfig = f.client_connection.and_then(|cc| cc.kubeconfig).filter(|s| !s.is_empty());
        // The section of the chosen mode gives the sync periods; masquerade settings live in `iptables`.
        let section = match c.mode {
            ProxyMode::Nftables => &f.nftables,
            ProxyMode::Iptables => &f.iptables,
            ProxyMode::Ipvs => &f.ipvs,
        };
        if let Some(s) = section {
            if let Some(d) = duration("syncPeriod", &s.sync_period)? {
                c.sync_period = d;
            }
            if let Some(d) = duration("minSyncPeriod", &s.min_sync_period)? {
                c.min_sync_period = d;
            }
        }
        for s in [&f.iptables, &f.nftables].into_iter().flatten() {
            if let Some(b) = s.masquerade_all {
                c.masquerade_all = b;
            }
            if let Some(b) = s.masquerade_bit {
                c.masquerade_bit = b;
            }
        }
        if let Some(b) = f.masquerade_all {
            c.masquerade_all = b;
        }
        if let Some(ipvs) = &f.ipvs {
            if let Some(s) = ipvs.scheduler.clone().filter(|s| !s.is_empty()) {
                c.ipvs_scheduler = s;
            }
            c.ipvs_strict_arp = ipvs.strict_arp.unwrap_or(false);
            c.ipvs_exclude_cidrs = ipvs.exclude_cidrs.clone().unwrap_or_default();
            for (field, v, dst) in [
                ("ipvs.tcpTimeout", &ipvs.tcp_timeout, &mut c.ipvs_tcp_timeout),
                ("ipvs.tcpFinTimeout", &ipvs.tcp_fin_timeout, &mut c.ipvs_tcp_fin_timeout),
                ("ipvs.udpTimeout", &ipvs.udp_timeout, &mut c.ipvs_udp_timeout),
            ] {
                if let Some(d) = duration(field, v)? {
                    *dst = d;
                }
            }
        }
        if let Some(ct) = f.conntrack {
            if let Some(v) = ct.max_per_core {
                c.conntrack.max_per_core = v;
            }
            if let Some(v) = ct.min {
                c.conntrack.min = v;
            }
            if let Some(d) = duration("conntrack.tcpEstablishedTimeout", &ct.tcp_established_timeout)? {
                c.conntrack.tcp_established_timeout = d;
            }
            if let Some(d) = duration("conntrack.tcpCloseWaitTimeout", &ct.tcp_close_wait_timeout)? {
                c.conntrack.tcp_close_wait_timeout = d;
            }
            if let Some(d) = duration("conntrack.udpTimeout", &ct.udp_timeout)? {
                c.conntrack.udp_timeout = d;
            }
            if let Some(d) = duration("conntrack.udpStreamTimeout", &ct.udp_stream_timeout)? {
                c.conntrack.udp_stream_timeout = d;
            }
        }
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), Error> {
        if self.masquerade_bit > 31 {
            return Err(Error::Invalid { field: "iptables.masqueradeBit", value: self.masquerade_bit.to_string() });
        }
        if self.min_sync_period > self.sync_period && matches!(self.mode, ProxyMode::Iptables | ProxyMode::Ipvs) {
            return Err(Error::Invalid {
                field: if self.mode == ProxyMode::Ipvs { "ipvs.minSyncPeriod" } else { "iptables.minSyncPeriod" },
                value: format!("{:?}", self.min_sync_period),
            });
        }
        for cidr in &self.ipvs_exclude_cidrs {
            cidr.parse::<ipnetwork::IpNetwork>()
                .map_err(|_| Error::Invalid { field: "ipvs.excludeCIDRs", value: cidr.clone() })?;
        }
        for cidr in &self.cluster_cidr {
            cidr.parse::<ipnetwork::IpNetwork>()
                .map_err(|_| Error::Invalid { field: "clusterCIDR", value: cidr.clone() })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_file() {
        let c = ProxyConfig::default();
        assert_eq!(c.mode, ProxyMode::Nftables);
        assert_eq!(
            (c.healthz_bind_address.as_str(), c.metrics_bind_address.as_str()),
            ("0.0.0.0:10256", "127.0.0.1:10249")
        );
        assert_eq!(
            (c.sync_period, c.min_sync_period, c.masquerade_bit),
            (Duration::from_secs(30), Duration::from_secs(1), 14)
        );
        let c = ProxyConfig::parse(
            r#"
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: 10.244.0.0/16
hostnameOverride: node-1
clientConnection:
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
iptables:
  syncPeriod: 1m0s
  minSyncPeriod: 500ms
  masqueradeBit: 15
nftables:
  syncPeriod: 10s
nodePortAddresses: ["192.168.0.0/16"]
detectLocalMode: NodeCIDR
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 2h
"#,
        )
        .unwrap();
        assert_eq!(c.mode, ProxyMode::Iptables);
        assert_eq!(c.cluster_cidr, ["10.244.0.0/16"]);
        assert_eq!(c.hostname_override, "node-1");
        assert_eq!(c.sync_period, Duration::from_secs(60));
        assert_eq!(c.min_sync_period, Duration::from_millis(500));
        assert_eq!(c.masquerade_bit, 15);
        assert_eq!(c.node_port_addresses, ["192.168.0.0/16"]);
        assert_eq!(c.detect_local_mode, LocalMode::NodeCidr);
        assert_eq!(c.conntrack.max_per_core, 0);
        assert_eq!(c.conntrack.tcp_established_timeout, Duration::from_secs(7200));
        assert_eq!(c.kubeconfig.as_deref(), Some("/var/lib/kube-proxy/kubeconfig.conf"));
        let c = ProxyConfig::parse(
            r#"
mode: ipvs
ipvs:
  scheduler: sh
  syncPeriod: 45s
  minSyncPeriod: 2s
  strictARP: true
  excludeCIDRs: ["10.250.0.0/16"]
  tcpTimeout: 900s
  tcpFinTimeout: 120s
  udpTimeout: 300s
"#,
        )
        .unwrap();
        assert_eq!((c.mode, c.ipvs_scheduler.as_str()), (ProxyMode::Ipvs, "sh"));
        assert_eq!((c.sync_period, c.min_sync_period), (Duration::from_secs(45), Duration::from_secs(2)));
        assert!(c.ipvs_strict_arp);
        assert_eq!(c.ipvs_exclude_cidrs, ["10.250.0.0/16"]);
        assert_eq!(
            (c.ipvs_tcp_timeout, c.ipvs_tcp_fin_timeout, c.ipvs_udp_timeout),
            (Duration::from_secs(900), Duration::from_secs(120), Duration::from_secs(300))
        );
        assert!(ProxyConfig::parse("mode: ipvs\nipvs:\n  excludeCIDRs: [bad]").is_err());
        assert!(ProxyConfig::parse("mode: userspace").is_err());
        assert!(ProxyConfig::parse("apiVersion: kubeproxy.config.k8s.io/v1beta9").is_err());
    }
}
