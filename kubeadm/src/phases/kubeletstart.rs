//! `kubeadm init phase kubelet-start` (and join's): `/var/lib/kubelet/config.yaml`,
//! `/var/lib/kubelet/kubeadm-flags.env`, then the kubelet is (re)started through [`crate::kubelet::Service`].

use std::path::PathBuf;

use serde_json::Value;

use super::{Context, Result, io};
use crate::config::NodeRegistrationOptions;
use crate::constants as k;

/// Upstream's `buildKubeletArgMap` plus `kubeletExtraArgs`: the container runtime endpoint, the node name when it
/// differs from the hostname.
pub fn kubelet_flags(nr: &NodeRegistrationOptions) -> String {
    let mut defaults = vec![("container-runtime-endpoint".to_string(), nr.cri_socket.clone())];
    if !nr.name.is_empty() && nr.name != crate::config::hostname() {
        defaults.push(("hostname-override".into(), nr.name.clone()));
    }
    let args = crate::manifests::arguments_to_command("", &defaults, &nr.kubelet_extra_args);
    format!("KUBELET_KUBEADM_ARGS=\"{}\"\n", args[1..].join(" "))
}

pub fn write_flags(ctx: &Context, nr: &NodeRegistrationOptions) -> Result<()> {
    let path = PathBuf::from(k::KUBELET_RUN_DIR).join(k::KUBELET_ENV_FILE);
    ctx.out.line(format!(
        "[kubelet-start] Writing kubelet environment file with flags to file {:?}",
        path.display().to_string()
    ));
    ctx.fs.write(&path, kubelet_flags(nr).as_bytes(), 0o644).map_err(io(&path))
}

pub fn write_config(ctx: &Context, kubelet: &Value) -> Result<()> {
    let path = PathBuf::from(k::KUBELET_RUN_DIR).join(k::KUBELET_CONFIG_FILE);
    ctx.out.line(format!("[kubelet-start] Writing kubelet configuration to file {:?}", path.display().to_string()));
    ctx.fs.write(&path, crate::config::marshal(kubelet).as_bytes(), 0o644).map_err(io(&path))
}

pub fn start(ctx: &Context) {
    if !ctx.kubelet.available() {
        ctx.out.line(format!(
            "[kubelet-start] WARNING: unable to start the kubelet service: no init system; install {} (deploy/install.sh) or set KUBEADM_KUBELET_START_COMMAND",
            crate::kubelet::RUN_SCRIPT
        ));
        return;
    }
    ctx.out.line("[kubelet-start] Starting the kubelet");
    if let Err(e) = ctx.kubelet.restart() {
        ctx.out.line(format!("[kubelet-start] WARNING: unable to start the kubelet service: {e}"));
    }
}

/// The phase on a control-plane node.
pub fn run(ctx: &Context, cfg: &crate::config::InitConfig) -> Result<()> {
    write_flags(ctx, &cfg.init.node_registration)?;
    write_config(ctx, &cfg.kubelet)?;
    start(ctx);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Arg;

    #[test]
    fn flags_file_carries_the_runtime_and_extra_args() {
        let nr = NodeRegistrationOptions {
            name: crate::config::hostname(),
            cri_socket: "unix:///run/containerd/containerd.sock".into(),
            kubelet_extra_args: vec![Arg { name: "v".into(), value: "4".into() }],
            ..Default::default()
        };
        assert_eq!(
            kubelet_flags(&nr),
            "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///run/containerd/containerd.sock --v=4\"\n"
        );
    }
}
