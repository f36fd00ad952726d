//! ResourceQuota admission, as upstream's `plugin/pkg/admission/resourcequota` (its quota evaluator in
//! `apiserver/pkg/admission/plugin/resourcequota/controller.go`): each create, and each update of a pod, Service or
//! PersistentVolumeClaim, in a namespace with quotas is charged against every quota whose `status.hard` names a
//! resource the object's evaluator tracks and whose scopes select it ([`api_types::quota`]). It is refused
//! (403) when a quota's pod constraints are not met (`failed quota: ...: must specify ...`), when a quota's usage
//! is not known yet (`status unknown for quota: ...`), or when the new usage would pass the hard limit
//! (`exceeded quota: <name>, requested: ..., used: ..., limited: ...`); otherwise the quotas' `status.used` is
//! raised at once (not on a dry run), so that the next request in the namespace sees it. The resourcequota
//! controller later recomputes usage from what is stored (releases, failed writes). Charges of one namespace are
//! serialized; a quota changed meanwhile is read again.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use api_types::quota::{self, Evaluator, ResourceList};
use api_types::{ApiError, Resource};
use serde_json::Value;

use super::{Operation, Request};
use crate::registry::{ListParams, meta_str};
use crate::server::Apiserver;

pub const NAME: &str = "ResourceQuota";

fn quotas_resource() -> &'static Resource {
    api_types::resources::find("", "v1", "resourcequotas").expect("resourcequotas is a built-in resource")
}

/// The names of the quotas of the request's namespace (from the watch cache) when the request is one this plugin
/// charges; None otherwise (nothing to await).
pub fn candidates(server: &Apiserver, r: &Request<'_>) -> Option<Vec<String>> {
    if !server.admission_enabled(NAME) || r.namespace.is_empty() || !r.subresource.is_empty() || !r.resource.namespaced
    {
        return None;
    }
    let evaluator = Evaluator::for_resource(r.resource.group, r.resource.plural);
    match r.operation {
        Operation::Create => {}
        Operation::Update if evaluator.handles_update() => {}
        _ => return None,
    }
    let cache = server.registry.cacher.started(quotas_resource())?;
    let (quotas, _) = cache.list(Some(r.namespace), &ListParams::default()).ok()?;
    let names: Vec<String> = quotas.iter().filter_map(|q| meta_str(q, "name")).map(str::to_string).collect();
    (!names.is_empty()).then_some(names)
}

/// One lock per namespace: charges of a namespace are made one at a time.
fn namespace_lock(ns: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = LazyLock::new(Default::default);
    let mut locks = LOCKS.lock().unwrap_or_else(|e| e.into_inner());
    locks.entry(ns.to_string()).or_default().clone()
}

/// Charges the request against the quotas named `names` (read again from storage) and records the new usage.
pub async fn admit(server: &Apiserver, r: &Request<'_>, names: &[String]) -> Result<(), ApiError> {
    let res = quotas_resource();
    let lock = namespace_lock(r.namespace);
    let _held = lock.lock().await;
    let mut charged: Vec<String> = Vec::new();
    for _ in 0..5 {
        let mut quotas = Vec::new();
        for name in names.iter().filter(|n| !charged.contains(n)) {
            if let Ok(q) = server.registry.get(res, Some(r.namespace), name).await {
                quotas.push(q);
            }
        }
        let updates = check(r, &quotas)?;
        if r.dry_run || updates.is_empty() {
            return Ok(());
        }
        let mut conflict = false;
        for (i, used) in updates {
            let mut q = quotas[i].clone();
            let name = meta_str(&q, "name").unwrap_or_default().to_string();
            q["status"]["used"] = quota::to_json(&used);
            match server.registry.update(res, Some(r.namespace), &name, Some("status"), q, false).await {
                Ok(_) => charged.push(name),
                Err(e) if e.code == 409 => conflict = true,
                Err(e) => return Err(e),
            }
        }
        if !conflict {
            return Ok(());
        }
    }
    Err(forbidden(r, "status update conflict: too many concurrent changes to the namespace's quotas"))
}

fn forbidden(r: &Request<'_>, why: &str) -> ApiError {
    crate::authorization::new_forbidden(r.resource.group, r.resource.plural, r.name, why)
}

