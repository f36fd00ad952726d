//! `endpoint`: the `Endpoints` object of every Service with a selector, as upstream's `pkg/controller/endpoint`.
//!
//! For each selected pod with an IP of the service's family (not terminal; not terminating unless
//! `publishNotReadyAddresses`): one address (`ip`, `nodeName`, `targetRef` to the pod, `hostname` when the pod's
//! subdomain is the service) per service port whose `targetPort` resolves on the pod (a number, or a container
//! port name with the same protocol); ready pods (condition `Ready` True, or any pod with
//! `publishNotReadyAddresses`) go to `addresses`, the others to `notReadyAddresses`; a headless service without
//! ports gets the addresses alone. Subsets are repacked as upstream's `RepackSubsets` (addresses grouped by the
//! set of ports they serve). The Endpoints carries the service's labels (plus `service.kubernetes.io/headless`
//! for headless services) and the `endpoints.kubernetes.io/last-change-trigger-time` annotation (the earliest
//! change, among the service's creation and the pods' Ready transitions, not yet reflected). It is written only
//! when it differs, and deleted with its service. Services without a selector (and ExternalName services) are
//! left alone: their Endpoints are the user's; `default/kubernetes` belongs to the apiserver.
//!
//! As upstream, a sync is queued by a service change, a change of a pod the service selects, or the deletion of
//! an Endpoints object (never by a user's create or update of one, so Endpoints written by hand, with or without
//! a service, stay as written). A sync whose service is gone deletes the Endpoints of that name. Once, at start,
//! every existing Endpoints (but leader-election records, annotated `control-plane.alpha.kubernetes.io/leader`) is
//! synced, so the Endpoints of services deleted while the controller was down go (upstream's
//! `checkLeftoverEndpoints`).
//!
//! Deliberate gaps: no truncation at 1000 addresses (`endpoints.kubernetes.io/over-capacity`); no
//! `FailedToUpdateEndpoint` events; dual-stack services use their first IP family only.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use runtime::{Action, Controller, Notification, Store};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::{BoxError, Context, stopped};

pub const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
pub const HEADLESS: &str = "service.kubernetes.io/headless";

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

/// The service's selector (None: no selector, or an empty one).
pub fn selector(svc: &Value) -> Option<&Map<String, Value>> {
    svc.pointer("/spec/selector").and_then(Value::as_object).filter(|m| !m.is_empty())
}

/// Whether every selector label is on the object.
pub fn matches(sel: &Map<String, Value>, obj: &Value) -> bool {
    let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
    sel.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The pod's `Ready` condition is True.
pub fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

pub fn terminating(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_some()
}

/// Upstream's `ShouldPodBeInEndpoints`: it has an IP, is not terminal (for its restart policy) and, unless
/// `include_terminating`, is not being deleted.
pub fn should_be_in_endpoints(pod: &Value, include_terminating: bool) -> bool {
    if s(pod, "/status/podIP").is_empty() && pod.pointer("/status/podIPs/0/ip").is_none() {
        return false;
    }
    if !include_terminating && terminating(pod) {
        return false;
    }
    let phase = s(pod, "/status/phase");
    match s(pod, "/spec/restartPolicy") {
        "Never" => phase != "Failed" && phase != "Succeeded",
        "OnFailure" => phase != "Succeeded",
        _ => true,
    }
}

/// Whether the service is IPv6 (its first IP family).
fn ipv6_service(svc: &Value) -> bool {
    match svc.pointer("/spec/ipFamilies/0").and_then(Value::as_str) {
        Some(f) => f == "IPv6",
        None => s(svc, "/spec/clusterIP").contains(':'),
    }
}

/// The pod IP of the service's family.
pub fn pod_ip(pod: &Value, ipv6: bool) -> Option<String> {
    let mut ips: Vec<&str> = pod
        .pointer("/status/podIPs")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|i| i.get("ip").and_then(Value::as_str)).collect())
        .unwrap_or_default();
    ips.insert(0, s(pod, "/status/podIP"));
    ips.into_iter().find(|ip| !ip.is_empty() && ip.contains(':') == ipv6).map(str::to_string)
}

