//! Quota evaluation, as upstream's pkg/quota/v1 (the evaluators of `evaluator/core` and the generic object count
//! one): what an object uses (`usage`), which of a quota's resources an evaluator tracks (`matching_resources`),
//! whether a quota's scopes select an object, and the pod constraints of quotas on cpu and memory. The
//! resourcequota controller sums usage over a namespace; the apiserver's ResourceQuota admission charges each
//! create and update against the quotas of its namespace.

use std::collections::BTreeMap;

use serde_json::{Value, json};

pub use crate::quantity::Quantity;

/// What a quota counts, by resource name (`pods`, `requests.cpu`, `count/deployments.apps`).
pub type ResourceList = BTreeMap<String, Quantity>;

/// Adds `q` to `used[key]` (the first binary quantity makes the sum binary).
pub fn sum_into(used: &mut BTreeMap<String, Quantity>, key: &str, q: Quantity) {
    let e = used.entry(key.to_string()).or_insert(Quantity { milli: 0, binary: q.binary });
    if e.milli == 0 && !e.binary {
        e.binary = q.binary;
    }
    *e = e.plus(q);
}

/// A container's `resources.<kind>` (requests or limits).
pub fn resources_of(c: &Value, kind: &str) -> Vec<(String, Quantity)> {
    c.pointer(&format!("/resources/{kind}"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter().filter_map(|(k, v)| Some((k.clone(), Quantity::parse(v.as_str().unwrap_or_default())?))).collect()
        })
        .unwrap_or_default()
}

/// A pod's effective requests or limits: max(sum of containers, each init container) plus overhead.
pub fn pod_resources(pod: &Value, kind: &str) -> BTreeMap<String, Quantity> {
    let mut sum = BTreeMap::new();
    for c in pod.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten() {
        for (k, q) in resources_of(c, kind) {
            sum_into(&mut sum, &k, q);
        }
    }
    for c in pod.pointer("/spec/initContainers").and_then(Value::as_array).into_iter().flatten() {
        for (k, q) in resources_of(c, kind) {
            let e = sum.entry(k).or_insert(Quantity { milli: 0, binary: q.binary });
            if q.milli > e.milli {
                *e = q;
            }
        }
    }
    if let Some(o) = pod.pointer("/spec/overhead").and_then(Value::as_object) {
        for (k, v) in o {
            if let Some(q) = Quantity::parse(v.as_str().unwrap_or_default()) {
                sum_into(&mut sum, k, q);
            }
        }
    }
    sum
}

/// A quota's scope requirements (upstream's `getScopeSelectorsFromQuota`): each of `spec.scopes` as an `Exists`
/// requirement, then `spec.scopeSelector.matchExpressions`. None: an unscoped quota.
pub fn scope_requirements(quota: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| json!({"scopeName": s, "operator": "Exists"}))
        .collect();
    if let Some(exprs) = quota.pointer("/spec/scopeSelector/matchExpressions").and_then(Value::as_array) {
        out.extend(exprs.iter().cloned());
    }
    out
}

pub fn has_compute_resource(c: &Value, kind: &str) -> bool {
    resources_of(c, kind).iter().any(|(k, q)| matches!(k.as_str(), "cpu" | "memory") && q.milli > 0)
}

