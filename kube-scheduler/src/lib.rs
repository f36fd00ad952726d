//! kube-scheduler: assigns each pending pod to a node, in upstream's shape.
//!
//! Informers feed a [`cache::Cache`] of nodes and bound pods and a [`queue::Queue`] of pods to schedule. One loop
//! pops the highest-priority pod, takes a snapshot of the cache, runs the profile's filter plugins over the nodes
//! (from a rotating start, in parallel, stopping once `percentageOfNodesToScore` worth of feasible nodes are
//! found), scores those, picks the best (ties broken at random), *assumes* the pod on that node in the cache, and
//! binds it through `pods/binding` in the background. A pod that fits nowhere gets a FailedScheduling event and a
//! PodScheduled=False condition with upstream's message, may preempt lower-priority pods, and waits in the queue
//! for a cluster event.

pub mod cache;
pub mod config;
pub mod model;
pub mod options;
pub mod plugins;
pub mod preemption;
pub mod queue;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use client::Client;
use runtime::daemon::Metrics;
use runtime::events::{EventType, Recorder};
use runtime::{InformerParams, Notification, SharedInformerFactory};
use serde_json::{Value, json};
use tokio::sync::watch;

pub use config::SchedulerConfig;
pub use options::Options;

use crate::cache::{Cache, Snapshot};
use crate::config::Profile;
use crate::model::{NodeInfo, PodInfo};
use crate::plugins::{CycleState, Failure};
use crate::queue::{Queue, QueuedPod};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Upstream's adaptive share of nodes to find feasible before scoring.
pub fn num_feasible_nodes_to_find(percentage: u32, all: usize) -> usize {
    const MIN_FEASIBLE: usize = 100;
    if all < MIN_FEASIBLE {
        return all;
    }
    let mut pct = percentage as i64;
    if pct == 0 {
        pct = (50 - all as i64 / 125).max(5);
    }
    ((all as i64 * pct / 100) as usize).max(MIN_FEASIBLE).min(all)
}

/// "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {k: v}."
pub fn fit_error(total: usize, failures: &HashMap<String, Failure>) -> String {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for f in failures.values() {
        for r in &f.reasons {
            *counts.entry(r.as_str()).or_default() += 1;
        }
    }
    let mut parts: Vec<String> = counts.into_iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    format!("0/{total} nodes are available: {}.", parts.join(", "))
}

pub struct Scheduler {
    client: Client,
    pub cache: Mutex<Cache>,
    pub queue: Queue,
    pub config: SchedulerConfig,
    recorder: Recorder,
    pub metrics: Metrics,
    next_start: AtomicUsize,
    /// PodDisruptionBudgets, weighed by preemption (set when the informers start).
    pdbs: std::sync::OnceLock<runtime::Store>,
    /// Pods the scheduler knows, unscheduled ones included, by UID (for binding the latest version).
    threads: usize,
}

