//! `disruption`: the status of PodDisruptionBudgets, as upstream's pkg/controller/disruption.
//!
//! For each budget, over the pods its selector matches in its namespace (a null selector matches none, an empty one
//! all):
//! - `expectedPods`: with `minAvailable` as a number, the number of matching pods; otherwise (a percentage, or
//!   `maxUnavailable`) the sum of the replicas of the pods' controllers (a ReplicaSet owned by a Deployment counts
//!   the Deployment's; ReplicaSets, StatefulSets, ReplicationControllers their own), each pod without a controller
//!   counting as one;
//! - `desiredHealthy`: `minAvailable` (a percentage of the expected pods rounded up), or the expected pods minus
//!   `maxUnavailable` (a percentage rounded up);
//! - `currentHealthy`: matching pods that are Ready and not being deleted, leaving out those the eviction API
//!   recorded in `disruptedPods` in the last 2 minutes (entries older than that, or of pods gone, are dropped);
//! - `disruptionsAllowed` = `currentHealthy - desiredHealthy` (at least 0; 0 when no pod is expected),
//!   `observedGeneration`, and the `DisruptionAllowed` condition (`SufficientPods` / `InsufficientPods`).
//!
//! The eviction side (429 when no disruption is allowed) is in kube-apiserver's `pods/eviction`.
//!
//! Deliberate gaps: controllers of other kinds are not looked up through their scale subresource (their pods count
//! one each); no `SyncFailed` condition; the stale `DisruptionTarget` pod condition is not cleaned up.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use api_types::selector::LabelSelector;
use jiff::Timestamp;
use runtime::{Action, Controller, Informer, Notification};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::controllers::job::{now_rfc3339, parse_time};
use crate::{BoxError, Context, stopped};

const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// An int-or-percent value scaled against `total` (percentages rounded up, as upstream).
pub fn scaled(v: &Value, total: i64) -> Result<i64, String> {
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| format!("invalid value {v}")),
        Value::String(s) => match s.strip_suffix('%') {
            Some(p) => {
                let p: i64 = p.parse().map_err(|_| format!("invalid value for IntOrString: invalid value {s:?}"))?;
                Ok((p * total + 99) / 100)
            }
            None => s
                .parse()
                .map_err(|_| "invalid value for IntOrString: invalid type: string is not a percentage".to_string()),
        },
        _ => Err(format!("invalid value {v}")),
    }
}

/// (expectedPods, desiredHealthy) from the spec, the matching pods' count and their controllers' replicas.
pub fn desired(spec: &Value, pod_count: i64, controllers_scale: i64) -> Result<(i64, i64), String> {
    if let Some(max) = spec.get("maxUnavailable").filter(|v| !v.is_null()) {
        let expected = controllers_scale;
        let max = scaled(max, expected)?;
        return Ok((expected, (expected - max).max(0)));
    }
    match spec.get("minAvailable").filter(|v| !v.is_null()) {
        Some(Value::Number(n)) => Ok((pod_count, n.as_i64().unwrap_or(0))),
        Some(v) => {
            let expected = controllers_scale;
            Ok((expected, scaled(v, expected)?))
        }
        None => Ok((pod_count, 0)),
    }
}

fn ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn controller_ref(obj: &Value) -> Option<(String, String)> {
    let refs = obj.pointer("/metadata/ownerReferences")?.as_array()?;
    let r = refs.iter().find(|r| r["controller"] == true)?;
    Some((r["kind"].as_str()?.to_string(), r["name"].as_str()?.to_string()))
}