/// The pod is of the BestEffort QoS class: `status.qosClass`, else computed as upstream's `ComputePodQOS` (no
/// container or init container requests or limits a positive cpu or memory).
pub fn best_effort(pod: &Value) -> bool {
    if let Some(q) = pod.pointer("/status/qosClass").and_then(Value::as_str).filter(|q| !q.is_empty()) {
        return q == "BestEffort";
    }
    !["/spec/containers", "/spec/initContainers"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .any(|c| has_compute_resource(c, "requests") || has_compute_resource(c, "limits"))
}

/// Upstream's `isTerminating`: `activeDeadlineSeconds` set and not negative.
pub fn terminating_scope(pod: &Value) -> bool {
    pod.pointer("/spec/activeDeadlineSeconds").and_then(Value::as_i64).is_some_and(|d| d >= 0)
}

/// Upstream's `usesCrossNamespacePodAffinity`: a pod affinity or anti-affinity term, required or preferred, naming
/// `namespaces` or a `namespaceSelector`.
pub fn uses_cross_namespace_pod_affinity(pod: &Value) -> bool {
    let cross = |t: &Value| {
        t.get("namespaces").and_then(Value::as_array).is_some_and(|n| !n.is_empty())
            || t.get("namespaceSelector").is_some_and(|s| !s.is_null())
    };
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let Some(a) = pod.pointer(&format!("/spec/affinity/{kind}")) else { return false };
        let required = a.get("requiredDuringSchedulingIgnoredDuringExecution").and_then(Value::as_array);
        let preferred = a.get("preferredDuringSchedulingIgnoredDuringExecution").and_then(Value::as_array);
        required.into_iter().flatten().any(cross)
            || preferred.into_iter().flatten().filter_map(|w| w.get("podAffinityTerm")).any(cross)
    })
}

/// Whether a pod matches one scope requirement (upstream's `podMatchesScopeFunc`; the operator only matters for
/// `PriorityClass`, where it is a label requirement on `{PriorityClass: <priorityClassName>}`).
pub fn pod_matches_scope(req: &Value, pod: &Value) -> bool {
    let op = req.get("operator").and_then(Value::as_str).unwrap_or_default();
    match req.get("scopeName").and_then(Value::as_str).unwrap_or_default() {
        "Terminating" => terminating_scope(pod),
        "NotTerminating" => !terminating_scope(pod),
        "BestEffort" => best_effort(pod),
        "NotBestEffort" => !best_effort(pod),
        "PriorityClass" => {
            let class = pod.pointer("/spec/priorityClassName").and_then(Value::as_str).filter(|c| !c.is_empty());
            let values: Vec<&str> =
                req.get("values").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
            match op {
                "Exists" => class.is_some(),
                "DoesNotExist" => class.is_none(),
                "In" => class.is_some_and(|c| values.contains(&c)),
                "NotIn" => class.is_none_or(|c| !values.contains(&c)),
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => uses_cross_namespace_pod_affinity(pod),
        _ => false,
    }
}

/// The evaluator upstream's quota registry picks for a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evaluator {
    Pods,
    Services,
    PersistentVolumeClaims,
    /// `count/<resource>[.<group>]`, and the legacy name of the four core kinds that have one.
    ObjectCount,
}

impl Evaluator {
    pub fn for_resource(group: &str, plural: &str) -> Evaluator {
        match (group, plural) {
            ("", "pods") => Evaluator::Pods,
            ("", "services") => Evaluator::Services,
            ("", "persistentvolumeclaims") => Evaluator::PersistentVolumeClaims,
            _ => Evaluator::ObjectCount,
        }
    }

    /// Whether an update is charged (upstream's `Handles`): the object count evaluator charges creates only.
    pub fn handles_update(self) -> bool {
        self != Evaluator::ObjectCount
    }
}

/// `count/<plural>` for the core group, `count/<plural>.<group>` otherwise.
pub fn object_count_name(group: &str, plural: &str) -> String {
    if group.is_empty() { format!("count/{plural}") } else { format!("count/{plural}.{group}") }
}

/// The legacy resource name the core object count evaluators also charge (`configmaps: 1`).
fn legacy_count_name(group: &str, plural: &str) -> Option<&'static str> {
    match (group, plural) {
        ("", "configmaps") => Some("configmaps"),
        ("", "secrets") => Some("secrets"),
        ("", "replicationcontrollers") => Some("replicationcontrollers"),
        ("", "resourcequotas") => Some("resourcequotas"),
        _ => None,
    }
}

/// The resources of a pod quota (upstream's `podResources`).
const POD_RESOURCES: &[&str] = &[
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];

/// An extended resource name (`example.com/dongle`): qualified with a domain other than `kubernetes.io`, and not
/// itself a `requests.` name (upstream's `IsExtendedResourceName`).
pub fn is_extended_resource_name(name: &str) -> bool {
    let Some((domain, _)) = name.split_once('/') else { return false };
    !(domain == "kubernetes.io" || domain.ends_with(".kubernetes.io") || name.starts_with("requests."))
}

