//! Test support: a private containerd (Debian's package) with its own config, state, socket and CNI config dir
//! under a temp dir, with the pause and busybox images built by `deploy/images/build.sh` imported. Dropping it
//! stops containerd and its shims, unmounts whatever it left mounted and removes the directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Containerd {
    child: Option<Child>,
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// Where CNI network configs go (`plugins.cri.cni.conf_dir`).
    pub cni_conf_dir: PathBuf,
    /// A cgroup root of its own for a kubelet on this containerd (`cgroupRoot`, e.g. `/kube-test-<id>`), so tests
    /// neither share the machine's `/kubepods` nor leave cgroups behind: removed on drop.
    pub cgroup_root: String,
}

/// The repository's `deploy/` directory.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

impl Containerd {
    /// Starts containerd in a fresh directory under `base` and imports the test images.
    pub fn start(base: &Path) -> std::io::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = base.join(format!("containerd-{id}"));
        let (root, state, cni) = (dir.join("root"), dir.join("state"), dir.join("cni"));
        for d in [&root, &state, &cni] {
            std::fs::create_dir_all(d)?;
        }
        let socket = dir.join("containerd.sock");
        // restrict_oom_score_adj: processes here may not lower their oom_score_adj (see ARCHITECTURE.md);
        // netns_mounts_under_state_dir: the pods' network namespaces are mounted in this containerd's state
        // directory, so dropping it removes them even when a test ends before its pods are torn down.
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n[grpc]\n  address = \"{sock}\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.10\"\n  restrict_oom_score_adj = true\n  netns_mounts_under_state_dir = true\n\
             [plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"/usr/lib/cni\"\n  conf_dir = \"{cni}\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = false\n",
            root = root.display(),
            state = state.display(),
            sock = socket.display(),
            cni = cni.display(),
        );
        std::fs::write(dir.join("config.toml"), config)?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.join("containerd.log"))?))
            .spawn()
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("starting containerd (apt-get install containerd): {e}"))
            })?;
        let c = Containerd {
            child: Some(child),
            dir: dir.clone(),
            socket: socket.clone(),
            cni_conf_dir: cni,
            cgroup_root: format!("/kube-test-{}", &id[..12]),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            if Instant::now() > deadline {
                return Err(std::io::Error::other("containerd did not create its socket"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = Command::new("bash")
            .arg(deploy_dir().join("images/build.sh"))
            .arg(dir.join("images"))
            .arg("--import")
            .arg("--address")
            .arg(&socket)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            return Err(std::io::Error::other("building or importing the test images failed"));
        }
        Ok(c)
    }

    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

/// Every mount point under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    let mut out: Vec<String> = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.len()));
    out
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Kill every container process first: they would outlive containerd and its shims.
        let sock = self.socket.display().to_string();
        if let Ok(out) = Command::new("ctr").args(["--address", &sock, "-n", "k8s.io", "tasks", "ls"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
                if let Some(pid) = line.split_whitespace().nth(1).filter(|p| p.parse::<u32>().is_ok_and(|p| p > 1)) {
                    let _ = Command::new("kill").arg("-KILL").arg(pid).status();
                }
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Shims outlive containerd: stop the ones started for this socket.
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for p in procs.flatten() {
                let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else { continue };
                let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                if cmdline.contains("containerd-shim") && cmdline.contains(&sock) {
                    let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        for m in mounts_under(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        remove_cgroups(&self.cgroup_root);
    }
}

/// Removes a cgroup tree (empty by now: its processes were killed) from every hierarchy: bottom-up `rmdir`.
fn remove_cgroups(root: &str) {
    fn rmdir_tree(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rmdir_tree(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let rel = root.trim_start_matches('/');
    if rel.is_empty() {
        return;
    }
    let mount = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![mount.join(rel)];
    if let Ok(hierarchies) = std::fs::read_dir(mount) {
        dirs.extend(hierarchies.flatten().map(|h| h.path().join(rel)));
    }
    for d in dirs.iter().filter(|d| d.is_dir()) {
        // A container's cgroup may take a moment to empty after its process was killed.
        for _ in 0..20 {
            rmdir_tree(d);
            if !d.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
