//! The iptables proxier (upstream's `pkg/proxy/iptables/proxier.go`): `KUBE-SERVICES`, `KUBE-NODEPORTS`,
//! `KUBE-SVC-*`/`KUBE-SVL-*`/`KUBE-EXT-*`/`KUBE-FW-*`/`KUBE-SEP-*` chains named by upstream's hashes, written with
//! `iptables-restore --noflush`. A partial sync rewrites the top-level chains and only the chains of the
//! Services that changed (upstream's MinimizeIPTablesRestore); a full sync happens every `syncPeriod`.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use data_encoding::BASE32;

use crate::endpoint::Endpoint;
use crate::exec::Exec;
use crate::localdetector::LocalDetector;
use crate::nodeportaddresses::NodePortAddresses;
use crate::proxier::{Error, Proxier, Result, SyncInput, SyncStats};
use crate::serviceport::{IpFamily, ServicePort, ServicePortName};
use crate::topology::categorize_endpoints;

pub const KUBE_SERVICES: &str = "KUBE-SERVICES";
pub const KUBE_EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
pub const KUBE_NODEPORTS: &str = "KUBE-NODEPORTS";
pub const KUBE_POSTROUTING: &str = "KUBE-POSTROUTING";
pub const KUBE_MARK_MASQ: &str = "KUBE-MARK-MASQ";
pub const KUBE_FORWARD: &str = "KUBE-FORWARD";
pub const KUBE_PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";

/// Jumps from the built-in chains: table, our chain, built-in chain, comment, extra match.
const JUMP_CHAINS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "filter",
        KUBE_EXTERNAL_SERVICES,
        "INPUT",
        "kubernetes externally-visible service portals",
        "-m conntrack --ctstate NEW",
    ),
    (
        "filter",
        KUBE_EXTERNAL_SERVICES,
        "FORWARD",
        "kubernetes externally-visible service portals",
        "-m conntrack --ctstate NEW",
    ),
    ("filter", KUBE_NODEPORTS, "INPUT", "kubernetes health check service ports", ""),
    ("filter", KUBE_SERVICES, "FORWARD", "kubernetes service portals", "-m conntrack --ctstate NEW"),
    ("filter", KUBE_SERVICES, "OUTPUT", "kubernetes service portals", "-m conntrack --ctstate NEW"),
    ("filter", KUBE_FORWARD, "FORWARD", "kubernetes forwarding rules", ""),
    ("filter", KUBE_PROXY_FIREWALL, "INPUT", "kubernetes load balancer firewall", "-m conntrack --ctstate NEW"),
    ("filter", KUBE_PROXY_FIREWALL, "OUTPUT", "kubernetes load balancer firewall", "-m conntrack --ctstate NEW"),
    ("filter", KUBE_PROXY_FIREWALL, "FORWARD", "kubernetes load balancer firewall", "-m conntrack --ctstate NEW"),
    ("nat", KUBE_SERVICES, "OUTPUT", "kubernetes service portals", ""),
    ("nat", KUBE_SERVICES, "PREROUTING", "kubernetes service portals", ""),
    ("nat", KUBE_POSTROUTING, "POSTROUTING", "kubernetes postrouting rules", ""),
];

/// Upstream switches to "large cluster mode" (no iptables-save every sync) above this many endpoints.
const LARGE_CLUSTER_ENDPOINTS_THRESHOLD: usize = 1000;

/// The first 16 base32 characters of the SHA-256 of `s` (upstream's `portProtoHash`).
fn hash16(s: &str) -> String {
    let hash = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    BASE32.encode(hash.as_ref())[..16].to_string()
}

/// The per-Service chain names: `KUBE-SVC-`, `KUBE-SVL-`, `KUBE-EXT-`, `KUBE-FW-` + hash of `ns/svc:port` + protocol.
pub fn service_chain(prefix: &str, name: &ServicePortName) -> String {
    format!("{prefix}{}", hash16(&format!("{name}{}", name.protocol.lower())))
}

/// `KUBE-SEP-` + hash of `ns/svc:port` + protocol + `ip:port` (upstream's `servicePortEndpointChainName`).
pub fn endpoint_chain(name: &ServicePortName, ep: &Endpoint) -> String {
    format!("KUBE-SEP-{}", hash16(&format!("{name}{}{ep}", name.protocol.lower())))
}

