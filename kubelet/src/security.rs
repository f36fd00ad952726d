//! What a container's resources and securityContext become in CRI: cgroup limits (CPU shares from requests, CFS
//! quota from limits, memory limit, OOM score by QoS class, as upstream's kuberuntime does) and the Linux security
//! context (user, group, supplemental groups with the pod's fsGroup, privileged, capabilities, read-only root,
//! no-new-privileges).

use proto::cri::{
    Capability, Int64Value, LinuxContainerResources, LinuxContainerSecurityContext, NamespaceMode, NamespaceOption,
    SupplementalGroupsPolicy,
};
use serde_json::Value;

use crate::node::{bytes, cpu_millis};

/// upstream's CFS period (100 ms) and minimum shares.
const CFS_PERIOD_US: i64 = 100_000;
const MIN_SHARES: i64 = 2;

fn quantity<'a>(c: &'a Value, kind: &str, name: &str) -> Option<&'a str> {
    c.pointer(&format!("/resources/{kind}/{name}")).and_then(Value::as_str)
}

/// The QoS class upstream gives the OOM score from: Guaranteed -997, BestEffort 1000, Burstable in between by the
/// share of memory requested (the runtime may clamp a lowered score; see ARCHITECTURE.md).
fn oom_score_adj(pod: &Value, c: &Value, memory_capacity: i64) -> i64 {
    match pod.pointer("/status/qosClass").and_then(Value::as_str) {
        Some("Guaranteed") => -997,
        Some("BestEffort") | None => 1000,
        Some(_) => {
            let request = quantity(c, "requests", "memory").and_then(bytes).unwrap_or(0);
            let score = 1000 - (1000 * request) / memory_capacity.max(1);
            score.clamp(2, 999)
        }
    }
}

pub fn resources(pod: &Value, c: &Value, memory_capacity: i64) -> LinuxContainerResources {
    let limit_cpu = quantity(c, "limits", "cpu").and_then(cpu_millis);
    // A request defaults to the limit.
    let request_cpu = quantity(c, "requests", "cpu").and_then(cpu_millis).or(limit_cpu);
    let shares = request_cpu.map(|m| (m * 1024 / 1000).max(MIN_SHARES)).unwrap_or(MIN_SHARES);
    let quota = limit_cpu.map(|m| (m * CFS_PERIOD_US / 1000).max(1000)).unwrap_or(0);
    LinuxContainerResources {
        cpu_period: if quota > 0 { CFS_PERIOD_US } else { 0 },
        cpu_quota: quota,
        cpu_shares: shares,
        memory_limit_in_bytes: quantity(c, "limits", "memory").and_then(bytes).unwrap_or(0),
        oom_score_adj: oom_score_adj(pod, c, memory_capacity),
        ..Default::default()
    }
}

/// The container's security context with the pod's as defaults.
pub fn security_context(pod: &Value, c: &Value) -> LinuxContainerSecurityContext {
    let pod_sc = pod.pointer("/spec/securityContext").cloned().unwrap_or(Value::Null);
    let sc = c.get("securityContext").cloned().unwrap_or(Value::Null);
    let pick =
        |field: &str| sc.get(field).filter(|v| !v.is_null()).or_else(|| pod_sc.get(field).filter(|v| !v.is_null()));
    let strs = |p: &str| -> Vec<String> {
        sc.pointer(p)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    };
    let privileged = sc.get("privileged").and_then(Value::as_bool).unwrap_or(false);
    LinuxContainerSecurityContext {
        capabilities: Some(Capability {
            // As upstream's kubelet: the names as the pod spells them (`NET_BIND_SERVICE`); the runtime adds `CAP_`.
            add_capabilities: strs("/capabilities/add"),
            drop_capabilities: strs("/capabilities/drop"),
            add_ambient_capabilities: vec![],
        }),
        privileged,
        run_as_user: pick("runAsUser").and_then(Value::as_i64).map(|value| Int64Value { value }),
        run_as_group: pick("runAsGroup").and_then(Value::as_i64).map(|value| Int64Value { value }),
        readonly_rootfs: sc.get("readOnlyRootFilesystem").and_then(Value::as_bool).unwrap_or(false),
        supplemental_groups: supplemental_groups(pod),
        supplemental_groups_policy: supplemental_groups_policy(pod) as i32,
        no_new_privs: sc.get("allowPrivilegeEscalation").and_then(Value::as_bool) == Some(false),
        namespace_options: Some(namespaces(pod)),
        // A privileged container gets the whole view; others get upstream's masked and read-only /proc paths from
        // the runtime's defaults.
        ..Default::default()
    }
}

/// The supplemental groups of the pod's processes, as upstream's kuberuntime gives them: the pod's `fsGroup`
/// first, then its `supplementalGroups`.
pub fn supplemental_groups(pod: &Value) -> Vec<i64> {
    let sc = pod.pointer("/spec/securityContext");
    let fs_group = sc.and_then(|sc| sc.get("fsGroup")).and_then(Value::as_i64);
    let groups = sc.and_then(|sc| sc.get("supplementalGroups")).and_then(Value::as_array);
    fs_group.into_iter().chain(groups.into_iter().flatten().filter_map(Value::as_i64)).collect()
}

