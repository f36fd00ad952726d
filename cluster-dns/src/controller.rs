//! The kubernetes plugin's view of the cluster (CoreDNS's `dnsControl`): watches of Services, EndpointSlices,
//! Namespaces and, for `pods verified`, Pods, each object cut down on arrival to the few fields DNS answers need
//! (CoreDNS's `object.ToService`, `EndpointSliceToEndpoints`, `ToPod` transforms) and indexed by service key
//! (`name.namespace`) and by IP for reverse lookups. Keeping only these slim objects, not the full JSON an informer
//! store holds, is what keeps a large cluster's DNS server small.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, Weak};

use futures_util::StreamExt;
use runtime::transform::{items, retain, retain_in};
use runtime::watcher::{Config as WatchConfig, Event, Watcher};
use serde_json::Value;
use tokio::task::AbortHandle;

/// A service port (or an EndpointSlice port); port -1 stands for "no ports" as in CoreDNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub name: String,
    pub protocol: String,
    pub port: i32,
}

/// The fields of a Service that DNS uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    /// `spec.type == ExternalName`.
    pub external_name: Option<String>,
    /// `clusterIP: None`.
    pub headless: bool,
    pub cluster_ips: Vec<IpAddr>,
    pub ports: Vec<Port>,
}

/// One ready address of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub ip: IpAddr,
    pub hostname: String,
    pub target_ref_name: String,
}

/// The ready endpoints of one EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    pub name: String,
    pub namespace: String,
    /// The owning service's name (`kubernetes.io/service-name`).
    pub service: String,
    pub addresses: Vec<Address>,
    pub ports: Vec<Port>,
}

/// The service key CoreDNS indexes by: `name.namespace`.
pub fn service_key(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}")
}

