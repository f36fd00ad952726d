//! `resourcequota`: the usage of ResourceQuotas, as upstream's pkg/controller/resourcequota with the evaluators
//! of pkg/quota/v1/evaluator/core.
//!
//! `status.hard` mirrors `spec.hard` and `status.used` holds, for each resource of `spec.hard`, what the
//! namespace uses:
//! - pods (not `Succeeded`/`Failed`, and not past their deletion grace period): `pods`, `count/pods`,
//!   `requests.cpu`/`cpu`, `requests.memory`/`memory`, `requests.ephemeral-storage`/`ephemeral-storage`,
//!   `limits.cpu`, `limits.memory`, `limits.ephemeral-storage` and other `requests.*`/`limits.*` resources, from
//!   each pod's effective requests (the larger of the containers' sum and each init container, plus overhead);
//! - `services`, `services.loadbalancers`, `services.nodeports`; `configmaps`, `secrets`, `replicationcontrollers`,
//!   `resourcequotas`, `persistentvolumeclaims` and `requests.storage` (and per storage class
//!   `<class>.storageclass.storage.k8s.io/requests.storage` and `.../persistentvolumeclaims`);
//! - `count/<resource>` and `count/<resource>.<group>` for any resource of the table.
//!
//! `count/pods` counts every pod, `pods` and the compute resources only pods not yet terminal (upstream's
//! `PodUsageFunc`). A quota with scopes (`spec.scopes`, each an `Exists` requirement, and
//! `spec.scopeSelector.matchExpressions`) counts only the pods matching all of them, as upstream's pod evaluator:
//! `BestEffort`/`NotBestEffort` (the pod's QoS class), `Terminating`/`NotTerminating` (`activeDeadlineSeconds` >= 0),
//! `PriorityClass` (`In`, `NotIn`, `Exists`, `DoesNotExist` on `spec.priorityClassName`) and
//! `CrossNamespacePodAffinity` (a pod (anti-)affinity term with `namespaces` or a `namespaceSelector`); every other
//! evaluator matches no scope, so a scoped quota's non-pod resources stay at 0.
//!
//! Quantities are summed exactly and written in canonical form (`1500m`, `1536Mi`, `2k`).
//!
//! Creates are charged by the apiserver's ResourceQuota admission, which raises `status.used` at once; this
//! controller recounts a namespace when usage may have gone down (upstream's replenishment: deletes, pods turning
//! terminal, Services and claims changing what they use), when a quota's spec changes, and every 5 minutes. A
//! recount that would lower `status.used` is made again from lists of the apiserver, as the informers may not have
//! seen an object admission has just charged.
//!
//! Deliberate gaps: counts of resources other than those above are listed from the apiserver and refreshed every 30 s
//! rather than watched; a resource no evaluator knows still shows in `status.used` (as 0).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use runtime::{Action, Controller, Informer, Notification};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use api_types::quantity::Quantity;
use api_types::quota::{pod_matches_scope, pod_resources, scope_requirements, sum_into};

use crate::controllers::job::parse_time;
use crate::{BoxError, Context, stopped};

/// Whether a pod counts against quota (upstream's `QuotaV1Pod`).
pub fn pod_counts(pod: &Value, now: Timestamp) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default();
    if matches!(phase, "Succeeded" | "Failed") {
        return false;
    }
    if let (Some(at), Some(grace)) = (
        parse_time(pod.pointer("/metadata/deletionTimestamp")),
        pod.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64),
    ) && now > at + jiff::SignedDuration::from_secs(grace)
    {
        return false;
    }
    true
}

