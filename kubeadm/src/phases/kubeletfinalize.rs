//! `kubeadm init phase kubelet-finalize`: once the kubelet has its rotatable client certificate, kubelet.conf
//! points at `/var/lib/kubelet/pki/kubelet-client-current.pem` instead of the embedded one.

use std::path::PathBuf;

use serde_json::json;

use super::{Context, Result, io};
use crate::constants as k;

pub const CURRENT_PEM: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";

pub fn run(ctx: &Context) -> Result<()> {
    let pem = PathBuf::from(CURRENT_PEM);
    let path = PathBuf::from(k::KUBERNETES_DIR).join(k::KUBELET_KUBECONFIG);
    if !ctx.fs.exists(&pem) {
        ctx.out.line(format!(
            "[kubelet-finalize] Skipping: the kubelet has no rotatable client certificate at {CURRENT_PEM:?} (kubelet.conf keeps its embedded one)"
        ));
        return Ok(());
    }
    ctx.out.line(format!(
        "[kubelet-finalize] Updating {:?} to point to a rotatable kubelet client certificate and key",
        path.display().to_string()
    ));
    let text = ctx.fs.read_string(&path).map_err(io(&path))?;
    let mut parsed = crate::kubeconfig::parse(&text)?.raw;
    if let Some(users) = parsed.get_mut("users").and_then(|u| u.as_array_mut()) {
        for u in users {
            u["user"] = json!({"client-certificate": CURRENT_PEM, "client-key": CURRENT_PEM});
        }
    }
    let out = crate::config::marshal(&parsed);
    ctx.fs.write(&path, out.as_bytes(), 0o600).map_err(io(&path))
}
