//! `statefulset`: pods with stable identities, as upstream's `pkg/controller/statefulset`:
//!
//! - pods are named `<set>-<ordinal>` (from `spec.ordinals.start`), labelled `statefulset.kubernetes.io/pod-name`,
//!   `apps.kubernetes.io/pod-index` and `controller-revision-hash`, with `hostname` and `subdomain`
//!   (`serviceName`) set; claimed by selector and controllerRef like the ReplicaSet's; identity labels removed from
//!   a pod are put back;
//! - each `volumeClaimTemplates` entry gives the PVC `<claim>-<set>-<ordinal>`, created before the pod and mounted in
//!   place of the template's volume of that name; PVCs are never deleted with the pod (retention policy Retain);
//! - `OrderedReady`: one pod at a time, the next only once every lower ordinal is Running and Ready (and available
//!   after `minReadySeconds`); scale-down removes the highest ordinal first, one at a time, only while the replicas
//!   kept are healthy, and waits while the next pod to remove is not Running, Ready and available unless it is the
//!   lowest-ordinal unhealthy pod (so one broken pod does not block, two do, as upstream). `Parallel`: creates and
//!   deletes all at once;
//! - revisions are ControllerRevisions `<set>-<hash>` holding the template (owned by the set); pods below the
//!   RollingUpdate `partition` are (re)created from the current revision, the rest from the update revision;
//!   `RollingUpdate` deletes the highest-ordinal outdated pod, waits for its replacement to be Running and Ready,
//!   and so on down to the partition; `OnDelete` only uses the update revision for pods the user deleted;
//! - status `replicas`, `readyReplicas`, `availableReplicas`, `currentReplicas`, `updatedReplicas`,
//!   `currentRevision`, `updateRevision`, `observedGeneration`, `collisionCount`; events `SuccessfulCreate`,
//!   `SuccessfulDelete`, `FailedCreate` with upstream's messages.
//!
//! Unused ControllerRevisions beyond `revisionHistoryLimit` are deleted, oldest first.
//!
//! Deliberate gaps: `maxUnavailable` of rolling updates (beta upstream) is treated as 1;
//! `persistentVolumeClaimRetentionPolicy` Delete is not applied (PVCs are always
//! retained); the revision hash is over the template JSON, not upstream's strategic patch bytes.

use std::sync::Arc;
use std::time::Duration;

use api_types::patch::PatchType;
use api_types::selector::LabelSelector;
use runtime::events::{EventType, Recorder};
use runtime::{Action, Controller, Notification, Store};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::deployment::template_hash;
use super::replicaset::{
    claim_pods, controlled_by, controller_ref, int_at, new_controller_ref, pod_active, pod_available, pod_ready,
};
use crate::{BoxError, Context, stopped};

pub const REVISION_LABEL: &str = "controller-revision-hash";
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The ordinal of a pod named `<set>-<n>`, if it is one of `set`'s.
pub fn ordinal(set: &str, pod: &str) -> Option<i64> {
    let n = pod.strip_prefix(set)?.strip_prefix('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || (n.len() > 1 && n.starts_with('0')) {
        return None;
    }
    n.parse().ok()
}

