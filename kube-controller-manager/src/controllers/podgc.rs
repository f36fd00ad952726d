//! `podgc`: deletes pods nothing else will, as upstream's `pkg/controller/podgc`. Every 20 s (`gcCheckPeriod`):
//!
//! - terminated pods (phase neither Pending, Running nor Unknown) above `--terminated-pod-gc-threshold` (0: no
//!   limit) are deleted, evicted ones (`status.reason: Evicted`) first, then the oldest by creationTimestamp;
//! - pods bound to a node that does not exist are deleted once the node has been missing for the 40 s quarantine
//!   and a live GET confirms it is gone; they are first marked Failed with the `DisruptionTarget` condition
//!   (reason `DeletionByPodGC`, message `PodGC: node no longer exists`);
//! - unscheduled pods being deleted (nothing would ever finish their graceful deletion) are deleted.
//!
//! Every deletion uses a zero grace period, as upstream.
//!
//! Deliberate gaps: terminating pods on not-ready nodes tainted `node.kubernetes.io/out-of-service` are not
//! force-deleted (upstream's `gcTerminating`); no podgc metrics.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use api_types::patch::PatchType;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{BoxError, Context, stopped};

pub const GC_CHECK_PERIOD: Duration = Duration::from_secs(20);
pub const QUARANTINE: Duration = Duration::from_secs(40);

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default()
}

/// Upstream's `isPodTerminated`.
pub fn is_terminated(pod: &Value) -> bool {
    !matches!(phase(pod), "" | "Pending" | "Running" | "Unknown")
}

fn evicted(pod: &Value) -> bool {
    pod.pointer("/status/reason").and_then(Value::as_str) == Some("Evicted")
}

/// Upstream's `byEvictionAndCreationTimestamp`.
fn eviction_then_age(a: &Value, b: &Value) -> Ordering {
    let created = |p: &Value| {
        p.pointer("/metadata/creationTimestamp").and_then(Value::as_str).and_then(|t| t.parse::<jiff::Timestamp>().ok())
    };
    evicted(b)
        .cmp(&evicted(a))
        .then_with(|| created(a).cmp(&created(b)))
        .then_with(|| runtime::name(a).cmp(runtime::name(b)))
}

/// The terminated pods to delete so that at most `threshold` remain.
pub fn terminated_to_delete(pods: &[Arc<Value>], threshold: usize) -> Vec<Arc<Value>> {
    if threshold == 0 {
        return Vec::new();
    }
    let mut terminated: Vec<Arc<Value>> = pods.iter().filter(|p| is_terminated(p)).cloned().collect();
    let count = terminated.len().saturating_sub(threshold);
    if count == 0 {
        return Vec::new();
    }
    terminated.sort_by(|a, b| eviction_then_age(a, b));
    terminated.truncate(count);
    terminated
}

fn node_name(pod: &Value) -> &str {
    pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default()
}

struct PodGc {
    ctx: Arc<Context>,
    /// Nodes seen missing, with when they were first missed.
    quarantine: HashMap<String, Instant>,
}

