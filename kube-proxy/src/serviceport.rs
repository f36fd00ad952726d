//! One port of a Service as the proxiers see it (upstream's `ServicePortName` and `BaseServicePortInfo` in
//! `pkg/proxy/serviceport.go`), built from a core/v1 Service for one IP family.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnetwork::IpNetwork;
use serde_json::Value;

/// The IP family one proxier programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    pub fn of(ip: &IpAddr) -> Self {
        if ip.is_ipv4() { IpFamily::V4 } else { IpFamily::V6 }
    }

    pub fn matches(&self, ip: &IpAddr) -> bool {
        IpFamily::of(ip) == *self
    }

    /// The family as EndpointSlices spell it in `addressType`.
    pub fn address_type(&self) -> &'static str {
        match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        }
    }
}

/// A Service port protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// `tcp`, `udp`, `sctp`: as nft, iptables and conntrack spell it.
    pub fn lower(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// `TCP`, `UDP`, `SCTP`: as the API spells it (and upstream's iptables chain-name hash input).
    pub fn upper(&self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

/// A Service's namespace and name (upstream's `types.NamespacedName`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A Service port by name: `ns/svc:port` (`ns/svc` for an unnamed port), as upstream's `ServicePortName.String()`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePortName {
    pub service: ServiceName,
    pub port: Arc<str>,
    pub protocol: Protocol,
}

impl ServiceName {
    pub fn new(namespace: &str, name: &str) -> Self {
        ServiceName { namespace: namespace.into(), name: name.into() }
    }
}

impl ServicePortName {
    pub fn new(namespace: &str, name: &str, port: &str, protocol: Protocol) -> Self {
        ServicePortName { service: ServiceName::new(namespace, name), port: port.into(), protocol }
    }
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port.is_empty() { write!(f, "{}", self.service) } else { write!(f, "{}:{}", self.service, self.port) }
    }
}

/// Upstream's default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
pub const DEFAULT_CLIENT_IP_SERVICE_AFFINITY_SECONDS: u32 = 10800;

