//! `nodelifecycle`: node health and taints, and taint-based eviction, as upstream's
//! pkg/controller/nodelifecycle and pkg/controller/tainteviction.
//!
//! - Every `--node-monitor-period` each node is checked: when neither its Lease (`kube-node-lease/<node>`
//!   `renewTime`) nor its Ready condition's heartbeat changed for `--node-monitor-grace-period` (measured on this
//!   process's clock from when the change was seen, as upstream's probe timestamps), `Ready`, `MemoryPressure`,
//!   `DiskPressure` and `PIDPressure` become `Unknown` with reason `NodeStatusUnknown` ("Kubelet stopped posting
//!   node status."), or `NodeStatusNeverUpdated` ("Kubelet never posted node status.") when there was none; the
//!   node gets a `NodeNotReady` event. The pods of a node whose Ready is not True get their `Ready` condition set
//!   False (upstream's `MarkPodsNotReady`, with a `NodeNotReady` event on the pod).
//! - Taints follow the conditions: `node.kubernetes.io/unreachable` (`NoExecute`, `NoSchedule`) for Ready
//!   Unknown, `node.kubernetes.io/not-ready` (`NoExecute`, `NoSchedule`) for Ready False, `memory-pressure`,
//!   `disk-pressure`, `pid-pressure`, `network-unavailable` (`NoSchedule`) for those conditions, and
//!   `node.kubernetes.io/unschedulable:NoSchedule` for `spec.unschedulable`; they go when the condition clears.
//! - Taint-based eviction: a pod on a node with a `NoExecute` taint it does not tolerate is deleted at once; one
//!   that tolerates every such taint for a limited `tolerationSeconds` is deleted when the shortest runs out
//!   (counted from the taint's `timeAdded`). Before deletion the pod gets the `DisruptionTarget` condition
//!   (`DeletionByTaintManager`) and a `TaintManagerEviction` event. The apiserver gives pods the default 300 s
//!   not-ready/unreachable tolerations (DefaultTolerationSeconds).
//!
//! Deliberate gaps: no zone-aware eviction rate limiting (`--node-eviction-rate`, `--secondary-node-eviction-rate`,
//! `--unhealthy-zone-threshold`, the full-disruption mode); taints are applied at once, not through rate-limited
//! queues.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::Api;
use jiff::Timestamp;
use runtime::events::{EventType, Recorder};
use runtime::{Action, Controller, Informer, Notification};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::controllers::job::{now_rfc3339, parse_time};
use crate::{BoxError, Context, stopped};

pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
const NODE_INDEX: &str = "nodelifecycle/node";
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Whether a toleration tolerates a taint (upstream's `Toleration.ToleratesTaint`).
pub fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let effect = s(toleration, "effect");
    if !effect.is_empty() && effect != s(taint, "effect") {
        return false;
    }
    let key = s(toleration, "key");
    if !key.is_empty() && key != s(taint, "key") {
        return false;
    }
    match s(toleration, "operator").as_str() {
        "Exists" => true,
        "" | "Equal" => s(toleration, "value") == s(taint, "value"),
        _ => false,
    }
}

/// What taint-based eviction decides for a pod given its node's taints, at `now`.
#[derive(Debug, PartialEq, Eq)]
pub enum Eviction {
    /// No NoExecute taint, or every one tolerated forever.
    Keep,
    /// Delete now.
    Now,
    /// Delete after this long.
    After(Duration),
}

pub fn eviction(pod: &Value, taints: &[Value], now: Timestamp) -> Eviction {
    let tolerations = pod.pointer("/spec/tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut deadline: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t["effect"] == "NoExecute") {
        let matching: Vec<&Value> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Eviction::Now;
        }
        // Tolerated forever when any matching toleration has no tolerationSeconds.
        if matching.iter().any(|t| t.get("tolerationSeconds").is_none_or(Value::is_null)) {
            continue;
        }
        let secs = matching.iter().filter_map(|t| t["tolerationSeconds"].as_i64()).min().unwrap_or(0).max(0);
        let added = parse_time(taint.get("timeAdded")).unwrap_or(now);
        let at = added + jiff::SignedDuration::from_secs(secs);
        deadline = Some(deadline.map_or(at, |d| d.min(at)));
    }
    match deadline {
        None => Eviction::Keep,
        Some(d) if d <= now => Eviction::Now,
        Some(d) => Eviction::After(Duration::try_from(d.duration_since(now)).unwrap_or_default()),
    }
}

