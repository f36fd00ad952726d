//! `deployment`: rolls Deployments out through ReplicaSets, as upstream's `pkg/controller/deployment`:
//!
//! - ReplicaSets are claimed by selector and controllerRef; the new one is the ReplicaSet whose template equals the
//!   Deployment's (ignoring `pod-template-hash`), else it is created as `<deployment>-<hash>` with the
//!   `pod-template-hash` label on its template, labels and selector (hash: fnv32a of the canonical template JSON and
//!   `status.collisionCount`, encoded as upstream's `rand.SafeEncodeString`, so it is stable across restarts);
//! - ReplicaSets carry `deployment.kubernetes.io/revision` (max old revision + 1; a reused old ReplicaSet, as after
//!   `kubectl rollout undo`, gets a new revision and its old one appended to `revision-history`),
//!   `desired-replicas` and `max-replicas`, plus the Deployment's own annotations (e.g. `kubernetes.io/change-cause`);
//!   the Deployment gets the revision annotation too;
//! - `RollingUpdate`: the new ReplicaSet grows while the total stays within replicas + maxSurge (rounded up), old
//!   ones shrink (unhealthy replicas first, oldest first) while availability stays above replicas - maxUnavailable
//!   (rounded down; both zero means one unavailable); `Recreate`: old ReplicaSets go to zero, and once none of their
//!   pods runs the new one is scaled up;
//! - a scaling event (replicas changed, seen through `desired-replicas`) or a paused Deployment only scales;
//!   `revisionHistoryLimit` old, empty ReplicaSets are kept, the rest deleted once the rollout completed;
//! - status (`observedGeneration`, `replicas`, `updatedReplicas`, `readyReplicas`, `availableReplicas`,
//!   `unavailableReplicas`, `collisionCount`) and conditions `Available` (MinimumReplicasAvailable/Unavailable) and
//!   `Progressing` (NewReplicaSetCreated, FoundNewReplicaSet, ReplicaSetUpdated, NewReplicaSetAvailable,
//!   ProgressDeadlineExceeded, DeploymentPaused, DeploymentResumed) with upstream's messages, so `kubectl rollout
//!   status/history/undo/restart` behave as upstream; `ScalingReplicaSet` events.
//!
//! - scaling in the middle of a rollout is proportional (each active ReplicaSet by its `max-replicas` annotation, the
//!   rounding leftover to the largest).
//!
//! - a `ReplicaFailure` condition of its ReplicaSets (the new one first) is copied onto the Deployment.
//!
//! Deliberate gaps: the deprecated `rollbackTo` spec is ignored.

use std::sync::Arc;
use std::time::Duration;

use api_types::patch::PatchType;
use runtime::events::{EventType, Recorder};
use runtime::{Action, Controller, Notification, Store};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::replicaset::{claim_pods, controlled_by, controller_ref, int_at, new_controller_ref, now_rfc3339};
use crate::{BoxError, Context, stopped};

pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Annotations of the Deployment not copied onto its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];
/// Upstream's `MaxRevisionHistoryLengthInChars`.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

// ---- pure logic ----

/// An int-or-percent against `total` (upstream's `GetScaledValueFromIntOrPercent`).
pub fn scaled_value(v: Option<&Value>, total: i64, round_up: bool) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(p) if round_up => (p * total + 99) / 100,
            Some(p) => p * total / 100,
            None => s.parse().unwrap_or(0),
        },
        _ => 0,
    }
}

/// (maxSurge, maxUnavailable) of a rolling update of `desired` replicas (upstream's `ResolveFenceposts`).
pub fn fenceposts(surge: Option<&Value>, unavailable: Option<&Value>, desired: i64) -> (i64, i64) {
    let s = scaled_value(surge, desired, true);
    let u = scaled_value(unavailable, desired, false);
    if s == 0 && u == 0 { (0, 1) } else { (s, u) }
}

fn rolling(d: &Value) -> bool {
    d.pointer("/spec/strategy/type").and_then(Value::as_str).unwrap_or("RollingUpdate") == "RollingUpdate"
}

fn replicas(d: &Value) -> i64 {
    int_at(d, "/spec/replicas", 1)
}

fn ru(d: &Value) -> (i64, i64) {
    fenceposts(
        d.pointer("/spec/strategy/rollingUpdate/maxSurge").or(Some(&json!("25%"))),
        d.pointer("/spec/strategy/rollingUpdate/maxUnavailable").or(Some(&json!("25%"))),
        replicas(d),
    )
}

pub fn max_surge(d: &Value) -> i64 {
    if rolling(d) { ru(d).0 } else { 0 }
}

pub fn max_unavailable(d: &Value) -> i64 {
    if !rolling(d) || replicas(d) == 0 {
        return 0;
    }
    ru(d).1.min(replicas(d))
}

fn spec_replicas(rs: &Value) -> i64 {
    int_at(rs, "/spec/replicas", 0)
}

fn status_int(rs: &Value, f: &str) -> i64 {
    int_at(rs, &format!("/status/{f}"), 0)
}

fn annotation<'a>(o: &'a Value, k: &str) -> Option<&'a str> {
    o.pointer("/metadata/annotations")?.get(k)?.as_str()
}

