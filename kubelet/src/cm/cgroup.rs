//! The cgroup manager (upstream's `cm.CgroupManager`): cgroup names as lists of components, their cgroupfs and
//! systemd spellings, and creating, updating and destroying them on cgroup v1 (one hierarchy per controller) or
//! v2 (the unified hierarchy) through the filesystem.

use std::io;
use std::path::{Path, PathBuf};

/// Upstream's CPU share bounds and CFS period.
pub const MIN_SHARES: u64 = 2;
pub const MAX_SHARES: u64 = 262_144;
pub const SHARES_PER_CPU: u64 = 1024;
pub const QUOTA_PERIOD_US: u64 = 100_000;
pub const MIN_QUOTA_US: i64 = 1000;

/// The v1 controllers the kubelet creates its cgroups in (the runtime creates the containers' in the others).
const V1_CONTROLLERS: [&str; 4] = ["cpu", "cpuacct", "memory", "pids"];

/// A cgroup's name as upstream's `CgroupName`: its components from the root (`["kubepods", "burstable",
/// "pod<uid>"]`), independent of the driver.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CgroupName(pub Vec<String>);

impl CgroupName {
    /// From a cgroupfs path (`/`, `/kube-root`): its components.
    pub fn from_cgroupfs(path: &str) -> Self {
        CgroupName(path.split('/').filter(|c| !c.is_empty()).map(String::from).collect())
    }

    pub fn child(&self, component: impl Into<String>) -> Self {
        let mut c = self.0.clone();
        c.push(component.into());
        CgroupName(c)
    }

    /// `/kubepods/burstable/pod<uid>` (upstream's `ToCgroupfs`).
    pub fn to_cgroupfs(&self) -> String {
        format!("/{}", self.0.join("/"))
    }

    /// `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice` (upstream's
    /// `ToSystemd`: each component's dashes become underscores, each slice is named after all its ancestors).
    pub fn to_systemd(&self) -> String {
        if self.0.is_empty() {
            return "/".into();
        }
        let mut path = String::new();
        let mut prefix = String::new();
        for c in &self.0 {
            let escaped = c.replace('-', "_");
            prefix = if prefix.is_empty() { escaped } else { format!("{prefix}-{escaped}") };
            path.push('/');
            path.push_str(&prefix);
            path.push_str(".slice");
        }
        path
    }
}

/// What the kubelet sets on one of its cgroups (upstream's `ResourceConfig`): None leaves a setting alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceConfig {
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period; -1 for no limit.
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    /// Memory limit in bytes; -1 for no limit.
    pub memory: Option<i64>,
    /// Process limit; -1 for no limit.
    pub pids_limit: Option<i64>,
}

/// cgroup v1 or v2, as mounted at the cgroup root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Upstream's cgroupfs or systemd driver (how names are spelled); both are written through the filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Cgroupfs,
    Systemd,
}

#[derive(Debug, Clone)]
pub struct CgroupManager {
    /// Where the hierarchies are mounted (`/sys/fs/cgroup`; a temporary directory in tests).
    mount: PathBuf,
    version: Version,
    driver: Driver,
}

impl CgroupManager {
    /// The manager of the machine's cgroups, v1 or v2 as mounted.
    pub fn new(driver: Driver) -> Self {
        let mount = PathBuf::from("/sys/fs/cgroup");
        let version = if mount.join("cgroup.controllers").exists() { Version::V2 } else { Version::V1 };
        CgroupManager { mount, version, driver }
    }

    /// A manager over another mount point (tests).
    pub fn at(mount: &Path, version: Version, driver: Driver) -> Self {
        CgroupManager { mount: mount.to_path_buf(), version, driver }
    }

    /// The name the runtime is given (`cgroup_parent`): the driver's spelling.
    pub fn name(&self, name: &CgroupName) -> String {
        match self.driver {
            Driver::Cgroupfs => name.to_cgroupfs(),
            Driver::Systemd => name.to_systemd(),
        }
    }

