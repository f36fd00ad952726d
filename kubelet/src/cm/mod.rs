//! The container manager (upstream's `pkg/kubelet/cm`): with `cgroupsPerQOS` the kubelet keeps the pods' cgroup
//! tree under `<cgroupRoot>/kubepods`: the node allocatable cgroup (its memory limit and CPU shares from capacity
//! less kube- and system-reserved, announced with the node event `NodeAllocatableEnforced`), the `burstable` and
//! `besteffort` QoS cgroups, and one cgroup per pod with the pod's limits, given to the runtime as the sandbox's
//! cgroup parent and removed when the pod is gone.

pub mod cgroup;
pub mod qos;

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use crate::node::{bytes, cpu_millis};
use crate::options::Config;
use cgroup::{CgroupManager, CgroupName, Driver, MIN_SHARES, ResourceConfig, milli_cpu_to_shares};
use qos::QosClass;

/// The node allocatable cgroup's name under the cgroup root (upstream's `defaultNodeAllocatableCgroupName`).
pub const NODE_ALLOCATABLE_CGROUP: &str = "kubepods";

pub struct ContainerManager {
    cgroups: CgroupManager,
    /// `<cgroupRoot>/kubepods`.
    root: CgroupName,
    /// What the node allocatable cgroup is limited to.
    allocatable: ResourceConfig,
    pod_pids_limit: i64,
    /// The CPU requests (millicores) of the Burstable pods with a cgroup, for the `burstable` cgroup's shares.
    burstable: Mutex<HashMap<String, i64>>,
}

impl ContainerManager {
    /// The manager for this kubelet's configuration; None without `cgroupsPerQOS`.
    pub fn new(cfg: &Config) -> Option<Self> {
        if !cfg.cgroups_per_qos {
            return None;
        }
        let driver = if cfg.cgroup_driver == "systemd" { Driver::Systemd } else { Driver::Cgroupfs };
        Some(Self::with(CgroupManager::new(driver), cfg))
    }

    /// The manager over a given cgroup manager (tests use a temporary mount point).
    pub fn with(cgroups: CgroupManager, cfg: &Config) -> Self {
        ContainerManager {
            cgroups,
            root: CgroupName::from_cgroupfs(&cfg.cgroup_root).child(NODE_ALLOCATABLE_CGROUP),
            allocatable: node_allocatable_config(cfg),
            pod_pids_limit: cfg.pod_pids_limit,
            burstable: Mutex::default(),
        }
    }

    /// Creates the node allocatable cgroup and the QoS cgroups (upstream's `setupNode`): kubepods limited to the
    /// allocatable resources, `besteffort` with the minimum CPU shares, `burstable` with its pods' requests.
    pub fn start(&self) -> std::io::Result<()> {
        self.cgroups.create(&self.root, &self.allocatable)?;
        self.cgroups.create(
            &self.root.child("besteffort"),
            &ResourceConfig { cpu_shares: Some(MIN_SHARES), ..Default::default() },
        )?;
        self.cgroups.create(&self.root.child("burstable"), &self.burstable_config())?;
        Ok(())
    }

    fn burstable_config(&self) -> ResourceConfig {
        let requests: i64 = self.burstable.lock().unwrap_or_else(|e| e.into_inner()).values().sum();
        ResourceConfig { cpu_shares: Some(milli_cpu_to_shares(requests)), ..Default::default() }
    }

    /// The pod's cgroup: `kubepods/pod<uid>`, `kubepods/burstable/pod<uid>` or `kubepods/besteffort/pod<uid>`.
    fn pod_cgroup(&self, uid: &str, class: QosClass) -> CgroupName {
        let parent = match class.component() {
            Some(c) => self.root.child(c),
            None => self.root.clone(),
        };
        parent.child(format!("pod{uid}"))
    }

    /// The sandbox's cgroup parent in the driver's spelling (upstream's `GetPodCgroupParent`).
    pub fn cgroup_parent(&self, pod: &Value) -> String {
        let uid = pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
        self.cgroups.name(&self.pod_cgroup(uid, QosClass::of(pod)))
    }

