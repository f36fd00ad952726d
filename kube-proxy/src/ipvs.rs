//! The IPVS proxier (upstream's `pkg/proxy/ipvs/proxier.go`): every Service IP (ClusterIP, externalIPs, load
//! balancer IPs) is bound to the `kube-ipvs0` dummy interface ([`netlink`]) and becomes an IPVS virtual server
//! per IP:port:protocol with the configured scheduler (`rr` by default; `lc`, `sh`, `mh`...), NodePorts become
//! virtual servers on the node's addresses, and each usable endpoint is a masquerading real server ([`ipvsadm`]).
//! `sessionAffinity: ClientIP` is IPVS persistence with the Service's timeout. Removed real servers are drained
//! ([`gracefultermination`]). A Service without endpoints keeps its virtual server with no real server, which
//! IPVS answers with ICMP port unreachable (a refused connection), as upstream.
//!
//! Masquerading and filtering stay in iptables, matched through upstream's ip sets ([`ipset`]: `KUBE-CLUSTER-IP`,
//! `KUBE-LOOP-BACK`, `KUBE-NODE-PORT-TCP`...) so the rules do not grow with the number of Services:
//! `KUBE-SERVICES`, `KUBE-NODE-PORT`, `KUBE-LOAD-BALANCER`, `KUBE-POSTROUTING`, `KUBE-MARK-MASQ`, `KUBE-FORWARD`,
//! `KUBE-IPVS-FILTER`... written whole with `iptables-restore --noflush` each sync.
//!
//! Every tool runs through [`Exec`]: `ipvsadm -Ln` reads the virtual servers and their connection counts,
//! `ipvsadm-restore` applies the difference in one call, `ipset save`/`ipset restore -exist` the set entries,
//! `ip` the dummy interface. (No maintained crate speaks IPVS's generic netlink family; Debian's `ipvsadm` is
//! that protocol's reference client, and going through `Exec` keeps the recording fake for the golden tests.)

pub mod gracefultermination;
pub mod ipset;
pub mod ipvsadm;
pub mod netlink;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnetwork::IpNetwork;

use self::gracefultermination::Removal;
use self::ipset::Entries;
use self::ipvsadm::{VirtualServer, VirtualServerState, VsKey};
use crate::exec::{Exec, Output};
use crate::localdetector::LocalDetector;
use crate::nodeportaddresses::NodePortAddresses;
use crate::proxier::{Error, Proxier, Result, SyncInput, SyncStats};
use crate::serviceport::{IpFamily, Protocol, ServicePort};
use crate::topology::categorize_endpoints;

pub const KUBE_SERVICES: &str = "KUBE-SERVICES";
pub const KUBE_PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
pub const KUBE_SOURCE_RANGES_FIREWALL: &str = "KUBE-SOURCE-RANGES-FIREWALL";
pub const KUBE_POSTROUTING: &str = "KUBE-POSTROUTING";
pub const KUBE_MARK_MASQ: &str = "KUBE-MARK-MASQ";
pub const KUBE_NODE_PORT: &str = "KUBE-NODE-PORT";
pub const KUBE_FORWARD: &str = "KUBE-FORWARD";
pub const KUBE_LOAD_BALANCER: &str = "KUBE-LOAD-BALANCER";
pub const KUBE_IPVS_FILTER: &str = "KUBE-IPVS-FILTER";
pub const KUBE_IPVS_OUT_FILTER: &str = "KUBE-IPVS-OUT-FILTER";

/// Upstream's `defaultScheduler`.
pub const DEFAULT_SCHEDULER: &str = "rr";

/// Jumps from the built-in chains (upstream's `iptablesJumpChain`): table, built-in chain, our chain, comment.
const JUMP_CHAINS: &[(&str, &str, &str, &str)] = &[
    ("nat", "OUTPUT", KUBE_SERVICES, "kubernetes service portals"),
    ("nat", "PREROUTING", KUBE_SERVICES, "kubernetes service portals"),
    ("nat", "POSTROUTING", KUBE_POSTROUTING, "kubernetes postrouting rules"),
    ("filter", "FORWARD", KUBE_FORWARD, "kubernetes forwarding rules"),
    ("filter", "INPUT", KUBE_NODE_PORT, "kubernetes health check rules"),
    ("filter", "INPUT", KUBE_PROXY_FIREWALL, "kube-proxy firewall rules"),
    ("filter", "FORWARD", KUBE_PROXY_FIREWALL, "kube-proxy firewall rules"),
    ("filter", "INPUT", KUBE_IPVS_FILTER, "kubernetes ipvs access filter"),
    ("filter", "OUTPUT", KUBE_IPVS_OUT_FILTER, "kubernetes ipvs access filter"),
];

