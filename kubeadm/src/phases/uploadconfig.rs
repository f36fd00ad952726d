//! `kubeadm init phase upload-config`: the ClusterConfiguration in `kube-system/kubeadm-config` and the
//! KubeletConfiguration in `kube-system/kubelet-config`, each readable by joining nodes through a Role.

use serde_json::{Value, json};

use super::{Context, Result, cluster_role_binding, create_or_update, group, role, role_binding};
use crate::config::{self, InitConfig};
use crate::constants as k;

/// The ClusterConfiguration as stored in the cluster (no node-specific fields, as upstream).
pub fn cluster_config_yaml(cfg: &InitConfig) -> String {
    config::marshal(&cfg.cluster)
}

/// Ensures `kubeadm:cluster-admins` is bound to `cluster-admin` (upstream's `EnsureAdminClusterRoleBinding`,
/// done with super-admin.conf because admin.conf's group has no rights until then).
pub async fn ensure_admin_binding(ctx: &Context) -> Result<()> {
    let path = std::path::PathBuf::from(k::KUBERNETES_DIR).join(k::SUPER_ADMIN_KUBECONFIG);
    let c = if ctx.fs.exists(&path) { ctx.client_from(&path)? } else { ctx.admin_client()? };
    let crb = cluster_role_binding(k::CLUSTER_ADMINS_BINDING, "cluster-admin", json!([group(k::CLUSTER_ADMINS_GROUP)]));
    create_or_update(&c, "rbac.authorization.k8s.io", "v1", "clusterrolebindings", &crb).await?;
    Ok(())
}

pub async fn upload_kubeadm(ctx: &Context, c: &client::Client, cfg: &InitConfig) -> Result<()> {
    ctx.out.line(format!(
        "[upload-config] Storing the configuration used in ConfigMap {:?} in the {:?} Namespace",
        k::KUBEADM_CONFIG_CONFIGMAP,
        k::KUBE_SYSTEM
    ));
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": k::KUBEADM_CONFIG_CONFIGMAP, "namespace": k::KUBE_SYSTEM},
        "data": {k::CLUSTER_CONFIGURATION_KEY: cluster_config_yaml(cfg)},
    });
    create_or_update(c, "", "v1", "configmaps", &cm).await?;
    let name = "kubeadm:nodes-kubeadm-config";
    let r = role(
        k::KUBE_SYSTEM,
        name,
        json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [k::KUBEADM_CONFIG_CONFIGMAP], "verbs": ["get"]}]),
    );
    create_or_update(c, "rbac.authorization.k8s.io", "v1", "roles", &r).await?;
    let rb = role_binding(
        k::KUBE_SYSTEM,
        name,
        name,
        json!([group(k::NODE_BOOTSTRAP_TOKEN_AUTH_GROUP), group(k::NODES_GROUP)]),
    );
    create_or_update(c, "rbac.authorization.k8s.io", "v1", "rolebindings", &rb).await?;
    Ok(())
}

pub async fn upload_kubelet(ctx: &Context, c: &client::Client, kubelet: &Value) -> Result<()> {
    ctx.out.line(format!(
        "[kubelet] Creating a ConfigMap {:?} in namespace {} with the configuration for the kubelets in the cluster",
        k::KUBELET_CONFIG_CONFIGMAP,
        k::KUBE_SYSTEM
    ));
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": k::KUBELET_CONFIG_CONFIGMAP, "namespace": k::KUBE_SYSTEM},
        "data": {k::KUBELET_CONFIG_KEY: config::marshal(kubelet)},
    });
    create_or_update(c, "", "v1", "configmaps", &cm).await?;
    let name = "kubeadm:kubelet-config";
    let r = role(
        k::KUBE_SYSTEM,
        name,
        json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [k::KUBELET_CONFIG_CONFIGMAP], "verbs": ["get"]}]),
    );
    create_or_update(c, "rbac.authorization.k8s.io", "v1", "roles", &r).await?;
    let rb = role_binding(
        k::KUBE_SYSTEM,
        name,
        name,
        json!([group(k::NODES_GROUP), group(k::NODE_BOOTSTRAP_TOKEN_AUTH_GROUP)]),
    );
    create_or_update(c, "rbac.authorization.k8s.io", "v1", "rolebindings", &rb).await?;
    Ok(())
}

/// The node's CRI socket annotation (upstream's `uploadconfig` also patches the Node with it).
pub async fn annotate_cri_socket(c: &client::Client, node: &str, socket: &str) -> Result<()> {
    let nodes = c.api("", "v1", "nodes")?;
    if nodes.get(node).await.is_ok() {
        nodes
            .patch(
                node,
                api_types::patch::PatchType::Merge,
                &json!({"metadata": {"annotations": {k::ANNOTATION_CRI_SOCKET: socket}}}),
            )
            .await?;
    }
    Ok(())
}

pub async fn run(ctx: &Context, cfg: &InitConfig, only: Option<&str>) -> Result<()> {
    ensure_admin_binding(ctx).await?;
    let c = ctx.admin_client()?;
    if matches!(only, None | Some("all") | Some("kubeadm")) {
        upload_kubeadm(ctx, &c, cfg).await?;
    }
    if matches!(only, None | Some("all") | Some("kubelet")) {
        upload_kubelet(ctx, &c, &cfg.kubelet).await?;
    }
    Ok(())
}