fn condition<'a>(node: &'a Value, type_: &str) -> Option<&'a Value> {
    node.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == type_)
}

fn cond_status<'a>(node: &'a Value, type_: &str) -> &'a str {
    condition(node, type_).and_then(|c| c["status"].as_str()).unwrap_or_default()
}

/// The taints the node's conditions and spec call for (key, effect), in upstream's order.
pub fn wanted_taints(node: &Value) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    match cond_status(node, "Ready") {
        "False" => out.extend([(TAINT_NOT_READY, "NoExecute"), (TAINT_NOT_READY, "NoSchedule")]),
        "Unknown" => out.extend([(TAINT_UNREACHABLE, "NoExecute"), (TAINT_UNREACHABLE, "NoSchedule")]),
        _ => {}
    }
    for (cond, key) in [
        ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
        ("DiskPressure", "node.kubernetes.io/disk-pressure"),
        ("PIDPressure", "node.kubernetes.io/pid-pressure"),
        ("NetworkUnavailable", "node.kubernetes.io/network-unavailable"),
    ] {
        if cond_status(node, cond) == "True" {
            out.push((key, "NoSchedule"));
        }
    }
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        out.push((TAINT_UNSCHEDULABLE, "NoSchedule"));
    }
    out
}

const MANAGED: [&str; 7] = [
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    "node.kubernetes.io/memory-pressure",
    "node.kubernetes.io/disk-pressure",
    "node.kubernetes.io/pid-pressure",
    "node.kubernetes.io/network-unavailable",
    TAINT_UNSCHEDULABLE,
];

/// The node's taints with the managed ones made to match [`wanted_taints`] (others untouched, existing kept as
/// they are so `timeAdded` does not move).
pub fn reconcile_taints(node: &Value, now: &str) -> Vec<Value> {
    let current = node.pointer("/spec/taints").and_then(Value::as_array).cloned().unwrap_or_default();
    let wanted = wanted_taints(node);
    let mut out: Vec<Value> = current
        .iter()
        .filter(|t| {
            let key = t["key"].as_str().unwrap_or_default();
            !MANAGED.contains(&key) || wanted.iter().any(|(k, e)| t["key"] == *k && t["effect"] == *e)
        })
        .cloned()
        .collect();
    for (k, e) in wanted {
        if !out.iter().any(|t| t["key"] == k && t["effect"] == e) {
            let mut t = json!({"key": k, "effect": e});
            if e == "NoExecute" {
                t["timeAdded"] = json!(now);
            }
            out.push(t);
        }
    }
    out
}

/// Sets the node's Ready and pressure conditions Unknown; true when something changed.
pub fn mark_unknown(node: &mut Value, now: &str) -> bool {
    let never = condition(node, "Ready").is_none();
    let (reason, message) = if never {
        ("NodeStatusNeverUpdated", "Kubelet never posted node status.")
    } else {
        ("NodeStatusUnknown", "Kubelet stopped posting node status.")
    };
    if !node["status"].is_object() {
        node["status"] = json!({});
    }
    if !node["status"]["conditions"].is_array() {
        node["status"]["conditions"] = json!([]);
    }
    let Some(conds) = node["status"]["conditions"].as_array_mut() else { return false };
    let mut changed = false;
    for type_ in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        match conds.iter_mut().find(|c| c["type"] == type_) {
            Some(c) if c["status"] == "Unknown" => {}
            Some(c) => {
                c["status"] = json!("Unknown");
                c["reason"] = json!(reason);
                c["message"] = json!(message);
                c["lastTransitionTime"] = json!(now);
                changed = true;
            }
            None => {
                conds.push(json!({"type": type_, "status": "Unknown", "reason": reason, "message": message,
                    "lastHeartbeatTime": now, "lastTransitionTime": now}));
                changed = true;
            }
        }
    }
    changed
}

