//! `replicaset` and `replicationcontroller`: keep `spec.replicas` pods of a ReplicaSet (apps/v1) or a
//! ReplicationController (core/v1, whose selector is a plain label map) running, as upstream's
//! `pkg/controller/replicaset`:
//!
//! - pods are claimed by selector and controllerRef: a matching orphan is adopted (an ownerReference with
//!   `controller: true, blockOwnerDeletion: true`), an owned pod that stops matching is released;
//! - missing pods are created from the template (`generateName: <name>-`) in slow-start batches (1, 2, 4, ...,
//!   stopping at the first failing batch), at most 500 per sync (`burstReplicas`); extra pods are deleted in
//!   upstream's ranking (unscheduled, then pending, then not ready, then lower `pod-deletion-cost`, then
//!   doubled-up on a node, then ready for less time, then more restarts, then newest; times compared in
//!   logarithmic buckets as with `LogarithmicScaleDown`);
//! - expectations: after creating or deleting pods the controller waits until its informer has seen them all
//!   (or 5 minutes passed) before counting pods again, so a burst is never repeated;
//! - status (`replicas`, `fullyLabeledReplicas`, `readyReplicas`, `availableReplicas` honouring
//!   `minReadySeconds`, `observedGeneration`, the `ReplicaFailure` condition) through the status subresource;
//! - events `SuccessfulCreate`, `FailedCreate`, `SuccessfulDelete`, `FailedDelete` with upstream's messages.
//!
//! Deliberate gaps: the `terminatingReplicas` status field (a feature gate upstream) is not reported.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_types::patch::PatchType;
use api_types::selector::LabelSelector;
use runtime::events::{EventType, Recorder};
use runtime::{Action, Controller, Notification, Store};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::{BoxError, Context, stopped};

/// Most pods created or deleted in one sync (upstream's `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;
/// How long unmet expectations block a sync (upstream's `ExpectationsTimeout`).
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

/// The resource a replica controller manages.
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub component: &'static str,
}

pub const REPLICA_SET: Kind = Kind {
    group: "apps",
    version: "v1",
    plural: "replicasets",
    kind: "ReplicaSet",
    component: "replicaset-controller",
};
pub const REPLICATION_CONTROLLER: Kind = Kind {
    group: "",
    version: "v1",
    plural: "replicationcontrollers",
    kind: "ReplicationController",
    component: "replication-controller",
};

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The pod selector of an object of this kind (a ReplicationController's is a plain map, defaulting to the
    /// template's labels).
    pub fn selector(&self, obj: &Value) -> Result<LabelSelector, String> {
        let sel = obj.pointer("/spec/selector").cloned().unwrap_or(Value::Null);
        if self.group.is_empty() {
            let map = match sel {
                Value::Object(m) if !m.is_empty() => Value::Object(m),
                _ => obj.pointer("/spec/template/metadata/labels").cloned().unwrap_or(json!({})),
            };
            if map.as_object().is_none_or(|m| m.is_empty()) {
                return Ok(LabelSelector::nothing());
            }
            return LabelSelector::from_json(&json!({"matchLabels": map})).map_err(|e| e.to_string());
        }
        LabelSelector::from_json(&sel).map_err(|e| e.to_string())
    }
}

// ---- helpers shared by the workload controllers ----

/// The ownerReference with `controller: true`, if any.
pub fn controller_ref(obj: &Value) -> Option<&Value> {
    obj.get("metadata")?
        .get("ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
}

/// Whether `obj` is controlled by the object with `uid`.
pub fn controlled_by(obj: &Value, uid: &str) -> bool {
    controller_ref(obj).and_then(|r| r.get("uid")).and_then(Value::as_str) == Some(uid)
}

/// The controllerRef pointing at `owner` (as upstream's `NewControllerRef`).
pub fn new_controller_ref(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": runtime::name(owner), "uid": runtime::uid(owner),
        "controller": true, "blockOwnerDeletion": true})
}

/// A pod that still counts: not finished and not being deleted (upstream's `IsPodActive`).
/// (These run over every pod of a namespace in each sync: plain lookups, no allocation.)
pub fn pod_active(pod: &Value) -> bool {
    let phase = pod.get("status").and_then(|s| s.get("phase")).and_then(Value::as_str).unwrap_or_default();
    phase != "Succeeded" && phase != "Failed" && pod.get("metadata").and_then(|m| m.get("deletionTimestamp")).is_none()
}

