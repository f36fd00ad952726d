//! `kubeadm init phase mark-control-plane`: the control-plane and exclude-from-external-load-balancers labels
//! and the `node-role.kubernetes.io/control-plane:NoSchedule` taint (or the configured taints) on this node.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Context, Result, retry};
use crate::config::{InitConfig, Taint};
use crate::constants as k;

/// The taints a control-plane node gets: the configured ones, or upstream's default when none are configured.
pub fn taints(cfg: &InitConfig) -> Vec<Taint> {
    cfg.init.node_registration.taints.clone().unwrap_or_else(|| {
        vec![Taint { key: k::LABEL_NODE_ROLE_CONTROL_PLANE.into(), value: String::new(), effect: "NoSchedule".into() }]
    })
}

pub async fn run(ctx: &Context, cfg: &InitConfig) -> Result<()> {
    let node = cfg.node_name().to_string();
    let labels = [k::LABEL_NODE_ROLE_CONTROL_PLANE, k::LABEL_EXCLUDE_FROM_EXTERNAL_LB];
    ctx.out.line(format!(
        "[mark-control-plane] Marking the node {node} as control-plane by adding the labels: [{}]",
        labels.join(" ")
    ));
    let taints = taints(cfg);
    if !taints.is_empty() {
        let t: Vec<String> = taints
            .iter()
            .map(|t| {
                if t.value.is_empty() {
                    format!("{}:{}", t.key, t.effect)
                } else {
                    format!("{}={}:{}", t.key, t.value, t.effect)
                }
            })
            .collect();
        ctx.out.line(format!(
            "[mark-control-plane] Marking the node {node} as control-plane by adding the taints [{}]",
            t.join(" ")
        ));
    }
    let c = ctx.admin_client()?;
    let nodes = c.api("", "v1", "nodes")?;
    let timeout = cfg
        .init
        .timeouts
        .as_ref()
        .and_then(|t| t.kubelet_health_check.as_deref())
        .and_then(|d| crate::config::duration::parse(d).ok())
        .unwrap_or(Duration::from_secs(240));
    // The node registers itself; wait for it, then update labels and taints with a compare-and-swap replace.
    retry(timeout, || async {
        let mut n: Value = nodes.get(&node).await?;
        for l in labels {
            n["metadata"]["labels"][l] = json!("");
        }
        let mut current: Vec<Value> = n.pointer("/spec/taints").and_then(Value::as_array).cloned().unwrap_or_default();
        for t in &taints {
            if !current.iter().any(|c| c["key"] == t.key.as_str() && c["effect"] == t.effect.as_str()) {
                current.push(serde_json::to_value(t).unwrap_or_default());
            }
        }
        n["spec"]["taints"] = Value::Array(current);
        nodes.replace(&node, &n).await?;
        Ok(())
    })
    .await
}
