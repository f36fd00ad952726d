//! NetworkPolicies (`networking.k8s.io/v1`) resolved for one node, with upstream's semantics: a policy selects the
//! pods of its namespace matching `podSelector`; a selected pod is isolated for each of the policy's `policyTypes`
//! (default: Ingress, plus Egress when the policy has egress rules), and then takes only the traffic some rule of
//! some policy selecting it allows (rules and policies add up; none denies). A rule allows its peers (`from`/`to`:
//! pods by `podSelector` in the policy's namespace, by `namespaceSelector` in the matching namespaces, by both, or
//! addresses by `ipBlock` less `except`; none: everyone) on its ports (`protocol`, default TCP; `port` a number or a
//! container port name; `endPort`; none: every port). Only pods on this node are enforced for; peers come from the
//! whole cluster. Host-network pods are neither selected nor peers (their address is the node's).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use api_types::selector::LabelSelector;
use ipnetwork::IpNetwork;
use serde_json::{Map, Value};

/// A port's protocol (NetworkPolicyPort.protocol, container ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// From the API's `TCP`, `UDP`, `SCTP` (absent: TCP, as upstream's default).
    pub fn parse(v: Option<&Value>) -> Option<Protocol> {
        match v.and_then(Value::as_str).unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// nftables' name of it.
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A container port with a name, for named ports in rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// What the rules need of a pod.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub labels: Map<String, Value>,
    pub node_name: String,
    pub ips: Vec<IpAddr>,
    pub ports: Vec<NamedPort>,
}

impl PodInfo {
    /// A pod that takes part in policies: not host-network, running or about to (not Succeeded/Failed, whose
    /// address may be someone else's by now), with an address.
    pub fn from_object(pod: &Value) -> Option<PodInfo> {
        if pod.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true) {
            return None;
        }
        if matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed")) {
            return None;
        }
        let mut ips: Vec<IpAddr> =
            runtime::array(pod, "/status/podIPs").iter().filter_map(|p| p.get("ip")?.as_str()?.parse().ok()).collect();
        if ips.is_empty()
            && let Some(ip) = pod.pointer("/status/podIP").and_then(Value::as_str).and_then(|s| s.parse().ok())
        {
            ips.push(ip);
        }
        if ips.is_empty() {
            return None;
        }
        let ports = ["/spec/containers", "/spec/initContainers"]
            .iter()
            .flat_map(|p| runtime::array(pod, p))
            .flat_map(|c| runtime::array(c, "/ports"))
            .filter_map(|p| {
                Some(NamedPort {
                    name: p.get("name")?.as_str()?.to_string(),
                    protocol: Protocol::parse(p.get("protocol"))?,
                    port: u16::try_from(p.get("containerPort")?.as_u64()?).ok()?,
                })
            })
            .collect();
        Some(PodInfo {
            namespace: runtime::namespace(pod).to_string(),
            name: runtime::name(pod).to_string(),
            labels: pod.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default(),
            node_name: pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default().to_string(),
            ips,
            ports,
        })
    }
}

/// An `ipBlock` peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpBlock {
    pub cidr: IpNetwork,
    pub except: Vec<IpNetwork>,
}

/// The peers of a rule that names some.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers {
    /// The addresses of the pods the selector peers match.
    pub pods: BTreeSet<IpAddr>,
    /// Whether any peer is a selector (so the pod set is part of the rule, even when empty).
    pub selectors: bool,
    pub blocks: Vec<IpBlock>,
}

/// A protocol's ports in a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSet {
    /// Every port of the protocol (a `ports` entry with no `port`).
    All,
    /// Port ranges, inclusive (`port` alone is a range of one).
    Ranges(BTreeSet<(u16, u16)>),
}

/// The ports of a rule that names some.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ports {
    pub numbered: BTreeMap<Protocol, PortSet>,
    /// Whether any entry names its port (the resolved set is part of the rule, even when empty).
    pub named: bool,
    /// Named ports resolved: (destination pod address, protocol, port number).
    pub resolved: BTreeSet<(IpAddr, Protocol, u16)>,
}

/// One ingress or egress rule: None for peers or ports means all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub peers: Option<Peers>,
    pub ports: Option<Ports>,
}

/// A policy that selects pods of this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRules {
    pub namespace: String,
    pub name: String,
    /// The addresses of the selected pods on this node.
    pub pods: BTreeSet<IpAddr>,
    /// None when the policy does not isolate for ingress; Some(empty) denies all ingress.
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
}