/// The indexed cluster state. Service keys are shared (`Arc<str>`) between the maps, a slice is indexed by pointer,
/// and every list holds exactly its items: at 10,000 Services with their EndpointSlices this is a few MB, where
/// `String` keys repeated in each map, a `HashMap` per service and `Vec`s grown to four items took 20 MB.
#[derive(Debug, Default)]
pub struct State {
    /// By service key.
    pub services: HashMap<Arc<str>, Arc<Service>>,
    /// By service key: the service's slices.
    pub slices: HashMap<Arc<str>, Vec<Arc<Slice>>>,
    /// `namespace/slice` -> the service key it was indexed under.
    slice_owner: HashMap<Box<str>, Arc<str>>,
    /// Cluster IP -> service keys.
    pub services_by_ip: HashMap<IpAddr, Vec<Arc<str>>>,
    /// Endpoint IP -> the slices holding it.
    pub endpoints_by_ip: HashMap<IpAddr, Vec<Arc<Slice>>>,
    /// Pod IP -> (namespace, name) (only with `pods verified`).
    pub pods_by_ip: HashMap<IpAddr, Vec<(String, String)>>,
    pod_ips: HashMap<String, IpAddr>,
    pub namespaces: HashSet<String>,
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

fn ports(list: &[Value], default_protocol: bool) -> Vec<Port> {
    if list.is_empty() {
        return vec![Port { name: String::new(), protocol: String::new(), port: -1 }];
    }
    list.iter()
        .map(|p| Port {
            name: s(p, "/name").to_string(),
            protocol: match s(p, "/protocol") {
                "" if default_protocol => "TCP".to_string(),
                proto => proto.to_string(),
            },
            port: p.get("port").and_then(Value::as_i64).map(|n| n as i32).unwrap_or(-1),
        })
        .collect()
}

/// CoreDNS's `object.ToService`.
pub fn to_service(v: &Value) -> Service {
    let spec = v.get("spec").cloned().unwrap_or_default();
    let mut ips: Vec<&str> = runtime::array(&spec, "/clusterIPs").iter().filter_map(Value::as_str).collect();
    if ips.is_empty() {
        ips.push(s(&spec, "/clusterIP"));
    }
    let external = s(&spec, "/type") == "ExternalName";
    Service {
        name: runtime::name(v).to_string(),
        namespace: runtime::namespace(v).to_string(),
        external_name: external.then(|| s(&spec, "/externalName").trim_end_matches('.').to_string()),
        headless: !external && ips.first() == Some(&"None"),
        cluster_ips: ips.iter().filter_map(|ip| ip.parse().ok()).collect(),
        ports: ports(runtime::array(&spec, "/ports"), true),
    }
}

/// CoreDNS's `EndpointSliceToEndpoints`: ready endpoints only (a missing `ready` condition counts as ready).
pub fn to_slice(v: &Value) -> Slice {
    let mut addresses = Vec::new();
    for e in runtime::array(v, "/endpoints") {
        if e.pointer("/conditions/ready").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let target = s(e, "/targetRef/name");
        for a in runtime::array(e, "/addresses").iter().filter_map(Value::as_str) {
            if let Ok(ip) = a.parse() {
                addresses.push(Address {
                    ip,
                    hostname: s(e, "/hostname").to_string(),
                    target_ref_name: if target.len() < 64 { target.to_string() } else { String::new() },
                });
            }
        }
    }
    Slice {
        name: runtime::name(v).to_string(),
        namespace: runtime::namespace(v).to_string(),
        service: s(v, "/metadata/labels/kubernetes.io~1service-name").to_string(),
        addresses,
        ports: ports(runtime::array(v, "/ports"), false),
    }
}

/// Adds `item` to the list of `k`, growing the list by exactly one (most lists of an index hold one item).
fn push_to<K: std::hash::Hash + Eq, T>(map: &mut HashMap<K, Vec<T>>, k: K, item: T) {
    let list = map.entry(k).or_default();
    list.reserve_exact(1);
    list.push(item);
}

/// Removes the items of the list of `k` that `is` picks, and the list once empty.
fn remove_from<K: std::hash::Hash + Eq, T>(map: &mut HashMap<K, Vec<T>>, k: &K, is: impl Fn(&T) -> bool) {
    if let Some(list) = map.get_mut(k) {
        list.retain(|x| !is(x));
        if list.is_empty() {
            map.remove(k);
        }
    }
}

impl State {
    /// The key a service is indexed under, shared with the maps that already hold it.
    fn shared_key(&self, key: String) -> Arc<str> {
        let svc = self.services.get_key_value(key.as_str()).map(|(k, _)| k);
        match svc.or_else(|| self.slices.get_key_value(key.as_str()).map(|(k, _)| k)) {
            Some(k) => k.clone(),
            None => key.into(),
        }
    }

    pub fn upsert_service(&mut self, mut svc: Service) {
        let key = self.shared_key(service_key(&svc.name, &svc.namespace));
        svc.cluster_ips.shrink_to_fit();
        svc.ports.shrink_to_fit();
        self.delete_service(&key);
        for ip in &svc.cluster_ips {
            push_to(&mut self.services_by_ip, *ip, key.clone());
        }
        self.services.insert(key, Arc::new(svc));
    }

    pub fn delete_service(&mut self, key: &str) {
        if let Some(old) = self.services.remove(key) {
            for ip in &old.cluster_ips {
                remove_from(&mut self.services_by_ip, ip, |k| &**k == key);
            }
        }
    }

    pub fn upsert_slice(&mut self, mut slice: Slice) {
        self.delete_slice(&slice.namespace, &slice.name);
        let key = self.shared_key(service_key(&slice.service, &slice.namespace));
        slice.addresses.shrink_to_fit();
        slice.ports.shrink_to_fit();
        let slice = Arc::new(slice);
        for a in &slice.addresses {
            push_to(&mut self.endpoints_by_ip, a.ip, slice.clone());
        }
        self.slice_owner.insert(format!("{}/{}", slice.namespace, slice.name).into(), key.clone());
        push_to(&mut self.slices, key, slice);
    }

