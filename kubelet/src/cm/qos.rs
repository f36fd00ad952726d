//! Pod-level resources as upstream's `ResourceConfigForPod` (helpers_linux.go): a pod's cgroup gets CPU shares
//! from its requests, a CFS quota when every container limits CPU, a memory limit when every container limits
//! memory, by QoS class; and where each QoS class's pods live (`kubepods/pod<uid>` for Guaranteed,
//! `kubepods/burstable/...`, `kubepods/besteffort/...`).

use serde_json::Value;

use super::cgroup::{MIN_SHARES, QUOTA_PERIOD_US, ResourceConfig, milli_cpu_to_quota, milli_cpu_to_shares};
use crate::node::{bytes, cpu_millis};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// The pod's class as the apiserver recorded it in `status.qosClass` (computed here when absent, as
    /// upstream's `GetPodQOS` for static pods the apiserver has not seen).
    pub fn of(pod: &Value) -> Self {
        match pod.pointer("/status/qosClass").and_then(Value::as_str) {
            Some("Guaranteed") => QosClass::Guaranteed,
            Some("Burstable") => QosClass::Burstable,
            Some("BestEffort") => QosClass::BestEffort,
            _ => compute(pod),
        }
    }

    /// The QoS cgroup's component under `kubepods` (none for Guaranteed pods).
    pub fn component(self) -> Option<&'static str> {
        match self {
            QosClass::Guaranteed => None,
            QosClass::Burstable => Some("burstable"),
            QosClass::BestEffort => Some("besteffort"),
        }
    }
}

fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    ["/spec/initContainers", "/spec/containers"]
        .into_iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
}