/// Upstream's `podutil.FindPort`: the pod port a service port's targetPort names (a number as is; a name as the
/// container port of that name and protocol).
pub fn find_port(pod: &Value, svc_port: &Value) -> Option<i64> {
    let protocol = svc_port.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
    match svc_port.get("targetPort") {
        Some(Value::String(name)) => {
            let containers = pod.pointer("/spec/containers").and_then(Value::as_array)?;
            containers
                .iter()
                .filter_map(|c| c.get("ports").and_then(Value::as_array))
                .flatten()
                .find(|p| {
                    p.get("name").and_then(Value::as_str) == Some(name)
                        && p.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == protocol
                })
                .and_then(|p| p.get("containerPort").and_then(Value::as_i64))
        }
        Some(Value::Number(n)) => n.as_i64(),
        _ => svc_port.get("port").and_then(Value::as_i64),
    }
}

/// The endpoint port of a service port resolved to `port`.
pub fn endpoint_port(svc_port: &Value, port: i64) -> Value {
    let mut p = json!({"port": port, "protocol": svc_port.get("protocol").and_then(Value::as_str).unwrap_or("TCP")});
    if let Some(name) = svc_port.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        p["name"] = json!(name);
    }
    if let Some(ap) = svc_port.get("appProtocol") {
        p["appProtocol"] = ap.clone();
    }
    p
}

pub fn target_ref(pod: &Value) -> Value {
    json!({"kind": "Pod", "namespace": runtime::namespace(pod), "name": runtime::name(pod), "uid": runtime::uid(pod)})
}

/// The hostname a pod has under the service (its `spec.hostname` when its subdomain is the service).
pub fn hostname(pod: &Value, svc: &Value) -> Option<String> {
    let h = s(pod, "/spec/hostname");
    (!h.is_empty()
        && s(pod, "/spec/subdomain") == runtime::name(svc)
        && runtime::namespace(pod) == runtime::namespace(svc))
    .then(|| h.to_string())
}

pub fn headless(svc: &Value) -> bool {
    s(svc, "/spec/clusterIP") == "None"
}

fn port_key(p: &Value) -> PortKey {
    (
        p.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
        p.get("port").and_then(Value::as_i64).unwrap_or_default(),
        p.get("protocol").and_then(Value::as_str).unwrap_or_default().to_string(),
    )
}

/// A port's identity: name, number, protocol.
type PortKey = (String, i64, String);
/// One address with whether it is ready and the ports it serves.
type Address = (Value, bool, BTreeMap<PortKey, Value>);

/// The subsets of the selected pods, repacked (addresses grouped by the ports they serve, sorted).
pub fn subsets(svc: &Value, pods: &[Arc<Value>]) -> Vec<Value> {
    let publish = svc.pointer("/spec/publishNotReadyAddresses").and_then(Value::as_bool).unwrap_or(false);
    let ipv6 = ipv6_service(svc);
    let svc_ports = svc.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
    // address (ip, pod uid) -> (address, ready, ports)
    let mut by_addr: BTreeMap<(String, String), Address> = BTreeMap::new();
    for pod in pods {
        if !should_be_in_endpoints(pod, publish) {
            continue;
        }
        let Some(ip) = pod_ip(pod, ipv6) else { continue };
        let mut addr = json!({"ip": ip, "targetRef": target_ref(pod)});
        if let Some(node) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            addr["nodeName"] = json!(node);
        }
        if let Some(h) = hostname(pod, svc) {
            addr["hostname"] = json!(h);
        }
        let ready = publish || pod_ready(pod);
        let mut ports = BTreeMap::new();
        if svc_ports.is_empty() {
            if !headless(svc) {
                continue;
            }
        } else {
            for sp in &svc_ports {
                if let Some(port) = find_port(pod, sp) {
                    let ep = endpoint_port(sp, port);
                    ports.insert(port_key(&ep), ep);
                }
            }
            if ports.is_empty() {
                continue;
            }
        }
        by_addr.insert((ip, runtime::uid(pod).to_string()), (addr, ready, ports));
    }
    // port set -> (ready addresses, not-ready addresses)
    type Group = (Vec<Value>, Vec<Value>);
    let mut groups: BTreeMap<Vec<PortKey>, (Vec<Value>, Group)> = BTreeMap::new();
    for (_, (addr, ready, ports)) in by_addr {
        let key: Vec<_> = ports.keys().cloned().collect();
        let entry = groups.entry(key).or_insert_with(|| (ports.into_values().collect(), (Vec::new(), Vec::new())));
        if ready { entry.1.0.push(addr) } else { entry.1.1.push(addr) }
    }
    groups
        .into_values()
        .map(|(ports, (ready, not_ready))| {
            let mut subset = Map::new();
            if !ready.is_empty() {
                subset.insert("addresses".into(), json!(ready));
            }
            if !not_ready.is_empty() {
                subset.insert("notReadyAddresses".into(), json!(not_ready));
            }
            if !ports.is_empty() {
                subset.insert("ports".into(), json!(ports));
            }
            Value::Object(subset)
        })
        .collect()
}