/// The usage of the namespace's objects (everything the evaluators compute; masked to `hard` by the caller).
/// With scope requirements only the pods matching all of them count, and nothing else (upstream's other
/// evaluators match no scope).
pub fn usage(
    pods: &[Arc<Value>],
    services: &[Arc<Value>],
    pvcs: &[Arc<Value>],
    counts: &[(&str, usize)],
    scopes: &[Value],
    now: Timestamp,
) -> BTreeMap<String, Quantity> {
    let count = |n: usize| Quantity { milli: n as i128 * 1000, binary: false };
    let mut used = BTreeMap::new();
    let pods: Vec<&Arc<Value>> = pods.iter().filter(|p| scopes.iter().all(|s| pod_matches_scope(s, p))).collect();
    let live: Vec<&&Arc<Value>> = pods.iter().filter(|p| pod_counts(p, now)).collect();
    used.insert("pods".to_string(), count(live.len()));
    used.insert("count/pods".to_string(), count(pods.len()));
    for p in &live {
        for (k, q) in pod_resources(p, "requests") {
            sum_into(&mut used, &format!("requests.{k}"), q);
            if matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                sum_into(&mut used, &k, q);
            }
        }
        for (k, q) in pod_resources(p, "limits") {
            sum_into(&mut used, &format!("limits.{k}"), q);
        }
    }
    if !scopes.is_empty() {
        return used;
    }
    used.insert("services".into(), count(services.len()));
    used.insert("count/services".into(), count(services.len()));
    let lbs = services.iter().filter(|s| s.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer"));
    used.insert("services.loadbalancers".into(), count(lbs.count()));
    let node_ports: usize = services
        .iter()
        .filter(|s| matches!(s.pointer("/spec/type").and_then(Value::as_str), Some("NodePort" | "LoadBalancer")))
        .map(|s| {
            s.pointer("/spec/ports").and_then(Value::as_array).map_or(0, |ps| {
                ps.iter().filter(|p| p.get("nodePort").and_then(Value::as_i64).is_some_and(|n| n > 0)).count()
            })
        })
        .sum();
    used.insert("services.nodeports".into(), count(node_ports));
    used.insert("persistentvolumeclaims".into(), count(pvcs.len()));
    used.insert("count/persistentvolumeclaims".into(), count(pvcs.len()));
    used.insert("requests.storage".into(), Quantity { milli: 0, binary: false });
    for pvc in pvcs {
        let storage = pvc.pointer("/spec/resources/requests/storage").and_then(Value::as_str).and_then(Quantity::parse);
        if let Some(q) = storage {
            sum_into(&mut used, "requests.storage", q);
        }
        if let Some(class) = pvc.pointer("/spec/storageClassName").and_then(Value::as_str) {
            let prefix = format!("{class}.storageclass.storage.k8s.io");
            sum_into(&mut used, &format!("{prefix}/persistentvolumeclaims"), count(1));
            if let Some(q) = storage {
                sum_into(&mut used, &format!("{prefix}/requests.storage"), q);
            }
        }
    }
    for (name, n) in counts {
        used.insert(name.to_string(), count(*n));
    }
    used
}

/// What `count/<resource>[.<group>]` names: (group, plural).
fn count_target(key: &str) -> Option<(String, String)> {
    let r = key.strip_prefix("count/")?;
    Some(match r.split_once('.') {
        Some((plural, group)) => (group.to_string(), plural.to_string()),
        None => (String::new(), r.to_string()),
    })
}

