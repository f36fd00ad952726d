//! `daemonset`: one pod per eligible node, as upstream's `pkg/controller/daemon`:
//!
//! - a node is eligible when the template's `nodeName` (if any), `nodeSelector` and required node affinity match it
//!   and the pod tolerates its NoSchedule/NoExecute taints; a pod stays on a node whose untolerated taints are only
//!   NoSchedule (upstream's `shouldContinueRunning`);
//! - daemon pods get upstream's default tolerations (`node.kubernetes.io/not-ready` and `unreachable` NoExecute;
//!   `disk-pressure`, `memory-pressure`, `pid-pressure`, `unschedulable` NoSchedule; `network-unavailable`
//!   NoSchedule for host-network pods) and are placed by the required node affinity `metadata.name In [node]`
//!   (replacing the template's required terms), leaving binding to the scheduler;
//! - the template's ControllerRevision `<ds>-<hash>` (labelled `controller-revision-hash`; a rollback reuses the old
//!   one with a new revision number; unused ones beyond `revisionHistoryLimit` are pruned) gives the hash pods carry
//!   in `controller-revision-hash`, beside `pod-template-generation`; pods are created in slow-start batches with
//!   expectations, failed pods are replaced (event `FailedDaemonPod`), extra pods on a node and pods on ineligible
//!   or vanished nodes are deleted;
//! - `RollingUpdate`: outdated pods are deleted while at most `maxUnavailable` (percent rounded up, at least 1 when
//!   maxSurge is 0) daemon pods are unavailable, unavailable outdated pods first; with `maxSurge` > 0 a new pod is
//!   started beside the old one on at most maxSurge nodes at once and the old pod deleted once the new one is
//!   available; `OnDelete` leaves outdated pods alone;
//! - status `desiredNumberScheduled`, `currentNumberScheduled`, `numberMisscheduled`, `numberReady`,
//!   `updatedNumberScheduled`, `numberAvailable`, `numberUnavailable`, `observedGeneration`; events
//!   `SuccessfulCreate`, `FailedCreate`, `SuccessfulDelete` with upstream's messages.
//!
//! Deliberate gaps: failed pods are replaced without upstream's per-node backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use api_types::selector::LabelSelector;
use runtime::events::{EventType, Recorder};
use runtime::{Action, Controller, Notification, Store};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::deployment::scaled_value;
use super::replicaset::{
    Expectations, claim_pods, controller_ref, int_at, new_controller_ref, pod_available, pod_from_template, pod_ready,
    slow_start_batches,
};
use crate::{BoxError, Context, stopped};

const REVISION_LABEL: &str = "controller-revision-hash";

