//! `job`: runs a Job's pods to completion, as upstream's pkg/controller/job.
//!
//! - Pods are made from `spec.template` with the labels `batch.kubernetes.io/controller-uid`,
//!   `batch.kubernetes.io/job-name` (and the legacy `controller-uid`, `job-name`) and a controllerRef to the Job;
//!   pods are claimed by `spec.selector` (the apiserver's generated `batch.kubernetes.io/controller-uid` one, or
//!   the user's with `manualSelector`) and controllerRef with the ReplicaSet's `claim_pods` (upstream's
//!   `ControllerRefManager`): a matching orphan is adopted (and counted, also when already finished), an owned pod
//!   whose labels stop matching is released (and replaced when it was active). Finished or deleted Jobs claim
//!   nothing.
//! - `NonIndexed`: up to `parallelism` active pods until `completions` pods succeeded (or, with no `completions`,
//!   until one succeeded and none is active). `Indexed`: one pod per index in `[0, completions)` with the
//!   `batch.kubernetes.io/job-completion-index` annotation and label, `JOB_COMPLETION_INDEX` in the environment,
//!   `generateName` `<job>-<index>-` and hostname `<job>-<index>`; `status.completedIndexes` lists the done ones.
//! - `backoffLimit`: once more pods failed than it allows, the Job fails (reason `BackoffLimitExceeded`);
//!   replacements of failed pods wait upstream's exponential back-off (10 s doubling, at most 6 min).
//! - `activeDeadlineSeconds` from `status.startTime`: the Job fails with reason `DeadlineExceeded`.
//! - `podFailurePolicy`: the first rule matching a failed pod's terminated exit codes (`In`/`NotIn`, optionally one
//!   container) or conditions (e.g. `DisruptionTarget`) decides: `FailJob` fails the Job (reason
//!   `PodFailurePolicy`, upstream's message), `FailIndex` fails the pod's index, `Ignore` leaves the failure
//!   uncounted, `Count` counts it as usual.
//! - `backoffLimitPerIndex` (Indexed; [`indexed_job_utils`]): each index is retried until it failed more often than
//!   the limit, counted by its pods' `batch.kubernetes.io/job-index-failure-count` (and
//!   `job-index-ignored-failure-count`) annotations and backed off per index; a failed index goes into
//!   `status.failedIndexes` and is not retried while the others go on. More failed indexes than `maxFailedIndexes`
//!   fail the Job (`MaxFailedIndexesExceeded`); all indexes done with some failed fail it too (`FailedIndexes`).
//! - `successPolicy` (Indexed; [`success_policy`]): a matching rule ends the Job as succeeded (reason
//!   `SuccessPolicy`, "Matched rules at index N").
//! - Finishing as upstream 1.33: the interim condition (`FailureTarget`, or `SuccessCriteriaMet` with reason
//!   `CompletionsReached` or `SuccessPolicy`) comes first and the active pods are deleted; the terminal one
//!   (`Failed`, or `Complete` with `completionTime`) with the same reason and message once no pod is active or
//!   terminating.
//! - `podReplacementPolicy`: with `Failed` (the default with a pod failure policy) a terminating pod is replaced
//!   only once it is terminal; with `TerminatingOrFailed` at once.
//! - `suspend`: active pods are deleted and the `Suspended` condition set (`JobSuspended`/`JobResumed`); the
//!   start time restarts on resume.
//! - Status: `active`, `ready`, `terminating`, `succeeded`, `failed`, `startTime`, `completionTime`,
//!   `completedIndexes`, `failedIndexes` and the conditions; upstream's events (`SuccessfulCreate`,
//!   `SuccessfulDelete`, `Completed`, `BackoffLimitExceeded`, `DeadlineExceeded`, `PodFailurePolicy`,
//!   `FailedIndexes`, `MaxFailedIndexesExceeded`, `Suspended`, `Resumed`).
//!
//! Deliberate gaps: no `batch.kubernetes.io/job-tracking` finalizer: succeeded and failed are counted from the pods
//! that exist, never decreasing (a terminal pod deleted before it was seen is not counted, a pod deleted while
//! active is not counted as failed); `managedBy` is not implemented.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use runtime::events::{EventType, Recorder};
use runtime::{Action, Controller, Informer, Notification};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::replicaset::{Kind, claim_pods, controller_ref, owners_of_pod};
use crate::{BoxError, Context, stopped};

pub mod indexed_job_utils;
pub mod success_policy;

pub use indexed_job_utils::{
    COMPLETION_INDEX, INDEX_FAILURE_COUNT, INDEX_IGNORED_FAILURE_COUNT, format_indexes, parse_indexes, pod_index,
};
use indexed_job_utils::{
    index_failure_count, index_ignored_failure_count, is_index_failed, new_index_failure_counts, parse_indexes_within,
};
use success_policy::match_success_policy;

