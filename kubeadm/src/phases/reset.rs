//! `kubeadm reset`: removes a control plane's stacked etcd member from the etcd cluster, stops the kubelet,
//! unmounts under /var/lib/kubelet, removes the pods' containers (through CRI),
//! the store's data (etcd data dir, or the embedded store's), the manifests, PKI and kubeconfig files, and prints
//! what it leaves behind, as upstream.

use std::path::{Path, PathBuf};

use super::{Context, Result};
use crate::constants as k;

fn clean_dir(ctx: &Context, dir: &Path) {
    for name in ctx.fs.list(dir).unwrap_or_default() {
        let p = dir.join(name);
        let _ = ctx.fs.remove(&p);
        let _ = ctx.fs.remove_dir_all(&p);
    }
}

/// The etcd data dir from the etcd manifest, if this node runs local etcd.
fn etcd_data_dir(ctx: &Context) -> Option<String> {
    let text = ctx.fs.read_string(&crate::manifests::manifest_path(k::ETCD)).ok()?;
    let pod: serde_json::Value = serde_yaml_ng::from_str(&text).ok()?;
    pod.pointer("/spec/containers/0/command")?
        .as_array()?
        .iter()
        .filter_map(|a| a.as_str()?.strip_prefix("--data-dir="))
        .map(str::to_string)
        .next()
}

/// A `--<flag>=` value of the etcd manifest's command.
fn etcd_flag(ctx: &Context, flag: &str) -> Option<String> {
    let text = ctx.fs.read_string(&crate::manifests::manifest_path(k::ETCD)).ok()?;
    let pod: serde_json::Value = serde_yaml_ng::from_str(&text).ok()?;
    let prefix = format!("--{flag}=");
    pod.pointer("/spec/containers/0/command")?
        .as_array()?
        .iter()
        .filter_map(|a| a.as_str()?.strip_prefix(prefix.as_str()))
        .map(str::to_string)
        .next()
}

/// The remove-etcd-member phase (upstream's `RemoveStackedEtcdMemberFromCluster`): this node's stacked etcd
/// member leaves the cluster, unless it is the last one. Failures are warnings, as upstream.
pub async fn remove_etcd_member(ctx: &Context, cert_dir: &str) {
    let Some(peer) = etcd_flag(ctx, "initial-advertise-peer-urls") else { return };
    let result = async {
        let admin = ctx.admin_client()?;
        let endpoints = super::joincontrolplane::etcd_endpoints(&admin).await?;
        let mut etcd = super::joincontrolplane::etcd_client_in(ctx, cert_dir, &endpoints).await?;
        let list = etcd.member_list().await.map_err(|e| super::Error::Other(format!("etcd member list: {e}")))?;
        if list.members().len() == 1 {
            return Ok(None);
        }
        let id = list
            .members()
            .iter()
            .find(|m| m.peer_urls().contains(&peer))
            .map(|m| m.id())
            .ok_or_else(|| super::Error::Other(format!("no etcd member has the peer URL {peer}")))?;
        // etcd refuses while a member has been connected for less than its health interval (5s): retry, as
        // upstream's backoff does.
        super::retry(std::time::Duration::from_secs(30), || {
            let mut etcd = etcd.clone();
            async move {
                etcd.member_remove(id)
                    .await
                    .map(|_| ())
                    .map_err(|e| super::Error::Other(format!("etcd member remove: {e}")))
            }
        })
        .await?;
        Ok::<_, super::Error>(Some(id))
    }
    .await;
    match result {
        Ok(Some(id)) => ctx.out.line(format!("[reset] Removed etcd member {peer} (id {id:x}) from the etcd cluster")),
        Ok(None) => {}
        Err(e) => ctx.out.line(format!(
            "W: [reset] Failed to remove etcd member: {e}, please manually remove this etcd member using etcdctl"
        )),
    }
}

/// The mount points of `/proc/mounts` (`mounts`) strictly under `dir`, deepest first, as upstream's
/// `unmountKubeletDirectory`: `dir` itself is not one of them (a mounted /var/lib/kubelet, a node's own disk or a
/// bind mount giving a node its own kubelet directory, stays mounted; only what the kubelet mounted inside goes).
/// The octal escapes of `/proc/mounts` (`\040` for a space) are decoded.
fn mounts_under(mounts: &str, dir: &Path) -> Vec<String> {
    let mut targets: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(unescape_mount_path)
        .filter(|t| Path::new(t).starts_with(dir) && Path::new(t) != dir)
        .collect();
    targets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    targets.dedup();
    targets
}

/// `/proc/mounts` writes space, tab, newline and backslash in paths as `\ooo` octal escapes.
fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..=i + 3].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unmount_under(ctx: &Context, dir: &Path) {
    let host = ctx.fs.host_path(dir);
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else { return };
    for t in mounts_under(&mounts, &host) {
        let _ = std::process::Command::new("umount").arg(&t).status();
    }
}

