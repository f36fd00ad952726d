//! The static pod upgrade (upstream's `phases/upgrade/staticpods.go`): new manifests are written to
//! `/etc/kubernetes/tmp/kubeadm-upgraded-manifests*`, then one component at a time (etcd first when it is local)
//! the current manifest is backed up to `/etc/kubernetes/tmp/kubeadm-backup-manifests-<date>`, its certificates are
//! renewed (unless `--certificate-renewal=false`), the new manifest takes its place, and kubeadm waits for the
//! kubelet to replace the mirror pod (its `kubernetes.io/config.hash` changes) and for the new pod to be Running
//! and Ready (the kubelet's probes of the component's health endpoints). A failure puts every backed-up manifest
//! back. A local etcd's data directory is copied to `/etc/kubernetes/tmp/kubeadm-backup-etcd-<date>` first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::super::{Context, Error, Result, io};
use crate::config::InitConfig;
use crate::constants as k;
use crate::manifests;

/// Upstream's `UpgradeManifestTimeout` (the `upgradeManifests` timeout of UpgradeConfiguration overrides it).
pub const UPGRADE_MANIFEST_TIMEOUT: Duration = Duration::from_secs(300);

/// The directories of one upgrade (upstream's `KubeStaticPodPathManager`).
#[derive(Clone, Debug)]
pub struct PathManager {
    pub real_manifest_dir: PathBuf,
    pub temp_manifest_dir: PathBuf,
    pub backup_manifest_dir: PathBuf,
    pub backup_etcd_dir: PathBuf,
    pub keep_manifest_dir: bool,
    pub keep_etcd_dir: bool,
}

impl PathManager {
    /// Creates the directories under /etc/kubernetes/tmp: a temporary one named with a random suffix (Go's
    /// `os.MkdirTemp`) and the backups named with the time (`2006-01-02-15-04-05`).
    pub fn create(ctx: &Context, keep_etcd_dir: bool) -> Result<Self> {
        let tmp = PathBuf::from(k::TEMP_DIR);
        let mut rnd = [0u8; 4];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut rnd)
            .map_err(|_| Error::Other("no randomness".into()))?;
        let stamp = jiff::tz::TimeZone::system().to_datetime(ctx.now()).strftime("%Y-%m-%d-%H-%M-%S").to_string();
        let pm = PathManager {
            real_manifest_dir: PathBuf::from(k::KUBERNETES_DIR).join(k::MANIFESTS_SUBDIR),
            temp_manifest_dir: tmp.join(format!("kubeadm-upgraded-manifests{}", u32::from_le_bytes(rnd))),
            backup_manifest_dir: tmp.join(format!("kubeadm-backup-manifests-{stamp}")),
            backup_etcd_dir: tmp.join(format!("kubeadm-backup-etcd-{stamp}")),
            keep_manifest_dir: true,
            keep_etcd_dir,
        };
        for d in [&pm.temp_manifest_dir, &pm.backup_manifest_dir, &pm.backup_etcd_dir] {
            ctx.fs.create_dir_all(d).map_err(io(d))?;
        }
        Ok(pm)
    }

    pub fn real(&self, component: &str) -> PathBuf {
        self.real_manifest_dir.join(format!("{component}.yaml"))
    }
    pub fn temp(&self, component: &str) -> PathBuf {
        self.temp_manifest_dir.join(format!("{component}.yaml"))
    }
    pub fn backup(&self, component: &str) -> PathBuf {
        self.backup_manifest_dir.join(format!("{component}.yaml"))
    }

    /// Removes the temporary directory, and the backups the user did not ask to keep (upstream keeps the
    /// manifests' backup, and etcd's unless etcd is HA).
    pub fn cleanup(&self, ctx: &Context) -> Result<()> {
        ctx.fs.remove_dir_all(&self.temp_manifest_dir).map_err(io(&self.temp_manifest_dir))?;
        if !self.keep_manifest_dir {
            ctx.fs.remove_dir_all(&self.backup_manifest_dir).map_err(io(&self.backup_manifest_dir))?;
        }
        if !self.keep_etcd_dir {
            ctx.fs.remove_dir_all(&self.backup_etcd_dir).map_err(io(&self.backup_etcd_dir))?;
        }
        Ok(())
    }
}