/// Tolerations every daemon pod gets (upstream's `AddOrUpdateDaemonPodTolerations`).
pub fn default_tolerations(host_network: bool) -> Vec<Value> {
    let mut t = vec![
        json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}),
    ];
    if host_network {
        t.push(json!({"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}));
    }
    t
}

/// Whether a toleration tolerates a taint (upstream's `Toleration.ToleratesTaint`).
pub fn tolerates(tol: &Value, taint: &Value) -> bool {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    if !s(tol, "effect").is_empty() && s(tol, "effect") != s(taint, "effect") {
        return false;
    }
    if !s(tol, "key").is_empty() && s(tol, "key") != s(taint, "key") {
        return false;
    }
    match s(tol, "operator").as_str() {
        "Exists" => true,
        "" | "Equal" => !s(tol, "key").is_empty() && s(tol, "value") == s(taint, "value"),
        _ => false,
    }
}

fn untolerated(taints: &[Value], tolerations: &[Value], effects: &[&str]) -> bool {
    taints.iter().any(|t| {
        effects.contains(&t.get("effect").and_then(Value::as_str).unwrap_or_default())
            && !tolerations.iter().any(|tol| tolerates(tol, t))
    })
}

/// One node selector requirement against a value getter.
fn requirement_matches<'a>(r: &Value, get: impl Fn(&str) -> Option<&'a str>) -> bool {
    let key = r.get("key").and_then(Value::as_str).unwrap_or_default();
    let values: Vec<&str> =
        r.get("values").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let v = get(key);
    match r.get("operator").and_then(Value::as_str).unwrap_or_default() {
        "In" => v.is_some_and(|v| values.contains(&v)),
        "NotIn" => !v.is_some_and(|v| values.contains(&v)),
        "Exists" => v.is_some(),
        "DoesNotExist" => v.is_none(),
        op @ ("Gt" | "Lt") => {
            let (Some(a), Some(b)) =
                (v.and_then(|v| v.parse::<i64>().ok()), values.first().and_then(|v| v.parse::<i64>().ok()))
            else {
                return false;
            };
            if op == "Gt" { a > b } else { a < b }
        }
        _ => false,
    }
}

/// Whether a pod spec's nodeSelector and required node affinity match a node.
pub fn node_matches(spec: &Value, node: &Value) -> bool {
    let labels = node.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    if let Some(sel) = spec.get("nodeSelector").and_then(Value::as_object)
        && !sel.iter().all(|(k, v)| label(k) == v.as_str())
    {
        return false;
    }
    let Some(terms) = spec
        .pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)
    else {
        return true;
    };
    let name = runtime::name(node);
    terms.iter().any(|t| {
        let exprs = t.get("matchExpressions").and_then(Value::as_array).cloned().unwrap_or_default();
        let fields = t.get("matchFields").and_then(Value::as_array).cloned().unwrap_or_default();
        (!exprs.is_empty() || !fields.is_empty())
            && exprs.iter().all(|r| requirement_matches(r, label))
            && fields.iter().all(|r| requirement_matches(r, |k| (k == "metadata.name").then_some(name)))
    })
}

/// The pod template spec of a DaemonSet with its default tolerations added.
fn daemon_spec(ds: &Value) -> Value {
    let mut spec = ds.pointer("/spec/template/spec").cloned().unwrap_or(json!({}));
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool).unwrap_or(false);
    let mut tols: Vec<Value> = spec.get("tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
    for t in default_tolerations(host_network) {
        tols.retain(|x| !(x.get("key") == t.get("key") && x.get("effect") == t.get("effect")));
        tols.push(t);
    }
    spec["tolerations"] = json!(tols);
    spec
}

/// (should run, should continue running) on `node` (upstream's `NodeShouldRunDaemonPod`).
pub fn should_run(spec: &Value, node: &Value) -> (bool, bool) {
    if let Some(n) = spec.get("nodeName").and_then(Value::as_str).filter(|n| !n.is_empty())
        && n != runtime::name(node)
    {
        return (false, false);
    }
    if !node_matches(spec, node) {
        return (false, false);
    }
    let taints: Vec<Value> = node.pointer("/spec/taints").and_then(Value::as_array).cloned().unwrap_or_default();
    let tols: Vec<Value> = spec.get("tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
    if untolerated(&taints, &tols, &["NoSchedule", "NoExecute"]) {
        return (false, !untolerated(&taints, &tols, &["NoExecute"]));
    }
    (true, true)
}

/// Required node affinity `metadata.name In [node]` replacing the template's required terms (upstream's
/// `ReplaceDaemonSetPodNodeNameNodeAffinity`).
pub fn place_on(spec: &mut Value, node: &str) {
    let term = json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]});
    if !spec["affinity"].is_object() {
        spec["affinity"] = json!({});
    }
    if !spec["affinity"]["nodeAffinity"].is_object() {
        spec["affinity"]["nodeAffinity"] = json!({});
    }
    spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] =
        json!({"nodeSelectorTerms": [term]});
}

