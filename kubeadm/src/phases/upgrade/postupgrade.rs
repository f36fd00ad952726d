//! What follows the control plane's upgrade (upstream's `upgrade apply` phases upload-config, kubelet-config,
//! bootstrap-token and addon, and `upgrade node`'s kubelet-config and addon): the `kubeadm-config` and
//! `kubelet-config` ConfigMaps with the new version, this node's `/var/lib/kubelet/config.yaml` (the old one backed
//! up under /etc/kubernetes/tmp), the bootstrap-token RBAC and `cluster-info`, and the CoreDNS and kube-proxy
//! add-ons once every control-plane instance runs the new version.

use std::path::PathBuf;

use serde_json::Value;

use super::super::{Context, Error, Result, io};
use crate::config::InitConfig;
use crate::constants as k;

/// The upload-config phase: both ConfigMaps (and their RBAC), as `kubeadm init` writes them.
pub async fn upload_config(ctx: &Context, c: &client::Client, cfg: &InitConfig) -> Result<()> {
    super::super::uploadconfig::upload_kubeadm(ctx, c, cfg).await?;
    super::super::uploadconfig::upload_kubelet(ctx, c, &cfg.kubelet).await
}

/// The kubelet-config phase: the cluster's KubeletConfiguration to this node's `/var/lib/kubelet/config.yaml`,
/// the previous file kept in `/etc/kubernetes/tmp/kubeadm-kubelet-config-<date>/config.yaml`. The kubelet reads
/// it when restarted (upstream leaves that to the user with the kubelet package's upgrade).
pub async fn kubelet_config(ctx: &Context, c: &client::Client, dry_run: bool) -> Result<()> {
    let cm = c.api("", "v1", "configmaps")?.namespaced(k::KUBE_SYSTEM).get(k::KUBELET_CONFIG_CONFIGMAP).await?;
    let text = cm.pointer("/data/kubelet").and_then(Value::as_str).unwrap_or_default();
    let path = PathBuf::from(k::KUBELET_RUN_DIR).join(k::KUBELET_CONFIG_FILE);
    if dry_run {
        ctx.out.line(format!("[dryrun] Would write file {:?} with content:", path.display().to_string()));
        for l in text.lines() {
            ctx.out.line(format!("\t{l}"));
        }
        return Ok(());
    }
    if let Ok(old) = ctx.fs.read(&path) {
        let stamp = jiff::tz::TimeZone::system().to_datetime(ctx.now()).strftime("%Y-%m-%d-%H-%M-%S").to_string();
        let backup =
            PathBuf::from(k::TEMP_DIR).join(format!("kubeadm-kubelet-config-{stamp}")).join(k::KUBELET_CONFIG_FILE);
        ctx.out.line(format!("[upgrade] Backing up kubelet config file to {}", backup.display()));
        ctx.fs.write(&backup, &old, 0o644).map_err(io(&backup))?;
    }
    ctx.out.line(format!("[kubelet-start] Writing kubelet configuration to file {:?}", path.display().to_string()));
    ctx.fs.write(&path, text.as_bytes(), 0o644).map_err(io(&path))?;
    ctx.out.line("[upgrade/kubelet-config] The kubelet configuration for this node was successfully upgraded!");
    Ok(())
}

/// The bootstrap-token phase: the RBAC that lets nodes join with tokens, and `cluster-info` when missing (an
/// existing one keeps its signatures).
pub async fn bootstrap_token(ctx: &Context, c: &client::Client, cfg: &InitConfig) -> Result<()> {
    ctx.out.line("[bootstrap-token] Configuring bootstrap tokens, cluster-info ConfigMap, RBAC Roles");
    super::super::bootstraptoken::allow_bootstrap(ctx, c).await?;
    let exists = c.api("", "v1", "configmaps")?.namespaced(k::KUBE_PUBLIC).get(k::CLUSTER_INFO).await.is_ok();
    if !exists {
        let ca_path = PathBuf::from(cfg.cert_dir()).join("ca.crt");
        let ca = ctx.fs.read_string(&ca_path).map_err(io(&ca_path))?;
        super::super::bootstraptoken::create_cluster_info(ctx, c, &cfg.control_plane_url(), &ca).await?;
    }
    Ok(())
}

/// The control-plane nodes whose kube-apiserver does not run the `version` image yet.
pub async fn not_upgraded(c: &client::Client, version: &str) -> Result<Vec<String>> {
    let pods = c
        .api("", "v1", "pods")?
        .namespaced(k::KUBE_SYSTEM)
        .list(&client::ListParams {
            label_selector: Some(format!("component={}", k::KUBE_APISERVER)),
            ..Default::default()
        })
        .await?;
    let mut out = Vec::new();
    for p in pods["items"].as_array().into_iter().flatten() {
        let image = p.pointer("/spec/containers/0/image").and_then(Value::as_str).unwrap_or_default();
        if super::versions::image_tag(image) != Some(version) {
            out.push(p.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default().to_string());
        }
    }
    out.sort();
    Ok(out)
}

/// The addon phase: CoreDNS and kube-proxy re-applied for the new version once no control-plane instance is left
/// on the old one (upstream 1.31+ waits for the last control-plane node).
pub async fn addons(ctx: &Context, c: &client::Client, cfg: &InitConfig) -> Result<()> {
    let left = not_upgraded(c, &cfg.cluster.kubernetes_version).await?;
    if !left.is_empty() {
        ctx.out.line(format!(
            "[upgrade/addon] Skipping upgrade of addons because control plane instances [{}] have not been upgraded",
            left.join(" ")
        ));
        return Ok(());
    }
    super::super::addons::run_with(ctx, c, cfg, None).await.map_err(|e| Error::Other(e.to_string()))
}