fn lock(c: &Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

fn relevant_node_change(old: &Value, new: &Value) -> bool {
    ["/spec/unschedulable", "/spec/taints", "/metadata/labels", "/status/allocatable", "/status/images"]
        .iter()
        .any(|p| old.pointer(p) != new.pointer(p))
}

impl Scheduler {
    pub fn new(client: Client, config: SchedulerConfig) -> Result<Arc<Self>, BoxError> {
        let recorder = Recorder::new(&client, "default-scheduler", "")?;
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(config.parallelism).max(1);
        Ok(Arc::new(Scheduler {
            queue: Queue::new(config.pod_initial_backoff, config.pod_max_backoff),
            cache: Mutex::default(),
            client,
            config,
            recorder,
            metrics: Metrics::default(),
            next_start: AtomicUsize::new(0),
            pdbs: std::sync::OnceLock::new(),
            threads,
        }))
    }

    fn profile(&self, pod: &Value) -> Option<&Profile> {
        let name = pod.pointer("/spec/schedulerName").and_then(Value::as_str).unwrap_or("default-scheduler");
        self.config.profiles.iter().find(|p| p.scheduler_name == name)
    }

    /// Whether the pod waits for this scheduler.
    pub fn responsible(&self, pod: &Value) -> bool {
        pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default().is_empty()
            && pod.pointer("/metadata/deletionTimestamp").is_none()
            && !matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"))
            && self.profile(pod).is_some()
    }

    fn on_pod(&self, n: &Notification) {
        match n {
            Notification::Deleted(p) => {
                let assigned = !p.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default().is_empty();
                lock(&self.cache).remove_pod(runtime::uid(p));
                self.queue.delete(runtime::uid(p));
                if assigned {
                    self.queue.move_all();
                }
            }
            Notification::Added(p) | Notification::Updated { new: p, .. } | Notification::Resync(p) => {
                let bound = !p.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default().is_empty();
                if bound {
                    self.queue.delete(runtime::uid(p));
                    lock(&self.cache).upsert_pod(p.clone());
                    let terminal = |v: &Value| {
                        matches!(v.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"))
                    };
                    if n.old().is_some_and(|o| !terminal(o)) && terminal(p) {
                        self.queue.move_all();
                    }
                } else if self.responsible(p) {
                    if !matches!(n, Notification::Resync(_)) {
                        self.queue.add(p.clone());
                    }
                } else {
                    self.queue.delete(runtime::uid(p));
                }
            }
        }
    }

    fn on_node(&self, n: &Notification) {
        match n {
            Notification::Deleted(node) => lock(&self.cache).remove_node(runtime::name(node)),
            Notification::Added(node) => {
                lock(&self.cache).upsert_node(node.clone());
                self.queue.move_all();
            }
            Notification::Updated { old, new } => {
                lock(&self.cache).upsert_node(new.clone());
                if relevant_node_change(old, new) {
                    self.queue.move_all();
                }
            }
            Notification::Resync(_) => {}
        }
    }

    /// Runs the filters over the snapshot's nodes from a rotating start until enough feasible nodes are found.
    fn find_feasible(
        &self,
        profile: &Profile,
        st: &CycleState,
        snap: &Snapshot,
    ) -> (Vec<Arc<NodeInfo>>, HashMap<String, Failure>) {
        let all = snap.nodes.len();
        if all == 0 {
            return (Vec::new(), HashMap::new());
        }
        let pct = profile.percentage_of_nodes_to_score.unwrap_or(self.config.percentage_of_nodes_to_score);
        let want = num_feasible_nodes_to_find(pct, all);
        let start = self.next_start.load(Ordering::Relaxed) % all;
        const CHUNK: usize = 64;
        let next = AtomicUsize::new(0);
        let found = AtomicUsize::new(0);
        let work = || {
            let mut feasible = Vec::new();
            let mut failures = Vec::new();
            let mut processed = 0;
            loop {
                let c = next.fetch_add(CHUNK, Ordering::Relaxed);
                if c >= all || found.load(Ordering::Relaxed) >= want {
                    break;
                }
                for i in c..(c + CHUNK).min(all) {
                    let node = &snap.nodes[(start + i) % all];
                    processed = processed.max(i + 1);
                    match plugins::filter(profile, st, node) {
                        Ok(()) => {
                            feasible.push((i, node.clone()));
                            if found.fetch_add(1, Ordering::Relaxed) + 1 >= want {
                                break;
                            }
                        }
                        Err(f) => failures.push((node.name.clone(), f)),
                    }
                }
            }
            (feasible, failures, processed)
        };
        // Threads only pay off on large clusters (starting them costs tens of microseconds per cycle).
        let parts: Vec<_> = if self.threads > 1 && all >= 2000 {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..self.threads).map(|_| s.spawn(work)).collect();
                handles.into_iter().filter_map(|h| h.join().ok()).collect()
            })
        } else {
            vec![work()]
        };
        let mut feasible = Vec::new();
        let mut failures = HashMap::new();
        let mut processed = 0;
        for (f, fails, p) in parts {
            feasible.extend(f);
            failures.extend(fails);
            processed = processed.max(p);
        }
        feasible.sort_by_key(|(i, _)| *i);
        feasible.truncate(want);
        self.next_start.store((start + processed) % all, Ordering::Relaxed);
        (feasible.into_iter().map(|(_, n)| n).collect(), failures)
    }

    /// One scheduling cycle for one pod.
    async fn schedule_one(self: &Arc<Self>, q: QueuedPod, pods: &runtime::Store) {
        let uid = runtime::uid(&q.pod).to_string();
        // Work on the latest version; skip pods that went away or got a node meanwhile.
        let Some(pod) = pods.get(runtime::namespace(&q.pod), runtime::name(&q.pod)) else {
            self.queue.delete(&uid);
            return;
        };
        if runtime::uid(&pod) != uid || !self.responsible(&pod) || lock(&self.cache).is_assumed(&uid) {
            self.queue.delete(&uid);
            return;
        }
        let Some(profile) = self.profile(&pod) else { return };
        let started = std::time::Instant::now();
        let snap = lock(&self.cache).snapshot();
        let st = CycleState::new(PodInfo::new(pod.clone()), &snap, profile);
        // A nominated node (from an earlier preemption) is tried first.
        let nominated = pod.pointer("/status/nominatedNodeName").and_then(Value::as_str).unwrap_or_default();
        let chosen = snap
            .nodes
            .iter()
            .find(|n| n.name == nominated)
            .filter(|n| plugins::filter(profile, &st, n).is_ok())
            .map(|n| n.name.clone());
        let (chosen, failures) = match chosen {
            Some(c) => (Some(c), HashMap::new()),
            None => {
                let (feasible, failures) = self.find_feasible(profile, &st, &snap);
                let chosen = match feasible.len() {
                    0 => None,
                    1 => Some(feasible[0].name.clone()),
                    _ => {
                        let refs: Vec<&NodeInfo> = feasible.iter().map(|n| n.as_ref()).collect();
                        let scores = plugins::score(profile, &st, &refs);
                        select_host(&refs, &scores)
                    }
                };
                (chosen, failures)
            }
        };
        self.metrics.add("scheduler_scheduling_attempt_duration_seconds_sum", started.elapsed().as_secs_f64());
        match chosen {
            Some(node) => {
                // Release the snapshot first: the cache then updates the node in place instead of copying it.
                drop((st, snap));
                lock(&self.cache).assume(&pod, &node);
                self.queue.delete(&uid);
                self.metrics.add("scheduler_schedule_attempts_total{result=\"scheduled\"}", 1.0);
                let this = self.clone();
                tokio::spawn(async move { this.bind(pod, node).await });
            }
            None => {
                self.metrics.add("scheduler_schedule_attempts_total{result=\"unschedulable\"}", 1.0);
                let mut msg = fit_error(snap.nodes.len(), &failures);
                let pdbs = self.pdbs.get().map(|s| s.list()).unwrap_or_default();
                match preemption::preempt(profile, &st, &snap, &failures, &pdbs) {
                    preemption::Outcome::Preempt(c) => {
                        self.preempt(&pod, &c).await;
                        msg.push_str(&format!(" preemption: nominated node {}.", c.node));
                    }
                    preemption::Outcome::NotHelpful(m) if !m.is_empty() => {
                        msg.push(' ');
                        msg.push_str(&m);
                    }
                    preemption::Outcome::NotHelpful(_) => {}
                }
                if snap.nodes.is_empty() {
                    msg = "no nodes available to schedule pods".into();
                }
                self.queue.unschedulable(&uid);
                self.record_failure(&pod, &msg).await;
            }
        }
    }

    async fn bind(self: Arc<Self>, pod: Arc<Value>, node: String) {
        let (ns, name, uid) = (runtime::namespace(&pod), runtime::name(&pod), runtime::uid(&pod));
        let binding = json!({"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": ns, "uid": uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
        let path = format!("/api/v1/namespaces/{ns}/pods/{name}/binding");
        let body = Bytes::from(binding.to_string());
        match self.client.request(http::Method::POST, &path, Some((body, "application/json"))).await {
            Ok(_) => {
                self.metrics.add("scheduler_pods_bound_total", 1.0);
                self.recorder.record(
                    &pod,
                    EventType::Normal,
                    "Scheduled",
                    &format!("Successfully assigned {ns}/{name} to {node}"),
                );
            }
            Err(e) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), %node, error = %e, "binding failed");
                lock(&self.cache).forget(uid);
                if e.code() != Some(404) {
                    self.queue.add(pod.clone());
                    self.queue.retry(uid);
                }
            }
        }
    }

    /// Nominates the node on the preemptor and deletes the victims.
    async fn preempt(&self, pod: &Arc<Value>, c: &preemption::Candidate) {
        let (ns, name) = (runtime::namespace(pod), runtime::name(pod));
        if let Ok(api) = self.client.api("", "v1", "pods") {
            let patch = json!({"status": {"nominatedNodeName": c.node}});
            if let Err(e) =
                api.clone().namespaced(ns).patch_status(name, api_types::patch::PatchType::Merge, &patch).await
            {
                tracing::warn!(error = %e, "setting nominatedNodeName");
            }
            for v in &c.victims {
                self.recorder.record(
                    &v.pod,
                    EventType::Normal,
                    "Preempted",
                    &format!("Preempted by pod {} on node {}", runtime::uid(pod), c.node),
                );
                // As upstream's preemption: the victim learns why it goes (DisruptionTarget) before it is deleted.
                let scheduler =
                    pod.pointer("/spec/schedulerName").and_then(Value::as_str).unwrap_or("default-scheduler");
                let condition = json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "True",
                    "lastProbeTime": null, "lastTransitionTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    "reason": "PreemptionByScheduler",
                    "message": format!("{scheduler}: preempting to accommodate a higher priority pod")}]}});
                let victims = api.clone().namespaced(&v.namespace);
                if let Err(e) =
                    victims.patch_status(&v.name, api_types::patch::PatchType::StrategicMerge, &condition).await
                    && e.code() != Some(404)
                {
                    tracing::warn!(victim = %v.name, error = %e, "marking a preemption victim");
                }
                let opts = json!({"preconditions": {"uid": v.uid}});
                match victims.delete(&v.name, Some(&opts)).await {
                    Ok(_) => {}
                    Err(e) if e.code() == Some(404) => {}
                    Err(e) => tracing::warn!(victim = %v.name, error = %e, "deleting a preemption victim"),
                }
            }
        }
        self.metrics.add("scheduler_preemption_attempts_total", 1.0);
        self.metrics.add("scheduler_preemption_victims", c.victims.len() as f64);
    }

    /// FailedScheduling event and the PodScheduled=False condition (written only when its message changes).
    async fn record_failure(&self, pod: &Arc<Value>, msg: &str) {
        self.recorder.record(pod, EventType::Warning, "FailedScheduling", msg);
        let current = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled"));
        if current.is_some_and(|c| c["status"] == "False" && c["message"] == msg) {
            return;
        }
        let cond = json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg,
            "lastProbeTime": null, "lastTransitionTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()});
        let patch = json!({"status": {"conditions": [cond]}});
        if let Ok(api) = self.client.api("", "v1", "pods") {
            let api = api.namespaced(runtime::namespace(pod));
            if let Err(e) =
                api.patch_status(runtime::name(pod), api_types::patch::PatchType::StrategicMerge, &patch).await
                && e.code() != Some(404)
            {
                tracing::warn!(error = %e, "updating PodScheduled");
            }
        }
    }

    /// Schedules until `stop`: informers into the cache and queue, the backoff flusher, the scheduling loop.
    pub async fn run(self: Arc<Self>, factory: SharedInformerFactory, stop: watch::Receiver<bool>) {
        let (Ok(pods), Ok(nodes)) = (
            factory.informer_for("", "v1", "pods", InformerParams::all()),
            factory.informer_for("", "v1", "nodes", InformerParams::all()),
        ) else {
            tracing::error!("no informers for pods and nodes");
            return;
        };
        match factory.informer_for("policy", "v1", "poddisruptionbudgets", InformerParams::all()) {
            Ok(pdbs) => {
                let _ = self.pdbs.set(pdbs.store().clone());
            }
            Err(e) => tracing::warn!(error = %e, "no PodDisruptionBudget informer; preemption ignores budgets"),
        }
        let mut pod_events = pods.subscribe();
        let mut node_events = nodes.subscribe();
        let this = self.clone();
        let feeder = tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(n) = node_events.recv() => this.on_node(&n),
                    Some(n) = pod_events.recv() => this.on_pod(&n),
                    else => return,
                }
            }
        });
        let this = self.clone();
        let flusher = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                this.queue.flush();
                let (a, b, u) = this.queue.counts();
                this.metrics.set("scheduler_pending_pods{queue=\"active\"}", a as f64);
                this.metrics.set("scheduler_pending_pods{queue=\"backoff\"}", b as f64);
                this.metrics.set("scheduler_pending_pods{queue=\"unschedulable\"}", u as f64);
            }
        });
        let synced = tokio::select! {
            ok = async { pods.wait_synced().await && nodes.wait_synced().await } => ok,
            _ = stopped(stop.clone()) => false,
        };
        if synced {
            tracing::info!("caches synced; scheduling");
            let store = pods.store().clone();
            let looping = async {
                while let Some(q) = self.queue.pop().await {
                    self.schedule_one(q, &store).await;
                }
            };
            tokio::select! {
                _ = looping => {}
                _ = stopped(stop) => {}
            }
        }
        self.queue.close();
        feeder.abort();
        flusher.abort();
    }
}

