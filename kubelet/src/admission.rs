//! Kubelet admission (upstream's predicateAdmitHandler with GeneralPredicates): before a new pod runs, it must fit
//! the node next to the pods already admitted there: the `kubernetes.io/os` label and `spec.os`, enough
//! allocatable pods, cpu, memory and ephemeral storage (`OutOfpods`, `OutOfcpu`, `OutOfmemory`,
//! `OutOfephemeral-storage`), `supplementalGroupsPolicy: Strict` only where the runtime enforces it
//! (`SupplementalGroupsPolicyNotSupported`), node selector and required node affinity (`NodeAffinity`), the node name
//! (`NodeName`), free host ports (`NodePorts`) and no untolerated NoExecute taint (`TaintToleration`, not for
//! static pods). A pod that does not fit fails with that reason and "Pod was rejected: <message>".

use std::sync::Arc;

use serde_json::Value;

use runtime::array;

/// Why a pod was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    pub message: String,
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

/// A pod's requests: the sum over its containers, or the largest init container when larger, plus overhead
/// (upstream's PodRequests). Cpu in millicores, the rest in bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Requests {
    pub cpu: i64,
    pub memory: i64,
    pub storage: i64,
}

fn container_requests(c: &Value) -> Requests {
    let get = |name: &str| c.pointer(&format!("/resources/requests/{name}")).and_then(Value::as_str);
    Requests {
        cpu: get("cpu").and_then(api_types::quantity::milli).unwrap_or(0),
        memory: get("memory").and_then(api_types::quantity::value).unwrap_or(0),
        storage: get("ephemeral-storage").and_then(api_types::quantity::value).unwrap_or(0),
    }
}

pub fn pod_requests(pod: &Value) -> Requests {
    let mut sum = Requests::default();
    for c in array(pod, "/spec/containers") {
        let r = container_requests(c);
        sum.cpu += r.cpu;
        sum.memory += r.memory;
        sum.storage += r.storage;
    }
    for c in array(pod, "/spec/initContainers") {
        let r = container_requests(c);
        sum.cpu = sum.cpu.max(r.cpu);
        sum.memory = sum.memory.max(r.memory);
        sum.storage = sum.storage.max(r.storage);
    }
    let overhead = pod.pointer("/spec/overhead").cloned().unwrap_or(Value::Null);
    let o = container_requests(&serde_json::json!({"resources": {"requests": overhead}}));
    Requests { cpu: sum.cpu + o.cpu, memory: sum.memory + o.memory, storage: sum.storage + o.storage }
}

/// Whether a node selector requirement (`matchExpressions`) holds for `get(key)`.
fn requirement_holds(req: &Value, get: impl Fn(&str) -> Option<String>) -> bool {
    let value = get(s(req, "/key"));
    let values: Vec<&str> = array(req, "/values").iter().filter_map(Value::as_str).collect();
    let number = |v: &Option<String>| v.as_deref().and_then(|v| v.parse::<i64>().ok());
    let bound = values.first().and_then(|v| v.parse::<i64>().ok());
    match s(req, "/operator") {
        "In" => value.as_deref().is_some_and(|v| values.contains(&v)),
        "NotIn" => !value.as_deref().is_some_and(|v| values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => matches!((number(&value), bound), (Some(a), Some(b)) if a > b),
        "Lt" => matches!((number(&value), bound), (Some(a), Some(b)) if a < b),
        _ => false,
    }
}

/// The pod's node selector and required node affinity against the node (upstream's GetRequiredNodeAffinity).
pub fn node_affinity_matches(pod: &Value, node: &Value) -> bool {
    let labels = node.pointer("/metadata/labels");
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str).map(String::from);
    let selector_ok = pod
        .pointer("/spec/nodeSelector")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k).as_deref() == v.as_str());
    let Some(terms) =
        pod.pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
    else {
        return selector_ok;
    };
    let name = s(node, "/metadata/name").to_string();
    let field = |k: &str| (k == "metadata.name").then(|| name.clone());
    // The terms are ORed; an empty term matches nothing; expressions and fields of a term are ANDed.
    let term_ok = |t: &Value| {
        let exprs = array(t, "/matchExpressions");
        let fields = array(t, "/matchFields");
        (!exprs.is_empty() || !fields.is_empty())
            && exprs.iter().all(|r| requirement_holds(r, label))
            && fields.iter().all(|r| requirement_holds(r, field))
    };
    selector_ok && terms.as_array().is_some_and(|ts| ts.iter().any(term_ok))
}

