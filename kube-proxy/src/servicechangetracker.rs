//! Accumulates Service changes between syncs and applies them to the [`ServicePortMap`] (upstream's
//! `pkg/proxy/servicechangetracker.go`): for each Service, the state before the first unapplied change and after
//! the last, so a sync sees exactly which Services changed and which UDP ClusterIPs went away.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::serviceport::{IpFamily, Protocol, ServiceName, ServicePort, ServicePortName, service_ports};

/// Every Service port this proxier programs.
pub type ServicePortMap = BTreeMap<ServicePortName, Arc<ServicePort>>;

/// The ports of one Service.
type ServiceMap = BTreeMap<ServicePortName, Arc<ServicePort>>;

#[derive(Debug, Default)]
struct Change {
    previous: ServiceMap,
    current: ServiceMap,
}

/// What applying the pending changes did (upstream's `UpdateServiceMapResult`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UpdateServiceMapResult {
    /// Services that changed since the last apply (added, updated or deleted).
    pub updated_services: BTreeSet<ServiceName>,
    /// ClusterIPs of UDP ports that no longer exist, whose conntrack entries must go.
    pub deleted_udp_cluster_ips: BTreeSet<IpAddr>,
}

/// Pending Service changes for one IP family, and the ports of every Service as last seen. Shared between the
/// event handlers and the sync loop.
#[derive(Debug)]
pub struct ServiceChangeTracker {
    family: IpFamily,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    pending: BTreeMap<ServiceName, Change>,
    /// Each Service's ports as last seen: the state a change starts from, which upstream reads from the informer's
    /// store (the previous object); keeping the ports (shared with the [`ServicePortMap`]) rather than the objects
    /// is what lets kube-proxy watch Services without a store.
    known: HashMap<ServiceName, Box<[Arc<ServicePort>]>>,
}

fn service_name(svc: &Value) -> ServiceName {
    ServiceName::new(runtime::namespace(svc), runtime::name(svc))
}