fn ready_condition(pod: &Value) -> Option<&Value> {
    pod.get("status")?
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
}

/// The pod's Ready condition is True.
pub fn pod_ready(pod: &Value) -> bool {
    ready_condition(pod).is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("True"))
}

/// Parses an RFC 3339 time.
pub fn parse_time(v: Option<&Value>) -> Option<jiff::Timestamp> {
    v?.as_str()?.parse().ok()
}

/// When the pod became ready (its Ready condition's lastTransitionTime), if it is ready.
pub fn ready_since(pod: &Value) -> Option<jiff::Timestamp> {
    if !pod_ready(pod) {
        return None;
    }
    parse_time(ready_condition(pod).and_then(|c| c.get("lastTransitionTime")))
}

/// Ready for at least `min_ready_seconds` at `now` (upstream's `IsPodAvailable`).
pub fn pod_available(pod: &Value, min_ready_seconds: i64, now: jiff::Timestamp) -> bool {
    if !pod_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match ready_since(pod) {
        Some(t) => t.as_second() + min_ready_seconds <= now.as_second(),
        None => false,
    }
}

/// RFC 3339 of now, seconds precision as the apiserver writes them.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or_default().to_string()
}

pub fn labels(obj: &Value) -> Map<String, Value> {
    obj.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default()
}

/// A pod built from a template (upstream's `GetPodFromTemplate`): its labels, annotations, finalizers and spec,
/// in the owner's namespace, controlled by `controller_ref`.
pub fn pod_from_template(template: &Value, namespace: &str, controller_ref: Value) -> Value {
    let mut meta = Map::new();
    for k in ["labels", "annotations", "finalizers"] {
        if let Some(v) = template.pointer(&format!("/metadata/{k}")).filter(|v| !v.is_null()) {
            meta.insert(k.into(), v.clone());
        }
    }
    meta.insert("namespace".into(), json!(namespace));
    meta.insert("ownerReferences".into(), json!([controller_ref]));
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "spec": template.get("spec").cloned().unwrap_or(json!({}))})
}

/// Integer field of a spec.
pub fn int_at(obj: &Value, pointer: &str, default: i64) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(default)
}

/// Whether a pod/status change matters: the status part of `want` differs from what `obj` has.
pub fn status_differs(obj: &Value, want: &Map<String, Value>) -> bool {
    let cur = obj.get("status").and_then(Value::as_object);
    want.iter().any(|(k, v)| {
        let have = cur.and_then(|c| c.get(k));
        match v {
            Value::Number(n) if n.as_i64() == Some(0) => have.is_some_and(|h| h != v),
            Value::Array(a) if a.is_empty() => have.is_some_and(|h| h != v),
            _ => have != Some(v),
        }
    })
}

/// Writes `want` (null: remove) into the status of `obj` with an update of its status subresource, the verb the
/// controllers' bootstrap roles grant (upstream's `UpdateStatus`); on a conflict, once more on the object read
/// again (upstream's `statusUpdateRetries`).
pub async fn update_status(api: &client::Api, obj: &Value, want: &Map<String, Value>) -> client::Result<Value> {
    let name = runtime::name(obj).to_string();
    let mut current = obj.clone();
    let mut retried = false;
    loop {
        let mut next = current.clone();
        if !next.get("status").is_some_and(Value::is_object) {
            next["status"] = json!({});
        }
        if let Some(status) = next.get_mut("status").and_then(Value::as_object_mut) {
            for (k, v) in want {
                if v.is_null() {
                    status.remove(k);
                } else {
                    status.insert(k.clone(), v.clone());
                }
            }
        }
        match api.replace_status(&name, &next).await {
            Err(e) if e.code() == Some(409) && !retried => {
                retried = true;
                current = api.get(&name).await?;
            }
            result => return result,
        }
    }
}

/// Upstream's `ControllerExpectations` with `UIDTrackingControllerExpectations`' deletion keys: how many creations
/// and which deletions a controller still waits to see in its informer, per owner key.
#[derive(Default)]
pub struct Expectations {
    inner: Mutex<HashMap<String, Expected>>,
}