struct Disruption {
    ctx: Arc<Context>,
    pdbs: Informer,
    pods: Informer,
    replicasets: Informer,
    deployments: Informer,
    statefulsets: Informer,
    rcs: Informer,
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let pdbs = ctx.informer("policy", "v1", "poddisruptionbudgets");
    let pods = ctx.informer("", "v1", "pods");
    let this = Arc::new(Disruption {
        pdbs: pdbs.clone(),
        pods: pods.clone(),
        replicasets: ctx.informer("apps", "v1", "replicasets"),
        deployments: ctx.informer("apps", "v1", "deployments"),
        statefulsets: ctx.informer("apps", "v1", "statefulsets"),
        rcs: ctx.informer("", "v1", "replicationcontrollers"),
        ctx,
    });
    let pdb_store = pdbs.clone();
    // A workload's scale changes only matter through its pods, except for the expected count.
    let by_namespace = {
        let pdbs = pdbs.clone();
        move |n: &Notification| -> Vec<String> {
            let ns = runtime::namespace(n.object()).to_string();
            pdbs.store().list_by(|p| runtime::namespace(p) == ns).iter().map(|p| runtime::object_key(p)).collect()
        }
    };
    let mut c = Controller::new(runtime::controller::Config { workers: 2, ..Default::default() })
        .watches(&pdbs, |n| vec![n.key()])
        .watches_batched(&pods, move |n: &Notification| {
            let ns = runtime::namespace(n.object()).to_string();
            let labels = |o: &Value| o.pointer("/metadata/labels").cloned();
            let (new, old) = (labels(n.object()), n.old().and_then(|o| labels(o)));
            pdb_store
                .store()
                .list_by(|p| {
                    runtime::namespace(p) == ns
                        && p.pointer("/spec/selector")
                            .filter(|s| !s.is_null())
                            .and_then(|s| LabelSelector::from_json(s).ok())
                            .is_some_and(|s| {
                                s.matches_value(new.as_ref()) || old.as_ref().is_some_and(|o| s.matches_value(Some(o)))
                            })
                })
                .iter()
                .map(|p| runtime::object_key(p))
                .collect()
        });
    for inf in [&this.replicasets, &this.deployments, &this.statefulsets, &this.rcs] {
        c = c.watches(inf, by_namespace.clone());
    }
    c.run(
        move |key: String| {
            let this = this.clone();
            async move { this.reconcile(&key).await }
        },
        stopped(stop),
    )
    .await;
}

impl Disruption {
    /// The replicas the controller `(kind, name)` in `ns` wants, if it is a known workload.
    fn scale_of(&self, ns: &str, kind: &str, name: &str) -> Option<(String, i64)> {
        let replicas = |o: &Value| o.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
        match kind {
            "ReplicaSet" => {
                let rs = self.replicasets.store().get(ns, name)?;
                if let Some((k, d)) = controller_ref(&rs).filter(|(k, _)| k == "Deployment") {
                    let dep = self.deployments.store().get(ns, &d)?;
                    return Some((format!("{k}/{d}"), replicas(&dep)));
                }
                Some((format!("ReplicaSet/{name}"), replicas(&rs)))
            }
            "StatefulSet" => {
                let sts = self.statefulsets.store().get(ns, name)?;
                Some((format!("StatefulSet/{name}"), replicas(&sts)))
            }
            "ReplicationController" => {
                let rc = self.rcs.store().get(ns, name)?;
                Some((format!("ReplicationController/{name}"), replicas(&rc)))
            }
            _ => None,
        }
    }

