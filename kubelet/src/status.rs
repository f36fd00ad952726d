//! A pod's phase and the conditions the kubelet owns, from its container statuses (upstream's `getPhase` and
//! `pkg/kubelet/status/generate.go`): `PodReadyToStartContainers`, `Initialized` (`ContainersNotInitialized`,
//! "containers with incomplete status: [a b]"), `ContainersReady` and `Ready` (`ContainersNotReady`, `PodCompleted`,
//! `PodFailed`, readiness gates with `ReadinessGatesNotReady`) and `PodScheduled`.

use serde_json::{Value, json};

use runtime::array;

/// The conditions the kubelet writes (others' conditions, DisruptionTarget and readiness gates', are kept).
pub const KUBELET_CONDITIONS: [&str; 5] =
    ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"];

/// One condition as computed now (times are added when it is written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub kind: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Condition {
    fn new(kind: &'static str, status: bool) -> Self {
        Condition { kind, status, reason: "", message: String::new() }
    }
    fn because(mut self, reason: &'static str, message: String) -> Self {
        self.reason = reason;
        self.message = message;
        self
    }
    /// The condition as the API has it, with its transition time.
    pub fn to_json(&self, last_transition: Value) -> Value {
        let mut c = json!({"type": self.kind, "status": if self.status { "True" } else { "False" },
            "lastProbeTime": null, "lastTransitionTime": last_transition});
        if !self.reason.is_empty() {
            c["reason"] = json!(self.reason);
        }
        if !self.message.is_empty() {
            c["message"] = json!(self.message);
        }
        c
    }
}

fn name(status: &Value) -> &str {
    status.get("name").and_then(Value::as_str).unwrap_or_default()
}

fn exit_code(state: &Value) -> Option<i64> {
    state.pointer("/terminated/exitCode").and_then(Value::as_i64)
}

/// Go's `%s` of a string slice: `[a b]`.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