    pub fn delete_slice(&mut self, namespace: &str, name: &str) {
        let Some(key) = self.slice_owner.remove(format!("{namespace}/{name}").as_str()) else { return };
        let Some(slices) = self.slices.get_mut(&key) else { return };
        let Some(at) = slices.iter().position(|s| &*s.name == name) else { return };
        let old = slices.remove(at);
        if slices.is_empty() {
            self.slices.remove(&key);
        }
        for a in &old.addresses {
            remove_from(&mut self.endpoints_by_ip, &a.ip, |s| Arc::ptr_eq(s, &old));
        }
    }

    /// A pod with its IP (None: terminating or without an IP, so not indexed).
    pub fn upsert_pod(&mut self, namespace: &str, name: &str, ip: Option<IpAddr>) {
        let key = format!("{namespace}/{name}");
        if let Some(old) = self.pod_ips.remove(&key) {
            remove_from(&mut self.pods_by_ip, &old, |(ns, n)| ns == namespace && n == name);
        }
        if let Some(ip) = ip {
            push_to(&mut self.pods_by_ip, ip, (namespace.to_string(), name.to_string()));
            self.pod_ips.insert(key, ip);
        }
    }

    /// The slices of a service key.
    pub fn endpoints(&self, key: &str) -> impl Iterator<Item = &Arc<Slice>> {
        self.slices.get(key).into_iter().flatten()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Services,
    EndpointSlices,
    Namespaces,
    Pods,
}

impl Kind {
    /// Cuts each object, as it arrives, down to what [`to_service`], [`to_slice`] and the pod and namespace
    /// indexes read (CoreDNS's informers transform objects the same way): the first list of a large cluster then
    /// never holds whole objects, only these.
    fn slim(self) -> runtime::watcher::Transform {
        match self {
            Kind::Services => |v| {
                retain(v, &["metadata", "spec"]);
                retain_in(v, "metadata", &["name", "namespace"]);
                retain_in(v, "spec", &["clusterIP", "clusterIPs", "type", "externalName", "ports"]);
                if let Some(spec) = v.get_mut("spec") {
                    for p in items(spec, "ports") {
                        retain(p, &["name", "protocol", "port"]);
                    }
                }
            },
            Kind::EndpointSlices => |v| {
                retain(v, &["metadata", "endpoints", "ports"]);
                retain_in(v, "metadata", &["name", "namespace", "labels"]);
                if let Some(meta) = v.get_mut("metadata") {
                    retain_in(meta, "labels", &["kubernetes.io/service-name"]);
                }
                for e in items(v, "endpoints") {
                    retain(e, &["addresses", "conditions", "hostname", "targetRef"]);
                    retain_in(e, "conditions", &["ready"]);
                    retain_in(e, "targetRef", &["name"]);
                }
                for p in items(v, "ports") {
                    retain(p, &["name", "protocol", "port"]);
                }
            },
            Kind::Namespaces => |v| {
                retain(v, &["metadata"]);
                retain_in(v, "metadata", &["name"]);
            },
            Kind::Pods => |v| {
                retain(v, &["metadata", "status"]);
                retain_in(v, "metadata", &["name", "namespace", "deletionTimestamp"]);
                retain_in(v, "status", &["podIP"]);
            },
        }
    }