#[derive(Debug)]
struct Expected {
    adds: i64,
    dels: HashSet<String>,
    at: Instant,
}

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Expected>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Met (or expired, or never set): the controller may count pods and act again.
    pub fn satisfied(&self, key: &str) -> bool {
        match self.lock().get(key) {
            None => true,
            Some(e) => (e.adds <= 0 && e.dels.is_empty()) || e.at.elapsed() > EXPECTATIONS_TIMEOUT,
        }
    }

    pub fn expect_creations(&self, key: &str, n: usize) {
        self.lock().insert(key.to_string(), Expected { adds: n as i64, dels: HashSet::new(), at: Instant::now() });
    }

    pub fn expect_deletions(&self, key: &str, pod_keys: Vec<String>) {
        self.lock()
            .insert(key.to_string(), Expected { adds: 0, dels: pod_keys.into_iter().collect(), at: Instant::now() });
    }

    /// Expects both creations and deletions (a DaemonSet sync does both).
    pub fn expect(&self, key: &str, adds: usize, pod_keys: Vec<String>) {
        let e = Expected { adds: adds as i64, dels: pod_keys.into_iter().collect(), at: Instant::now() };
        self.lock().insert(key.to_string(), e);
    }

    pub fn creation_observed(&self, key: &str) {
        if let Some(e) = self.lock().get_mut(key) {
            e.adds -= 1;
        }
    }

    pub fn deletion_observed(&self, key: &str, pod_key: &str) {
        if let Some(e) = self.lock().get_mut(key) {
            e.dels.remove(pod_key);
        }
    }

    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// Sizes of upstream's `slowStartBatch`: 1, 2, 4, ... up to `total` in all.
pub fn slow_start_batches(total: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let (mut left, mut size) = (total, 1usize);
    while left > 0 {
        let n = size.min(left);
        out.push(n);
        left -= n;
        size *= 2;
    }
    out
}

/// Upstream's `logarithmicRankDiff`: compares how long ago two times were on a log2 scale (nanoseconds), so pods
/// of about the same age rank equal.
fn log_rank_diff(a: jiff::Timestamp, b: jiff::Timestamp, now: jiff::Timestamp) -> i64 {
    let rank = |t: jiff::Timestamp| {
        let d = now.as_nanosecond() - t.as_nanosecond();
        if d > 0 { (d as f64).log2() as i64 } else { -1 }
    };
    rank(a) - rank(b)
}

/// Compares two times, more recent first, with upstream's logarithmic buckets; equal buckets fall back to the UID.
fn recent_first(a: (&Value, jiff::Timestamp), b: (&Value, jiff::Timestamp), now: jiff::Timestamp) -> Option<Ordering> {
    if a.1 == b.1 {
        return None;
    }
    match log_rank_diff(a.1, b.1, now) {
        0 => Some(runtime::uid(a.0).cmp(runtime::uid(b.0))),
        d => Some(d.cmp(&0)),
    }
}

