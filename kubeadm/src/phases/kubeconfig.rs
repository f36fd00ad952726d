//! `kubeadm init phase kubeconfig`: admin.conf, super-admin.conf, kubelet.conf, controller-manager.conf and
//! scheduler.conf under /etc/kubernetes, each with a client certificate from the cluster CA.

use std::path::PathBuf;

use super::{Context, Error, Result};
use crate::config::InitConfig;
use crate::constants as k;
use crate::kubeconfig::{self, Spec};
use crate::pki::certlist;

fn write(ctx: &Context, cfg: &InitConfig, spec: &Spec, ca: &crate::pki::Ca) -> Result<()> {
    let dir = PathBuf::from(k::KUBERNETES_DIR);
    if ca.key.is_none() {
        if ctx.fs.exists(&dir.join(spec.file)) {
            ctx.out.line(format!(
                "[kubeconfig] Using existing kubeconfig file: {:?}",
                dir.join(spec.file).display().to_string()
            ));
            return Ok(());
        }
        return Err(Error::Other(format!(
            "couldn't create {}: the CA key is not present (external CA mode needs every kubeconfig file in place)",
            spec.file
        )));
    }
    let exists = ctx.fs.exists(&dir.join(spec.file));
    if !exists {
        ctx.out.line(format!("[kubeconfig] Writing {:?} kubeconfig file", spec.file));
    }
    kubeconfig::create(ctx.fs.as_ref(), &dir, spec, cfg, ca, ctx.now())?;
    if exists {
        ctx.out.line(format!(
            "[kubeconfig] Using existing kubeconfig file: {:?}",
            dir.join(spec.file).display().to_string()
        ));
    }
    Ok(())
}

pub fn run_all(ctx: &Context, cfg: &InitConfig) -> Result<()> {
    ctx.out.line(format!("[kubeconfig] Using kubeconfig folder {:?}", k::KUBERNETES_DIR));
    let ca = super::certs::ca_for(ctx, cfg, &certlist::CA)?;
    for spec in kubeconfig::ALL {
        write(ctx, cfg, &spec, &ca)?;
    }
    Ok(())
}

pub fn run_one(ctx: &Context, cfg: &InitConfig, name: &str) -> Result<()> {
    let spec = kubeconfig::ALL
        .iter()
        .find(|s| s.phase == name)
        .ok_or_else(|| Error::Other(format!("unknown kubeconfig phase {name:?}")))?;
    let ca = super::certs::ca_for(ctx, cfg, &certlist::CA)?;
    write(ctx, cfg, spec, &ca)
}