impl ServiceChangeTracker {
    pub fn new(family: IpFamily) -> Self {
        ServiceChangeTracker { family, inner: Mutex::default() }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn to_map(&self, svc: Option<&Value>) -> ServiceMap {
        svc.map(|s| service_ports(s, self.family).into_iter().map(|p| (p.name.clone(), Arc::new(p))).collect())
            .unwrap_or_default()
    }

    /// Records a Service add or update (`current`), or delete (`current` None, `previous` its last state). The
    /// change starts from the Service's ports as this tracker last saw them. True when some change is pending
    /// afterwards (so a sync is due).
    pub fn update(&self, previous: Option<&Value>, current: Option<&Value>) -> bool {
        let Some(any) = current.or(previous) else { return false };
        self.record(service_name(any), self.to_map(current))
    }

    /// A full list of the Services (the watch's first list, or a relist after it broke): each is recorded as an
    /// update, and every Service this tracker knows that the list lacks as deleted. True when a sync is due.
    pub fn services_listed(&self, services: &[Value]) -> bool {
        let listed: HashSet<ServiceName> = services.iter().map(service_name).collect();
        let gone: Vec<ServiceName> = self.inner().known.keys().filter(|n| !listed.contains(*n)).cloned().collect();
        for name in gone {
            self.record(name, ServiceMap::new());
        }
        for svc in services {
            self.update(None, Some(svc));
        }
        self.pending() > 0
    }

    fn record(&self, name: ServiceName, current: ServiceMap) -> bool {
        let mut inner = self.inner();
        let inner = &mut *inner;
        let before = match current.is_empty() {
            true => inner.known.remove(&name),
            false => inner.known.insert(name.clone(), current.values().cloned().collect()),
        };
        let change = inner.pending.entry(name.clone()).or_insert_with(|| Change {
            previous: before.iter().flatten().map(|p| (p.name.clone(), p.clone())).collect(),
            ..Default::default()
        });
        change.current = current;
        if change.previous == change.current {
            inner.pending.remove(&name);
        }
        !inner.pending.is_empty()
    }

    /// Number of Services with unapplied changes.
    pub fn pending(&self) -> usize {
        self.inner().pending.len()
    }

    /// Applies the pending changes to `map` and clears them (upstream's `ServicePortMap.Update`).
    pub fn apply(&self, map: &mut ServicePortMap) -> UpdateServiceMapResult {
        let mut result = UpdateServiceMapResult::default();
        let items = std::mem::take(&mut self.inner().pending);
        for (name, change) in items {
            result.updated_services.insert(name);
            for (port_name, port) in &change.current {
                map.insert(port_name.clone(), port.clone());
            }
            for (port_name, old) in change.previous {
                if change.current.contains_key(&port_name) {
                    continue;
                }
                map.remove(&port_name);
                if old.protocol == Protocol::Udp {
                    result.deleted_udp_cluster_ips.insert(old.cluster_ip);
                }
            }
        }
        result
    }
}

/// The NodePorts of the LoadBalancer Services with `externalTrafficPolicy: Local`, by Service (upstream's
/// `ServicePortMap.HealthCheckNodePorts`).
pub fn health_check_node_ports(map: &ServicePortMap) -> BTreeMap<ServiceName, u16> {
    map.values()
        .filter(|p| p.health_check_node_port != 0)
        .map(|p| (p.name.service.clone(), p.health_check_node_port))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(name: &str, ip: &str, ports: Value) -> Value {
        json!({"metadata": {"namespace": "ns", "name": name}, "spec": {"clusterIP": ip, "ports": ports}})
    }

    #[test]
    fn accumulates_and_applies() {
        let t = ServiceChangeTracker::new(IpFamily::V4);
        let a =
            svc("a", "10.0.0.1", json!([{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "http", "port": 80}]));
        assert!(t.update(None, Some(&a)));
        let mut map = ServicePortMap::new();
        let r = t.apply(&mut map);
        assert_eq!(map.len(), 2);
        assert_eq!(r.updated_services.len(), 1);
        assert_eq!(t.pending(), 0);

        // An update that ends where it started cancels out.
        let a2 = svc("a", "10.0.0.1", json!([{"name": "http", "port": 80}]));
        assert!(t.update(Some(&a), Some(&a2)));
        assert!(!t.update(Some(&a2), Some(&a)));
        assert_eq!(t.pending(), 0);

        // Dropping the UDP port reports its ClusterIP for conntrack cleanup.
        assert!(t.update(Some(&a), Some(&a2)));
        let r = t.apply(&mut map);
        assert_eq!(map.len(), 1);
        assert_eq!(r.deleted_udp_cluster_ips.iter().map(ToString::to_string).collect::<Vec<_>>(), ["10.0.0.1"]);

        // Headless services have no ports; changes between irrelevant states are no changes.
        let h = svc("h", "None", json!([{"port": 80}]));
        assert!(!t.update(None, Some(&h)));
        assert!(t.update(Some(&a2), None));
        t.apply(&mut map);
        assert!(map.is_empty());
    }

    /// Without a store: an update starts from the ports the tracker last saw (whatever `previous` the caller has),
    /// and a relist deletes the Services it lacks.
    #[test]
    fn changes_start_from_what_was_seen_and_relists_delete() {
        let t = ServiceChangeTracker::new(IpFamily::V4);
        let a = svc("a", "10.0.0.1", json!([{"name": "dns", "port": 53, "protocol": "UDP"}]));
        let b = svc("b", "10.0.0.2", json!([{"name": "http", "port": 80}]));
        assert!(t.services_listed(&[a.clone(), b.clone()]));
        let mut map = ServicePortMap::new();
        assert_eq!(t.apply(&mut map).updated_services.len(), 2);
        // The same list again is no change; an update given no previous state is still compared with `a`.
        assert!(!t.services_listed(&[a.clone(), b.clone()]));
        assert!(!t.update(None, Some(&a)));
        let a2 = svc("a", "10.0.0.1", json!([{"name": "dns", "port": 5353, "protocol": "UDP"}]));
        assert!(t.update(None, Some(&a2)));
        // The relist lacks `a`: deleted, from its latest ports (the pending change keeps its starting point).
        assert!(t.services_listed(std::slice::from_ref(&b)));
        let r = t.apply(&mut map);
        assert_eq!(r.updated_services.iter().map(|n| &*n.name).collect::<Vec<_>>(), ["a"]);
        assert_eq!(r.deleted_udp_cluster_ips.iter().map(ToString::to_string).collect::<Vec<_>>(), ["10.0.0.1"]);
        assert_eq!(map.keys().map(|k| &*k.service.name).collect::<Vec<_>>(), ["b"]);
        // A Service added while the watch was down and deleted again before the relist leaves nothing behind.
        assert!(t.update(None, Some(&a)));
        assert!(!t.services_listed(std::slice::from_ref(&b)));
        assert_eq!(t.pending(), 0);
    }
}