/// The node with the highest score; among equals, one at random (reservoir sampling).
fn select_host(nodes: &[&NodeInfo], scores: &[i64]) -> Option<String> {
    let mut best: Option<(i64, usize)> = None;
    let mut ties = 0u32;
    for (i, s) in scores.iter().enumerate() {
        match best {
            Some((b, _)) if *s < b => {}
            Some((b, _)) if *s == b => {
                ties += 1;
                if runtime::backoff::random_fraction() < 1.0 / ties as f64 {
                    best = Some((*s, i));
                }
            }
            _ => {
                best = Some((*s, i));
                ties = 1;
            }
        }
    }
    best.map(|(_, i)| nodes[i].name.clone())
}

pub use runtime::daemon::stopped;

/// Runs kube-scheduler until `stop`: configuration, health port, leader election, scheduling.
pub async fn run(opts: Options, stop: watch::Receiver<bool>) -> Result<(), BoxError> {
    let mut config = match &opts.config {
        Some(p) => {
            SchedulerConfig::parse(&std::fs::read_to_string(p).map_err(|e| format!("--config {}: {e}", p.display()))?)?
        }
        None => SchedulerConfig::default(),
    };
    if let Some(le) = opts.leader_elect {
        config.leader_election.leader_elect = le;
    }
    let kubeconfig = config.kubeconfig.clone().or(opts.kubeconfig.clone());
    let cfg = match &kubeconfig {
        Some(p) => client::Config::from_kubeconfig(p)?,
        None => client::Config::infer()?,
    };
    let client = Client::new(&cfg)?;
    let scheduler = Scheduler::new(client.clone(), config.clone())?;
    let (ready_tx, ready_rx) = watch::channel(false);
    if opts.secure_port != 0 {
        let addr = std::net::SocketAddr::new(opts.bind_address, opts.secure_port);
        let (metrics, stop) = (scheduler.metrics.clone(), stop.clone());
        let auth = runtime::delegating_auth::DelegatingAuth::new(opts.delegating.clone())?;
        tokio::spawn(async move {
            if let Err(e) = runtime::daemon::serve_health(addr, "kube-scheduler", metrics, ready_rx, auth, stop).await {
                tracing::error!(error = %e, "health port");
            }
        });
    }
    ready_tx.send_replace(true);
    let factory = SharedInformerFactory::new(client.clone());
    let le = &config.leader_election;
    if !le.leader_elect {
        scheduler.run(factory.clone(), stop).await;
        factory.shutdown();
        return Ok(());
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let identity = format!("{}_{}", host.trim(), uuid::Uuid::new_v4());
    let elector = runtime::leader_election::LeaderElector::new(
        &client,
        &le.resource_namespace,
        &le.resource_name,
        &identity,
        runtime::leader_election::Config {
            lease_duration: le.lease_duration,
            renew_deadline: le.renew_deadline,
            retry_period: le.retry_period,
            release_on_cancel: true,
        },
    )?;
    let (inner_tx, inner_rx) = watch::channel(false);
    let lead = async {
        tracing::info!(%identity, "became leader");
        scheduler.clone().run(factory.clone(), inner_rx).await;
    };
    let outcome = elector.run(lead, stopped(stop.clone())).await;
    inner_tx.send_replace(true);
    factory.shutdown();
    if outcome == runtime::leader_election::Outcome::LostLeadership {
        return Err("leader election lost".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_percentage_of_nodes_to_score() {
        assert_eq!(num_feasible_nodes_to_find(0, 50), 50);
        assert_eq!(num_feasible_nodes_to_find(0, 1000), 420);
        assert_eq!(num_feasible_nodes_to_find(0, 5000), 500);
        assert_eq!(num_feasible_nodes_to_find(0, 200), 100);
        assert_eq!(num_feasible_nodes_to_find(30, 1000), 300);
    }

    #[test]
    fn fit_errors_read_as_upstream() {
        let f = |r: &str, resolvable| Failure { reasons: vec![r.to_string()], resolvable };
        let failures = HashMap::from([
            ("a".to_string(), f("Insufficient cpu", true)),
            ("b".to_string(), f("node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }", false)),
            ("c".to_string(), f("node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }", false)),
        ]);
        assert_eq!(
            fit_error(3, &failures),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }."
        );
    }
}
