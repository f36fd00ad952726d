//! The nftables script for a node's [`Ruleset`]: one table, `inet kube-network-policy`, replaced whole in one
//! transaction (`nft -f`), so no packet sees a half-written firewall and established connections carry on.
//!
//! Layout: the base chains `forward-egress` and `input-egress` (priority -1) check what the node's pods send
//! (forwarded, bridged with br_netfilter, or to the node itself), `forward-ingress` (priority 0) what they receive;
//! each first accepts established and related traffic (policies are stateful), then jumps to `egress` or
//! `ingress`, which send a packet of a pod selected by a policy to that policy's chain (`policy_<ns>_<name>_ingress`),
//! whose rules accept what the policy allows; a packet of an isolated pod (sets `ingress_isolated`,
//! `egress_isolated`) that no policy accepted is rejected. An accept ends only its base chain, so traffic between
//! two pods of the node passes the sender's egress and then the receiver's ingress. Traffic from the node itself to
//! its pods goes through `output`, which is not hooked: it is always allowed, as upstream requires (probes).
//! Pod address sets are per policy (`_pods`) and per rule (`_ingress_0`, the selector peers; `_ingress_0_ports`,
//! named ports resolved to address . protocol . port).

use std::fmt::Write;
use std::net::IpAddr;

use crate::policy::{PolicyRules, PortSet, Ports, Protocol, Rule, Ruleset};

/// The one table this controller owns.
pub const TABLE: &str = "kube-network-policy";

/// The script that removes the table (`--cleanup`), whether or not it exists.
pub fn cleanup() -> String {
    format!("table inet {TABLE}\ndelete table inet {TABLE}\n")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn matches(self, ip: &IpAddr) -> bool {
        ip.is_ipv4() == (self == Family::V4)
    }
    /// The expression prefix (`ip saddr`, `ip6 daddr`).
    fn expr(self) -> &'static str {
        if self == Family::V4 { "ip" } else { "ip6" }
    }
    fn addr_type(self) -> &'static str {
        if self == Family::V4 { "ipv4_addr" } else { "ipv6_addr" }
    }
    /// The suffix of the family's sets.
    fn suffix(self) -> &'static str {
        if self == Family::V4 { "" } else { "_v6" }
    }
}

/// The chain and set prefix of a policy: `policy_<namespace>_<name>` (`_` is in no Kubernetes name, so two
/// policies never share one), or a hash for names too long for nftables.
pub fn policy_prefix(namespace: &str, name: &str) -> String {
    let readable = format!("policy_{namespace}_{name}");
    if readable.len() <= 200 {
        return readable;
    }
    // FNV-1a: stable across runs and builds.
    let hash = readable.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    format!("policy_{hash:016x}")
}

/// The whole script: (re)creates the table in one transaction.
pub fn render(rs: &Ruleset) -> String {
    let families: &[Family] = if rs.ipv6 { &[Family::V4, Family::V6] } else { &[Family::V4] };
    let mut sets = String::new();
    let mut chains = String::new();
    let mut egress_dispatch = String::new();
    let mut ingress_dispatch = String::new();
    for policy in &rs.policies {
        let prefix = policy_prefix(&policy.namespace, &policy.name);
        let wanted = |rules: &Option<Vec<Rule>>| rules.as_ref().is_some_and(|r| !r.is_empty());
        if wanted(&policy.ingress) || wanted(&policy.egress) {
            for &f in families {
                addr_set(&mut sets, &format!("{prefix}_pods{}", f.suffix()), f, policy.pods.iter());
            }
        }
        for (direction, rules, dispatch) in
            [("ingress", &policy.ingress, &mut ingress_dispatch), ("egress", &policy.egress, &mut egress_dispatch)]
        {
            let Some(rules) = rules.as_ref().filter(|r| !r.is_empty()) else { continue };
            let chain = format!("{prefix}_{direction}");
            let mut body = String::new();
            for (i, rule) in rules.iter().enumerate() {
                for &f in families {
                    render_rule(&mut sets, &mut body, policy, direction, i, rule, f);
                }
            }
            writeln!(chains, "\tchain {chain} {{\n{body}\t}}").unwrap();
            let (own, _) = directions(direction);
            for &f in families {
                writeln!(dispatch, "\t\t{} {own} @{prefix}_pods{} jump {chain}", f.expr(), f.suffix()).unwrap();
            }
        }
    }
    let mut out = format!("table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n");
    for &f in families {
        addr_set(&mut out, &format!("ingress_isolated{}", f.suffix()), f, rs.ingress_isolated.iter());
        addr_set(&mut out, &format!("egress_isolated{}", f.suffix()), f, rs.egress_isolated.iter());
    }
    out.push_str(&sets);
    out.push_str(&chains);
    for (name, own, dispatch) in [("egress", "saddr", &egress_dispatch), ("ingress", "daddr", &ingress_dispatch)] {
        write!(out, "\tchain {name} {{\n{dispatch}").unwrap();
        for &f in families {
            writeln!(out, "\t\t{} {own} @{name}_isolated{} counter reject", f.expr(), f.suffix()).unwrap();
        }
        out.push_str("\t}\n");
    }
    for (chain, hook, priority, target) in [
        ("forward-egress", "forward", -1, "egress"),
        ("input-egress", "input", -1, "egress"),
        ("forward-ingress", "forward", 0, "ingress"),
    ] {
        writeln!(
            out,
            "\tchain {chain} {{\n\t\ttype filter hook {hook} priority {priority}; policy accept;\n\t\tct state established,related accept\n\t\tjump {target}\n\t}}"
        )
        .unwrap();
    }
    out.push_str("}\n");
    out
}