/// Everything the node's firewall is made of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub node: String,
    /// Addresses of this node's pods selected by a policy with Ingress (Egress) in its types.
    pub ingress_isolated: BTreeSet<IpAddr>,
    pub egress_isolated: BTreeSet<IpAddr>,
    /// By namespace and name.
    pub policies: Vec<PolicyRules>,
    /// Whether any pod of this node has an IPv6 address (IPv6 rules are written only then).
    pub ipv6: bool,
}

/// The state of the cluster the rules are made from.
#[derive(Debug, Default)]
pub struct Cluster {
    pub pods: Vec<PodInfo>,
    /// Namespace name -> its labels.
    pub namespaces: HashMap<String, Map<String, Value>>,
    pub policies: Vec<std::sync::Arc<Value>>,
}

impl Cluster {
    /// From the informers' objects (pods, namespaces, policies).
    pub fn from_objects<'a>(
        pods: impl IntoIterator<Item = &'a Value>,
        namespaces: impl IntoIterator<Item = &'a Value>,
        policies: Vec<std::sync::Arc<Value>>,
    ) -> Cluster {
        Cluster {
            pods: pods.into_iter().filter_map(PodInfo::from_object).collect(),
            namespaces: namespaces
                .into_iter()
                .map(|ns| {
                    let labels = ns.pointer("/metadata/labels").and_then(Value::as_object).cloned();
                    (runtime::name(ns).to_string(), labels.unwrap_or_default())
                })
                .collect(),
            policies,
        }
    }

    /// The rules for the pods of `node`.
    pub fn ruleset(&self, node: &str) -> Ruleset {
        let local: Vec<&PodInfo> = self.pods.iter().filter(|p| p.node_name == node).collect();
        let mut rs = Ruleset {
            node: node.to_string(),
            ipv6: local.iter().flat_map(|p| &p.ips).any(IpAddr::is_ipv6),
            ..Default::default()
        };
        let mut policies: Vec<&Value> = self.policies.iter().map(|p| p.as_ref()).collect();
        policies
            .sort_by(|a, b| (runtime::namespace(a), runtime::name(a)).cmp(&(runtime::namespace(b), runtime::name(b))));
        for policy in policies {
            if let Some(p) = self.resolve(policy, &local) {
                if p.ingress.is_some() {
                    rs.ingress_isolated.extend(&p.pods);
                }
                if p.egress.is_some() {
                    rs.egress_isolated.extend(&p.pods);
                }
                rs.policies.push(p);
            }
        }
        rs
    }

    /// A policy's rules, if it selects pods of this node.
    fn resolve(&self, policy: &Value, local: &[&PodInfo]) -> Option<PolicyRules> {
        let namespace = runtime::namespace(policy);
        let spec = policy.get("spec")?;
        let selector = selector(spec.get("podSelector").unwrap_or(&Value::Null), policy)?;
        let targets: Vec<&PodInfo> =
            local.iter().copied().filter(|p| p.namespace == namespace && selector.matches(&p.labels)).collect();
        if targets.is_empty() {
            return None;
        }
        let (ingress, egress) = policy_types(spec);
        let all: Vec<&PodInfo> = self.pods.iter().collect();
        let rules = |key: &str, peers_key: &str, named_over: &[&PodInfo]| -> Vec<Rule> {
            runtime::array(spec, &format!("/{key}"))
                .iter()
                .map(|rule| Rule {
                    peers: self.peers(rule.get(peers_key), namespace, policy),
                    ports: ports(rule.get("ports"), named_over),
                })
                .collect()
        };
        Some(PolicyRules {
            namespace: namespace.to_string(),
            name: runtime::name(policy).to_string(),
            pods: targets.iter().flat_map(|p| p.ips.iter().copied()).collect(),
            // A named port is the destination's: the selected pod's for ingress, the peer's for egress.
            ingress: ingress.then(|| rules("ingress", "from", &targets)),
            egress: egress.then(|| rules("egress", "to", &all)),
        })
    }

    /// A rule's `from` or `to`: None (everyone) when absent or empty.
    fn peers(&self, list: Option<&Value>, namespace: &str, policy: &Value) -> Option<Peers> {
        let list = list.and_then(Value::as_array).filter(|l| !l.is_empty())?;
        let mut peers = Peers::default();
        for peer in list {
            if let Some(block) = peer.get("ipBlock").filter(|b| !b.is_null()) {
                match ip_block(block) {
                    Some(b) => peers.blocks.push(b),
                    None => tracing::warn!(policy = %runtime::object_key(policy), "invalid ipBlock {block}"),
                }
                continue;
            }
            let pod_selector = peer.get("podSelector").filter(|s| !s.is_null());
            let ns_selector = peer.get("namespaceSelector").filter(|s| !s.is_null());
            if pod_selector.is_none() && ns_selector.is_none() {
                continue;
            }
            peers.selectors = true;
            // podSelector alone: the policy's namespace; namespaceSelector alone: every pod of the namespaces.
            let pods = match pod_selector {
                Some(s) => match selector(s, policy) {
                    Some(s) => s,
                    None => continue,
                },
                None => LabelSelector::everything(),
            };
            let namespaces = match ns_selector {
                Some(s) => match selector(s, policy) {
                    Some(s) => Some(s),
                    None => continue,
                },
                None => None,
            };
            for pod in &self.pods {
                let in_namespace = match &namespaces {
                    None => pod.namespace == namespace,
                    Some(s) => self.namespaces.get(&pod.namespace).is_some_and(|labels| s.matches(labels)),
                };
                if in_namespace && pods.matches(&pod.labels) {
                    peers.pods.extend(&pod.ips);
                }
            }
        }
        Some(peers)
    }
}