/// The node a daemon pod is for: `spec.nodeName`, else its `metadata.name In [node]` affinity.
pub fn target_node(pod: &Value) -> Option<String> {
    if let Some(n) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms = pod
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")?
        .as_array()?;
    terms.iter().find_map(|t| {
        t.get("matchFields")?.as_array()?.iter().find_map(|f| {
            let values = f.get("values")?.as_array()?;
            (f["key"] == "metadata.name" && f["operator"] == "In" && values.len() == 1)
                .then(|| values[0].as_str().map(str::to_string))
                .flatten()
        })
    })
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let sets = ctx.informer("apps", "v1", "daemonsets");
    let pods = ctx.informer("", "v1", "pods");
    let nodes = ctx.informer("", "v1", "nodes");
    let revisions = ctx.informer("apps", "v1", "controllerrevisions");
    let recorder = ctx.recorder("daemonset-controller");
    let exp = Arc::new(Expectations::default());
    let (s1, s2, e) = (sets.store().clone(), sets.store().clone(), exp.clone());
    let c = ctx.clone();
    Controller::new(runtime::controller::Config {
        workers: ctx.options.concurrent_daemonset_syncs,
        ..Default::default()
    })
    .watches(&sets, |n| vec![n.key()])
    .watches(&nodes, move |n| match n {
        Notification::Resync(_) => vec![],
        _ => s1.list().iter().map(|d| runtime::object_key(d)).collect(),
    })
    .watches_batched(&pods, move |n| {
        let pod = n.object();
        let owner = controller_ref(pod)
            .filter(|r| r["kind"] == "DaemonSet")
            .and_then(|r| r["name"].as_str())
            .map(|name| runtime::key(runtime::namespace(pod), name));
        if let Some(owner) = &owner {
            let pod_key = runtime::object_key(pod);
            match n {
                Notification::Added(p) if p.pointer("/metadata/deletionTimestamp").is_none() => {
                    e.creation_observed(owner)
                }
                Notification::Added(_) | Notification::Deleted(_) => e.deletion_observed(owner, &pod_key),
                Notification::Updated { old, new }
                    if new.pointer("/metadata/deletionTimestamp").is_some()
                        && old.pointer("/metadata/deletionTimestamp").is_none() =>
                {
                    e.deletion_observed(owner, &pod_key)
                }
                _ => {}
            }
            return vec![owner.clone()];
        }
        let ns = runtime::namespace(pod);
        s2.list_by(|d| runtime::namespace(d) == ns)
            .iter()
            .filter(|d| {
                LabelSelector::from_json(d.pointer("/spec/selector").unwrap_or(&Value::Null))
                    .is_ok_and(|s| s.matches_value(pod.pointer("/metadata/labels")))
            })
            .map(|d| runtime::object_key(d))
            .collect()
    })
    .run(
        move |key: String| {
            let (c, s, p, n, r, e, v) = (
                c.clone(),
                sets.clone(),
                pods.clone(),
                nodes.clone(),
                recorder.clone(),
                exp.clone(),
                revisions.clone(),
            );
            async move { sync(&c, &r, &e, &key, s.store(), p.store(), n.store(), v.store()).await }
        },
        stopped(stop),
    )
    .await;
}

