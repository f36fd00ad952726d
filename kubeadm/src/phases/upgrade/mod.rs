//! `kubeadm upgrade` (upstream's `phases/upgrade`): the configuration read back from the cluster, health checks,
//! version skew policies ([`policy`]), the versions running now ([`versions`]), the plan ([`plan`]), the static
//! pod upgrade with backups and rollback ([`staticpods`]) and the tasks after it ([`postupgrade`]).

pub mod plan;
pub mod policy;
pub mod postupgrade;
pub mod staticpods;
pub mod versions;

use std::path::PathBuf;

use serde_json::Value;

use super::{Context, Error, Result};
use crate::config::{self, InitConfig};
use crate::constants as k;

/// The name of this node: the CN `system:node:<name>` of kubelet.conf's client certificate (upstream's
/// `getNodeNameFromKubeletConfig`), else the hostname.
pub fn node_name(ctx: &Context) -> String {
    let path = PathBuf::from(k::KUBERNETES_DIR).join(k::KUBELET_KUBECONFIG);
    let from_conf = || -> Option<String> {
        let text = ctx.fs.read_string(&path).ok()?;
        let kc = crate::kubeconfig::parse(&text).ok()?;
        let pem = match kc.client_cert_pem {
            Some(p) => p,
            None => {
                // After rotation kubelet.conf points at the kubelet's current certificate file.
                let user = kc.raw["users"].as_array()?.first()?.clone();
                let file = user["user"]["client-certificate"].as_str()?.to_string();
                ctx.fs.read(std::path::Path::new(&file)).ok()?
            }
        };
        let cert = crate::pki::parse_cert(&pem).ok()?;
        cert.common_name.strip_prefix(k::NODE_USER_PREFIX).map(str::to_string)
    };
    from_conf().unwrap_or_else(config::hostname)
}

/// The InitConfiguration of this node from the cluster (upstream's `FetchInitConfigurationFromCluster`): the
/// ClusterConfiguration of `kubeadm-config`, the KubeletConfiguration of `kubelet-config`, the
/// KubeProxyConfiguration of `kube-proxy`, this node's name and CRI socket (its annotation), and its API endpoint
/// from the kube-apiserver manifest's annotation when this is a control-plane node.
pub async fn fetch_config(ctx: &Context, c: &client::Client, log_prefix: &str) -> Result<InitConfig> {
    ctx.out.line(format!(
        "[{log_prefix}] Reading configuration from the {:?} ConfigMap in namespace {:?}...",
        k::KUBEADM_CONFIG_CONFIGMAP,
        k::KUBE_SYSTEM
    ));
    ctx.out.line(format!(
        "[{log_prefix}] Use 'kubeadm init phase upload-config --config your-config-file' to re-upload it."
    ));
    let cms = c.api("", "v1", "configmaps")?.namespaced(k::KUBE_SYSTEM);
    let cm = match cms.get(k::KUBEADM_CONFIG_CONFIGMAP).await {
        Ok(cm) => cm,
        Err(e) if e.code() == Some(404) => {
            return Err(Error::Other(format!(
                "[{log_prefix}] FATAL: the ConfigMap {:?} in the {} namespace used for getting configuration information was not found",
                k::KUBEADM_CONFIG_CONFIGMAP,
                k::KUBE_SYSTEM
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let text = cm.pointer("/data/ClusterConfiguration").and_then(Value::as_str).unwrap_or_default();
    let mut docs = config::parse_documents(text)?;
    if docs.cluster.is_none() {
        return Err(Error::Other(format!(
            "unexpected error when reading kubeadm-config ConfigMap: {} key value pair missing",
            k::CLUSTER_CONFIGURATION_KEY
        )));
    }
    let yaml = |cm: &Value, key: &str| -> Option<Value> {
        cm.pointer(&format!("/data/{key}")).and_then(Value::as_str).and_then(|t| serde_yaml_ng::from_str(t).ok())
    };
    if let Ok(cm) = cms.get(k::KUBELET_CONFIG_CONFIGMAP).await {
        docs.kubelet = yaml(&cm, k::KUBELET_CONFIG_KEY);
    }
    if let Ok(cm) = cms.get(k::KUBE_PROXY_CONFIGMAP).await {
        docs.kube_proxy = yaml(&cm, "config.conf");
    }
    let init = docs.init.get_or_insert_with(Default::default);
    init.node_registration.name = node_name(ctx);
    if let Ok(node) = c.api("", "v1", "nodes")?.get(&init.node_registration.name).await
        && let Some(s) = node.pointer("/metadata/annotations").and_then(|a| a.get(k::ANNOTATION_CRI_SOCKET))
        && let Some(s) = s.as_str()
    {
        init.node_registration.cri_socket = s.to_string();
    }
    let manifest = crate::manifests::manifest_path(k::KUBE_APISERVER);
    if let Ok(text) = ctx.fs.read_string(&manifest)
        && let Ok(pod) = serde_yaml_ng::from_str::<Value>(&text)
        && let Some(ep) = pod
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(k::ANNOTATION_APISERVER_ENDPOINT))
            .and_then(Value::as_str)
        && let Ok((host, port)) = crate::util::split_host_port(ep)
    {
        init.local_api_endpoint.advertise_address = host;
        if let Some(p) = port {
            init.local_api_endpoint.bind_port = p;
        }
    }
    Ok(InitConfig::from_documents(docs)?)
}

/// Whether this node runs a control plane (its kube-apiserver manifest exists).
pub fn is_control_plane(ctx: &Context) -> bool {
    ctx.fs.exists(&crate::manifests::manifest_path(k::KUBE_APISERVER))
}

/// Upstream's `CheckClusterHealth` (less `CreateJob`): every control-plane node Ready, and this node's static pod
/// manifests present. Failures are errors named after their check, ignorable with `--ignore-preflight-errors`.
pub async fn check_cluster_health(
    ctx: &Context,
    c: &client::Client,
    cfg: &InitConfig,
    ignore: &[String],
) -> Result<()> {
    ctx.out.line("[upgrade] Running cluster health checks");
    let mut findings = Vec::new();
    let nodes = c
        .api("", "v1", "nodes")?
        .list(&client::ListParams {
            label_selector: Some(k::LABEL_NODE_ROLE_CONTROL_PLANE.into()),
            ..Default::default()
        })
        .await?;
    let items = nodes["items"].as_array().cloned().unwrap_or_default();
    let not_ready: Vec<String> = items
        .iter()
        .filter(|n| {
            !n.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
        .filter_map(|n| n.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string))
        .collect();
    if items.is_empty() {
        findings.push(super::preflight::Finding {
            name: "ControlPlaneNodesReady".into(),
            warning: false,
            message: "couldn't find any control-plane nodes".into(),
        });
    } else if !not_ready.is_empty() {
        findings.push(super::preflight::Finding {
            name: "ControlPlaneNodesReady".into(),
            warning: false,
            message: format!("there are NotReady control-planes in the cluster: {not_ready:?}"),
        });
    }
    let mut components = vec![k::KUBE_APISERVER, k::KUBE_CONTROLLER_MANAGER, k::KUBE_SCHEDULER];
    if cfg.cluster.etcd.local.is_some() {
        components.push(k::ETCD);
    }
    for comp in components {
        let p = crate::manifests::manifest_path(comp);
        if !ctx.fs.exists(&p) {
            findings.push(super::preflight::Finding {
                name: "StaticPodManifest".into(),
                warning: false,
                message: format!("the manifest for component {comp} doesn't exist: {}", p.display()),
            });
        }
    }
    super::preflight::report(ctx, &findings, ignore)
}