/// The pod's phase from its container statuses (upstream's getPhase, without restartable init containers).
pub fn phase(pod: &Value, init: &[Value], apps: &[Value]) -> &'static str {
    let restart = match pod.pointer("/spec/restartPolicy").and_then(Value::as_str) {
        None | Some("") => "Always",
        Some(p) => p,
    };
    let (mut pending_init, mut failed_init) = (0, 0);
    for c in init {
        if c.pointer("/state/running").is_some() {
            pending_init += 1;
        } else if let Some(code) = exit_code(&c["state"]) {
            failed_init += usize::from(code != 0);
        } else if let Some(code) = exit_code(&c["lastState"]) {
            failed_init += usize::from(code != 0);
        } else {
            pending_init += 1;
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in apps {
        if c.pointer("/state/running").is_some() {
            running += 1;
        } else if let Some(code) = exit_code(&c["state"]) {
            stopped += 1;
            succeeded += usize::from(code == 0);
        } else if c.pointer("/lastState/terminated").is_some() {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if failed_init > 0 && restart == "Never" {
        return "Failed";
    }
    if pending_init > 0 || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        return if restart == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if restart == "Never" {
            "Failed"
        } else {
            "Running"
        };
    }
    "Pending"
}

/// The kubelet's conditions, in the order it writes them.
pub fn conditions(pod: &Value, init: &[Value], apps: &[Value], phase: &str, sandbox_ready: bool) -> Vec<Condition> {
    // Initialized: every init container exited 0 (is ready), or an app container has started already.
    let incomplete: Vec<&str> = init.iter().filter(|c| c["ready"] != true).map(name).collect();
    let app_started = apps.iter().any(|c| {
        c.pointer("/state/running").is_some()
            || c.pointer("/state/terminated").is_some()
            || c.pointer("/lastState/terminated").is_some()
    });
    let initialized = if phase == "Succeeded" {
        Condition::new("Initialized", true).because("PodCompleted", String::new())
    } else if incomplete.is_empty() || app_started {
        Condition::new("Initialized", true)
    } else {
        Condition::new("Initialized", false)
            .because("ContainersNotInitialized", format!("containers with incomplete status: {}", go_list(&incomplete)))
    };
    let unready: Vec<&str> = apps.iter().filter(|c| c["ready"] != true).map(name).collect();
    let containers_ready = match phase {
        "Succeeded" => Condition::new("ContainersReady", false).because("PodCompleted", String::new()),
        "Failed" => Condition::new("ContainersReady", false).because("PodFailed", String::new()),
        _ if !unready.is_empty() => Condition::new("ContainersReady", false)
            .because("ContainersNotReady", format!("containers with unready status: {}", go_list(&unready))),
        _ => Condition::new("ContainersReady", true),
    };
    let ready = if !containers_ready.status {
        Condition { kind: "Ready", ..containers_ready.clone() }
    } else {
        // Readiness gates: each named condition must be there and True.
        let current = array(pod, "/status/conditions");
        let unmet: Vec<String> = array(pod, "/spec/readinessGates")
            .iter()
            .filter_map(|g| g.get("conditionType").and_then(Value::as_str))
            .filter_map(|t| match current.iter().find(|c| c["type"] == t) {
                None => Some(format!("corresponding condition of pod readiness gate \"{t}\" does not exist.")),
                Some(c) if c["status"] != "True" => Some(format!(
                    "the status of pod readiness gate \"{t}\" is not \"True\", but {}",
                    c["status"].as_str().unwrap_or_default()
                )),
                Some(_) => None,
            })
            .collect();
        if unmet.is_empty() {
            Condition::new("Ready", true)
        } else {
            Condition::new("Ready", false).because("ReadinessGatesNotReady", unmet.join(", "))
        }
    };
    vec![
        Condition::new("PodReadyToStartContainers", sandbox_ready),
        initialized,
        ready,
        containers_ready,
        Condition::new("PodScheduled", true),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(n: &str, reason: &str) -> Value {
        json!({"name": n, "ready": false, "state": {"waiting": {"reason": reason}}, "lastState": {}})
    }
    fn running(n: &str, ready: bool) -> Value {
        json!({"name": n, "ready": ready, "state": {"running": {}}, "lastState": {}})
    }
    fn exited(n: &str, code: i64, ready: bool) -> Value {
        json!({"name": n, "ready": ready, "state": {"terminated": {"exitCode": code}}, "lastState": {}})
    }
    fn pod(restart: &str) -> Value {
        json!({"spec": {"restartPolicy": restart}})
    }
    fn get<'a>(cs: &'a [Condition], kind: &str) -> &'a Condition {
        cs.iter().find(|c| c.kind == kind).unwrap()
    }

    #[test]
    fn init_containers_gate_the_pod_with_upstreams_reasons() {
        let p = pod("Always");
        let init = [exited("init1", 0, true), running("init2", false), waiting("init3", "PodInitializing")];
        let apps = [waiting("app", "PodInitializing")];
        assert_eq!(phase(&p, &init, &apps), "Pending");
        let cs = conditions(&p, &init, &apps, "Pending", true);
        let initialized = get(&cs, "Initialized");
        assert!(!initialized.status);
        assert_eq!(initialized.reason, "ContainersNotInitialized");
        assert_eq!(initialized.message, "containers with incomplete status: [init2 init3]");
        let ready = get(&cs, "Ready");
        assert_eq!((ready.status, ready.reason), (false, "ContainersNotReady"));
        assert_eq!(ready.message, "containers with unready status: [app]");
        assert_eq!(get(&cs, "ContainersReady"), &Condition { kind: "ContainersReady", ..ready.clone() });
        assert!(get(&cs, "PodScheduled").status && get(&cs, "PodReadyToStartContainers").status);

        let init = [exited("init1", 0, true), exited("init2", 0, true), exited("init3", 0, true)];
        let apps = [running("app", true)];
        assert_eq!(phase(&p, &init, &apps), "Running");
        let cs = conditions(&p, &init, &apps, "Running", true);
        assert!(cs.iter().all(|c| c.status && c.reason.is_empty()), "{cs:?}");
    }

    #[test]
    fn a_failed_init_container_fails_a_never_restarting_pod() {
        let init = [exited("init1", 1, false)];
        let apps = [waiting("app", "PodInitializing")];
        assert_eq!(phase(&pod("Never"), &init, &apps), "Failed");
        assert_eq!(phase(&pod("OnFailure"), &init, &apps), "Pending");
        let cs = conditions(&pod("Never"), &init, &apps, "Failed", false);
        assert_eq!(get(&cs, "Ready").reason, "PodFailed");
        assert_eq!(get(&cs, "Initialized").message, "containers with incomplete status: [init1]");
        assert!(!get(&cs, "PodReadyToStartContainers").status);
    }

    #[test]
    fn terminal_phases_and_their_reasons() {
        let init = [exited("init", 0, true)];
        let done = [exited("a", 0, false), exited("b", 0, false)];
        assert_eq!(phase(&pod("Never"), &init, &done), "Succeeded");
        assert_eq!(phase(&pod("OnFailure"), &init, &done), "Succeeded");
        assert_eq!(phase(&pod("Always"), &init, &done), "Running", "Always restarts them");
        let cs = conditions(&pod("Never"), &init, &done, "Succeeded", true);
        assert_eq!((get(&cs, "Initialized").status, get(&cs, "Initialized").reason), (true, "PodCompleted"));
        assert_eq!((get(&cs, "Ready").status, get(&cs, "Ready").reason), (false, "PodCompleted"));
        assert_eq!(get(&cs, "ContainersReady").reason, "PodCompleted");
        let failed = [exited("a", 0, false), exited("b", 2, false)];
        assert_eq!(phase(&pod("Never"), &[], &failed), "Failed");
        assert_eq!(phase(&pod("OnFailure"), &[], &failed), "Running");
        let one_running = [running("a", true), exited("b", 0, false)];
        assert_eq!(phase(&pod("Never"), &[], &one_running), "Running");
        let restarting = [json!({"name": "a", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1}}})];
        assert_eq!(phase(&pod("Always"), &[], &restarting), "Running");
        assert_eq!(phase(&pod("Always"), &[], &[waiting("a", "ContainerCreating")]), "Pending");
    }

    #[test]
    fn an_app_container_that_ran_means_initialized() {
        // Init container statuses lost (their containers removed): the app container ran, so initialized.
        let init = [waiting("init", "PodInitializing")];
        let apps = [running("app", true)];
        assert!(get(&conditions(&pod("Always"), &init, &apps, "Running", true), "Initialized").status);
    }

    #[test]
    fn readiness_gates() {
        let mut p = pod("Always");
        p["spec"]["readinessGates"] = json!([{"conditionType": "example.com/lb"}, {"conditionType": "example.com/db"}]);
        p["status"] = json!({"conditions": [{"type": "example.com/db", "status": "False"}]});
        let apps = [running("app", true)];
        let cs = conditions(&p, &[], &apps, "Running", true);
        let ready = get(&cs, "Ready");
        assert_eq!((ready.status, ready.reason), (false, "ReadinessGatesNotReady"));
        assert_eq!(
            ready.message,
            "corresponding condition of pod readiness gate \"example.com/lb\" does not exist., the status of pod readiness gate \"example.com/db\" is not \"True\", but False"
        );
        assert!(get(&cs, "ContainersReady").status);
        p["status"]["conditions"] =
            json!([{"type": "example.com/db", "status": "True"}, {"type": "example.com/lb", "status": "True"}]);
        assert!(get(&conditions(&p, &[], &apps, "Running", true), "Ready").status);
    }
}