/// Our chains per table (upstream's `iptablesChains`).
const NAT_CHAINS: &[&str] = &[KUBE_SERVICES, KUBE_POSTROUTING, KUBE_NODE_PORT, KUBE_LOAD_BALANCER, KUBE_MARK_MASQ];
const FILTER_CHAINS: &[&str] = &[
    KUBE_FORWARD,
    KUBE_NODE_PORT,
    KUBE_PROXY_FIREWALL,
    KUBE_SOURCE_RANGES_FIREWALL,
    KUBE_IPVS_FILTER,
    KUBE_IPVS_OUT_FILTER,
];

/// Sets matched by one generic rule (upstream's `ipsetWithIptablesChain`): set, table, from chain, target,
/// match directions, protocol. The `-LOCAL` node port sets come before the plain ones.
const SET_RULES: &[(&str, &str, &str, &str, &str, &str)] = &[
    (ipset::LOOP_BACK, "nat", KUBE_POSTROUTING, "MASQUERADE", "dst,dst,src", ""),
    (ipset::LOAD_BALANCER, "nat", KUBE_SERVICES, KUBE_LOAD_BALANCER, "dst,dst", ""),
    (ipset::LOAD_BALANCER_LOCAL, "nat", KUBE_LOAD_BALANCER, "RETURN", "dst,dst", ""),
    (ipset::NODE_PORT_LOCAL_TCP, "nat", KUBE_NODE_PORT, "RETURN", "dst", "tcp"),
    (ipset::NODE_PORT_TCP, "nat", KUBE_NODE_PORT, KUBE_MARK_MASQ, "dst", "tcp"),
    (ipset::NODE_PORT_LOCAL_UDP, "nat", KUBE_NODE_PORT, "RETURN", "dst", "udp"),
    (ipset::NODE_PORT_UDP, "nat", KUBE_NODE_PORT, KUBE_MARK_MASQ, "dst", "udp"),
    (ipset::NODE_PORT_LOCAL_SCTP, "nat", KUBE_NODE_PORT, "RETURN", "dst,dst", "sctp"),
    (ipset::NODE_PORT_SCTP, "nat", KUBE_NODE_PORT, KUBE_MARK_MASQ, "dst,dst", "sctp"),
    (ipset::LOAD_BALANCER_FW, "filter", KUBE_PROXY_FIREWALL, KUBE_SOURCE_RANGES_FIREWALL, "dst,dst", ""),
    (ipset::LOAD_BALANCER_SOURCE_CIDR, "filter", KUBE_SOURCE_RANGES_FIREWALL, "RETURN", "dst,dst,src", ""),
    (ipset::LOAD_BALANCER_SOURCE_IP, "filter", KUBE_SOURCE_RANGES_FIREWALL, "RETURN", "dst,dst,src", ""),
];

/// The `ipvs` section of KubeProxyConfiguration that shapes the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsSettings {
    /// `scheduler`: `rr`, `wrr`, `lc`, `wlc`, `lblc`, `lblcr`, `sh`, `dh`, `sed`, `nq`, `mh`...
    pub scheduler: String,
    /// `strictARP`: `arp_ignore=1`, `arp_announce=2`, so the Service IPs on `kube-ipvs0` are never announced.
    pub strict_arp: bool,
    /// `tcpTimeout`, `tcpFinTimeout`, `udpTimeout` (`ipvsadm --set`; all zero leaves the kernel's values).
    pub tcp_timeout: Duration,
    pub tcp_fin_timeout: Duration,
    pub udp_timeout: Duration,
    /// `excludeCIDRs`: virtual servers in these ranges are never deleted.
    pub exclude_cidrs: Vec<IpNetwork>,
}

impl Default for IpvsSettings {
    fn default() -> Self {
        IpvsSettings {
            scheduler: DEFAULT_SCHEDULER.into(),
            strict_arp: false,
            tcp_timeout: Duration::ZERO,
            tcp_fin_timeout: Duration::ZERO,
            udp_timeout: Duration::ZERO,
            exclude_cidrs: Vec::new(),
        }
    }
}

/// A buffer of iptables-restore lines.
#[derive(Default)]
struct Lines(String);

impl Lines {
    fn line(&mut self, args: std::fmt::Arguments<'_>) {
        let _ = self.0.write_fmt(args);
        self.0.push('\n');
    }

    fn count(&self) -> usize {
        self.0.lines().count()
    }
}