    fn api(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Kind::Services => ("", "v1", "services"),
            Kind::EndpointSlices => ("discovery.k8s.io", "v1", "endpointslices"),
            Kind::Namespaces => ("", "v1", "namespaces"),
            Kind::Pods => ("", "v1", "pods"),
        }
    }
}

/// The watches and the state they feed. Shared by every kubernetes plugin using the same API connection, and kept
/// across reloads.
pub struct Controller {
    state: RwLock<State>,
    /// Unix time of the last change (the SOA serial).
    modified: AtomicI64,
    synced: [AtomicBool; 4],
    watch_pods: AtomicBool,
    client: Option<client::Client>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Drop for Controller {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            t.abort();
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Controller {
    /// A controller over `client`, starting its watches of services, endpointslices and namespaces (inside a Tokio
    /// runtime).
    pub fn start(client: client::Client) -> Arc<Self> {
        let c = Arc::new(Controller {
            state: RwLock::default(),
            modified: AtomicI64::new(now()),
            synced: Default::default(),
            watch_pods: AtomicBool::new(false),
            client: Some(client),
            tasks: Mutex::default(),
        });
        for kind in [Kind::Services, Kind::EndpointSlices, Kind::Namespaces] {
            c.spawn(kind);
        }
        c.synced[Kind::Pods as usize].store(true, Ordering::Relaxed);
        c
    }

    /// A controller over a fixed state (tests, fixtures): synced, no watches.
    pub fn fixed(state: State) -> Arc<Self> {
        let c = Controller {
            state: RwLock::new(state),
            modified: AtomicI64::new(now()),
            synced: Default::default(),
            watch_pods: AtomicBool::new(true),
            client: None,
            tasks: Mutex::default(),
        };
        for s in &c.synced {
            s.store(true, Ordering::Relaxed);
        }
        Arc::new(c)
    }

    /// Marks every watch synced or not (fixtures; a real controller's watches set it themselves).
    pub fn set_synced(&self, synced: bool) {
        for s in &self.synced {
            s.store(synced, Ordering::Relaxed);
        }
    }

    /// Also watches pods (for `pods verified`), once.
    pub fn watch_pods(self: &Arc<Self>) {
        if self.client.is_some() && !self.watch_pods.swap(true, Ordering::SeqCst) {
            self.synced[Kind::Pods as usize].store(false, Ordering::Relaxed);
            self.spawn(Kind::Pods);
        }
    }

    fn spawn(self: &Arc<Self>, kind: Kind) {
        let Some(client) = &self.client else { return };
        let (g, v, p) = kind.api();
        let api = match client.api(g, v, p) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!("plugin/kubernetes: {p}: {e}");
                return;
            }
        };
        let config = WatchConfig { transform: Some(kind.slim()), ..WatchConfig::default() };
        let watcher = Watcher::new(api, &client::ListParams::default(), config);
        let weak = Arc::downgrade(self);
        let task = tokio::spawn(run(weak, kind, watcher));
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(task.abort_handle());
    }

    /// Whether every watch has listed once (CoreDNS's `HasSynced`).
    pub fn has_synced(&self) -> bool {
        self.synced.iter().all(|s| s.load(Ordering::Relaxed))
    }

