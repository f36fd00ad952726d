//! Which endpoints a Service port's traffic may use from this node (upstream's `CategorizeEndpoints` in
//! `pkg/proxy/topology.go`): ready endpoints, terminating-but-serving ones only when no ready one is left,
//! local ones for the `Local` traffic policies, zone hints when every endpoint carries them.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::endpoint::Endpoint;
use crate::serviceport::ServicePort;

/// The node label naming its zone.
pub const LABEL_TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";

/// The endpoints of one Service port, sorted out by traffic policy.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Categorized {
    /// Endpoints for `Cluster` traffic policy (empty when no traffic uses it).
    pub cluster: Vec<Arc<Endpoint>>,
    /// Endpoints for `Local` traffic policy (empty when no traffic uses it).
    pub local: Vec<Arc<Endpoint>>,
    /// Every endpoint some traffic from this node may reach: the endpoint chains to write.
    pub all_reachable: Vec<Arc<Endpoint>>,
    /// Whether the Service has usable endpoints anywhere in the cluster.
    pub has_any: bool,
}

fn can_use_topology(endpoints: &[Arc<Endpoint>], node_labels: &BTreeMap<String, String>) -> bool {
    let Some(zone) = node_labels.get(LABEL_TOPOLOGY_ZONE).filter(|z| !z.is_empty()) else { return false };
    let mut has_endpoint_for_zone = false;
    for ep in endpoints.iter().filter(|e| e.ready) {
        if ep.zone_hints.is_empty() {
            return false;
        }
        has_endpoint_for_zone |= ep.zone_hints.contains(zone);
    }
    has_endpoint_for_zone
}

fn filter(endpoints: &[Arc<Endpoint>], f: impl Fn(&Endpoint) -> bool) -> Vec<Arc<Endpoint>> {
    endpoints.iter().filter(|e| f(e)).cloned().collect()
}