/// `requests.<extended resource>`, the only form a quota takes an extended resource in.
fn is_extended_resource_name_for_quota(name: &str) -> bool {
    name.strip_prefix("requests.").is_some_and(is_extended_resource_name)
}

/// The names among `hard` the evaluator charges (upstream's `MatchingResources`).
pub fn matching_resources<'a>(
    evaluator: Evaluator,
    group: &str,
    plural: &str,
    hard: impl IntoIterator<Item = &'a String>,
) -> Vec<String> {
    let count = object_count_name(group, plural);
    hard.into_iter()
        .filter(|name| match evaluator {
            Evaluator::Pods => {
                POD_RESOURCES.contains(&name.as_str())
                    || name.starts_with("hugepages-")
                    || name.starts_with("requests.hugepages-")
                    || is_extended_resource_name_for_quota(name)
            }
            Evaluator::Services => {
                matches!(name.as_str(), "count/services" | "services" | "services.loadbalancers" | "services.nodeports")
            }
            Evaluator::PersistentVolumeClaims => {
                matches!(name.as_str(), "count/persistentvolumeclaims" | "persistentvolumeclaims" | "requests.storage")
                    || name.ends_with(".storageclass.storage.k8s.io/requests.storage")
                    || name.ends_with(".storageclass.storage.k8s.io/persistentvolumeclaims")
            }
            Evaluator::ObjectCount => **name == count || legacy_count_name(group, plural) == Some(name.as_str()),
        })
        .cloned()
        .collect()
}

/// Upstream's `podComputeUsageHelper`: `pods: 1` and the compute resources of `requests`/`limits` under their
/// quota names (`cpu` and `requests.cpu`, `limits.cpu`, hugepages, `requests.<extended>`).
fn pod_compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("pods".into(), Quantity::count(1));
    for (k, q) in requests {
        if matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage") || k.starts_with("hugepages-") {
            out.insert(k.clone(), *q);
            out.insert(format!("requests.{k}"), *q);
        } else if is_extended_resource_name(k) {
            out.insert(format!("requests.{k}"), *q);
        }
    }
    for (k, q) in limits {
        if matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage") {
            out.insert(format!("limits.{k}"), *q);
        }
    }
    out
}

/// What a pod uses (upstream's `PodUsageFunc`): `count/pods: 1` always; `pods: 1` and its compute resources
/// (effective requests and limits, with overhead) unless `live` is false (a terminal pod, or one past its grace
/// period: the caller's `QuotaV1Pod`).
pub fn pod_usage(pod: &Value, live: bool) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("count/pods".into(), Quantity::count(1));
    if !live {
        return out;
    }
    out.extend(pod_compute_usage(&pod_resources(pod, "requests"), &pod_resources(pod, "limits")));
    out
}

/// Whether a pod is terminal (`Succeeded`/`Failed`), so that only its object counts.
pub fn pod_terminal(pod: &Value) -> bool {
    matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"))
}

/// What a Service uses (upstream's service evaluator): one service, a load balancer for `LoadBalancer`, and a node
/// port per port for `NodePort` (and `LoadBalancer` unless `allocateLoadBalancerNodePorts` is false).
pub fn service_usage(svc: &Value) -> ResourceList {
    let ports = svc.pointer("/spec/ports").and_then(Value::as_array).map_or(0, Vec::len) as i128;
    let kind = svc.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
    let allocate = svc.pointer("/spec/allocateLoadBalancerNodePorts").and_then(Value::as_bool) != Some(false);
    let node_ports = match kind {
        "NodePort" => ports,
        "LoadBalancer" if allocate => ports,
        _ => 0,
    };
    ResourceList::from([
        ("count/services".into(), Quantity::count(1)),
        ("services".into(), Quantity::count(1)),
        ("services.loadbalancers".into(), Quantity::count((kind == "LoadBalancer") as i128)),
        ("services.nodeports".into(), Quantity::count(node_ports)),
    ])
}