/// Whether a toleration tolerates a taint (upstream's ToleratesTaint).
fn tolerates(t: &Value, taint: &Value) -> bool {
    let effect = s(t, "/effect");
    if !effect.is_empty() && effect != s(taint, "/effect") {
        return false;
    }
    let key = s(t, "/key");
    if !key.is_empty() && key != s(taint, "/key") {
        return false;
    }
    match s(t, "/operator") {
        "Exists" => true,
        "" | "Equal" => s(t, "/value") == s(taint, "/value"),
        _ => false,
    }
}

/// The host ports a pod takes: (protocol, host IP, port) of its containers and restartable init containers.
fn host_ports(pod: &Value) -> Vec<(String, String, i64)> {
    let sidecars = array(pod, "/spec/initContainers").iter().filter(|c| s(c, "/restartPolicy") == "Always");
    array(pod, "/spec/containers")
        .iter()
        .chain(sidecars)
        .flat_map(|c| array(c, "/ports"))
        .filter_map(|p| {
            let port = p.get("hostPort").and_then(Value::as_i64).filter(|p| *p > 0)?;
            let protocol = match s(p, "/protocol") {
                "" => "TCP",
                x => x,
            };
            let ip = match s(p, "/hostIP") {
                "" => "0.0.0.0",
                x => x,
            };
            Some((protocol.to_string(), ip.to_string(), port))
        })
        .collect()
}

fn ports_conflict(a: &(String, String, i64), b: &(String, String, i64)) -> bool {
    a.0 == b.0 && a.2 == b.2 && (a.1 == b.1 || a.1 == "0.0.0.0" || b.1 == "0.0.0.0")
}

fn predicate(name: &str, desc: &str) -> Rejection {
    Rejection { reason: name.into(), message: format!("Predicate {name} failed: {desc}") }
}

/// Whether `pod` may run on `node` next to `others` (the pods admitted there and not finished).
pub fn admit(pod: &Value, node: &Value, others: &[Arc<Value>], is_static: bool) -> Result<(), Rejection> {
    let node_os = node.pointer("/metadata/labels/kubernetes.io~1os").and_then(Value::as_str).unwrap_or("linux");
    if let Some(os) = pod.pointer("/metadata/labels/kubernetes.io~1os").and_then(Value::as_str)
        && os != node_os
    {
        return Err(Rejection {
            reason: "PodOSSelectorNodeLabelDoesNotMatch".into(),
            message: "Failed to admit pod as the `kubernetes.io/os` label doesn't match node label".into(),
        });
    }
    if pod.pointer("/spec/os/name").and_then(Value::as_str).is_some_and(|os| os != "linux") {
        return Err(Rejection {
            reason: "PodOSNotSupported".into(),
            message: "Failed to admit pod as the OS field doesn't match node OS".into(),
        });
    }
    // supplementalGroupsPolicy Strict needs a runtime that enforces it (the Node's status.features).
    if pod.pointer("/spec/securityContext/supplementalGroupsPolicy").and_then(Value::as_str) == Some("Strict")
        && node.pointer("/status/features/supplementalGroupsPolicy").and_then(Value::as_bool) != Some(true)
    {
        return Err(Rejection {
            reason: "SupplementalGroupsPolicyNotSupported".into(),
            message: "SupplementalGroupsPolicy=Strict is not supported in this node".into(),
        });
    }
    // Resources (noderesources.Fits): pods, then cpu, memory and ephemeral storage the pod asks for.
    let allocatable = |name: &str, parse: fn(&str) -> Option<i64>| {
        node.pointer(&format!("/status/allocatable/{name}")).and_then(Value::as_str).and_then(parse).unwrap_or(0)
    };
    let max_pods = allocatable("pods", api_types::quantity::value);
    if others.len() as i64 + 1 > max_pods {
        return Err(insufficient("pods", 1, others.len() as i64, max_pods));
    }
    let want = pod_requests(pod);
    let used = others.iter().map(|p| pod_requests(p)).fold(Requests::default(), |a, r| Requests {
        cpu: a.cpu + r.cpu,
        memory: a.memory + r.memory,
        storage: a.storage + r.storage,
    });
    for (name, wanted, in_use, parse) in [
        ("cpu", want.cpu, used.cpu, api_types::quantity::milli as fn(&str) -> Option<i64>),
        ("memory", want.memory, used.memory, api_types::quantity::value),
        ("ephemeral-storage", want.storage, used.storage, api_types::quantity::value),
    ] {
        let capacity = allocatable(name, parse);
        if wanted > 0 && wanted > capacity - in_use {
            return Err(insufficient(name, wanted, in_use, capacity));
        }
    }
    if !node_affinity_matches(pod, node) {
        return Err(predicate("NodeAffinity", "node(s) didn't match Pod's node affinity/selector"));
    }
    let node_name = s(pod, "/spec/nodeName");
    if !node_name.is_empty() && node_name != s(node, "/metadata/name") {
        return Err(predicate("NodeName", "node(s) didn't match the requested node name"));
    }
    let taken: Vec<_> = others.iter().flat_map(|p| host_ports(p)).collect();
    if host_ports(pod).iter().any(|p| taken.iter().any(|t| ports_conflict(p, t))) {
        return Err(predicate("NodePorts", "node(s) didn't have free ports for the requested pod ports"));
    }
    if !is_static {
        let tolerations = array(pod, "/spec/tolerations");
        let untolerated = array(node, "/spec/taints")
            .iter()
            .filter(|t| s(t, "/effect") == "NoExecute")
            .any(|taint| !tolerations.iter().any(|t| tolerates(t, taint)));
        if untolerated {
            return Err(predicate("TaintToleration", "node(s) had untolerated taint"));
        }
    }
    Ok(())
}