pub fn revision(rs: &Value) -> i64 {
    annotation(rs, REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// JSON with object keys sorted, so equal objects print the same.
fn canonical(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(keys.into_iter().map(|k| (k.clone(), sort(&m[k]))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

/// Upstream's `rand.SafeEncodeString`: every byte mapped onto consonants and digits that never spell words.
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes().map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char).collect()
}

/// The `pod-template-hash` of a template (upstream's `ComputeHash`: fnv32a, then the collision count, encoded).
pub fn template_hash(template: &Value, collision_count: Option<i64>) -> String {
    let mut h: u32 = 0x811c9dc5;
    let mut write = |bytes: &[u8]| {
        for b in bytes {
            h ^= *b as u32;
            h = h.wrapping_mul(0x01000193);
        }
    };
    write(canonical(template).as_bytes());
    if let Some(c) = collision_count {
        let mut buf = [0u8; 8];
        buf[..4].copy_from_slice(&(c as u32).to_le_bytes());
        write(&buf);
    }
    safe_encode(&h.to_string())
}

fn without_hash(template: Option<&Value>) -> Value {
    let mut t = template.cloned().unwrap_or(Value::Null);
    if let Some(l) = t.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        l.remove(HASH_LABEL);
        if l.is_empty() {
            t["metadata"].as_object_mut().map(|m| m.remove("labels"));
        }
    }
    t
}

/// Templates equal but for the `pod-template-hash` label (upstream's `EqualIgnoreHash`).
pub fn equal_ignore_hash(a: Option<&Value>, b: Option<&Value>) -> bool {
    without_hash(a) == without_hash(b)
}

/// How many replicas the new ReplicaSet should have now (upstream's `NewRSNewReplicas`).
pub fn new_rs_new_replicas(d: &Value, all: &[&Value], new_rs: &Value) -> i64 {
    if !rolling(d) {
        return replicas(d);
    }
    let current: i64 = all.iter().map(|r| spec_replicas(r)).sum();
    let max_total = replicas(d) + max_surge(d);
    if current >= max_total {
        return spec_replicas(new_rs);
    }
    let up = (max_total - current).min(replicas(d) - spec_replicas(new_rs));
    spec_replicas(new_rs) + up
}

/// The sizes of the active ReplicaSets (`(replicas, (creationTimestamp, name))`, in that order) after a scaling
/// event, as upstream's proportional scaling: each gets its fraction of the change by its `max-replicas`
/// annotation, the rounding leftover goes to the largest (newest when growing, oldest when shrinking).
pub fn proportional_sizes(d: &Value, sets: &[(i64, (String, String), Option<i64>)]) -> Vec<i64> {
    let want = replicas(d);
    let total: i64 = sets.iter().map(|s| s.0).sum();
    let allowed = if want > 0 { want + max_surge(d) } else { 0 };
    let to_add = allowed - total;
    let mut order: Vec<usize> = (0..sets.len()).collect();
    if to_add > 0 {
        // Larger first, newer first on ties.
        order.sort_by(|&a, &b| sets[b].0.cmp(&sets[a].0).then_with(|| sets[b].1.cmp(&sets[a].1)));
    } else {
        order.sort_by(|&a, &b| sets[b].0.cmp(&sets[a].0).then_with(|| sets[a].1.cmp(&sets[b].1)));
    }
    let mut sizes: Vec<i64> = sets.iter().map(|s| s.0).collect();
    if to_add == 0 || sets.is_empty() {
        return sizes;
    }
    let mut added = 0;
    for &i in &order {
        let have = sets[i].0;
        if have == 0 || to_add == added {
            continue;
        }
        let fraction = if want == 0 {
            -have
        } else {
            let annotated = sets[i].2.filter(|a| *a > 0).unwrap_or_else(|| status_int(d, "replicas").max(1));
            let target = (have * (want + max_surge(d))) as f64 / annotated as f64;
            target.round() as i64 - have
        };
        let allowed = to_add - added;
        let p = if to_add > 0 { fraction.min(allowed) } else { fraction.max(allowed) };
        sizes[i] += p;
        added += p;
    }
    let first = order[0];
    sizes[first] = (sizes[first] + to_add - added).max(0);
    sizes
}

fn set_condition(conds: &mut Vec<Value>, type_: &str, status: &str, reason: &str, message: &str) {
    let cur = conds.iter().find(|c| c["type"] == type_).cloned();
    if let Some(c) = &cur
        && c["status"] == status
        && c["reason"] == reason
    {
        return;
    }
    let now = now_rfc3339();
    let transition = match &cur {
        Some(c) if c["status"] == status => c["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    conds.retain(|c| c["type"] != type_);
    conds.push(json!({"type": type_, "status": status, "lastUpdateTime": now, "lastTransitionTime": transition,
        "reason": reason, "message": message}));
}

fn condition<'a>(conds: &'a [Value], type_: &str) -> Option<&'a Value> {
    conds.iter().find(|c| c["type"] == type_)
}

fn conditions(d: &Value) -> Vec<Value> {
    d.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default()
}

fn has_progress_deadline(d: &Value) -> bool {
    d.pointer("/spec/progressDeadlineSeconds").and_then(Value::as_i64).is_some_and(|s| s < i32::MAX as i64)
}

/// The status the ReplicaSets add up to (upstream's `calculateStatus`), conditions from `d` plus Available.
pub fn calculate_status(all: &[&Value], new_rs: Option<&Value>, d: &Value) -> Map<String, Value> {
    let sum = |f: &str| all.iter().map(|r| status_int(r, f)).sum::<i64>();
    let available = sum("availableReplicas");
    let total = sum("replicas");
    let mut s = Map::new();
    s.insert("observedGeneration".into(), json!(int_at(d, "/metadata/generation", 0)));
    s.insert("replicas".into(), json!(total));
    s.insert("updatedReplicas".into(), json!(new_rs.map(|r| status_int(r, "replicas")).unwrap_or(0)));
    s.insert("readyReplicas".into(), json!(sum("readyReplicas")));
    s.insert("availableReplicas".into(), json!(available));
    s.insert("unavailableReplicas".into(), json!((total - available).max(0)));
    if let Some(c) = d.pointer("/status/collisionCount") {
        s.insert("collisionCount".into(), c.clone());
    }
    let mut conds = conditions(d);
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(
            &mut conds,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        );
    } else {
        set_condition(
            &mut conds,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        );
    }
    s.insert("conditions".into(), json!(conds));
    s
}

fn st(s: &Map<String, Value>, f: &str) -> i64 {
    s.get(f).and_then(Value::as_i64).unwrap_or(0)
}

/// Upstream's `DeploymentComplete`.
pub fn complete(d: &Value, s: &Map<String, Value>) -> bool {
    let r = replicas(d);
    st(s, "updatedReplicas") == r
        && st(s, "replicas") == r
        && st(s, "availableReplicas") == r
        && st(s, "observedGeneration") >= int_at(d, "/metadata/generation", 0)
}

/// Upstream's `DeploymentProgressing`: the new status moved forward from the one recorded.
pub fn progressing(d: &Value, s: &Map<String, Value>) -> bool {
    let old = |f: &str| status_int(d, f);
    let old_old = old("replicas") - old("updatedReplicas");
    let new_old = st(s, "replicas") - st(s, "updatedReplicas");
    st(s, "updatedReplicas") > old("updatedReplicas")
        || new_old < old_old
        || st(s, "readyReplicas") > old("readyReplicas")
        || st(s, "availableReplicas") > old("availableReplicas")
}

/// Seconds until the progress deadline passes (<= 0: passed), if a deadline runs.
fn deadline_left(d: &Value, conds: &[Value], now: jiff::Timestamp) -> Option<i64> {
    if !has_progress_deadline(d) {
        return None;
    }
    let c = condition(conds, "Progressing")?;
    if c["reason"] == "NewReplicaSetAvailable" || c["reason"] == "ProgressDeadlineExceeded" {
        return None;
    }
    let from = super::replicaset::parse_time(c.get("lastUpdateTime"))?;
    Some(from.as_second() + int_at(d, "/spec/progressDeadlineSeconds", 600) - now.as_second())
}

// ---- the controller ----

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let deployments = ctx.informer("apps", "v1", "deployments");
    let replicasets = ctx.informer("apps", "v1", "replicasets");
    let pods = ctx.informer("", "v1", "pods");
    let recorder = ctx.recorder("deployment-controller");
    let (dstore, rstore) = (deployments.store().clone(), replicasets.store().clone());
    let c = ctx.clone();
    Controller::new(runtime::controller::Config {
        workers: ctx.options.concurrent_deployment_syncs,
        ..Default::default()
    })
    .watches(&deployments, |n| vec![n.key()])
    .watches(&replicasets, move |n| deployments_of(n, &dstore))
    .watches(&pods, move |n| match n {
        // Recreate waits for the old pods to be gone or finished.
        Notification::Updated { new: p, .. } | Notification::Deleted(p)
            if matches!(n, Notification::Deleted(_))
                || matches!(p.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed")) =>
        {
            owner_key(p, "ReplicaSet")
                .and_then(|k| rstore.get_by_key(&k))
                .and_then(|rs| owner_key(&rs, "Deployment"))
                .into_iter()
                .collect()
        }
        _ => vec![],
    })
    .run(
        move |key: String| {
            let (c, d, r, p, rec) =
                (c.clone(), deployments.clone(), replicasets.clone(), pods.clone(), recorder.clone());
            async move { Sync { ctx: &c, rec: &rec, pods: p.store() }.sync(&key, d.store(), r.store()).await }
        },
        stopped(stop),
    )
    .await;
}

fn owner_key(o: &Value, kind: &str) -> Option<String> {
    let r = controller_ref(o)?;
    if r.get("kind").and_then(Value::as_str) != Some(kind) {
        return None;
    }
    Some(runtime::key(runtime::namespace(o), r.get("name")?.as_str()?))
}

fn deployments_of(n: &Notification, deployments: &Store) -> Vec<String> {
    let rs = n.object();
    let mut keys: Vec<String> =
        [Some(rs), n.old()].into_iter().flatten().filter_map(|o| owner_key(o, "Deployment")).collect();
    if keys.is_empty() && controller_ref(rs).is_none() {
        let ns = runtime::namespace(rs);
        for d in deployments.list_by(|d| runtime::namespace(d) == ns) {
            let sel =
                api_types::selector::LabelSelector::from_json(d.pointer("/spec/selector").unwrap_or(&Value::Null));
            if sel.is_ok_and(|s| !s.is_empty() && s.matches_value(rs.pointer("/metadata/labels"))) {
                keys.push(runtime::object_key(&d));
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

struct Sync<'a> {
    ctx: &'a Context,
    rec: &'a Recorder,
    pods: &'a Store,
}

/// The ReplicaSets of a Deployment during one sync: the new one (if any) and the old ones.
struct Sets {
    new: Option<Value>,
    old: Vec<Value>,
}

impl Sets {
    fn all(&self) -> Vec<&Value> {
        self.old.iter().chain(self.new.as_ref()).collect()
    }
}

fn created(o: &Value) -> (String, String) {
    (
        o.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or_default().to_string(),
        runtime::name(o).to_string(),
    )
}

impl Sync<'_> {
    fn rs_api(&self, ns: &str) -> client::Api {
        self.ctx.api("apps", "v1", "replicasets").namespaced(ns)
    }

    async fn sync(&self, key: &str, dstore: &Store, rstore: &Store) -> Result<Action, BoxError> {
        let (ns, name) = runtime::split_key(key);
        let Some(d) = dstore.get(ns, name) else { return Ok(Action::Done) };
        let mut d = (*d).clone();
        let selector =
            api_types::selector::LabelSelector::from_json(d.pointer("/spec/selector").unwrap_or(&Value::Null))
                .map_err(|e| format!("invalid selector: {e}"));
        let selector = match selector {
            Ok(s) if s.is_empty() => {
                if int_at(&d, "/status/observedGeneration", 0) < int_at(&d, "/metadata/generation", 0) {
                    self.rec.record(
                        &d,
                        EventType::Warning,
                        "SelectingAll",
                        "This deployment is selecting all pods. A non-empty selector is required.",
                    );
                    let g = int_at(&d, "/metadata/generation", 0);
                    self.write_status(&d, &json!({"observedGeneration": g}).as_object().cloned().unwrap_or_default())
                        .await?;
                }
                return Ok(Action::Done);
            }
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%key, error = %e, "not syncing");
                return Ok(Action::Done);
            }
        };
        let candidates = rstore.list_by(|r| runtime::namespace(r) == ns);
        let owner_api = self.ctx.api("apps", "v1", "deployments").namespaced(ns);
        let owned =
            claim_pods(&d, "apps/v1", "Deployment", &selector, candidates, &self.rs_api(ns), &owner_api).await?;
        let rs_list: Vec<Value> = owned.iter().map(|r| (**r).clone()).collect();
        if d.pointer("/metadata/deletionTimestamp").is_some() {
            let sets = self.sets(&mut d, rs_list, false).await?;
            let s = calculate_status(&sets.all(), sets.new.as_ref(), &d);
            self.write_status(&d, &s).await?;
            return Ok(Action::Done);
        }
        self.check_paused(&mut d).await?;
        let paused = d.pointer("/spec/paused").and_then(Value::as_bool).unwrap_or(false);
        if paused || self.scaling_event(&d, &rs_list) {
            let mut sets = self.sets(&mut d, rs_list, false).await?;
            self.scale(&d, &mut sets).await?;
            if paused {
                self.cleanup(&d, &sets).await?;
            }
            let s = calculate_status(&sets.all(), sets.new.as_ref(), &d);
            self.write_status(&d, &s).await?;
            return Ok(Action::Done);
        }
        if rolling(&d) {
            self.rollout_rolling(&mut d, rs_list).await
        } else {
            self.rollout_recreate(&mut d, rs_list).await
        }
    }

    async fn write_status(&self, d: &Value, s: &Map<String, Value>) -> Result<Option<Value>, BoxError> {
        if !super::replicaset::status_differs(d, s) {
            return Ok(None);
        }
        let api = self.ctx.api("apps", "v1", "deployments").namespaced(runtime::namespace(d));
        match super::replicaset::update_status(&api, d, s).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.code() == Some(404) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Upstream's `checkPausedConditions`.
    async fn check_paused(&self, d: &mut Value) -> Result<(), BoxError> {
        if !has_progress_deadline(d) {
            return Ok(());
        }
        let mut conds = conditions(d);
        let cond = condition(&conds, "Progressing");
        if cond.is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded") {
            return Ok(());
        }
        let paused_cond = cond.is_some_and(|c| c["reason"] == "DeploymentPaused");
        let paused = d.pointer("/spec/paused").and_then(Value::as_bool).unwrap_or(false);
        if paused && !paused_cond {
            set_condition(&mut conds, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused");
        } else if !paused && paused_cond {
            set_condition(&mut conds, "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed");
        } else {
            return Ok(());
        }
        let mut s = Map::new();
        s.insert("conditions".into(), json!(conds));
        if let Some(v) = self.write_status(d, &s).await? {
            *d = v;
        }
        Ok(())
    }

    /// Upstream's `isScalingEvent`: an active ReplicaSet was sized for another replica count.
    fn scaling_event(&self, d: &Value, rs_list: &[Value]) -> bool {
        let want = replicas(d).to_string();
        rs_list
            .iter()
            .filter(|r| spec_replicas(r) > 0)
            .any(|r| annotation(r, DESIRED_REPLICAS).is_some_and(|a| a != want))
    }

    /// Splits the ReplicaSets into the new one and the old ones, syncing revisions (upstream's
    /// `getAllReplicaSetsAndSyncRevision`); creates the new one when `create`.
    async fn sets(&self, d: &mut Value, mut rs_list: Vec<Value>, create: bool) -> Result<Sets, BoxError> {
        rs_list.sort_by_key(created);
        let template = d.pointer("/spec/template");
        let new_idx = rs_list.iter().position(|r| equal_ignore_hash(r.pointer("/spec/template"), template));
        let new = new_idx.map(|i| rs_list.remove(i));
        let old = rs_list;
        let max_old = old.iter().map(revision).max().unwrap_or(0);
        let new_revision = max_old + 1;
        let new = match new {
            Some(rs) => Some(self.sync_existing_new(d, rs, new_revision).await?),
            None if create => Some(self.create_new(d, &old, new_revision).await?),
            None => None,
        };
        Ok(Sets { new, old })
    }

    /// The annotations the new ReplicaSet should carry; whether they changed.
    fn new_rs_annotations(&self, d: &Value, rs: &mut Value, new_revision: i64, exists: bool) -> bool {
        let before = rs.pointer("/metadata/annotations").cloned();
        let mut ann = rs.pointer("/metadata/annotations").and_then(Value::as_object).cloned().unwrap_or_default();
        if let Some(da) = d.pointer("/metadata/annotations").and_then(Value::as_object) {
            for (k, v) in da {
                if !NOT_COPIED.contains(&k.as_str()) {
                    ann.insert(k.clone(), v.clone());
                }
            }
        }
        let old_rev = ann.get(REVISION).and_then(Value::as_str).map(str::to_string);
        let old_rev_int = old_rev.as_deref().and_then(|r| r.parse::<i64>().ok()).unwrap_or(0);
        if old_rev_int < new_revision {
            ann.insert(REVISION.into(), json!(new_revision.to_string()));
            // Reused (rolled back to): keep the revisions it had.
            if let Some(old) = old_rev.filter(|r| !r.is_empty()) {
                let hist = ann.get(REVISION_HISTORY).and_then(Value::as_str).unwrap_or_default();
                let next = if hist.is_empty() { old } else { format!("{hist},{old}") };
                if next.len() <= MAX_REVISION_HISTORY_CHARS {
                    ann.insert(REVISION_HISTORY.into(), json!(next));
                }
            }
        }
        if !exists {
            ann.insert(DESIRED_REPLICAS.into(), json!(replicas(d).to_string()));
            ann.insert(MAX_REPLICAS.into(), json!((replicas(d) + max_surge(d)).to_string()));
        }
        rs["metadata"]["annotations"] = Value::Object(ann);
        rs.pointer("/metadata/annotations").cloned() != before
    }

    async fn sync_existing_new(&self, d: &mut Value, mut rs: Value, new_revision: i64) -> Result<Value, BoxError> {
        let ns = runtime::namespace(d).to_string();
        if self.new_rs_annotations(d, &mut rs, new_revision, true) {
            let patch = json!({"metadata": {"annotations": rs["metadata"]["annotations"]}});
            rs = self.rs_api(&ns).patch(runtime::name(&rs), PatchType::Merge, &patch).await?;
        }
        let rev = annotation(&rs, REVISION).unwrap_or_default().to_string();
        self.set_deployment_revision(d, &rev).await?;
        let mut conds = conditions(d);
        if has_progress_deadline(d) && condition(&conds, "Progressing").is_none() {
            let msg = format!("Found new replica set \"{}\"", runtime::name(&rs));
            set_condition(&mut conds, "Progressing", "True", "FoundNewReplicaSet", &msg);
            let mut s = Map::new();
            s.insert("conditions".into(), json!(conds));
            if let Some(v) = self.write_status(d, &s).await? {
                *d = v;
            }
        }
        Ok(rs)
    }

    async fn set_deployment_revision(&self, d: &mut Value, rev: &str) -> Result<(), BoxError> {
        if rev.is_empty() || annotation(d, REVISION) == Some(rev) {
            return Ok(());
        }
        // An update, as upstream: the deployment controller's role may update deployments, not patch them.
        let api = self.ctx.api("apps", "v1", "deployments").namespaced(runtime::namespace(d));
        let mut updated = d.clone();
        if !updated.pointer("/metadata/annotations").is_some_and(Value::is_object) {
            updated["metadata"]["annotations"] = json!({});
        }
        updated["metadata"]["annotations"][REVISION] = json!(rev);
        *d = api.replace(runtime::name(d), &updated).await?;
        Ok(())
    }

    async fn create_new(&self, d: &mut Value, old: &[Value], new_revision: i64) -> Result<Value, BoxError> {
        let ns = runtime::namespace(d).to_string();
        let collision = d.pointer("/status/collisionCount").and_then(Value::as_i64);
        let mut template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = template_hash(&template, collision);
        template["metadata"]["labels"][HASH_LABEL] = json!(hash);
        let mut selector = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
        selector["matchLabels"][HASH_LABEL] = json!(hash);
        let name = format!("{}-{hash}", runtime::name(d));
        let mut rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": ns, "labels": template["metadata"]["labels"],
                "ownerReferences": [new_controller_ref(d, "apps/v1", "Deployment")]},
            "spec": {"replicas": 0, "minReadySeconds": int_at(d, "/spec/minReadySeconds", 0),
                "selector": selector, "template": template}});
        self.new_rs_annotations(d, &mut rs, new_revision, false);
        let all: Vec<&Value> = old.iter().chain(std::iter::once(&rs)).collect();
        let want = new_rs_new_replicas(d, &all, &rs);
        rs["spec"]["replicas"] = json!(want);
        let api = self.rs_api(&ns);
        let created = match api.create(&rs).await {
            Ok(v) => v,
            Err(e) if e.code() == Some(409) => {
                let existing = api.get(&name).await?;
                if controlled_by(&existing, runtime::uid(d))
                    && equal_ignore_hash(existing.pointer("/spec/template"), d.pointer("/spec/template"))
                {
                    return Ok(existing);
                }
                // A hash collision: try the next name.
                let s = json!({"collisionCount": collision.unwrap_or(0) + 1});
                self.write_status(d, s.as_object().unwrap_or(&Map::new())).await?;
                return Err(format!("hash collision on replica set {name}").into());
            }
            Err(e) => {
                let mut conds = conditions(d);
                let msg = format!("Failed to create new replica set \"{name}\": {e}");
                set_condition(&mut conds, "Progressing", "False", "ReplicaSetCreateError", &msg);
                self.rec.record(d, EventType::Warning, "ReplicaSetCreateError", &msg);
                let mut s = Map::new();
                s.insert("conditions".into(), json!(conds));
                self.write_status(d, &s).await?;
                return Err(e.into());
            }
        };
        if want > 0 {
            self.rec.record(
                d,
                EventType::Normal,
                "ScalingReplicaSet",
                &format!("Scaled up replica set {name} from 0 to {want}"),
            );
        }
        self.set_deployment_revision(d, &new_revision.to_string()).await?;
        if has_progress_deadline(d) {
            let mut conds = conditions(d);
            let msg = format!("Created new replica set \"{name}\"");
            set_condition(&mut conds, "Progressing", "True", "NewReplicaSetCreated", &msg);
            let mut s = Map::new();
            s.insert("conditions".into(), json!(conds));
            if let Some(v) = self.write_status(d, &s).await? {
                *d = v;
            }
        }
        Ok(created)
    }

    /// Sets a ReplicaSet's size and the replicas annotations; records `ScalingReplicaSet`. Returns whether it scaled.
    async fn scale_rs(&self, d: &Value, rs: &mut Value, to: i64) -> Result<bool, BoxError> {
        let from = spec_replicas(rs);
        let desired = replicas(d).to_string();
        let max = (replicas(d) + max_surge(d)).to_string();
        let ann_ok = annotation(rs, DESIRED_REPLICAS) == Some(&desired) && annotation(rs, MAX_REPLICAS) == Some(&max);
        if from == to && ann_ok {
            return Ok(false);
        }
        let patch = json!({"metadata": {"annotations": {DESIRED_REPLICAS: desired, MAX_REPLICAS: max}},
            "spec": {"replicas": to}});
        *rs = self.rs_api(runtime::namespace(d)).patch(runtime::name(rs), PatchType::Merge, &patch).await?;
        if from != to {
            let dir = if to > from { "up" } else { "down" };
            let msg = format!("Scaled {dir} replica set {} from {from} to {to}", runtime::name(rs));
            self.rec.record(d, EventType::Normal, "ScalingReplicaSet", &msg);
        }
        Ok(from != to)
    }

    /// Upstream's `scale`.
    async fn scale(&self, d: &Value, sets: &mut Sets) -> Result<(), BoxError> {
        let want = replicas(d);
        let active: Vec<usize> = (0..sets.old.len()).filter(|&i| spec_replicas(&sets.old[i]) > 0).collect();
        let new_active = sets.new.as_ref().is_some_and(|r| spec_replicas(r) > 0);
        // One active (or none: the newest) ReplicaSet takes all replicas.
        if active.len() + usize::from(new_active) <= 1 {
            let target = match active.first() {
                Some(&i) => Some(&mut sets.old[i]),
                None if sets.new.is_some() => sets.new.as_mut(),
                None => sets.old.iter_mut().max_by_key(|r| created(r)),
            };
            if let Some(rs) = target {
                self.scale_rs(d, rs, want).await?;
            }
            return Ok(());
        }
        // The new ReplicaSet is saturated: old ones go to zero.
        if let Some(n) = &sets.new
            && annotation(n, DESIRED_REPLICAS) == Some(&want.to_string())
            && spec_replicas(n) == want
            && status_int(n, "availableReplicas") == want
        {
            for rs in sets.old.iter_mut() {
                self.scale_rs(d, rs, 0).await?;
            }
            return Ok(());
        }
        if !rolling(d) {
            return Ok(());
        }
        // Proportional scaling: every active ReplicaSet gets its share of the change.
        let mut active: Vec<&mut Value> =
            sets.old.iter_mut().chain(sets.new.iter_mut()).filter(|r| spec_replicas(r) > 0).collect();
        let sizes: Vec<(i64, (String, String), Option<i64>)> = active
            .iter()
            .map(|r| (spec_replicas(r), created(r), annotation(r, MAX_REPLICAS).and_then(|a| a.parse().ok())))
            .collect();
        let targets = proportional_sizes(d, &sizes);
        for (rs, to) in active.iter_mut().zip(targets) {
            self.scale_rs(d, rs, to).await?;
        }
        Ok(())
    }

    async fn rollout_rolling(&self, d: &mut Value, rs_list: Vec<Value>) -> Result<Action, BoxError> {
        let mut sets = self.sets(d, rs_list, true).await?;
        let Some(mut new_rs) = sets.new.take() else { return Err("no new replica set".into()) };
        // Scale up the new ReplicaSet.
        let want = replicas(d);
        let scaled_up = if spec_replicas(&new_rs) > want {
            self.scale_rs(d, &mut new_rs, want).await?
        } else if spec_replicas(&new_rs) < want {
            let all: Vec<&Value> = sets.old.iter().chain(std::iter::once(&new_rs)).collect();
            let to = new_rs_new_replicas(d, &all, &new_rs);
            self.scale_rs(d, &mut new_rs, to).await?
        } else {
            false
        };
        sets.new = Some(new_rs);
        if scaled_up {
            return self.sync_rollout_status(d, &sets).await;
        }
        if self.reconcile_old(d, &mut sets).await? {
            return self.sync_rollout_status(d, &sets).await;
        }
        let s = calculate_status(&sets.all(), sets.new.as_ref(), d);
        if complete(d, &s) {
            self.cleanup(d, &sets).await?;
        }
        self.sync_rollout_status(d, &sets).await
    }

    /// Upstream's `reconcileOldReplicaSets`: unhealthy old replicas first, then old available ones while
    /// availability stays above replicas - maxUnavailable.
    async fn reconcile_old(&self, d: &Value, sets: &mut Sets) -> Result<bool, BoxError> {
        let old_count: i64 = sets.old.iter().map(spec_replicas).sum();
        if old_count == 0 {
            return Ok(false);
        }
        let all_count: i64 = sets.all().iter().map(|r| spec_replicas(r)).sum();
        let min_available = replicas(d) - max_unavailable(d);
        let new_unavailable =
            sets.new.as_ref().map(|n| spec_replicas(n) - status_int(n, "availableReplicas")).unwrap_or(0);
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        sets.old.sort_by_key(created);
        // Unhealthy replicas of old ReplicaSets first.
        let mut cleaned = 0;
        for rs in sets.old.iter_mut() {
            if cleaned >= max_scaled_down {
                break;
            }
            let (have, avail) = (spec_replicas(rs), status_int(rs, "availableReplicas"));
            if have == 0 || avail >= have {
                continue;
            }
            let n = (max_scaled_down - cleaned).min(have - avail);
            self.scale_rs(d, rs, have - n).await?;
            cleaned += n;
        }
        // Then available ones, as far as availability allows.
        // A ReplicaSet just scaled down may still report the pods it is deleting as available: never count more
        // than it is asked to keep.
        let available: i64 = sets.all().iter().map(|r| status_int(r, "availableReplicas").min(spec_replicas(r))).sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for rs in sets.old.iter_mut() {
                if scaled >= total {
                    break;
                }
                let have = spec_replicas(rs);
                if have == 0 {
                    continue;
                }
                let n = have.min(total - scaled);
                self.scale_rs(d, rs, have - n).await?;
                scaled += n;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    async fn rollout_recreate(&self, d: &mut Value, rs_list: Vec<Value>) -> Result<Action, BoxError> {
        let mut sets = self.sets(d, rs_list.clone(), false).await?;
        let mut scaled_down = false;
        for rs in sets.old.iter_mut().filter(|r| spec_replicas(r) > 0) {
            scaled_down |= self.scale_rs(d, rs, 0).await?;
        }
        if scaled_down || self.old_pods_running(&sets) {
            return self.sync_rollout_status(d, &sets).await;
        }
        if sets.new.is_none() {
            sets = self.sets(d, rs_list, true).await?;
        }
        if let Some(mut n) = sets.new.take() {
            self.scale_rs(d, &mut n, replicas(d)).await?;
            sets.new = Some(n);
        }
        let s = calculate_status(&sets.all(), sets.new.as_ref(), d);
        if complete(d, &s) {
            self.cleanup(d, &sets).await?;
        }
        self.sync_rollout_status(d, &sets).await
    }

    /// Upstream's `oldPodsRunning`.
    fn old_pods_running(&self, sets: &Sets) -> bool {
        if sets.old.iter().any(|r| status_int(r, "replicas") > 0) {
            return true;
        }
        let old_uids: Vec<&str> = sets.old.iter().map(runtime::uid).collect();
        self.pods.list().iter().any(|p| {
            let phase = p.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default();
            let owner = controller_ref(p).and_then(|r| r.get("uid")).and_then(Value::as_str).unwrap_or_default();
            old_uids.contains(&owner) && phase != "Succeeded" && phase != "Failed"
        })
    }

    /// Deletes old, empty ReplicaSets beyond `revisionHistoryLimit` (upstream's `cleanupDeployment`).
    async fn cleanup(&self, d: &Value, sets: &Sets) -> Result<(), BoxError> {
        let Some(limit) = d.pointer("/spec/revisionHistoryLimit").and_then(Value::as_i64) else { return Ok(()) };
        let mut cleanable: Vec<&Value> =
            sets.old.iter().filter(|r| r.pointer("/metadata/deletionTimestamp").is_none()).collect();
        let diff = cleanable.len() as i64 - limit;
        if diff <= 0 {
            return Ok(());
        }
        cleanable.sort_by_key(|r| (revision(r), created(r)));
        for rs in cleanable.into_iter().take(diff as usize) {
            if status_int(rs, "replicas") != 0
                || spec_replicas(rs) != 0
                || int_at(rs, "/metadata/generation", 0) > status_int(rs, "observedGeneration")
            {
                continue;
            }
            match self.rs_api(runtime::namespace(d)).delete(runtime::name(rs), None).await {
                Ok(_) => {}
                Err(e) if e.code() == Some(404) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Upstream's `syncRolloutStatus`: status plus the Progressing condition; requeues for the progress deadline.
    async fn sync_rollout_status(&self, d: &Value, sets: &Sets) -> Result<Action, BoxError> {
        let mut s = calculate_status(&sets.all(), sets.new.as_ref(), d);
        let mut conds: Vec<Value> = s.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
        if !has_progress_deadline(d) {
            conds.retain(|c| c["type"] != "Progressing");
        }
        let cur = condition(&conds, "Progressing").cloned();
        let done = st(&s, "replicas") == st(&s, "updatedReplicas")
            && cur.as_ref().is_some_and(|c| c["reason"] == "NewReplicaSetAvailable");
        let now = jiff::Timestamp::now();
        let new_name = sets.new.as_ref().map(|r| runtime::name(r).to_string()).unwrap_or_default();
        if has_progress_deadline(d) && !done {
            if complete(d, &s) {
                let msg = format!("ReplicaSet \"{new_name}\" has successfully progressed.");
                set_condition(&mut conds, "Progressing", "True", "NewReplicaSetAvailable", &msg);
            } else if progressing(d, &s) {
                let msg = if new_name.is_empty() {
                    format!("Deployment \"{}\" is progressing.", runtime::name(d))
                } else {
                    format!("ReplicaSet \"{new_name}\" is progressing.")
                };
                let transition = match &cur {
                    Some(c) if c["status"] == "True" => c["lastTransitionTime"].clone(),
                    _ => json!(now_rfc3339()),
                };
                conds.retain(|c| c["type"] != "Progressing");
                conds.push(json!({"type": "Progressing", "status": "True", "lastUpdateTime": now_rfc3339(),
                    "lastTransitionTime": transition, "reason": "ReplicaSetUpdated", "message": msg}));
            } else if deadline_left(d, &conds, now).is_some_and(|left| left < 0) {
                let msg = format!("ReplicaSet \"{new_name}\" has timed out progressing.");
                set_condition(&mut conds, "Progressing", "False", "ProgressDeadlineExceeded", &msg);
            }
        }
        // A ReplicaSet's failure to create pods shows on the Deployment (the new one's first).
        let failure = sets.new.iter().chain(sets.old.iter()).find_map(|r| {
            r.pointer("/status/conditions")?
                .as_array()?
                .iter()
                .find(|c| c["type"] == "ReplicaFailure" && c["status"] == "True")
                .cloned()
        });
        match failure {
            Some(f) => {
                let (reason, message) =
                    (f["reason"].as_str().unwrap_or_default(), f["message"].as_str().unwrap_or_default());
                set_condition(&mut conds, "ReplicaFailure", "True", reason, message);
            }
            None => conds.retain(|c| c["type"] != "ReplicaFailure"),
        }
        s.insert("conditions".into(), json!(conds));
        self.write_status(d, &s).await?;
        // A stuck rollout is looked at again when its deadline passes.
        if complete(d, &s) {
            return Ok(Action::Done);
        }
        match deadline_left(d, &conds, now) {
            Some(left) if left < 1 => Ok(Action::RequeueAfter(Duration::from_secs(1))),
            Some(left) => Ok(Action::RequeueAfter(Duration::from_secs(left as u64 + 1))),
            None => Ok(Action::Done),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_surge_up_and_unavailable_down() {
        assert_eq!(fenceposts(Some(&json!("25%")), Some(&json!("25%")), 10), (3, 2));
        assert_eq!(fenceposts(Some(&json!("25%")), Some(&json!("25%")), 1), (1, 0));
        assert_eq!(fenceposts(Some(&json!(0)), Some(&json!("10%")), 5), (0, 1));
        assert_eq!(fenceposts(Some(&json!(2)), Some(&json!(1)), 5), (2, 1));
        let d = json!({"spec": {"replicas": 3, "strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 5}}}});
        assert_eq!(max_unavailable(&d), 3);
        let d = json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate"}}});
        assert_eq!((max_surge(&d), max_unavailable(&d)), (0, 0));
    }

    #[test]
    fn template_hash_is_stable_and_safe() {
        let t = json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
        let reordered =
            json!({"spec": {"containers": [{"image": "x", "name": "c"}]}, "metadata": {"labels": {"app": "a"}}});
        let h = template_hash(&t, None);
        assert_eq!(h, template_hash(&reordered, None));
        assert!(h.len() <= 10 && h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)), "{h}");
        assert_ne!(h, template_hash(&t, Some(1)));
        assert_ne!(h, template_hash(&json!({"metadata": {"labels": {"app": "b"}}}), None));
        assert_eq!(safe_encode("0"), "4");
    }

    #[test]
    fn equal_ignoring_the_hash_label() {
        let a = json!({"metadata": {"labels": {"app": "a", "pod-template-hash": "x"}}, "spec": {}});
        let b = json!({"metadata": {"labels": {"app": "a"}}, "spec": {}});
        assert!(equal_ignore_hash(Some(&a), Some(&b)));
        let c = json!({"metadata": {"labels": {"app": "b"}}, "spec": {}});
        assert!(!equal_ignore_hash(Some(&a), Some(&c)));
    }

    #[test]
    fn new_replica_set_grows_within_surge() {
        let d = json!({"spec": {"replicas": 4, "strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}});
        let old = json!({"spec": {"replicas": 4}});
        let new = json!({"spec": {"replicas": 0}});
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 1);
        let new1 = json!({"spec": {"replicas": 1}});
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new1], &new1), 1);
        let old3 = json!({"spec": {"replicas": 3}});
        assert_eq!(new_rs_new_replicas(&d, &[&old3, &new1], &new1), 2);
    }

    #[test]
    fn scaling_mid_rollout_is_proportional() {
        // 10 replicas (surge 3) split 6 old / 5 new at max 13; scaled to 20 (surge 5): 25 allowed, 14 to add.
        let d = json!({"spec": {"replicas": 20, "strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}, "status": {"replicas": 11}});
        let old = (6, ("2024-01-01T00:00:00Z".to_string(), "old".to_string()), Some(13));
        let new = (5, ("2024-01-02T00:00:00Z".to_string(), "new".to_string()), Some(13));
        let sizes = proportional_sizes(&d, &[old.clone(), new.clone()]);
        assert_eq!(sizes.iter().sum::<i64>(), 25);
        // old: round(6 * 25 / 13) = 12, new: round(5 * 25 / 13) = 10; the leftover 3 goes to the largest.
        assert_eq!(sizes, vec![15, 10]);
        // Scaled down to 0: everything goes.
        let d0 = json!({"spec": {"replicas": 0}, "status": {"replicas": 11}});
        assert_eq!(proportional_sizes(&d0, &[old, new]), vec![0, 0]);
    }

    #[test]
    fn status_and_conditions() {
        let d = json!({"metadata": {"generation": 2}, "spec": {"replicas": 2, "strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}});
        let rs = json!({"status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2}});
        let s = calculate_status(&[&rs], Some(&rs), &d);
        assert!(complete(&d, &s));
        assert_eq!(s["conditions"][0]["reason"], "MinimumReplicasAvailable");
        let rs = json!({"status": {"replicas": 2, "readyReplicas": 1, "availableReplicas": 1}});
        let s = calculate_status(&[&rs], Some(&rs), &d);
        assert!(!complete(&d, &s));
        assert_eq!(s["unavailableReplicas"], 1);
        assert_eq!(s["conditions"][0]["reason"], "MinimumReplicasUnavailable");
        assert!(progressing(&d, &s));
    }
}
