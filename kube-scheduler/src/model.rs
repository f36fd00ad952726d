//! What the scheduler knows of pods and nodes, parsed once: resource requests and allocatable, labels, taints,
//! tolerations, affinity terms, host ports, images; and the selector matching they need.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

/// Amounts of resources: CPU in millicores, memory and ephemeral storage in bytes, other resources in units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Pods a node admits (allocatable only).
    pub pods: i64,
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// From a `requests`/`limits`/`allocatable` map.
    pub fn from_map(v: Option<&Value>) -> Self {
        let mut r = Resources::default();
        for (k, q) in v.and_then(Value::as_object).into_iter().flatten() {
            let Some(q) = q.as_str().map(str::to_string).or_else(|| q.as_i64().map(|i| i.to_string())) else {
                continue;
            };
            match k.as_str() {
                "cpu" => r.milli_cpu = api_types::quantity::milli(&q).unwrap_or(0),
                "memory" => r.memory = api_types::quantity::value(&q).unwrap_or(0),
                "ephemeral-storage" => r.ephemeral_storage = api_types::quantity::value(&q).unwrap_or(0),
                "pods" => r.pods = api_types::quantity::value(&q).unwrap_or(0),
                _ => {
                    r.scalar.insert(k.clone(), api_types::quantity::value(&q).unwrap_or(0));
                }
            }
        }
        r
    }

    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    fn max_with(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    /// The amount of a named resource.
    pub fn get(&self, name: &str) -> i64 {
        match name {
            "cpu" => self.milli_cpu,
            "memory" => self.memory,
            "ephemeral-storage" => self.ephemeral_storage,
            "pods" => self.pods,
            other => self.scalar.get(other).copied().unwrap_or(0),
        }
    }
}

/// Defaults the scoring plugins assume for containers without requests (upstream's non-zero requests).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 << 20;

fn container_requests(c: &Value) -> Resources {
    // Limits stand in for missing requests, as the apiserver defaults them.
    let mut r = Resources::from_map(c.pointer("/resources/limits"));
    let req = Resources::from_map(c.pointer("/resources/requests"));
    let has = |k: &str| c.pointer(&format!("/resources/requests/{k}")).is_some();
    if has("cpu") {
        r.milli_cpu = req.milli_cpu;
    }
    if has("memory") {
        r.memory = req.memory;
    }
    if has("ephemeral-storage") {
        r.ephemeral_storage = req.ephemeral_storage;
    }
    r.scalar.extend(req.scalar);
    r
}

/// A pod's effective requests: the app containers' sum, or the largest init container when bigger, plus overhead.
/// `non_zero` puts upstream's defaults in for CPU and memory a container does not request (scoring only).
pub fn pod_requests(pod: &Value, non_zero: bool) -> Resources {
    let mut sum = Resources::default();
    for c in pod.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten() {
        let mut r = container_requests(c);
        if non_zero {
            if r.milli_cpu == 0 {
                r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
            }
            if r.memory == 0 {
                r.memory = DEFAULT_MEMORY_REQUEST;
            }
        }
        sum.add(&r);
    }
    for c in pod.pointer("/spec/initContainers").and_then(Value::as_array).into_iter().flatten() {
        sum.max_with(&container_requests(c));
    }
    sum.add(&Resources::from_map(pod.pointer("/spec/overhead")));
    sum
}

/// `matchLabels` and `matchExpressions` (In, NotIn, Exists, DoesNotExist) of a LabelSelector. An absent selector
/// matches nothing; an empty one matches everything.
pub fn selector_matches(selector: Option<&Value>, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = selector.filter(|s| !s.is_null()) else { return false };
    for (k, v) in sel.get("matchLabels").and_then(Value::as_object).into_iter().flatten() {
        if labels.get(k).map(String::as_str) != v.as_str() {
            return false;
        }
    }
    sel.get("matchExpressions").and_then(Value::as_array).into_iter().flatten().all(|e| expression(e, labels))
}

fn expression(e: &Value, labels: &BTreeMap<String, String>) -> bool {
    let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
    let values: Vec<&str> =
        e.get("values").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let got = labels.get(key);
    match e.get("operator").and_then(Value::as_str).unwrap_or_default() {
        "In" => got.is_some_and(|g| values.contains(&g.as_str())),
        "NotIn" => got.is_none_or(|g| !values.contains(&g.as_str())),
        "Exists" => got.is_some(),
        "DoesNotExist" => got.is_none(),
        "Gt" | "Lt" => {
            let (Some(g), Some(v)) =
                (got.and_then(|g| g.parse::<i64>().ok()), values.first().and_then(|v| v.parse::<i64>().ok()))
            else {
                return false;
            };
            if e["operator"] == "Gt" { g > v } else { g < v }
        }
        _ => false,
    }
}

/// A NodeSelectorTerm: all its matchExpressions (on labels) and matchFields (`metadata.name`) hold.
pub fn node_selector_term_matches(term: &Value, node: &NodeInfo) -> bool {
    let exprs = term.get("matchExpressions").and_then(Value::as_array);
    let fields = term.get("matchFields").and_then(Value::as_array);
    if exprs.is_none_or(|e| e.is_empty()) && fields.is_none_or(|f| f.is_empty()) {
        return false;
    }
    let name_labels = BTreeMap::from([("metadata.name".to_string(), node.name.clone())]);
    exprs.into_iter().flatten().all(|e| expression(e, &node.labels))
        && fields.into_iter().flatten().all(|e| expression(e, &name_labels))
}