    async fn reconcile(&self, key: &str) -> Result<Action, BoxError> {
        let Some(pdb) = self.pdbs.store().get_by_key(key) else { return Ok(Action::Done) };
        if pdb.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(Action::Done);
        }
        let ns = runtime::namespace(&pdb).to_string();
        let selector = pdb.pointer("/spec/selector").filter(|s| !s.is_null()).map(LabelSelector::from_json);
        let pods: Vec<Arc<Value>> = match selector {
            Some(Ok(sel)) => self
                .pods
                .store()
                .list_by(|p| runtime::namespace(p) == ns && sel.matches_value(p.pointer("/metadata/labels"))),
            _ => vec![],
        };
        // The scale of the pods' controllers, each counted once; pods without a known controller count one.
        let mut seen = HashSet::new();
        let mut scale = 0;
        for p in &pods {
            match controller_ref(p).and_then(|(k, n)| self.scale_of(&ns, &k, &n)) {
                Some((id, r)) => {
                    if seen.insert(id) {
                        scale += r;
                    }
                }
                None => scale += 1,
            }
        }
        let spec = pdb.get("spec").cloned().unwrap_or(json!({}));
        let (expected, desired_healthy) = match desired(&spec, pods.len() as i64, scale) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(pdb = %key, error = %e, "disruption budget");
                (0, 0)
            }
        };
        let now = Timestamp::now();
        let old = pdb.get("status").cloned().unwrap_or(json!({}));
        let names: HashSet<&str> = pods.iter().map(|p| runtime::name(p)).collect();
        let mut disrupted: HashMap<String, Value> = HashMap::new();
        let mut recheck: Option<Duration> = None;
        if let Some(d) = old.get("disruptedPods").and_then(Value::as_object) {
            for (name, t) in d {
                let Some(at) = parse_time(Some(t)) else { continue };
                let expires = at + jiff::SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default();
                let pod_deleting = pods
                    .iter()
                    .find(|p| runtime::name(p) == name)
                    .map(|p| p.pointer("/metadata/deletionTimestamp").is_some());
                if !names.contains(name.as_str()) || pod_deleting == Some(true) || expires <= now {
                    continue;
                }
                let left = Duration::try_from(expires.duration_since(now)).unwrap_or_default();
                recheck = Some(recheck.map_or(left, |r| r.min(left)));
                disrupted.insert(name.clone(), t.clone());
            }
        }
        let healthy = pods
            .iter()
            .filter(|p| {
                p.pointer("/metadata/deletionTimestamp").is_none()
                    && ready(p)
                    && !disrupted.contains_key(runtime::name(p))
            })
            .count() as i64;
        let allowed = if expected <= 0 { 0 } else { (healthy - desired_healthy).max(0) };
        let mut status = old.clone();
        status["currentHealthy"] = json!(healthy);
        status["desiredHealthy"] = json!(desired_healthy);
        status["expectedPods"] = json!(expected);
        status["disruptionsAllowed"] = json!(allowed);
        status["observedGeneration"] = pdb.pointer("/metadata/generation").cloned().unwrap_or(json!(0));
        status["disruptedPods"] = json!(disrupted);
        if disrupted.is_empty()
            && let Some(o) = status.as_object_mut()
        {
            o.remove("disruptedPods");
        }
        let (cs, reason) = if allowed > 0 { ("True", "SufficientPods") } else { ("False", "InsufficientPods") };
        let mut conds: Vec<Value> = old.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
        match conds.iter_mut().find(|c| c["type"] == "DisruptionAllowed") {
            Some(c) => {
                if c["status"] != cs {
                    c["lastTransitionTime"] = json!(now_rfc3339());
                }
                c["status"] = json!(cs);
                c["reason"] = json!(reason);
                c["message"] = json!("");
                c["observedGeneration"] = status["observedGeneration"].clone();
            }
            None => conds.push(json!({"type": "DisruptionAllowed", "status": cs, "reason": reason, "message": "",
                "observedGeneration": status["observedGeneration"], "lastTransitionTime": now_rfc3339()})),
        }
        status["conditions"] = json!(conds);
        if status != old {
            let mut updated = (*pdb).clone();
            updated["status"] = status;
            let api = self.ctx.api("policy", "v1", "poddisruptionbudgets").namespaced(&ns);
            match api.replace_status(runtime::name(&pdb), &updated).await {
                Ok(_) => {}
                Err(e) if e.code() == Some(404) => return Ok(Action::Done),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(recheck.map_or(Action::Done, |d| Action::RequeueAfter(d + Duration::from_millis(100))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_or_percent_rounds_up() {
        assert_eq!(scaled(&json!(2), 10), Ok(2));
        assert_eq!(scaled(&json!("50%"), 5), Ok(3));
        assert_eq!(scaled(&json!("10%"), 1), Ok(1));
        assert_eq!(scaled(&json!("0%"), 7), Ok(0));
        assert!(scaled(&json!("x%"), 7).is_err());
    }

    #[test]
    fn desired_healthy_from_min_available_or_max_unavailable() {
        assert_eq!(desired(&json!({"minAvailable": 2}), 3, 5), Ok((3, 2)));
        assert_eq!(desired(&json!({"minAvailable": "50%"}), 3, 5), Ok((5, 3)));
        assert_eq!(desired(&json!({"maxUnavailable": 1}), 3, 5), Ok((5, 4)));
        assert_eq!(desired(&json!({"maxUnavailable": "30%"}), 3, 4), Ok((4, 2)));
        assert_eq!(desired(&json!({"maxUnavailable": 9}), 3, 4), Ok((4, 0)));
    }
}
