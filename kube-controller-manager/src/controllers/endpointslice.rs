//! `endpointslice`: the `discovery.k8s.io/v1` EndpointSlices of every Service with a selector, as upstream's
//! `pkg/controller/endpointslice` (and its reconciler in `staging/.../endpointslice`).
//!
//! Every selected pod with an IP of one of the service's IP families (terminating pods included) is an endpoint:
//! `addresses: [ip]`, `conditions` (`serving`: Ready; `terminating`: being deleted; `ready`: serving and not
//! terminating, or always with `publishNotReadyAddresses`), `nodeName`, `targetRef` and `hostname`. Endpoints are
//! grouped by address type and by the ports they resolve (`targetPort` by number or container port name); each
//! group lives in slices of at most `--max-endpoints-per-slice` (100) endpoints. Slices are labelled
//! `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`
//! (plus the service's labels), owned by the Service (controller, blockOwnerDeletion) and named from
//! `generateName: <service>-`. Reconciling keeps endpoints in the slice they are in and updates slices in place,
//! fills slices with room before creating new ones, deletes slices left empty, and keeps one placeholder slice
//! (no endpoints, no ports) for a service without endpoints. Touched slices carry
//! `endpoints.kubernetes.io/last-change-trigger-time`. As upstream's `EndpointSliceTracker`, the slices this
//! controller wrote or deleted are remembered per service, and a reconcile whose cache has not caught up with them
//! is retried instead of acting on it (which would create duplicates).
//!
//! Deliberate gaps: no `zone` or `hints` (no topology-aware routing), no slice packing/merging heuristics beyond
//! filling free room, no mirroring of custom Endpoints (`endpointslicemirroring` is another controller); slices of a
//! deleted service are deleted here rather than left to the garbage collector.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use runtime::{Action, Controller, Store};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::endpoints::{
    TriggerTimes, find_port, hostname, matches, pod_ready, selector, service_labels, services_of_pod,
    should_be_in_endpoints, target_ref, terminating,
};
use crate::{BoxError, Context, stopped};

pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";

/// The address types of a service (its IP families; IPv4 by default).
fn address_types(svc: &Value) -> Vec<&'static str> {
    let fams: Vec<&'static str> = svc
        .pointer("/spec/ipFamilies")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| match f.as_str() {
                    Some("IPv4") => Some("IPv4"),
                    Some("IPv6") => Some("IPv6"),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if fams.is_empty() { vec!["IPv4"] } else { fams }
}

fn pod_ip_of(pod: &Value, address_type: &str) -> Option<String> {
    super::endpoints::pod_ip(pod, address_type == "IPv6")
}

/// The slice ports a pod resolves for the service (ports that do not resolve are left out, as upstream).
pub fn endpoint_ports(svc: &Value, pod: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for sp in svc.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
        let Some(port) = find_port(pod, sp) else { continue };
        let mut p = json!({"name": sp.get("name").and_then(Value::as_str).unwrap_or_default(), "port": port,
            "protocol": sp.get("protocol").and_then(Value::as_str).unwrap_or("TCP")});
        if let Some(ap) = sp.get("appProtocol") {
            p["appProtocol"] = ap.clone();
        }
        out.push(p);
    }
    out
}

/// One endpoint of a pod (upstream's `podToEndpoint`).
pub fn endpoint(svc: &Value, pod: &Value, ip: &str) -> Value {
    let publish = svc.pointer("/spec/publishNotReadyAddresses").and_then(Value::as_bool).unwrap_or(false);
    let serving = publish || pod_ready(pod);
    let term = terminating(pod);
    let ready = publish || (serving && !term);
    let mut ep = json!({"addresses": [ip], "conditions": {"ready": ready, "serving": serving, "terminating": term},
        "targetRef": target_ref(pod)});
    if let Some(node) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        ep["nodeName"] = json!(node);
    }
    if let Some(h) = hostname(pod, svc) {
        ep["hostname"] = json!(h);
    }
    ep
}

/// What makes an endpoint the same endpoint across reconciles: its address and pod.
fn endpoint_id(ep: &Value) -> (String, String) {
    (
        ep.pointer("/addresses/0").and_then(Value::as_str).unwrap_or_default().to_string(),
        ep.pointer("/targetRef/uid").and_then(Value::as_str).unwrap_or_default().to_string(),
    )
}

