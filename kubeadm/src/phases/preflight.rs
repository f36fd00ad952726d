//! `kubeadm init phase preflight` and join's: upstream's checks by name (`IsPrivilegedUser`, `Port-6443`,
//! `FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml`, `DirAvailable--var-lib-etcd`, `Swap`,
//! `FileContent--proc-sys-net-ipv4-ip_forward`, `FileExisting-<binary>`, `CRI`, `ImagePull`). Errors name the
//! check; `--ignore-preflight-errors` (names or `all`) turns them into warnings.

use std::path::Path;

use super::{Context, Error, Result};
use crate::constants as k;

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub name: String,
    pub message: String,
    /// Warnings never fail the run.
    pub warning: bool,
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
}

fn binary_exists(name: &str) -> bool {
    std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into())
        .split(':')
        .any(|d| Path::new(d).join(name).exists())
}

fn check_name_for_path(prefix: &str, path: &str) -> String {
    format!("{prefix}-{}", path.replace('/', "-"))
}

/// The checks of a control-plane node (`kubeadm init`).
pub fn init_checks(ctx: &Context, cfg: &crate::config::InitConfig, host: bool) -> Vec<Finding> {
    let mut f = Vec::new();
    let mut err = |name: String, message: String| f.push(Finding { name, message, warning: false });
    if host && !rustix_is_root() {
        err("IsPrivilegedUser".into(), "user is not running as root".into());
    }
    if host {
        for port in [cfg.bind_port(), k::KUBE_CONTROLLER_MANAGER_PORT, k::KUBE_SCHEDULER_PORT, k::KUBELET_PORT] {
            if !port_free(port) {
                err(format!("Port-{port}"), format!("Port {port} is in use"));
            }
        }
        if cfg.cluster.etcd.local.is_some() {
            for port in [k::ETCD_LISTEN_CLIENT_PORT, k::ETCD_LISTEN_PEER_PORT] {
                if !port_free(port) {
                    err(format!("Port-{port}"), format!("Port {port} is in use"));
                }
            }
        }
    }
    let mut files = vec![k::KUBE_APISERVER, k::KUBE_CONTROLLER_MANAGER, k::KUBE_SCHEDULER];
    if cfg.cluster.etcd.local.is_some() {
        files.push(k::ETCD);
    }
    for c in files {
        let p = crate::manifests::manifest_path(c);
        if ctx.fs.exists(&p) {
            let s = p.display().to_string();
            err(check_name_for_path("FileAvailable", &s), format!("{s} already exists"));
        }
    }
    if let Some(local) = &cfg.cluster.etcd.local
        && !ctx.fs.list(Path::new(&local.data_dir)).unwrap_or_default().is_empty()
    {
        err(check_name_for_path("DirAvailable", &local.data_dir), format!("{} is not empty", local.data_dir));
    }
    f.extend(host_checks(ctx, &cfg.init.node_registration.cri_socket, host));
    f
}

pub fn rustix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// Checks shared by init and join: forwarding, swap, binaries, the runtime socket.
pub fn host_checks(ctx: &Context, cri_socket: &str, host: bool) -> Vec<Finding> {
    let mut f = Vec::new();
    if !host {
        return f;
    }
    let _ = ctx;
    if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").map(|s| s.trim() != "1").unwrap_or(false) {
        f.push(Finding {
            name: "FileContent--proc-sys-net-ipv4-ip_forward".into(),
            message: "/proc/sys/net/ipv4/ip_forward contents are not set to 1".into(),
            warning: false,
        });
    }
    if std::fs::read_to_string("/proc/swaps").map(|s| s.lines().count() > 1).unwrap_or(false) {
        f.push(Finding { name: "Swap".into(), message: "swap is supported for cgroup v2 only. The kubelet must be properly configured to use swap. Please refer to https://kubernetes.io/docs/concepts/architecture/nodes/#swap-memory, or disable swap on the node".into(), warning: true });
    }
    for bin in ["crictl", "conntrack", "ip", "iptables", "mount", "nsenter", "ethtool", "tc", "touch"] {
        if !binary_exists(bin) {
            let required = matches!(bin, "ip" | "iptables" | "mount" | "nsenter");
            f.push(Finding {
                name: format!("FileExisting-{bin}"),
                message: format!("{bin} not found in system path"),
                warning: !required,
            });
        }
    }
    if !binary_exists("kubelet") {
        f.push(Finding {
            name: "FileExisting-kubelet".into(),
            message: "kubelet not found in system path".into(),
            warning: false,
        });
    }
    let sock = cri_socket.trim_start_matches("unix://");
    if !Path::new(sock).exists() {
        f.push(Finding {
            name: "CRI".into(),
            message: format!("container runtime is not running: output: , error: validate service connection: the socket {cri_socket} does not exist"),
            warning: false,
        });
    }
    f
}