/// When this process last saw a node's heartbeat change.
struct Probe {
    heartbeat: String,
    at: Instant,
}

struct NodeLifecycle {
    ctx: Arc<Context>,
    nodes: Informer,
    leases: Informer,
    pods: Informer,
    recorder: Recorder,
    probes: Mutex<HashMap<String, Probe>>,
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let nodes = ctx.informer("", "v1", "nodes");
    let leases = ctx.informer("coordination.k8s.io", "v1", "leases");
    let pods = ctx.informer("", "v1", "pods");
    pods.store().add_indexer(NODE_INDEX, |p| {
        p.pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .into_iter()
            .collect()
    });
    let this = Arc::new(NodeLifecycle {
        recorder: ctx.recorder("node-controller"),
        ctx,
        nodes: nodes.clone(),
        leases: leases.clone(),
        pods: pods.clone(),
        probes: Mutex::default(),
    });
    let health = {
        let this = this.clone();
        Controller::new(runtime::controller::Config { workers: 2, ..Default::default() })
            .watches(&nodes, |n| vec![n.key()])
            .watches(&leases, |n| {
                if runtime::namespace(n.object()) == LEASE_NAMESPACE {
                    vec![runtime::name(n.object()).to_string()]
                } else {
                    vec![]
                }
            })
            .run(
                move |node: String| {
                    let this = this.clone();
                    async move { this.monitor(&node).await }
                },
                stopped(stop.clone()),
            )
    };
    let eviction = {
        let this = this.clone();
        let pods_store = pods.clone();
        Controller::new(runtime::controller::Config { workers: 4, ..Default::default() })
            .watches(&pods, |n| vec![n.key()])
            .watches(&nodes, move |n: &Notification| {
                let taints_changed =
                    n.old().is_none_or(|o| o.pointer("/spec/taints") != n.object().pointer("/spec/taints"));
                if !taints_changed {
                    return vec![];
                }
                pods_store
                    .store()
                    .by_index(NODE_INDEX, runtime::name(n.object()))
                    .iter()
                    .map(|p| runtime::object_key(p))
                    .collect()
            })
            .run(
                move |pod: String| {
                    let this = this.clone();
                    async move { this.evict(&pod).await }
                },
                stopped(stop),
            )
    };
    tokio::join!(health, eviction);
}