/// The group a slice belongs to: address type and ports (sorted).
fn group_key(address_type: &str, ports: &[Value]) -> String {
    let mut ps: Vec<String> = ports.iter().map(Value::to_string).collect();
    ps.sort();
    format!("{address_type}|{}", ps.join(","))
}

/// The desired endpoints of a service: group key -> (address type, ports, endpoints).
pub fn desired(svc: &Value, pods: &[Arc<Value>]) -> BTreeMap<String, (String, Vec<Value>, Vec<Value>)> {
    let mut out: BTreeMap<String, (String, Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for at in address_types(svc) {
        for pod in pods {
            if !should_be_in_endpoints(pod, true) {
                continue;
            }
            let Some(ip) = pod_ip_of(pod, at) else { continue };
            let mut ports = endpoint_ports(svc, pod);
            ports.sort_by_key(Value::to_string);
            let entry = out.entry(group_key(at, &ports)).or_insert_with(|| (at.to_string(), ports.clone(), Vec::new()));
            entry.2.push(endpoint(svc, pod, &ip));
        }
    }
    out
}

/// A planned write.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Replace an existing slice's endpoints (and ports).
    Update {
        name: String,
        ports: Vec<Value>,
        endpoints: Vec<Value>,
    },
    Create {
        address_type: String,
        ports: Vec<Value>,
        endpoints: Vec<Value>,
    },
    Delete {
        name: String,
    },
}

fn slice_endpoints(s: &Value) -> Vec<Value> {
    s.get("endpoints").and_then(Value::as_array).cloned().unwrap_or_default()
}

fn slice_ports(s: &Value) -> Vec<Value> {
    let mut ps = s.get("ports").and_then(Value::as_array).cloned().unwrap_or_default();
    ps.sort_by_key(Value::to_string);
    ps
}

/// The writes turning the existing slices into the desired endpoints: endpoints stay in their slice (updated in
/// place), new ones fill slices with room, then new slices; empty slices go, but one placeholder stays when the
/// service has no endpoints at all.
pub fn plan(
    existing: &[Arc<Value>],
    desired: &BTreeMap<String, (String, Vec<Value>, Vec<Value>)>,
    max: usize,
    placeholder_type: &str,
) -> Vec<Write> {
    let max = max.max(1);
    let mut writes = Vec::new();
    let mut used = vec![false; existing.len()];
    for (key, (at, ports, eps)) in desired {
        let mut wanted: BTreeMap<(String, String), &Value> = eps.iter().map(|e| (endpoint_id(e), e)).collect();
        // Slices of this group: keep what is still wanted where it is.
        let mut slices: Vec<(usize, Vec<Value>, bool)> = Vec::new();
        for (i, s) in existing.iter().enumerate() {
            let st = s.get("addressType").and_then(Value::as_str).unwrap_or_default();
            if used[i] || group_key(st, &slice_ports(s)) != *key {
                continue;
            }
            used[i] = true;
            let old = slice_endpoints(s);
            let new: Vec<Value> = old.iter().filter_map(|e| wanted.remove(&endpoint_id(e)).cloned()).collect();
            let changed = new != old;
            slices.push((i, new, changed));
        }
        // The rest fill slices with room, then new slices.
        let mut rest: Vec<Value> = wanted.into_values().cloned().collect();
        for (_, eps, changed) in slices.iter_mut() {
            while eps.len() < max && !rest.is_empty() {
                eps.push(rest.remove(0));
                *changed = true;
            }
        }
        for (i, eps, changed) in slices {
            let name = runtime::name(&existing[i]).to_string();
            if eps.is_empty() {
                writes.push(Write::Delete { name });
            } else if changed {
                writes.push(Write::Update { name, ports: ports.clone(), endpoints: eps });
            }
        }
        for chunk in rest.chunks(max) {
            writes.push(Write::Create { address_type: at.clone(), ports: ports.clone(), endpoints: chunk.to_vec() });
        }
    }
    let has_endpoints = desired.values().any(|(_, _, e)| !e.is_empty());
    let mut placeholder_kept = has_endpoints;
    for (i, s) in existing.iter().enumerate() {
        if used[i] {
            continue;
        }
        let is_placeholder = slice_endpoints(s).is_empty()
            && slice_ports(s).is_empty()
            && s.get("addressType").and_then(Value::as_str) == Some(placeholder_type);
        if !placeholder_kept && is_placeholder {
            placeholder_kept = true;
            continue;
        }
        writes.push(Write::Delete { name: runtime::name(s).to_string() });
    }
    if !placeholder_kept {
        writes.push(Write::Create { address_type: placeholder_type.to_string(), ports: vec![], endpoints: vec![] });
    }
    writes
}