/// When a pod last changed in a way endpoints reflect (upstream's `getPodTriggerTime`): its Ready transition.
fn pod_trigger_time(pod: &Value) -> Option<jiff::Timestamp> {
    let conds = pod.pointer("/status/conditions").and_then(Value::as_array)?;
    let ready = conds.iter().find(|c| c["type"] == "Ready")?;
    ready.get("lastTransitionTime").and_then(Value::as_str)?.parse().ok()
}

/// Upstream's `TriggerTimeTracker`: per service, the trigger times already reflected; the annotation is the
/// earliest trigger time that changed since.
#[derive(Default)]
pub struct TriggerTimes {
    state: Mutex<HashMap<String, Seen>>,
}

/// The service creation time and pods' trigger times last reflected.
type Seen = (Option<jiff::Timestamp>, HashMap<String, jiff::Timestamp>);

impl TriggerTimes {
    pub fn compute(&self, svc: &Value, pods: &[Arc<Value>]) -> Option<jiff::Timestamp> {
        let key = runtime::object_key(svc);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (svc_seen, pods_seen) = state.entry(key).or_default();
        let mut min: Option<jiff::Timestamp> = None;
        let mut consider = |t: jiff::Timestamp| min = Some(min.map_or(t, |m| m.min(t)));
        let created: Option<jiff::Timestamp> = s(svc, "/metadata/creationTimestamp").parse().ok();
        if *svc_seen != created {
            if let Some(t) = created {
                consider(t);
            }
            *svc_seen = created;
        }
        let mut now_seen = HashMap::new();
        for pod in pods {
            if let Some(t) = pod_trigger_time(pod) {
                if pods_seen.get(runtime::name(pod)) != Some(&t) {
                    consider(t);
                }
                now_seen.insert(runtime::name(pod).to_string(), t);
            }
        }
        *pods_seen = now_seen;
        min
    }