/// Upstream's `CategorizeEndpoints`.
pub fn categorize_endpoints(
    endpoints: &[Arc<Endpoint>],
    svc: &ServicePort,
    node_labels: &BTreeMap<String, String>,
) -> Categorized {
    let mut out = Categorized::default();
    let mut use_topology = false;
    if svc.uses_cluster_endpoints() {
        use_topology = can_use_topology(endpoints, node_labels);
        let zone = node_labels.get(LABEL_TOPOLOGY_ZONE).cloned().unwrap_or_default();
        out.cluster = filter(endpoints, |e| e.ready && (!use_topology || e.zone_hints.contains(&zone)));
        // With no ready endpoint anywhere, fall back to the terminating ones that still serve.
        if out.cluster.is_empty() {
            out.cluster = filter(endpoints, |e| e.serving && e.terminating);
        }
        out.has_any = !out.cluster.is_empty();
    }
    if !svc.uses_local_endpoints() {
        out.all_reachable = out.cluster.clone();
        return out;
    }
    let (mut local_ready, mut local_serving_terminating) = (false, false);
    for e in endpoints {
        if e.ready {
            out.has_any = true;
            local_ready |= e.is_local;
        } else if e.serving && e.terminating {
            out.has_any = true;
            local_serving_terminating |= e.is_local;
        }
    }
    let mut use_serving_terminating = false;
    if local_ready {
        out.local = filter(endpoints, |e| e.is_local && e.ready);
    } else if local_serving_terminating {
        use_serving_terminating = true;
        out.local = filter(endpoints, |e| e.is_local && e.serving && e.terminating);
    }
    if !svc.uses_cluster_endpoints() {
        out.all_reachable = out.local.clone();
        return out;
    }
    if !use_topology && !use_serving_terminating {
        out.all_reachable = out.cluster.clone();
        return out;
    }
    let mut merged: BTreeMap<String, Arc<Endpoint>> = BTreeMap::new();
    for e in out.cluster.iter().chain(&out.local) {
        merged.insert(e.to_string(), e.clone());
    }
    out.all_reachable = merged.into_values().collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serviceport::{Protocol, ServicePortName};

    fn ep(ip: &str, local: bool, ready: bool, serving: bool, terminating: bool) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            ip: ip.parse().unwrap(),
            port: 80,
            is_local: local,
            ready,
            serving,
            terminating,
            zone_hints: Default::default(),
        })
    }

    fn svc(internal_local: bool, external_local: bool, node_port: u16) -> ServicePort {
        ServicePort {
            name: ServicePortName::new("ns", "s", "p", Protocol::Tcp),
            cluster_ip: "10.0.0.1".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
            node_port,
            external_ips: vec![],
            load_balancer_vips: vec![],
            load_balancer_source_ranges: vec![],
            sticky_max_age_seconds: None,
            health_check_node_port: 0,
            external_policy_local: external_local,
            internal_policy_local: internal_local,
        }
    }

    fn ips(v: &[Arc<Endpoint>]) -> Vec<String> {
        v.iter().map(|e| e.ip.to_string()).collect()
    }

    #[test]
    fn cluster_policy_prefers_ready_then_terminating() {
        let eps = vec![ep("10.1.0.1", false, true, true, false), ep("10.1.0.2", true, false, true, true)];
        let c = categorize_endpoints(&eps, &svc(false, false, 0), &BTreeMap::new());
        assert_eq!(ips(&c.cluster), ["10.1.0.1"]);
        assert!(c.local.is_empty() && c.has_any);
        let eps = vec![ep("10.1.0.1", false, false, false, true), ep("10.1.0.2", true, false, true, true)];
        let c = categorize_endpoints(&eps, &svc(false, false, 0), &BTreeMap::new());
        assert_eq!(ips(&c.cluster), ["10.1.0.2"]);
        let eps = vec![ep("10.1.0.1", false, false, false, false)];
        let c = categorize_endpoints(&eps, &svc(false, false, 0), &BTreeMap::new());
        assert!(!c.has_any && c.all_reachable.is_empty());
    }

    #[test]
    fn local_policies() {
        let eps = vec![ep("10.1.0.1", false, true, true, false), ep("10.1.0.2", true, true, true, false)];
        // internalTrafficPolicy: Local only.
        let c = categorize_endpoints(&eps, &svc(true, false, 0), &BTreeMap::new());
        assert!(c.cluster.is_empty());
        assert_eq!(ips(&c.local), ["10.1.0.2"]);
        assert_eq!(ips(&c.all_reachable), ["10.1.0.2"]);
        // externalTrafficPolicy: Local on a NodePort: cluster endpoints for ClusterIP traffic, local for external.
        let c = categorize_endpoints(&eps, &svc(false, true, 30000), &BTreeMap::new());
        assert_eq!(ips(&c.cluster), ["10.1.0.1", "10.1.0.2"]);
        assert_eq!(ips(&c.local), ["10.1.0.2"]);
        assert_eq!(ips(&c.all_reachable), ["10.1.0.1", "10.1.0.2"]);
        // No local endpoints: the Service still has endpoints elsewhere.
        let remote = vec![ep("10.1.0.1", false, true, true, false)];
        let c = categorize_endpoints(&remote, &svc(true, false, 0), &BTreeMap::new());
        assert!(c.local.is_empty() && c.has_any);
        // Local terminating fallback merges with the ready remote ones.
        let eps = vec![ep("10.1.0.1", false, true, true, false), ep("10.1.0.2", true, false, true, true)];
        let c = categorize_endpoints(&eps, &svc(false, true, 30000), &BTreeMap::new());
        assert_eq!(ips(&c.local), ["10.1.0.2"]);
        assert_eq!(ips(&c.all_reachable), ["10.1.0.1", "10.1.0.2"]);
    }

    #[test]
    fn zone_hints() {
        let mut a = (*ep("10.1.0.1", false, true, true, false)).clone();
        a.zone_hints.insert("zone-a".into());
        let mut b = (*ep("10.1.0.2", false, true, true, false)).clone();
        b.zone_hints.insert("zone-b".into());
        let eps = vec![Arc::new(a), Arc::new(b)];
        let labels = BTreeMap::from([(LABEL_TOPOLOGY_ZONE.to_string(), "zone-a".to_string())]);
        let c = categorize_endpoints(&eps, &svc(false, false, 0), &labels);
        assert_eq!(ips(&c.cluster), ["10.1.0.1"]);
        let c = categorize_endpoints(&eps, &svc(false, false, 0), &BTreeMap::new());
        assert_eq!(c.cluster.len(), 2);
    }
}
