//! Accumulates EndpointSlice changes between syncs and applies them to the [`EndpointsMap`] (upstream's
//! `pkg/proxy/endpointschangetracker.go` with its `endpointslicecache.go`): slices are merged per Service, so a
//! Service whose named target port resolves to different numbers on different pods (one slice per number) gets
//! every endpoint; the result tells a sync which Services changed, which UDP endpoints went away and how long
//! each change took to reach the data plane.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::Value;

use crate::endpoint::Endpoint;
use crate::serviceport::{IpFamily, Protocol, ServiceName, ServicePortName};

/// Endpoints of every Service port, sorted by `ip:port`.
pub type EndpointsMap = BTreeMap<ServicePortName, Vec<Arc<Endpoint>>>;

/// The label naming a slice's Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The annotation carrying the time of the change that triggered a slice update.
pub const ANNOTATION_LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// What one slice contributes: its ports' endpoints, by port name (sorted; a slice has few ports, and a `BTreeMap`'s
/// smallest node holds eleven).
/// The endpoints are shared with the merged [`EndpointsMap`], not copied into it.
type SliceData = Vec<(ServicePortName, Vec<Arc<Endpoint>>)>;

/// The applied slices of one Service by name (a Service has few slices: a `Vec`, not a `BTreeMap` node per Service).
#[derive(Debug, Default)]
struct Slices(Vec<(String, SliceData)>);

impl Slices {
    fn get(&self, name: &str) -> Option<&SliceData> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, d)| d)
    }

    fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn insert(&mut self, name: String, data: SliceData) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, d)) => *d = data,
            None => {
                self.0.reserve_exact(1);
                self.0.push((name, data));
            }
        }
    }

    fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| n != name);
    }

    fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(n, _)| n)
    }

    fn values(&self) -> impl Iterator<Item = &SliceData> {
        self.0.iter().map(|(_, d)| d)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, Default)]
struct Tracker {
    applied: Slices,
    /// Slice name -> its new data (None: deleted).
    pending: BTreeMap<String, Option<SliceData>>,
}

#[derive(Debug, Default)]
struct Inner {
    services: BTreeMap<ServiceName, Tracker>,
    trigger_times: BTreeMap<ServiceName, Vec<SystemTime>>,
}

/// A UDP endpoint that stopped receiving traffic for a Service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceEndpoint {
    pub endpoint: Endpoint,
    pub service_port: ServicePortName,
}

impl PartialOrd for Endpoint {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Endpoint {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.ip, self.port, self.is_local, self.ready, self.serving, self.terminating).cmp(&(
            other.ip,
            other.port,
            other.is_local,
            other.ready,
            other.serving,
            other.terminating,
        ))
    }
}

/// What applying the pending changes did (upstream's `UpdateEndpointsMapResult`).
#[derive(Debug, Default, Clone)]
pub struct UpdateEndpointsMapResult {
    pub updated_services: BTreeSet<ServiceName>,
    /// UDP endpoints that were serving and no longer are: their conntrack entries must go.
    pub deleted_udp_endpoints: Vec<ServiceEndpoint>,
    /// UDP Service ports that went from no serving endpoint to some: entries that black-holed them must go.
    pub newly_active_udp_services: Vec<ServicePortName>,
    /// For each changed Service, when the changes that led here happened (for the network programming latency).
    pub last_change_trigger_times: BTreeMap<ServiceName, Vec<SystemTime>>,
}

/// Pending EndpointSlice changes for one IP family and node.
#[derive(Debug)]
pub struct EndpointsChangeTracker {
    hostname: String,
    family: IpFamily,
    inner: Mutex<Inner>,
    /// Trigger times before this are from changes made before kube-proxy started: not programming latency.
    start: SystemTime,
}