/// Whether a chain is one of ours per Service or endpoint.
fn is_service_chain_name(chain: &str) -> bool {
    ["KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-"].iter().any(|p| chain.starts_with(p))
}

/// The chains declared in `iptables-save` output of one table.
fn chains_from_save(save: &str) -> BTreeSet<String> {
    save.lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// A buffer of iptables-restore lines.
#[derive(Default)]
struct Lines(String);

impl Lines {
    fn line(&mut self, args: std::fmt::Arguments<'_>) {
        let _ = self.0.write_fmt(args);
        self.0.push('\n');
    }

    fn chain(&mut self, chain: &str) {
        self.line(format_args!(":{chain} - [0:0]"));
    }

    fn count(&self) -> usize {
        self.0.lines().count()
    }
}

/// The iptables proxier for one IP family.
pub struct IptablesProxier {
    family: IpFamily,
    exec: Arc<dyn Exec>,
    masquerade_all: bool,
    masquerade_mark: String,
    local_detector: LocalDetector,
    node_port_addresses: NodePortAddresses,
    node_ip: Option<std::net::IpAddr>,
    sync_period: Duration,
    last_cleanup: Option<Instant>,
}

impl IptablesProxier {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        family: IpFamily,
        exec: Arc<dyn Exec>,
        masquerade_all: bool,
        masquerade_bit: u32,
        local_detector: LocalDetector,
        node_port_addresses: NodePortAddresses,
        node_ip: Option<std::net::IpAddr>,
        sync_period: Duration,
    ) -> Self {
        IptablesProxier {
            family,
            exec,
            masquerade_all,
            masquerade_mark: format!("{:#08x}", 1u32 << masquerade_bit),
            local_detector,
            node_port_addresses,
            node_ip,
            sync_period,
            last_cleanup: None,
        }
    }

    fn bin(family: IpFamily, tool: &str) -> String {
        match family {
            IpFamily::V4 => format!("ip{tool}"),
            IpFamily::V6 => format!("ip6{tool}"),
        }
    }

    fn run(exec: &dyn Exec, program: &str, args: &[&str], stdin: Option<&str>) -> Result<crate::exec::Output> {
        let cmd = format!("{program} {}", args.join(" "));
        exec.run(program, args, stdin).map_err(|source| Error::Exec { cmd, source })
    }

    fn split(args: &str) -> Vec<String> {
        // Comments are the only arguments with spaces; they are quoted.
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        for c in args.chars() {
            match c {
                '"' => quoted = !quoted,
                ' ' if !quoted => {
                    if !cur.is_empty() {
                        out.push(std::mem::take(&mut cur));
                    }
                }
                _ => cur.push(c),
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }

    fn jump_args(dst: &str, comment: &str, extra: &str) -> Vec<String> {
        let mut args = Self::split(extra);
        args.extend(["-m".into(), "comment".into(), "--comment".into(), comment.into(), "-j".into(), dst.into()]);
        args
    }

    /// Our chains exist and the built-in chains jump to them (upstream's EnsureChain and EnsureRule(Prepend)).
    fn ensure_jumps(&self) -> Result<()> {
        let iptables = Self::bin(self.family, "tables");
        for (table, dst, src, comment, extra) in JUMP_CHAINS {
            // "Chain already exists" is fine.
            Self::run(self.exec.as_ref(), &iptables, &["-w", "-t", table, "-N", dst], None)?;
            let rule = Self::jump_args(dst, comment, extra);
            let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
            let check: Vec<&str> = ["-w", "-t", table, "-C", src].iter().copied().chain(rule.iter().copied()).collect();
            if Self::run(self.exec.as_ref(), &iptables, &check, None)?.success() {
                continue;
            }
            let insert: Vec<&str> =
                ["-w", "-t", table, "-I", src].iter().copied().chain(rule.iter().copied()).collect();
            let out = Self::run(self.exec.as_ref(), &iptables, &insert, None)?;
            if !out.success() {
                return Err(Error::Tool { cmd: format!("{iptables} {}", insert.join(" ")), stderr: out.stderr });
            }
        }
        Ok(())
    }

    fn probability(n: usize) -> String {
        format!("{:.10}", 1.0 / n as f64)
    }

    fn write_service_to_endpoint_rules(
        nat_rules: &mut Lines,
        name: &str,
        svc: &ServicePort,
        chain: &str,
        endpoints: &[Arc<Endpoint>],
    ) {
        if let Some(timeout) = svc.sticky_max_age_seconds {
            for ep in endpoints {
                let sep = endpoint_chain(&svc.name, ep);
                nat_rules.line(format_args!(
                    "-A {chain} -m comment --comment \"{name} -> {ep}\" -m recent --name {sep} --rcheck --seconds {timeout} --reap -j {sep}"
                ));
            }
        }
        let n = endpoints.len();
        for (i, ep) in endpoints.iter().enumerate() {
            let sep = endpoint_chain(&svc.name, ep);
            if i < n - 1 {
                nat_rules.line(format_args!(
                    "-A {chain} -m comment --comment \"{name} -> {ep}\" -m statistic --mode random --probability {} -j {sep}",
                    Self::probability(n - i)
                ));
            } else {
                nat_rules.line(format_args!("-A {chain} -m comment --comment \"{name} -> {ep}\" -j {sep}"));
            }
        }
    }

    /// Removes every chain and jump of ours from both families' nat and filter tables (upstream's
    /// `CleanupLeftovers`). False when something failed.
    pub fn cleanup_leftovers(exec: &dyn Exec) -> bool {
        let mut ok = true;
        for family in [IpFamily::V4, IpFamily::V6] {
            let iptables = Self::bin(family, "tables");
            for (table, dst, src, comment, extra) in JUMP_CHAINS {
                let rule = Self::jump_args(dst, comment, extra);
                let args: Vec<&str> =
                    ["-w", "-t", table, "-D", src].iter().copied().chain(rule.iter().map(String::as_str)).collect();
                // Absent rules and chains are fine; repeated in case an older run inserted a jump twice.
                for _ in 0..4 {
                    match exec.run(&iptables, &args, None) {
                        Ok(o) if o.success() => continue,
                        _ => break,
                    }
                }
            }
            for (table, fixed) in [
                ("nat", &[KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ][..]),
                (
                    "filter",
                    &[KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL][..],
                ),
            ] {
                let save = match exec.run(&Self::bin(family, "tables-save"), &["-t", table], None) {
                    Ok(o) if o.success() => o.stdout,
                    Ok(_) | Err(_) => continue,
                };
                let existing = chains_from_save(&save);
                let mut chains = Lines::default();
                let mut rules = Lines::default();
                for chain in existing.iter().filter(|c| fixed.contains(&c.as_str()) || is_service_chain_name(c)) {
                    chains.chain(chain);
                    rules.line(format_args!("-X {chain}"));
                }
                if chains.0.is_empty() {
                    continue;
                }
                let data = format!("*{table}\n{}{}COMMIT\n", chains.0, rules.0);
                match exec.run(
                    &Self::bin(family, "tables-restore"),
                    &["-w", "5", "--noflush", "--counters"],
                    Some(&data),
                ) {
                    Ok(o) if o.success() => {}
                    Ok(o) => {
                        tracing::error!(table, stderr = %o.stderr.trim(), "failed to clean up iptables chains");
                        ok = false;
                    }
                    Err(e) => {
                        tracing::error!(table, error = %e, "failed to clean up iptables chains");
                        ok = false;
                    }
                }
            }
        }
        ok
    }
}

impl Proxier for IptablesProxier {
    fn mode(&self) -> &'static str {
        "iptables"
    }

    fn family(&self) -> IpFamily {
        self.family
    }

    fn periodic_full_sync(&self) -> bool {
        true
    }

    fn sync_rules(&mut self, input: &SyncInput<'_>) -> Result<SyncStats> {
        let partial = input.partial;
        if !partial {
            self.ensure_jumps()?;
        }
        let mark = self.masquerade_mark.clone();
        let (mut filter_chains, mut filter_rules) = (Lines::default(), Lines::default());
        let (mut nat_chains, mut nat_rules) = (Lines::default(), Lines::default());
        // Rules of unchanged Services in a partial sync are computed (for the counts) but not written.
        let (mut skipped_chains, mut skipped_rules) = (Lines::default(), Lines::default());
        for chain in [KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL] {
            filter_chains.chain(chain);
        }
        for chain in [KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ] {
            nat_chains.chain(chain);
        }
        nat_rules.line(format_args!("-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN"));
        nat_rules.line(format_args!("-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}"));
        nat_rules.line(format_args!(
            "-A {KUBE_POSTROUTING} -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully"
        ));
        nat_rules.line(format_args!("-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}"));

        let mut active_nat_chains: BTreeSet<String> = BTreeSet::new();
        let mut stats = SyncStats::default();
        let mut total_endpoints = 0;

        for (svc_name, svc) in input.svc_port_map {
            let protocol = svc.protocol.lower();
            let name = svc_name.to_string();
            let all_endpoints = input.endpoints_map.get(svc_name).map(Vec::as_slice).unwrap_or_default();
            total_endpoints += all_endpoints.len();
            let cat = categorize_endpoints(all_endpoints, svc, input.node_labels);

            let cluster_policy_chain = service_chain("KUBE-SVC-", svc_name);
            let uses_cluster_policy_chain = !cat.cluster.is_empty() && svc.uses_cluster_endpoints();
            let local_policy_chain = service_chain("KUBE-SVL-", svc_name);
            let uses_local_policy_chain = !cat.local.is_empty() && svc.uses_local_endpoints();

            let mut internal_chain = &cluster_policy_chain;
            let mut has_internal = cat.has_any;
            if svc.internal_policy_local {
                internal_chain = &local_policy_chain;
                has_internal &= !cat.local.is_empty();
            }
            let mut external_policy_chain = &cluster_policy_chain;
            let mut has_external = cat.has_any;
            if svc.external_policy_local {
                external_policy_chain = &local_policy_chain;
                has_external &= !cat.local.is_empty();
            }
            let external_chain = service_chain("KUBE-EXT-", svc_name);
            let uses_external_chain = cat.has_any && svc.externally_accessible();
            let fw_chain = service_chain("KUBE-FW-", svc_name);
            let uses_fw_chain =
                cat.has_any && !svc.load_balancer_vips.is_empty() && !svc.load_balancer_source_ranges.is_empty();
            let lb_chain = if uses_fw_chain { &fw_chain } else { &external_chain };

            let (mut internal_target, mut internal_comment) = ("", String::new());
            let (mut external_target, mut external_comment) = ("", String::new());
            if !cat.has_any {
                internal_target = "REJECT";
                internal_comment = format!("\"{name} has no endpoints\"");
                external_target = "REJECT";
                external_comment = internal_comment.clone();
            } else {
                if !has_internal {
                    internal_target = "DROP";
                    internal_comment = format!("\"{name} has no local endpoints\"");
                    stats.no_local_endpoints_internal += 1;
                }
                if !has_external {
                    external_target = "DROP";
                    external_comment = format!("\"{name} has no local endpoints\"");
                    stats.no_local_endpoints_external += 1;
                }
            }

            let (cip, port) = (svc.cluster_ip, svc.port);
            if has_internal {
                nat_rules.line(format_args!(
                    "-A {KUBE_SERVICES} -m comment --comment \"{name} cluster IP\" -m {protocol} -p {protocol} -d {cip} --dport {port} -j {internal_chain}"
                ));
            } else {
                filter_rules.line(format_args!(
                    "-A {KUBE_SERVICES} -m comment --comment {internal_comment} -m {protocol} -p {protocol} -d {cip} --dport {port} -j {internal_target}"
                ));
            }
            for ip in &svc.external_ips {
                if cat.has_any {
                    nat_rules.line(format_args!(
                        "-A {KUBE_SERVICES} -m comment --comment \"{name} external IP\" -m {protocol} -p {protocol} -d {ip} --dport {port} -j {external_chain}"
                    ));
                }
                if !has_external {
                    filter_rules.line(format_args!(
                        "-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {external_comment} -m {protocol} -p {protocol} -d {ip} --dport {port} -j {external_target}"
                    ));
                }
            }
            for ip in &svc.load_balancer_vips {
                if cat.has_any {
                    nat_rules.line(format_args!(
                        "-A {KUBE_SERVICES} -m comment --comment \"{name} loadbalancer IP\" -m {protocol} -p {protocol} -d {ip} --dport {port} -j {lb_chain}"
                    ));
                }
                if uses_fw_chain {
                    filter_rules.line(format_args!(
                        "-A {KUBE_PROXY_FIREWALL} -m comment --comment \"{name} traffic not accepted by {fw_chain}\" -m {protocol} -p {protocol} -d {ip} --dport {port} -j DROP"
                    ));
                }
            }
            if !has_external {
                for ip in &svc.load_balancer_vips {
                    filter_rules.line(format_args!(
                        "-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {external_comment} -m {protocol} -p {protocol} -d {ip} --dport {port} -j {external_target}"
                    ));
                }
            }
            if svc.node_port != 0 {
                let np = svc.node_port;
                if cat.has_any {
                    nat_rules.line(format_args!(
                        "-A {KUBE_NODEPORTS} -m comment --comment {name} -m {protocol} -p {protocol} --dport {np} -j {external_chain}"
                    ));
                }
                if !has_external {
                    filter_rules.line(format_args!(
                        "-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {external_comment} -m addrtype --dst-type LOCAL -m {protocol} -p {protocol} --dport {np} -j {external_target}"
                    ));
                }
            }
            if svc.health_check_node_port != 0 {
                filter_rules.line(format_args!(
                    "-A {KUBE_NODEPORTS} -m comment --comment \"{name} health check node port\" -m tcp -p tcp --dport {} -j ACCEPT",
                    svc.health_check_node_port
                ));
            }

            let skip = partial
                && !input.services.updated_services.contains(&svc_name.service)
                && !input.endpoints.updated_services.contains(&svc_name.service);
            let (chains, rules) =
                if skip { (&mut skipped_chains, &mut skipped_rules) } else { (&mut nat_chains, &mut nat_rules) };

            if has_internal {
                let args = format!(
                    "-m comment --comment \"{name} cluster IP\" -m {protocol} -p {protocol} -d {cip} --dport {port}"
                );
                if self.masquerade_all {
                    rules.line(format_args!("-A {internal_chain} {args} -j {KUBE_MARK_MASQ}"));
                } else if self.local_detector.is_implemented() {
                    rules.line(format_args!(
                        "-A {internal_chain} {args} {} -j {KUBE_MARK_MASQ}",
                        self.local_detector.if_not_local()
                    ));
                }
            }
            if uses_external_chain {
                chains.chain(&external_chain);
                active_nat_chains.insert(external_chain.clone());
                if !svc.external_policy_local {
                    rules.line(format_args!(
                        "-A {external_chain} -m comment --comment \"masquerade traffic for {name} external destinations\" -j {KUBE_MARK_MASQ}"
                    ));
                } else {
                    if self.local_detector.is_implemented() {
                        rules.line(format_args!(
                            "-A {external_chain} -m comment --comment \"pod traffic for {name} external destinations\" {} -j {cluster_policy_chain}",
                            self.local_detector.if_local()
                        ));
                    }
                    rules.line(format_args!(
                        "-A {external_chain} -m comment --comment \"masquerade LOCAL traffic for {name} external destinations\" -m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}"
                    ));
                    rules.line(format_args!(
                        "-A {external_chain} -m comment --comment \"route LOCAL traffic for {name} external destinations\" -m addrtype --src-type LOCAL -j {cluster_policy_chain}"
                    ));
                }
                if has_external {
                    rules.line(format_args!("-A {external_chain} -j {external_policy_chain}"));
                }
            }
            if uses_fw_chain {
                chains.chain(&fw_chain);
                active_nat_chains.insert(fw_chain.clone());
                let args = format!("-A {fw_chain} -m comment --comment \"{name} loadbalancer IP\"");
                let mut allow_from_node = false;
                for cidr in &svc.load_balancer_source_ranges {
                    rules.line(format_args!("{args} -s {cidr} -j {external_chain}"));
                    allow_from_node |= self.node_ip.is_some_and(|ip| cidr.contains(ip));
                }
                if allow_from_node {
                    for ip in &svc.load_balancer_vips {
                        rules.line(format_args!("{args} -s {ip} -j {external_chain}"));
                    }
                }
                rules.line(format_args!(
                    "-A {fw_chain} -m comment --comment \"other traffic to {name} will be dropped by KUBE-PROXY-FIREWALL\""
                ));
            }
            if uses_cluster_policy_chain {
                chains.chain(&cluster_policy_chain);
                active_nat_chains.insert(cluster_policy_chain.clone());
                Self::write_service_to_endpoint_rules(rules, &name, svc, &cluster_policy_chain, &cat.cluster);
            }
            if uses_local_policy_chain {
                chains.chain(&local_policy_chain);
                active_nat_chains.insert(local_policy_chain.clone());
                Self::write_service_to_endpoint_rules(rules, &name, svc, &local_policy_chain, &cat.local);
            }
            for ep in &cat.all_reachable {
                let sep = endpoint_chain(svc_name, ep);
                chains.chain(&sep);
                active_nat_chains.insert(sep.clone());
                rules.line(format_args!("-A {sep} -m comment --comment {name} -s {} -j {KUBE_MARK_MASQ}", ep.ip));
                let recent = if svc.sticky_max_age_seconds.is_some() {
                    format!(" -m recent --name {sep} --set")
                } else {
                    String::new()
                };
                rules.line(format_args!(
                    "-A {sep} -m comment --comment {name}{recent} -m {protocol} -p {protocol} -j DNAT --to-destination {ep}"
                ));
            }
        }

        // Stale per-Service chains: found with iptables-save, at most once per syncPeriod on large clusters.
        let large = total_endpoints > LARGE_CLUSTER_ENDPOINTS_THRESHOLD;
        if !large || self.last_cleanup.is_none_or(|t| t.elapsed() > self.sync_period) {
            let save = Self::run(self.exec.as_ref(), &Self::bin(self.family, "tables-save"), &["-t", "nat"], None)?;
            if save.success() {
                for chain in chains_from_save(&save.stdout) {
                    if is_service_chain_name(&chain) && !active_nat_chains.contains(&chain) {
                        nat_chains.chain(&chain);
                        nat_rules.line(format_args!("-X {chain}"));
                    }
                }
                self.last_cleanup = Some(Instant::now());
            }
        }

        let (ip_loopback, nodeports_comment) = (
            if self.family == IpFamily::V4 { "127.0.0.0/8" } else { "::1/128" },
            "\"kubernetes service nodeports; NOTE: this must be the last rule in this chain\"",
        );
        if self.node_port_addresses.match_all() {
            nat_rules.line(format_args!(
                "-A {KUBE_SERVICES} -m comment --comment {nodeports_comment} -m addrtype --dst-type LOCAL ! -d {ip_loopback} -j {KUBE_NODEPORTS}"
            ));
        } else {
            match self.node_port_addresses.node_ips(self.exec.as_ref()) {
                Ok(ips) => {
                    for ip in ips.into_iter().filter(|ip| self.family.matches(ip) && !ip.is_loopback()) {
                        nat_rules.line(format_args!(
                            "-A {KUBE_SERVICES} -m comment --comment {nodeports_comment} -d {ip} -j {KUBE_NODEPORTS}"
                        ));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "failed to get node IPs matching nodePortAddresses; NodePorts may not work")
                }
            }
        }
        filter_rules.line(format_args!("-A {KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP"));
        filter_rules.line(format_args!(
            "-A {KUBE_FORWARD} -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {mark}/{mark} -j ACCEPT"
        ));
        filter_rules.line(format_args!(
            "-A {KUBE_FORWARD} -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        ));

        let data = format!(
            "*filter\n{}{}COMMIT\n*nat\n{}{}COMMIT\n",
            filter_chains.0, filter_rules.0, nat_chains.0, nat_rules.0
        );
        let restore = Self::bin(self.family, "tables-restore");
        let args = ["-w", "5", "--noflush", "--counters"];
        let out = Self::run(self.exec.as_ref(), &restore, &args, Some(&data))?;
        if !out.success() {
            return Err(Error::Tool {
                cmd: format!("{restore} {}", args.join(" ")),
                stderr: out.stderr.trim().to_string(),
            });
        }
        stats.counts.insert("filter".into(), filter_rules.count());
        stats.counts.insert("nat".into(), nat_rules.count() + skipped_rules.count());
        let _ = skipped_chains;
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serviceport::Protocol;

    #[test]
    fn upstream_chain_names() {
        // Names from upstream's proxier_test.go.
        let name = ServicePortName::new("ns1", "svc1", "p80", Protocol::Tcp);
        assert_eq!(service_chain("KUBE-SVC-", &name), "KUBE-SVC-XPGD46QRK7WJZT7O");
        let ep = Endpoint {
            ip: "10.180.0.1".parse().unwrap(),
            port: 80,
            is_local: false,
            ready: true,
            serving: true,
            terminating: false,
            zone_hints: Default::default(),
        };
        assert_eq!(endpoint_chain(&name, &ep), "KUBE-SEP-SXIVWICOYRO3J4NJ");
        assert_eq!(IptablesProxier::probability(3), "0.3333333333");
        assert_eq!(
            IptablesProxier::split("-m conntrack --ctstate NEW -m comment --comment \"a b\""),
            ["-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "a b"]
        );
    }
}