/// Moves a file through the filesystem trait (copy, then remove the source).
fn move_file(ctx: &Context, from: &Path, to: &Path) -> Result<()> {
    let data = ctx.fs.read(from).map_err(io(from))?;
    ctx.fs.write(to, &data, 0o600).map_err(io(to))?;
    ctx.fs.remove(from).map_err(io(from))
}

/// Copies a directory tree (upstream's `CopyDir`, used for etcd's data).
pub fn copy_dir(ctx: &Context, from: &Path, to: &Path) -> Result<()> {
    ctx.fs.create_dir_all(to).map_err(io(to))?;
    for name in ctx.fs.list(from).map_err(io(from))? {
        let (src, dst) = (from.join(&name), to.join(&name));
        match ctx.fs.read(&src) {
            Ok(data) => ctx.fs.write(&dst, &data, 0o600).map_err(io(&dst))?,
            Err(_) => copy_dir(ctx, &src, &dst)?,
        }
    }
    Ok(())
}

/// Waits on the API for the kubelet's work (upstream's `apiclient.Waiter` parts the upgrade uses).
pub struct Waiter<'a> {
    pub client: &'a client::Client,
    pub timeout: Duration,
    pub poll: Duration,
}

impl Waiter<'_> {
    /// The `kubernetes.io/config.hash` of the mirror pod `<component>-<node>` (upstream's
    /// `getStaticPodSingleHash`).
    pub async fn static_pod_hash(&self, node: &str, component: &str) -> Result<String> {
        let pod =
            self.client.api("", "v1", "pods")?.namespaced(k::KUBE_SYSTEM).get(&format!("{component}-{node}")).await?;
        pod.pointer("/metadata/annotations")
            .and_then(|a| a.get("kubernetes.io/config.hash").or_else(|| a.get("kubernetes.io/config.mirror")))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Error::Other(format!("the static pod {component}-{node} carries no config hash")))
    }

    /// Waits until the hash differs from `before` (upstream's `WaitForStaticPodHashChange`). The apiserver may be
    /// away while it restarts: errors count as "not yet".
    pub async fn wait_for_hash_change(&self, node: &str, component: &str, before: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if let Ok(h) = self.static_pod_hash(node, component).await
                && h != before
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Other(format!(
                    "static Pod hash for component {component} on Node {node} did not change after {:?}",
                    self.timeout
                )));
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Waits until this node's pod of the component is Running and Ready, with the hash `not` left behind
    /// (upstream's `WaitForPodsWithLabel`, which checks Running; Ready adds the kubelet's health probes).
    pub async fn wait_for_component(&self, node: &str, component: &str, old_hash: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut last;
        loop {
            match self
                .client
                .api("", "v1", "pods")?
                .namespaced(k::KUBE_SYSTEM)
                .get(&format!("{component}-{node}"))
                .await
            {
                Ok(p) => {
                    let hash = p
                        .pointer("/metadata/annotations/kubernetes.io~1config.hash")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let phase = p.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default();
                    let ready = p
                        .pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
                    if hash != old_hash && phase == "Running" && ready {
                        return Ok(());
                    }
                    last = format!("phase {phase:?}, ready {ready}");
                }
                Err(e) => last = e.to_string(),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Other(format!(
                    "the static Pod {component}-{node} is not Running and Ready after {:?} (last: {last})",
                    self.timeout
                )));
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}

/// The certificates a component uses, by `kubeadm certs renew` name (upstream's `renewCertsByComponent`).
pub fn certs_of(cfg: &InitConfig, component: &str) -> Vec<&'static str> {
    let local_etcd = cfg.cluster.etcd.local.is_some();
    match component {
        k::ETCD if local_etcd => vec!["etcd-server", "etcd-peer", "etcd-healthcheck-client"],
        k::KUBE_APISERVER => {
            let mut v = vec!["apiserver", "apiserver-kubelet-client", "front-proxy-client"];
            if local_etcd {
                v.push("apiserver-etcd-client");
            }
            v
        }
        k::KUBE_CONTROLLER_MANAGER => vec![k::CONTROLLER_MANAGER_KUBECONFIG],
        k::KUBE_SCHEDULER => vec![k::SCHEDULER_KUBECONFIG],
        _ => vec![],
    }
}