/// `policyTypes`, or upstream's default for a policy without them: Ingress, and Egress if it has egress rules.
pub fn policy_types(spec: &Value) -> (bool, bool) {
    match spec.get("policyTypes").and_then(Value::as_array).filter(|t| !t.is_empty()) {
        Some(types) => {
            let has = |t: &str| types.iter().any(|v| v.as_str() == Some(t));
            (has("Ingress"), has("Egress"))
        }
        None => (true, !runtime::array(spec, "/egress").is_empty()),
    }
}

fn selector(value: &Value, policy: &Value) -> Option<LabelSelector> {
    match LabelSelector::from_json(value) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(policy = %runtime::object_key(policy), error = %e, "invalid selector; it matches nothing");
            None
        }
    }
}

fn ip_block(block: &Value) -> Option<IpBlock> {
    let cidr: IpNetwork = block.get("cidr")?.as_str()?.parse().ok()?;
    let cidr = IpNetwork::new(cidr.network(), cidr.prefix()).ok()?;
    let except = runtime::array(block, "/except")
        .iter()
        .filter_map(|e| e.as_str()?.parse::<IpNetwork>().ok())
        .filter_map(|e| IpNetwork::new(e.network(), e.prefix()).ok())
        .collect();
    Some(IpBlock { cidr, except })
}

/// A rule's `ports`: None (every port) when absent or empty. Named ports are looked up in `named_over`.
fn ports(list: Option<&Value>, named_over: &[&PodInfo]) -> Option<Ports> {
    let list = list.and_then(Value::as_array).filter(|l| !l.is_empty())?;
    let mut ports = Ports::default();
    for entry in list {
        let Some(protocol) = Protocol::parse(entry.get("protocol")) else {
            tracing::warn!("unknown protocol in {entry}; the entry matches nothing");
            continue;
        };
        match entry.get("port") {
            None | Some(Value::Null) => {
                ports.numbered.insert(protocol, PortSet::All);
            }
            Some(Value::String(name)) if name.parse::<u16>().is_err() => {
                ports.named = true;
                for pod in named_over {
                    for p in pod.ports.iter().filter(|p| &p.name == name && p.protocol == protocol) {
                        ports.resolved.extend(pod.ips.iter().map(|ip| (*ip, protocol, p.port)));
                    }
                }
            }
            Some(port) => {
                let from = port.as_u64().or_else(|| port.as_str()?.parse().ok()).and_then(|p| u16::try_from(p).ok());
                let Some(from) = from else { continue };
                let to = entry.get("endPort").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok());
                let set = ports.numbered.entry(protocol).or_insert_with(|| PortSet::Ranges(BTreeSet::new()));
                if let PortSet::Ranges(r) = set {
                    r.insert((from, to.unwrap_or(from).max(from)));
                }
            }
        }
    }
    Some(ports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policy_types_default_from_the_rules() {
        assert_eq!(policy_types(&json!({"podSelector": {}})), (true, false));
        assert_eq!(policy_types(&json!({"egress": [{}]})), (true, true));
        assert_eq!(policy_types(&json!({"policyTypes": ["Egress"], "ingress": [{}]})), (false, true));
    }

    #[test]
    fn pods_without_address_or_on_the_host_network_take_no_part() {
        let base = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"nodeName": "n"},
                          "status": {"podIP": "10.0.0.1"}});
        assert!(PodInfo::from_object(&base).is_some());
        let mut host = base.clone();
        host["spec"]["hostNetwork"] = json!(true);
        assert!(PodInfo::from_object(&host).is_none());
        let mut done = base.clone();
        done["status"]["phase"] = json!("Succeeded");
        assert!(PodInfo::from_object(&done).is_none());
        assert!(PodInfo::from_object(&json!({"metadata": {"name": "p"}})).is_none());
    }
}