/// (the selected pod's address field, the peer's) for a direction.
fn directions(direction: &str) -> (&'static str, &'static str) {
    if direction == "ingress" { ("daddr", "saddr") } else { ("saddr", "daddr") }
}

/// The nft rules of one policy rule in one family: every peer match with every port match.
fn render_rule(
    sets: &mut String,
    body: &mut String,
    policy: &PolicyRules,
    direction: &str,
    index: usize,
    rule: &Rule,
    f: Family,
) {
    let set = format!("{}_{direction}_{index}", policy_prefix(&policy.namespace, &policy.name));
    let (_, peer) = directions(direction);
    let ip = f.expr();
    let peer_matches: Vec<String> = match &rule.peers {
        None => vec![String::new()],
        Some(peers) => {
            let mut m = Vec::new();
            if peers.selectors {
                addr_set(sets, &format!("{set}{}", f.suffix()), f, peers.pods.iter());
                m.push(format!("{ip} {peer} @{set}{} ", f.suffix()));
            }
            for block in peers.blocks.iter().filter(|b| f.matches(&b.cidr.ip())) {
                let except: Vec<String> = block.except.iter().map(|e| e.to_string()).collect();
                if except.is_empty() {
                    m.push(format!("{ip} {peer} {} ", block.cidr));
                } else {
                    m.push(format!("{ip} {peer} {} {ip} {peer} != {{ {} }} ", block.cidr, except.join(", ")));
                }
            }
            m
        }
    };
    let port_matches: Vec<String> = match &rule.ports {
        None => vec![String::new()],
        Some(ports) => port_matches(sets, &set, ports, f),
    };
    for p in &peer_matches {
        for q in &port_matches {
            writeln!(body, "\t\t{p}{q}accept").unwrap();
        }
    }
}

fn port_matches(sets: &mut String, set: &str, ports: &Ports, f: Family) -> Vec<String> {
    let mut m = Vec::new();
    for (protocol, ports) in &ports.numbered {
        match ports {
            PortSet::All => m.push(format!("meta l4proto {} ", protocol.nft())),
            PortSet::Ranges(r) => {
                let list: Vec<String> =
                    r.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
                let list = if list.len() == 1 { list[0].clone() } else { format!("{{ {} }}", list.join(", ")) };
                m.push(format!("{} dport {list} ", protocol.nft()));
            }
        }
    }
    if ports.named {
        let name = format!("{set}_ports{}", f.suffix());
        let elements: Vec<String> = ports
            .resolved
            .iter()
            .filter(|(ip, _, _)| f.matches(ip))
            .map(|(ip, proto, port): &(IpAddr, Protocol, u16)| format!("{ip} . {} . {port}", proto.nft()))
            .collect();
        write_set(sets, &name, &format!("{} . inet_proto . inet_service", f.addr_type()), &elements);
        m.push(format!("{} daddr . meta l4proto . th dport @{name} ", f.expr()));
    }
    m
}

fn addr_set<'a>(out: &mut String, name: &str, f: Family, addrs: impl Iterator<Item = &'a IpAddr>) {
    let elements: Vec<String> = addrs.filter(|a| f.matches(a)).map(|a| a.to_string()).collect();
    write_set(out, name, f.addr_type(), &elements);
}

/// A set; elements in the order given (addresses sorted as addresses, not as text).
fn write_set(out: &mut String, name: &str, ty: &str, elements: &[String]) {
    writeln!(out, "\tset {name} {{\n\t\ttype {ty}").unwrap();
    if !elements.is_empty() {
        let list: Vec<&str> = elements.iter().map(String::as_str).collect();
        writeln!(out, "\t\telements = {{ {} }}", list.join(", ")).unwrap();
    }
    out.push_str("\t}\n");
}

#[cfg(test)]
mod tests;