    /// The SOA serial: the Unix time of the last change.
    pub fn modified(&self) -> u32 {
        self.modified.load(Ordering::Relaxed) as u32
    }

    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a change to the state (also how tests drive a fixed controller).
    pub fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.write().unwrap_or_else(|e| e.into_inner()));
        self.modified.store(now(), Ordering::Relaxed);
    }

    fn apply(&self, kind: Kind, ev: Event) {
        let pod_ip = |v: &Value| {
            if v.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
                return None;
            }
            s(v, "/status/podIP").parse::<IpAddr>().ok()
        };
        let upsert = |st: &mut State, v: &Value| match kind {
            Kind::Services => st.upsert_service(to_service(v)),
            Kind::EndpointSlices => st.upsert_slice(to_slice(v)),
            Kind::Namespaces => {
                st.namespaces.insert(runtime::name(v).to_string());
            }
            Kind::Pods => st.upsert_pod(runtime::namespace(v), runtime::name(v), pod_ip(v)),
        };
        let delete = |st: &mut State, v: &Value| match kind {
            Kind::Services => st.delete_service(&service_key(runtime::name(v), runtime::namespace(v))),
            Kind::EndpointSlices => st.delete_slice(runtime::namespace(v), runtime::name(v)),
            Kind::Namespaces => {
                st.namespaces.remove(runtime::name(v));
            }
            Kind::Pods => st.upsert_pod(runtime::namespace(v), runtime::name(v), None),
        };
        match ev {
            Event::Restarted(list) => {
                self.update(|st| {
                    match kind {
                        Kind::Services => {
                            st.services.clear();
                            st.services_by_ip.clear();
                        }
                        Kind::EndpointSlices => {
                            st.slices.clear();
                            st.slice_owner.clear();
                            st.endpoints_by_ip.clear();
                        }
                        Kind::Namespaces => st.namespaces.clear(),
                        Kind::Pods => {
                            st.pods_by_ip.clear();
                            st.pod_ips.clear();
                        }
                    }
                    for v in &list {
                        upsert(st, v);
                    }
                });
                if !self.synced[kind as usize].swap(true, Ordering::SeqCst) {
                    tracing::info!("plugin/kubernetes: {} synced ({} objects)", kind.api().2, list.len());
                }
            }
            Event::Applied(v) => self.update(|st| upsert(st, &v)),
            Event::Deleted(v) => self.update(|st| delete(st, &v)),
        }
    }
}