/// The pod of `ordinal` built from `template` (upstream's `newStatefulSetPod`), at `revision`.
pub fn new_pod(set: &Value, template: &Value, ordinal: i64, revision: &str) -> Value {
    let set_name = runtime::name(set);
    let name = format!("{set_name}-{ordinal}");
    let ns = runtime::namespace(set);
    let mut pod = super::replicaset::pod_from_template(template, ns, new_controller_ref(set, "apps/v1", "StatefulSet"));
    pod["metadata"]["name"] = json!(name);
    let labels = &mut pod["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    labels[POD_NAME_LABEL] = json!(name);
    labels[POD_INDEX_LABEL] = json!(ordinal.to_string());
    labels[REVISION_LABEL] = json!(revision);
    pod["spec"]["hostname"] = json!(name);
    if let Some(svc) = set.pointer("/spec/serviceName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        pod["spec"]["subdomain"] = json!(svc);
    }
    let claims = claim_templates(set);
    if !claims.is_empty() {
        let mut volumes: Vec<Value> = pod["spec"]["volumes"].as_array().cloned().unwrap_or_default();
        for c in &claims {
            let cname = runtime::name(c);
            volumes.retain(|v| v["name"] != cname);
            volumes.push(
                json!({"name": cname, "persistentVolumeClaim": {"claimName": claim_name(cname, set_name, ordinal)}}),
            );
        }
        pod["spec"]["volumes"] = json!(volumes);
    }
    pod
}

fn claim_templates(set: &Value) -> Vec<Value> {
    set.pointer("/spec/volumeClaimTemplates").and_then(Value::as_array).cloned().unwrap_or_default()
}

pub fn claim_name(claim: &str, set: &str, ordinal: i64) -> String {
    format!("{claim}-{set}-{ordinal}")
}

fn running_and_ready(pod: &Value) -> bool {
    pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running") && pod_ready(pod)
}

fn terminating(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_some()
}

fn revision_of(pod: &Value) -> &str {
    pod.pointer("/metadata/labels").and_then(|l| l.get(REVISION_LABEL)).and_then(Value::as_str).unwrap_or_default()
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let sets = ctx.informer("apps", "v1", "statefulsets");
    let pods = ctx.informer("", "v1", "pods");
    let revisions = ctx.informer("apps", "v1", "controllerrevisions");
    let recorder = ctx.recorder("statefulset-controller");
    let set_store = sets.store().clone();
    let c = ctx.clone();
    Controller::new(runtime::controller::Config {
        workers: ctx.options.concurrent_statefulset_syncs,
        ..Default::default()
    })
    .watches(&sets, |n| vec![n.key()])
    .watches_batched(&pods, move |n| owners(n, &set_store))
    .run(
        move |key: String| {
            let (c, s, p, r, rec) = (c.clone(), sets.clone(), pods.clone(), revisions.clone(), recorder.clone());
            async move { sync(&c, &rec, &key, s.store(), p.store(), r.store()).await }
        },
        stopped(stop),
    )
    .await;
}

fn owners(n: &Notification, sets: &Store) -> Vec<String> {
    let pod = n.object();
    let ns = runtime::namespace(pod);
    let mut keys: Vec<String> = [Some(pod), n.old()]
        .into_iter()
        .flatten()
        .filter_map(|p| controller_ref(p))
        .filter(|r| r["kind"] == "StatefulSet")
        .filter_map(|r| r["name"].as_str().map(|name| runtime::key(ns, name)))
        .collect();
    if controller_ref(pod).is_none() {
        for s in sets.list_by(|s| runtime::namespace(s) == ns) {
            let sel = LabelSelector::from_json(s.pointer("/spec/selector").unwrap_or(&Value::Null));
            if sel.is_ok_and(|sel| sel.matches_value(pod.pointer("/metadata/labels"))) {
                keys.push(runtime::object_key(&s));
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// The revisions of a StatefulSet or DaemonSet after [`sync_revisions`].
pub struct Revisions {
    /// Name (`<owner>-<hash>`) and hash of the revision of the current template.
    pub update: String,
    pub update_hash: String,
    /// The revision named by `status.currentRevision` (else the update one) and its template.
    pub current: String,
    pub current_template: Value,
}

/// The template a ControllerRevision stores (its `data` is upstream's patch `{"spec": {"template": {..,
/// "$patch": "replace"}}}`, which `kubectl rollout undo` applies as is).
fn stored_template(r: &Value) -> Option<Value> {
    let mut t = r.pointer("/data/spec/template").cloned()?;
    t.as_object_mut()?.remove("$patch");
    Some(t)
}

/// Finds or creates the ControllerRevision of the owner's template (reusing, with a new revision number, an older
/// one holding the same template, as after a rollback), and prunes unused ones beyond `revisionHistoryLimit`.
/// `hash_label` is the label carrying the hash on the revision; `in_use` lists revision names pods still carry.
pub async fn sync_revisions(
    ctx: &Context,
    owner: &Value,
    kind: &str,
    hash_label: &str,
    store: &Store,
    in_use: &[String],
) -> Result<Revisions, BoxError> {
    let ns = runtime::namespace(owner);
    let api = ctx.api("apps", "v1", "controllerrevisions").namespaced(ns);
    let uid = runtime::uid(owner);
    let mut owned = store.list_by(|r| runtime::namespace(r) == ns && controlled_by(r, uid));
    owned.sort_by_key(|r| int_at(r, "/revision", 0));
    let template = owner.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let max = owned.iter().map(|r| int_at(r, "/revision", 0)).max().unwrap_or(0);
    let prefix = format!("{}-", runtime::name(owner));
    let hash_of = |r: &Value| {
        r.pointer("/metadata/labels")
            .and_then(|l| l.get(hash_label))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| runtime::name(r).strip_prefix(&prefix).unwrap_or(runtime::name(r)).to_string())
    };
    let (update, update_hash) = match owned.iter().find(|r| stored_template(r).as_ref() == Some(&template)) {
        Some(r) => {
            let name = runtime::name(r).to_string();
            if int_at(r, "/revision", 0) < max {
                api.patch(&name, PatchType::Merge, &json!({"revision": max + 1})).await?;
            }
            (name, hash_of(r))
        }
        None => {
            let collision = owner.pointer("/status/collisionCount").and_then(Value::as_i64);
            let hash = template_hash(&template, collision);
            let name = format!("{prefix}{hash}");
            let mut labels = if kind == "DaemonSet" {
                owner.pointer("/spec/template/metadata/labels").cloned().unwrap_or(json!({}))
            } else {
                owner.pointer("/spec/selector/matchLabels").cloned().unwrap_or(json!({}))
            };
            labels[hash_label] = json!(hash);
            let mut data = template.clone();
            data["$patch"] = json!("replace");
            let rev = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": {"name": name, "namespace": ns, "labels": labels,
                    "ownerReferences": [new_controller_ref(owner, "apps/v1", kind)]},
                "data": {"spec": {"template": data}}, "revision": max + 1});
            match api.create(&rev).await {
                Ok(_) => {}
                Err(e) if e.code() == Some(409) => {
                    let existing = api.get(&name).await?;
                    if !controlled_by(&existing, uid) || stored_template(&existing).as_ref() != Some(&template) {
                        let mut cc = Map::new();
                        cc.insert("collisionCount".into(), json!(collision.unwrap_or(0) + 1));
                        let plural = if kind == "DaemonSet" { "daemonsets" } else { "statefulsets" };
                        let owners = ctx.api("apps", "v1", plural).namespaced(ns);
                        super::replicaset::update_status(&owners, owner, &cc).await?;
                        return Err(format!("hash collision on controller revision {name}").into());
                    }
                }
                Err(e) => return Err(e.into()),
            }
            (name, hash)
        }
    };
    let current_name = owner.pointer("/status/currentRevision").and_then(Value::as_str).unwrap_or_default();
    let (current, current_template) = match owned.iter().find(|r| runtime::name(r) == current_name) {
        Some(r) if !current_name.is_empty() => (current_name.to_string(), stored_template(r).unwrap_or(template)),
        _ => (update.clone(), template),
    };
    // History beyond revisionHistoryLimit that no pod uses goes, oldest first (upstream's `truncateHistory`).
    let limit = int_at(owner, "/spec/revisionHistoryLimit", 10).max(0) as usize;
    let unused: Vec<&Arc<Value>> = owned
        .iter()
        .filter(|r| {
            let n = runtime::name(r);
            n != update && n != current && !in_use.iter().any(|u| u == n || *u == hash_of(r))
        })
        .collect();
    for r in unused.iter().take(unused.len().saturating_sub(limit)) {
        match api.delete(runtime::name(r), None).await {
            Ok(_) => {}
            Err(e) if e.code() == Some(404) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Revisions { update, update_hash, current, current_template })
}

async fn sync(
    ctx: &Context,
    rec: &Recorder,
    key: &str,
    sets: &Store,
    pod_store: &Store,
    rev_store: &Store,
) -> Result<Action, BoxError> {
    let (ns, name) = runtime::split_key(key);
    let Some(set) = sets.get(ns, name) else { return Ok(Action::Done) };
    let selector = match LabelSelector::from_json(set.pointer("/spec/selector").unwrap_or(&Value::Null)) {
        Ok(s) if !s.is_empty() => s,
        _ => {
            tracing::warn!(%key, "invalid or empty selector; not syncing");
            return Ok(Action::Done);
        }
    };
    let pods_api = ctx.api("", "v1", "pods").namespaced(ns);
    let candidates = pod_store.list_by(|p| runtime::namespace(p) == ns);
    let owner_api = ctx.api("apps", "v1", "statefulsets").namespaced(ns);
    let claimed = claim_pods(&set, "apps/v1", "StatefulSet", &selector, candidates, &pods_api, &owner_api).await?;
    let pods: Vec<Arc<Value>> = claimed.into_iter().filter(|p| ordinal(name, runtime::name(p)).is_some()).collect();
    let in_use: Vec<String> = pods.iter().map(|p| revision_of(p).to_string()).collect();
    let revs = sync_revisions(ctx, &set, "StatefulSet", "controller.kubernetes.io/hash", rev_store, &in_use).await?;
    let (update_rev, current_rev, current_template) = (revs.update, revs.current, revs.current_template);
    let update_template = set.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let replicas = int_at(&set, "/spec/replicas", 1).max(0);
    let start = int_at(&set, "/spec/ordinals/start", 0).max(0);
    let min_ready = int_at(&set, "/spec/minReadySeconds", 0);
    let monotonic = set.pointer("/spec/podManagementPolicy").and_then(Value::as_str) != Some("Parallel");
    let strategy = set.pointer("/spec/updateStrategy/type").and_then(Value::as_str).unwrap_or("RollingUpdate");
    let partition = if strategy == "RollingUpdate" {
        int_at(&set, "/spec/updateStrategy/rollingUpdate/partition", 0).max(0)
    } else {
        0
    };
    let now = jiff::Timestamp::now();

    let mut slots: Vec<Option<Arc<Value>>> = vec![None; replicas as usize];
    let mut condemned: Vec<(i64, Arc<Value>)> = Vec::new();
    for p in &pods {
        let Some(o) = ordinal(name, runtime::name(p)) else { continue };
        if o >= start && o < start + replicas {
            slots[(o - start) as usize] = Some(p.clone());
        } else {
            condemned.push((o, p.clone()));
        }
    }
    condemned.sort_by_key(|c| std::cmp::Reverse(c.0));

    let status = compute_status(&set, &pods, &current_rev, &update_rev, min_ready, now, strategy);
    let result = manage(
        ctx,
        rec,
        &set,
        &pods_api,
        Manage {
            slots: &slots,
            condemned: &condemned,
            start,
            partition,
            monotonic,
            on_delete: strategy == "OnDelete",
            min_ready,
            now,
            update: (&update_rev, &update_template),
            current: (&current_rev, &current_template),
        },
    )
    .await;
    let api = ctx.api("apps", "v1", "statefulsets").namespaced(ns);
    if super::replicaset::status_differs(&set, &status) {
        match super::replicaset::update_status(&api, &set, &status).await {
            Ok(_) => {}
            Err(e) if e.code() == Some(404) => return Ok(Action::Done),
            Err(e) => return Err(e.into()),
        }
    }
    result?;
    let ready = status.get("readyReplicas").and_then(Value::as_i64).unwrap_or(0);
    let available = status.get("availableReplicas").and_then(Value::as_i64).unwrap_or(0);
    if min_ready > 0 && ready > available {
        return Ok(Action::RequeueAfter(Duration::from_secs(min_ready as u64)));
    }
    Ok(Action::Done)
}

fn compute_status(
    set: &Value,
    pods: &[Arc<Value>],
    current_rev: &str,
    update_rev: &str,
    min_ready: i64,
    now: jiff::Timestamp,
    strategy: &str,
) -> Map<String, Value> {
    let live: Vec<&Arc<Value>> = pods.iter().filter(|p| pod_active(p)).collect();
    let count = |f: &dyn Fn(&Value) -> bool| live.iter().filter(|p| f(p)).count() as i64;
    let replicas = live.len() as i64;
    let ready = count(&running_and_ready);
    let available = count(&|p| running_and_ready(p) && pod_available(p, min_ready, now));
    let mut current_replicas = count(&|p| revision_of(p) == current_rev);
    let updated = count(&|p| revision_of(p) == update_rev);
    let mut current_rev = current_rev.to_string();
    let want = int_at(set, "/spec/replicas", 1);
    // A finished rolling update makes the update revision current (upstream's `completeRollingUpdate`).
    if strategy == "RollingUpdate" && updated == replicas && ready == replicas && replicas == want {
        current_rev = update_rev.to_string();
        current_replicas = updated;
    }
    let mut s = Map::new();
    s.insert("observedGeneration".into(), json!(int_at(set, "/metadata/generation", 0)));
    s.insert("replicas".into(), json!(replicas));
    s.insert("readyReplicas".into(), json!(ready));
    s.insert("availableReplicas".into(), json!(available));
    s.insert("currentReplicas".into(), json!(current_replicas));
    s.insert("updatedReplicas".into(), json!(updated));
    s.insert("currentRevision".into(), json!(current_rev));
    s.insert("updateRevision".into(), json!(update_rev));
    if let Some(c) = set.pointer("/status/collisionCount") {
        s.insert("collisionCount".into(), c.clone());
    }
    s
}

struct Manage<'a> {
    slots: &'a [Option<Arc<Value>>],
    condemned: &'a [(i64, Arc<Value>)],
    start: i64,
    partition: i64,
    monotonic: bool,
    on_delete: bool,
    min_ready: i64,
    now: jiff::Timestamp,
    update: (&'a str, &'a Value),
    current: (&'a str, &'a Value),
}

async fn delete_pod(rec: &Recorder, set: &Value, api: &client::Api, pod: &Value) -> Result<(), BoxError> {
    let (pname, sname) = (runtime::name(pod), runtime::name(set));
    match api.delete(pname, None).await {
        Ok(_) => {
            rec.record(
                set,
                EventType::Normal,
                "SuccessfulDelete",
                &format!("delete Pod {pname} in StatefulSet {sname} successful"),
            );
            Ok(())
        }
        Err(e) if e.code() == Some(404) => Ok(()),
        Err(e) => {
            rec.record(
                set,
                EventType::Warning,
                "FailedDelete",
                &format!("delete Pod {pname} in StatefulSet {sname} failed error: {e}"),
            );
            Err(e.into())
        }
    }
}

async fn create_pod(
    ctx: &Context,
    rec: &Recorder,
    set: &Value,
    api: &client::Api,
    pod: &Value,
) -> Result<(), BoxError> {
    let (pname, sname, ns) = (runtime::name(pod), runtime::name(set), runtime::namespace(set));
    let ordinal = ordinal(sname, pname).unwrap_or(0);
    let pvcs = ctx.api("", "v1", "persistentvolumeclaims").namespaced(ns);
    for t in claim_templates(set) {
        let cname = claim_name(runtime::name(&t), sname, ordinal);
        match pvcs.get(&cname).await {
            Ok(_) => continue,
            Err(e) if e.code() == Some(404) => {}
            Err(e) => return Err(e.into()),
        }
        let mut labels = t.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
        if let Some(m) = set.pointer("/spec/selector/matchLabels").and_then(Value::as_object) {
            for (k, v) in m {
                labels[k] = v.clone();
            }
        }
        let mut meta = t.get("metadata").cloned().unwrap_or(json!({}));
        meta["name"] = json!(cname);
        meta["namespace"] = json!(ns);
        meta["labels"] = labels;
        let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta,
            "spec": t.get("spec").cloned().unwrap_or(json!({}))});
        match pvcs.create(&pvc).await {
            Ok(_) => rec.record(
                set,
                EventType::Normal,
                "SuccessfulCreate",
                &format!("create Claim {cname} Pod {pname} in StatefulSet {sname} success"),
            ),
            Err(e) if e.code() == Some(409) => {}
            Err(e) => {
                rec.record(
                    set,
                    EventType::Warning,
                    "FailedCreate",
                    &format!("create Claim {cname} for Pod {pname} in StatefulSet {sname} failed error: {e}"),
                );
                return Err(e.into());
            }
        }
    }
    match api.create(pod).await {
        Ok(_) => {
            rec.record(
                set,
                EventType::Normal,
                "SuccessfulCreate",
                &format!("create Pod {pname} in StatefulSet {sname} successful"),
            );
            Ok(())
        }
        // The informer has not seen it yet.
        Err(e) if e.code() == Some(409) => Ok(()),
        Err(e) => {
            rec.record(
                set,
                EventType::Warning,
                "FailedCreate",
                &format!("create Pod {pname} in StatefulSet {sname} failed error: {e}"),
            );
            Err(e.into())
        }
    }
}

