//! The scheduler against an in-process kube-apiserver with Node objects (no kubelets: nothing needs to run).

use std::sync::Arc;
use std::time::Duration;

use api_types::patch::PatchType;
use kube_apiserver::testing::TestApiserver;
use kube_scheduler::{Scheduler, SchedulerConfig};
use serde_json::{Value, json};

fn node(name: &str, cpu: &str, extra: Value) -> Value {
    let mut n = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}, "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]}});
    if let Some(spec) = extra.get("spec") {
        n["spec"] = spec.clone();
    }
    n
}

fn pod(name: &str, cpu: &str, extra: Value) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]}});
    if let Some(o) = extra.as_object() {
        for (k, v) in o {
            p["spec"][k] = v.clone();
        }
    }
    p
}

struct Env {
    api: TestApiserver,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Env {
    async fn start() -> Self {
        let api = TestApiserver::start().await;
        let mut cfg = SchedulerConfig::default();
        cfg.leader_election.leader_elect = false;
        let scheduler: Arc<Scheduler> = Scheduler::new(api.new_client(), cfg).unwrap();
        let factory = runtime::SharedInformerFactory::new(api.new_client());
        let (stop, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(scheduler.run(factory, rx));
        Env { api, stop }
    }

    fn api(&self, plural: &str) -> client::Api {
        let a = self.api.client.api("", "v1", plural).unwrap();
        if plural == "nodes" { a } else { a.namespaced("default") }
    }

    async fn until(&self, secs: u64, what: &str, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let pods = self.api("pods");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        let mut last = Value::Null;
        loop {
            if let Ok(p) = pods.get(name).await {
                if pred(&p) {
                    return p;
                }
                last = p;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}; last: {last:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn node_of(p: &Value) -> &str {
    p.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_bound_spread_and_explained_when_they_fit_nowhere() {
    let env = Env::start().await;
    let nodes = env.api("nodes");
    nodes.create(&node("small", "1", json!({}))).await.unwrap();
    nodes.create(&node("big", "4", json!({}))).await.unwrap();
    nodes
        .create(&node(
            "tainted",
            "8",
            json!({"spec": {"taints": [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]}}),
        ))
        .await
        .unwrap();
    let pods = env.api("pods");
    // 2 CPUs fit only on big (tainted is excluded by its taint).
    pods.create(&pod("wide", "2", json!({}))).await.unwrap();
    let p = env.until(20, "wide bound", "wide", |p| !node_of(p).is_empty()).await;
    assert_eq!(node_of(&p), "big");
    let scheduled = p["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "PodScheduled").cloned();
    assert_eq!(scheduled.unwrap()["status"], "True");
    // Tolerating the taint, the biggest free node (tainted) wins the LeastAllocated score.
    let tolerate =
        json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}]});
    pods.create(&pod("tolerant", "1", tolerate)).await.unwrap();
    let p = env.until(20, "tolerant bound", "tolerant", |p| !node_of(p).is_empty()).await;
    assert_eq!(node_of(&p), "tainted");
    // Too big for anything: PodScheduled False with upstream's message, and a FailedScheduling event.
    pods.create(&pod("huge", "16", json!({}))).await.unwrap();
    let p = env
        .until(20, "huge unschedulable", "huge", |p| {
            p["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["reason"] == "Unschedulable"))
        })
        .await;
    let cond =
        p["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "PodScheduled").unwrap().clone();
    assert_eq!(cond["status"], "False");
    let msg = cond["message"].as_str().unwrap();
    assert!(
        msg.starts_with(
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: infra}, 2 Insufficient cpu."
        ),
        "{msg}"
    );
    assert!(msg.contains("preemption: 0/3 nodes are available"), "{msg}");
    let events = env.api("events").list(&Default::default()).await.unwrap();
    assert!(
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == "FailedScheduling" && e["involvedObject"]["name"] == "huge"),
        "{events:#}"
    );
    // A node that fits arrives: the pod leaves the unschedulable queue and is bound there.
    nodes.create(&node("giant", "32", json!({}))).await.unwrap();
    let p = env.until(20, "huge bound after a node arrives", "huge", |p| !node_of(p).is_empty()).await;
    assert_eq!(node_of(&p), "giant");
    // nodeSelector and unschedulable nodes.
    nodes.patch("giant", PatchType::Merge, &json!({"spec": {"unschedulable": true}})).await.unwrap();
    nodes.patch("small", PatchType::Merge, &json!({"metadata": {"labels": {"disk": "ssd"}}})).await.unwrap();
    pods.create(&pod("picky", "100m", json!({"nodeSelector": {"disk": "ssd"}}))).await.unwrap();
    let p = env.until(20, "picky bound", "picky", |p| !node_of(p).is_empty()).await;
    assert_eq!(node_of(&p), "small");
    let _ = env.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_pod_preempts_a_lower_one() {
    let env = Env::start().await;
    env.api("nodes").create(&node("only", "2", json!({}))).await.unwrap();
    let pods = env.api("pods");
    pods.create(&pod("low", "1500m", json!({}))).await.unwrap();
    env.until(20, "low bound", "low", |p| node_of(p) == "only").await;
    // system-cluster-critical is built in; the Priority admission sets spec.priority.
    pods.create(&pod("critical", "1500m", json!({"priorityClassName": "system-cluster-critical"}))).await.unwrap();
    let p = env.until(20, "critical nominated", "critical", |p| p["status"]["nominatedNodeName"] == "only").await;
    assert_eq!(p["spec"]["priority"], 2000000000);
    // The victim is being deleted; play the kubelet and finish its deletion.
    let victim = env.until(20, "low terminating", "low", |p| p["metadata"]["deletionTimestamp"].is_string()).await;
    assert!(victim["metadata"]["deletionTimestamp"].is_string());
    // Marked before its deletion, as upstream's preemption does.
    let target =
        victim["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "DisruptionTarget").cloned();
    let target = target.expect("the victim has no DisruptionTarget condition");
    assert_eq!(target["status"], "True");
    assert_eq!(target["reason"], "PreemptionByScheduler");
    assert_eq!(target["message"], "default-scheduler: preempting to accommodate a higher priority pod");
    pods.delete("low", Some(&json!({"gracePeriodSeconds": 0}))).await.unwrap();
    let p = env.until(20, "critical bound", "critical", |p| !node_of(p).is_empty()).await;
    assert_eq!(node_of(&p), "only");
    let _ = env.stop.send(true);
}