/// What one sync wants in the kernel.
#[derive(Default)]
struct Desired {
    servers: BTreeMap<VsKey, (VirtualServer, BTreeSet<SocketAddr>)>,
    sets: Entries,
    bind: BTreeSet<IpAddr>,
    /// Load balancer IP, protocol, port the node itself may not reach (no source range covers the node).
    no_node_access: Vec<(IpAddr, &'static str, u16)>,
    no_local_internal: BTreeSet<String>,
    no_local_external: BTreeSet<String>,
}

impl Desired {
    fn entry(&mut self, set: &'static str, e: String) {
        self.sets.entry(set).or_default().insert(e);
    }

    fn has(&self, set: &str) -> bool {
        self.sets.get(set).is_some_and(|s| !s.is_empty())
    }
}

fn run(exec: &dyn Exec, program: &str, args: &[&str], stdin: Option<&str>) -> Result<Output> {
    exec.run(program, args, stdin)
        .map_err(|source| Error::Exec { cmd: format!("{program} {}", args.join(" ")), source })
}

fn must(exec: &dyn Exec, program: &str, args: &[&str], stdin: Option<&str>) -> Result<Output> {
    let out = run(exec, program, args, stdin)?;
    if !out.success() {
        return Err(Error::Tool {
            cmd: format!("{program} {}", args.join(" ")),
            stderr: out.stderr.trim().to_string(),
        });
    }
    Ok(out)
}

fn iptables_bin(family: IpFamily, tool: &str) -> String {
    match family {
        IpFamily::V4 => format!("ip{tool}"),
        IpFamily::V6 => format!("ip6{tool}"),
    }
}

/// The IPVS proxier for one IP family.
pub struct IpvsProxier {
    family: IpFamily,
    exec: Arc<dyn Exec>,
    masquerade_all: bool,
    masquerade_mark: String,
    local_detector: LocalDetector,
    node_port_addresses: NodePortAddresses,
    node_ip: Option<IpAddr>,
    settings: IpvsSettings,
    /// What our ip sets hold after the last successful sync (None: read them with `ipset save` first).
    applied_sets: Option<Entries>,
    /// Sysctls and IPVS timeouts were set.
    system_configured: bool,
}

impl IpvsProxier {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        family: IpFamily,
        exec: Arc<dyn Exec>,
        masquerade_all: bool,
        masquerade_bit: u32,
        local_detector: LocalDetector,
        node_port_addresses: NodePortAddresses,
        node_ip: Option<IpAddr>,
        mut settings: IpvsSettings,
    ) -> Self {
        if settings.scheduler.is_empty() {
            tracing::info!("IPVS scheduler not specified, use rr by default");
            settings.scheduler = DEFAULT_SCHEDULER.into();
        }
        settings.exclude_cidrs.retain(|c| family.matches(&c.ip()));
        IpvsProxier {
            family,
            exec,
            masquerade_all,
            masquerade_mark: format!("{:#08x}", 1u32 << masquerade_bit),
            local_detector,
            node_port_addresses,
            node_ip,
            settings,
            applied_sets: None,
            system_configured: false,
        }
    }

