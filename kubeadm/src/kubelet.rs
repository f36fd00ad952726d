//! Starting, restarting and stopping the kubelet on this machine (upstream's `initsystem`): systemd when it is
//! PID 1, otherwise shell commands from `KUBEADM_KUBELET_START_COMMAND` / `KUBEADM_KUBELET_STOP_COMMAND`
//! (what the deploy scripts run instead of a unit), and a recording fake for tests.

use std::sync::Mutex;

/// The kubelet service.
pub trait Service: Send + Sync {
    /// (Re)starts the kubelet so it reads its current configuration.
    fn restart(&self) -> Result<(), String>;
    fn stop(&self) -> Result<(), String>;
    /// Whether a service manager is present to run it (`systemctl` or a configured command).
    fn available(&self) -> bool;
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{program} {}: {} {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// `systemctl restart|stop kubelet`.
#[derive(Debug, Default)]
pub struct Systemd;

impl Service for Systemd {
    fn restart(&self) -> Result<(), String> {
        let _ = run("systemctl", &["daemon-reload"]);
        let _ = run("systemctl", &["enable", "kubelet"]);
        run("systemctl", &["restart", "kubelet"])
    }
    fn stop(&self) -> Result<(), String> {
        run("systemctl", &["stop", "kubelet"])
    }
    fn available(&self) -> bool {
        true
    }
}

/// Commands run with `sh -c` (no systemd here).
#[derive(Debug, Default)]
pub struct Hook {
    pub start: Option<String>,
    pub stop: Option<String>,
}

impl Service for Hook {
    fn restart(&self) -> Result<(), String> {
        let Some(cmd) = &self.start else {
            return Err("no init system (systemd is not PID 1) and KUBEADM_KUBELET_START_COMMAND is not set".into());
        };
        if let Some(stop) = &self.stop {
            let _ = run("sh", &["-c", stop]);
        }
        run("sh", &["-c", cmd])
    }
    fn stop(&self) -> Result<(), String> {
        match &self.stop {
            Some(cmd) => run("sh", &["-c", cmd]),
            None => Err("no init system (systemd is not PID 1) and KUBEADM_KUBELET_STOP_COMMAND is not set".into()),
        }
    }
    fn available(&self) -> bool {
        self.start.is_some()
    }
}

/// The service for this machine.
pub fn detect() -> Box<dyn Service> {
    let start = std::env::var("KUBEADM_KUBELET_START_COMMAND").ok().filter(|s| !s.is_empty());
    let stop = std::env::var("KUBEADM_KUBELET_STOP_COMMAND").ok().filter(|s| !s.is_empty());
    if start.is_none() && crate::config::componentconfigs::systemd_is_init() {
        Box::new(Systemd)
    } else {
        Box::new(Hook { start, stop })
    }
}

/// Records calls; `on_restart` runs on each restart (tests use it to play the kubelet's part).
#[derive(Default)]
pub struct Fake {
    pub calls: Mutex<Vec<String>>,
    #[allow(clippy::type_complexity)]
    pub on_restart: Option<Box<dyn Fn() + Send + Sync>>,
}

impl Service for Fake {
    fn restart(&self) -> Result<(), String> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).push("restart".into());
        if let Some(f) = &self.on_restart {
            f();
        }
        Ok(())
    }
    fn stop(&self) -> Result<(), String> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).push("stop".into());
        Ok(())
    }
    fn available(&self) -> bool {
        true
    }
}
