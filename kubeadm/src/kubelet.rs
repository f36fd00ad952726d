//! Starting, restarting and stopping the kubelet on this machine (upstream's `initsystem`): systemd when it is
//! PID 1, otherwise shell commands from `KUBEADM_KUBELET_START_COMMAND` / `KUBEADM_KUBELET_STOP_COMMAND`, or,
//! when those are unset, the supervisor script `deploy/install.sh` installs at [`RUN_SCRIPT`] (what the unit and
//! its `10-kubeadm.conf` drop-in do, without systemd); and a recording fake for tests.

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
            return Err(format!(
                "no init system (systemd is not PID 1), KUBEADM_KUBELET_START_COMMAND is not set and {RUN_SCRIPT} is not installed (deploy/install.sh)"
            ));
        };
        if let Some(stop) = &self.stop {
            let _ = run("sh", &["-c", stop]);
        }
        run("sh", &["-c", cmd])
    }
    fn stop(&self) -> Result<(), String> {
        match &self.stop {
            Some(cmd) => run("sh", &["-c", cmd]),
            None => Err(format!(
                "no init system (systemd is not PID 1), KUBEADM_KUBELET_STOP_COMMAND is not set and {RUN_SCRIPT} is not installed (deploy/install.sh)"
            )),
        }
    }
    fn available(&self) -> bool {
        self.start.is_some()
    }
}

/// Where `deploy/install.sh` puts `deploy/kubelet-run.sh` (a helper program run by kubeadm, not by users:
/// `/usr/libexec`, as the FHS places such programs).
pub const RUN_SCRIPT: &str = "/usr/libexec/kubeadm/kubelet-run.sh";

/// The service for this machine.
pub fn detect() -> Box<dyn Service> {
    let start = std::env::var("KUBEADM_KUBELET_START_COMMAND").ok().filter(|s| !s.is_empty());
    let stop = std::env::var("KUBEADM_KUBELET_STOP_COMMAND").ok().filter(|s| !s.is_empty());
    if start.is_none() && crate::config::componentconfigs::systemd_is_init() {
        Box::new(Systemd)
    } else {
        Box::new(hook(start, stop, std::path::Path::new(RUN_SCRIPT).exists().then_some(RUN_SCRIPT)))
    }
}

/// The commands without systemd: the environment's, else `<script> restart` and `<script> stop`.
pub fn hook(start: Option<String>, stop: Option<String>, script: Option<&str>) -> Hook {
    match script {
        Some(s) if start.is_none() => {
            Hook { start: Some(format!("{s} restart")), stop: stop.or_else(|| Some(format!("{s} stop"))) }
        }
        _ => Hook { start, stop },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_systemd_the_installed_script_runs_the_kubelet_unless_commands_are_set() {
        let h = hook(None, None, Some(RUN_SCRIPT));
        assert_eq!(h.start.as_deref(), Some("/usr/libexec/kubeadm/kubelet-run.sh restart"));
        assert_eq!(h.stop.as_deref(), Some("/usr/libexec/kubeadm/kubelet-run.sh stop"));
        assert!(h.available());
        let h = hook(Some("my-start".into()), None, Some(RUN_SCRIPT));
        assert_eq!((h.start.as_deref(), h.stop.as_deref()), (Some("my-start"), None));
        let h = hook(None, Some("my-stop".into()), Some(RUN_SCRIPT));
        assert_eq!(h.stop.as_deref(), Some("my-stop"));
        let h = hook(None, None, None);
        assert!(!h.available());
        assert!(h.restart().unwrap_err().contains("deploy/install.sh"));
    }
}
