//! `kubeadm init phase bootstrap-token`: the configured bootstrap tokens, the RBAC rules that let them join
//! nodes (get nodes, post CSRs, auto-approval, certificate rotation), and the `kube-public/cluster-info`
//! ConfigMap readable by anyone, which the bootstrapsigner controller signs with each token.

use serde_json::json;

use super::{Context, Error, Result, cluster_role_binding, create_or_update, group, role, role_binding};
use crate::config::{BootstrapToken, InitConfig};
use crate::constants as k;

/// Creates or updates tokens (upstream's `UpdateOrCreateTokens`).
pub async fn create_tokens(c: &client::Client, tokens: &[BootstrapToken], now: jiff::Timestamp) -> Result<()> {
    for t in tokens {
        let secret = crate::token::to_secret(t, now).map_err(Error::Other)?;
        create_or_update(c, "", "v1", "secrets", &secret).await?;
    }
    Ok(())
}

/// The RBAC objects for node bootstrap (upstream's `node` phase helpers).
pub async fn allow_bootstrap(ctx: &Context, c: &client::Client) -> Result<()> {
    let rbac = |plural: &str| ("rbac.authorization.k8s.io", "v1", plural.to_string());
    let bootstrappers = json!([group(k::NODE_BOOTSTRAP_TOKEN_AUTH_GROUP)]);
    let cr = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "kubeadm:get-nodes"},
        "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}],
    });
    let (g, v, p) = rbac("clusterroles");
    create_or_update(c, g, v, &p, &cr).await?;
    let (g, v, p) = rbac("clusterrolebindings");
    create_or_update(
        c,
        g,
        v,
        &p,
        &cluster_role_binding("kubeadm:get-nodes", "kubeadm:get-nodes", bootstrappers.clone()),
    )
    .await?;
    ctx.out.line("[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to get nodes");
    create_or_update(
        c,
        g,
        v,
        &p,
        &cluster_role_binding("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", bootstrappers.clone()),
    )
    .await?;
    ctx.out.line("[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to post CSRs in order for nodes to get long term certificate credentials");
    create_or_update(
        c,
        g,
        v,
        &p,
        &cluster_role_binding(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            bootstrappers,
        ),
    )
    .await?;
    ctx.out.line("[bootstrap-token] Configured RBAC rules to allow the csrapprover controller automatically approve CSRs from a Node Bootstrap Token");
    create_or_update(
        c,
        g,
        v,
        &p,
        &cluster_role_binding(
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            json!([group(k::NODES_GROUP)]),
        ),
    )
    .await?;
    ctx.out.line("[bootstrap-token] Configured RBAC rules to allow certificate rotation for all node client certificates in the cluster");
    Ok(())
}

/// `kube-public/cluster-info` with the CA and the control-plane endpoint, and its anonymous read access.
pub async fn create_cluster_info(ctx: &Context, c: &client::Client, server: &str, ca_pem: &str) -> Result<()> {
    ctx.out.line(format!(
        "[bootstrap-token] Creating the {:?} ConfigMap in the {:?} namespace",
        k::CLUSTER_INFO,
        k::KUBE_PUBLIC
    ));
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": k::CLUSTER_INFO, "namespace": k::KUBE_PUBLIC},
        "data": {"kubeconfig": crate::kubeconfig::cluster_only(server, ca_pem)},
    });
    create_or_update(c, "", "v1", "configmaps", &cm).await?;
    let name = "kubeadm:bootstrap-signer-clusterinfo";
    let r = role(
        k::KUBE_PUBLIC,
        name,
        json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [k::CLUSTER_INFO], "verbs": ["get"]}]),
    );
    create_or_update(c, "rbac.authorization.k8s.io", "v1", "roles", &r).await?;
    let rb = role_binding(
        k::KUBE_PUBLIC,
        name,
        name,
        json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:anonymous"}]),
    );
    create_or_update(c, "rbac.authorization.k8s.io", "v1", "rolebindings", &rb).await?;
    Ok(())
}

pub async fn run(ctx: &Context, cfg: &InitConfig) -> Result<()> {
    for t in &cfg.init.bootstrap_tokens {
        ctx.out.line(format!("[bootstrap-token] Using token: {}", t.token));
    }
    ctx.out.line("[bootstrap-token] Configuring bootstrap tokens, cluster-info ConfigMap, RBAC Roles");
    let c = ctx.admin_client()?;
    create_tokens(&c, &cfg.init.bootstrap_tokens, ctx.now()).await?;
    allow_bootstrap(ctx, &c).await?;
    let ca_path = std::path::PathBuf::from(cfg.cert_dir()).join("ca.crt");
    let ca = ctx.fs.read_string(&ca_path).map_err(super::io(&ca_path))?;
    create_cluster_info(ctx, &c, &cfg.control_plane_url(), &ca).await
}