/// Upstream's `updateStatefulSet`: create missing and replace failed pods in order, remove condemned ones from the
/// highest ordinal, then roll outdated pods from the highest ordinal down to the partition.
async fn manage(ctx: &Context, rec: &Recorder, set: &Value, api: &client::Api, m: Manage<'_>) -> Result<(), BoxError> {
    let healthy = |p: &Value| running_and_ready(p) && pod_available(p, m.min_ready, m.now);
    for (i, slot) in m.slots.iter().enumerate() {
        let ord = m.start + i as i64;
        match slot {
            None => {
                let (rev, template) = if !m.on_delete && ord < m.start + m.partition { m.current } else { m.update };
                create_pod(ctx, rec, set, api, &new_pod(set, template, ord, rev)).await?;
                if m.monotonic {
                    return Ok(());
                }
            }
            Some(p) => {
                let phase = p.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default();
                if (phase == "Failed" || phase == "Succeeded") && !terminating(p) {
                    // Replaced on a later sync, once the informer saw the deletion.
                    delete_pod(rec, set, api, p).await?;
                    if m.monotonic {
                        return Ok(());
                    }
                    continue;
                }
                // Identity labels a user removed or changed come back (upstream's `updateStatefulSetPod`).
                let label = |k: &str| p.pointer("/metadata/labels").and_then(|l| l.get(k)).and_then(Value::as_str);
                let (pname, index) = (runtime::name(p), ord.to_string());
                if !terminating(p) && (label(POD_NAME_LABEL) != Some(pname) || label(POD_INDEX_LABEL) != Some(&index)) {
                    let patch = json!({"metadata": {"labels": {POD_NAME_LABEL: pname, POD_INDEX_LABEL: index}}});
                    match api.patch(pname, PatchType::Merge, &patch).await {
                        Ok(_) => {}
                        Err(e) if e.code() == Some(404) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                if m.monotonic && (terminating(p) || !healthy(p)) {
                    return Ok(());
                }
            }
        }
    }
    // Upstream's first unhealthy pod (not Running and Ready, or terminating), by ordinal: a replica (a missing one
    // counts) before any condemned pod. Only a condemned one can be it here, as in monotonic mode every replica
    // is healthy by now.
    let unhealthy = |p: &Value| !running_and_ready(p) || terminating(p);
    let first_unhealthy = if m.slots.iter().all(|s| s.as_ref().is_some_and(|p| !unhealthy(p))) {
        m.condemned.iter().rev().find(|(_, p)| unhealthy(p)).map(|(_, p)| runtime::name(p))
    } else {
        None
    };
    for (_, p) in m.condemned {
        if terminating(p) {
            if m.monotonic {
                return Ok(());
            }
            continue;
        }
        // In order, a condemned pod that is not Running, Ready and available waits, unless it is the first
        // unhealthy pod (upstream's `processCondemned`).
        if m.monotonic && !healthy(p) && first_unhealthy != Some(runtime::name(p)) {
            tracing::debug!(pod = runtime::name(p), first_unhealthy, "waiting for an unhealthy pod before scale down");
            return Ok(());
        }
        delete_pod(rec, set, api, p).await?;
        if m.monotonic {
            return Ok(());
        }
    }
    if m.on_delete {
        return Ok(());
    }
    // Rolling update: highest ordinal first, one at a time, down to the partition.
    for i in (m.partition.max(0) as usize..m.slots.len()).rev() {
        let Some(p) = &m.slots[i] else { return Ok(()) };
        if revision_of(p) != m.update.0 && !terminating(p) {
            tracing::info!(pod = runtime::name(p), "terminating for update");
            return delete_pod(rec, set, api, p).await;
        }
        if !healthy(p) {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_of_member_pods_only() {
        assert_eq!(ordinal("web", "web-0"), Some(0));
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "web-01"), None);
        assert_eq!(ordinal("web", "webx-1"), None);
        assert_eq!(ordinal("web", "web-a"), None);
        assert_eq!(ordinal("web", "web-"), None);
    }

    #[test]
    fn pods_get_identity_and_claims() {
        let set = json!({"metadata": {"name": "db", "namespace": "ns", "uid": "u"},
            "spec": {"serviceName": "db-svc", "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]}});
        let template = json!({"metadata": {"labels": {"app": "db"}},
            "spec": {"containers": [], "volumes": [{"name": "data", "emptyDir": {}}]}});
        let p = new_pod(&set, &template, 2, "db-abc");
        assert_eq!(p["metadata"]["name"], "db-2");
        assert_eq!(p["metadata"]["labels"][POD_NAME_LABEL], "db-2");
        assert_eq!(p["metadata"]["labels"][POD_INDEX_LABEL], "2");
        assert_eq!(p["metadata"]["labels"][REVISION_LABEL], "db-abc");
        assert_eq!(p["metadata"]["labels"]["app"], "db");
        assert_eq!((p["spec"]["hostname"].clone(), p["spec"]["subdomain"].clone()), (json!("db-2"), json!("db-svc")));
        assert_eq!(
            p["spec"]["volumes"],
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-2"}}])
        );
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
    }
}
