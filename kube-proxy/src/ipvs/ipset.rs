//! The ip sets the IPVS proxier matches in iptables (upstream's `pkg/proxy/ipvs/ipset.go`): upstream's names,
//! types and comments (IPv6 sets are named `KUBE-6-...`), entries spelled as `ipset save` prints them, and the
//! `ipset restore -exist` script that moves the kernel's sets from what they hold to what they should hold.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::serviceport::IpFamily;

pub const LOOP_BACK: &str = "KUBE-LOOP-BACK";
pub const CLUSTER_IP: &str = "KUBE-CLUSTER-IP";
pub const EXTERNAL_IP: &str = "KUBE-EXTERNAL-IP";
pub const EXTERNAL_IP_LOCAL: &str = "KUBE-EXTERNAL-IP-LOCAL";
pub const LOAD_BALANCER: &str = "KUBE-LOAD-BALANCER";
pub const LOAD_BALANCER_FW: &str = "KUBE-LOAD-BALANCER-FW";
pub const LOAD_BALANCER_LOCAL: &str = "KUBE-LOAD-BALANCER-LOCAL";
pub const LOAD_BALANCER_SOURCE_IP: &str = "KUBE-LOAD-BALANCER-SOURCE-IP";
pub const LOAD_BALANCER_SOURCE_CIDR: &str = "KUBE-LOAD-BALANCER-SOURCE-CIDR";
pub const NODE_PORT_TCP: &str = "KUBE-NODE-PORT-TCP";
pub const NODE_PORT_LOCAL_TCP: &str = "KUBE-NODE-PORT-LOCAL-TCP";
pub const NODE_PORT_UDP: &str = "KUBE-NODE-PORT-UDP";
pub const NODE_PORT_LOCAL_UDP: &str = "KUBE-NODE-PORT-LOCAL-UDP";
pub const NODE_PORT_SCTP: &str = "KUBE-NODE-PORT-SCTP-HASH";
pub const NODE_PORT_LOCAL_SCTP: &str = "KUBE-NODE-PORT-LOCAL-SCTP-HASH";
pub const HEALTH_CHECK_NODE_PORT: &str = "KUBE-HEALTH-CHECK-NODE-PORT";
pub const IPVS_IPS: &str = "KUBE-IPVS-IPS";

/// The set types kube-proxy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetType {
    HashIp,
    HashIpPort,
    HashIpPortIp,
    HashIpPortNet,
    BitmapPort,
}

impl SetType {
    pub fn as_str(&self) -> &'static str {
        match self {
            SetType::HashIp => "hash:ip",
            SetType::HashIpPort => "hash:ip,port",
            SetType::HashIpPortIp => "hash:ip,port,ip",
            SetType::HashIpPortNet => "hash:ip,port,net",
            SetType::BitmapPort => "bitmap:port",
        }
    }
}

/// One set: upstream's name (IPv4 spelling), type and the comment its iptables rules carry.
#[derive(Debug, Clone, Copy)]
pub struct SetInfo {
    pub name: &'static str,
    pub set_type: SetType,
    pub comment: &'static str,
}

/// Every set of upstream's `ipsetInfo`.
pub const SETS: &[SetInfo] = &[
    SetInfo {
        name: LOOP_BACK,
        set_type: SetType::HashIpPortIp,
        comment: "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose",
    },
    SetInfo {
        name: CLUSTER_IP,
        set_type: SetType::HashIpPort,
        comment: "Kubernetes service cluster ip + port for masquerade purpose",
    },
    SetInfo {
        name: EXTERNAL_IP,
        set_type: SetType::HashIpPort,
        comment: "Kubernetes service external ip + port for masquerade and filter purpose",
    },
    SetInfo {
        name: EXTERNAL_IP_LOCAL,
        set_type: SetType::HashIpPort,
        comment: "Kubernetes service external ip + port with externalTrafficPolicy=local",
    },
    SetInfo { name: LOAD_BALANCER, set_type: SetType::HashIpPort, comment: "Kubernetes service lb portal" },
    SetInfo {
        name: LOAD_BALANCER_FW,
        set_type: SetType::HashIpPort,
        comment: "Kubernetes service load balancer ip + port for load balancer with sourceRange",
    },
    SetInfo {
        name: LOAD_BALANCER_LOCAL,
        set_type: SetType::HashIpPort,
        comment: "Kubernetes service load balancer ip + port with externalTrafficPolicy=local",
    },
    SetInfo {
        name: LOAD_BALANCER_SOURCE_IP,
        set_type: SetType::HashIpPortIp,
        comment: "Kubernetes service load balancer ip + port + source IP for packet filter purpose",
    },
    SetInfo {
        name: LOAD_BALANCER_SOURCE_CIDR,
        set_type: SetType::HashIpPortNet,
        comment: "Kubernetes service load balancer ip + port + source cidr for packet filter purpose",
    },
    SetInfo {
        name: NODE_PORT_TCP,
        set_type: SetType::BitmapPort,
        comment: "Kubernetes nodeport TCP port for masquerade purpose",
    },
    SetInfo {
        name: NODE_PORT_LOCAL_TCP,
        set_type: SetType::BitmapPort,
        comment: "Kubernetes nodeport TCP port with externalTrafficPolicy=local",
    },
    SetInfo {
        name: NODE_PORT_UDP,
        set_type: SetType::BitmapPort,
        comment: "Kubernetes nodeport UDP port for masquerade purpose",
    },
    SetInfo {
        name: NODE_PORT_LOCAL_UDP,
        set_type: SetType::BitmapPort,
        comment: "Kubernetes nodeport UDP port with externalTrafficPolicy=local",
    },
    SetInfo {
        name: NODE_PORT_SCTP,
        set_type: SetType::HashIpPort,
        comment: "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'",
    },
    SetInfo {
        name: NODE_PORT_LOCAL_SCTP,
        set_type: SetType::HashIpPort,
        comment: "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'",
    },
    SetInfo {
        name: HEALTH_CHECK_NODE_PORT,
        set_type: SetType::BitmapPort,
        comment: "Kubernetes health check node port",
    },
    SetInfo { name: IPVS_IPS, set_type: SetType::HashIp, comment: "Addresses on the ipvs interface" },
];