    pub fn forget(&self, key: &str) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// The services of the pod's namespace selecting the pod (before or after the change).
pub fn services_of_pod(services: &Store, n: &Notification) -> Vec<String> {
    let pod = n.object();
    let ns = runtime::namespace(pod);
    services
        .list_by(|svc| {
            runtime::namespace(svc) == ns
                && selector(svc).is_some_and(|sel| matches(sel, pod) || n.old().is_some_and(|o| matches(sel, o)))
        })
        .iter()
        .map(|svc| runtime::object_key(svc))
        .collect()
}

/// The annotation of leader-election records kept in Endpoints (client-go's `LeaderElectionRecordAnnotationKey`).
pub const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// The keys the start-up sweep queues (upstream's `checkLeftoverEndpoints`): every Endpoints but leader-election
/// records, which have no service.
pub fn leftover_keys(endpoints: &[Arc<Value>]) -> Vec<String> {
    endpoints
        .iter()
        .filter(|ep| ep.pointer("/metadata/annotations").and_then(|a| a.get(LEADER_ANNOTATION)).is_none())
        .map(|ep| runtime::object_key(ep))
        .collect()
}

/// The keys a change of an Endpoints object queues: its own, only when it was deleted (upstream watches nothing
/// else of Endpoints).
pub fn keys_for_endpoints(n: &Notification) -> Vec<String> {
    match n {
        Notification::Deleted(_) => vec![n.key()],
        _ => Vec::new(),
    }
}

fn owned_by_apiserver(ns: &str, name: &str) -> bool {
    ns == "default" && name == "kubernetes"
}

fn normalized_subsets(ep: &Value) -> Value {
    match ep.get("subsets") {
        Some(Value::Array(a)) if !a.is_empty() => Value::Array(a.clone()),
        _ => json!([]),
    }
}

/// The labels an Endpoints (or EndpointSlice) gets from its service.
pub fn service_labels(svc: &Value) -> Map<String, Value> {
    let mut labels = svc.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
    if headless(svc) {
        labels.insert(HEADLESS.into(), json!(""));
    } else {
        labels.remove(HEADLESS);
    }
    labels
}

struct Endpoints {
    ctx: Arc<Context>,
    services: Store,
    pods: Store,
    endpoints: Store,
    triggers: TriggerTimes,
}

impl Endpoints {
    async fn sync(&self, key: &str) -> Result<Action, BoxError> {
        let (ns, name) = runtime::split_key(key);
        if owned_by_apiserver(ns, name) {
            return Ok(Action::Done);
        }
        let api = self.ctx.api("", "v1", "endpoints").namespaced(ns);
        let Some(svc) = self.services.get(ns, name) else {
            self.triggers.forget(key);
            return match api.delete(name, None).await {
                Ok(_) => Ok(Action::Done),
                Err(e) if e.code() == Some(404) => Ok(Action::Done),
                Err(e) => Err(e.into()),
            };
        };
        if s(&svc, "/spec/type") == "ExternalName" {
            return Ok(Action::Done);
        }
        let Some(sel) = selector(&svc) else { return Ok(Action::Done) };
        let pods = self.pods.list_by(|p| runtime::namespace(p) == ns && matches(sel, p));
        let subsets = subsets(&svc, &pods);
        let trigger = self.triggers.compute(&svc, &pods);
        let current = self.endpoints.get(ns, name);
        let labels = service_labels(&svc);
        if let Some(cur) = &current
            && normalized_subsets(cur) == json!(subsets)
            && cur.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default() == labels
        {
            return Ok(Action::Done);
        }
        let mut ep = match &current {
            Some(c) => (**c).clone(),
            None => json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns}}),
        };
        ep["metadata"]["labels"] = Value::Object(labels);
        let mut annotations =
            ep.pointer("/metadata/annotations").and_then(Value::as_object).cloned().unwrap_or_default();
        match trigger {
            Some(t) => annotations.insert(TRIGGER_TIME.into(), json!(t.to_string())),
            None => annotations.remove(TRIGGER_TIME),
        };
        ep["metadata"]["annotations"] = Value::Object(annotations);
        ep["subsets"] = json!(subsets);
        let result = match current {
            Some(_) => api.replace(name, &ep).await,
            None => api.create(&ep).await,
        };
        match result {
            Ok(_) => Ok(Action::Done),
            // The namespace is going away; nothing to keep up to date.
            Err(e) if e.code() == Some(403) && current_is_none_or_terminating(&self.ctx, ns).await => Ok(Action::Done),
            Err(e) => Err(e.into()),
        }
    }
}