/// The Job as the pod claiming helpers see it.
pub const JOB: Kind = Kind { group: "batch", version: "v1", plural: "jobs", kind: "Job", component: "job-controller" };

pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";
const OWNER_INDEX: &str = "job-controller/owner";
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);

pub fn now_rfc3339() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn parse_time(v: Option<&Value>) -> Option<Timestamp> {
    v.and_then(Value::as_str).and_then(|s| s.parse().ok())
}

/// The `namespace/name` of the controller (of `kind`) of an object, from its controllerRef.
pub fn controller_key(obj: &Value, kind: &str) -> Option<String> {
    let refs = obj.pointer("/metadata/ownerReferences")?.as_array()?;
    let r = refs.iter().find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?;
    if r.get("kind").and_then(Value::as_str) != Some(kind) {
        return None;
    }
    Some(runtime::key(runtime::namespace(obj), r.get("name")?.as_str()?))
}

fn controller_uid(obj: &Value) -> Option<&str> {
    let refs = obj.pointer("/metadata/ownerReferences")?.as_array()?;
    refs.iter().find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?.get("uid")?.as_str()
}

fn int(obj: &Value, pointer: &str) -> Option<i64> {
    obj.pointer(pointer).and_then(Value::as_i64)
}

/// Whether a condition of `type_` is `True` in `status.conditions`.
pub fn has_condition(obj: &Value, type_: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == type_ && c["status"] == "True"))
}

/// Whether the Job has finished (`Complete` or `Failed`).
pub fn finished(job: &Value) -> Option<&'static str> {
    ["Complete", "Failed"].into_iter().find(|t| has_condition(job, t))
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default()
}

fn deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
}

fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// The back-off before a replacement pod after `failures` failures (upstream: 10 s doubling, capped at 6 min).
pub fn backoff_delay(failures: i64) -> Duration {
    if failures <= 0 {
        return Duration::ZERO;
    }
    let mut d = BACKOFF_BASE;
    for _ in 1..failures {
        d = d.saturating_mul(2);
        if d >= BACKOFF_MAX {
            return BACKOFF_MAX;
        }
    }
    d
}

/// A pod for the Job (and its completion index, for Indexed Jobs).
pub fn pod_for(job: &Value, index: Option<i64>) -> Value {
    let name = runtime::name(job);
    let uid = runtime::uid(job);
    let mut template = job.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut meta = template.get("metadata").cloned().filter(Value::is_object).unwrap_or(json!({}));
    if let Some(m) = meta.as_object_mut() {
        m.remove("creationTimestamp");
        m.remove("name");
    }
    let labels = meta.as_object_mut().map(|m| m.entry("labels").or_insert_with(|| json!({})));
    if let Some(Value::Object(l)) = labels {
        for (k, v) in [
            (CONTROLLER_UID_LABEL, uid),
            (JOB_NAME_LABEL, name),
            (LEGACY_CONTROLLER_UID_LABEL, uid),
            (LEGACY_JOB_NAME_LABEL, name),
        ] {
            l.insert(k.into(), json!(v));
        }
        if let Some(i) = index {
            l.insert(COMPLETION_INDEX.into(), json!(i.to_string()));
        }
    }
    meta["namespace"] = json!(runtime::namespace(job));
    meta["generateName"] = json!(match index {
        Some(i) => format!("{name}-{i}-"),
        None => format!("{name}-"),
    });
    meta["ownerReferences"] = json!([{
        "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
        "controller": true, "blockOwnerDeletion": true,
    }]);
    let mut spec = template.get_mut("spec").map(Value::take).unwrap_or(json!({}));
    if let Some(i) = index {
        if meta.get("annotations").is_none_or(|a| !a.is_object()) {
            meta["annotations"] = json!({});
        }
        meta["annotations"][COMPLETION_INDEX] = json!(i.to_string());
        if spec.get("hostname").and_then(Value::as_str).is_none_or(str::is_empty) {
            spec["hostname"] = json!(format!("{name}-{i}"));
        }
        let env = json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "fieldPath": format!("metadata.annotations['{COMPLETION_INDEX}']")}}});
        for list in ["initContainers", "containers"] {
            if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
                for c in cs.iter_mut().filter(|c| c.is_object()) {
                    let e = c.as_object_mut().map(|o| o.entry("env").or_insert_with(|| json!([])));
                    if let Some(Value::Array(e)) = e
                        && !e.iter().any(|v| v["name"] == "JOB_COMPLETION_INDEX")
                    {
                        e.push(env.clone());
                    }
                }
            }
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