/// A map of strings (labels, nodeSelector).
pub fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// A pod as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Value>,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub priority: i64,
    pub requests: Resources,
    pub non_zero: Resources,
    /// (protocol, hostIP, hostPort) the pod takes on its node.
    pub host_ports: Vec<(String, String, i64)>,
    pub has_required_anti_affinity: bool,
    pub start_time: String,
}

impl PodInfo {
    pub fn new(pod: Arc<Value>) -> Self {
        let mut host_ports = Vec::new();
        for c in pod.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten() {
            for p in c.get("ports").and_then(Value::as_array).into_iter().flatten() {
                let Some(hp) = p.get("hostPort").and_then(Value::as_i64).filter(|p| *p > 0) else { continue };
                let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string();
                let ip = p.get("hostIP").and_then(Value::as_str).filter(|i| !i.is_empty()).unwrap_or("0.0.0.0");
                host_ports.push((proto, ip.to_string(), hp));
            }
        }
        PodInfo {
            uid: runtime::uid(&pod).to_string(),
            namespace: runtime::namespace(&pod).to_string(),
            name: runtime::name(&pod).to_string(),
            labels: string_map(pod.pointer("/metadata/labels")),
            priority: pod.pointer("/spec/priority").and_then(Value::as_i64).unwrap_or(0),
            requests: pod_requests(&pod, false),
            non_zero: pod_requests(&pod, true),
            host_ports,
            has_required_anti_affinity: pod
                .pointer("/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty()),
            start_time: pod
                .pointer("/status/startTime")
                .or(pod.pointer("/metadata/creationTimestamp"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            pod,
        }
    }

    pub fn node_name(&self) -> &str {
        self.pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default()
    }
}

/// A node with what runs on it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub name: String,
    pub node: Arc<Value>,
    pub labels: BTreeMap<String, String>,
    pub allocatable: Resources,
    pub requested: Resources,
    pub non_zero_requested: Resources,
    pub pods: Vec<PodInfo>,
    /// Image names (every name of every image) and their sizes.
    pub images: HashMap<String, i64>,
    pub unschedulable: bool,
    pub taints: Vec<Value>,
}

impl NodeInfo {
    pub fn new(node: Arc<Value>) -> Self {
        let mut n = NodeInfo::default();
        n.set_node(node);
        n
    }

    pub fn set_node(&mut self, node: Arc<Value>) {
        self.name = runtime::name(&node).to_string();
        self.labels = string_map(node.pointer("/metadata/labels"));
        self.allocatable = Resources::from_map(node.pointer("/status/allocatable"));
        self.unschedulable = node.pointer("/spec/unschedulable").and_then(Value::as_bool).unwrap_or(false);
        self.taints = node.pointer("/spec/taints").and_then(Value::as_array).cloned().unwrap_or_default();
        self.images.clear();
        for img in node.pointer("/status/images").and_then(Value::as_array).into_iter().flatten() {
            let size = img.get("sizeBytes").and_then(Value::as_i64).unwrap_or(0);
            for n in img.get("names").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
                self.images.insert(n.to_string(), size);
            }
        }
        self.node = node;
    }

    pub fn add_pod(&mut self, p: PodInfo) {
        self.requested.add(&p.requests);
        self.non_zero_requested.add(&p.non_zero);
        self.pods.push(p);
    }

    /// Removes a pod by UID; whether it was there.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.uid == uid) else { return false };
        let p = self.pods.swap_remove(i);
        self.requested.sub(&p.requests);
        self.non_zero_requested.sub(&p.non_zero);
        true
    }
}

#[cfg(test)]
pub mod testing {
    use super::*;
    use serde_json::json;

    pub fn node(name: &str, cpu: &str, memory: &str) -> NodeInfo {
        NodeInfo::new(Arc::new(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}})))
    }

    pub fn pod(name: &str, cpu: &str, memory: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_sum_app_containers_max_init_and_add_overhead() {
        let pod = json!({"spec": {
            "containers": [
                {"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"resources": {"limits": {"cpu": "200m", "nvidia.com/gpu": "1"}}},
            ],
            "initContainers": [{"resources": {"requests": {"cpu": "500m", "memory": "32Mi"}}}],
            "overhead": {"cpu": "10m"}}});
        let r = pod_requests(&pod, false);
        assert_eq!(r.milli_cpu, 510);
        assert_eq!(r.memory, 64 << 20);
        assert_eq!(r.scalar["nvidia.com/gpu"], 1);
        let nz = pod_requests(&json!({"spec": {"containers": [{}]}}), true);
        assert_eq!((nz.milli_cpu, nz.memory), (100, 200 << 20));
    }

    #[test]
    fn label_selectors() {
        let labels = BTreeMap::from([("app".to_string(), "web".to_string()), ("tier".to_string(), "1".to_string())]);
        assert!(selector_matches(Some(&json!({"matchLabels": {"app": "web"}})), &labels));
        assert!(selector_matches(Some(&json!({})), &labels));
        assert!(!selector_matches(None, &labels));
        let e = |op: &str, v: Value| json!({"matchExpressions": [{"key": "tier", "operator": op, "values": v}]});
        assert!(selector_matches(Some(&e("In", json!(["1", "2"]))), &labels));
        assert!(!selector_matches(Some(&e("NotIn", json!(["1"]))), &labels));
        assert!(selector_matches(Some(&e("Gt", json!(["0"]))), &labels));
        assert!(!selector_matches(Some(&e("DoesNotExist", json!([]))), &labels));
    }
}