async fn current_is_none_or_terminating(ctx: &Context, ns: &str) -> bool {
    match ctx.api("", "v1", "namespaces").get(ns).await {
        Ok(n) => n.pointer("/metadata/deletionTimestamp").is_some(),
        Err(e) => e.code() == Some(404),
    }
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let services = ctx.informer("", "v1", "services");
    let pods = ctx.informer("", "v1", "pods");
    let endpoints = ctx.informer("", "v1", "endpoints");
    let svc_store = services.store().clone();
    let workers = ctx.options.concurrent_endpoint_syncs;
    let this = Arc::new(Endpoints {
        ctx: ctx.clone(),
        services: services.store().clone(),
        pods: pods.store().clone(),
        endpoints: endpoints.store().clone(),
        triggers: TriggerTimes::default(),
    });
    let controller = Controller::new(runtime::controller::Config { workers, ..Default::default() })
        .watches(&services, |n| vec![n.key()])
        .watches_batched(&pods, move |n| services_of_pod(&svc_store, n))
        .watches(&endpoints, keys_for_endpoints);
    let queue = controller.queue();
    let leftover = endpoints.clone();
    tokio::spawn(async move {
        if leftover.wait_synced().await {
            for key in leftover_keys(&leftover.store().list()) {
                queue.add(key);
            }
        }
    });
    controller
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
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
        )
    }

    fn svc(extra: Value) -> Value {
        let mut s = json!({"metadata": {"name": "web", "namespace": "ns", "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"selector": {"app": "a"}, "clusterIP": "10.0.0.1",
                "ports": [{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}]}});
        if let (Some(spec), Some(extra)) = (s["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        s
    }

    #[test]
    fn ports_resolve_by_name_or_number() {
        let p = pod("p", "10.1.0.1", true);
        assert_eq!(find_port(&p, &json!({"port": 80, "targetPort": "http"})), Some(8080));
        assert_eq!(find_port(&p, &json!({"port": 80, "targetPort": "http", "protocol": "UDP"})), None);
        assert_eq!(find_port(&p, &json!({"port": 80, "targetPort": 9090})), Some(9090));
        assert_eq!(find_port(&p, &json!({"port": 80, "targetPort": "nope"})), None);
        assert_eq!(find_port(&p, &json!({"port": 80})), Some(80));
    }

    #[test]
    fn ready_and_not_ready_addresses_repacked() {
        let pods = vec![pod("b", "10.1.0.2", false), pod("a", "10.1.0.1", true), pod("c", "10.1.0.3", true)];
        let subsets = subsets(&svc(json!({})), &pods);
        assert_eq!(subsets.len(), 1);
        let ips = |k: &str| subsets[0][k].as_array().unwrap().iter().map(|a| a["ip"].clone()).collect::<Vec<_>>();
        assert_eq!(ips("addresses"), vec![json!("10.1.0.1"), json!("10.1.0.3")]);
        assert_eq!(ips("notReadyAddresses"), vec![json!("10.1.0.2")]);
        assert_eq!(subsets[0]["ports"], json!([{"name": "web", "port": 8080, "protocol": "TCP"}]));
        assert_eq!(subsets[0]["addresses"][0]["targetRef"]["name"], "a");
        assert_eq!(subsets[0]["addresses"][0]["nodeName"], "n1");
        // publishNotReadyAddresses: every pod is an address.
        let all = super::subsets(&svc(json!({"publishNotReadyAddresses": true})), &pods);
        assert_eq!(all[0]["addresses"].as_array().unwrap().len(), 3);
        assert!(all[0].get("notReadyAddresses").is_none());
    }

    #[test]
    fn pods_left_out() {
        let mut no_ip = (*pod("x", "", true)).clone();
        assert!(!should_be_in_endpoints(&no_ip, false));
        no_ip["status"]["podIP"] = json!("10.1.0.9");
        no_ip["spec"]["restartPolicy"] = json!("Never");
        no_ip["status"]["phase"] = json!("Succeeded");
        assert!(!should_be_in_endpoints(&no_ip, false));
        let mut deleting = (*pod("y", "10.1.0.8", true)).clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(!should_be_in_endpoints(&deleting, false));
        assert!(should_be_in_endpoints(&deleting, true));
    }

    #[test]
    fn only_deleted_endpoints_queue_and_the_start_up_sweep_skips_leader_records() {
        let ep = Arc::new(json!({"metadata": {"name": "mine", "namespace": "ns"}}));
        assert!(keys_for_endpoints(&Notification::Added(ep.clone())).is_empty());
        let updated = Notification::Updated { old: ep.clone(), new: ep.clone() };
        assert!(keys_for_endpoints(&updated).is_empty());
        assert!(keys_for_endpoints(&Notification::Resync(ep.clone())).is_empty());
        assert_eq!(keys_for_endpoints(&Notification::Deleted(ep.clone())), vec!["ns/mine".to_string()]);
        let leader = Arc::new(json!({"metadata": {"name": "lock", "namespace": "kube-system",
            "annotations": {LEADER_ANNOTATION: "{}"}}}));
        assert_eq!(leftover_keys(&[ep, leader]), vec!["ns/mine".to_string()]);
    }

    #[test]
    fn trigger_time_is_the_earliest_unreflected_change() {
        let t = TriggerTimes::default();
        let s = svc(json!({}));
        let pods = vec![pod("a", "10.1.0.1", true)];
        assert_eq!(t.compute(&s, &pods).map(|t| t.to_string()), Some("2025-01-01T00:00:00Z".into()));
        assert_eq!(t.compute(&s, &pods), None);
        let mut changed = (*pods[0]).clone();
        changed["status"]["conditions"][0]["lastTransitionTime"] = json!("2026-02-02T00:00:00Z");
        assert_eq!(t.compute(&s, &[Arc::new(changed)]).map(|t| t.to_string()), Some("2026-02-02T00:00:00Z".into()));
    }
}