/// `supplementalGroupsPolicy`: `Merge` (the default: the image's groups of the user are kept) or `Strict`.
pub fn supplemental_groups_policy(pod: &Value) -> SupplementalGroupsPolicy {
    match pod.pointer("/spec/securityContext/supplementalGroupsPolicy").and_then(Value::as_str) {
        Some("Strict") => SupplementalGroupsPolicy::Strict,
        _ => SupplementalGroupsPolicy::Merge,
    }
}

/// Upstream's `namespacesForPod`: the network, PID and IPC namespaces of the sandbox and of every container. Each
/// container has its own PID namespace unless `shareProcessNamespace` (the pod's) or `hostPID` (the node's); the
/// network and IPC namespaces are the pod's unless `hostNetwork` / `hostIPC`.
pub fn namespaces(pod: &Value) -> NamespaceOption {
    let flag = |f: &str| pod.pointer(&format!("/spec/{f}")).and_then(Value::as_bool).unwrap_or(false);
    let node_or_pod = |host: bool| if host { NamespaceMode::Node } else { NamespaceMode::Pod } as i32;
    let pid = if flag("hostPID") {
        NamespaceMode::Node
    } else if flag("shareProcessNamespace") {
        NamespaceMode::Pod
    } else {
        NamespaceMode::Container
    };
    NamespaceOption {
        network: node_or_pod(flag("hostNetwork")),
        pid: pid as i32,
        ipc: node_or_pod(flag("hostIPC")),
        ..Default::default()
    }
}

/// Whether any container asks to be privileged (the sandbox must be privileged then).
pub fn any_privileged(pod: &Value) -> bool {
    ["/spec/initContainers", "/spec/containers"].iter().any(|p| {
        pod.pointer(p).and_then(Value::as_array).is_some_and(|cs| {
            cs.iter().any(|c| c.pointer("/securityContext/privileged").and_then(Value::as_bool) == Some(true))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn namespaces_as_upstream() {
        let ns = |spec: Value| namespaces(&json!({"spec": spec}));
        let own = ns(json!({}));
        assert_eq!(
            (own.network, own.pid, own.ipc),
            (NamespaceMode::Pod as i32, NamespaceMode::Container as i32, NamespaceMode::Pod as i32)
        );
        assert_eq!(ns(json!({"shareProcessNamespace": true})).pid, NamespaceMode::Pod as i32);
        let host = ns(json!({"hostNetwork": true, "hostPID": true, "hostIPC": true}));
        assert_eq!(
            (host.network, host.pid, host.ipc),
            (NamespaceMode::Node as i32, NamespaceMode::Node as i32, NamespaceMode::Node as i32)
        );
        let c = security_context(&json!({"spec": {}}), &json!({}));
        assert_eq!(
            c.namespace_options.unwrap().pid,
            NamespaceMode::Container as i32,
            "a container's own PID namespace"
        );
    }

    #[test]
    fn cgroup_limits_as_upstream() {
        let pod = json!({"status": {"qosClass": "Burstable"}});
        let c = json!({"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}});
        let r = resources(&pod, &c, 1 << 30);
        assert_eq!((r.cpu_shares, r.cpu_quota, r.cpu_period), (256, 50_000, 100_000));
        assert_eq!(r.memory_limit_in_bytes, 128 << 20);
        assert_eq!(r.oom_score_adj, 1000 - 1000 * (64 << 20) / (1 << 30));
        let best = resources(&json!({"status": {"qosClass": "BestEffort"}}), &json!({}), 1 << 30);
        assert_eq!((best.cpu_shares, best.cpu_quota, best.memory_limit_in_bytes, best.oom_score_adj), (2, 0, 0, 1000));
        let guaranteed = resources(
            &json!({"status": {"qosClass": "Guaranteed"}}),
            &json!({"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}),
            1 << 30,
        );
        assert_eq!((guaranteed.cpu_shares, guaranteed.oom_score_adj), (1024, -997));
    }

    #[test]
    fn security_context_merges_pod_defaults() {
        let pod =
            json!({"spec": {"securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4000]}}});
        let c = json!({"securityContext": {"runAsUser": 1234, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false, "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}});
        let sc = security_context(&pod, &c);
        assert_eq!(sc.run_as_user.unwrap().value, 1234);
        assert_eq!(sc.run_as_group.unwrap().value, 3000);
        assert_eq!(sc.supplemental_groups, vec![4000]);
        assert!(sc.readonly_rootfs && sc.no_new_privs && !sc.privileged);
        let caps = sc.capabilities.unwrap();
        assert_eq!(
            (caps.add_capabilities, caps.drop_capabilities),
            (vec!["NET_ADMIN".to_string()], vec!["ALL".to_string()])
        );
        assert!(!any_privileged(&pod));
        assert!(any_privileged(&json!({"spec": {"containers": [{"securityContext": {"privileged": true}}]}})));
        assert_eq!(sc.supplemental_groups_policy, SupplementalGroupsPolicy::Merge as i32);
        // The fsGroup joins the supplemental groups, first (upstream's determineEffectiveSecurityContext).
        let with_fs_group = json!({"spec": {"securityContext": {"fsGroup": 123, "supplementalGroups": [4000, 5000],
            "supplementalGroupsPolicy": "Strict"}}});
        let sc = security_context(&with_fs_group, &json!({}));
        assert_eq!(sc.supplemental_groups, vec![123, 4000, 5000]);
        assert_eq!(sc.supplemental_groups_policy, SupplementalGroupsPolicy::Strict as i32);
        assert_eq!(supplemental_groups(&json!({"spec": {"securityContext": {"fsGroup": 7}}})), vec![7]);
    }
}