/// The order in which pods are deleted on scale-down (upstream's `ActivePodsWithRanks.Less` with
/// `LogarithmicScaleDown`): `Less` first. `rank` is the number of pods of the same owner on the pod's node
/// (doubled-up pods go first).
pub fn deletion_order(a: &Value, rank_a: usize, b: &Value, rank_b: usize, now: jiff::Timestamp) -> Ordering {
    let node = |p: &Value| p.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    // 1. Unassigned before assigned.
    if node(a) != node(b) {
        return node(a).cmp(&node(b));
    }
    // 2. Pending < Unknown < Running.
    let phase = |p: &Value| match p.pointer("/status/phase").and_then(Value::as_str) {
        Some("Running") => 2,
        Some("Unknown") => 1,
        _ => 0,
    };
    if phase(a) != phase(b) {
        return phase(a).cmp(&phase(b));
    }
    // 3. Not ready before ready.
    if pod_ready(a) != pod_ready(b) {
        return pod_ready(a).cmp(&pod_ready(b));
    }
    // 4. Lower `controller.kubernetes.io/pod-deletion-cost` first.
    let cost = |p: &Value| {
        p.pointer("/metadata/annotations/controller.kubernetes.io~1pod-deletion-cost")
            .and_then(Value::as_str)
            .and_then(|c| c.parse::<i32>().ok())
            .unwrap_or(0)
    };
    if cost(a) != cost(b) {
        return cost(a).cmp(&cost(b));
    }
    // 5. More pods on the same node first.
    if rank_a != rank_b {
        return rank_b.cmp(&rank_a);
    }
    // 6. Ready for less time first.
    if let (Some(ta), Some(tb)) = (ready_since(a), ready_since(b))
        && let Some(o) = recent_first((a, ta), (b, tb), now)
    {
        return o;
    }
    // 7. More restarts first.
    let restarts = |p: &Value| {
        p.pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().map(|c| c.get("restartCount").and_then(Value::as_i64).unwrap_or(0)).max())
            .unwrap_or(0)
    };
    if restarts(a) != restarts(b) {
        return restarts(b).cmp(&restarts(a));
    }
    // 8. Newer first.
    let created = |p: &Value| parse_time(p.pointer("/metadata/creationTimestamp"));
    if let (Some(ta), Some(tb)) = (created(a), created(b))
        && let Some(o) = recent_first((a, ta), (b, tb), now)
    {
        return o;
    }
    runtime::uid(a).cmp(runtime::uid(b))
}