struct ResourceQuota {
    ctx: Arc<Context>,
    quotas: Informer,
    pods: Informer,
    services: Informer,
    pvcs: Informer,
    /// Counted from their informers: (quota name, informer).
    counted: Vec<(&'static str, Informer)>,
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let quotas = ctx.informer("", "v1", "resourcequotas");
    let counted: Vec<(&'static str, Informer)> = vec![
        ("configmaps", ctx.informer("", "v1", "configmaps")),
        ("secrets", ctx.informer("", "v1", "secrets")),
        ("replicationcontrollers", ctx.informer("", "v1", "replicationcontrollers")),
        ("resourcequotas", quotas.clone()),
    ];
    let this = Arc::new(ResourceQuota {
        pods: ctx.informer("", "v1", "pods"),
        services: ctx.informer("", "v1", "services"),
        pvcs: ctx.informer("", "v1", "persistentvolumeclaims"),
        quotas: quotas.clone(),
        counted,
        ctx,
    });
    // As upstream's replenishment: the apiserver's quota admission charges what is created (and raises
    // `status.used` itself), so the namespace's quotas are recounted only when usage may have gone down (a delete, a
    // pod turning terminal, a Service or claim changing what it uses) or the quota's spec changed. Recounting on
    // every create, from informers that may not have seen the latest objects yet, would undo admission's charges.
    let in_namespace = |quotas: Informer, replenishes: fn(&Notification) -> bool| {
        move |n: &Notification| -> Vec<String> {
            if !replenishes(n) {
                return Vec::new();
            }
            let ns = runtime::namespace(n.object()).to_string();
            quotas.store().list_by(|q| runtime::namespace(q) == ns).iter().map(|q| runtime::object_key(q)).collect()
        }
    };
    let mut c = Controller::new(runtime::controller::Config {
        workers: 2,
        resync: Some(Duration::from_secs(300)),
        ..Default::default()
    })
    .watches(&quotas, |n| if quota_changed(n) { vec![n.key()] } else { Vec::new() })
    .watches(&this.pods, in_namespace(quotas.clone(), pod_replenishes))
    .watches(&this.services, in_namespace(quotas.clone(), service_replenishes))
    .watches(&this.pvcs, in_namespace(quotas.clone(), pvc_replenishes));
    for (name, inf) in &this.counted {
        if *name != "resourcequotas" {
            c = c.watches(inf, in_namespace(quotas.clone(), |n| matches!(n, Notification::Deleted(_))));
        }
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

/// A quota to recount: new, resynced, or its spec changed (its own status updates, by this controller or by the
/// apiserver's admission, are not).
fn quota_changed(n: &Notification) -> bool {
    match n {
        Notification::Updated { old, new } => {
            old.get("spec") != new.get("spec") || new.pointer("/status/hard").is_none()
        }
        _ => true,
    }
}

/// A pod's usage went: deleted, or no longer counted (terminal, or past its deletion grace period).
fn pod_replenishes(n: &Notification) -> bool {
    let now = Timestamp::now();
    match n {
        Notification::Deleted(_) | Notification::Resync(_) => true,
        Notification::Updated { old, new } => pod_counts(old, now) && !pod_counts(new, now),
        Notification::Added(_) => false,
    }
}

/// A Service's usage changed: deleted, or its type or ports changed.
fn service_replenishes(n: &Notification) -> bool {
    match n {
        Notification::Deleted(_) | Notification::Resync(_) => true,
        Notification::Updated { old, new } => {
            api_types::quota::service_usage(old) != api_types::quota::service_usage(new)
        }
        Notification::Added(_) => false,
    }
}

/// A claim's usage changed: deleted, or its storage request changed.
fn pvc_replenishes(n: &Notification) -> bool {
    match n {
        Notification::Deleted(_) | Notification::Resync(_) => true,
        Notification::Updated { old, new } => api_types::quota::pvc_usage(old) != api_types::quota::pvc_usage(new),
        Notification::Added(_) => false,
    }
}

impl ResourceQuota {
    async fn reconcile(&self, key: &str) -> Result<Action, BoxError> {
        let Some(quota) = self.quotas.store().get_by_key(key) else { return Ok(Action::Done) };
        let ns = runtime::namespace(&quota).to_string();
        let hard: Map<String, Value> =
            quota.pointer("/spec/hard").and_then(Value::as_object).cloned().unwrap_or_default();
        let scopes = scope_requirements(&quota);
        let old = quota.get("status").cloned().unwrap_or(json!({}));
        let (mut all, listed) = self.count(&ns, &hard, &scopes, false).await?;
        // The informers may not have seen yet what the apiserver's admission has just charged (an object created a
        // moment ago): a recount that would lower `status.used` is confirmed from the apiserver itself, so a stale
        // cache never undoes a charge.
        let lowered = hard.keys().any(|k| {
            let before = old.get("used").and_then(|u| u.get(k)).and_then(Value::as_str).and_then(Quantity::parse);
            before.is_some_and(|b| all.get(k).copied().unwrap_or_default().milli < b.milli)
        });
        if lowered {
            all = self.count(&ns, &hard, &scopes, true).await?.0;
        }
        let mut used = Map::new();
        for k in hard.keys() {
            let q = all.get(k).copied().unwrap_or_default();
            used.insert(k.clone(), json!(q.format()));
        }
        let status = json!({"hard": hard, "used": used});
        let same = old.get("hard") == status.get("hard") && old.get("used") == status.get("used");
        if !same {
            let mut updated = (*quota).clone();
            updated["status"] = status;
            let api = self.ctx.api("", "v1", "resourcequotas").namespaced(&ns);
            match api.replace_status(runtime::name(&quota), &updated).await {
                Ok(_) => {}
                Err(e) if e.code() == Some(404) => return Ok(Action::Done),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(if listed { Action::RequeueAfter(Duration::from_secs(30)) } else { Action::Done })
    }

    /// The namespace's usage (every evaluator's, masked to `hard` by the caller) from the informers' caches, or with
    /// `live` from lists of the apiserver; and whether resources without an informer were listed.
    async fn count(
        &self,
        ns: &str,
        hard: &Map<String, Value>,
        scopes: &[Value],
        live: bool,
    ) -> Result<(BTreeMap<String, Quantity>, bool), BoxError> {
        let objects = async |i: &Informer, plural: &str| -> Result<Vec<Arc<Value>>, BoxError> {
            if !live {
                return Ok(i.store().list_by(|o| runtime::namespace(o) == ns));
            }
            let list = self.ctx.api("", "v1", plural).namespaced(ns).list(&Default::default()).await?;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            Ok(items.into_iter().map(Arc::new).collect())
        };
        let mut counts: Vec<(String, usize)> = Vec::new();
        // A scoped quota counts pods only: nothing else to count or list.
        let counted: &[(&str, Informer)] = if scopes.is_empty() { &self.counted } else { &[] };
        for (name, inf) in counted {
            let n = objects(inf, name).await?.len();
            counts.push((name.to_string(), n));
            counts.push((format!("count/{name}"), n));
        }
        let mut listed = false;
        // Other `count/...` resources: listed.
        for k in hard.keys().filter(|_| scopes.is_empty()) {
            let known = [
                "pods",
                "services",
                "persistentvolumeclaims",
                "configmaps",
                "secrets",
                "replicationcontrollers",
                "resourcequotas",
            ];
            let Some((group, plural)) = count_target(k) else { continue };
            if group.is_empty() && known.contains(&plural.as_str()) {
                continue;
            }
            let builtin =
                api_types::resources::RESOURCES.iter().find(|r| r.group == group && r.plural == plural && r.namespaced);
            let api = match builtin {
                Some(res) => self.ctx.api(res.group, res.version, res.plural).namespaced(ns),
                None => {
                    // `count/<plural>.<group>` of a custom resource: its preferred version from discovery.
                    let found = self.ctx.client.discover_resources().await?;
                    let Some(d) = found.into_iter().find(|d| d.group == group && d.plural == plural && d.namespaced)
                    else {
                        continue;
                    };
                    self.ctx.client.api_dynamic(&d.group, &d.version, &d.plural, &d.kind, true).namespaced(ns)
                }
            };
            let list = api.list(&Default::default()).await?;
            counts.push((k.clone(), list["items"].as_array().map_or(0, Vec::len)));
            listed = true;
        }
        let counts: Vec<(&str, usize)> = counts.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        let pods = objects(&self.pods, "pods").await?;
        let services = objects(&self.services, "services").await?;
        let pvcs = objects(&self.pvcs, "persistentvolumeclaims").await?;
        Ok((usage(&pods, &services, &pvcs, &counts, scopes, Timestamp::now()), listed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn quantities_parse_add_and_format_canonically() {
        assert_eq!(q("500m").plus(q("1")).format(), "1500m");
        assert_eq!(q("1").plus(q("1")).format(), "2");
        assert_eq!(q("1Gi").plus(q("512Mi")).format(), "1536Mi");
        assert_eq!(q("128Mi").plus(q("128Mi")).format(), "256Mi");
        assert_eq!(q("1000").format(), "1k");
        assert_eq!(q("1.5").format(), "1500m");
        assert_eq!(q("0.1").format(), "100m");
        assert_eq!(q("1e3").format(), "1k");
        assert_eq!(q("2G").format(), "2G");
        assert_eq!(Quantity::default().format(), "0");
        assert!(Quantity::parse("abc").is_none());
        assert!(Quantity::parse("1Xi").is_none());
    }

    #[test]
    fn pod_usage_takes_init_containers_and_skips_terminal_pods() {
        let pod = json!({"spec": {
            "containers": [
                {"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m"}}},
                {"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}],
            "initContainers": [{"resources": {"requests": {"cpu": "500m"}}}]},
            "status": {"phase": "Running"}});
        let done = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}, "status": {"phase": "Succeeded"}});
        let pods = vec![Arc::new(pod), Arc::new(done)];
        let used = usage(&pods, &[], &[], &[], &[], Timestamp::now());
        assert_eq!(used["pods"].format(), "1");
        assert_eq!(used["requests.cpu"].format(), "500m");
        assert_eq!(used["cpu"].format(), "500m");
        assert_eq!(used["requests.memory"].format(), "128Mi");
        assert_eq!(used["limits.cpu"].format(), "200m");
    }

    #[test]
    fn pods_match_scopes_as_upstream() {
        let be = json!({"spec": {"containers": [{"name": "c"}]}});
        let burstable = json!({"spec": {"activeDeadlineSeconds": 0, "priorityClassName": "high",
            "containers": [{"resources": {"requests": {"cpu": "100m"}}}]}});
        let zero = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "0", "example.com/gpu": "1"}}}]}});
        let by_status = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]},
            "status": {"qosClass": "BestEffort"}});
        let negative = json!({"spec": {"activeDeadlineSeconds": -1}});
        let exists = |scope: &str| json!({"scopeName": scope, "operator": "Exists"});
        let pc = |op: &str, values: &[&str]| json!({"scopeName": "PriorityClass", "operator": op, "values": values});
        assert!(pod_matches_scope(&exists("BestEffort"), &be));
        assert!(pod_matches_scope(&exists("BestEffort"), &zero), "zero cpu and extended resources are not QoS");
        assert!(pod_matches_scope(&exists("BestEffort"), &by_status));
        assert!(pod_matches_scope(&exists("NotBestEffort"), &burstable));
        assert!(pod_matches_scope(&exists("Terminating"), &burstable));
        assert!(pod_matches_scope(&exists("NotTerminating"), &be));
        assert!(pod_matches_scope(&exists("NotTerminating"), &negative));
        assert!(pod_matches_scope(&pc("In", &["high", "low"]), &burstable));
        assert!(!pod_matches_scope(&pc("In", &["low"]), &burstable));
        assert!(!pod_matches_scope(&pc("In", &["high"]), &be));
        assert!(pod_matches_scope(&pc("NotIn", &["high"]), &be), "NotIn matches pods without a class");
        assert!(!pod_matches_scope(&pc("NotIn", &["high"]), &burstable));
        assert!(pod_matches_scope(&pc("Exists", &[]), &burstable) && !pod_matches_scope(&pc("Exists", &[]), &be));
        assert!(pod_matches_scope(&pc("DoesNotExist", &[]), &be));
        assert!(!pod_matches_scope(&exists("Unknown"), &be));
        let cross = json!({"spec": {"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "podAffinityTerm": {"topologyKey": "k", "namespaceSelector": {}}}]}}}});
        let local = json!({"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "k", "labelSelector": {}}]}}}});
        assert!(pod_matches_scope(&exists("CrossNamespacePodAffinity"), &cross));
        assert!(!pod_matches_scope(&exists("CrossNamespacePodAffinity"), &local));

        let quota = json!({"spec": {"scopes": ["NotBestEffort"], "scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}});
        let scopes = scope_requirements(&quota);
        assert_eq!(scopes.len(), 2);
        let done = json!({"spec": {"priorityClassName": "high", "containers": [{"resources": {"limits": {"memory": "1Gi"}}}]},
            "status": {"phase": "Failed"}});
        let pods: Vec<Arc<Value>> = [be, burstable, done].into_iter().map(Arc::new).collect();
        let svcs = vec![Arc::new(json!({"spec": {"type": "ClusterIP"}}))];
        let used = usage(&pods, &svcs, &[], &[("configmaps", 3)], &scopes, Timestamp::now());
        assert_eq!(used["pods"].format(), "1");
        assert_eq!(used["count/pods"].format(), "2", "count/pods counts terminal pods too");
        assert_eq!(used["requests.cpu"].format(), "100m");
        assert!(!used.contains_key("services") && !used.contains_key("configmaps"), "{used:?}");
        let all = usage(&pods, &svcs, &[], &[("configmaps", 3)], &[], Timestamp::now());
        assert_eq!((all["pods"].format(), all["count/pods"].format()), ("2".into(), "3".into()));
        assert_eq!((all["services"].format(), all["configmaps"].format()), ("1".into(), "3".into()));
    }

    #[test]
    fn services_and_claims() {
        let svcs: Vec<Arc<Value>> = vec![
            Arc::new(json!({"spec": {"type": "ClusterIP"}})),
            Arc::new(json!({"spec": {"type": "NodePort", "ports": [{"nodePort": 30001}, {"nodePort": 30002}]}})),
            Arc::new(json!({"spec": {"type": "LoadBalancer", "ports": [{"nodePort": 30003}]}})),
        ];
        let pvcs = vec![Arc::new(
            json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}}),
        )];
        let used = usage(&[], &svcs, &pvcs, &[("count/deployments.apps", 2)], &[], Timestamp::now());
        assert_eq!(used["services"].format(), "3");
        assert_eq!(used["services.loadbalancers"].format(), "1");
        assert_eq!(used["services.nodeports"].format(), "3");
        assert_eq!(used["requests.storage"].format(), "1Gi");
        assert_eq!(used["fast.storageclass.storage.k8s.io/requests.storage"].format(), "1Gi");
        assert_eq!(used["count/deployments.apps"].format(), "2");
        assert_eq!(count_target("count/deployments.apps"), Some(("apps".into(), "deployments".into())));
    }
}