async fn run(controller: Weak<Controller>, kind: Kind, watcher: Watcher) {
    let mut events = std::pin::pin!(watcher.into_stream());
    while let Some((ev, _)) = events.next().await {
        let Some(c) = controller.upgrade() else { return };
        c.apply(kind, ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transforms() {
        let svc = to_service(&json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "fd00::1"], "ports": [{"name": "http", "port": 80}]}
        }));
        assert_eq!(svc.cluster_ips.len(), 2);
        assert_eq!(svc.ports[0], Port { name: "http".into(), protocol: "TCP".into(), port: 80 });
        assert!(!svc.headless);
        let h = to_service(&json!({"metadata": {"name": "h", "namespace": "ns"}, "spec": {"clusterIP": "None"}}));
        assert!(h.headless);
        assert_eq!(h.ports[0].port, -1);
        let x = to_service(
            &json!({"metadata": {"name": "x", "namespace": "ns"}, "spec": {"type": "ExternalName", "externalName": "a.example."}}),
        );
        assert_eq!(x.external_name.as_deref(), Some("a.example"));
        let slice = to_slice(&json!({
            "metadata": {"name": "h-abc", "namespace": "ns", "labels": {"kubernetes.io/service-name": "h"}},
            "endpoints": [
                {"addresses": ["10.1.0.1"], "conditions": {"ready": true}, "hostname": "web-0", "targetRef": {"name": "web-0"}},
                {"addresses": ["10.1.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.1.0.3"]}
            ],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        }));
        assert_eq!(slice.service, "h");
        assert_eq!(slice.addresses.len(), 2);
        assert_eq!(slice.addresses[0].hostname, "web-0");
    }

    /// What the watches keep of an object is enough for the transforms: slimmed objects give the same answers.
    #[test]
    fn slimmed_objects_transform_the_same() {
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "ns", "uid": "u", "managedFields": [{"manager": "kubectl"}],
                         "annotations": {"a": "b"}, "labels": {"app": "web"}},
            "spec": {"type": "ClusterIP", "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
                     "sessionAffinity": "None"},
            "status": {"loadBalancer": {}}
        });
        let mut slim = svc.clone();
        (Kind::Services.slim())(&mut slim);
        assert_eq!(to_service(&slim), to_service(&svc));
        assert!(slim["metadata"].get("managedFields").is_none() && slim.get("status").is_none());
        assert!(slim["spec"]["ports"][0].get("targetPort").is_none());
        let slice = json!({
            "metadata": {"name": "h-abc", "namespace": "ns", "labels": {"kubernetes.io/service-name": "h", "x": "y"},
                         "ownerReferences": [{"name": "h"}]},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.1.0.1"], "conditions": {"ready": true, "serving": true}, "hostname": "web-0",
                 "targetRef": {"kind": "Pod", "name": "web-0", "uid": "u"}, "nodeName": "n1"},
                {"addresses": ["10.1.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.1.0.3"]}
            ],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        });
        let mut slim = slice.clone();
        (Kind::EndpointSlices.slim())(&mut slim);
        assert_eq!(to_slice(&slim), to_slice(&slice));
        assert_eq!(slim["metadata"]["labels"], json!({"kubernetes.io/service-name": "h"}));
        assert!(slim["endpoints"][0].get("nodeName").is_none());
        let mut pod = json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"a": "b"}},
                             "spec": {"containers": []}, "status": {"podIP": "10.1.0.9", "phase": "Running"}});
        (Kind::Pods.slim())(&mut pod);
        assert_eq!(pod, json!({"metadata": {"name": "p", "namespace": "ns"}, "status": {"podIP": "10.1.0.9"}}));
    }

    #[test]
    fn indexes_follow_changes() {
        let mut st = State::default();
        st.upsert_service(Service {
            name: "a".into(),
            namespace: "ns".into(),
            external_name: None,
            headless: false,
            cluster_ips: vec!["10.0.0.1".parse().unwrap()],
            ports: vec![],
        });
        st.upsert_service(Service {
            name: "a".into(),
            namespace: "ns".into(),
            external_name: None,
            headless: false,
            cluster_ips: vec!["10.0.0.2".parse().unwrap()],
            ports: vec![],
        });
        assert!(!st.services_by_ip.contains_key(&"10.0.0.1".parse().unwrap()));
        assert_eq!(st.services_by_ip[&"10.0.0.2".parse().unwrap()], [Arc::from("a.ns")]);
        let slice = Slice {
            name: "a-1".into(),
            namespace: "ns".into(),
            service: "a".into(),
            addresses: vec![Address {
                ip: "10.1.0.1".parse().unwrap(),
                hostname: String::new(),
                target_ref_name: String::new(),
            }],
            ports: vec![],
        };
        st.upsert_slice(slice.clone());
        assert_eq!(st.endpoints("a.ns").count(), 1);
        // One key, shared by every index; one slice, pointed to by the IP index.
        let (svc_key, _) = st.services.get_key_value("a.ns").unwrap();
        let (slice_key, slices) = st.slices.get_key_value("a.ns").unwrap();
        assert!(
            Arc::ptr_eq(svc_key, slice_key)
                && Arc::ptr_eq(svc_key, &st.services_by_ip[&"10.0.0.2".parse().unwrap()][0])
        );
        assert!(Arc::ptr_eq(&slices[0], &st.endpoints_by_ip[&"10.1.0.1".parse().unwrap()][0]));
        // A changed slice replaces the old one in every index.
        let mut moved = slice.clone();
        moved.addresses[0].ip = "10.1.0.2".parse().unwrap();
        st.upsert_slice(moved);
        assert_eq!(st.endpoints("a.ns").count(), 1);
        assert!(!st.endpoints_by_ip.contains_key(&"10.1.0.1".parse().unwrap()));
        assert_eq!(st.endpoints_by_ip[&"10.1.0.2".parse().unwrap()].len(), 1);
        st.delete_slice("ns", "a-1");
        assert_eq!(st.endpoints("a.ns").count(), 0);
        assert!(st.slices.is_empty() && st.slice_owner.is_empty());
        assert!(st.endpoints_by_ip.is_empty());
        st.delete_service("a.ns");
        assert!(st.services_by_ip.is_empty());
        st.upsert_pod("ns", "p", Some("10.2.0.1".parse().unwrap()));
        st.upsert_pod("ns", "p", None);
        assert!(st.pods_by_ip.is_empty());
    }
}