/// The `n` pods to delete, in upstream's order.
pub fn pods_to_delete(pods: &[Arc<Value>], n: usize) -> Vec<Arc<Value>> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in pods {
        if let Some(node) = p.pointer("/spec/nodeName").and_then(Value::as_str) {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let rank = |p: &Value| {
        p.pointer("/spec/nodeName").and_then(Value::as_str).and_then(|n| per_node.get(n)).copied().unwrap_or(0)
    };
    let mut ranked: Vec<(usize, Arc<Value>)> = pods.iter().map(|p| (rank(p), p.clone())).collect();
    let now = jiff::Timestamp::now();
    ranked.sort_by(|(ra, a), (rb, b)| deletion_order(a, *ra, b, *rb, now));
    ranked.into_iter().take(n).map(|(_, p)| p).collect()
}

/// Keys of the owners (of `kind`, by name in the pod's namespace) to queue for a pod notification: its controller
/// (old and new), or for an orphan every owner whose selector matches it.
pub fn owners_of_pod(n: &Notification, owners: &Store, kind: &Kind) -> Vec<String> {
    let mut keys = Vec::new();
    let pod = n.object();
    let ns = runtime::namespace(pod);
    let mut refs = vec![controller_ref(pod)];
    if let Some(old) = n.old() {
        refs.push(controller_ref(old));
    }
    let mut orphan = true;
    for r in refs.into_iter().flatten() {
        orphan = false;
        if r.get("kind").and_then(Value::as_str) == Some(kind.kind)
            && let Some(name) = r.get("name").and_then(Value::as_str)
        {
            keys.push(runtime::key(ns, name));
        }
    }
    if orphan {
        for o in owners.list_by(|o| runtime::namespace(o) == ns) {
            if kind.selector(&o).is_ok_and(|s| s.matches_value(pod.pointer("/metadata/labels"))) {
                keys.push(runtime::object_key(&o));
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Claims the objects (pods, or a Deployment's ReplicaSets) of an owner as upstream's `ClaimPods`/`ClaimReplicaSets`:
/// keeps owned matching ones, adopts matching orphans, releases owned ones that no longer match. Before the first
/// adoption the owner is read again through `owner_api` and nothing is adopted if it is gone, replaced or being
/// deleted (upstream's `RecheckDeletionTimestamp`).
pub async fn claim_pods(
    owner: &Value,
    api_version: &str,
    kind: &str,
    selector: &LabelSelector,
    pods: Vec<Arc<Value>>,
    pods_api: &client::Api,
    owner_api: &client::Api,
) -> Result<Vec<Arc<Value>>, BoxError> {
    let uid = runtime::uid(owner);
    let owner_deleting = owner.pointer("/metadata/deletionTimestamp").is_some();
    let mut claimed = Vec::new();
    let mut recheck: Option<bool> = None;
    let refs = |pod: &Value| -> Vec<Value> {
        pod.pointer("/metadata/ownerReferences").and_then(Value::as_array).cloned().unwrap_or_default()
    };
    for pod in pods {
        let matches = selector.matches_value(pod.get("metadata").and_then(|m| m.get("labels")));
        match controller_ref(&pod) {
            Some(r) if r.get("uid").and_then(Value::as_str) == Some(uid) => {
                if matches {
                    claimed.push(pod);
                } else if !owner_deleting {
                    let rest: Vec<Value> =
                        refs(&pod).into_iter().filter(|r| r.get("uid").and_then(Value::as_str) != Some(uid)).collect();
                    let patch = json!({"metadata": {"ownerReferences": rest}});
                    match pods_api.patch(runtime::name(&pod), PatchType::Merge, &patch).await {
                        Ok(_) => {}
                        Err(e) if e.code() == Some(404) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Some(_) => {}
            None => {
                if !matches || owner_deleting || pod.pointer("/metadata/deletionTimestamp").is_some() {
                    continue;
                }
                if recheck.is_none() {
                    let fresh = match owner_api.get(runtime::name(owner)).await {
                        Ok(o) => Some(o),
                        Err(e) if e.code() == Some(404) => None,
                        Err(e) => return Err(e.into()),
                    };
                    recheck = Some(fresh.is_some_and(|o| {
                        runtime::uid(&o) == uid && o.pointer("/metadata/deletionTimestamp").is_none()
                    }));
                }
                if recheck == Some(false) {
                    continue;
                }
                let mut all = refs(&pod);
                all.push(new_controller_ref(owner, api_version, kind));
                let patch = json!({"metadata": {"ownerReferences": all,
                    "resourceVersion": runtime::resource_version(&pod)}});
                match pods_api.patch(runtime::name(&pod), PatchType::Merge, &patch).await {
                    Ok(p) => claimed.push(Arc::new(p)),
                    // Gone or changed meanwhile: the next sync sees it again.
                    Err(e) if matches!(e.code(), Some(404 | 409)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(claimed)
}

/// Creates `n` pods from `template` in slow-start batches; returns how many were created and the first error.
/// `skipped` is called with the number of pods never attempted or failed (to lower expectations).
#[allow(clippy::too_many_arguments)]
pub async fn create_pods(
    n: usize,
    owner: &Value,
    template: &Value,
    controller_ref: Value,
    generate_name: &str,
    pods_api: &client::Api,
    recorder: &Recorder,
    on_failed: impl Fn(usize),
) -> Result<usize, String> {
    let ns = runtime::namespace(owner).to_string();
    let mut pod = pod_from_template(template, &ns, controller_ref);
    pod["metadata"]["generateName"] = json!(generate_name);
    let mut created = 0;
    let batches = slow_start_batches(n);
    for (i, size) in batches.iter().enumerate() {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..*size {
            let (api, pod) = (pods_api.clone(), pod.clone());
            set.spawn(async move { api.create(&pod).await });
        }
        let mut error = None;
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(p)) => {
                    created += 1;
                    recorder.record(
                        owner,
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!("Created pod: {}", runtime::name(&p)),
                    );
                }
                Ok(Err(e)) => {
                    on_failed(1);
                    recorder.record(owner, EventType::Warning, "FailedCreate", &format!("Error creating: {e}"));
                    error.get_or_insert(e.to_string());
                }
                Err(e) => {
                    on_failed(1);
                    error.get_or_insert(e.to_string());
                }
            }
        }
        if let Some(e) = error {
            on_failed(batches[i + 1..].iter().sum());
            return Err(e);
        }
    }
    Ok(created)
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    run_kind(ctx, stop, &REPLICA_SET).await
}

pub async fn run_replication_controller(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    run_kind(ctx, stop, &REPLICATION_CONTROLLER).await
}

/// An update that left metadata.generation alone (a status or metadata change).
fn same_generation(n: &Notification) -> bool {
    matches!(n, Notification::Updated { old, new }
        if old.pointer("/metadata/generation").is_some() && old.pointer("/metadata/generation") == new.pointer("/metadata/generation"))
}

/// An update that marks the pod for deletion.
fn deletion_started(old: &Value, new: &Value) -> bool {
    new.pointer("/metadata/deletionTimestamp").is_some() && old.pointer("/metadata/deletionTimestamp").is_none()
}

async fn run_kind(ctx: Arc<Context>, stop: watch::Receiver<bool>, kind: &'static Kind) {
    let owners = ctx.informer(kind.group, kind.version, kind.plural);
    let pods = ctx.informer("", "v1", "pods");
    let exp = Arc::new(Expectations::default());
    let recorder = ctx.recorder(kind.component);
    let (owner_store, batch_store, e) = (owners.store().clone(), owners.store().clone(), exp.clone());
    let workers = if kind.group.is_empty() { 5 } else { ctx.options.concurrent_replicaset_syncs };
    let c = ctx.clone();
    Controller::new(runtime::controller::Config { workers, ..Default::default() })
        // Its own status updates (same generation) are coalesced too; spec changes queue at once.
        .watches(&owners, |n| if same_generation(n) { Vec::new() } else { vec![n.key()] })
        .watches_batched(&owners, |n| if same_generation(n) { vec![n.key()] } else { Vec::new() })
        // Pod updates that only change status or labels are coalesced for owners with many pods; creations and
        // deletions (which the expectations wait for) queue their owner at once.
        .watches_batched(&pods, move |n| match n {
            Notification::Updated { old, new } if !deletion_started(old, new) => owners_of_pod(n, &batch_store, kind),
            _ => Vec::new(),
        })
        .watches(&pods, move |n| {
            if matches!(n, Notification::Updated { old, new } if !deletion_started(old, new)) {
                return Vec::new();
            }
            let keys = owners_of_pod(n, &owner_store, kind);
            let pod = n.object();
            let pod_key = runtime::object_key(pod);
            // Only a pod's own controller's expectations move.
            let owner = controller_ref(pod)
                .filter(|r| r.get("kind").and_then(Value::as_str) == Some(kind.kind))
                .and_then(|r| r.get("name").and_then(Value::as_str))
                .map(|name| runtime::key(runtime::namespace(pod), name));
            if let Some(owner) = owner {
                match n {
                    Notification::Added(p) if p.pointer("/metadata/deletionTimestamp").is_none() => {
                        e.creation_observed(&owner)
                    }
                    Notification::Added(_) | Notification::Deleted(_) => e.deletion_observed(&owner, &pod_key),
                    Notification::Updated { old, new } if deletion_started(old, new) => {
                        e.deletion_observed(&owner, &pod_key)
                    }
                    _ => {}
                }
            }
            keys
        })
        .run(
            move |key: String| {
                let (c, owners, pods, exp, recorder) =
                    (c.clone(), owners.clone(), pods.clone(), exp.clone(), recorder.clone());
                async move { sync(&c, kind, &key, owners.store(), pods.store(), &exp, &recorder).await }
            },
            stopped(stop),
        )
        .await;
}

async fn sync(
    ctx: &Context,
    kind: &Kind,
    key: &str,
    owners: &Store,
    pod_store: &Store,
    exp: &Expectations,
    recorder: &Recorder,
) -> Result<Action, BoxError> {
    let (ns, name) = runtime::split_key(key);
    let Some(rs) = owners.get(ns, name) else {
        exp.forget(key);
        return Ok(Action::Done);
    };
    let selector = match kind.selector(&rs) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%key, error = %e, "invalid selector; not syncing");
            return Ok(Action::Done);
        }
    };
    let needs_sync = exp.satisfied(key);
    let pods_api = ctx.api("", "v1", "pods").namespaced(ns);
    let active: Vec<Arc<Value>> = pod_store.list_by(|p| runtime::namespace(p) == ns && pod_active(p));
    let api_version = kind.api_version();
    let owner_api = ctx.api(kind.group, kind.version, kind.plural).namespaced(ns);
    let pods = claim_pods(&rs, &api_version, kind.kind, &selector, active, &pods_api, &owner_api).await?;
    let mut failure = None;
    if needs_sync && rs.pointer("/metadata/deletionTimestamp").is_none() {
        failure = manage_replicas(kind, key, &rs, &pods, exp, recorder, &pods_api).await;
    }
    let min_ready = int_at(&rs, "/spec/minReadySeconds", 0);
    let now = jiff::Timestamp::now();
    let template_labels = rs.pointer("/spec/template/metadata/labels").and_then(Value::as_object);
    let (mut fully_labeled, mut ready, mut available) = (0, 0, 0);
    for p in &pods {
        let l = p.get("metadata").and_then(|m| m.get("labels"));
        if template_labels.iter().flat_map(|t| t.iter()).all(|(k, v)| l.and_then(|l| l.get(k)) == Some(v)) {
            fully_labeled += 1;
        }
        if pod_ready(p) {
            ready += 1;
            if pod_available(p, min_ready, now) {
                available += 1;
            }
        }
    }
    let mut status = Map::new();
    status.insert("replicas".into(), json!(pods.len()));
    status.insert("fullyLabeledReplicas".into(), json!(fully_labeled));
    status.insert("readyReplicas".into(), json!(ready));
    status.insert("availableReplicas".into(), json!(available));
    status.insert("observedGeneration".into(), json!(int_at(&rs, "/metadata/generation", 0)));
    let mut conditions: Vec<Value> = rs
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.get("type") != Some(&json!("ReplicaFailure")))
        .collect();
    if let Some((reason, message)) = &failure {
        let had = rs.pointer("/status/conditions").and_then(Value::as_array).and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type") == Some(&json!("ReplicaFailure")) && c.get("reason") == Some(&json!(reason)))
        });
        conditions.push(had.cloned().unwrap_or_else(|| {
            json!({"type": "ReplicaFailure", "status": "True", "reason": reason, "message": message,
                "lastTransitionTime": now_rfc3339()})
        }));
    }
    if needs_sync || failure.is_some() {
        status.insert("conditions".into(), json!(conditions));
    }
    if status_differs(&rs, &status) {
        let api = ctx.api(kind.group, kind.version, kind.plural).namespaced(ns);
        match update_status(&api, &rs, &status).await {
            Ok(_) => {}
            Err(e) if e.code() == Some(404) => return Ok(Action::Done),
            Err(e) => return Err(e.into()),
        }
    }
    if let Some((_, m)) = failure {
        return Err(m.into());
    }
    // Pods ready but not yet available: look again when they will be.
    if min_ready > 0 && ready > available {
        return Ok(Action::RequeueAfter(Duration::from_secs(min_ready as u64)));
    }
    Ok(Action::Done)
}

/// Creates or deletes pods toward `spec.replicas`; returns a failure (condition reason, message) if any.
#[allow(clippy::too_many_arguments)]
async fn manage_replicas(
    kind: &Kind,
    key: &str,
    rs: &Value,
    pods: &[Arc<Value>],
    exp: &Expectations,
    recorder: &Recorder,
    pods_api: &client::Api,
) -> Option<(String, String)> {
    let want = int_at(rs, "/spec/replicas", 1).max(0) as usize;
    let name = runtime::name(rs);
    if pods.len() < want {
        let n = (want - pods.len()).min(BURST_REPLICAS);
        exp.expect_creations(key, n);
        let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let cref = new_controller_ref(rs, &kind.api_version(), kind.kind);
        let failed = |k: usize| (0..k).for_each(|_| exp.creation_observed(key));
        let r = create_pods(n, rs, &template, cref, &format!("{name}-"), pods_api, recorder, failed).await;
        if let Err(e) = r {
            return Some(("FailedCreate".into(), e));
        }
    } else if pods.len() > want {
        let n = (pods.len() - want).min(BURST_REPLICAS);
        let victims = pods_to_delete(pods, n);
        exp.expect_deletions(key, victims.iter().map(|p| runtime::object_key(p)).collect());
        let mut set = tokio::task::JoinSet::new();
        for p in victims {
            let api = pods_api.clone();
            set.spawn(async move { (api.delete(runtime::name(&p), None).await, p) });
        }
        let mut failure = None;
        while let Some(Ok((r, p))) = set.join_next().await {
            let pname = runtime::name(&p);
            match r {
                Ok(_) => recorder.record(rs, EventType::Normal, "SuccessfulDelete", &format!("Deleted pod: {pname}")),
                Err(e) => {
                    exp.deletion_observed(key, &runtime::object_key(&p));
                    if e.code() != Some(404) {
                        recorder.record(rs, EventType::Warning, "FailedDelete", &format!("Error deleting: {e}"));
                        failure.get_or_insert(("FailedDelete".to_string(), e.to_string()));
                    }
                }
            }
        }
        return failure;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool, created: &str) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": node},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                "lastTransitionTime": created}]}}))
    }

    #[test]
    fn slow_start_doubles() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), vec![1]);
        assert_eq!(slow_start_batches(10), vec![1, 2, 4, 3]);
    }

    #[test]
    fn deletion_prefers_unscheduled_pending_unready_newest() {
        // An hour ago and ten seconds ago: far apart on the logarithmic scale.
        let ago = |secs: i64| (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs)).to_string();
        let (t0, t1) = (&ago(3600), &ago(10));
        let pods = vec![
            pod("running-ready-old", Some("n1"), "Running", true, t0),
            pod("running-ready-new", Some("n2"), "Running", true, t1),
            pod("running-unready", Some("n3"), "Running", false, t0),
            pod("pending", Some("n4"), "Pending", false, t0),
            pod("unscheduled", None, "Pending", false, t0),
        ];
        let order: Vec<String> = pods_to_delete(&pods, 5).iter().map(|p| runtime::name(p).to_string()).collect();
        assert_eq!(order, ["unscheduled", "pending", "running-unready", "running-ready-new", "running-ready-old"]);
        // Doubled-up pods go before lone ones.
        let pods = vec![
            pod("alone", Some("n1"), "Running", true, t1),
            pod("double-a", Some("n2"), "Running", true, t0),
            pod("double-b", Some("n2"), "Running", true, t0),
        ];
        assert_ne!(runtime::name(&pods_to_delete(&pods, 1)[0]), "alone");
        // A lower deletion cost goes first, whatever else.
        let mut cheap = (*pod("cheap", Some("n1"), "Running", true, t0)).clone();
        cheap["metadata"]["annotations"] = json!({"controller.kubernetes.io/pod-deletion-cost": "-5"});
        let pods = vec![pod("new", Some("n2"), "Running", true, t1), Arc::new(cheap)];
        assert_eq!(runtime::name(&pods_to_delete(&pods, 1)[0]), "cheap");
    }

    #[test]
    fn times_compare_in_logarithmic_buckets() {
        let now: jiff::Timestamp = "2024-01-01T01:00:00Z".parse().unwrap();
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        // 60s vs 61s ago: the same bucket; 1s vs 1h ago: different.
        assert_eq!(log_rank_diff(t("2024-01-01T00:59:00Z"), t("2024-01-01T00:58:59Z"), now), 0);
        assert!(log_rank_diff(t("2024-01-01T00:59:59Z"), t("2024-01-01T00:00:00Z"), now) < 0);
    }

    #[test]
    fn availability_honours_min_ready_seconds() {
        let p = pod("p", Some("n"), "Running", true, "2024-01-01T00:00:00Z");
        let now: jiff::Timestamp = "2024-01-01T00:00:05Z".parse().unwrap();
        assert!(pod_available(&p, 0, now));
        assert!(pod_available(&p, 5, now));
        assert!(!pod_available(&p, 6, now));
    }

    #[test]
    fn expectations_block_until_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs"));
        e.expect_creations("ns/rs", 2);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));
        e.expect_deletions("ns/rs", vec!["ns/p".into()]);
        e.deletion_observed("ns/rs", "ns/other");
        assert!(!e.satisfied("ns/rs"));
        e.deletion_observed("ns/rs", "ns/p");
        assert!(e.satisfied("ns/rs"));
    }

    #[test]
    fn replication_controller_selector_is_a_map_defaulting_to_template_labels() {
        let rc = json!({"spec": {"template": {"metadata": {"labels": {"app": "web"}}}}});
        let s = REPLICATION_CONTROLLER.selector(&rc).unwrap();
        assert!(s.matches_value(Some(&json!({"app": "web", "x": "y"}))));
        assert!(!s.matches_value(Some(&json!({"app": "db"}))));
        let rs =
            json!({"spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["a"]}]}}});
        assert!(REPLICA_SET.selector(&rs).unwrap().matches_value(Some(&json!({"app": "a"}))));
    }
}