    /// The cgroup's directories: one per v1 controller mounted here, or the one of the unified hierarchy.
    fn dirs(&self, name: &CgroupName) -> Vec<(Option<&'static str>, PathBuf)> {
        let rel = self.name(name);
        let rel = rel.trim_start_matches('/');
        match self.version {
            Version::V2 => vec![(None, self.mount.join(rel))],
            Version::V1 => V1_CONTROLLERS
                .iter()
                .filter(|c| self.mount.join(c).is_dir())
                .map(|c| (Some(*c), self.mount.join(c).join(rel)))
                .collect(),
        }
    }

    pub fn exists(&self, name: &CgroupName) -> bool {
        let dirs = self.dirs(name);
        !dirs.is_empty() && dirs.iter().all(|(_, d)| d.is_dir())
    }

    /// Creates the cgroup (and its ancestors) and applies `config`.
    pub fn create(&self, name: &CgroupName, config: &ResourceConfig) -> io::Result<()> {
        for (_, dir) in self.dirs(name) {
            std::fs::create_dir_all(&dir)?;
        }
        if self.version == Version::V2 {
            self.enable_controllers(name)?;
        }
        self.update(name, config)
    }

    /// v2: a cgroup's limits need its controllers enabled in every ancestor's `cgroup.subtree_control`.
    fn enable_controllers(&self, name: &CgroupName) -> io::Result<()> {
        let rel = self.name(name);
        let mut dir = self.mount.clone();
        let available = std::fs::read_to_string(self.mount.join("cgroup.controllers")).unwrap_or_default();
        let wanted: Vec<String> = ["cpu", "memory", "pids"]
            .iter()
            .filter(|c| available.split_whitespace().any(|a| a == **c))
            .map(|c| format!("+{c}"))
            .collect();
        for component in rel.trim_start_matches('/').split('/').filter(|c| !c.is_empty()) {
            if !wanted.is_empty() {
                std::fs::write(dir.join("cgroup.subtree_control"), wanted.join(" "))?;
            }
            dir.push(component);
        }
        Ok(())
    }