impl NodeLifecycle {
    /// The node's heartbeat as this process sees it: the Lease's renewTime and the Ready condition's heartbeat.
    fn heartbeat(&self, node: &Value) -> String {
        let name = runtime::name(node);
        let lease = self.leases.store().get(LEASE_NAMESPACE, name);
        let renew = lease
            .as_ref()
            .and_then(|l| l.pointer("/spec/renewTime"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let ready =
            condition(node, "Ready").map(|c| format!("{}|{}", c["lastHeartbeatTime"], c["status"])).unwrap_or_default();
        format!("{renew}|{ready}")
    }

    async fn monitor(&self, name: &str) -> Result<Action, BoxError> {
        let period = self.ctx.options.node_monitor_period;
        let grace = self.ctx.options.node_monitor_grace_period;
        let Some(node) = self.nodes.store().get("", name) else {
            self.probes.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
            return Ok(Action::Done);
        };
        let beat = self.heartbeat(&node);
        let stale = {
            let mut probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
            let p =
                probes.entry(name.to_string()).or_insert_with(|| Probe { heartbeat: beat.clone(), at: Instant::now() });
            if p.heartbeat != beat {
                *p = Probe { heartbeat: beat, at: Instant::now() };
            }
            p.at.elapsed() > grace
        };
        let api = self.ctx.api("", "v1", "nodes");
        let now = now_rfc3339();
        let mut node = (*node).clone();
        if stale && mark_unknown(&mut node, &now) {
            node = match api.replace_status(name, &node).await {
                Ok(n) => n,
                Err(e) if e.code() == Some(404) => return Ok(Action::Done),
                Err(e) => return Err(e.into()),
            };
            let msg = format!("Node {name} status is now: NodeNotReady");
            self.recorder.record(&node, EventType::Normal, "NodeNotReady", &msg);
        }
        // A node that is not Ready (Unknown here, or False from its kubelet) has its pods marked not ready.
        if cond_status(&node, "Ready") != "True" {
            self.mark_pods_not_ready(name).await?;
        }
        let taints = reconcile_taints(&node, &now);
        let current = node.pointer("/spec/taints").and_then(Value::as_array).cloned().unwrap_or_default();
        if taints != current {
            node["spec"]["taints"] = json!(taints);
            if taints.is_empty()
                && let Some(spec) = node["spec"].as_object_mut()
            {
                spec.remove("taints");
            }
            match api.replace(name, &node).await {
                Ok(_) => {}
                Err(e) if e.code() == Some(404) => return Ok(Action::Done),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Action::RequeueAfter(period))
    }

    /// Upstream's MarkPodsNotReady: the Ready condition of every pod on the node turns False.
    async fn mark_pods_not_ready(&self, node: &str) -> Result<(), BoxError> {
        let now = now_rfc3339();
        for pod in self.pods.store().by_index(NODE_INDEX, node) {
            let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default();
            if matches!(phase, "Succeeded" | "Failed") {
                continue;
            }
            let mut conds = pod.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
            let Some(ready) = conds.iter_mut().find(|c| c["type"] == "Ready") else { continue };
            if ready["status"] == "False" {
                continue;
            }
            ready["status"] = json!("False");
            ready["lastTransitionTime"] = json!(now);
            let api: Api = self.ctx.api("", "v1", "pods").namespaced(runtime::namespace(&pod));
            let patch = json!({"metadata": {"resourceVersion": runtime::resource_version(&pod)}, "status": {"conditions": conds}});
            match api.patch_status(runtime::name(&pod), api_types::patch::PatchType::Merge, &patch).await {
                Ok(_) => self.recorder.record(&pod, EventType::Warning, "NodeNotReady", "Node is not ready"),
                Err(e) if matches!(e.code(), Some(404 | 409)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn evict(&self, key: &str) -> Result<Action, BoxError> {
        let Some(pod) = self.pods.store().get_by_key(key) else { return Ok(Action::Done) };
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(Action::Done);
        }
        let Some(node) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
            return Ok(Action::Done);
        };
        let Some(node) = self.nodes.store().get("", node) else { return Ok(Action::Done) };
        let taints = node.pointer("/spec/taints").and_then(Value::as_array).cloned().unwrap_or_default();
        match eviction(&pod, &taints, Timestamp::now()) {
            Eviction::Keep => Ok(Action::Done),
            Eviction::After(d) => Ok(Action::RequeueAfter(d + Duration::from_millis(50))),
            Eviction::Now => {
                let (ns, name) = (runtime::namespace(&pod), runtime::name(&pod));
                let api = self.ctx.api("", "v1", "pods").namespaced(ns);
                let mut conds =
                    pod.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
                conds.retain(|c| c["type"] != "DisruptionTarget");
                conds.push(json!({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                    "message": "Taint manager: deleting due to NoExecute taint", "lastTransitionTime": now_rfc3339()}));
                let patch = json!({"status": {"conditions": conds}});
                match api.patch_status(name, api_types::patch::PatchType::Merge, &patch).await {
                    Ok(_) => {}
                    Err(e) if e.code() == Some(404) => return Ok(Action::Done),
                    Err(e) => return Err(e.into()),
                }
                self.recorder.record(
                    &pod,
                    EventType::Normal,
                    "TaintManagerEviction",
                    &format!("Marking for deletion Pod {ns}/{name}"),
                );
                match api.delete(name, None).await {
                    Ok(_) => Ok(Action::Done),
                    Err(e) if e.code() == Some(404) => Ok(Action::Done),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn tolerations_match_as_upstream() {
        let taint = json!({"key": "k", "value": "v", "effect": "NoExecute"});
        assert!(tolerates(&json!({"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute"}), &taint));
        assert!(tolerates(&json!({"key": "k", "value": "v"}), &taint));
        assert!(tolerates(&json!({"key": "k", "operator": "Exists"}), &taint));
        assert!(tolerates(&json!({"operator": "Exists"}), &taint));
        assert!(!tolerates(&json!({"key": "k", "value": "w"}), &taint));
        assert!(!tolerates(&json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"}), &taint));
        assert!(!tolerates(&json!({"key": "other", "operator": "Exists"}), &taint));
    }

    #[test]
    fn eviction_waits_for_the_shortest_toleration() {
        let now = ts("2024-01-01T00:00:10Z");
        let taint = json!({"key": TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": "2024-01-01T00:00:00Z"});
        let pod = |tol: Value| json!({"spec": {"tolerations": tol}});
        assert_eq!(eviction(&pod(json!([])), std::slice::from_ref(&taint), now), Eviction::Now);
        let t = |s: i64| json!({"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": s});
        assert_eq!(
            eviction(&pod(json!([t(300)])), std::slice::from_ref(&taint), now),
            Eviction::After(Duration::from_secs(290))
        );
        assert_eq!(eviction(&pod(json!([t(5)])), std::slice::from_ref(&taint), now), Eviction::Now);
        let forever = json!({"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute"});
        assert_eq!(eviction(&pod(json!([forever])), std::slice::from_ref(&taint), now), Eviction::Keep);
        let no_schedule = json!({"key": "x", "effect": "NoSchedule"});
        assert_eq!(eviction(&pod(json!([])), &[no_schedule], now), Eviction::Keep);
    }

    #[test]
    fn taints_follow_conditions_and_keep_others() {
        let now = "2024-01-01T00:00:00Z";
        let node = json!({"spec": {"unschedulable": true, "taints": [
                {"key": "mine", "effect": "NoSchedule"},
                {"key": TAINT_NOT_READY, "effect": "NoExecute", "timeAdded": "x"}]},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}, {"type": "DiskPressure", "status": "True"}]}});
        let t = reconcile_taints(&node, now);
        let keys: Vec<String> =
            t.iter().map(|t| format!("{}:{}", t["key"].as_str().unwrap(), t["effect"].as_str().unwrap())).collect();
        assert_eq!(
            keys,
            vec![
                "mine:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute",
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/disk-pressure:NoSchedule",
                "node.kubernetes.io/unschedulable:NoSchedule"
            ]
        );
        assert_eq!(t[1]["timeAdded"], now);
        let healthy = json!({"spec": {"taints": t}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(reconcile_taints(&healthy, now), vec![json!({"key": "mine", "effect": "NoSchedule"})]);
    }

    #[test]
    fn stale_nodes_turn_unknown() {
        let mut node =
            json!({"status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "h"}]}});
        assert!(mark_unknown(&mut node, "now"));
        let ready = condition(&node, "Ready").unwrap();
        assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("Unknown"), Some("NodeStatusUnknown")));
        assert_eq!(ready["message"], "Kubelet stopped posting node status.");
        assert_eq!(ready["lastHeartbeatTime"], "h");
        assert_eq!(cond_status(&node, "MemoryPressure"), "Unknown");
        assert!(!mark_unknown(&mut node, "later"));
        let mut fresh = json!({});
        assert!(mark_unknown(&mut fresh, "now"));
        assert_eq!(condition(&fresh, "Ready").unwrap()["reason"], "NodeStatusNeverUpdated");
    }
}
