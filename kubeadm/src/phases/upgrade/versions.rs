//! What runs in the cluster now (upstream's `versiongetter.go` and the component lookups of `compute.go`): the
//! cluster version, kubeadm's, each node's kubelet, each control-plane static pod's image tag per node, and the
//! kube-proxy, CoreDNS and etcd versions.

use std::collections::BTreeMap;

use serde_json::Value;

use super::super::Result;
use crate::config::InitConfig;
use crate::constants as k;

/// The versions found, for the skew policies and `upgrade plan`.
#[derive(Clone, Debug, Default)]
pub struct ClusterVersions {
    /// The ClusterConfiguration's `kubernetesVersion` (what kubeadm last installed), else the apiserver's
    /// `/version`: our components report their build's version whatever tag their image carries.
    pub cluster: String,
    /// Node name → kubelet version.
    pub kubelets: BTreeMap<String, String>,
    /// Component → node → image tag of its static pod.
    pub control_plane: BTreeMap<String, BTreeMap<String, String>>,
    pub kube_proxy: Option<String>,
    pub coredns: Option<String>,
}

/// The tag of an image reference (`registry.k8s.io/kube-apiserver:v1.33.0` → `v1.33.0`).
pub fn image_tag(image: &str) -> Option<&str> {
    let last = image.rsplit('/').next()?;
    last.split_once(':').map(|(_, t)| t.split('@').next().unwrap_or(t))
}

fn first_container_image(obj: &Value, pointer: &str) -> Option<String> {
    obj.pointer(pointer)?.as_array()?.first()?.get("image")?.as_str().map(str::to_string)
}

/// Reads the versions from the API (`cluster_cfg`: the configuration stored before this upgrade changes it).
pub async fn gather(c: &client::Client, cluster_cfg: &InitConfig) -> Result<ClusterVersions> {
    let mut v = ClusterVersions { cluster: cluster_cfg.cluster.kubernetes_version.clone(), ..Default::default() };
    if v.cluster.is_empty() {
        let info: Value = serde_json::from_slice(&c.get_raw("/version").await?).unwrap_or_default();
        v.cluster = info["gitVersion"].as_str().unwrap_or_default().to_string();
    }
    let nodes = c.api("", "v1", "nodes")?.list(&Default::default()).await?;
    for n in nodes["items"].as_array().into_iter().flatten() {
        let name = n.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let kv = n.pointer("/status/nodeInfo/kubeletVersion").and_then(Value::as_str).unwrap_or_default();
        v.kubelets.insert(name.to_string(), kv.to_string());
    }
    let pods = c.api("", "v1", "pods")?.namespaced(k::KUBE_SYSTEM);
    for comp in [k::KUBE_APISERVER, k::KUBE_CONTROLLER_MANAGER, k::KUBE_SCHEDULER, k::ETCD] {
        let list = pods
            .list(&client::ListParams { label_selector: Some(format!("component={comp}")), ..Default::default() })
            .await?;
        for p in list["items"].as_array().into_iter().flatten() {
            let node = p.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default().to_string();
            if let Some(img) = first_container_image(p, "/spec/containers")
                && let Some(tag) = image_tag(&img)
            {
                v.control_plane.entry(comp.to_string()).or_default().insert(node, tag.to_string());
            }
        }
    }
    let ds = c.api("apps", "v1", "daemonsets")?.namespaced(k::KUBE_SYSTEM).get(k::KUBE_PROXY).await;
    if let Ok(ds) = ds {
        v.kube_proxy = first_container_image(&ds, "/spec/template/spec/containers")
            .and_then(|i| image_tag(&i).map(str::to_string));
    }
    let dep = c.api("apps", "v1", "deployments")?.namespaced(k::KUBE_SYSTEM).get(k::COREDNS).await;
    if let Ok(d) = dep {
        v.coredns =
            first_container_image(&d, "/spec/template/spec/containers").and_then(|i| image_tag(&i).map(str::to_string));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags() {
        assert_eq!(image_tag("registry.k8s.io/kube-apiserver:v1.33.0"), Some("v1.33.0"));
        assert_eq!(image_tag("localhost:5000/etcd:3.5.21-0"), Some("3.5.21-0"));
        assert_eq!(image_tag("localhost:5000/etcd"), None);
    }
}