    /// Applies `config` to an existing cgroup.
    pub fn update(&self, name: &CgroupName, config: &ResourceConfig) -> io::Result<()> {
        for (controller, dir) in self.dirs(name) {
            match (self.version, controller) {
                (Version::V2, _) => self.write_v2(&dir, config)?,
                (Version::V1, Some("cpu")) => {
                    if let Some(s) = config.cpu_shares {
                        write(&dir, "cpu.shares", &s.to_string())?;
                    }
                    if let Some(p) = config.cpu_period {
                        write(&dir, "cpu.cfs_period_us", &p.to_string())?;
                    }
                    if let Some(q) = config.cpu_quota {
                        write(&dir, "cpu.cfs_quota_us", &q.to_string())?;
                    }
                }
                (Version::V1, Some("memory")) => {
                    if let Some(m) = config.memory {
                        write(&dir, "memory.limit_in_bytes", &m.to_string())?;
                    }
                }
                (Version::V1, Some("pids")) => {
                    if let Some(p) = config.pids_limit {
                        write(&dir, "pids.max", &limit(p))?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn write_v2(&self, dir: &Path, config: &ResourceConfig) -> io::Result<()> {
        if let Some(s) = config.cpu_shares {
            write(dir, "cpu.weight", &shares_to_weight(s).to_string())?;
        }
        if config.cpu_quota.is_some() || config.cpu_period.is_some() {
            let period = config.cpu_period.unwrap_or(QUOTA_PERIOD_US);
            write(dir, "cpu.max", &format!("{} {period}", limit(config.cpu_quota.unwrap_or(-1))))?;
        }
        if let Some(m) = config.memory {
            write(dir, "memory.max", &limit(m))?;
        }
        if let Some(p) = config.pids_limit {
            write(dir, "pids.max", &limit(p))?;
        }
        Ok(())
    }

    /// Every hierarchy mounted here: the unified one, or on v1 each directory of the mount point (one per
    /// controller or co-mounted group of them, the named `systemd` one, a hybrid system's `unified`). The runtime
    /// makes a container's parent cgroups in all of them, not only in those the kubelet writes limits to.
    fn hierarchies(&self) -> Vec<PathBuf> {
        match self.version {
            Version::V2 => vec![self.mount.clone()],
            Version::V1 => {
                let mut dirs: Vec<PathBuf> = std::fs::read_dir(&self.mount)
                    .map(|entries| entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
                    .unwrap_or_default();
                dirs.sort();
                dirs
            }
        }
    }

    /// Removes the cgroup and whatever empty cgroups are left below it, in every hierarchy (upstream's `Destroy`
    /// removes all of the cgroup's subsystem paths); a cgroup with processes stays: its `rmdir` fails with EBUSY,
    /// reported.
    pub fn destroy(&self, name: &CgroupName) -> io::Result<()> {
        let rel = self.name(name);
        let rel = rel.trim_start_matches('/');
        if rel.is_empty() {
            return Ok(());
        }
        let mut result = Ok(());
        for dir in self.hierarchies().into_iter().map(|h| h.join(rel)) {
            if let Err(e) = remove_tree(&dir)
                && e.kind() != io::ErrorKind::NotFound
            {
                result = Err(e);
            }
        }
        result
    }
}

/// Bottom-up `rmdir` of a cgroup directory tree (cgroupfs directories hold only control files, which go with them).
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    std::fs::remove_dir(dir)
}

fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    std::fs::write(dir.join(file), value)
        .map_err(|e| io::Error::new(e.kind(), format!("writing {value:?} to {}: {e}", dir.join(file).display())))
}

/// `max` for -1 (no limit), the number otherwise.
fn limit(v: i64) -> String {
    if v < 0 { "max".into() } else { v.to_string() }
}

/// Upstream's `CpuSharesToCpuWeight` (cgroup v2's cpu.weight from v1 shares).
pub fn shares_to_weight(shares: u64) -> u64 {
    1 + (shares.clamp(MIN_SHARES, MAX_SHARES) - 2) * 9999 / 262_142
}

/// Upstream's `MilliCPUToShares`.
pub fn milli_cpu_to_shares(milli: i64) -> u64 {
    if milli <= 0 {
        return MIN_SHARES;
    }
    (milli as u64 * SHARES_PER_CPU / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// Upstream's `MilliCPUToQuota`: 0 for no limit, otherwise at least 1 ms per period.
pub fn milli_cpu_to_quota(milli: i64, period: u64) -> i64 {
    if milli <= 0 {
        return 0;
    }
    (milli * period as i64 / 1000).max(MIN_QUOTA_US)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_upstream() {
        // Upstream's cgroup_manager_linux_test.go TestCgroupNameToSystemd / ToCgroupfs cases.
        let n = CgroupName(vec!["kubepods".into(), "burstable".into(), "pod-1234-abcd".into()]);
        assert_eq!(n.to_cgroupfs(), "/kubepods/burstable/pod-1234-abcd");
        assert_eq!(n.to_systemd(), "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod_1234_abcd.slice");
        assert_eq!(CgroupName::default().to_systemd(), "/");
        assert_eq!(CgroupName::default().to_cgroupfs(), "/");
        assert_eq!(CgroupName::from_cgroupfs("/"), CgroupName::default());
        assert_eq!(CgroupName::from_cgroupfs("/a/b/").child("c").to_cgroupfs(), "/a/b/c");
    }

    #[test]
    fn cpu_conversions_as_upstream() {
        // helpers_linux_test.go TestMilliCPUToQuota and the shares bounds.
        assert_eq!(milli_cpu_to_quota(0, 100_000), 0);
        assert_eq!(milli_cpu_to_quota(5, 100_000), 1000);
        assert_eq!(milli_cpu_to_quota(9, 100_000), 1000);
        assert_eq!(milli_cpu_to_quota(10, 100_000), 1000);
        assert_eq!(milli_cpu_to_quota(200, 100_000), 20_000);
        assert_eq!(milli_cpu_to_quota(500, 50_000), 25_000);
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_shares(1), 2);
        assert_eq!(milli_cpu_to_shares(100), 102);
        assert_eq!(milli_cpu_to_shares(1000), 1024);
        assert_eq!(milli_cpu_to_shares(1_000_000), MAX_SHARES);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(MAX_SHARES), 10_000);
    }

    #[test]
    fn v1_writes_each_controller() {
        let d = tempfile::tempdir().unwrap();
        for c in ["cpu", "memory", "pids"] {
            std::fs::create_dir(d.path().join(c)).unwrap();
        }
        let m = CgroupManager::at(d.path(), Version::V1, Driver::Cgroupfs);
        let n = CgroupName::from_cgroupfs("/kubepods/burstable/pod1");
        assert!(!m.exists(&n));
        let cfg = ResourceConfig {
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory: Some(1 << 20),
            pids_limit: Some(-1),
        };
        m.create(&n, &cfg).unwrap();
        assert!(m.exists(&n));
        let read = |p: &str| std::fs::read_to_string(d.path().join(p)).unwrap();
        assert_eq!(read("cpu/kubepods/burstable/pod1/cpu.shares"), "512");
        assert_eq!(read("cpu/kubepods/burstable/pod1/cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu/kubepods/burstable/pod1/cpu.cfs_period_us"), "100000");
        assert_eq!(read("memory/kubepods/burstable/pod1/memory.limit_in_bytes"), "1048576");
        assert_eq!(read("pids/kubepods/burstable/pod1/pids.max"), "max");
        assert_eq!(m.name(&n), "/kubepods/burstable/pod1");
    }

    #[test]
    fn v2_enables_controllers_and_writes_unified_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cgroup.controllers"), "cpuset cpu io memory pids").unwrap();
        let m = CgroupManager::at(d.path(), Version::V2, Driver::Systemd);
        let n = CgroupName(vec!["kubepods".into(), "besteffort".into()]);
        let cfg = ResourceConfig { cpu_shares: Some(2), memory: Some(-1), ..Default::default() };
        m.create(&n, &cfg).unwrap();
        let read = |p: &str| std::fs::read_to_string(d.path().join(p)).unwrap();
        assert_eq!(read("cgroup.subtree_control"), "+cpu +memory +pids");
        assert_eq!(read("kubepods.slice/cgroup.subtree_control"), "+cpu +memory +pids");
        assert_eq!(read("kubepods.slice/kubepods-besteffort.slice/cpu.weight"), "1");
        assert_eq!(read("kubepods.slice/kubepods-besteffort.slice/memory.max"), "max");
        let q = ResourceConfig { cpu_quota: Some(20_000), cpu_period: Some(100_000), ..Default::default() };
        m.update(&n, &q).unwrap();
        assert_eq!(read("kubepods.slice/kubepods-besteffort.slice/cpu.max"), "20000 100000");
    }

    #[test]
    fn destroy_removes_the_tree() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("memory")).unwrap();
        let m = CgroupManager::at(d.path(), Version::V1, Driver::Cgroupfs);
        let pod = CgroupName::from_cgroupfs("/kubepods/pod1");
        m.create(&pod.child("container1"), &ResourceConfig::default()).unwrap();
        m.destroy(&pod).unwrap();
        assert!(!d.path().join("memory/kubepods/pod1").exists());
        assert!(d.path().join("memory/kubepods").exists());
        // Already gone: not an error.
        m.destroy(&pod).unwrap();
    }

    #[test]
    fn destroy_removes_the_cgroup_from_every_v1_hierarchy() {
        // runc makes a container's parent cgroups in every mounted hierarchy, not only in those the kubelet
        // writes limits to.
        let d = tempfile::tempdir().unwrap();
        let hierarchies =
            ["blkio", "cpu,cpuacct", "cpuset", "devices", "freezer", "memory", "pids", "systemd", "unified"];
        for h in hierarchies {
            std::fs::create_dir_all(d.path().join(h).join("kubepods/besteffort/pod1/c1")).unwrap();
            std::fs::create_dir_all(d.path().join(h).join("kubepods/besteffort/pod2")).unwrap();
        }
        std::os::unix::fs::symlink("cpu,cpuacct", d.path().join("cpu")).unwrap();
        let m = CgroupManager::at(d.path(), Version::V1, Driver::Cgroupfs);
        m.destroy(&CgroupName::from_cgroupfs("/kubepods/besteffort/pod1")).unwrap();
        for h in hierarchies {
            assert!(!d.path().join(h).join("kubepods/besteffort/pod1").exists(), "{h}");
            assert!(d.path().join(h).join("kubepods/besteffort/pod2").exists(), "{h}");
        }
        // The root is never removed.
        m.destroy(&CgroupName::from_cgroupfs("/")).unwrap();
        assert!(d.path().join("memory").exists());
    }
}