/// Pods this controller created and deleted that the informer has not shown yet (upstream's expectations): the
/// Job's pods are not managed again until the cache caught up, so none is created twice.
#[derive(Default)]
struct Expectations {
    /// By Job uid: pod names created and deleted, and when.
    pending: Mutex<HashMap<String, Expected>>,
}

type Expected = (HashSet<String>, HashSet<String>, Instant);

impl Expectations {
    fn expect(&self, job_uid: &str, created: Vec<String>, deleted: Vec<String>) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let e = p.entry(job_uid.to_string()).or_insert_with(|| (HashSet::new(), HashSet::new(), Instant::now()));
        e.0.extend(created);
        e.1.extend(deleted);
        e.2 = Instant::now();
    }

    /// Whether the cache shows every expected change (expectations older than 5 minutes are dropped).
    fn satisfied(&self, job_uid: &str, pods: &[Arc<Value>]) -> bool {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some((adds, dels, at)) = p.get_mut(job_uid) else { return true };
        let by_name: HashMap<&str, &Value> = pods.iter().map(|p| (runtime::name(p), p.as_ref())).collect();
        adds.retain(|n| !by_name.contains_key(n.as_str()));
        dels.retain(|n| by_name.get(n.as_str()).is_some_and(|p| !deleting(p)));
        if (adds.is_empty() && dels.is_empty()) || at.elapsed() > Duration::from_secs(300) {
            p.remove(job_uid);
            return true;
        }
        false
    }

    fn forget(&self, job_uid: &str) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(job_uid);
    }
}

/// When the Job last saw a new failure, to space out replacements.
#[derive(Default)]
struct FailureClock {
    seen: Mutex<HashMap<String, (i64, Instant)>>,
}

impl FailureClock {
    /// How long replacements must still wait, given the Job's failure count now.
    fn remaining(&self, job_uid: &str, failed: i64) -> Duration {
        let mut s = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let e = s.entry(job_uid.to_string()).or_insert((0, Instant::now()));
        if failed > e.0 {
            *e = (failed, Instant::now());
        }
        backoff_delay(failed).saturating_sub(e.1.elapsed())
    }
}

struct Job {
    ctx: Arc<Context>,
    jobs: Informer,
    pods: Informer,
    recorder: Recorder,
    expectations: Expectations,
    failures: FailureClock,
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let jobs = ctx.informer("batch", "v1", "jobs");
    let pods = ctx.informer("", "v1", "pods");
    pods.store().add_indexer(OWNER_INDEX, |p| controller_key(p, "Job").into_iter().collect());
    let workers = ctx.options.concurrent_job_syncs;
    let this = Arc::new(Job {
        recorder: ctx.recorder("job-controller"),
        ctx,
        jobs: jobs.clone(),
        pods: pods.clone(),
        expectations: Expectations::default(),
        failures: FailureClock::default(),
    });
    let job_store = jobs.store().clone();
    Controller::new(runtime::controller::Config { workers, ..Default::default() })
        .watches(&jobs, |n| vec![n.key()])
        // A pod's Job (before and after the change), or for an orphan every Job whose selector matches it.
        .watches_batched(&pods, move |n: &Notification| owners_of_pod(n, &job_store, &JOB))
        .run(
            move |key: String| {
                let this = this.clone();
                async move { this.reconcile(&key).await }
            },
            stopped(stop),
        )
        .await;
}

/// What the pods of a Job say.
#[derive(Debug, Default, PartialEq)]
pub struct PodCounts {
    pub active: Vec<Arc<Value>>,
    pub ready: i64,
    pub terminating: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub succeeded_indexes: BTreeSet<i64>,
    /// The message of a `FailJob` pod failure policy rule that matched.
    pub fail_job: Option<String>,
}

/// A `spec.podFailurePolicy` rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAction {
    /// The Job fails at once (reason `PodFailurePolicy`).
    FailJob,
    /// The pod's index fails at once (with `backoffLimitPerIndex`).
    FailIndex,
    /// The failure is not counted (towards `backoffLimit` nor `backoffLimitPerIndex`).
    Ignore,
    /// The failure counts as usual.
    Count,
}

impl FailureAction {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "FailJob" => Self::FailJob,
            "FailIndex" => Self::FailIndex,
            "Ignore" => Self::Ignore,
            "Count" => Self::Count,
            _ => return None,
        })
    }
}