/// One port of one Service in one IP family: everything a proxier needs to program it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: ServicePortName,
    pub cluster_ip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    /// 0 when the Service has no node port.
    pub node_port: u16,
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip` of this family (those with `ipMode: Proxy` are left to the load balancer).
    pub load_balancer_vips: Vec<IpAddr>,
    pub load_balancer_source_ranges: Vec<IpNetwork>,
    /// `sessionAffinity: ClientIP` with its timeout in seconds.
    pub sticky_max_age_seconds: Option<u32>,
    /// `spec.healthCheckNodePort` of a LoadBalancer Service with `externalTrafficPolicy: Local` (0 otherwise).
    pub health_check_node_port: u16,
    pub external_policy_local: bool,
    pub internal_policy_local: bool,
}

impl ServicePort {
    /// NodePort, ExternalIPs or load balancer IPs: traffic from outside the cluster reaches it.
    pub fn externally_accessible(&self) -> bool {
        self.node_port != 0 || !self.load_balancer_vips.is_empty() || !self.external_ips.is_empty()
    }

    /// Whether some traffic to this port uses the cluster-wide endpoints.
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_policy_local || (self.externally_accessible() && !self.external_policy_local)
    }

    /// Whether some traffic to this port uses only this node's endpoints.
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_policy_local || (self.externally_accessible() && self.external_policy_local)
    }
}

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

fn ips(values: &[Value], family: IpFamily) -> Vec<IpAddr> {
    values.iter().filter_map(Value::as_str).filter_map(|s| s.parse().ok()).filter(|ip| family.matches(ip)).collect()
}

/// Whether the Service is reachable from outside the cluster (upstream's `apiservice.ExternallyAccessible`).
fn service_externally_accessible(svc: &Value) -> bool {
    match str_at(svc, "/spec/type") {
        "LoadBalancer" | "NodePort" => true,
        "ClusterIP" | "" => !runtime::array(svc, "/spec/externalIPs").is_empty(),
        _ => false,
    }
}

/// The ports of a Service for one IP family, by port name; empty for headless and ExternalName Services and
/// Services without a ClusterIP of this family (upstream's `ShouldSkipService` and `serviceToServiceMap`).
pub fn service_ports(svc: &Value, family: IpFamily) -> Vec<ServicePort> {
    let spec_ip = str_at(svc, "/spec/clusterIP");
    if spec_ip.is_empty() || spec_ip == "None" || str_at(svc, "/spec/type") == "ExternalName" {
        return Vec::new();
    }
    let mut cluster_ips = ips(runtime::array(svc, "/spec/clusterIPs"), family);
    if cluster_ips.is_empty() {
        cluster_ips = spec_ip.parse().ok().filter(|ip| family.matches(ip)).into_iter().collect();
    }
    let Some(cluster_ip) = cluster_ips.first().copied() else { return Vec::new() };
    let (ns, name) = (runtime::namespace(svc), runtime::name(svc));
    let svc_type = str_at(svc, "/spec/type");
    let external_ips = ips(runtime::array(svc, "/spec/externalIPs"), family);
    let load_balancer_vips: Vec<IpAddr> = runtime::array(svc, "/status/loadBalancer/ingress")
        .iter()
        .filter(|i| str_at(i, "/ipMode") != "Proxy")
        .filter_map(|i| i.get("ip").and_then(Value::as_str))
        .filter_map(|s| s.parse().ok())
        .filter(|ip| family.matches(ip))
        .collect();
    let load_balancer_source_ranges = if svc_type == "LoadBalancer" {
        runtime::array(svc, "/spec/loadBalancerSourceRanges")
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|s| s.trim().parse::<IpNetwork>().ok())
            .filter(|n| family.matches(&n.ip()))
            .collect()
    } else {
        Vec::new()
    };
    let sticky_max_age_seconds = (str_at(svc, "/spec/sessionAffinity") == "ClientIP").then(|| {
        svc.pointer("/spec/sessionAffinityConfig/clientIP/timeoutSeconds")
            .and_then(Value::as_u64)
            .map(|s| s as u32)
            .unwrap_or(DEFAULT_CLIENT_IP_SERVICE_AFFINITY_SECONDS)
    });
    let external_policy_local =
        service_externally_accessible(svc) && str_at(svc, "/spec/externalTrafficPolicy") == "Local";
    let internal_policy_local = str_at(svc, "/spec/internalTrafficPolicy") == "Local";
    let health_check_node_port = if svc_type == "LoadBalancer" && external_policy_local {
        svc.pointer("/spec/healthCheckNodePort").and_then(Value::as_u64).unwrap_or(0) as u16
    } else {
        0
    };
    let service = ServiceName::new(ns, name);
    runtime::array(svc, "/spec/ports")
        .iter()
        .filter_map(|p| {
            let protocol = Protocol::parse(p.get("protocol").and_then(Value::as_str).unwrap_or("TCP"))?;
            let port = p.get("port").and_then(Value::as_u64)? as u16;
            Some(ServicePort {
                name: ServicePortName { service: service.clone(), port: str_at(p, "/name").into(), protocol },
                cluster_ip,
                port,
                protocol,
                node_port: p.get("nodePort").and_then(Value::as_u64).unwrap_or(0) as u16,
                external_ips: external_ips.clone(),
                load_balancer_vips: load_balancer_vips.clone(),
                load_balancer_source_ranges: load_balancer_source_ranges.clone(),
                sticky_max_age_seconds,
                health_check_node_port,
                external_policy_local,
                internal_policy_local,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What the Service informer keeps of an object (`server::slim_service`) gives the same ports as the whole
    /// object, for every field the ports are made of.
    #[test]
    fn slimmed_services_give_the_same_ports() {
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "ns", "uid": "u", "resourceVersion": "7", "labels": {"app": "web"},
                         "annotations": {"a": "b"}, "managedFields": [{"manager": "kubectl"}]},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "fd00::1"],
                     "ipFamilies": ["IPv4", "IPv6"], "selector": {"app": "web"},
                     "externalIPs": ["192.0.2.1"], "loadBalancerSourceRanges": ["198.51.100.0/24"],
                     "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                     "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Local", "healthCheckNodePort": 32000,
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"},
                               {"name": "dns", "port": 53, "nodePort": 30053, "protocol": "UDP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.1", "ipMode": "VIP", "ports": [{"port": 80}]},
                                                    {"ip": "203.0.113.2", "ipMode": "Proxy"}]},
                       "conditions": []}
        });
        let mut slim = svc.clone();
        crate::server::slim_service(&mut slim);
        for family in [IpFamily::V4, IpFamily::V6] {
            let ports = service_ports(&svc, family);
            assert_eq!(ports.len(), 2);
            assert_eq!(service_ports(&slim, family), ports);
        }
        let ports = service_ports(&slim, IpFamily::V4);
        assert_eq!(
            (ports[0].node_port, ports[0].health_check_node_port, ports[0].sticky_max_age_seconds),
            (30080, 32000, Some(60))
        );
        assert_eq!(ports[0].load_balancer_vips, ["203.0.113.1".parse::<IpAddr>().unwrap()]);
        assert!(slim["metadata"].get("managedFields").is_none() && slim["spec"].get("selector").is_none());
        assert!(slim["spec"]["ports"][0].get("targetPort").is_none() && slim["status"].get("conditions").is_none());
    }

    #[test]
    fn ports_of_a_service() {
        let svc = json!({
            "metadata": {"namespace": "ns1", "name": "svc1"},
            "spec": {"type": "LoadBalancer", "clusterIP": "172.30.0.41", "clusterIPs": ["172.30.0.41", "fd00::41"],
                     "externalIPs": ["192.168.99.11", "2001:db8::1"], "externalTrafficPolicy": "Local",
                     "healthCheckNodePort": 30000, "sessionAffinity": "ClientIP",
                     "loadBalancerSourceRanges": ["203.0.113.0/25"],
                     "ports": [{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3001},
                               {"name": "p53", "port": 53, "protocol": "UDP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"ip": "5.6.7.8", "ipMode": "Proxy"}]}}
        });
        let ports = service_ports(&svc, IpFamily::V4);
        assert_eq!(ports.len(), 2);
        let p = &ports[0];
        assert_eq!(p.name.to_string(), "ns1/svc1:p80");
        assert_eq!(p.cluster_ip.to_string(), "172.30.0.41");
        assert_eq!((p.port, p.node_port, p.health_check_node_port), (80, 3001, 30000));
        assert_eq!(p.external_ips, vec!["192.168.99.11".parse::<IpAddr>().unwrap()]);
        assert_eq!(p.load_balancer_vips, vec!["1.2.3.4".parse::<IpAddr>().unwrap()]);
        assert_eq!(p.sticky_max_age_seconds, Some(10800));
        assert!(p.external_policy_local && !p.internal_policy_local);
        assert!(p.uses_local_endpoints() && p.uses_cluster_endpoints());
        assert_eq!(ports[1].protocol, Protocol::Udp);
        let v6 = service_ports(&svc, IpFamily::V6);
        assert_eq!(v6[0].cluster_ip.to_string(), "fd00::41");
        assert!(v6[0].load_balancer_vips.is_empty());
    }

    #[test]
    fn skipped_services() {
        for spec in [
            json!({"clusterIP": "None", "ports": [{"port": 80}]}),
            json!({"clusterIP": "", "ports": [{"port": 80}]}),
            json!({"type": "ExternalName", "externalName": "example.com", "ports": [{"port": 80}]}),
        ] {
            let svc = json!({"metadata": {"namespace": "a", "name": "b"}, "spec": spec});
            assert!(service_ports(&svc, IpFamily::V4).is_empty(), "{svc}");
        }
        // A ClusterIP service's externalTrafficPolicy is not Local without external IPs.
        let svc = json!({"metadata": {"namespace": "a", "name": "b"},
            "spec": {"clusterIP": "10.0.0.1", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]}});
        let p = &service_ports(&svc, IpFamily::V4)[0];
        assert!(!p.external_policy_local && !p.uses_local_endpoints());
        assert_eq!(p.name.to_string(), "a/b");
    }
}