fn insufficient(resource: &str, requested: i64, used: i64, capacity: i64) -> Rejection {
    Rejection {
        reason: format!("OutOf{resource}"),
        message: format!(
            "Node didn't have enough resource: {resource}, requested: {requested}, used: {used}, capacity: {capacity}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> Value {
        json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/os": "linux", "zone": "a", "rack": "7"}},
            "spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "10Gi", "pods": "3"}}})
    }

    fn pod(spec: Value) -> Value {
        let mut p = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "containers": [{"name": "c"}]}});
        if let (Some(base), Some(extra)) = (p["spec"].as_object_mut(), spec.as_object()) {
            base.extend(extra.clone());
        }
        p
    }

    fn requesting(cpu: &str, memory: &str) -> Value {
        pod(json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}))
    }

    fn reason(r: Result<(), Rejection>) -> String {
        r.err().map(|r| r.reason).unwrap_or_default()
    }

    /// Upstream 1.33's rejectPodAdmissionBasedOnSupplementalGroupsPolicy: Strict needs the Node's
    /// `status.features.supplementalGroupsPolicy`; Merge (or none) runs anywhere.
    #[test]
    fn strict_supplemental_groups_need_the_runtime_feature() {
        let strict = pod(json!({"securityContext": {"supplementalGroupsPolicy": "Strict"}}));
        let merge = pod(json!({"securityContext": {"supplementalGroupsPolicy": "Merge"}}));
        assert_eq!(
            admit(&strict, &node(), &[], false),
            Err(Rejection {
                reason: "SupplementalGroupsPolicyNotSupported".into(),
                message: "SupplementalGroupsPolicy=Strict is not supported in this node".into()
            })
        );
        assert_eq!(admit(&merge, &node(), &[], false), Ok(()));
        let mut supporting = node();
        supporting["status"]["features"] = json!({"supplementalGroupsPolicy": true});
        assert_eq!(admit(&strict, &supporting, &[], false), Ok(()));
    }

    #[test]
    fn resources_with_upstreams_reasons_and_messages() {
        let others: Vec<Arc<Value>> = vec![Arc::new(requesting("1500m", "1Gi"))];
        assert_eq!(admit(&requesting("500m", "1Gi"), &node(), &others, false), Ok(()));
        assert_eq!(
            admit(&requesting("600m", "1Gi"), &node(), &others, false),
            Err(Rejection {
                reason: "OutOfcpu".into(),
                message: "Node didn't have enough resource: cpu, requested: 600, used: 1500, capacity: 2000".into()
            })
        );
        let r = admit(&requesting("100m", "4Gi"), &node(), &others, false).unwrap_err();
        assert_eq!(r.reason, "OutOfmemory");
        assert_eq!(
            r.message,
            "Node didn't have enough resource: memory, requested: 4294967296, used: 1073741824, capacity: 4294967296"
        );
        let storage =
            pod(json!({"containers": [{"name": "c", "resources": {"requests": {"ephemeral-storage": "11Gi"}}}]}));
        assert_eq!(reason(admit(&storage, &node(), &[], false)), "OutOfephemeral-storage");
        let three: Vec<Arc<Value>> = (0..3).map(|_| Arc::new(pod(json!({})))).collect();
        let r = admit(&pod(json!({})), &node(), &three, false).unwrap_err();
        assert_eq!(
            r,
            Rejection {
                reason: "OutOfpods".into(),
                message: "Node didn't have enough resource: pods, requested: 1, used: 3, capacity: 3".into()
            }
        );
        // Best-effort pods ask for nothing and fit anywhere pods fit.
        assert_eq!(admit(&pod(json!({})), &node(), &others, false), Ok(()));
    }

    #[test]
    fn init_containers_and_overhead_count_as_upstream() {
        let p = pod(json!({
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "3"}}}],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
                           {"name": "b", "resources": {"requests": {"cpu": "500m"}}}],
            "overhead": {"cpu": "100m", "memory": "10Mi"}}));
        assert_eq!(pod_requests(&p), Requests { cpu: 3100, memory: (1 << 30) + (10 << 20), storage: 0 });
        assert_eq!(reason(admit(&p, &node(), &[], false)), "OutOfcpu");
    }

    #[test]
    fn affinity_name_ports_and_taints() {
        let n = node();
        assert_eq!(admit(&pod(json!({"nodeSelector": {"zone": "a"}})), &n, &[], false), Ok(()));
        let r = admit(&pod(json!({"nodeSelector": {"zone": "b"}})), &n, &[], false).unwrap_err();
        assert_eq!(
            r,
            Rejection {
                reason: "NodeAffinity".into(),
                message: "Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector".into()
            }
        );
        let affinity = |terms: Value| {
            pod(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}),
            )
        };
        let ok = affinity(json!([
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
            {"matchExpressions": [{"key": "rack", "operator": "Gt", "values": ["5"]}, {"key": "gpu", "operator": "DoesNotExist"}]}]));
        assert_eq!(admit(&ok, &n, &[], false), Ok(()));
        let by_name =
            affinity(json!([{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}]));
        assert_eq!(reason(admit(&by_name, &n, &[], false)), "NodeAffinity");
        assert_eq!(
            reason(admit(&affinity(json!([{}])), &n, &[], false)),
            "NodeAffinity",
            "an empty term matches nothing"
        );
        let elsewhere = pod(json!({"nodeName": "n2"}));
        assert_eq!(reason(admit(&elsewhere, &n, &[], false)), "NodeName");

        let port = |ip: &str, proto: &str| {
            pod(
                json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080, "hostIP": ip, "protocol": proto}]}]}),
            )
        };
        let others = vec![Arc::new(port("", "TCP"))];
        let r = admit(&port("127.0.0.1", "TCP"), &n, &others, false).unwrap_err();
        assert_eq!(r.reason, "NodePorts");
        assert_eq!(r.message, "Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports");
        assert_eq!(admit(&port("", "UDP"), &n, &others, false), Ok(()));
        let specific = vec![Arc::new(port("10.0.0.1", "TCP"))];
        assert_eq!(admit(&port("10.0.0.2", "TCP"), &n, &specific, false), Ok(()));

        let mut tainted = n.clone();
        tainted["spec"]["taints"] = json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]);
        let r = admit(&pod(json!({})), &tainted, &[], false).unwrap_err();
        assert_eq!(r.message, "Predicate TaintToleration failed: node(s) had untolerated taint");
        assert_eq!(admit(&pod(json!({})), &tainted, &[], true), Ok(()), "static pods ignore taints");
        let tolerant = pod(
            json!({"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]}),
        );
        assert_eq!(admit(&tolerant, &tainted, &[], false), Ok(()));
        // NoSchedule taints are the scheduler's business.
        assert_eq!(admit(&pod(json!({})), &n, &[], false), Ok(()));
    }

    #[test]
    fn operating_system() {
        let mut p = pod(json!({"os": {"name": "windows"}}));
        assert_eq!(reason(admit(&p, &node(), &[], false)), "PodOSNotSupported");
        p = pod(json!({}));
        p["metadata"]["labels"] = json!({"kubernetes.io/os": "windows"});
        assert_eq!(reason(admit(&p, &node(), &[], false)), "PodOSSelectorNodeLabelDoesNotMatch");
    }
}