/// Stops and removes every pod sandbox (with its containers) of the container runtime, as upstream's reset does
/// through its CRI client.
async fn remove_pods(cri_socket: &str) -> std::result::Result<(), String> {
    use proto::cri::{ListPodSandboxRequest, RemovePodSandboxRequest, StopPodSandboxRequest};
    let cri = proto::Cri::connect(cri_socket).await.map_err(|e| format!("connecting to {cri_socket}: {e}"))?;
    let mut rt = cri.runtime.clone();
    let sandboxes = rt.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await.map_err(|e| e.to_string())?;
    // Every sandbox is tried, whatever happens to the others; the errors are reported together.
    let mut errors = Vec::new();
    for sb in sandboxes.into_inner().items {
        let id = sb.id;
        // A failed stop (a sandbox whose network never came up) does not prevent the removal, which decides.
        let _ = rt.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id.clone() }).await;
        if let Err(e) = rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id.clone() }).await {
            errors.push(format!("{id}: {}", e.message()));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
}

pub async fn run(ctx: &Context, cert_dir: &str, cri_socket: &str, cleanup_tmp: bool) -> Result<()> {
    ctx.out.line("[preflight] Running pre-flight checks");
    let manifests = PathBuf::from(k::KUBERNETES_DIR).join(k::MANIFESTS_SUBDIR);
    if let Some(d) = etcd_data_dir(ctx) {
        clean_dir(ctx, Path::new(&d));
        ctx.out.line(format!("[reset] Deleted contents of the etcd data directory: {d}"));
    } else if ctx.fs.exists(&crate::manifests::manifest_path(k::KUBE_APISERVER)) {
        clean_dir(ctx, Path::new(k::APISERVER_DATA_DIR));
        ctx.out.line(format!("[reset] Deleted contents of the embedded store directory: {}", k::APISERVER_DATA_DIR));
    } else {
        ctx.out.line("[reset] No etcd config found. Assuming external etcd");
        ctx.out.line("[reset] Please, manually reset etcd to prevent further issues");
    }
    ctx.out.line("[reset] Stopping the kubelet service");
    if let Err(e) = ctx.kubelet.stop() {
        ctx.out.line(format!("[reset] WARNING: could not stop the kubelet service: {e}"));
    }
    // The static pods go first, so a kubelet that still runs would not restart them.
    clean_dir(ctx, &manifests);
    if ctx.host {
        ctx.out.line(format!("[reset] Unmounting mounted directories in {:?}", k::KUBELET_RUN_DIR));
        unmount_under(ctx, Path::new(k::KUBELET_RUN_DIR));
        ctx.out.line("[reset] Removing the pods' containers");
        if let Err(e) = remove_pods(cri_socket).await {
            ctx.out.line(format!("[reset] WARNING: failed to remove the pods' containers: {e}"));
        }
    }
    let mut dirs = vec![manifests.display().to_string(), k::KUBELET_RUN_DIR.to_string(), cert_dir.to_string()];
    if cleanup_tmp {
        dirs.push(k::TEMP_DIR.to_string());
    }
    ctx.out.line(format!("[reset] Deleting contents of directories: [{}]", dirs.join(" ")));
    for d in &dirs {
        clean_dir(ctx, Path::new(d));
    }
    let files: Vec<String> = [
        k::ADMIN_KUBECONFIG,
        k::SUPER_ADMIN_KUBECONFIG,
        k::KUBELET_KUBECONFIG,
        k::KUBELET_BOOTSTRAP_KUBECONFIG,
        k::CONTROLLER_MANAGER_KUBECONFIG,
        k::SCHEDULER_KUBECONFIG,
    ]
    .iter()
    .map(|f| format!("{}/{f}", k::KUBERNETES_DIR))
    .collect();
    ctx.out.line(format!("[reset] Deleting files: [{}]", files.join(" ")));
    for f in &files {
        let _ = ctx.fs.remove(Path::new(f));
    }
    ctx.out.line("");
    ctx.out.line("The reset process does not perform cleanup of CNI plugin configuration,");
    ctx.out.line("network filtering rules and kubeconfig files.");
    ctx.out.line("");
    ctx.out.line("For information on how to perform this cleanup manually, please see:");
    ctx.out.line("    https://k8s.io/docs/reference/setup-tools/kubeadm/kubeadm-reset/");
    ctx.out.line("");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmounts_what_is_mounted_under_the_kubelet_directory_but_not_the_directory_itself() {
        let mounts = "\
/dev/vda / ext4 rw 0 0
/dev/vdb /var/lib/kubelet ext4 rw 0 0
tmpfs /var/lib/kubelet/pods/u1/volumes/kubernetes.io~projected/kube-api-access-x tmpfs rw 0 0
tmpfs /var/lib/kubelet/pods/u1/volumes/kubernetes.io~secret/a\\040b tmpfs rw 0 0
tmpfs /var/lib/kubelet-other tmpfs rw 0 0
tmpfs /var/lib/kubelet/pods/u1 tmpfs rw 0 0
";
        assert_eq!(
            mounts_under(mounts, Path::new("/var/lib/kubelet")),
            [
                "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~projected/kube-api-access-x",
                "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~secret/a b",
                "/var/lib/kubelet/pods/u1",
            ]
        );
        assert!(mounts_under("/dev/vdb /var/lib/kubelet ext4 rw 0 0\n", Path::new("/var/lib/kubelet")).is_empty());
    }

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path("/a\\040b\\011c\\134d"), "/a b\tc\\d");
        assert_eq!(unescape_mount_path("/plain\\04"), "/plain\\04");
    }
}
