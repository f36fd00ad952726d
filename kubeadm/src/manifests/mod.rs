//! Static pod manifests for the control plane (upstream's `phases/controlplane/manifests.go`,
//! `phases/etcd/local.go` and `util/staticpod`): the pod skeleton, probes, hostPath volumes and the
//! `--flag=value` command line built from defaults and `extraArgs`.

pub mod controlplane;
pub mod etcd;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::config::{Arg, EnvVar, HostPathMount};
use crate::constants as k;

/// Upstream's `ArgumentsToCommand`: defaults overridden by name by `extra` (every default with a name the
/// extra args use is dropped; extra args may repeat a name), sorted by name, as `--name=value`.
pub fn arguments_to_command(command: &str, defaults: &[(String, String)], extra: &[Arg]) -> Vec<String> {
    let mut all: Vec<(String, String)> =
        defaults.iter().filter(|(n, _)| !extra.iter().any(|a| &a.name == n)).cloned().collect();
    all.extend(extra.iter().map(|a| (a.name.clone(), a.value.clone())));
    all.sort_by(|a, b| a.0.cmp(&b.0));
    std::iter::once(command.to_string()).chain(all.into_iter().map(|(n, v)| format!("--{n}={v}"))).collect()
}

/// A hostPath volume and its mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub name: String,
    pub host_path: String,
    pub mount_path: String,
    pub read_only: bool,
    pub path_type: String,
}

impl Mount {
    pub fn new(name: &str, path: &str, read_only: bool, path_type: &str) -> Self {
        Mount {
            name: name.into(),
            host_path: path.into(),
            mount_path: path.into(),
            read_only,
            path_type: path_type.into(),
        }
    }
}

impl From<&HostPathMount> for Mount {
    fn from(m: &HostPathMount) -> Self {
        Mount {
            name: m.name.clone(),
            host_path: m.host_path.clone(),
            mount_path: m.mount_path.clone(),
            read_only: m.read_only,
            path_type: m.path_type.clone(),
        }
    }
}

/// Volumes and mounts keyed by name (sorted, as upstream's `VolumeMapToSlice`); later entries replace earlier ones.
pub fn volumes(mounts: &[Mount]) -> (Value, Value) {
    let by_name: BTreeMap<&str, &Mount> = mounts.iter().map(|m| (m.name.as_str(), m)).collect();
    let vols: Vec<Value> = by_name
        .values()
        .map(|m| {
            let mut hp = json!({"path": m.host_path});
            if !m.path_type.is_empty() {
                hp["type"] = json!(m.path_type);
            }
            json!({"name": m.name, "hostPath": hp})
        })
        .collect();
    let mounts: Vec<Value> = by_name
        .values()
        .map(|m| {
            let mut v = json!({"name": m.name, "mountPath": m.mount_path});
            if m.read_only {
                v["readOnly"] = json!(true);
            }
            v
        })
        .collect();
    (Value::Array(vols), Value::Array(mounts))
}

/// An HTTP(S) probe as upstream's `staticpodutil` builds them (its timing parameters are positional there too).
#[allow(clippy::too_many_arguments)]
pub fn probe(
    host: &str,
    path: &str,
    port: u16,
    scheme: &str,
    initial_delay: u32,
    timeout: u32,
    failure: u32,
    period: u32,
) -> Value {
    let mut v = json!({
        "httpGet": {"host": host, "path": path, "port": port, "scheme": scheme},
        "timeoutSeconds": timeout,
        "failureThreshold": failure,
        "periodSeconds": period,
    });
    if initial_delay > 0 {
        v["initialDelaySeconds"] = json!(initial_delay);
    }
    v
}

pub fn liveness(host: &str, path: &str, port: u16, scheme: &str) -> Value {
    probe(host, path, port, scheme, 10, 15, 8, 10)
}

pub fn readiness(host: &str, path: &str, port: u16, scheme: &str) -> Value {
    probe(host, path, port, scheme, 0, 15, 3, 1)
}

/// The startup probe gives the component `timeout` (ControlPlaneComponentHealthCheck, 4m) to come up.
pub fn startup(host: &str, path: &str, port: u16, scheme: &str, timeout_secs: u64) -> Value {
    probe(host, path, port, scheme, 10, 15, (timeout_secs / 10).max(1) as u32, 10)
}

/// The pod around one control-plane container (upstream's `ComponentPod`).
pub fn component_pod(name: &str, container: Value, mounts: &[Mount], annotations: Option<Value>) -> Value {
    let (vols, vmounts) = volumes(mounts);
    let mut container = container;
    container["name"] = json!(name);
    container["volumeMounts"] = vmounts;
    let mut meta = json!({
        "name": name,
        "namespace": k::KUBE_SYSTEM,
        "labels": {"component": name, "tier": "control-plane"},
    });
    if let Some(a) = annotations {
        meta["annotations"] = a;
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "containers": [container],
            "hostNetwork": true,
            "priority": 2000001000,
            "priorityClassName": "system-node-critical",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": vols,
        },
        "status": {},
    })
}

/// `env` entries of a container.
pub fn env(envs: &[EnvVar]) -> Option<Value> {
    (!envs.is_empty()).then(|| Value::Array(envs.iter().map(|e| json!({"name": e.name, "value": e.value})).collect()))
}

/// Where a component's manifest goes.
pub fn manifest_path(component: &str) -> PathBuf {
    PathBuf::from(k::KUBERNETES_DIR).join(k::MANIFESTS_SUBDIR).join(format!("{component}.yaml"))
}

/// A pod as YAML (keys sorted, as upstream writes them).
pub fn to_yaml(pod: &Value) -> String {
    crate::config::marshal(pod)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_args_override_defaults_by_name_and_may_repeat() {
        let defaults = vec![("b".to_string(), "1".to_string()), ("a".into(), "2".into())];
        let extra = vec![
            Arg { name: "b".into(), value: "x".into() },
            Arg { name: "b".into(), value: "y".into() },
            Arg { name: "c".into(), value: "3".into() },
        ];
        assert_eq!(arguments_to_command("cmd", &defaults, &extra), vec!["cmd", "--a=2", "--b=x", "--b=y", "--c=3"]);
    }
}