/// What a PersistentVolumeClaim uses: one claim and its storage request, also under its storage class.
pub fn pvc_usage(pvc: &Value) -> ResourceList {
    let mut out = ResourceList::from([
        ("count/persistentvolumeclaims".into(), Quantity::count(1)),
        ("persistentvolumeclaims".into(), Quantity::count(1)),
    ]);
    let storage = pvc.pointer("/spec/resources/requests/storage").and_then(Value::as_str).and_then(Quantity::parse);
    if let Some(q) = storage {
        out.insert("requests.storage".into(), q);
    }
    if let Some(class) = pvc.pointer("/spec/storageClassName").and_then(Value::as_str).filter(|c| !c.is_empty()) {
        let prefix = format!("{class}.storageclass.storage.k8s.io");
        out.insert(format!("{prefix}/persistentvolumeclaims"), Quantity::count(1));
        if let Some(q) = storage {
            out.insert(format!("{prefix}/requests.storage"), q);
        }
    }
    out
}

/// What one object of `group`/`plural` uses, by its evaluator.
pub fn usage(evaluator: Evaluator, group: &str, plural: &str, obj: &Value) -> ResourceList {
    match evaluator {
        Evaluator::Pods => pod_usage(obj, !pod_terminal(obj)),
        Evaluator::Services => service_usage(obj),
        Evaluator::PersistentVolumeClaims => pvc_usage(obj),
        Evaluator::ObjectCount => {
            let mut out = ResourceList::from([(object_count_name(group, plural), Quantity::count(1))]);
            if let Some(legacy) = legacy_count_name(group, plural) {
                out.insert(legacy.into(), Quantity::count(1));
            }
            out
        }
    }
}

/// Whether the quota's scopes select the object: every requirement must match; only pods match any (upstream's
/// other evaluators use `MatchesNoScopeFunc`), and an unscoped quota selects everything.
pub fn scopes_match(evaluator: Evaluator, quota: &Value, obj: &Value) -> bool {
    let reqs = scope_requirements(quota);
    match evaluator {
        Evaluator::Pods => reqs.iter().all(|r| pod_matches_scope(r, obj)),
        _ => reqs.is_empty(),
    }
}

/// Upstream's pod `Constraints`: a quota on cpu or memory (of `required`) needs every container and init container
/// to state it (`must specify limits.cpu for: app; memory for: app,init`).
pub fn pod_constraints(required: &[String], pod: &Value) -> Result<(), String> {
    const VALIDATED: &[&str] = &["cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"];
    let required: Vec<&str> = required.iter().map(String::as_str).filter(|r| VALIDATED.contains(r)).collect();
    let mut missing: BTreeMap<&str, std::collections::BTreeSet<String>> = BTreeMap::new();
    for list in ["/spec/containers", "/spec/initContainers"] {
        for c in pod.pointer(list).and_then(Value::as_array).into_iter().flatten() {
            let requests: ResourceList = resources_of(c, "requests").into_iter().collect();
            let limits: ResourceList = resources_of(c, "limits").into_iter().collect();
            let has = pod_compute_usage(&requests, &limits);
            for r in &required {
                if !has.contains_key(*r) {
                    let name = c.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                    missing.entry(r).or_default().insert(name);
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| format!("{r} for: {}", names.iter().cloned().collect::<Vec<_>>().join(",")))
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

/// `a=1,b=2Gi` with sorted names (upstream's `prettyPrint`).
pub fn pretty_print(list: &ResourceList) -> String {
    list.iter().map(|(k, q)| format!("{k}={}", q.format())).collect::<Vec<_>>().join(",")
}

/// A resource list as a quota's `status.used`/`status.hard` holds it.
pub fn from_json(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), Quantity::parse(v.as_str()?)?))).collect())
        .unwrap_or_default()
}

/// A resource list in JSON (`{"pods": "1"}`).
pub fn to_json(list: &ResourceList) -> Value {
    Value::Object(list.iter().map(|(k, q)| (k.clone(), json!(q.format()))).collect())
}
