//! NodeMetrics (upstream's `pkg/api/node.go`): the nodes of the node informer (within `--node-selector`) that
//! have a usage, sorted by name, each with the node's labels.

use api_types::ApiError;
use serde_json::{Value, json};

use super::{Api, GROUP, GROUP_VERSION, Selectors, metadata, time_fields, usage_json};
use crate::storage::NodeMetrics;

fn node_metrics_json(m: &NodeMetrics, node: &Value) -> Value {
    let (timestamp, window) = time_fields(&m.time);
    json!({
        "kind": "NodeMetrics",
        "apiVersion": GROUP_VERSION,
        "metadata": metadata(&m.name, None, node.pointer("/metadata/labels")),
        "timestamp": timestamp,
        "window": window,
        "usage": usage_json(&m.usage),
    })
}

impl Api {
    fn node_metrics(&self, nodes: &[std::sync::Arc<Value>]) -> Vec<Value> {
        let name = |n: &Value| n.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        let names: Vec<String> = nodes.iter().map(|n| name(n)).collect();
        let mut ms = self.storage.node_metrics(names.iter().map(String::as_str));
        ms.sort_by(|a, b| a.name.cmp(&b.name));
        ms.iter()
            .filter_map(|m| {
                self.observe_freshness(&m.time);
                let node = nodes.iter().find(|n| name(n) == m.name)?;
                Some(node_metrics_json(m, node))
            })
            .collect()
    }

    /// `GET .../nodes`: a NodeMetricsList.
    pub fn list_nodes(&self, selectors: &Selectors) -> Value {
        let nodes = self
            .nodes
            .store()
            .list_by(|n| self.node_selector.matches_value(n.pointer("/metadata/labels")) && selectors.matches(n));
        json!({"kind": "NodeMetricsList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": self.node_metrics(&nodes)})
    }

    /// `GET .../nodes/<name>`: 404 `node "<name>" not found` for an unknown node (the node lister's words), 404
    /// `nodemetrics.metrics.k8s.io "<name>" not found` while it has no usage.
    pub fn get_node(&self, name: &str) -> Result<Value, ApiError> {
        let node = self.nodes.store().get("", name).ok_or_else(|| ApiError::not_found("", "node", name))?;
        self.node_metrics(&[node]).pop().ok_or_else(|| ApiError::not_found(GROUP, "nodemetrics", name))
    }
}