    /// Whether this node can run the IPVS proxier (upstream's `CanUseIPVSProxier`): `ipset` is at least 6.0 and
    /// the kernel answers IPVS requests (`ipvsadm -Ln` fails with "Protocol not available" without `ip_vs`).
    pub fn can_use(exec: &dyn Exec) -> std::result::Result<(), String> {
        let v = exec.run("ipset", &["version"], None).map_err(|e| format!("error getting ipset version: {e}"))?;
        let major = v
            .stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix('v'))
            .and_then(|w| w.split('.').next())
            .and_then(|m| m.parse::<u32>().ok());
        match major {
            Some(m) if m >= 6 => {}
            _ if !v.success() => return Err(format!("error getting ipset version: {}", v.stderr.trim())),
            _ => return Err(format!("ipset version {:?} is less than min required version 6.0", v.stdout.trim())),
        }
        let out = exec.run("ipvsadm", &["-Ln"], None).map_err(|e| format!("running ipvsadm: {e}"))?;
        if !out.success() {
            return Err(format!("IPVS not supported by the kernel: {}", out.stderr.trim()));
        }
        Ok(())
    }

    /// The sysctls upstream's NewProxier sets, and the IPVS timeouts (`ipvsadm --set`). Failures are logged.
    fn configure_system(&self) {
        let mut sysctls = vec![
            "net.ipv4.vs.conntrack=1",
            "net.ipv4.vs.expire_nodest_conn=1",
            "net.ipv4.vs.expire_quiescent_template=1",
            "net.ipv4.ip_forward=1",
        ];
        if self.settings.strict_arp {
            sysctls.extend(["net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2"]);
        }
        let mut args = vec!["-q", "-w"];
        args.extend(sysctls);
        match self.exec.run("sysctl", &args, None) {
            Ok(o) if o.success() => {}
            Ok(o) => tracing::warn!(stderr = %o.stderr.trim(), "cannot set the IPVS sysctls"),
            Err(e) => tracing::warn!(error = %e, "cannot set the IPVS sysctls"),
        }
        let s = &self.settings;
        if !(s.tcp_timeout.is_zero() && s.tcp_fin_timeout.is_zero() && s.udp_timeout.is_zero()) {
            let secs = [s.tcp_timeout, s.tcp_fin_timeout, s.udp_timeout].map(|d| d.as_secs().to_string());
            match self.exec.run("ipvsadm", &["--set", &secs[0], &secs[1], &secs[2]], None) {
                Ok(o) if o.success() => {}
                Ok(o) => tracing::error!(stderr = %o.stderr.trim(), "failed to configure IPVS timeouts"),
                Err(e) => tracing::error!(error = %e, "failed to configure IPVS timeouts"),
            }
        }
    }

    fn jump_args(dst: &str, comment: &str) -> [String; 6] {
        ["-m".into(), "comment".into(), "--comment".into(), comment.into(), "-j".into(), dst.into()]
    }

    /// Our chains exist and the built-in chains jump to them (upstream's `createAndLinkKubeChain`).
    fn ensure_jumps(&self) -> Result<()> {
        let iptables = iptables_bin(self.family, "tables");
        let exec = self.exec.as_ref();
        for (table, chains) in [("nat", NAT_CHAINS), ("filter", FILTER_CHAINS)] {
            for chain in chains {
                // "Chain already exists" is fine.
                run(exec, &iptables, &["-w", "-t", table, "-N", chain], None)?;
            }
        }
        for (table, src, dst, comment) in JUMP_CHAINS {
            let rule = Self::jump_args(dst, comment);
            let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
            let check: Vec<&str> = ["-w", "-t", table, "-C", src].into_iter().chain(rule.iter().copied()).collect();
            if run(exec, &iptables, &check, None)?.success() {
                continue;
            }
            let insert: Vec<&str> = ["-w", "-t", table, "-I", src].into_iter().chain(rule.iter().copied()).collect();
            must(exec, &iptables, &insert, None)?;
        }
        Ok(())
    }

    fn virtual_server(&self, ip: IpAddr, port: u16, svc: &ServicePort) -> VirtualServer {
        let mut sched_flags = Vec::new();
        if self.settings.scheduler == "mh" {
            sched_flags.push(ipvsadm::MH_PORT_FLAG.to_string());
        }
        VirtualServer {
            key: VsKey::new(ip, port, svc.protocol),
            scheduler: self.settings.scheduler.clone(),
            persistence: svc.sticky_max_age_seconds,
            sched_flags,
        }
    }

    /// Everything the Services and endpoints want (upstream's loop over `svcPortMap` in `syncProxyRules`).
    fn desired(&self, input: &SyncInput<'_>, node_addrs: &BTreeSet<IpAddr>) -> Desired {
        let mut d = Desired::default();
        let has_node_port = input.svc_port_map.values().any(|s| s.node_port != 0);
        let node_ips: Vec<IpAddr> = if !has_node_port {
            Vec::new()
        } else if self.node_port_addresses.match_all() {
            node_addrs.iter().copied().collect()
        } else {
            match self.node_port_addresses.node_ips(self.exec.as_ref()) {
                Ok(ips) => ips.into_iter().filter(|ip| self.family.matches(ip) && !ip.is_loopback()).collect(),
                Err(e) => {
                    tracing::error!(error = %e, "failed to get node IP address matching nodeport cidr");
                    Vec::new()
                }
            }
        };

        for (svc_name, svc) in input.svc_port_map {
            let proto = svc.protocol.lower();
            let all = input.endpoints_map.get(svc_name).map(Vec::as_slice).unwrap_or_default();
            let cat = categorize_endpoints(all, svc, input.node_labels);
            let ns_name = svc_name.service.to_string();
            // The real servers of one virtual server (upstream's `syncEndpoint`): the local endpoints when the
            // policy asks for them and there are some, the cluster-wide ones otherwise.
            let real_servers = |only_local: bool, d: &mut Desired| -> BTreeSet<SocketAddr> {
                let eps = if only_local {
                    if !cat.local.is_empty() {
                        &cat.local
                    } else {
                        if cat.has_any && svc.internal_policy_local {
                            d.no_local_internal.insert(ns_name.clone());
                        }
                        if cat.has_any && svc.external_policy_local {
                            d.no_local_external.insert(ns_name.clone());
                        }
                        &cat.cluster
                    }
                } else {
                    &cat.cluster
                };
                eps.iter().map(|e| e.addr()).collect()
            };

            // Hairpin: a local endpoint reaching itself through the Service is masqueraded.
            for ep in all.iter().filter(|e| e.is_local) {
                d.entry(ipset::LOOP_BACK, format!("{},{proto}:{},{}", ep.ip, ep.port, ep.ip));
            }

            let (cip, port) = (svc.cluster_ip, svc.port);
            d.entry(ipset::CLUSTER_IP, format!("{cip},{proto}:{port}"));
            let vs = self.virtual_server(cip, port, svc);
            let rs = real_servers(svc.internal_policy_local, &mut d);
            d.servers.insert(vs.key, (vs, rs));
            d.bind.insert(cip);

            for ip in &svc.external_ips {
                let set = if svc.external_policy_local { ipset::EXTERNAL_IP_LOCAL } else { ipset::EXTERNAL_IP };
                d.entry(set, format!("{ip},{proto}:{port}"));
                let vs = self.virtual_server(*ip, port, svc);
                let rs = real_servers(svc.external_policy_local, &mut d);
                d.servers.insert(vs.key, (vs, rs));
                // Never bind an address some other interface already has.
                if !node_addrs.contains(ip) {
                    d.bind.insert(*ip);
                }
            }

            for ip in &svc.load_balancer_vips {
                let entry = format!("{ip},{proto}:{port}");
                d.entry(ipset::LOAD_BALANCER, entry.clone());
                if svc.external_policy_local {
                    d.entry(ipset::LOAD_BALANCER_LOCAL, entry.clone());
                }
                if !svc.load_balancer_source_ranges.is_empty() {
                    d.entry(ipset::LOAD_BALANCER_FW, entry.clone());
                    let mut allow_from_node = false;
                    for cidr in &svc.load_balancer_source_ranges {
                        d.entry(ipset::LOAD_BALANCER_SOURCE_CIDR, format!("{entry},{cidr}"));
                        allow_from_node |= self.node_ip.is_some_and(|n| cidr.contains(n));
                    }
                    if allow_from_node {
                        d.entry(ipset::LOAD_BALANCER_SOURCE_IP, format!("{entry},{ip}"));
                    } else {
                        d.no_node_access.push((*ip, proto, port));
                    }
                }
                let vs = self.virtual_server(*ip, port, svc);
                let rs = real_servers(svc.external_policy_local, &mut d);
                d.servers.insert(vs.key, (vs, rs));
                if !node_addrs.contains(ip) {
                    d.bind.insert(*ip);
                }
            }

            if svc.node_port != 0 && !node_ips.is_empty() {
                let np = svc.node_port;
                let (set, local_set, entries): (&'static str, &'static str, Vec<String>) = match svc.protocol {
                    Protocol::Tcp => (ipset::NODE_PORT_TCP, ipset::NODE_PORT_LOCAL_TCP, vec![np.to_string()]),
                    Protocol::Udp => (ipset::NODE_PORT_UDP, ipset::NODE_PORT_LOCAL_UDP, vec![np.to_string()]),
                    Protocol::Sctp => (
                        ipset::NODE_PORT_SCTP,
                        ipset::NODE_PORT_LOCAL_SCTP,
                        node_ips.iter().map(|ip| format!("{ip},sctp:{np}")).collect(),
                    ),
                };
                for e in &entries {
                    d.entry(set, e.clone());
                    if svc.external_policy_local {
                        d.entry(local_set, e.clone());
                    }
                }
                for ip in &node_ips {
                    let vs = self.virtual_server(*ip, np, svc);
                    let rs = real_servers(svc.external_policy_local, &mut d);
                    d.servers.insert(vs.key, (vs, rs));
                }
            }

            if svc.health_check_node_port != 0 {
                d.entry(ipset::HEALTH_CHECK_NODE_PORT, svc.health_check_node_port.to_string());
            }
        }
        for ip in &d.bind.clone() {
            d.entry(ipset::IPVS_IPS, ip.to_string());
        }
        d
    }

    /// The `ipvsadm-restore` lines moving the kernel from `current` to `desired`.
    fn ipvs_changes(&self, current: &[VirtualServerState], desired: &Desired) -> Vec<String> {
        let mut lines = Vec::new();
        let current: BTreeMap<VsKey, &VirtualServerState> = current.iter().map(|s| (s.vs.key, s)).collect();
        for (key, (vs, want)) in &desired.servers {
            let Some(cur) = current.get(key) else {
                lines.push(vs.add_line());
                lines.extend(want.iter().map(|rs| ipvsadm::real_server_line(false, key, *rs, 1)));
                continue;
            };
            if cur.vs != *vs {
                lines.push(vs.edit_line());
            }
            let present: BTreeMap<SocketAddr, &ipvsadm::RealServerState> =
                cur.real_servers.iter().map(|r| (r.addr, r)).collect();
            for rs in want {
                match present.get(rs) {
                    None => lines.push(ipvsadm::real_server_line(false, key, *rs, 1)),
                    // Back from graceful termination, or reweighed by someone: weight 1 again.
                    Some(r) if r.weight != 1 => lines.push(ipvsadm::real_server_line(true, key, *rs, 1)),
                    Some(_) => {}
                }
            }
            for r in cur.real_servers.iter().filter(|r| !want.contains(&r.addr)) {
                match gracefultermination::plan(key.protocol, r) {
                    Removal::Delete => lines.push(ipvsadm::delete_rs_line(key, r.addr)),
                    Removal::Quiesce => lines.push(ipvsadm::real_server_line(true, key, r.addr, 0)),
                    Removal::Wait => {}
                }
            }
        }
        // Virtual servers of this family nobody wants any more (upstream's `cleanLegacyService`).
        for key in current.keys() {
            if key.family() == self.family
                && !desired.servers.contains_key(key)
                && !self.settings.exclude_cidrs.iter().any(|c| c.contains(key.addr.ip()))
            {
                lines.push(ipvsadm::delete_vs_line(key));
            }
        }
        lines
    }

    /// The iptables-restore input (upstream's `writeIptablesRules`).
    fn iptables_rules(&self, d: &Desired) -> (String, usize, usize) {
        let fam = self.family;
        let set = |name: &str| ipset::set_name(name, fam);
        let comment = |name: &str| ipset::info(name).comment;
        let mark = &self.masquerade_mark;
        let (mut nat, mut filter) = (Lines::default(), Lines::default());

        let lo = if fam == IpFamily::V4 { "127.0.0.0/8" } else { "::1/128" };
        nat.line(format_args!("-A {KUBE_SERVICES} -s {lo} -j RETURN"));
        for (name, table, from, to, dirs, proto) in SET_RULES {
            if !d.has(name) {
                continue;
            }
            let p = if proto.is_empty() { String::new() } else { format!(" -p {proto}") };
            let rules = if *table == "nat" { &mut nat } else { &mut filter };
            rules.line(format_args!(
                "-A {from}{p} -m comment --comment \"{}\" -m set --match-set {} {dirs} -j {to}",
                comment(name),
                set(name)
            ));
        }
        if d.has(ipset::CLUSTER_IP) {
            let args = format!(
                "-A {KUBE_SERVICES} -m comment --comment \"{}\" -m set --match-set {}",
                comment(ipset::CLUSTER_IP),
                set(ipset::CLUSTER_IP)
            );
            if self.masquerade_all {
                nat.line(format_args!("{args} dst,dst -j {KUBE_MARK_MASQ}"));
            } else if self.local_detector.is_implemented() {
                nat.line(format_args!("{args} dst,dst {} -j {KUBE_MARK_MASQ}", self.local_detector.if_not_local()));
            } else {
                // The VIPs are local addresses, so the node reaching a Service picks the VIP as source: masquerade
                // node traffic coming from a Service IP.
                nat.line(format_args!("{args} src,dst -j {KUBE_MARK_MASQ}"));
            }
        }
        let external_ip_rules = |nat: &mut Lines, args: &str| {
            // Traffic from off the machine (not from a bridge, not from a local process), and traffic to external
            // IPs that happen to be local, is accepted.
            nat.line(format_args!("{args} -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT"));
            nat.line(format_args!("{args} -m addrtype --dst-type LOCAL -j ACCEPT"));
        };
        if d.has(ipset::EXTERNAL_IP) {
            let args = format!(
                "-A {KUBE_SERVICES} -m comment --comment \"{}\" -m set --match-set {} dst,dst",
                comment(ipset::EXTERNAL_IP),
                set(ipset::EXTERNAL_IP)
            );
            nat.line(format_args!("{args} -j {KUBE_MARK_MASQ}"));
            external_ip_rules(&mut nat, &args);
        }
        if d.has(ipset::EXTERNAL_IP_LOCAL) {
            let args = format!(
                "-A {KUBE_SERVICES} -m comment --comment \"{}\" -m set --match-set {} dst,dst",
                comment(ipset::EXTERNAL_IP_LOCAL),
                set(ipset::EXTERNAL_IP_LOCAL)
            );
            external_ip_rules(&mut nat, &args);
        }
        nat.line(format_args!("-A {KUBE_SERVICES} -m addrtype --dst-type LOCAL -j {KUBE_NODE_PORT}"));
        nat.line(format_args!("-A {KUBE_LOAD_BALANCER} -j {KUBE_MARK_MASQ}"));
        filter.line(format_args!("-A {KUBE_SOURCE_RANGES_FIREWALL} -j DROP"));
        for (ip, proto, port) in &d.no_node_access {
            filter.line(format_args!(
                "-A {KUBE_IPVS_OUT_FILTER} -s {ip} -m ipvs --vaddr {ip} --vproto {proto} --vport {port} -j DROP"
            ));
        }
        // Accept everything bound for a virtual server, whatever other rules say (must end KUBE-SERVICES).
        for name in [ipset::CLUSTER_IP, ipset::LOAD_BALANCER] {
            if d.has(name) {
                nat.line(format_args!("-A {KUBE_SERVICES} -m set --match-set {} dst,dst -j ACCEPT", set(name)));
            }
        }
        filter.line(format_args!(
            "-A {KUBE_FORWARD} -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {mark}/{mark} -j ACCEPT"
        ));
        filter.line(format_args!(
            "-A {KUBE_FORWARD} -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        ));
        filter.line(format_args!(
            "-A {KUBE_NODE_PORT} -m comment --comment \"{}\" -m set --match-set {} dst -j ACCEPT",
            comment(ipset::HEALTH_CHECK_NODE_PORT),
            set(ipset::HEALTH_CHECK_NODE_PORT)
        ));
        // Other ports of the Service IPs on kube-ipvs0 are not the host's: reject new connections to them.
        for (name, dirs) in [
            (ipset::LOAD_BALANCER, "dst,dst"),
            (ipset::CLUSTER_IP, "dst,dst"),
            (ipset::EXTERNAL_IP, "dst,dst"),
            (ipset::EXTERNAL_IP_LOCAL, "dst,dst"),
            (ipset::HEALTH_CHECK_NODE_PORT, "dst"),
        ] {
            filter.line(format_args!("-A {KUBE_IPVS_FILTER} -m set --match-set {} {dirs} -j RETURN", set(name)));
        }
        filter.line(format_args!(
            "-A {KUBE_IPVS_FILTER} -m conntrack --ctstate NEW -m set --match-set {} dst -j REJECT",
            set(ipset::IPVS_IPS)
        ));
        nat.line(format_args!("-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN"));
        nat.line(format_args!("-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}"));
        nat.line(format_args!(
            "-A {KUBE_POSTROUTING} -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully"
        ));
        nat.line(format_args!("-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}"));

        let mut data = String::from("*nat\n");
        for c in NAT_CHAINS {
            let _ = writeln!(data, ":{c} - [0:0]");
        }
        data.push_str(&nat.0);
        data.push_str("COMMIT\n*filter\n");
        for c in FILTER_CHAINS {
            let _ = writeln!(data, ":{c} - [0:0]");
        }
        data.push_str(&filter.0);
        data.push_str("COMMIT\n");
        (data, nat.count(), filter.count())
    }

    /// Reads the virtual servers (`ipvsadm -Ln`).
    fn current_servers(&self) -> Result<Vec<VirtualServerState>> {
        let out = must(self.exec.as_ref(), "ipvsadm", &["-Ln"], None)?;
        Ok(ipvsadm::parse_list(&out.stdout))
    }

    /// Removes the virtual servers, `kube-ipvs0`, our iptables chains and jumps (both families) and our ip sets
    /// (upstream's `CleanupLeftovers`). As upstream, every virtual server is flushed (`ipvsadm -C`); nothing is
    /// done when the kernel has no IPVS. False when something failed.
    pub fn cleanup_leftovers(exec: &dyn Exec) -> bool {
        let mut ok = true;
        match exec.run("ipvsadm", &["-Ln"], None) {
            Ok(o) if o.success() => match exec.run("ipvsadm", &["-C"], None) {
                Ok(o) if o.success() => {}
                other => {
                    tracing::error!(result = ?other, "error flushing IPVS rules");
                    ok = false;
                }
            },
            // No IPVS in this kernel (or no ipvsadm): no virtual server can exist.
            _ => {}
        }
        ok &= netlink::delete_dummy_device(exec);
        for family in [IpFamily::V4, IpFamily::V6] {
            ok &= Self::cleanup_iptables(exec, family);
        }
        // After iptables: a set still referenced by a rule cannot be destroyed.
        if let Ok(o) = exec.run("ipset", &["list", "-n"], None)
            && o.success()
        {
            let existing: BTreeSet<&str> = o.stdout.lines().map(str::trim).collect();
            for name in ipset::all_names().iter().filter(|n| existing.contains(n.as_str())) {
                match exec.run("ipset", &["destroy", name], None) {
                    Ok(o) if o.success() => {}
                    other => {
                        tracing::error!(ipset = %name, result = ?other, "error removing ipset");
                        ok = false;
                    }
                }
            }
        }
        ok
    }

    fn cleanup_iptables(exec: &dyn Exec, family: IpFamily) -> bool {
        let iptables = iptables_bin(family, "tables");
        for (table, src, dst, comment) in JUMP_CHAINS {
            let rule = Self::jump_args(dst, comment);
            let args: Vec<&str> =
                ["-w", "-t", table, "-D", src].into_iter().chain(rule.iter().map(String::as_str)).collect();
            for _ in 0..4 {
                match exec.run(&iptables, &args, None) {
                    Ok(o) if o.success() => continue,
                    _ => break,
                }
            }
        }
        let mut ok = true;
        for (table, ours) in [("nat", NAT_CHAINS), ("filter", FILTER_CHAINS)] {
            let save = match exec.run(&iptables_bin(family, "tables-save"), &["-t", table], None) {
                Ok(o) if o.success() => o.stdout,
                _ => continue,
            };
            let existing: BTreeSet<&str> =
                save.lines().filter_map(|l| l.strip_prefix(':')?.split_whitespace().next()).collect();
            let chains: Vec<&&str> = ours.iter().filter(|c| existing.contains(**c)).collect();
            if chains.is_empty() {
                continue;
            }
            // Declaring a chain flushes it (so jumps between our chains go first), then each is deleted.
            let mut data = format!("*{table}\n");
            for c in &chains {
                let _ = writeln!(data, ":{c} - [0:0]");
            }
            for c in &chains {
                let _ = writeln!(data, "-X {c}");
            }
            data.push_str("COMMIT\n");
            match exec.run(
                &iptables_bin(family, "tables-restore"),
                &["-w", "5", "--noflush", "--counters"],
                Some(&data),
            ) {
                Ok(o) if o.success() => {}
                other => {
                    tracing::error!(table, result = ?other, "error removing iptables chains of the ipvs proxier");
                    ok = false;
                }
            }
        }
        ok
    }
}

impl Proxier for IpvsProxier {
    fn mode(&self) -> &'static str {
        "ipvs"
    }

    fn family(&self) -> IpFamily {
        self.family
    }

    fn periodic_full_sync(&self) -> bool {
        true
    }

    /// Every sync programs everything (as upstream's IPVS proxier; the ip sets keep the iptables side small).
    /// A full sync also re-checks the jump rules, the sysctls and re-reads the ip sets from the kernel.
    fn sync_rules(&mut self, input: &SyncInput<'_>) -> Result<SyncStats> {
        let exec = self.exec.clone();
        let exec = exec.as_ref();
        if !self.system_configured {
            self.configure_system();
            self.system_configured = true;
        }
        if !input.partial {
            self.ensure_jumps()?;
            self.applied_sets = None;
        }
        netlink::ensure_dummy_device(exec)?;
        let addrs = netlink::local_addresses(exec, self.family)?;
        let desired = self.desired(input, &addrs.node);

        // Virtual and real servers, in one ipvsadm-restore.
        let current = self.current_servers()?;
        let changes = self.ipvs_changes(&current, &desired);
        if !changes.is_empty() {
            let mut script = changes.join("\n");
            script.push('\n');
            must(exec, "ipvsadm-restore", &[], Some(&script))?;
        }
        // Service IPs onto kube-ipvs0.
        let to_bind: BTreeSet<IpAddr> = desired.bind.difference(&addrs.bound).copied().collect();
        netlink::apply_addresses(exec, true, &to_bind)?;

        // Ip set entries.
        let create = self.applied_sets.is_none();
        let current_sets = match self.applied_sets.take() {
            Some(s) => s,
            None => {
                let out = run(exec, "ipset", &["save"], None)?;
                ipset::parse_save(&out.stdout, self.family)
            }
        };
        let script = ipset::restore_script(self.family, &current_sets, &desired.sets, create);
        if !script.is_empty() {
            must(exec, "ipset", &["restore", "-exist"], Some(&script))?;
        }
        self.applied_sets = Some(desired.sets.clone());

        // iptables.
        let (data, nat_rules, filter_rules) = self.iptables_rules(&desired);
        must(exec, &iptables_bin(self.family, "tables-restore"), &["-w", "5", "--noflush", "--counters"], Some(&data))?;

        // Addresses of Services that are gone, last (upstream removes them after iptables too).
        let to_unbind: BTreeSet<IpAddr> = addrs.bound.difference(&desired.bind).copied().collect();
        netlink::apply_addresses(exec, false, &to_unbind)?;

        let mut stats = SyncStats {
            no_local_endpoints_internal: desired.no_local_internal.len(),
            no_local_endpoints_external: desired.no_local_external.len(),
            ..Default::default()
        };
        stats.counts.insert("nat".into(), nat_rules);
        stats.counts.insert("filter".into(), filter_rules);
        Ok(stats)
    }
}
