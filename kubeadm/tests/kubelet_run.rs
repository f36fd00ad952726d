//! `deploy/kubelet-run.sh`, the kubelet's supervisor without systemd, driven the way kubeadm drives it (the
//! `kubelet::hook` commands): it passes the drop-in's flags plus `kubeadm-flags.env` and `/etc/default/kubelet`,
//! records the kubelet's pid, restarts it when it exits and stops it. The kubelet is a fake shell script recording
//! its arguments; every path is under a temp root (`KUBELET_RUN_ROOT`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubeadm::fs::{Fs, HostFs};
use kubeadm::phases::{Context, Printer};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubelet-run.sh")
}

/// Stops whatever the script started, even when the test fails.
struct Stop(String);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("sh").args(["-c", &format!("{} stop", self.0)]).status();
    }
}

fn pid(root: &Path) -> Option<u32> {
    std::fs::read_to_string(root.join("run/kubelet.pid")).ok()?.trim().parse().ok()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kubelet_run_starts_restarts_and_stops_the_kubelet_with_the_drop_in_flags() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let fake = root.join("fake-kubelet");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho \"$*\" >> {}/args\ntrap 'kill $!; exit 0' TERM\nsleep 1000 & wait\n", root.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = format!(
        "env KUBELET_RUN_ROOT={} KUBELET={} KUBELET_RESTART_SEC=0.2 {}",
        root.display(),
        fake.display(),
        script().display()
    );
    let _stop = Stop(script.clone());
    let fs = HostFs::new(root);
    fs.write(Path::new("/etc/default/kubelet"), b"KUBELET_EXTRA_ARGS=\"--v=2 --max-pods=50\"\n", 0o644).unwrap();
    let ctx = Context {
        fs: Arc::new(fs),
        out: Printer::capture(),
        kubelet: Arc::new(kubeadm::kubelet::hook(None, None, Some(&script))),
        now: None,
        host: false,
    };
    let nr = kubeadm::config::NodeRegistrationOptions {
        cri_socket: "unix:///run/containerd/containerd.sock".into(),
        ..Default::default()
    };
    kubeadm::phases::kubeletstart::write_flags(&ctx, &nr).unwrap();
    kubeadm::phases::kubeletstart::start(&ctx);
    assert!(ctx.out.text().contains("[kubelet-start] Starting the kubelet"), "{}", ctx.out.text());
    assert!(!ctx.out.text().contains("WARNING"), "{}", ctx.out.text());

    let first = pid(root).expect("the kubelet's pid in /run/kubelet.pid");
    assert!(alive(first));
    wait_for("the kubelet's arguments", || root.join("args").exists());
    let args = std::fs::read_to_string(root.join("args")).unwrap();
    assert_eq!(
        args.trim(),
        "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf \
         --config=/var/lib/kubelet/config.yaml --container-runtime-endpoint=unix:///run/containerd/containerd.sock \
         --v=2 --max-pods=50"
    );
    assert!(std::fs::read_to_string(root.join("var/log/kubelet.log")).unwrap().contains("kubelet-run: starting"));

    // A kubelet that exits is started again (Restart=always), reading the env files again.
    std::fs::write(root.join("etc/default/kubelet"), "KUBELET_EXTRA_ARGS=--v=4\n").unwrap();
    std::process::Command::new("kill").arg(first.to_string()).status().unwrap();
    wait_for("a restarted kubelet", || pid(root).is_some_and(|p| p != first && alive(p)));
    wait_for("its arguments", || std::fs::read_to_string(root.join("args")).unwrap().lines().count() == 2);
    let last = std::fs::read_to_string(root.join("args")).unwrap().lines().nth(1).unwrap().to_string();
    assert!(last.ends_with("--container-runtime-endpoint=unix:///run/containerd/containerd.sock --v=4"), "{last}");

    // kubeadm's restart replaces it; stop ends the supervisor and the kubelet.
    let second = pid(root).unwrap();
    ctx.kubelet.restart().unwrap();
    let third = pid(root).unwrap();
    assert!(third != second && !alive(second) && alive(third));
    let supervisor: u32 =
        std::fs::read_to_string(root.join("run/kubelet-supervisor.pid")).unwrap().trim().parse().unwrap();
    ctx.kubelet.stop().unwrap();
    assert!(!alive(third) && !alive(supervisor));
    assert!(pid(root).is_none());
    let out = std::process::Command::new("sh").args(["-c", &format!("{script} status")]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
}
