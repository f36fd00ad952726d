//! `kubeadm init phase etcd local`: the local etcd static pod, when the configuration chooses a local etcd.

use super::{Context, Result, io};
use crate::config::InitConfig;
use crate::constants as k;
use crate::manifests;

pub fn run_local(ctx: &Context, cfg: &InitConfig) -> Result<()> {
    if cfg.cluster.etcd.local.is_none() {
        if cfg.cluster.etcd.external.is_some() {
            ctx.out.line("[etcd] External etcd mode. Skipping the creation of a manifest for local etcd");
        } else {
            ctx.out.line(
                "[etcd] Embedded store mode (no etcd configured). Skipping the creation of a manifest for local etcd",
            );
        }
        return Ok(());
    }
    let dir = format!("{}/{}", k::KUBERNETES_DIR, k::MANIFESTS_SUBDIR);
    ctx.out.line(format!("[etcd] Creating static Pod manifest for local etcd in {dir:?}"));
    let pod = manifests::etcd::etcd_pod(cfg);
    let path = manifests::manifest_path(k::ETCD);
    ctx.fs.write(&path, manifests::to_yaml(&pod).as_bytes(), 0o600).map_err(io(&path))?;
    Ok(())
}