/// Upstream's `GetPodQOS`: requests and limits of cpu and memory over every container.
fn compute(pod: &Value) -> QosClass {
    let mut any = false;
    let mut guaranteed = true;
    for c in containers(pod) {
        for name in ["cpu", "memory"] {
            let request = c.pointer(&format!("/resources/requests/{name}")).and_then(Value::as_str);
            let limit = c.pointer(&format!("/resources/limits/{name}")).and_then(Value::as_str);
            let nonzero = |q: Option<&str>| q.and_then(api_types::quantity::parse).is_some_and(|v| v > 0.0);
            any |= nonzero(request) || nonzero(limit);
            // A request defaults to the limit; Guaranteed needs both limits, equal to the requests.
            match (request, limit) {
                (_, None) => guaranteed = false,
                (Some(r), Some(l)) if api_types::quantity::parse(r) != api_types::quantity::parse(l) => {
                    guaranteed = false
                }
                _ => {}
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => QosClass::BestEffort,
        (true, true) => QosClass::Guaranteed,
        (true, false) => QosClass::Burstable,
    }
}

/// A pod's cpu (millicores) or memory (bytes) request or limit as upstream's `PodRequests`/`PodLimits`: the sum over
/// the app containers and restartable (sidecar) init containers, or the largest regular init container's with the
/// sidecars started before it if that is more, plus the pod overhead. The second value says whether every
/// container declared it (for limits: whether the pod's cgroup gets one).
pub fn pod_total(pod: &Value, kind: &str, resource: &str) -> (i64, bool) {
    let parse = |c: &Value| -> Option<i64> {
        let q = c.pointer(&format!("/resources/{kind}/{resource}")).and_then(Value::as_str).or_else(|| {
            // A request defaults to the limit.
            (kind == "requests").then(|| c.pointer(&format!("/resources/limits/{resource}"))?.as_str()).flatten()
        })?;
        if resource == "cpu" { cpu_millis(q) } else { bytes(q) }
    };
    let mut declared = true;
    let mut apps = 0;
    for c in pod.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten() {
        match parse(c).filter(|v| *v > 0) {
            Some(v) => apps += v,
            None => declared = false,
        }
    }
    let (mut sidecars, mut init_max) = (0, 0);
    for c in pod.pointer("/spec/initContainers").and_then(Value::as_array).into_iter().flatten() {
        let v = parse(c).filter(|v| *v > 0);
        declared &= v.is_some();
        let v = v.unwrap_or(0);
        if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            sidecars += v;
            init_max = init_max.max(sidecars);
        } else {
            init_max = init_max.max(sidecars + v);
        }
    }
    let overhead = pod
        .pointer(&format!("/spec/overhead/{resource}"))
        .and_then(Value::as_str)
        .and_then(|q| if resource == "cpu" { cpu_millis(q) } else { bytes(q) })
        .unwrap_or(0);
    ((apps + sidecars).max(init_max) + overhead, declared)
}

/// Upstream's `ResourceConfigForPod` (CFS quota enforced, the default `cpuCFSQuota: true`).
pub fn resource_config_for_pod(pod: &Value, pod_pids_limit: i64) -> ResourceConfig {
    let (cpu_requests, _) = pod_total(pod, "requests", "cpu");
    let (cpu_limits, cpu_declared) = pod_total(pod, "limits", "cpu");
    let (memory_limits, memory_declared) = pod_total(pod, "limits", "memory");
    let shares = milli_cpu_to_shares(cpu_requests);
    let quota = milli_cpu_to_quota(cpu_limits, QUOTA_PERIOD_US);
    let mut rc = ResourceConfig::default();
    match QosClass::of(pod) {
        QosClass::Guaranteed => {
            rc.cpu_shares = Some(shares);
            rc.cpu_quota = Some(quota);
            rc.cpu_period = Some(QUOTA_PERIOD_US);
            rc.memory = Some(memory_limits);
        }
        QosClass::Burstable => {
            rc.cpu_shares = Some(shares);
            if cpu_declared {
                rc.cpu_quota = Some(quota);
                rc.cpu_period = Some(QUOTA_PERIOD_US);
            }
            if memory_declared {
                rc.memory = Some(memory_limits);
            }
        }
        QosClass::BestEffort => rc.cpu_shares = Some(MIN_SHARES),
    }
    // A quota of 0 (no cpu limit) means none, as libcontainer treats it.
    if rc.cpu_quota == Some(0) {
        rc.cpu_quota = Some(-1);
    }
    if pod_pids_limit > 0 {
        rc.pids_limit = Some(pod_pids_limit);
    }
    rc
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(qos: &str, containers: Value) -> Value {
        json!({"spec": {"containers": containers}, "status": {"qosClass": qos}})
    }

    #[test]
    fn guaranteed_pods_get_every_limit() {
        let p = pod(
            "Guaranteed",
            json!([{"name": "a", "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}},
                   {"name": "b", "resources": {"limits": {"cpu": "1", "memory": "64Mi"}}}]),
        );
        let rc = resource_config_for_pod(&p, -1);
        assert_eq!(rc.cpu_shares, Some(1536));
        assert_eq!(rc.cpu_quota, Some(150_000));
        assert_eq!(rc.cpu_period, Some(100_000));
        assert_eq!(rc.memory, Some(192 << 20));
        assert_eq!(rc.pids_limit, None);
    }

    #[test]
    fn burstable_pods_get_limits_only_when_every_container_has_them() {
        // helpers_linux_test.go TestResourceConfigForPod: burstable-partial-limits.
        let p = pod(
            "Burstable",
            json!([{"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "100Mi"},
                                               "limits": {"cpu": "200m", "memory": "200Mi"}}},
                   {"name": "b", "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}}]),
        );
        let rc = resource_config_for_pod(&p, 1024);
        assert_eq!(rc.cpu_shares, Some(204));
        assert_eq!((rc.cpu_quota, rc.cpu_period, rc.memory), (None, None, None));
        assert_eq!(rc.pids_limit, Some(1024));
        // burstable-with-limits.
        let p = pod(
            "Burstable",
            json!([{"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "100Mi"},
                                               "limits": {"cpu": "200m", "memory": "200Mi"}}},
                   {"name": "b", "resources": {"requests": {"cpu": "100m", "memory": "100Mi"},
                                               "limits": {"cpu": "200m", "memory": "200Mi"}}}]),
        );
        let rc = resource_config_for_pod(&p, -1);
        assert_eq!((rc.cpu_shares, rc.cpu_quota, rc.memory), (Some(204), Some(40_000), Some(400 << 20)));
    }

    #[test]
    fn best_effort_pods_get_minimum_shares() {
        let rc = resource_config_for_pod(&pod("BestEffort", json!([{"name": "a"}])), -1);
        assert_eq!(rc, ResourceConfig { cpu_shares: Some(2), ..Default::default() });
    }

    #[test]
    fn init_containers_and_overhead_count_as_upstream() {
        let p = json!({"spec": {
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}},
                               {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}}],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m"}}}],
            "overhead": {"cpu": "250m"}}});
        // max(app 500m + sidecar 100m, init 2000m) + overhead 250m.
        assert_eq!(pod_total(&p, "requests", "cpu").0, 2250);
        assert_eq!(QosClass::of(&p), QosClass::Burstable);
    }

    #[test]
    fn qos_computed_without_status() {
        let g = json!({"spec": {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        assert_eq!(QosClass::of(&g), QosClass::Guaranteed);
        let b = json!({"spec": {"containers": [{"resources": {"limits": {"cpu": "1"}}}]}});
        assert_eq!(QosClass::of(&b), QosClass::Burstable);
        let e = json!({"spec": {"containers": [{"name": "x"}]}});
        assert_eq!(QosClass::of(&e), QosClass::BestEffort);
        assert_eq!(QosClass::Guaranteed.component(), None);
    }
}