/// The new `status.used` of each quota the request is charged to, by index in `quotas`; a 403 when one refuses it
/// (upstream's `checkRequest`).
pub fn check(r: &Request<'_>, quotas: &[Value]) -> Result<Vec<(usize, ResourceList)>, ApiError> {
    let Some(obj) = r.object else { return Ok(Vec::new()) };
    let (group, plural) = (r.resource.group, r.resource.plural);
    let evaluator = Evaluator::for_resource(group, plural);
    if r.operation == Operation::Update && !evaluator.handles_update() {
        return Ok(Vec::new());
    }
    let mut charged = Vec::new();
    for (i, q) in quotas.iter().enumerate() {
        let name = meta_str(q, "name").unwrap_or_default();
        let hard = quota::from_json(q.pointer("/status/hard"));
        let restricted = quota::matching_resources(evaluator, group, plural, hard.keys());
        if restricted.is_empty() || !quota::scopes_match(evaluator, q, obj) {
            continue;
        }
        if evaluator == Evaluator::Pods {
            quota::pod_constraints(&restricted, obj)
                .map_err(|e| forbidden(r, &format!("failed quota: {name}: {e}")))?;
        }
        let used = quota::from_json(q.pointer("/status/used"));
        if restricted.iter().any(|res| !used.contains_key(res)) {
            let mut sorted = restricted.clone();
            sorted.sort();
            return Err(forbidden(r, &format!("status unknown for quota: {name}, resources: {}", sorted.join(","))));
        }
        charged.push(i);
    }
    if charged.is_empty() {
        return Ok(Vec::new());
    }
    let mut delta = quota::usage(evaluator, group, plural, obj);
    let negative: Vec<&str> = delta.iter().filter(|(_, q)| q.milli < 0).map(|(k, _)| k.as_str()).collect();
    if !negative.is_empty() {
        return Err(forbidden(r, &format!("quota usage is negative for resource(s): {}", negative.join(","))));
    }
    // An update is charged what it adds (never a refund); one without a stored version is charged in full.
    if r.operation == Operation::Update
        && let Some(old) = r.old.filter(|o| meta_str(o, "resourceVersion").is_some_and(|v| !v.is_empty()))
    {
        let prev = quota::usage(evaluator, group, plural, old);
        for (k, q) in delta.iter_mut() {
            if let Some(p) = prev.get(k) {
                q.milli = (q.milli - p.milli).max(0);
            }
        }
    }
    delta.retain(|_, q| q.milli != 0);
    if delta.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for i in charged {
        let q = &quotas[i];
        let name = meta_str(q, "name").unwrap_or_default();
        let hard = quota::from_json(q.pointer("/status/hard"));
        let used = quota::from_json(q.pointer("/status/used"));
        let requested: ResourceList =
            delta.iter().filter(|(k, _)| hard.contains_key(*k)).map(|(k, v)| (k.clone(), *v)).collect();
        let mut new_used = used.clone();
        for (k, v) in &requested {
            let e = new_used.entry(k.clone()).or_insert(quota::Quantity { milli: 0, binary: v.binary });
            *e = e.plus(*v);
        }
        let exceeded: Vec<&String> = requested.keys().filter(|k| new_used[*k].milli > hard[*k].milli).collect();
        if !exceeded.is_empty() {
            let mask = |l: &ResourceList| -> ResourceList {
                l.iter().filter(|(k, _)| exceeded.contains(k)).map(|(k, v)| (k.clone(), *v)).collect()
            };
            return Err(forbidden(
                r,
                &format!(
                    "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
                    quota::pretty_print(&mask(&requested)),
                    quota::pretty_print(&mask(&used)),
                    quota::pretty_print(&mask(&hard)),
                ),
            ));
        }
        out.push((i, new_used));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::UserInfo;
    use serde_json::json;

    fn request<'a>(
        res: &'a Resource,
        op: Operation,
        obj: &'a Value,
        old: Option<&'a Value>,
        user: &'a UserInfo,
    ) -> Request<'a> {
        Request {
            operation: op,
            resource: res,
            subresource: "",
            namespace: "ns",
            name: meta_str(obj, "name").unwrap_or_default(),
            object: Some(obj),
            old,
            user,
            dry_run: false,
        }
    }

    fn quota(name: &str, hard: Value, used: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns", "resourceVersion": "5"}, "spec": {"hard": hard},
               "status": {"hard": hard, "used": used}})
    }

    fn pod(name: &str, requests: Value, limits: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns"},
               "spec": {"containers": [{"name": "app", "image": "x", "resources": {"requests": requests, "limits": limits}}]}})
    }

    fn res(plural: &str) -> &'static Resource {
        api_types::resources::find("", "v1", plural).unwrap()
    }

    #[test]
    fn a_pod_within_quota_is_charged_and_one_over_is_refused_with_upstreams_message() {
        let user = UserInfo::default();
        let q = quota(
            "test-quota",
            json!({"pods": "2", "requests.cpu": "1", "requests.memory": "500Mi"}),
            json!({"pods": "1", "requests.cpu": "500m", "requests.memory": "200Mi"}),
        );
        let p = pod("p1", json!({"cpu": "500m", "memory": "100Mi"}), json!({}));
        let out = check(&request(res("pods"), Operation::Create, &p, None, &user), std::slice::from_ref(&q)).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(quota::to_json(&out[0].1), json!({"pods": "2", "requests.cpu": "1", "requests.memory": "300Mi"}));

        let big = pod("p2", json!({"cpu": "600m", "memory": "100Mi"}), json!({}));
        let e = check(&request(res("pods"), Operation::Create, &big, None, &user), &[q]).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "pods \"p2\" is forbidden: exceeded quota: test-quota, requested: requests.cpu=600m, used: requests.cpu=500m, limited: requests.cpu=1"
        );
    }

    #[test]
    fn quotas_on_cpu_need_every_container_to_state_it() {
        let user = UserInfo::default();
        let q = quota(
            "compute",
            json!({"limits.cpu": "2", "requests.memory": "1Gi"}),
            json!({"limits.cpu": "0", "requests.memory": "0"}),
        );
        let p = json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "a", "resources": {"requests": {"memory": "1Mi"}}}, {"name": "b"}],
            "initContainers": [{"name": "init", "resources": {"limits": {"cpu": "1"}, "requests": {"memory": "1Mi"}}}]}});
        let e = check(&request(res("pods"), Operation::Create, &p, None, &user), &[q]).unwrap_err();
        assert_eq!(
            e.message,
            "pods \"p\" is forbidden: failed quota: compute: must specify limits.cpu for: a,b; requests.memory for: b"
        );
    }

    #[test]
    fn usage_not_yet_known_refuses_and_unmatched_quotas_are_ignored() {
        let user = UserInfo::default();
        let cm = json!({"metadata": {"name": "c"}, "data": {}});
        let unknown = json!({"metadata": {"name": "q"}, "spec": {"hard": {"configmaps": "1"}}, "status": {"hard": {"configmaps": "1"}}});
        let e = check(&request(res("configmaps"), Operation::Create, &cm, None, &user), &[unknown]).unwrap_err();
        assert_eq!(e.message, "configmaps \"c\" is forbidden: status unknown for quota: q, resources: configmaps");
        // Not counted by the quota (only pods), or not yet seen by the controller (no status.hard): admitted.
        let pods_only = quota("p", json!({"pods": "1"}), json!({"pods": "1"}));
        let fresh = json!({"metadata": {"name": "f"}, "spec": {"hard": {"configmaps": "0"}}});
        assert!(
            check(&request(res("configmaps"), Operation::Create, &cm, None, &user), &[pods_only, fresh])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn object_counts_and_legacy_names_are_charged_on_create() {
        let user = UserInfo::default();
        let q = quota(
            "objects",
            json!({"count/configmaps": "2", "configmaps": "5", "secrets": "1"}),
            json!({"count/configmaps": "2", "configmaps": "2", "secrets": "0"}),
        );
        let cm = json!({"metadata": {"name": "c"}});
        let e = check(&request(res("configmaps"), Operation::Create, &cm, None, &user), &[q]).unwrap_err();
        assert_eq!(
            e.message,
            "configmaps \"c\" is forbidden: exceeded quota: objects, requested: count/configmaps=1, used: count/configmaps=2, limited: count/configmaps=2"
        );
        let deploy = api_types::resources::find("apps", "v1", "deployments").unwrap();
        let q = quota("apps", json!({"count/deployments.apps": "1"}), json!({"count/deployments.apps": "1"}));
        let d = json!({"metadata": {"name": "d"}});
        let e = check(&request(deploy, Operation::Create, &d, None, &user), std::slice::from_ref(&q)).unwrap_err();
        assert!(e.message.starts_with("deployments.apps \"d\" is forbidden: exceeded quota: apps"), "{}", e.message);
        // Updates of counted objects are not charged.
        assert!(check(&request(deploy, Operation::Update, &d, Some(&d), &user), &[q]).unwrap().is_empty());
    }

    #[test]
    fn a_service_turning_nodeport_is_charged_its_ports_and_scopes_select_pods() {
        let user = UserInfo::default();
        let q = quota(
            "svc",
            json!({"services": "10", "services.nodeports": "1"}),
            json!({"services": "1", "services.nodeports": "0"}),
        );
        let old = json!({"metadata": {"name": "s", "resourceVersion": "3"}, "spec": {"type": "ClusterIP", "ports": [{"port": 80}, {"port": 81}]}});
        let new = json!({"metadata": {"name": "s", "resourceVersion": "3"}, "spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81}]}});
        let e = check(&request(res("services"), Operation::Update, &new, Some(&old), &user), &[q]).unwrap_err();
        assert!(
            e.message.ends_with(
                "requested: services.nodeports=2, used: services.nodeports=0, limited: services.nodeports=1"
            ),
            "{}",
            e.message
        );

        let mut be = quota("besteffort", json!({"pods": "1"}), json!({"pods": "1"}));
        be["spec"]["scopes"] = json!(["BestEffort"]);
        let burstable = pod("b", json!({"cpu": "100m"}), json!({}));
        assert!(
            check(&request(res("pods"), Operation::Create, &burstable, None, &user), std::slice::from_ref(&be))
                .unwrap()
                .is_empty()
        );
        let besteffort = pod("e", json!({}), json!({}));
        assert!(check(&request(res("pods"), Operation::Create, &besteffort, None, &user), &[be]).is_err());
    }
}
