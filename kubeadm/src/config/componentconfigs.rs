//! The component configurations kubeadm manages besides its own (upstream's `componentconfigs`): the
//! KubeletConfiguration written to `/var/lib/kubelet/config.yaml` and the `kubelet-config` ConfigMap, and the
//! KubeProxyConfiguration of the `kube-proxy` ConfigMap. kubeadm's defaults are set first; the user's document
//! (from `--config`) is merged over them, so every field the user gives wins.

use serde_json::{Value, json};

use super::{ClusterConfiguration, InitConfiguration};
use crate::constants as k;

pub const KUBELET_GROUP_VERSION: &str = "kubelet.config.k8s.io/v1beta1";
pub const KUBE_PROXY_GROUP_VERSION: &str = "kubeproxy.config.k8s.io/v1alpha1";

/// Merges `over` into `base` (objects key by key, everything else replaced).
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

/// Whether systemd runs this machine (PID 1), which decides the default cgroup driver.
pub fn systemd_is_init() -> bool {
    std::fs::read_to_string("/proc/1/comm").map(|c| c.trim() == "systemd").unwrap_or(false)
}

/// kubeadm's KubeletConfiguration defaults (`componentconfigs/kubelet.go`): webhook authentication and
/// authorization against the cluster CA, cluster DNS at the 10th service IP, rotation, the static pod path. The
/// cgroup driver is `systemd` as upstream when systemd is PID 1, `cgroupfs` otherwise (ours: a machine without
/// systemd has no systemd cgroup manager).
pub fn kubelet_defaults(cluster: &ClusterConfiguration, user: Option<Value>) -> Value {
    let dns_ip = crate::util::nth_service_ip(&cluster.networking.service_subnet, 10)
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "10.96.0.10".into());
    let mut v = json!({
        "apiVersion": KUBELET_GROUP_VERSION,
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": false},
            "webhook": {"cacheTTL": "0s", "enabled": true},
            "x509": {"clientCAFile": format!("{}/ca.crt", cluster.certificates_dir)},
        },
        "authorization": {
            "mode": "Webhook",
            "webhook": {"cacheAuthorizedTTL": "0s", "cacheUnauthorizedTTL": "0s"},
        },
        "cgroupDriver": if systemd_is_init() { "systemd" } else { "cgroupfs" },
        "clusterDNS": [dns_ip],
        "clusterDomain": cluster.networking.dns_domain,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": k::KUBELET_HEALTHZ_PORT,
        "rotateCertificates": true,
        "staticPodPath": format!("{}/{}", k::KUBERNETES_DIR, k::MANIFESTS_SUBDIR),
    });
    if let Some(u) = user {
        merge(&mut v, u);
    }
    super::sort_keys(v)
}

/// kubeadm's KubeProxyConfiguration defaults (`componentconfigs/kubeproxy.go`): bind address by the advertise
/// address's family, the pod subnet as cluster CIDR, the in-pod kubeconfig.
pub fn kube_proxy_defaults(init: &InitConfiguration, cluster: &ClusterConfiguration, user: Option<Value>) -> Value {
    let v6 = init.local_api_endpoint.advertise_address.contains(':');
    let mut v = json!({
        "apiVersion": KUBE_PROXY_GROUP_VERSION,
        "kind": "KubeProxyConfiguration",
        "bindAddress": if v6 { "::" } else { "0.0.0.0" },
        "clientConnection": {"kubeconfig": "/var/lib/kube-proxy/kubeconfig.conf"},
    });
    if !cluster.networking.pod_subnet.is_empty() {
        v["clusterCIDR"] = json!(cluster.networking.pod_subnet);
    }
    if let Some(u) = user {
        merge(&mut v, u);
    }
    super::sort_keys(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_fields_win_over_kubeadm_defaults() {
        let mut c = ClusterConfiguration::default();
        super::super::default_cluster(&mut c);
        let v = kubelet_defaults(
            &c,
            Some(
                json!({"cgroupDriver": "systemd", "serverTLSBootstrap": true, "authentication": {"anonymous": {"enabled": true}}}),
            ),
        );
        assert_eq!(v["cgroupDriver"], "systemd");
        assert_eq!(v["serverTLSBootstrap"], true);
        assert_eq!(v["authentication"]["anonymous"]["enabled"], true);
        assert_eq!(v["authentication"]["webhook"]["enabled"], true);
        assert_eq!(v["clusterDNS"], json!(["10.96.0.10"]));
        assert_eq!(v["authentication"]["x509"]["clientCAFile"], "/etc/kubernetes/pki/ca.crt");
    }
}