fn renew(ctx: &Context, cfg: &InitConfig, name: &str) -> Result<()> {
    ctx.out.line(format!("[upgrade/staticpods] Renewing {name} certificate"));
    let renewed = crate::cmd::certs::renew_using_local_ca(ctx, cfg, name).map_err(|e| Error::Other(e.to_string()))?;
    if !renewed {
        ctx.out.line(format!("[upgrade/staticpods] External CA detected, {name} certificate can't be renewed"));
    }
    Ok(())
}

/// Two manifests are equal when their YAML says the same (upstream's `ManifestFilesAreEqual` compares the pods).
fn manifests_equal(a: &str, b: &str) -> bool {
    match (serde_yaml_ng::from_str::<Value>(a), serde_yaml_ng::from_str::<Value>(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Puts every backed-up manifest back (etcd's only when asked) and returns the error that caused it
/// (upstream's `rollbackOldManifests`).
pub fn rollback(
    ctx: &Context,
    pm: &PathManager,
    recover: &BTreeMap<String, PathBuf>,
    cause: Error,
    restore_etcd: bool,
) -> Error {
    let mut errs = vec![cause.to_string()];
    for (component, backup) in recover {
        if component == k::ETCD && !restore_etcd {
            continue;
        }
        if let Err(e) = move_file(ctx, backup, &pm.real(component)) {
            errs.push(e.to_string());
        }
    }
    Error::Other(format!(
        "couldn't upgrade control plane. kubeadm has tried to recover everything into the earlier state. Errors faced: [{}]",
        errs.join(", ")
    ))
}

/// The options of one static pod upgrade.
pub struct Options<'a> {
    pub waiter: &'a Waiter<'a>,
    pub renew_certs: bool,
}

/// Upgrades one component (upstream's `upgradeComponent`).
pub async fn upgrade_component(
    ctx: &Context,
    cfg: &InitConfig,
    pm: &PathManager,
    o: &Options<'_>,
    component: &str,
    before_hash: &str,
    recover: &mut BTreeMap<String, PathBuf>,
) -> Result<()> {
    let recover_etcd = component == k::ETCD;
    ctx.out.line(format!("[upgrade/staticpods] Preparing for {component:?} upgrade"));
    let (current, new, backup) = (pm.real(component), pm.temp(component), pm.backup(component));
    let cur_text = ctx.fs.read_string(&current).map_err(io(&current))?;
    let new_text = ctx.fs.read_string(&new).map_err(io(&new))?;
    if manifests_equal(&cur_text, &new_text) {
        ctx.out
            .line(format!("[upgrade/staticpods] Current and new manifests of {component} are equal, skipping upgrade"));
        return Ok(());
    }
    if o.renew_certs {
        for name in certs_of(cfg, component) {
            if let Err(e) = renew(ctx, cfg, name) {
                let e = Error::Other(format!("failed to renew certificates for component {component:?}: {e}"));
                return Err(rollback(ctx, pm, recover, e, recover_etcd));
            }
        }
    }
    ctx.fs.write(&backup, cur_text.as_bytes(), 0o600).map_err(io(&backup))?;
    recover.insert(component.to_string(), backup.clone());
    // The new manifest replaces the old in one rename: the kubelet sees an update, never a missing pod.
    if let Err(e) = ctx.fs.write(&current, new_text.as_bytes(), 0o600) {
        return Err(rollback(ctx, pm, recover, io(&current)(e), recover_etcd));
    }
    let _ = ctx.fs.remove(&new);
    ctx.out.line(format!(
        "[upgrade/staticpods] Moved new manifest to {:?} and backed up old manifest to {:?}",
        current.display().to_string(),
        backup.display().to_string()
    ));
    ctx.out.line("[upgrade/staticpods] Waiting for the kubelet to restart the component");
    ctx.out.line(format!(
        "[upgrade/staticpods] This might take a minute or longer depending on the component/version gap (timeout {})",
        crate::config::duration::format(o.waiter.timeout)
    ));
    let node = cfg.node_name();
    if let Err(e) = o.waiter.wait_for_hash_change(node, component, before_hash).await {
        return Err(rollback(ctx, pm, recover, e, recover_etcd));
    }
    if let Err(e) = o.waiter.wait_for_component(node, component, before_hash).await {
        return Err(rollback(ctx, pm, recover, e, recover_etcd));
    }
    ctx.out.line(format!("[upgrade/staticpods] Component {component:?} upgraded successfully!"));
    Ok(())
}

/// Writes the new manifests of `components` into the temporary directory.
pub fn write_new_manifests(ctx: &Context, cfg: &InitConfig, pm: &PathManager, components: &[&str]) -> Result<()> {
    for c in components {
        let pod = match *c {
            k::KUBE_APISERVER => manifests::controlplane::apiserver_pod(ctx.fs.as_ref(), cfg),
            k::KUBE_CONTROLLER_MANAGER => manifests::controlplane::controller_manager_pod(ctx.fs.as_ref(), cfg),
            k::KUBE_SCHEDULER => manifests::controlplane::scheduler_pod(cfg),
            _ => manifests::etcd::etcd_pod(cfg),
        };
        let p = pm.temp(c);
        ctx.fs.write(&p, manifests::to_yaml(&pod).as_bytes(), 0o600).map_err(io(&p))?;
    }
    Ok(())
}

/// Upgrades this node's static pod control plane (upstream's `StaticPodControlPlane`): local etcd first (its data
/// backed up), then kube-apiserver, kube-controller-manager and kube-scheduler; then admin.conf and
/// super-admin.conf renewed. The backups stay for the user; the temporary directory goes.
pub async fn control_plane(
    ctx: &Context,
    cfg: &InitConfig,
    pm: &PathManager,
    o: &Options<'_>,
    etcd_upgrade: bool,
) -> Result<()> {
    let node = cfg.node_name().to_string();
    let mut recover = BTreeMap::new();
    let mut before = BTreeMap::new();
    for c in [k::KUBE_APISERVER, k::KUBE_CONTROLLER_MANAGER, k::KUBE_SCHEDULER] {
        before.insert(c, o.waiter.static_pod_hash(&node, c).await?);
    }
    if etcd_upgrade && let Some(local) = &cfg.cluster.etcd.local {
        let data = PathBuf::from(&local.data_dir);
        copy_dir(ctx, &data, &pm.backup_etcd_dir)
            .map_err(|e| Error::Other(format!("failed to back up etcd data: {e}")))?;
        let etcd_hash = o.waiter.static_pod_hash(&node, k::ETCD).await?;
        write_new_manifests(ctx, cfg, pm, &[k::ETCD])?;
        if let Err(e) = upgrade_component(ctx, cfg, pm, o, k::ETCD, &etcd_hash, &mut recover).await {
            ctx.out.line(format!("[upgrade/etcd] Failed to upgrade etcd: {e}"));
            return Err(Error::Other(format!(
                "fatal error when trying to upgrade the etcd cluster, rolled the state back to pre-upgrade state: {e}"
            )));
        }
    }
    ctx.out.line(format!(
        "[upgrade/staticpods] Writing new Static Pod manifests to {:?}",
        pm.temp_manifest_dir.display().to_string()
    ));
    let components = [k::KUBE_APISERVER, k::KUBE_CONTROLLER_MANAGER, k::KUBE_SCHEDULER];
    write_new_manifests(ctx, cfg, pm, &components)?;
    for c in components {
        upgrade_component(ctx, cfg, pm, o, c, &before[c], &mut recover).await?;
    }
    if o.renew_certs {
        for name in [k::ADMIN_KUBECONFIG, k::SUPER_ADMIN_KUBECONFIG] {
            let p = PathBuf::from(k::KUBERNETES_DIR).join(name);
            if ctx.fs.exists(&p) {
                renew(ctx, cfg, name)?;
            }
        }
    }
    pm.cleanup(ctx)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::fs::{Fs, MemFs};
    use crate::phases::Printer;

    fn ctx(fs: Arc<MemFs>) -> Context {
        Context {
            fs,
            out: Printer::capture(),
            kubelet: Arc::new(crate::kubelet::Fake::default()),
            now: Some("2025-06-01T12:00:00Z".parse().unwrap()),
            host: false,
        }
    }

    #[test]
    fn backups_are_dated_under_kubernetes_tmp_and_rollback_restores_them() {
        let fs = Arc::new(MemFs::new());
        let c = ctx(fs.clone());
        let pm = PathManager::create(&c, true).unwrap();
        assert!(pm.backup_manifest_dir.starts_with("/etc/kubernetes/tmp"));
        let stamp = pm.backup_manifest_dir.file_name().unwrap().to_string_lossy().to_string();
        assert!(stamp.starts_with("kubeadm-backup-manifests-2025-"), "{stamp}");
        assert!(pm.backup_etcd_dir.to_string_lossy().contains("/kubeadm-backup-etcd-2025-"));
        assert!(pm.temp_manifest_dir.to_string_lossy().starts_with("/etc/kubernetes/tmp/kubeadm-upgraded-manifests"));

        for (comp, text) in [(k::KUBE_APISERVER, "new-api"), (k::ETCD, "new-etcd")] {
            fs.write(&pm.real(comp), text.as_bytes(), 0o600).unwrap();
            fs.write(&pm.backup(comp), format!("old-{comp}").as_bytes(), 0o600).unwrap();
        }
        let recover: BTreeMap<String, PathBuf> =
            [k::KUBE_APISERVER, k::ETCD].iter().map(|c| (c.to_string(), pm.backup(c))).collect();
        let e = rollback(&c, &pm, &recover, Error::Other("timed out".into()), false);
        assert!(e.to_string().starts_with(
            "couldn't upgrade control plane. kubeadm has tried to recover everything into the earlier state. Errors faced: [timed out"
        ));
        assert_eq!(fs.read_string(&pm.real(k::KUBE_APISERVER)).unwrap(), "old-kube-apiserver");
        assert_eq!(fs.read_string(&pm.real(k::ETCD)).unwrap(), "new-etcd", "etcd only when asked");
        rollback(&c, &pm, &recover, Error::Other("x".into()), true);
        assert_eq!(fs.read_string(&pm.real(k::ETCD)).unwrap(), "old-etcd");
    }

    #[test]
    fn etcd_data_is_copied_recursively_and_certs_follow_the_component() {
        let fs = Arc::new(MemFs::new());
        let c = ctx(fs.clone());
        fs.write(Path::new("/var/lib/etcd/member/snap/db"), b"db", 0o600).unwrap();
        fs.write(Path::new("/var/lib/etcd/member/wal/0.wal"), b"wal", 0o600).unwrap();
        copy_dir(&c, Path::new("/var/lib/etcd"), Path::new("/backup")).unwrap();
        assert_eq!(fs.read(Path::new("/backup/member/snap/db")).unwrap(), b"db");
        assert_eq!(fs.read(Path::new("/backup/member/wal/0.wal")).unwrap(), b"wal");

        let docs = crate::config::parse_documents(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\netcd:\n  local: {}\n",
        )
        .unwrap();
        let mut docs = docs;
        docs.init.get_or_insert_with(Default::default).local_api_endpoint.advertise_address = "10.0.0.5".into();
        let cfg = InitConfig::from_documents(docs).unwrap();
        assert_eq!(certs_of(&cfg, k::ETCD), ["etcd-server", "etcd-peer", "etcd-healthcheck-client"]);
        assert_eq!(
            certs_of(&cfg, k::KUBE_APISERVER),
            ["apiserver", "apiserver-kubelet-client", "front-proxy-client", "apiserver-etcd-client"]
        );
        assert_eq!(certs_of(&cfg, k::KUBE_SCHEDULER), ["scheduler.conf"]);
    }
}