/// Images missing from containerd's `k8s.io` namespace (via `ctr`), as `ImagePull` errors.
pub fn image_checks(images: &[String], cri_socket: &str) -> Vec<Finding> {
    let sock = cri_socket.trim_start_matches("unix://");
    let Ok(out) =
        std::process::Command::new("ctr").args(["--address", sock, "-n", "k8s.io", "images", "ls", "-q"]).output()
    else {
        return vec![];
    };
    if !out.status.success() {
        return vec![];
    }
    let present = String::from_utf8_lossy(&out.stdout).to_string();
    images
        .iter()
        .filter(|i| !present.lines().any(|l| l.trim() == i.as_str()))
        .map(|i| Finding {
            name: "ImagePull".into(),
            message: format!("failed to pull image {i}: not present in the container runtime and no registry is reachable; build it with deploy/images/"),
            warning: false,
        })
        .collect()
}

/// Prints warnings, fails on errors that are not ignored (upstream's `RunChecks`).
pub fn report(ctx: &Context, findings: &[Finding], ignore: &[String]) -> Result<()> {
    let ignored = |n: &str| ignore.iter().any(|i| i.eq_ignore_ascii_case("all") || i.eq_ignore_ascii_case(n));
    let mut errors = Vec::new();
    for f in findings {
        if f.warning || ignored(&f.name) {
            ctx.out.line(format!("\t[WARNING {}]: {}", f.name, f.message));
        } else {
            errors.push(format!("\t[ERROR {}]: {}", f.name, f.message));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "[preflight] Some fatal errors occurred:\n{}\n[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`",
            errors.join("\n")
        )))
    }
}

pub fn run_init(ctx: &Context, cfg: &crate::config::InitConfig, ignore: &[String], host: bool) -> Result<()> {
    ctx.out.line("[preflight] Running pre-flight checks");
    let mut findings = init_checks(ctx, cfg, host);
    report(ctx, &findings, ignore)?;
    ctx.out.line("[preflight] Pulling images required for setting up a Kubernetes cluster");
    ctx.out.line("[preflight] This might take a minute or two, depending on the speed of your internet connection");
    ctx.out.line("[preflight] You can also perform this action beforehand using 'kubeadm config images pull'");
    if host {
        let images =
            k::images(&cfg.cluster.image_repository, &cfg.cluster.kubernetes_version, cfg.cluster.etcd.local.is_some());
        findings = image_checks(&images, &cfg.init.node_registration.cri_socket);
        report(ctx, &findings, ignore)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_check_and_can_be_ignored() {
        let ctx = Context {
            fs: std::sync::Arc::new(crate::fs::MemFs::new()),
            out: super::super::Printer::capture(),
            kubelet: std::sync::Arc::new(crate::kubelet::Fake::default()),
            now: None,
            host: false,
        };
        let f = vec![Finding { name: "Port-6443".into(), message: "Port 6443 is in use".into(), warning: false }];
        let err = report(&ctx, &f, &[]).unwrap_err().to_string();
        assert!(err.contains("[ERROR Port-6443]: Port 6443 is in use"), "{err}");
        assert!(err.contains("--ignore-preflight-errors"));
        report(&ctx, &f, &["port-6443".into()]).unwrap();
        report(&ctx, &f, &["all".into()]).unwrap();
        assert!(ctx.out.text().contains("[WARNING Port-6443]"));
    }
}
