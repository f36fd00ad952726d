//! `kubeadm init phase control-plane`: the kube-apiserver, kube-controller-manager and kube-scheduler static pod
//! manifests in /etc/kubernetes/manifests.

use super::{Context, Error, Result, io};
use crate::config::InitConfig;
use crate::constants as k;
use crate::manifests::{self, controlplane};

/// The components, their phase names and manifests.
pub const COMPONENTS: [(&str, &str); 3] = [
    ("apiserver", k::KUBE_APISERVER),
    ("controller-manager", k::KUBE_CONTROLLER_MANAGER),
    ("scheduler", k::KUBE_SCHEDULER),
];

fn write(ctx: &Context, cfg: &InitConfig, component: &str) -> Result<()> {
    ctx.out.line(format!("[control-plane] Creating static Pod manifest for {component:?}"));
    let pod = match component {
        k::KUBE_APISERVER => controlplane::apiserver_pod(ctx.fs.as_ref(), cfg),
        k::KUBE_CONTROLLER_MANAGER => controlplane::controller_manager_pod(ctx.fs.as_ref(), cfg),
        _ => controlplane::scheduler_pod(cfg),
    };
    let path = manifests::manifest_path(component);
    ctx.fs.write(&path, manifests::to_yaml(&pod).as_bytes(), 0o600).map_err(io(&path))?;
    Ok(())
}

pub fn run(ctx: &Context, cfg: &InitConfig, only: Option<&str>) -> Result<()> {
    ctx.out.line(format!(
        "[control-plane] Using manifest folder {:?}",
        format!("{}/{}", k::KUBERNETES_DIR, k::MANIFESTS_SUBDIR)
    ));
    match only {
        None | Some("all") => {
            for (_, c) in COMPONENTS {
                write(ctx, cfg, c)?;
            }
            Ok(())
        }
        Some(name) => {
            let (_, c) = COMPONENTS
                .iter()
                .find(|(p, _)| *p == name)
                .ok_or_else(|| Error::Other(format!("unknown control-plane phase {name:?}")))?;
            write(ctx, cfg, c)
        }
    }
}