fn parse_slice(slice: &Value, hostname: &str, service: &ServiceName) -> SliceData {
    let mut data: BTreeMap<ServicePortName, Vec<Arc<Endpoint>>> = BTreeMap::new();
    for port in runtime::array(slice, "/ports") {
        let Some(number) = port.get("port").and_then(Value::as_u64) else { continue };
        let protocol = Protocol::parse(port.get("protocol").and_then(Value::as_str).unwrap_or("TCP"));
        let Some(protocol) = protocol else { continue };
        let name = ServicePortName {
            service: service.clone(),
            port: port.get("name").and_then(Value::as_str).unwrap_or_default().into(),
            protocol,
        };
        let mut set: BTreeMap<String, Endpoint> = BTreeMap::new();
        for ep in runtime::array(slice, "/endpoints") {
            let Some(ip) = runtime::array(ep, "/addresses").first().and_then(Value::as_str) else { continue };
            let Ok(ip) = ip.parse::<IpAddr>() else { continue };
            let cond = |c: &str| ep.pointer(&format!("/conditions/{c}")).and_then(Value::as_bool);
            let is_local = ep.get("nodeName").and_then(Value::as_str).is_some_and(|n| n == hostname);
            let endpoint = Endpoint {
                ip,
                port: number as u16,
                is_local,
                ready: cond("ready").unwrap_or(true),
                serving: cond("serving").unwrap_or(true),
                terminating: cond("terminating").unwrap_or(false),
                zone_hints: runtime::array(ep, "/hints/forZones")
                    .iter()
                    .filter_map(|z| z.get("name").and_then(Value::as_str).map(str::to_string))
                    .collect(),
            };
            let key = endpoint.to_string();
            // Overlapping endpoints are deduplicated, a local one winning.
            if !set.contains_key(&key) || is_local {
                set.insert(key, endpoint);
            }
        }
        data.entry(name).or_default().extend(set.into_values().map(Arc::new));
    }
    data.into_iter().collect()
}

/// The endpoints of one Service from its slices, each port's list sorted by `ip:port` and deduplicated.
fn merge(slices: &Slices) -> EndpointsMap {
    let mut by_port: BTreeMap<ServicePortName, BTreeMap<String, Arc<Endpoint>>> = BTreeMap::new();
    for data in slices.values() {
        for (name, eps) in data {
            let set = by_port.entry(name.clone()).or_default();
            for ep in eps {
                let key = ep.to_string();
                if !set.contains_key(&key) || ep.is_local {
                    set.insert(key, ep.clone());
                }
            }
        }
    }
    by_port
        .into_iter()
        .map(|(name, set)| {
            let mut eps: Vec<Arc<Endpoint>> = set.into_values().collect();
            eps.sort_by_key(|e| e.to_string());
            (name, eps)
        })
        .collect()
}