/// The set's info by its IPv4 name.
pub fn info(name: &str) -> &'static SetInfo {
    SETS.iter().find(|s| s.name == name).expect("known ip set")
}

/// The kernel name of a set in a family: IPv6 sets are `KUBE-6-...`, cut to ipset's 31 characters (upstream's
/// `NewIPSet`). Port bitmaps have no family but are renamed all the same, as upstream does.
pub fn set_name(name: &str, family: IpFamily) -> String {
    match family {
        IpFamily::V4 => name.to_string(),
        IpFamily::V6 => {
            let mut n = name.replacen("KUBE-", "KUBE-6-", 1);
            n.truncate(31);
            n
        }
    }
}

/// Entries per set (IPv4 name), as `ipset save` prints them: `10.0.0.1,tcp:80`, `80`, `10.0.0.1,tcp:80,10.0.0.0/8`.
pub type Entries = BTreeMap<&'static str, BTreeSet<String>>;

/// `create` lines for every set of the family (`-exist` makes them idempotent).
fn create_lines(out: &mut String, family: IpFamily) {
    let inet = match family {
        IpFamily::V4 => "inet",
        IpFamily::V6 => "inet6",
    };
    for s in SETS {
        let name = set_name(s.name, family);
        let _ = match s.set_type {
            SetType::BitmapPort => writeln!(out, "create {name} bitmap:port range 0-65535"),
            t => writeln!(out, "create {name} {} family {inet} hashsize 1024 maxelem 65536", t.as_str()),
        };
    }
}

/// The `ipset restore -exist` script taking the sets from `current` to `desired` (sets missing from `current`
/// are treated as empty). Empty when nothing changes.
pub fn restore_script(family: IpFamily, current: &Entries, desired: &Entries, create: bool) -> String {
    let mut out = String::new();
    if create {
        create_lines(&mut out, family);
    }
    let empty = BTreeSet::new();
    let mut changed = false;
    for s in SETS {
        let name = set_name(s.name, family);
        let (cur, want) = (current.get(s.name).unwrap_or(&empty), desired.get(s.name).unwrap_or(&empty));
        for e in cur.difference(want) {
            let _ = writeln!(out, "del {name} {e}");
            changed = true;
        }
        for e in want.difference(cur) {
            let _ = writeln!(out, "add {name} {e}");
            changed = true;
        }
    }
    if changed || create { out } else { String::new() }
}

/// Parses `ipset save` output into the entries of our sets of this family.
pub fn parse_save(text: &str, family: IpFamily) -> Entries {
    let names: BTreeMap<String, &'static str> = SETS.iter().map(|s| (set_name(s.name, family), s.name)).collect();
    let mut out = Entries::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        match (f.next(), f.next(), f.next()) {
            (Some("create"), Some(set), _) => {
                if let Some(n) = names.get(set) {
                    out.entry(n).or_default();
                }
            }
            (Some("add"), Some(set), Some(entry)) => {
                if let Some(n) = names.get(set) {
                    out.entry(n).or_default().insert(entry.to_string());
                }
            }
            _ => {}
        }
    }
    out
}

/// Every set name kube-proxy may have created, both families.
pub fn all_names() -> Vec<String> {
    [IpFamily::V4, IpFamily::V6].iter().flat_map(|f| SETS.iter().map(move |s| set_name(s.name, *f))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_script() {
        assert_eq!(set_name(LOAD_BALANCER_SOURCE_CIDR, IpFamily::V6), "KUBE-6-LOAD-BALANCER-SOURCE-CID");
        assert_eq!(set_name(CLUSTER_IP, IpFamily::V6), "KUBE-6-CLUSTER-IP");
        let mut desired = Entries::new();
        desired.entry(CLUSTER_IP).or_default().insert("10.96.0.1,tcp:443".into());
        let mut current = Entries::new();
        current.entry(CLUSTER_IP).or_default().insert("10.96.0.9,tcp:80".into());
        let s = restore_script(IpFamily::V4, &current, &desired, false);
        assert_eq!(s, "del KUBE-CLUSTER-IP 10.96.0.9,tcp:80\nadd KUBE-CLUSTER-IP 10.96.0.1,tcp:443\n");
        assert_eq!(restore_script(IpFamily::V4, &desired, &desired, false), "");
        let s = restore_script(IpFamily::V6, &Entries::new(), &Entries::new(), true);
        assert!(s.contains("create KUBE-6-CLUSTER-IP hash:ip,port family inet6 hashsize 1024 maxelem 65536\n"));
        assert!(s.contains("create KUBE-6-NODE-PORT-TCP bitmap:port range 0-65535\n"));
        let save = "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536\n\
                    add KUBE-CLUSTER-IP 10.96.0.1,tcp:443\ncreate OTHER hash:ip\nadd OTHER 1.2.3.4\n\
                    create KUBE-NODE-PORT-TCP bitmap:port range 0-65535\n";
        let parsed = parse_save(save, IpFamily::V4);
        assert_eq!(parsed.len(), 2);
        assert!(parsed[CLUSTER_IP].contains("10.96.0.1,tcp:443") && parsed[NODE_PORT_TCP].is_empty());
    }
}