/// What `spec.podFailurePolicy` says about a failed pod (upstream's `matchPodFailurePolicy`): the action of the
/// first matching rule and upstream's message for it.
pub fn failure_policy_action(policy: Option<&Value>, pod: &Value) -> Option<(FailureAction, String)> {
    let rules = policy?.get("rules")?.as_array()?;
    let (ns, name) = (runtime::namespace(pod), runtime::name(pod));
    let statuses: Vec<&Value> = ["/status/initContainerStatuses", "/status/containerStatuses"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .collect();
    for (i, rule) in rules.iter().enumerate() {
        let name_of_action = rule.get("action").and_then(Value::as_str).unwrap_or_default();
        let Some(action) = FailureAction::parse(name_of_action) else { continue };
        let action_name = name_of_action.to_string();
        if let Some(on) = rule.get("onExitCodes") {
            let container = on.get("containerName").and_then(Value::as_str);
            let values: Vec<i64> = on
                .get("values")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            let not_in = on.get("operator").and_then(Value::as_str) == Some("NotIn");
            for st in &statuses {
                let cname = st.get("name").and_then(Value::as_str).unwrap_or_default();
                if container.is_some_and(|c| c != cname) {
                    continue;
                }
                let Some(code) = st.pointer("/state/terminated/exitCode").and_then(Value::as_i64) else { continue };
                let hit = if not_in { code != 0 && !values.contains(&code) } else { values.contains(&code) };
                if hit {
                    let msg = format!(
                        "Container {cname} for pod {ns}/{name} failed with exit code {code} matching {action_name} rule at index {i}"
                    );
                    return Some((action, msg));
                }
            }
        }
        for pattern in rule.get("onPodConditions").and_then(Value::as_array).into_iter().flatten() {
            let type_ = pattern.get("type").and_then(Value::as_str).unwrap_or_default();
            let want = pattern.get("status").and_then(Value::as_str).unwrap_or("True");
            let conds = pod.pointer("/status/conditions").and_then(Value::as_array);
            if conds.is_some_and(|cs| cs.iter().any(|c| c["type"] == type_ && c["status"] == want)) {
                let msg = format!("Pod {ns}/{name} has condition {type_} matching {action_name} rule at index {i}");
                return Some((action, msg));
            }
        }
    }
    None
}

pub fn count_pods(pods: &[Arc<Value>]) -> PodCounts {
    count_pods_with_policy(pods, None)
}

/// Counts the pods; failed pods the pod failure policy ignores are not counted, and the first one a `FailJob`
/// rule matches is reported.
pub fn count_pods_with_policy(pods: &[Arc<Value>], policy: Option<&Value>) -> PodCounts {
    let mut c = PodCounts::default();
    for p in pods {
        match phase(p) {
            "Failed" if policy.is_some() => match failure_policy_action(policy, p) {
                Some((FailureAction::Ignore, _)) => {}
                Some((FailureAction::FailJob, msg)) => {
                    c.failed += 1;
                    c.fail_job.get_or_insert(msg);
                }
                _ => c.failed += 1,
            },
            "Succeeded" => {
                c.succeeded += 1;
                c.succeeded_indexes.extend(pod_index(p));
            }
            "Failed" => c.failed += 1,
            _ if deleting(p) => c.terminating += 1,
            _ => {
                if pod_ready(p) {
                    c.ready += 1;
                }
                c.active.push(p.clone());
            }
        }
    }
    c
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
        "lastProbeTime": now, "lastTransitionTime": now})
}

/// Sets a condition, keeping its transition time when the status does not change.
fn set_condition(status: &mut Value, c: Value) {
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    if let Some(list) = status["conditions"].as_array_mut() {
        match list.iter_mut().find(|x| x["type"] == c["type"]) {
            Some(x) if x["status"] == c["status"] => {
                x["reason"] = c["reason"].clone();
                x["message"] = c["message"].clone();
            }
            Some(x) => *x = c,
            None => list.push(c),
        }
    }
}

impl Job {
    /// The Job's pods (upstream's `getPodsForJob`): those it controls whose labels match its selector, plus the
    /// matching orphans it adopts; controlled pods that no longer match are released.
    async fn claim(&self, job: &Value, key: &str, pod_api: &client::Api) -> Result<Vec<Arc<Value>>, BoxError> {
        let uid = runtime::uid(job);
        let ns = runtime::namespace(job);
        let selector = JOB.selector(job).map_err(|e| format!("job {key}: invalid selector: {e}"))?;
        let mut candidates: Vec<Arc<Value>> = self
            .pods
            .store()
            .by_index(OWNER_INDEX, key)
            .into_iter()
            .filter(|p| controller_uid(p) == Some(uid))
            .collect();
        candidates.extend(self.pods.store().list_by(|p| runtime::namespace(p) == ns && controller_ref(p).is_none()));
        let job_api = self.ctx.api("batch", "v1", "jobs").namespaced(ns);
        claim_pods(job, &JOB.api_version(), JOB.kind, &selector, candidates, pod_api, &job_api).await
    }