    /// Creates (or updates) the pod's cgroup with its limits before its sandbox starts (upstream's
    /// `EnsureExists`), and the `burstable` cgroup's shares with it.
    pub fn ensure_pod(&self, pod: &Value) -> std::io::Result<()> {
        let uid = pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
        let class = QosClass::of(pod);
        let name = self.pod_cgroup(uid, class);
        if class == QosClass::Burstable {
            let requests = qos::pod_total(pod, "requests", "cpu").0;
            let changed = self.burstable.lock().unwrap_or_else(|e| e.into_inner()).insert(uid.to_string(), requests)
                != Some(requests);
            if changed {
                self.cgroups.create(&self.root.child("burstable"), &self.burstable_config())?;
            }
        }
        self.cgroups.create(&name, &qos::resource_config_for_pod(pod, self.pod_pids_limit))
    }

    /// Removes a gone pod's cgroup, wherever its class put it (upstream's `Destroy` of orphaned pod cgroups).
    pub fn remove_pod(&self, uid: &str) {
        for class in [QosClass::Guaranteed, QosClass::Burstable, QosClass::BestEffort] {
            if let Err(e) = self.cgroups.destroy(&self.pod_cgroup(uid, class)) {
                tracing::debug!(pod = %uid, error = %e, "removing the pod's cgroup");
            }
        }
        if self.burstable.lock().unwrap_or_else(|e| e.into_inner()).remove(uid).is_some()
            && let Err(e) = self.cgroups.update(&self.root.child("burstable"), &self.burstable_config())
        {
            tracing::debug!(error = %e, "updating the burstable cgroup");
        }
    }
}

