//! Every certificate kubeadm makes, as upstream's `phases/certs/certlist.go`: name (for `certs renew` and
//! `check-expiration`), file base name under the certificates dir, CA, subject, SANs and usage.

use std::time::Duration;

use super::{AltNames, CertConfig, Usage};
use crate::config::InitConfig;
use crate::constants as k;

/// A CA kubeadm creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaSpec {
    /// `ca`, `front-proxy-ca`, `etcd-ca`.
    pub name: &'static str,
    /// `ca`, `front-proxy-ca`, `etcd/ca`.
    pub base_name: &'static str,
    pub common_name: &'static str,
}

pub const CA: CaSpec = CaSpec { name: "ca", base_name: "ca", common_name: "kubernetes" };
pub const FRONT_PROXY_CA: CaSpec =
    CaSpec { name: "front-proxy-ca", base_name: "front-proxy-ca", common_name: "front-proxy-ca" };
pub const ETCD_CA: CaSpec = CaSpec { name: "etcd-ca", base_name: "etcd/ca", common_name: "etcd-ca" };

/// A leaf certificate kubeadm creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertSpec {
    pub name: &'static str,
    pub base_name: &'static str,
    pub ca: CaSpec,
    /// The `kubeadm init phase certs <phase>` name.
    pub phase: &'static str,
    pub short: &'static str,
}

pub const APISERVER: CertSpec = CertSpec {
    name: "apiserver",
    base_name: "apiserver",
    ca: CA,
    phase: "apiserver",
    short: "Generate the certificate for serving the Kubernetes API",
};
pub const APISERVER_KUBELET_CLIENT: CertSpec = CertSpec {
    name: "apiserver-kubelet-client",
    base_name: "apiserver-kubelet-client",
    ca: CA,
    phase: "apiserver-kubelet-client",
    short: "Generate the certificate for the API server to connect to kubelet",
};
pub const FRONT_PROXY_CLIENT: CertSpec = CertSpec {
    name: "front-proxy-client",
    base_name: "front-proxy-client",
    ca: FRONT_PROXY_CA,
    phase: "front-proxy-client",
    short: "Generate the certificate for the front proxy client",
};
pub const ETCD_SERVER: CertSpec = CertSpec {
    name: "etcd-server",
    base_name: "etcd/server",
    ca: ETCD_CA,
    phase: "etcd-server",
    short: "Generate the certificate for serving etcd",
};
pub const ETCD_PEER: CertSpec = CertSpec {
    name: "etcd-peer",
    base_name: "etcd/peer",
    ca: ETCD_CA,
    phase: "etcd-peer",
    short: "Generate the certificate for etcd nodes to communicate with each other",
};
pub const ETCD_HEALTHCHECK_CLIENT: CertSpec = CertSpec {
    name: "etcd-healthcheck-client",
    base_name: "etcd/healthcheck-client",
    ca: ETCD_CA,
    phase: "etcd-healthcheck-client",
    short: "Generate the certificate for liveness probes to healthcheck etcd",
};
pub const APISERVER_ETCD_CLIENT: CertSpec = CertSpec {
    name: "apiserver-etcd-client",
    base_name: "apiserver-etcd-client",
    ca: ETCD_CA,
    phase: "apiserver-etcd-client",
    short: "Generate the certificate the apiserver uses to access etcd",
};

/// The CAs and their certificates for a configuration, in upstream's generation order. The etcd CA and its
/// certificates only exist when the store is a local etcd (apiserver-etcd-client also for external etcd is
/// the user's: upstream skips the etcd certs for external etcd).
pub fn for_config(cfg: &InitConfig) -> Vec<(CaSpec, Vec<CertSpec>)> {
    let mut v = vec![(CA, vec![APISERVER, APISERVER_KUBELET_CLIENT]), (FRONT_PROXY_CA, vec![FRONT_PROXY_CLIENT])];
    if cfg.cluster.etcd.local.is_some() {
        v.push((ETCD_CA, vec![ETCD_SERVER, ETCD_PEER, ETCD_HEALTHCHECK_CLIENT, APISERVER_ETCD_CLIENT]));
    }
    v
}

/// Every leaf spec (for lookups by name).
pub const ALL: [CertSpec; 7] = [
    APISERVER,
    APISERVER_KUBELET_CLIENT,
    FRONT_PROXY_CLIENT,
    ETCD_SERVER,
    ETCD_PEER,
    ETCD_HEALTHCHECK_CLIENT,
    APISERVER_ETCD_CLIENT,
];

/// Upstream's `GetAPIServerAltNames`.
pub fn apiserver_alt_names(cfg: &InitConfig) -> AltNames {
    let mut a = AltNames::default();
    for d in [
        cfg.node_name().to_string(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        format!("kubernetes.default.svc.{}", cfg.cluster.networking.dns_domain),
    ] {
        a.add(&d);
    }
    for subnet in cfg.cluster.networking.service_subnet.split(',') {
        if let Some(ip) = crate::util::nth_service_ip(subnet, 1) {
            a.add(&ip.to_string());
        }
    }
    a.add(cfg.advertise_address());
    if !cfg.cluster.control_plane_endpoint.is_empty()
        && let Ok((host, _)) = crate::util::split_host_port(&cfg.cluster.control_plane_endpoint)
    {
        a.add(&host);
    }
    for s in &cfg.cluster.api_server.cert_sans {
        a.add(s);
    }
    a
}

/// Upstream's `GetEtcdAltNames` (server) and `GetEtcdPeerAltNames` (peer).
pub fn etcd_alt_names(cfg: &InitConfig, peer: bool) -> AltNames {
    let mut a = AltNames::default();
    a.add(cfg.node_name());
    if !peer {
        a.add("localhost");
    }
    a.add(cfg.advertise_address());
    if !peer {
        a.add("127.0.0.1");
        a.add("::1");
    }
    if let Some(local) = &cfg.cluster.etcd.local {
        for s in if peer { &local.peer_cert_sans } else { &local.server_cert_sans } {
            a.add(s);
        }
    }
    a
}

/// The certificate a spec describes for this configuration.
pub fn cert_config(spec: &CertSpec, cfg: &InitConfig, validity: Duration) -> CertConfig {
    let (cn, org, alt, usage): (String, Vec<String>, AltNames, Usage) = match spec.name {
        "apiserver" => ("kube-apiserver".into(), vec![], apiserver_alt_names(cfg), Usage::Server),
        "apiserver-kubelet-client" => (
            k::APISERVER_KUBELET_CLIENT_CN.into(),
            vec![k::CLUSTER_ADMINS_GROUP.into()],
            AltNames::default(),
            Usage::Client,
        ),
        "front-proxy-client" => (k::FRONT_PROXY_CLIENT_CN.into(), vec![], AltNames::default(), Usage::Client),
        "etcd-server" => (cfg.node_name().into(), vec![], etcd_alt_names(cfg, false), Usage::ServerAndClient),
        "etcd-peer" => (cfg.node_name().into(), vec![], etcd_alt_names(cfg, true), Usage::ServerAndClient),
        "etcd-healthcheck-client" => (k::ETCD_HEALTHCHECK_CLIENT_CN.into(), vec![], AltNames::default(), Usage::Client),
        _ => (k::APISERVER_ETCD_CLIENT_CN.into(), vec![], AltNames::default(), Usage::Client),
    };
    CertConfig { common_name: cn, organization: org, alt_names: alt, usage, validity }
}
