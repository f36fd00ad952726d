//! PodMetrics (upstream's `pkg/api/pod.go`): the running pods of the pod informer (in the request's namespace,
//! or all) whose containers all have a usage, sorted by namespace and name, each with the pod's labels.

use api_types::ApiError;
use serde_json::{Value, json};

use super::{Api, GROUP, GROUP_VERSION, Selectors, metadata, time_fields, usage_json};
use crate::storage::PodMetrics;

fn pod_metrics_json(m: &PodMetrics, pod: &Value) -> Value {
    let (timestamp, window) = time_fields(&m.time);
    let containers: Vec<Value> =
        m.containers.iter().map(|c| json!({"name": c.name, "usage": usage_json(&c.usage)})).collect();
    json!({
        "kind": "PodMetrics",
        "apiVersion": GROUP_VERSION,
        "metadata": metadata(&m.name, Some(&m.namespace), pod.pointer("/metadata/labels")),
        "timestamp": timestamp,
        "window": window,
        "containers": containers,
    })
}

fn key(p: &Value) -> (String, String) {
    let s = |ptr: &str| p.pointer(ptr).and_then(Value::as_str).unwrap_or_default().to_string();
    (s("/metadata/namespace"), s("/metadata/name"))
}

impl Api {
    fn pod_metrics(&self, pods: &[std::sync::Arc<Value>]) -> Vec<Value> {
        let keys: Vec<(String, String)> = pods.iter().map(|p| key(p)).collect();
        let mut ms = self.storage.pod_metrics(keys.iter().map(|(ns, n)| (ns.as_str(), n.as_str())));
        ms.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        ms.iter()
            .filter_map(|m| {
                self.observe_freshness(&m.time);
                let pod = pods.iter().find(|p| key(p) == (m.namespace.clone(), m.name.clone()))?;
                Some(pod_metrics_json(m, pod))
            })
            .collect()
    }

    /// `GET .../pods` or `.../namespaces/<ns>/pods` (`namespace` empty: all): a PodMetricsList.
    pub fn list_pods(&self, namespace: &str, selectors: &Selectors) -> Value {
        let pods = self.pods.store().list_by(|p| {
            (namespace.is_empty() || p.pointer("/metadata/namespace").and_then(Value::as_str) == Some(namespace))
                && selectors.matches(p)
        });
        json!({"kind": "PodMetricsList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": self.pod_metrics(&pods)})
    }

    /// `GET .../namespaces/<ns>/pods/<name>`: 404 `pods "<name>" not found` for a pod that is not running here
    /// (the pod lister's words), 404 `podmetrics.metrics.k8s.io "<ns>/<name>" not found` while it has no usage.
    pub fn get_pod(&self, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let pod = self.pods.store().get(namespace, name).ok_or_else(|| ApiError::not_found("", "pods", name))?;
        self.pod_metrics(&[pod])
            .pop()
            .ok_or_else(|| ApiError::not_found(GROUP, "podmetrics", &format!("{namespace}/{name}")))
    }
}