impl PodGc {
    async fn delete(&self, pod: &Value) -> Result<(), BoxError> {
        let api = self.ctx.api("", "v1", "pods").namespaced(runtime::namespace(pod));
        let opts = json!({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
            "preconditions": {"uid": runtime::uid(pod)}});
        tracing::info!(pod = %runtime::object_key(pod), "podgc: deleting");
        match api.delete(runtime::name(pod), Some(&opts)).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.code(), Some(404 | 409)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Upstream's `markFailedAndDeletePodWithCondition`.
    async fn fail_and_delete(&self, pod: &Value, condition: Option<Value>) -> Result<(), BoxError> {
        if !is_terminated(pod) {
            let mut conditions =
                pod.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
            if let Some(c) = condition {
                conditions.retain(|x| x["type"] != c["type"]);
                conditions.push(c);
            }
            let api = self.ctx.api("", "v1", "pods").namespaced(runtime::namespace(pod));
            let patch = json!({"status": {"phase": "Failed", "conditions": conditions}});
            match api.patch_status(runtime::name(pod), PatchType::Merge, &patch).await {
                Ok(_) => {}
                Err(e) if e.code() == Some(404) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        self.delete(pod).await
    }

    async fn node_exists(&self, name: &str) -> Result<bool, BoxError> {
        match self.ctx.api("", "v1", "nodes").get(name).await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some(404) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn gc(&mut self, pods: &[Arc<Value>], nodes: &HashSet<String>) -> Result<(), BoxError> {
        for pod in terminated_to_delete(pods, self.ctx.options.terminated_pod_gc_threshold) {
            self.delete(&pod).await?;
        }
        // Orphaned pods: their node missing past the quarantine, and confirmed gone.
        let now = Instant::now();
        let missing: HashSet<&str> =
            pods.iter().map(|p| node_name(p)).filter(|n| !n.is_empty() && !nodes.contains(*n)).collect();
        self.quarantine.retain(|n, _| missing.contains(n.as_str()));
        for n in &missing {
            self.quarantine.entry(n.to_string()).or_insert(now);
        }
        let mut deleted_nodes = HashSet::new();
        for (n, since) in &self.quarantine {
            if now.duration_since(*since) >= QUARANTINE && !self.node_exists(n).await? {
                deleted_nodes.insert(n.clone());
            }
        }
        for pod in pods.iter().filter(|p| deleted_nodes.contains(node_name(p))) {
            let condition = json!({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
                "message": "PodGC: node no longer exists", "lastTransitionTime": jiff::Timestamp::now().round(jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default()});
            self.fail_and_delete(pod, Some(condition)).await?;
        }
        // Unscheduled pods being deleted.
        for pod in pods.iter().filter(|p| node_name(p).is_empty() && p.pointer("/metadata/deletionTimestamp").is_some())
        {
            self.fail_and_delete(pod, None).await?;
        }
        Ok(())
    }
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let pods = ctx.informer("", "v1", "pods");
    let nodes = ctx.informer("", "v1", "nodes");
    let synced = async { pods.wait_synced().await && nodes.wait_synced().await };
    tokio::select! {
        ok = synced => if !ok { return },
        _ = stopped(stop.clone()) => return,
    }
    let mut gc = PodGc { ctx: ctx.clone(), quarantine: HashMap::new() };
    loop {
        let node_names: HashSet<String> = nodes.store().list().iter().map(|n| runtime::name(n).to_string()).collect();
        if let Err(e) = gc.gc(&pods.store().list(), &node_names).await {
            tracing::warn!(error = %e, "podgc: pass failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(GC_CHECK_PERIOD) => {}
            _ = stopped(stop.clone()) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, phase: &str, created: &str) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": name, "creationTimestamp": created}, "status": {"phase": phase}}))
    }

    #[test]
    fn the_oldest_terminated_pods_above_the_threshold_go_evicted_first() {
        let mut evicted = (*pod("evicted", "Failed", "2026-01-05T00:00:00Z")).clone();
        evicted["status"]["reason"] = json!("Evicted");
        let pods = vec![
            pod("new", "Succeeded", "2026-01-04T00:00:00Z"),
            pod("running", "Running", "2026-01-01T00:00:00Z"),
            pod("old", "Failed", "2026-01-02T00:00:00Z"),
            pod("mid", "Succeeded", "2026-01-03T00:00:00Z"),
            Arc::new(evicted),
        ];
        let names = |v: Vec<Arc<Value>>| v.iter().map(|p| runtime::name(p).to_string()).collect::<Vec<_>>();
        assert_eq!(names(terminated_to_delete(&pods, 2)), vec!["evicted", "old"]);
        assert_eq!(names(terminated_to_delete(&pods, 4)), Vec::<String>::new());
        assert_eq!(names(terminated_to_delete(&pods, 0)), Vec::<String>::new());
        assert!(!is_terminated(&pods[1]));
        assert!(!is_terminated(&json!({})));
    }
}