/// Upstream's node allocatable cgroup config: memory and CPU shares from the capacity less kube- and
/// system-reserved (without the eviction threshold) when `enforceNodeAllocatable` has `pods`, from the capacity
/// otherwise; a process limit when pids are reserved.
fn node_allocatable_config(cfg: &Config) -> ResourceConfig {
    let (capacity, _) = crate::node::resources(cfg);
    let enforce = cfg.enforce_node_allocatable.iter().any(|e| e == "pods");
    let reserved = |name: &str, parse: fn(&str) -> Option<i64>| -> i64 {
        if !enforce {
            return 0;
        }
        [&cfg.kube_reserved, &cfg.system_reserved].iter().filter_map(|m| m.get(name)).filter_map(|q| parse(q)).sum()
    };
    let cpu = capacity["cpu"].as_str().and_then(cpu_millis).unwrap_or(0);
    let memory = capacity["memory"].as_str().and_then(bytes).unwrap_or(0);
    let pids_reserved = reserved("pid", api_types::quantity::value);
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse::<i64>().ok());
    ResourceConfig {
        cpu_shares: Some(milli_cpu_to_shares((cpu - reserved("cpu", cpu_millis)).max(0))),
        memory: Some((memory - reserved("memory", bytes)).max(0)),
        pids_limit: pid_max.filter(|_| pids_reserved > 0).map(|m| (m - pids_reserved).max(0)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::cgroup::Version;
    use super::*;
    use serde_json::json;

    fn setup(tune: impl FnOnce(&mut Config)) -> (tempfile::TempDir, ContainerManager) {
        let d = tempfile::tempdir().unwrap();
        for c in ["cpu", "memory", "pids"] {
            std::fs::create_dir(d.path().join(c)).unwrap();
        }
        let flags = crate::Flags { root_dir: Some(d.path().join("kubelet")), ..Default::default() };
        let mut cfg = Config::resolve(flags).unwrap();
        cfg.cgroup_root = "/test-root".into();
        tune(&mut cfg);
        let cm = ContainerManager::with(CgroupManager::at(d.path(), Version::V1, Driver::Cgroupfs), &cfg);
        (d, cm)
    }

    fn read(d: &tempfile::TempDir, p: &str) -> String {
        std::fs::read_to_string(d.path().join(p)).unwrap()
    }

    #[test]
    fn start_limits_kubepods_to_allocatable() {
        let (d, cm) = setup(|cfg| {
            cfg.kube_reserved.insert("memory".into(), "100Mi".into());
            cfg.system_reserved.insert("cpu".into(), "500m".into());
        });
        cm.start().unwrap();
        let (capacity, _) = crate::node::resources(&Config::resolve(crate::Flags::default()).unwrap());
        let memory = capacity["memory"].as_str().and_then(bytes).unwrap();
        let cpu = capacity["cpu"].as_str().and_then(cpu_millis).unwrap();
        assert_eq!(read(&d, "memory/test-root/kubepods/memory.limit_in_bytes"), (memory - (100 << 20)).to_string());
        assert_eq!(read(&d, "cpu/test-root/kubepods/cpu.shares"), ((cpu - 500) * 1024 / 1000).to_string());
        assert_eq!(read(&d, "cpu/test-root/kubepods/besteffort/cpu.shares"), "2");
        assert_eq!(read(&d, "cpu/test-root/kubepods/burstable/cpu.shares"), "2");
    }

    #[test]
    fn without_enforcement_kubepods_gets_the_capacity() {
        let (d, cm) = setup(|cfg| {
            cfg.kube_reserved.insert("memory".into(), "100Mi".into());
            cfg.enforce_node_allocatable.clear();
        });
        cm.start().unwrap();
        let (capacity, _) = crate::node::resources(&Config::resolve(crate::Flags::default()).unwrap());
        let memory = capacity["memory"].as_str().and_then(bytes).unwrap();
        assert_eq!(read(&d, "memory/test-root/kubepods/memory.limit_in_bytes"), memory.to_string());
    }

    #[test]
    fn pods_get_cgroups_by_qos_class() {
        let (d, cm) = setup(|_| {});
        cm.start().unwrap();
        let burstable = json!({"metadata": {"uid": "u-1"}, "status": {"qosClass": "Burstable"},
            "spec": {"containers": [{"resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "64Mi"}}}]}});
        let guaranteed = json!({"metadata": {"uid": "u-2"}, "status": {"qosClass": "Guaranteed"},
            "spec": {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "32Mi"}}}]}});
        let besteffort = json!({"metadata": {"uid": "u-3"}, "status": {"qosClass": "BestEffort"},
            "spec": {"containers": [{}]}});
        assert_eq!(cm.cgroup_parent(&burstable), "/test-root/kubepods/burstable/podu-1");
        assert_eq!(cm.cgroup_parent(&guaranteed), "/test-root/kubepods/podu-2");
        assert_eq!(cm.cgroup_parent(&besteffort), "/test-root/kubepods/besteffort/podu-3");
        for p in [&burstable, &guaranteed, &besteffort] {
            cm.ensure_pod(p).unwrap();
        }
        assert_eq!(read(&d, "cpu/test-root/kubepods/burstable/podu-1/cpu.shares"), "256");
        assert_eq!(
            read(&d, "memory/test-root/kubepods/burstable/podu-1/memory.limit_in_bytes"),
            (64 << 20).to_string()
        );
        assert_eq!(read(&d, "cpu/test-root/kubepods/podu-2/cpu.cfs_quota_us"), "100000");
        assert_eq!(read(&d, "cpu/test-root/kubepods/besteffort/podu-3/cpu.shares"), "2");
        // The burstable QoS cgroup's shares follow its pods' requests.
        assert_eq!(read(&d, "cpu/test-root/kubepods/burstable/cpu.shares"), "256");
        // Real cgroupfs directories hold only control files; here the files must go before the directories.
        for f in [
            "cpu/test-root/kubepods/burstable/podu-1/cpu.shares",
            "cpu/test-root/kubepods/burstable/podu-1/cpu.cfs_quota_us",
            "memory/test-root/kubepods/burstable/podu-1/memory.limit_in_bytes",
        ] {
            let _ = std::fs::remove_file(d.path().join(f));
        }
        cm.remove_pod("u-1");
        assert!(!d.path().join("cpu/test-root/kubepods/burstable/podu-1").exists());
        assert!(!d.path().join("memory/test-root/kubepods/burstable/podu-1").exists());
        assert_eq!(read(&d, "cpu/test-root/kubepods/burstable/cpu.shares"), "2");
    }

    #[test]
    fn systemd_driver_names_slices() {
        let d = tempfile::tempdir().unwrap();
        let flags = crate::Flags { root_dir: Some(d.path().join("kubelet")), ..Default::default() };
        let cfg = Config::resolve(flags).unwrap();
        let cm = ContainerManager::with(CgroupManager::at(d.path(), Version::V2, Driver::Systemd), &cfg);
        let pod = json!({"metadata": {"uid": "a-b"}, "status": {"qosClass": "BestEffort"}});
        assert_eq!(
            cm.cgroup_parent(&pod),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-poda_b.slice"
        );
    }
}