fn rv_of(v: &Value) -> u64 {
    runtime::resource_version(v).parse().unwrap_or(0)
}

/// Upstream's `EndpointSliceTracker`: per service, the slices this controller wrote (name -> resourceVersion)
/// and deleted, so that a reconcile on a cache that has not seen its own writes yet waits instead of creating
/// duplicates.
#[derive(Default)]
pub struct Tracker {
    services: Mutex<HashMap<String, Tracked>>,
}

/// The slices of one service written (name -> resourceVersion) and deleted.
type Tracked = (HashMap<String, u64>, HashSet<String>);

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracked>> {
        self.services.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the cached slices lag behind this controller's writes.
    pub fn stale(&self, svc: &str, cached: &[Arc<Value>]) -> bool {
        let mut all = self.lock();
        let Some((written, deleted)) = all.get(svc) else { return false };
        let by_name: HashMap<&str, u64> = cached.iter().map(|s| (runtime::name(s), rv_of(s))).collect();
        let behind = written.iter().any(|(n, rv)| by_name.get(n.as_str()).is_none_or(|c| c < rv))
            || deleted.iter().any(|n| by_name.contains_key(n.as_str()));
        if !behind {
            all.remove(svc);
        }
        behind
    }

    pub fn wrote(&self, svc: &str, slice: &Value) {
        self.lock().entry(svc.to_string()).or_default().0.insert(runtime::name(slice).to_string(), rv_of(slice));
    }

    pub fn deleted(&self, svc: &str, name: &str) {
        let mut all = self.lock();
        let e = all.entry(svc.to_string()).or_default();
        e.0.remove(name);
        e.1.insert(name.to_string());
    }

    pub fn forget(&self, svc: &str) {
        self.lock().remove(svc);
    }
}

struct Slices {
    tracker: Tracker,
    ctx: Arc<Context>,
    services: Store,
    pods: Store,
    slices: Store,
    triggers: TriggerTimes,
}

impl Slices {
    fn managed(&self, ns: &str, name: &str) -> Vec<Arc<Value>> {
        let mut v = self.slices.list_by(|s| {
            runtime::namespace(s) == ns
                && s.pointer("/metadata/labels/kubernetes.io~1service-name").and_then(Value::as_str) == Some(name)
                && s.pointer("/metadata/labels/endpointslice.kubernetes.io~1managed-by").and_then(Value::as_str)
                    == Some(CONTROLLER_NAME)
        });
        v.sort_by(|a, b| runtime::name(a).cmp(runtime::name(b)));
        v
    }