    async fn reconcile(&self, key: &str) -> Result<Action, BoxError> {
        let Some(job) = self.jobs.store().get_by_key(key) else { return Ok(Action::Done) };
        let uid = runtime::uid(&job).to_string();
        if deleting(&job) || finished(&job).is_some() {
            self.expectations.forget(&uid);
            return Ok(Action::Done);
        }
        let ns = runtime::namespace(&job).to_string();
        let pod_api = self.ctx.api("", "v1", "pods").namespaced(&ns);
        let pods = self.claim(&job, key, &pod_api).await?;
        if !self.expectations.satisfied(&uid, &pods) {
            return Ok(Action::RequeueAfter(Duration::from_millis(500)));
        }
        let policy = job.pointer("/spec/podFailurePolicy");
        let counts = count_pods_with_policy(&pods, policy);
        let indexed = job.pointer("/spec/completionMode").and_then(Value::as_str) == Some("Indexed");
        let completions = int(&job, "/spec/completions");
        let parallelism = int(&job, "/spec/parallelism").unwrap_or(1).max(0);
        let per_index = int(&job, "/spec/backoffLimitPerIndex").filter(|_| indexed);
        let max_failed_indexes = int(&job, "/spec/maxFailedIndexes");
        // Upstream defaults backoffLimit to MaxInt32 with backoffLimitPerIndex, else to 6.
        let backoff_limit =
            int(&job, "/spec/backoffLimit").unwrap_or(if per_index.is_some() { i32::MAX as i64 } else { 6 });
        let suspended = job.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
        let old = job.get("status").cloned().unwrap_or(json!({}));
        let old_obj = old_job_status(&old);
        let mut status = old.clone();
        let now = now_rfc3339();
        let total = completions.unwrap_or(0);

        let mut completed = parse_indexes(old.get("completedIndexes").and_then(Value::as_str).unwrap_or(""));
        completed.extend(counts.succeeded_indexes.iter().copied().filter(|i| *i >= 0 && Some(*i) < completions));
        let succeeded =
            if indexed { completed.len() as i64 } else { counts.succeeded.max(int(&old, "/succeeded").unwrap_or(0)) };
        let failed = counts.failed.max(int(&old, "/failed").unwrap_or(0));

        // backoffLimitPerIndex: the failed indexes, and each index's last failed pod (whose failure counts its
        // replacement carries on).
        let mut failed_ix = BTreeSet::new();
        let mut last_failed: HashMap<i64, Arc<Value>> = HashMap::new();
        if let Some(limit) = per_index {
            failed_ix = parse_indexes_within(old.get("failedIndexes").and_then(Value::as_str).unwrap_or(""), total);
            let absolute = |p: &Value| index_failure_count(p) + index_ignored_failure_count(p);
            for p in pods.iter().filter(|p| phase(p) == "Failed") {
                let Some(i) = pod_index(p).filter(|i| *i >= 0 && *i < total && !completed.contains(i)) else {
                    continue;
                };
                if is_index_failed(policy, limit, p) {
                    failed_ix.insert(i);
                }
                if last_failed.get(&i).is_none_or(|q| absolute(q) < absolute(p)) {
                    last_failed.insert(i, p.clone());
                }
            }
        }

        let mut requeue: Option<Duration> = None;
        let mut delete: Vec<Arc<Value>> = Vec::new();
        let mut create: Vec<NewPod> = Vec::new();

        let deadline = int(&job, "/spec/activeDeadlineSeconds").filter(|_| !suspended);
        let start = parse_time(old.get("startTime"));
        let past_deadline = match (deadline, start) {
            (Some(d), Some(s)) => {
                let end = s + jiff::SignedDuration::from_secs(d);
                let now_ts = Timestamp::now();
                if now_ts >= end {
                    true
                } else {
                    requeue = Some(Duration::try_from(end.duration_since(now_ts)).unwrap_or_default());
                    false
                }
            }
            _ => false,
        };
        let complete = !indexed && completions.is_none() && succeeded > 0 && counts.active.is_empty()
            || completions.is_some_and(|c| succeeded >= c);
        // How the Job finishes, as upstream decides it: an interim condition (FailureTarget or SuccessCriteriaMet)
        // already set, then the failures, then the success policy, then the completions.
        let finish: Option<Finish> = if let Some((reason, message)) = condition_of(&old_obj, "FailureTarget") {
            Some(Finish { success: false, reason, message })
        } else if let Some((reason, message)) = condition_of(&old_obj, "SuccessCriteriaMet") {
            Some(Finish { success: true, reason, message })
        } else if let Some(msg) = &counts.fail_job {
            Some(Finish::failed("PodFailurePolicy", msg))
        } else if failed > backoff_limit {
            Some(Finish::failed("BackoffLimitExceeded", "Job has reached the specified backoff limit"))
        } else if past_deadline {
            Some(Finish::failed("DeadlineExceeded", "Job was active longer than specified deadline"))
        } else if per_index.is_some() && max_failed_indexes.is_some_and(|m| failed_ix.len() as i64 > m) {
            Some(Finish::failed(
                "MaxFailedIndexesExceeded",
                "Job has exceeded the specified maximal number of failed indexes",
            ))
        } else if per_index.is_some() && !failed_ix.is_empty() && (failed_ix.len() + completed.len()) as i64 >= total {
            Some(Finish::failed("FailedIndexes", "Job has failed indexes"))
        } else if let Some(msg) =
            match_success_policy(job.pointer("/spec/successPolicy").filter(|_| indexed), total, &completed)
        {
            Some(Finish { success: true, reason: success_policy::REASON.into(), message: msg })
        } else if complete {
            Some(Finish { success: true, reason: "CompletionsReached".into(), message: COMPLETIONS_REACHED.into() })
        } else {
            None
        };

        let mut event: Option<(EventType, String, String)> = None;
        if let Some(f) = &finish {
            // The interim condition at once; the active pods go; the terminal condition once none is left.
            delete.extend(counts.active.iter().cloned());
            let interim = if f.success { "SuccessCriteriaMet" } else { "FailureTarget" };
            if !has_condition(&old_obj, interim) {
                set_condition(&mut status, condition(interim, "True", &f.reason, &f.message, &now));
            }
        } else if suspended {
            delete.extend(counts.active.iter().cloned());
            if !has_condition(&old_obj, "Suspended") {
                set_condition(&mut status, condition("Suspended", "True", "JobSuspended", "Job suspended", &now));
                event = Some((EventType::Normal, "Suspended".into(), "Job suspended".into()));
            }
        } else {
            if has_condition(&old_obj, "Suspended") {
                set_condition(&mut status, condition("Suspended", "False", "JobResumed", "Job resumed", &now));
                status["startTime"] = json!(now);
                event = Some((EventType::Normal, "Resumed".into(), "Job resumed".into()));
            } else if status.get("startTime").is_none_or(Value::is_null) {
                status["startTime"] = json!(now);
                if let Some(d) = deadline {
                    requeue = Some(Duration::from_secs(d.max(0) as u64));
                }
            }
            let wait_for = |w: Duration, requeue: &mut Option<Duration>| {
                *requeue = Some(requeue.map_or(w, |r| r.min(w)));
            };
            // Per-index jobs back off per index; the others per Job.
            let wait =
                if failed > 0 && per_index.is_none() { self.failures.remaining(&uid, failed) } else { Duration::ZERO };
            // podReplacementPolicy Failed (upstream's onlyReplaceFailedPods, also with a pod failure policy): a
            // terminating pod still holds its place until it is terminal.
            let only_failed =
                policy.is_some() || job.pointer("/spec/podReplacementPolicy").and_then(Value::as_str) == Some("Failed");
            let terminating: Vec<&Arc<Value>> = if only_failed {
                pods.iter().filter(|p| deleting(p) && !matches!(phase(p), "Failed" | "Succeeded")).collect()
            } else {
                Vec::new()
            };
            if indexed {
                let mut active_ix: HashSet<i64> = HashSet::new();
                for p in &counts.active {
                    match pod_index(p) {
                        // A second pod of an index, or one out of range, already done or failed, is deleted.
                        Some(i)
                            if i >= 0
                                && i < total
                                && !completed.contains(&i)
                                && !failed_ix.contains(&i)
                                && active_ix.insert(i) => {}
                        _ => delete.push(p.clone()),
                    }
                }
                let terminating_ix: HashSet<i64> = terminating.iter().filter_map(|p| pod_index(p)).collect();
                let room = (parallelism - active_ix.len() as i64 - terminating.len() as i64).max(0) as usize;
                let missing: Vec<i64> = (0..total)
                    .filter(|i| {
                        !completed.contains(i)
                            && !active_ix.contains(i)
                            && !failed_ix.contains(i)
                            && !terminating_ix.contains(i)
                    })
                    .collect();
                if per_index.is_some() {
                    for i in missing {
                        if create.len() >= room {
                            break;
                        }
                        let (failures, ignored) =
                            new_index_failure_counts(policy, last_failed.get(&i).map(|p| p.as_ref()));
                        let w = if failures + ignored == 0 {
                            Duration::ZERO
                        } else {
                            self.failures.remaining(&format!("{uid}/{i}"), failures + ignored)
                        };
                        if w.is_zero() {
                            create.push(NewPod { index: Some(i), failure_counts: Some((failures, ignored)) });
                        } else {
                            wait_for(w, &mut requeue);
                        }
                    }
                } else if !missing.is_empty() && room > 0 && !wait.is_zero() {
                    wait_for(wait, &mut requeue);
                } else {
                    create = missing
                        .into_iter()
                        .take(room)
                        .map(|i| NewPod { index: Some(i), failure_counts: None })
                        .collect();
                }
            } else {
                let active = counts.active.len() as i64;
                let want_active = match completions {
                    Some(c) => parallelism.min((c - succeeded).max(0)),
                    // A work queue: once one pod succeeded no new pod starts; the running ones finish.
                    None if succeeded > 0 => active.min(parallelism),
                    None => parallelism,
                };
                if active > want_active {
                    // Not-ready pods first, then the newest.
                    let mut extra = counts.active.clone();
                    extra.sort_by_key(|p| {
                        (
                            pod_ready(p),
                            std::cmp::Reverse(p.pointer("/metadata/creationTimestamp").cloned().map(|v| v.to_string())),
                        )
                    });
                    delete.extend(extra.into_iter().take((active - want_active) as usize));
                } else if active + (terminating.len() as i64) < want_active {
                    if wait.is_zero() {
                        let n = want_active - active - terminating.len() as i64;
                        create = (0..n).map(|_| NewPod { index: None, failure_counts: None }).collect();
                    } else {
                        wait_for(wait, &mut requeue);
                    }
                }
            }
        }

        // Create and delete pods.
        let mut created = Vec::new();
        let mut deleted = Vec::new();
        let mut first_err: Option<BoxError> = None;
        for new in &create {
            let mut pod = pod_for(&job, new.index);
            if let Some((failures, ignored)) = new.failure_counts {
                pod["metadata"]["annotations"][INDEX_FAILURE_COUNT] = json!(failures.to_string());
                if ignored > 0 {
                    pod["metadata"]["annotations"][INDEX_IGNORED_FAILURE_COUNT] = json!(ignored.to_string());
                }
            }
            match pod_api.create(&pod).await {
                Ok(p) => {
                    let name = runtime::name(&p).to_string();
                    self.recorder.record(&job, EventType::Normal, "SuccessfulCreate", &format!("Created pod: {name}"));
                    created.push(name);
                }
                Err(e) => {
                    self.recorder.record(&job, EventType::Warning, "FailedCreate", &format!("Error creating: {e}"));
                    first_err.get_or_insert(e.into());
                    break;
                }
            }
        }
        for p in &delete {
            let name = runtime::name(p).to_string();
            match pod_api.delete(&name, None).await {
                Ok(_) => {
                    self.recorder.record(&job, EventType::Normal, "SuccessfulDelete", &format!("Deleted pod: {name}"));
                    deleted.push(name);
                }
                Err(e) if e.code() == Some(404) => {}
                Err(e) => {
                    first_err.get_or_insert(e.into());
                }
            }
        }
        let active_now = (counts.active.len() as i64 + created.len() as i64 - deleted.len() as i64).max(0);
        let terminating_now = counts.terminating + deleted.len() as i64;
        self.expectations.expect(&uid, created, deleted.clone());

        // Upstream's enactJobFinished: the terminal condition once no pod is active or terminating.
        if let Some(f) = &finish
            && active_now == 0
            && terminating_now == 0
            && first_err.is_none()
        {
            if f.success {
                set_condition(&mut status, condition("Complete", "True", &f.reason, &f.message, &now));
                status["completionTime"] = json!(now);
                event = Some((EventType::Normal, "Completed".into(), "Job completed".into()));
            } else {
                set_condition(&mut status, condition("Failed", "True", &f.reason, &f.message, &now));
                event = Some((EventType::Warning, f.reason.clone(), f.message.clone()));
            }
        }

        status["active"] = json!(active_now);
        status["ready"] = json!(counts.ready);
        status["terminating"] = json!(terminating_now);
        status["succeeded"] = json!(succeeded);
        status["failed"] = json!(failed);
        status["uncountedTerminatedPods"] = json!({});
        if indexed {
            status["completedIndexes"] = json!(format_indexes(&completed));
        }
        if per_index.is_some() {
            status["failedIndexes"] = json!(format_indexes(&failed_ix));
        }
        if status != old {
            let mut updated = (*job).clone();
            updated["status"] = status;
            let api = self.ctx.api("batch", "v1", "jobs").namespaced(&ns);
            match api.replace_status(runtime::name(&job), &updated).await {
                Ok(_) => {
                    if let Some((t, reason, message)) = event {
                        self.recorder.record(&job, t, &reason, &message);
                    }
                }
                Err(e) if e.code() == Some(404) => return Ok(Action::Done),
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        Ok(requeue.map_or(Action::Done, |d| Action::RequeueAfter(d + Duration::from_millis(100))))
    }
}

const COMPLETIONS_REACHED: &str = "Reached expected number of succeeded pods";

/// How a Job finishes: its interim and terminal conditions' reason and message.
struct Finish {
    success: bool,
    reason: String,
    message: String,
}

impl Finish {
    fn failed(reason: &str, message: &str) -> Self {
        Finish { success: false, reason: reason.into(), message: message.into() }
    }
}

/// A pod to create: its index, and for `backoffLimitPerIndex` its index's failure counts.
struct NewPod {
    index: Option<i64>,
    failure_counts: Option<(i64, i64)>,
}

/// The reason and message of a `True` condition of `type_`.
fn condition_of(obj: &Value, type_: &str) -> Option<(String, String)> {
    let cs = obj.pointer("/status/conditions")?.as_array()?;
    let c = cs.iter().find(|c| c["type"] == type_ && c["status"] == "True")?;
    let text = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    Some((text("reason"), text("message")))
}

/// The status wrapped as an object, for [`has_condition`].
fn old_job_status(status: &Value) -> Value {
    json!({"status": status})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_ten_seconds_up_to_six_minutes() {
        assert_eq!(backoff_delay(0), Duration::ZERO);
        assert_eq!(backoff_delay(1), Duration::from_secs(10));
        assert_eq!(backoff_delay(3), Duration::from_secs(40));
        assert_eq!(backoff_delay(10), Duration::from_secs(360));
    }

    #[test]
    fn pods_carry_the_job_labels_owner_and_index() {
        let job = json!({"metadata": {"name": "pi", "namespace": "ns", "uid": "u1"},
            "spec": {"template": {"metadata": {"labels": {"app": "pi"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
        let p = pod_for(&job, None);
        assert_eq!(p["metadata"]["generateName"], "pi-");
        assert_eq!(p["metadata"]["labels"]["app"], "pi");
        assert_eq!(p["metadata"]["labels"][CONTROLLER_UID_LABEL], "u1");
        assert_eq!(p["metadata"]["labels"]["job-name"], "pi");
        assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
        assert!(p["spec"].get("hostname").is_none());
        let p = pod_for(&job, Some(2));
        assert_eq!(p["metadata"]["generateName"], "pi-2-");
        assert_eq!(p["metadata"]["annotations"][COMPLETION_INDEX], "2");
        assert_eq!(p["metadata"]["labels"][COMPLETION_INDEX], "2");
        assert_eq!(p["spec"]["hostname"], "pi-2");
        assert_eq!(p["spec"]["containers"][0]["env"][0]["name"], "JOB_COMPLETION_INDEX");
    }

    #[test]
    fn pod_failure_policy_rules_match_in_order() {
        let policy = json!({"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1]}}]});
        let pod = |code: i64, cond: bool| {
            let mut p = json!({"metadata": {"namespace": "ns", "name": "p"}, "status": {"phase": "Failed",
                "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": code}}}]}});
            if cond {
                p["status"]["conditions"] = json!([{"type": "DisruptionTarget", "status": "True"}]);
            }
            Arc::new(p)
        };
        let (action, msg) = failure_policy_action(Some(&policy), &pod(42, false)).unwrap();
        assert_eq!(action, FailureAction::FailJob);
        assert_eq!(msg, "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1");
        assert_eq!(failure_policy_action(Some(&policy), &pod(42, true)).unwrap().0, FailureAction::Ignore);
        assert_eq!(failure_policy_action(Some(&policy), &pod(3, false)).unwrap().0, FailureAction::Count);
        assert_eq!(failure_policy_action(Some(&policy), &pod(1, false)), None);
        let c = count_pods_with_policy(&[pod(42, true), pod(3, false)], Some(&policy));
        assert_eq!((c.failed, c.fail_job.is_some()), (1, false));
        let c = count_pods_with_policy(&[pod(42, false)], Some(&policy));
        assert_eq!((c.failed, c.fail_job.is_some()), (1, true));
    }

    #[test]
    fn counts_split_active_terminal_and_terminating() {
        let pods: Vec<Arc<Value>> = [
            json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
            json!({"status": {"phase": "Pending"}}),
            json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Running"}}),
            json!({"metadata": {"annotations": {COMPLETION_INDEX: "1"}}, "status": {"phase": "Succeeded"}}),
            json!({"status": {"phase": "Failed"}}),
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let c = count_pods(&pods);
        assert_eq!((c.active.len(), c.ready, c.terminating, c.succeeded, c.failed), (2, 1, 1, 1, 1));
        assert_eq!(c.succeeded_indexes.into_iter().collect::<Vec<_>>(), vec![1]);
    }
}
