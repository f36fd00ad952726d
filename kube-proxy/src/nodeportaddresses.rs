//! Which of the node's addresses accept NodePort traffic (upstream's `NodePortAddresses` in
//! `pkg/proxy/util/nodeport_addresses.go`): all local addresses by default, or those inside the CIDRs of
//! `nodePortAddresses` (`primary`: the node's own IPs).

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::Value;

use crate::exec::Exec;
use crate::serviceport::IpFamily;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePortAddresses {
    cidrs: Vec<IpNetwork>,
    match_all: bool,
}

impl NodePortAddresses {
    /// From `nodePortAddresses` for one family; `node_ips` resolves `primary`.
    pub fn new(family: IpFamily, addresses: &[String], node_ips: &[IpAddr]) -> Self {
        let mut cidrs = Vec::new();
        for a in addresses {
            if a == "primary" {
                cidrs.extend(node_ips.iter().filter(|ip| family.matches(ip)).map(|ip| IpNetwork::from(*ip)));
            } else if let Ok(c) = a.parse::<IpNetwork>()
                && family.matches(&c.ip())
            {
                cidrs.push(c);
            }
        }
        // Upstream: a family with no CIDR of its own after filtering accepts on every address of that family only
        // when nothing was configured at all.
        let match_all = addresses.is_empty();
        NodePortAddresses { cidrs, match_all }
    }

    /// Every local address accepts NodePorts (no `nodePortAddresses`).
    pub fn match_all(&self) -> bool {
        self.match_all
    }

    pub fn cidrs(&self) -> &[IpNetwork] {
        &self.cidrs
    }

    /// The local addresses inside the CIDRs (upstream's `GetNodeIPs`), read with `ip -j addr show`.
    pub fn node_ips(&self, exec: &dyn Exec) -> std::io::Result<Vec<IpAddr>> {
        let out = exec.run("ip", &["-j", "addr", "show"], None)?;
        if !out.success() {
            return Err(std::io::Error::other(format!("ip addr show: {}", out.stderr.trim())));
        }
        let links: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        let mut ips: Vec<IpAddr> = links
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| runtime::array(l, "/addr_info"))
            .filter_map(|a| a.get("local").and_then(Value::as_str)?.parse().ok())
            .filter(|ip: &IpAddr| self.cidrs.iter().any(|c| c.contains(*ip)))
            .collect();
        ips.sort();
        ips.dedup();
        Ok(ips)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{FakeExec, Output};

    #[test]
    fn filters_addresses() {
        let npa = NodePortAddresses::new(IpFamily::V4, &["192.168.0.0/16".into(), "2001:db8::/64".into()], &[]);
        assert!(!npa.match_all());
        assert_eq!(npa.cidrs().len(), 1);
        let exec = FakeExec::with_responder(|_, _| Output {
            stdout: r#"[{"ifname":"lo","addr_info":[{"local":"127.0.0.1"}]},
                        {"ifname":"eth0","addr_info":[{"local":"192.168.1.5"},{"local":"10.0.0.5"}]}]"#
                .into(),
            ..Default::default()
        });
        assert_eq!(npa.node_ips(&exec).unwrap(), vec!["192.168.1.5".parse::<IpAddr>().unwrap()]);
        let primary = NodePortAddresses::new(IpFamily::V4, &["primary".into()], &["10.0.0.5".parse().unwrap()]);
        assert_eq!(primary.node_ips(&exec).unwrap(), vec!["10.0.0.5".parse::<IpAddr>().unwrap()]);
        assert!(NodePortAddresses::new(IpFamily::V4, &[], &[]).match_all());
    }
}