impl EndpointsChangeTracker {
    pub fn new(hostname: &str, family: IpFamily) -> Self {
        EndpointsChangeTracker {
            hostname: hostname.to_string(),
            family,
            inner: Mutex::default(),
            start: SystemTime::now(),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an EndpointSlice add or update (or delete, with `remove`). True when the Service has changes
    /// pending afterwards (so a sync is due).
    pub fn endpoint_slice_update(&self, slice: &Value, remove: bool) -> bool {
        let Some(service) = self.service_of(slice) else { return false };
        let slice_name = runtime::name(slice).to_string();
        let data = (!remove).then(|| parse_slice(slice, &self.hostname, &service));
        let mut inner = self.inner();
        let tracker = inner.services.entry(service.clone()).or_default();
        let unchanged = tracker.applied.get(&slice_name) == data.as_ref();
        if unchanged {
            tracker.pending.remove(&slice_name);
        } else {
            tracker.pending.insert(slice_name, data);
        }
        let changed = !tracker.pending.is_empty();
        if changed && !unchanged {
            let trigger = slice
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(ANNOTATION_LAST_CHANGE_TRIGGER_TIME))
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map(SystemTime::from);
            // As upstream: deletions carry no trigger time, and changes from before this tracker started (seen in
            // the initial list) are not programming latency.
            if let Some(t) = trigger.filter(|t| !remove && *t > self.start) {
                inner.trigger_times.entry(service).or_default().push(t);
            }
        }
        changed
    }

    /// The Service of a slice of this tracker's family (None: another family, or no service-name label).
    fn service_of(&self, slice: &Value) -> Option<ServiceName> {
        if slice.get("addressType").and_then(Value::as_str) != Some(self.family.address_type()) {
            return None;
        }
        let Some(svc) =
            slice.pointer("/metadata/labels").and_then(|l| l.get(LABEL_SERVICE_NAME)).and_then(Value::as_str)
        else {
            tracing::debug!(slice = %runtime::object_key(slice), "EndpointSlice without a service-name label");
            return None;
        };
        Some(ServiceName::new(runtime::namespace(slice), svc))
    }

    /// A full list of the EndpointSlices (the watch's first list, or a relist after it broke): each is recorded
    /// as an update, and every slice this tracker knows that the list lacks as deleted (what an informer's
    /// store would have told apart; the tracker's own state stands in for it). True when a sync is due.
    pub fn endpoint_slices_listed(&self, slices: &[Value]) -> bool {
        let listed: BTreeSet<(ServiceName, &str)> =
            slices.iter().filter_map(|s| Some((self.service_of(s)?, runtime::name(s)))).collect();
        {
            let mut inner = self.inner();
            for (service, tracker) in inner.services.iter_mut() {
                let known: Vec<String> = (tracker.applied.keys())
                    .chain(tracker.pending.iter().filter(|(_, d)| d.is_some()).map(|(k, _)| k))
                    .filter(|name| !listed.contains(&(service.clone(), name.as_str())))
                    .cloned()
                    .collect();
                for name in known {
                    if tracker.applied.contains_key(&name) {
                        tracker.pending.insert(name, None);
                    } else {
                        tracker.pending.remove(&name);
                    }
                }
            }
        }
        for s in slices {
            self.endpoint_slice_update(s, false);
        }
        self.pending() > 0
    }

    /// Number of Services with unapplied changes.
    pub fn pending(&self) -> usize {
        self.inner().services.values().filter(|t| !t.pending.is_empty()).count()
    }

    /// Applies the pending changes to `map` and clears them (upstream's `EndpointsMap.Update`).
    pub fn apply(&self, map: &mut EndpointsMap) -> UpdateEndpointsMapResult {
        let mut result = UpdateEndpointsMapResult::default();
        let mut inner = self.inner();
        result.last_change_trigger_times = std::mem::take(&mut inner.trigger_times);
        let mut emptied = Vec::new();
        for (service, tracker) in inner.services.iter_mut() {
            if tracker.pending.is_empty() {
                continue;
            }
            let previous = merge(&tracker.applied);
            for (slice, data) in std::mem::take(&mut tracker.pending) {
                match data {
                    Some(d) => tracker.applied.insert(slice, d),
                    None => tracker.applied.remove(&slice),
                }
            }
            let current = merge(&tracker.applied);
            if tracker.applied.is_empty() {
                emptied.push(service.clone());
            }
            if previous == current {
                continue;
            }
            result.updated_services.insert(service.clone());
            for name in previous.keys() {
                map.remove(name);
            }
            detect_stale_conntrack_entries(&previous, &current, &mut result);
            map.extend(current);
        }
        for s in emptied {
            inner.services.remove(&s);
        }
        result
    }
}

/// Upstream's `detectStaleConntrackEntries`.
fn detect_stale_conntrack_entries(old: &EndpointsMap, new: &EndpointsMap, result: &mut UpdateEndpointsMapResult) {
    for (name, eps) in old {
        if name.protocol != Protocol::Udp {
            continue;
        }
        for ep in eps.iter().filter(|e| e.serving) {
            let kept = new.get(name).is_some_and(|n| n.iter().any(|e| e.addr() == ep.addr() && e.serving));
            if !kept {
                result
                    .deleted_udp_endpoints
                    .push(ServiceEndpoint { endpoint: (**ep).clone(), service_port: name.clone() });
            }
        }
    }
    for (name, eps) in new {
        if name.protocol != Protocol::Udp {
            continue;
        }
        let serving = eps.iter().filter(|e| e.serving).count();
        let old_serving = old.get(name).map(|o| o.iter().filter(|e| e.serving).count()).unwrap_or(0);
        if serving > 0 && old_serving == 0 {
            result.newly_active_udp_services.push(name.clone());
        }
    }
}

/// The number of ready local endpoints of each Service (upstream's `EndpointsMap.LocalReadyEndpoints`), for the
/// health check node ports.
pub fn local_ready_endpoints(map: &EndpointsMap) -> BTreeMap<ServiceName, usize> {
    let mut out: BTreeMap<ServiceName, BTreeSet<IpAddr>> = BTreeMap::new();
    for (name, eps) in map {
        for ep in eps.iter().filter(|e| e.is_local && e.ready) {
            out.entry(name.service.clone()).or_default().insert(ep.ip);
        }
    }
    out.into_iter().map(|(k, v)| (k, v.len())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What the EndpointSlice informer keeps of an object (`server::slim_endpoint_slice`) gives the same endpoints
    /// as the whole object, and keeps the service name and the change's trigger time.
    #[test]
    fn slimmed_slices_give_the_same_endpoints() {
        let full = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-abc", "namespace": "ns", "uid": "u", "resourceVersion": "9", "generation": 3,
                         "labels": {LABEL_SERVICE_NAME: "web", "endpointslice.kubernetes.io/managed-by": "x"},
                         "annotations": {ANNOTATION_LAST_CHANGE_TRIGGER_TIME: "2030-01-01T00:00:00Z", "a": "b"},
                         "ownerReferences": [{"name": "web"}], "managedFields": [{"manager": "m"}]},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.1.0.1"], "conditions": {"ready": true, "serving": true, "terminating": false},
                 "hostname": "web-0", "nodeName": "node-a", "zone": "z1", "hints": {"forZones": [{"name": "z1"}]},
                 "targetRef": {"kind": "Pod", "name": "web-0", "namespace": "ns", "uid": "p"}},
                {"addresses": ["10.1.0.2"], "conditions": {"ready": false, "serving": true, "terminating": true},
                 "nodeName": "node-b"},
                {"addresses": ["10.1.0.3"]}
            ],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}]
        });
        let mut slim = full.clone();
        crate::server::slim_endpoint_slice(&mut slim);
        let service = ServiceName { namespace: "ns".into(), name: "web".into() };
        let parsed = parse_slice(&full, "node-a", &service);
        assert_eq!(parsed.iter().map(|(_, eps)| eps.len()).sum::<usize>(), 3);
        assert_eq!(parse_slice(&slim, "node-a", &service), parsed);
        assert_eq!(slim["metadata"]["labels"], json!({LABEL_SERVICE_NAME: "web"}));
        assert_eq!(
            slim["metadata"]["annotations"],
            json!({ANNOTATION_LAST_CHANGE_TRIGGER_TIME: "2030-01-01T00:00:00Z"})
        );
        assert!(slim["endpoints"][0].get("targetRef").is_none() && slim["metadata"].get("ownerReferences").is_none());
    }

    fn slice(name: &str, svc: &str, port_name: &str, proto: &str, port: u16, eps: Value) -> Value {
        json!({"metadata": {"namespace": "ns", "name": name, "labels": {LABEL_SERVICE_NAME: svc},
                            "annotations": {ANNOTATION_LAST_CHANGE_TRIGGER_TIME: jiff::Timestamp::now().to_string()}},
               "addressType": "IPv4", "endpoints": eps,
               "ports": [{"name": port_name, "port": port, "protocol": proto}]})
    }

    #[test]
    fn merges_slices_and_reports_changes() {
        let t = EndpointsChangeTracker::new("node1", IpFamily::V4);
        std::thread::sleep(std::time::Duration::from_millis(2));
        // A named target port resolved to 8080 on one pod and 9090 on another: two slices, one Service port.
        let s1 = slice("a-1", "a", "http", "TCP", 8080, json!([{"addresses": ["10.1.0.2"], "nodeName": "node1"}]));
        let s2 = slice(
            "a-2",
            "a",
            "http",
            "TCP",
            9090,
            json!([{"addresses": ["10.1.0.3"], "conditions": {"ready": false, "serving": true, "terminating": true}}]),
        );
        assert!(t.endpoint_slice_update(&s1, false));
        assert!(t.endpoint_slice_update(&s2, false));
        let mut map = EndpointsMap::new();
        let r = t.apply(&mut map);
        let eps = &map[&ServicePortName::new("ns", "a", "http", Protocol::Tcp)];
        assert_eq!(eps.iter().map(|e| e.to_string()).collect::<Vec<_>>(), ["10.1.0.2:8080", "10.1.0.3:9090"]);
        assert!(eps[0].is_local && eps[0].ready);
        assert!(!eps[1].is_local && !eps[1].ready && eps[1].serving && eps[1].terminating);
        assert_eq!(r.updated_services.len(), 1);
        assert_eq!(r.last_change_trigger_times.values().next().map(Vec::len), Some(2));
        // A change from before the tracker started is no programming latency.
        let mut old = slice("b-1", "b", "http", "TCP", 80, json!([{"addresses": ["10.1.0.9"]}]));
        old["metadata"]["annotations"][ANNOTATION_LAST_CHANGE_TRIGGER_TIME] = json!("2024-01-01T00:00:00Z");
        assert!(t.endpoint_slice_update(&old, false));
        assert!(t.apply(&mut map).last_change_trigger_times.is_empty());

        // The same slice again is no change; another family is ignored.
        assert!(!t.endpoint_slice_update(&s1, false));
        let mut v6 = s1.clone();
        v6["addressType"] = json!("IPv6");
        assert!(!t.endpoint_slice_update(&v6, false));
        assert_eq!(t.pending(), 0);

        assert!(t.endpoint_slice_update(&s2, true));
        t.apply(&mut map);
        assert_eq!(map.values().next().map(Vec::len), Some(1));
    }

    #[test]
    fn stale_udp_endpoints() {
        let t = EndpointsChangeTracker::new("node1", IpFamily::V4);
        let two =
            slice("d", "dns", "dns", "UDP", 53, json!([{"addresses": ["10.1.0.2"]}, {"addresses": ["10.1.0.3"]}]));
        assert!(t.endpoint_slice_update(&two, false));
        let mut map = EndpointsMap::new();
        let r = t.apply(&mut map);
        assert_eq!(r.newly_active_udp_services.len(), 1);
        assert!(r.deleted_udp_endpoints.is_empty());
        let one = slice("d", "dns", "dns", "UDP", 53, json!([{"addresses": ["10.1.0.2"]}]));
        assert!(t.endpoint_slice_update(&one, false));
        let r = t.apply(&mut map);
        assert_eq!(r.deleted_udp_endpoints.len(), 1);
        assert_eq!(r.deleted_udp_endpoints[0].endpoint.to_string(), "10.1.0.3:53");
        assert!(r.newly_active_udp_services.is_empty());
        assert_eq!(local_ready_endpoints(&map).len(), 0);
    }

    /// A relist stands for what the watch missed: slices it lacks are deleted (applied ones and ones still
    /// pending), the others updated as usual; a relist that changes nothing leaves nothing pending.
    #[test]
    fn a_relist_deletes_the_slices_it_lacks() {
        let t = EndpointsChangeTracker::new("node1", IpFamily::V4);
        let a = slice("a-1", "a", "http", "TCP", 80, json!([{"addresses": ["10.1.0.1"]}]));
        let b = slice("b-1", "b", "http", "TCP", 80, json!([{"addresses": ["10.1.0.2"]}]));
        let c = slice("c-1", "c", "http", "TCP", 80, json!([{"addresses": ["10.1.0.3"]}]));
        assert!(t.endpoint_slices_listed(&[a.clone(), b.clone()]));
        let mut map = EndpointsMap::new();
        assert_eq!(t.apply(&mut map).updated_services.len(), 2);
        assert!(!t.endpoint_slices_listed(&[a.clone(), b.clone()]));
        // c is seen but not applied yet when the watch breaks; the relist has neither b nor c.
        assert!(t.endpoint_slice_update(&c, false));
        assert!(t.endpoint_slices_listed(std::slice::from_ref(&a)));
        let r = t.apply(&mut map);
        let names: Vec<&str> = r.updated_services.iter().map(|s| &*s.name).collect();
        assert_eq!(names, ["b"]);
        assert_eq!(map.keys().map(|k| &*k.service.name).collect::<Vec<_>>(), ["a"]);
        assert_eq!(t.pending(), 0);
        // Slices of another family are not in this tracker's list, and do not delete anything.
        let mut v6 = b.clone();
        v6["addressType"] = json!("IPv6");
        assert!(!t.endpoint_slices_listed(&[a, v6]));
    }
}
