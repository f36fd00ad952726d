//! Tells pod traffic from other traffic (upstream's `LocalTrafficDetector` in `pkg/proxy/util/localdetector.go`),
//! as nft and iptables match expressions: by the cluster's or the node's pod CIDR, or by the interface pod
//! traffic arrives on (`detectLocalMode`).

use ipnetwork::IpNetwork;

/// A way to match traffic from this node's pods (or none).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LocalDetector {
    /// No way to tell: off-cluster masquerading of ClusterIP traffic is off (masqueradeAll still applies).
    #[default]
    NoOp,
    /// Source address in the cluster CIDR (`ClusterCIDR`) or the node's pod CIDR (`NodeCIDR`).
    Cidr(IpNetwork),
    /// Arriving on this bridge (`BridgeInterface`).
    Bridge(String),
    /// Arriving on an interface whose name starts with this (`InterfaceNamePrefix`).
    InterfacePrefix(String),
}

impl LocalDetector {
    pub fn is_implemented(&self) -> bool {
        !matches!(self, LocalDetector::NoOp)
    }

    /// nft expression matching pod traffic.
    pub fn if_local_nft(&self) -> String {
        match self {
            LocalDetector::NoOp => String::new(),
            LocalDetector::Cidr(c) => format!("{} saddr {c}", if c.is_ipv4() { "ip" } else { "ip6" }),
            LocalDetector::Bridge(b) => format!("iifname {b}"),
            LocalDetector::InterfacePrefix(p) => format!("iifname {p}*"),
        }
    }

    /// nft expression matching traffic not from pods.
    pub fn if_not_local_nft(&self) -> String {
        match self {
            LocalDetector::NoOp => String::new(),
            LocalDetector::Cidr(c) => format!("{} saddr != {c}", if c.is_ipv4() { "ip" } else { "ip6" }),
            LocalDetector::Bridge(b) => format!("iifname != {b}"),
            LocalDetector::InterfacePrefix(p) => format!("iifname != {p}*"),
        }
    }

    /// iptables arguments matching pod traffic.
    pub fn if_local(&self) -> String {
        match self {
            LocalDetector::NoOp => String::new(),
            LocalDetector::Cidr(c) => format!("-s {c}"),
            LocalDetector::Bridge(b) => format!("-i {b}"),
            LocalDetector::InterfacePrefix(p) => format!("-i {p}+"),
        }
    }

    /// iptables arguments matching traffic not from pods.
    pub fn if_not_local(&self) -> String {
        match self {
            LocalDetector::NoOp => String::new(),
            LocalDetector::Cidr(c) => format!("! -s {c}"),
            LocalDetector::Bridge(b) => format!("! -i {b}"),
            LocalDetector::InterfacePrefix(p) => format!("! -i {p}+"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions() {
        let d = LocalDetector::Cidr("10.0.0.0/8".parse().unwrap());
        assert_eq!(
            (d.if_local_nft(), d.if_not_local_nft()),
            ("ip saddr 10.0.0.0/8".into(), "ip saddr != 10.0.0.0/8".into())
        );
        assert_eq!((d.if_local(), d.if_not_local()), ("-s 10.0.0.0/8".into(), "! -s 10.0.0.0/8".into()));
        let d = LocalDetector::InterfacePrefix("veth".into());
        assert_eq!((d.if_local_nft(), d.if_not_local()), ("iifname veth*".into(), "! -i veth+".into()));
        assert!(!LocalDetector::NoOp.is_implemented());
    }
}