    fn metadata(&self, svc: &Value, trigger: Option<&str>, base: Option<&Value>) -> Value {
        let mut labels = service_labels(svc);
        labels.insert(SERVICE_NAME.into(), json!(runtime::name(svc)));
        labels.insert(MANAGED_BY.into(), json!(CONTROLLER_NAME));
        let mut meta = base.cloned().unwrap_or_else(|| {
            json!({"generateName": format!("{}-", runtime::name(svc)), "namespace": runtime::namespace(svc),
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": runtime::name(svc),
                    "uid": runtime::uid(svc), "controller": true, "blockOwnerDeletion": true}]})
        });
        meta["labels"] = json!(labels);
        let mut annotations = meta.get("annotations").and_then(Value::as_object).cloned().unwrap_or_default();
        match trigger {
            Some(t) => annotations.insert(super::endpoints::TRIGGER_TIME.into(), json!(t)),
            None => annotations.remove(super::endpoints::TRIGGER_TIME),
        };
        meta["annotations"] = json!(annotations);
        meta
    }

    async fn sync(&self, key: &str) -> Result<Action, BoxError> {
        let (ns, name) = runtime::split_key(key);
        let api = self.ctx.api("discovery.k8s.io", "v1", "endpointslices").namespaced(ns);
        let existing = self.managed(ns, name);
        if self.tracker.stale(key, &existing) {
            return Err(format!("endpointslice cache of service {key} is behind this controller's writes").into());
        }
        let svc = match self.services.get(ns, name) {
            Some(s) if s.pointer("/spec/type").and_then(Value::as_str) != Some("ExternalName") => s,
            other => {
                if other.is_none() {
                    self.triggers.forget(key);
                    self.tracker.forget(key);
                }
                for s in existing {
                    match api.delete(runtime::name(&s), None).await {
                        Ok(_) => {}
                        Err(e) if e.code() == Some(404) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                return Ok(Action::Done);
            }
        };
        let Some(sel) = selector(&svc) else { return Ok(Action::Done) };
        let pods = self.pods.list_by(|p| runtime::namespace(p) == ns && matches(sel, p));
        let desired = desired(&svc, &pods);
        let trigger = self.triggers.compute(&svc, &pods).map(|t| t.to_string());
        let placeholder_type = address_types(&svc)[0];
        // Slices whose labels drifted from the service's are rewritten even when their endpoints did not change.
        let want_meta = self.metadata(&svc, None, None);
        let mut writes = plan(&existing, &desired, self.ctx.options.max_endpoints_per_slice, placeholder_type);
        for s in &existing {
            let n = runtime::name(s);
            if s.pointer("/metadata/labels") != want_meta.get("labels")
                && !writes.iter().any(|w| matches!(w, Write::Update { name, .. } | Write::Delete { name } if name == n))
            {
                writes.push(Write::Update {
                    name: n.to_string(),
                    ports: slice_ports(s),
                    endpoints: slice_endpoints(s),
                });
            }
        }
        for w in writes {
            let result = match w {
                Write::Delete { name } => {
                    let r = api.delete(&name, None).await.map(|_| ());
                    if matches!(&r, Ok(())) || r.as_ref().is_err_and(|e| e.code() == Some(404)) {
                        self.tracker.deleted(key, &name);
                    }
                    r
                }
                Write::Update { name, ports, endpoints } => {
                    let Some(cur) = existing.iter().find(|s| runtime::name(s) == name) else { continue };
                    let mut slice = (**cur).clone();
                    slice["metadata"] = self.metadata(&svc, trigger.as_deref(), cur.get("metadata"));
                    slice["ports"] = json!(ports);
                    slice["endpoints"] = json!(endpoints);
                    api.replace(&name, &slice).await.map(|s| self.tracker.wrote(key, &s))
                }
                Write::Create { address_type, ports, endpoints } => {
                    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                        "metadata": self.metadata(&svc, trigger.as_deref(), None),
                        "addressType": address_type, "ports": ports, "endpoints": endpoints});
                    api.create(&slice).await.map(|s| self.tracker.wrote(key, &s))
                }
            };
            match result {
                Ok(()) => {}
                Err(e) if e.code() == Some(404) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Action::Done)
    }
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let services = ctx.informer("", "v1", "services");
    let pods = ctx.informer("", "v1", "pods");
    let slices = ctx.informer("discovery.k8s.io", "v1", "endpointslices");
    let svc_store = services.store().clone();
    let workers = ctx.options.concurrent_service_endpoint_syncs;
    let this = Arc::new(Slices {
        ctx: ctx.clone(),
        services: services.store().clone(),
        pods: pods.store().clone(),
        slices: slices.store().clone(),
        triggers: TriggerTimes::default(),
        tracker: Tracker::default(),
    });
    Controller::new(runtime::controller::Config { workers, ..Default::default() })
        .watches(&services, |n| vec![n.key()])
        .watches_batched(&pods, move |n| services_of_pod(&svc_store, n))
        .watches(&slices, |n| {
            let s = n.object();
            let managed = s.pointer("/metadata/labels/endpointslice.kubernetes.io~1managed-by").and_then(Value::as_str)
                == Some(CONTROLLER_NAME);
            match s.pointer("/metadata/labels/kubernetes.io~1service-name").and_then(Value::as_str) {
                Some(svc) if managed => {
                    vec![runtime::key(runtime::namespace(s), svc)]
                }
                _ => vec![],
            }
        })
        .run(
            move |key: String| {
                let this = this.clone();
                async move { this.sync(&key).await }
            },
            stopped(stop),
        )
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: &str, ready: bool) -> Arc<Value> {
        Arc::new(
            json!({"metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}),
        )
    }

    fn svc() -> Value {
        json!({"metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid"},
            "spec": {"selector": {"app": "a"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}})
    }

    fn slice(name: &str, eps: Vec<Value>, ports: Value) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": name}, "addressType": "IPv4", "ports": ports, "endpoints": eps}))
    }

    #[test]
    fn endpoint_conditions() {
        let s = svc();
        let e = endpoint(&s, &pod("a", "10.0.0.1", true), "10.0.0.1");
        assert_eq!(e["conditions"], json!({"ready": true, "serving": true, "terminating": false}));
        let mut t = (*pod("b", "10.0.0.2", true)).clone();
        t["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let e = endpoint(&s, &t, "10.0.0.2");
        assert_eq!(e["conditions"], json!({"ready": false, "serving": true, "terminating": true}));
        assert_eq!(e["targetRef"]["name"], "b");
    }

    #[test]
    fn plan_fills_in_place_and_splits_at_the_limit() {
        let s = svc();
        let pods: Vec<_> = (0..5).map(|i| pod(&format!("p{i}"), &format!("10.0.0.{i}"), true)).collect();
        let d = desired(&s, &pods);
        assert_eq!(d.len(), 1);
        // Nothing yet: slices of at most 2.
        let w = plan(&[], &d, 2, "IPv4");
        assert_eq!(w.iter().filter(|w| matches!(w, Write::Create { .. })).count(), 3);
        // An existing slice with p0 and a gone pod keeps p0, drops the other, takes one more; the rest go to new
        // slices.
        let ports = d.values().next().unwrap().1.clone();
        let gone = endpoint(&s, &pod("gone", "10.0.0.9", true), "10.0.0.9");
        let p0 = endpoint(&s, &pods[0], "10.0.0.0");
        let existing = vec![slice("web-abc", vec![p0.clone(), gone], json!(ports))];
        let w = plan(&existing, &d, 2, "IPv4");
        match &w[0] {
            Write::Update { name, endpoints, .. } => {
                assert_eq!(name, "web-abc");
                assert_eq!(endpoints.len(), 2);
                assert_eq!(endpoints[0], p0);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(w.iter().filter(|w| matches!(w, Write::Create { .. })).count(), 2);
        // Up to date: nothing to write.
        let all: Vec<Value> = d.values().next().unwrap().2.clone();
        let existing = vec![slice("web-abc", all, json!(ports))];
        assert!(plan(&existing, &d, 100, "IPv4").is_empty());
    }

    #[test]
    fn tracker_waits_for_the_cache_to_see_own_writes() {
        let t = Tracker::default();
        let written = json!({"metadata": {"name": "web-a", "resourceVersion": "7"}});
        t.wrote("ns/web", &written);
        assert!(t.stale("ns/web", &[]));
        let old = Arc::new(json!({"metadata": {"name": "web-a", "resourceVersion": "5"}}));
        assert!(t.stale("ns/web", std::slice::from_ref(&old)));
        t.deleted("ns/web", "web-b");
        let b = Arc::new(json!({"metadata": {"name": "web-b", "resourceVersion": "3"}}));
        assert!(t.stale("ns/web", &[Arc::new(written.clone()), b]));
        assert!(!t.stale("ns/web", &[Arc::new(written)]));
        assert!(!t.stale("ns/other", &[]));
    }

    #[test]
    fn placeholder_when_no_endpoints() {
        let d = desired(&svc(), &[]);
        assert_eq!(
            plan(&[], &d, 100, "IPv4"),
            vec![Write::Create { address_type: "IPv4".into(), ports: vec![], endpoints: vec![] }]
        );
        let placeholder = slice("web-p", vec![], json!([]));
        assert!(plan(std::slice::from_ref(&placeholder), &d, 100, "IPv4").is_empty());
        // Once there are endpoints, the placeholder goes.
        let d = desired(&svc(), &[pod("a", "10.0.0.1", false)]);
        let w = plan(&[placeholder], &d, 100, "IPv4");
        assert!(w.contains(&Write::Delete { name: "web-p".into() }));
    }
}