#[allow(clippy::too_many_arguments)]
async fn sync(
    ctx: &Context,
    rec: &Recorder,
    exp: &Expectations,
    key: &str,
    sets: &Store,
    pod_store: &Store,
    node_store: &Store,
    rev_store: &Store,
) -> Result<Action, BoxError> {
    let (ns, name) = runtime::split_key(key);
    let Some(ds) = sets.get(ns, name) else {
        exp.forget(key);
        return Ok(Action::Done);
    };
    let selector = match LabelSelector::from_json(ds.pointer("/spec/selector").unwrap_or(&Value::Null)) {
        Ok(s) if !s.is_empty() => s,
        _ => {
            tracing::warn!(%key, "invalid or empty selector; not syncing");
            return Ok(Action::Done);
        }
    };
    let pods_api = ctx.api("", "v1", "pods").namespaced(ns);
    let candidates = pod_store.list_by(|p| runtime::namespace(p) == ns);
    let owner_api = ctx.api("apps", "v1", "daemonsets").namespaced(ns);
    let pods = claim_pods(&ds, "apps/v1", "DaemonSet", &selector, candidates, &pods_api, &owner_api).await?;
    let in_use: Vec<String> = pods
        .iter()
        .filter_map(|p| p.pointer("/metadata/labels").and_then(|l| l.get(REVISION_LABEL)).and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    let hash = super::statefulset::sync_revisions(ctx, &ds, "DaemonSet", REVISION_LABEL, rev_store, &in_use)
        .await?
        .update_hash;
    let spec = daemon_spec(&ds);
    let min_ready = int_at(&ds, "/spec/minReadySeconds", 0);
    let now = jiff::Timestamp::now();
    let mut by_node: HashMap<String, Vec<Arc<Value>>> = HashMap::new();
    for p in &pods {
        if let Some(n) = target_node(p) {
            by_node.entry(n).or_default().push(p.clone());
        }
    }
    for v in by_node.values_mut() {
        v.sort_by_key(|p| {
            p.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or_default().to_string()
        });
    }
    let nodes = node_store.list();
    let deleting = |p: &Value| p.pointer("/metadata/deletionTimestamp").is_some();
    let failed = |p: &Value| p.pointer("/status/phase").and_then(Value::as_str) == Some("Failed");

    let strategy = ds.pointer("/spec/updateStrategy/type").and_then(Value::as_str).unwrap_or("RollingUpdate");
    let surging = strategy == "RollingUpdate"
        && scaled_value(ds.pointer("/spec/updateStrategy/rollingUpdate/maxSurge"), nodes.len() as i64, true) > 0;
    let (mut to_create, mut to_delete) = (Vec::<String>::new(), Vec::<Arc<Value>>::new());
    let mut status = Status::default();
    for node in &nodes {
        let node_name = runtime::name(node).to_string();
        let (run, keep) = should_run(&spec, node);
        let on_node: Vec<Arc<Value>> = by_node.remove(&node_name).unwrap_or_default();
        let running: Vec<&Arc<Value>> = on_node.iter().filter(|p| !deleting(p) && !failed(p)).collect();
        if run {
            status.desired += 1;
            if let Some(p) = running.first() {
                status.current += 1;
                status.ready += i64::from(pod_ready(p));
                status.available += i64::from(pod_available(p, min_ready, now));
                status.updated += i64::from(updated(p, &hash));
            }
        } else if !running.is_empty() {
            status.misscheduled += 1;
        }
        if keep {
            for p in on_node.iter().filter(|p| failed(p) && !deleting(p)) {
                let msg = format!(
                    "Found failed daemon pod {}/{} on node {node_name}, will try to kill it",
                    runtime::namespace(p),
                    runtime::name(p)
                );
                rec.record(&ds, EventType::Warning, "FailedDaemonPod", &msg);
                to_delete.push(p.clone());
            }
            if running.is_empty() && run {
                to_create.push(node_name);
            } else if running.len() > 1 {
                to_delete.extend(excess_pods(&running, &hash, surging, min_ready, now));
            }
        } else {
            to_delete.extend(running.into_iter().cloned());
        }
    }
    // Pods of vanished nodes that were never scheduled.
    for pods in by_node.values() {
        to_delete.extend(pods.iter().filter(|p| !deleting(p) && target_node_unscheduled(p)).cloned());
    }

    if exp.satisfied(key) && ds.pointer("/metadata/deletionTimestamp").is_none() {
        if strategy == "RollingUpdate" && to_create.is_empty() && to_delete.is_empty() {
            (to_delete, to_create) = rolling_update(&ds, &pods, &nodes, &spec, &hash, now);
        }
        sync_nodes(&ds, &spec, &hash, to_create, to_delete, exp, key, rec, &pods_api).await?;
    }

    let mut s = Map::new();
    s.insert("desiredNumberScheduled".into(), json!(status.desired));
    s.insert("currentNumberScheduled".into(), json!(status.current));
    s.insert("numberMisscheduled".into(), json!(status.misscheduled));
    s.insert("numberReady".into(), json!(status.ready));
    s.insert("updatedNumberScheduled".into(), json!(status.updated));
    s.insert("numberAvailable".into(), json!(status.available));
    s.insert("numberUnavailable".into(), json!((status.desired - status.available).max(0)));
    s.insert("observedGeneration".into(), json!(int_at(&ds, "/metadata/generation", 0)));
    if super::replicaset::status_differs(&ds, &s) {
        let api = ctx.api("apps", "v1", "daemonsets").namespaced(ns);
        match super::replicaset::update_status(&api, &ds, &s).await {
            Ok(_) => {}
            Err(e) if e.code() == Some(404) => return Ok(Action::Done),
            Err(e) => return Err(e.into()),
        }
    }
    if min_ready > 0 && status.ready > status.available {
        return Ok(Action::RequeueAfter(Duration::from_secs(min_ready as u64)));
    }
    Ok(Action::Done)
}

fn target_node_unscheduled(p: &Value) -> bool {
    p.pointer("/spec/nodeName").and_then(Value::as_str).is_none_or(str::is_empty)
}

#[derive(Default)]
struct Status {
    desired: i64,
    current: i64,
    misscheduled: i64,
    ready: i64,
    updated: i64,
    available: i64,
}

fn updated(pod: &Value, hash: &str) -> bool {
    pod.pointer("/metadata/labels").and_then(|l| l.get(REVISION_LABEL)).and_then(Value::as_str) == Some(hash)
}

/// Of several daemon pods running on one node (oldest first), those to delete (upstream's `podsShouldBeOnNode`):
/// all but the oldest; when surging, the oldest updated and the oldest outdated pod stay until the updated one is
/// available (or the outdated one is not ready).
pub fn excess_pods(
    running: &[&Arc<Value>],
    hash: &str,
    surging: bool,
    min_ready: i64,
    now: jiff::Timestamp,
) -> Vec<Arc<Value>> {
    if !surging {
        return running.iter().skip(1).map(|p| (*p).clone()).collect();
    }
    let (mut oldest_new, mut oldest_old, mut out) = (None, None, Vec::new());
    for p in running {
        let slot = if updated(p, hash) { &mut oldest_new } else { &mut oldest_old };
        if slot.is_none() {
            *slot = Some(*p);
        } else {
            out.push((*p).clone());
        }
    }
    if let (Some(new), Some(old)) = (oldest_new, oldest_old)
        && (!pod_ready(old) || pod_available(new, min_ready, now))
    {
        out.push(old.clone());
    }
    out
}

/// Outdated pods to delete and nodes to surge onto now (upstream's `rollingUpdate`).
fn rolling_update(
    ds: &Value,
    pods: &[Arc<Value>],
    nodes: &[Arc<Value>],
    spec: &Value,
    hash: &str,
    now: jiff::Timestamp,
) -> (Vec<Arc<Value>>, Vec<String>) {
    let min_ready = int_at(ds, "/spec/minReadySeconds", 0);
    let desired = nodes.iter().filter(|n| should_run(spec, n).0).count() as i64;
    let max_surge = scaled_value(ds.pointer("/spec/updateStrategy/rollingUpdate/maxSurge"), desired, true);
    let mut max_unavailable = scaled_value(
        ds.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable").or(Some(&json!(1))),
        desired,
        true,
    );
    if max_unavailable == 0 && max_surge == 0 {
        max_unavailable = 1;
    }
    let mut by_node: HashMap<String, Vec<&Arc<Value>>> = HashMap::new();
    for p in pods.iter().filter(|p| p.pointer("/metadata/deletionTimestamp").is_none()) {
        if let Some(n) = target_node(p) {
            by_node.entry(n).or_default().push(p);
        }
    }
    let mut names: Vec<&String> = by_node.keys().collect();
    names.sort();
    let available = |p: &Value| pod_available(p, min_ready, now);
    if max_surge > 0 {
        // Surge: a new pod beside each old one (at most maxSurge at once), the old one deleted once the new is
        // available.
        let (mut surge, mut delete, mut allowed, mut candidates) = (0, Vec::new(), Vec::new(), Vec::new());
        for n in names {
            let on = &by_node[n];
            let new: Vec<_> = on.iter().filter(|p| updated(p, hash)).collect();
            let old: Vec<_> = on.iter().filter(|p| !updated(p, hash)).collect();
            if new.len() > 1 || old.len() > 1 {
                surge += 1;
                continue;
            }
            if !nodes.iter().any(|node| runtime::name(node) == n.as_str() && should_run(spec, node).0) {
                continue;
            }
            match (new.first(), old.first()) {
                (_, None) => {}
                (None, Some(o)) if !available(o) => allowed.push(n.clone()),
                (None, Some(_)) if surge >= max_surge => {}
                (None, Some(_)) => candidates.push(n.clone()),
                (Some(p), Some(_)) if !available(p) => surge += 1,
                (Some(_), Some(o)) => delete.push((**o).clone()),
            }
        }
        let room = (max_surge - surge).max(0).min(candidates.len() as i64) as usize;
        allowed.extend(candidates.into_iter().take(room));
        return (delete, allowed);
    }
    let (mut unavailable, mut replace, mut candidates) = (0, Vec::new(), Vec::new());
    for n in names {
        let on = &by_node[n];
        let new: Vec<_> = on.iter().filter(|p| updated(p, hash)).collect();
        let old: Vec<_> = on.iter().filter(|p| !updated(p, hash)).collect();
        match (new.first(), old.first()) {
            (Some(_), Some(_)) | (None, None) => unavailable += 1,
            (Some(p), None) => unavailable += i64::from(!available(p)),
            (None, Some(p)) => {
                if !available(p) {
                    replace.push((**p).clone());
                } else if unavailable < max_unavailable {
                    candidates.push((**p).clone());
                }
            }
        }
    }
    let room = (max_unavailable - unavailable).max(0).min(candidates.len() as i64) as usize;
    replace.extend(candidates.into_iter().take(room));
    (replace, Vec::new())
}

/// Creates the missing daemon pods (slow start) and deletes the given ones, with expectations.
#[allow(clippy::too_many_arguments)]
async fn sync_nodes(
    ds: &Value,
    spec: &Value,
    hash: &str,
    create: Vec<String>,
    delete: Vec<Arc<Value>>,
    exp: &Expectations,
    key: &str,
    rec: &Recorder,
    api: &client::Api,
) -> Result<(), BoxError> {
    if create.is_empty() && delete.is_empty() {
        return Ok(());
    }
    exp.expect(key, create.len(), delete.iter().map(|p| runtime::object_key(p)).collect());
    let mut template = ds.pointer("/spec/template").cloned().unwrap_or(json!({}));
    template["spec"] = spec.clone();
    if !template["metadata"]["labels"].is_object() {
        template["metadata"]["labels"] = json!({});
    }
    template["metadata"]["labels"][REVISION_LABEL] = json!(hash);
    template["metadata"]["labels"]["pod-template-generation"] =
        json!(int_at(ds, "/metadata/generation", 0).to_string());
    let ns = runtime::namespace(ds);
    let cref = new_controller_ref(ds, "apps/v1", "DaemonSet");
    let mut error: Option<BoxError> = None;
    let mut nodes = create.into_iter();
    for size in slow_start_batches(nodes.len()) {
        let mut set = tokio::task::JoinSet::new();
        for node in nodes.by_ref().take(size) {
            let mut pod = pod_from_template(&template, ns, cref.clone());
            pod["metadata"]["generateName"] = json!(format!("{}-", runtime::name(ds)));
            place_on(&mut pod["spec"], &node);
            let api = api.clone();
            set.spawn(async move { api.create(&pod).await });
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(p)) => rec.record(
                    ds,
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("Created pod: {}", runtime::name(&p)),
                ),
                Ok(Err(e)) => {
                    exp.creation_observed(key);
                    rec.record(ds, EventType::Warning, "FailedCreate", &format!("Error creating: {e}"));
                    error.get_or_insert(e.into());
                }
                Err(e) => {
                    exp.creation_observed(key);
                    error.get_or_insert(e.to_string().into());
                }
            }
        }
        if error.is_some() {
            for _ in nodes.by_ref() {
                exp.creation_observed(key);
            }
            break;
        }
    }
    for p in delete {
        match api.delete(runtime::name(&p), None).await {
            Ok(_) => {
                rec.record(ds, EventType::Normal, "SuccessfulDelete", &format!("Deleted pod: {}", runtime::name(&p)))
            }
            Err(e) => {
                exp.deletion_observed(key, &runtime::object_key(&p));
                if e.code() != Some(404) {
                    rec.record(ds, EventType::Warning, "FailedDelete", &format!("Error deleting: {e}"));
                    error.get_or_insert(e.into());
                }
            }
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: Value, taints: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}})
    }

    #[test]
    fn eligibility_follows_selector_affinity_and_taints() {
        let ds = json!({"spec": {"template": {"spec": {"nodeSelector": {"role": "worker"}}}}});
        let spec = daemon_spec(&ds);
        assert_eq!(should_run(&spec, &node("a", json!({"role": "worker"}), json!([]))), (true, true));
        assert_eq!(should_run(&spec, &node("b", json!({"role": "db"}), json!([]))), (false, false));
        let tainted =
            node("c", json!({"role": "worker"}), json!([{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]));
        assert_eq!(should_run(&spec, &tainted), (false, true));
        let evicting = node("d", json!({"role": "worker"}), json!([{"key": "dedicated", "effect": "NoExecute"}]));
        assert_eq!(should_run(&spec, &evicting), (false, false));
        // Default tolerations: a not-ready or unschedulable node still runs daemons.
        let not_ready = node(
            "e",
            json!({"role": "worker"}),
            json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
                {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
        );
        assert_eq!(should_run(&spec, &not_ready), (true, true));
        let affinity = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]}}}});
        assert!(node_matches(&affinity, &node("f", json!({"zone": "z1"}), json!([]))));
        assert!(!node_matches(&affinity, &node("g", json!({"zone": "z2"}), json!([]))));
    }

    #[test]
    fn excess_pods_keep_the_old_one_until_the_surged_one_is_available() {
        let pod = |name: &str, hash: &str, ready: bool| {
            Arc::new(json!({"metadata": {"name": name, "labels": {REVISION_LABEL: hash}},
                "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}}))
        };
        let now = jiff::Timestamp::now();
        let (old, new_unready, new_ready) = (pod("old", "a", true), pod("new", "b", false), pod("new", "b", true));
        let names = |v: Vec<Arc<Value>>| v.iter().map(|p| runtime::name(p).to_string()).collect::<Vec<_>>();
        assert!(excess_pods(&[&old, &new_unready], "b", true, 0, now).is_empty());
        assert_eq!(names(excess_pods(&[&old, &new_ready], "b", true, 0, now)), ["old"]);
        // Without surge the oldest stays.
        assert_eq!(names(excess_pods(&[&old, &new_ready], "b", false, 0, now)), ["new"]);
    }

    #[test]
    fn tolerations_as_upstream() {
        let taint = json!({"key": "k", "value": "v", "effect": "NoSchedule"});
        assert!(tolerates(&json!({"key": "k", "operator": "Equal", "value": "v"}), &taint));
        assert!(tolerates(&json!({"key": "k", "value": "v", "effect": "NoSchedule"}), &taint));
        assert!(!tolerates(&json!({"key": "k", "value": "w"}), &taint));
        assert!(!tolerates(&json!({"key": "k", "operator": "Exists", "effect": "NoExecute"}), &taint));
        assert!(tolerates(&json!({"operator": "Exists"}), &taint));
    }

    #[test]
    fn placement_by_node_affinity() {
        let mut spec = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]}}}});
        place_on(&mut spec, "n1");
        let pod = json!({"spec": spec});
        assert_eq!(target_node(&pod).as_deref(), Some("n1"));
        assert_eq!(
            pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"],
            json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}])
        );
        assert_eq!(target_node(&json!({"spec": {"nodeName": "n2"}})).as_deref(), Some("n2"));
    }
}
