//! The nftables proxier (upstream's `pkg/proxy/nftables/proxier.go`): one `ip kube-proxy` (or `ip6 kube-proxy`)
//! table written as one transaction per sync (`nft -f`, or a netlink batch of our own for a partial sync, see
//! [`crate::nfnetlink`]). Service IPs, node ports and Services without endpoints are verdict maps keyed by
//! `ip . protocol . port`, whose elements are kept in memory so that a sync adds, replaces or deletes only the
//! elements that changed; a partial sync rewrites only the chains of the Services whose Service or endpoints
//! changed, and of those only the chains whose rules changed.
//!
//! Where upstream gives every endpoint a chain (`endpoint-...`: hairpin masquerade and DNAT) and picks one with
//! `numgen random mod N vmap`, a Service port without session affinity DNATs through its block of a shared
//! endpoints map (`endpoints-<protocol>-<n>`, see [`ENDPOINTS_MAP_PREFIX`]: equal ranges of the block's keys to
//! `address . port`, picked by `numgen random mod 65536 offset <block start>`), and hairpin traffic is masqueraded
//! from the `endpoint-hairpin` set (`endpoint . endpoint`, after DNAT). An endpoint change is then map elements only:
//! no new jump, so the kernel does not re-validate the whole table (~120 ms at 10,000 Services), and the table has a
//! tenth of the chains. Services with session affinity keep upstream's endpoint chains and affinity sets.
//!
//! A full sync writes its skeleton with `nft -f`, then its Service part as one netlink batch when every line of it
//! compiles ([`crate::nfnetlink`]): 0.9 s at 10,000 Services.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use data_encoding::BASE32;

use crate::endpoint::Endpoint;
use crate::exec::Exec;
use crate::localdetector::LocalDetector;
use crate::nfnetlink;
use crate::nodeportaddresses::NodePortAddresses;
use crate::proxier::{Error, Proxier, Result, SyncInput, SyncStats};
use crate::serviceport::{IpFamily, Protocol, ServiceName, ServicePort, ServicePortName};
use crate::topology::categorize_endpoints;

/// Our table; everything of ours lives in it, so nothing needs a `kube-` prefix.
pub const TABLE: &str = "kube-proxy";

const FILTER_PREROUTING: &str = "filter-prerouting";
const FILTER_INPUT: &str = "filter-input";
const FILTER_FORWARD: &str = "filter-forward";
const FILTER_OUTPUT: &str = "filter-output";
const FILTER_OUTPUT_POST_DNAT: &str = "filter-output-post-dnat";
const NAT_PREROUTING: &str = "nat-prerouting";
const NAT_OUTPUT: &str = "nat-output";
const NAT_POSTROUTING: &str = "nat-postrouting";

const SERVICES_CHAIN: &str = "services";
const SERVICE_IPS_MAP: &str = "service-ips";
const SERVICE_NODE_PORTS_MAP: &str = "service-nodeports";
const NODE_PORT_IPS_SET: &str = "nodeport-ips";
const CLUSTER_IPS_SET: &str = "cluster-ips";
const SERVICE_ENDPOINTS_CHECK_CHAIN: &str = "service-endpoints-check";
const NODE_PORT_ENDPOINTS_CHECK_CHAIN: &str = "nodeport-endpoints-check";
const NO_ENDPOINT_SERVICES_MAP: &str = "no-endpoint-services";
const NO_ENDPOINT_NODE_PORTS_MAP: &str = "no-endpoint-nodeports";
const REJECT_CHAIN: &str = "reject-chain";
const CLUSTER_IPS_CHECK_CHAIN: &str = "cluster-ips-check";
const FIREWALL_IPS_MAP: &str = "firewall-ips";
const FIREWALL_CHECK_CHAIN: &str = "firewall-check";
const MARK_MASQ_CHAIN: &str = "mark-for-masquerade";
const MASQUERADING_CHAIN: &str = "masquerading";
/// `endpoint . endpoint` for every endpoint IP: traffic DNATed back to its own source is masqueraded (upstream
/// marks it in each endpoint's chain, which endpoint maps do not have).
const ENDPOINT_HAIRPIN_SET: &str = "endpoint-hairpin";
/// The endpoints of the policy chains without session affinity live in interval maps, [`ENDPOINT_SHARDS`] per
/// protocol (`endpoints-tcp-0` to `endpoints-tcp-255`, `endpoints-udp-...`: nft 1.0.6 refuses a rule matching one
/// protocol that looks up a map typed with another's ports, or with `th dport`), a Service port's by a hash of its
/// name. In its map a chain owns a block of 65,536 keys (block `b` is `b * 65536` to `b * 65536 + 65535`), its
/// endpoints share them in equal ranges, and it DNATs to `numgen random mod 65536 offset <block start> map @<map>`.
/// A map is declared when a chain first needs it, and a full sync deletes those no chain uses.
///
/// Why shards: the kernel finds a set by comparing its name with every set of the table (with a map per Service
/// port, 10,000 Services took 9.5 s to load, mostly in those comparisons), while each element written to a map is
/// checked against every rule that looks the map up and each new such rule reads every element of the map (with
/// one map, 10,000 Services took 11 s). 256 maps of ~40 Service ports each keep all three small (0.4 s).
const ENDPOINTS_MAP_PREFIX: &str = "endpoints";
const ENDPOINT_SHARDS: usize = 256;
/// The random number a policy chain's block splits (and the size of a block).
const ENDPOINT_SPREAD: u32 = 65536;
/// Blocks of an endpoints map: the 32-bit keys hold 65,536 of them.
const PICK_BLOCKS: u32 = 65536;

/// The endpoints map of a Service port, as an index of [`NftProxier::shards`] (its cluster and local policy chains
/// share it).
fn endpoint_shard(name: &ServicePortName) -> usize {
    // FNV-1a: stable, and good enough to spread names.
    let mut h: u32 = 0x811c_9dc5;
    for part in [&*name.service.namespace, "/", &*name.service.name, "/", name.protocol.lower(), "/", &*name.port] {
        for b in part.bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    }
    let protocol = PROTOCOLS.iter().position(|p| *p == name.protocol).unwrap_or_default();
    protocol * ENDPOINT_SHARDS + h as usize % ENDPOINT_SHARDS
}

const PROTOCOLS: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

/// The name of the endpoints map at `index` of [`NftProxier::shards`].
fn endpoint_shard_name(index: usize) -> String {
    format!("{ENDPOINTS_MAP_PREFIX}-{}-{}", PROTOCOLS[index / ENDPOINT_SHARDS].lower(), index % ENDPOINT_SHARDS)
}

/// Prefixes of the endpoints maps, and of the per-Service endpoint maps earlier versions wrote
/// (`endpoints-<hash>`, `local-endpoints-<hash>`), which a full sync deletes.
const OLD_ENDPOINT_MAP_PREFIXES: [&str; 2] = ["endpoints", "local-endpoints"];

/// Base chains: name, type, hook, priority. Priorities are numeric (dstnat is -100, srcnat 100): this nft
/// (1.0.6) refuses `dstnat + 10` on the output hook.
const BASE_CHAINS: &[(&str, &str, &str, &str)] = &[
    (FILTER_PREROUTING, "filter", "prerouting", "-110"),
    (FILTER_INPUT, "filter", "input", "-110"),
    (FILTER_FORWARD, "filter", "forward", "-110"),
    (FILTER_OUTPUT, "filter", "output", "-110"),
    (FILTER_OUTPUT_POST_DNAT, "filter", "output", "-90"),
    (NAT_PREROUTING, "nat", "prerouting", "-100"),
    (NAT_OUTPUT, "nat", "output", "-100"),
    (NAT_POSTROUTING, "nat", "postrouting", "100"),
];

/// Regular chains jumped to from base chains: destination, source, match.
const JUMP_CHAINS: &[(&str, &str, &str)] = &[
    (NODE_PORT_ENDPOINTS_CHECK_CHAIN, FILTER_INPUT, "ct state new"),
    (SERVICE_ENDPOINTS_CHECK_CHAIN, FILTER_INPUT, "ct state new"),
    (SERVICE_ENDPOINTS_CHECK_CHAIN, FILTER_FORWARD, "ct state new"),
    (SERVICE_ENDPOINTS_CHECK_CHAIN, FILTER_OUTPUT, "ct state new"),
    (FIREWALL_CHECK_CHAIN, FILTER_PREROUTING, "ct state new"),
    (FIREWALL_CHECK_CHAIN, FILTER_OUTPUT, "ct state new"),
    (SERVICES_CHAIN, NAT_OUTPUT, ""),
    (SERVICES_CHAIN, NAT_PREROUTING, ""),
    (MASQUERADING_CHAIN, NAT_POSTROUTING, ""),
    (CLUSTER_IPS_CHECK_CHAIN, FILTER_FORWARD, "ct state new"),
    (CLUSTER_IPS_CHECK_CHAIN, FILTER_OUTPUT_POST_DNAT, "ct state new"),
];

/// Longest nft object name, and the longest prefix we put before a hashed base.
const NAME_LENGTH_MAX: usize = 256;
const CHAIN_NAME_PREFIX_LENGTH_MAX: usize = 16;

/// `HASH-name`, HASH the first 8 base32 characters of the SHA-256 of the name, truncated with `...` past 240
/// characters (upstream's `hashAndTruncate`).
pub fn hash_and_truncate(name: &str) -> String {
    let hash = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let encoded = BASE32.encode(hash.as_ref());
    let mut out = format!("{}-{name}", &encoded[..8]);
    let max = NAME_LENGTH_MAX - CHAIN_NAME_PREFIX_LENGTH_MAX;
    if out.len() > max {
        out.truncate(max - 3);
        out.push_str("...");
    }
    out
}

/// `HASH-ns/svc/proto/port` (upstream's `servicePortChainNameBase`).
pub fn service_port_chain_name_base(name: &ServicePortName) -> String {
    hash_and_truncate(&format!(
        "{}/{}/{}/{}",
        name.service.namespace,
        name.service.name,
        name.protocol.lower(),
        name.port
    ))
}

/// `HASH-ns/svc/proto/port__ip/port`, colons of IPv6 addresses turned into dots (upstream's
/// `servicePortEndpointChainNameBase`).
pub fn service_port_endpoint_chain_name_base(name: &ServicePortName, ep: &Endpoint) -> String {
    hash_and_truncate(&format!(
        "{}/{}/{}/{}__{}/{}",
        name.service.namespace,
        name.service.name,
        name.protocol.lower(),
        name.port,
        ep.ip.to_string().replace(':', "."),
        ep.port
    ))
}

/// Appends one command line to a transaction.
macro_rules! cmd {
    ($tx:expr, $($arg:tt)*) => {{
        let _ = writeln!($tx.text, $($arg)*);
    }};
}

/// The elements of one set or map as last written, so a sync writes only differences (upstream's
/// `nftElementStorage`). Each element counts the Service ports that want it; it is deleted once none does.
#[derive(Debug, Default)]
struct ElementStorage {
    kind: &'static str,
    name: &'static str,
    elements: HashMap<Box<str>, Element>,
    /// Keys no Service port wants any more, deleted by [`ElementStorage::cleanup_leftover`].
    leftover: BTreeSet<Box<str>>,
    /// What this sync adds, appended to the transaction by [`ElementStorage::write_added`].
    added: AddedElements,
}

/// The `add element` lines of what a sync adds to one set or map, `per_line` elements to a line, written after the
/// Services' chains (which the verdicts name). A full sync at 10,000 Services adds ~10,000 elements to each dispatch
/// map and ~100,000 to the hairpin set: a line each was as many netlink messages, each naming its set. Kept in one
/// buffer: thousands of small strings freed after the sync left the allocator's pages fragmented.
#[derive(Debug, Default)]
struct AddedElements {
    text: String,
    /// Elements in the last line of `text`, still open.
    open: usize,
}

impl AddedElements {
    /// One element; a netlink attribute holds at most 64 KiB of elements, which bounds `per_line`.
    fn add(&mut self, family: &str, set: &str, per_line: usize, element: std::fmt::Arguments<'_>) {
        let _ = match self.open {
            0 => write!(self.text, "add element {family} {set} {{ {element}"),
            _ => write!(self.text, ", {element}"),
        };
        self.open += 1;
        if self.open == per_line {
            self.text.push_str(" }\n");
            self.open = 0;
        }
    }

    /// Appends the lines to `tx` and starts over.
    fn write(&mut self, tx: &mut Tx) {
        if self.open > 0 {
            self.text.push_str(" }\n");
        }
        tx.text.push_str(&std::mem::take(&mut self.text));
        self.open = 0;
    }
}

#[derive(Debug)]
struct Element {
    /// A hash of the element's value (a verdict such as `goto service-...`): enough to tell a change, in 8 bytes.
    value: u64,
    refs: u32,
}

fn value_hash(value: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

impl ElementStorage {
    fn new(kind: &'static str, name: &'static str) -> Self {
        ElementStorage { kind, name, ..Default::default() }
    }

    /// Forgets the elements and flushes the container (a full sync re-adds them all).
    fn reset(&mut self, tx: &mut Tx) {
        self.elements.clear();
        self.leftover.clear();
        self.added = AddedElements::default();
        cmd!(tx, "flush {} {} {}", self.kind, tx.family, self.name);
    }

    fn ensure(&mut self, tx: &mut Tx, key: &str, value: &str, comment: Option<&str>) {
        let comment = comment.map(|c| format!(" comment \"{c}\"")).unwrap_or_default();
        let sep = if value.is_empty() { String::new() } else { format!(" : {value}") };
        let hash = value_hash(value);
        let write = match self.elements.get_mut(key) {
            Some(e) if e.value == hash => {
                e.refs += 1;
                false
            }
            Some(e) => {
                cmd!(tx, "delete element {} {} {{ {key} }}", tx.family, self.name);
                e.value = hash;
                e.refs += 1;
                true
            }
            None => {
                self.elements.insert(key.into(), Element { value: hash, refs: 1 });
                true
            }
        };
        if write {
            self.added.add(&tx.family, self.name, 200, format_args!("{key}{comment}{sep}"));
        }
        self.leftover.remove(key);
    }

    fn write_added(&mut self, tx: &mut Tx) {
        self.added.write(tx);
    }

    /// One Service port no longer wants `key`.
    fn release(&mut self, key: &str) {
        if let Some(e) = self.elements.get_mut(key) {
            e.refs = e.refs.saturating_sub(1);
            if e.refs == 0 {
                self.leftover.insert(key.into());
            }
        }
    }

    /// Deletes the elements no Service port wants.
    fn cleanup_leftover(&mut self, tx: &mut Tx) {
        for key in std::mem::take(&mut self.leftover) {
            cmd!(tx, "delete element {} {} {{ {key} }}", tx.family, self.name);
            self.elements.remove(&key);
        }
    }
}

/// What a sync does to [`ENDPOINT_HAIRPIN_SET`]. Nothing is kept between syncs (a count per endpoint IP was ~3 MB
/// at 100,000 endpoints): a sync adds the IPs of the Service ports it writes (adding one already there is a no-op)
/// and, at its end, deletes the IPs it released that no Service port's record still holds.
#[derive(Debug, Default)]
struct HairpinSet {
    added: HashSet<std::net::IpAddr>,
    released: HashSet<std::net::IpAddr>,
    /// The IPs this sync adds, appended to the transaction by [`HairpinSet::write_added`].
    lines: AddedElements,
}

impl HairpinSet {
    fn reset(&mut self, tx: &mut Tx) {
        self.added.clear();
        self.released.clear();
        self.lines = AddedElements::default();
        cmd!(tx, "flush set {} {ENDPOINT_HAIRPIN_SET}", tx.family);
    }

    fn ensure(&mut self, family: &str, ip: std::net::IpAddr) {
        if self.added.insert(ip) {
            self.lines.add(family, ENDPOINT_HAIRPIN_SET, 1000, format_args!("{ip} . {ip}"));
        }
    }

    fn write_added(&mut self, tx: &mut Tx) {
        self.lines.write(tx);
    }

    fn release(&mut self, ip: std::net::IpAddr) {
        self.released.insert(ip);
    }

    /// Deletes the released IPs that neither this sync added nor any record (`records`, as written) holds.
    fn cleanup_leftover(&mut self, tx: &mut Tx, records: &BTreeMap<ServicePortName, ServiceRecord>) {
        let mut gone = std::mem::take(&mut self.released);
        for ip in std::mem::take(&mut self.added) {
            gone.remove(&ip);
        }
        if !gone.is_empty() {
            for ep in records.values().filter(|r| !r.affinity).flat_map(|r| r.endpoints.iter()) {
                gone.remove(&ep.ip);
            }
        }
        let mut gone: Vec<_> = gone.into_iter().collect();
        gone.sort();
        for ip in gone {
            cmd!(tx, "delete element {} {ENDPOINT_HAIRPIN_SET} {{ {ip} . {ip} }}", tx.family);
        }
    }
}

/// A Service port's endpoint IPs, once each (what it adds to [`ENDPOINT_HAIRPIN_SET`]).
fn endpoint_ips(endpoints: &[Arc<Endpoint>]) -> Vec<std::net::IpAddr> {
    let mut ips: Vec<std::net::IpAddr> = endpoints.iter().map(|ep| ep.ip).collect();
    ips.sort();
    ips.dedup();
    ips
}

/// The maps and sets whose elements a sync writes, as indexes into [`NftProxier::maps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Map {
    ClusterIps,
    ServiceIps,
    FirewallIps,
    NoEndpointServices,
    NoEndpointNodePorts,
    ServiceNodePorts,
}

/// The Service-level chains a Service port can have, as bits of [`ServiceRecord::chains`] (its chain names are
/// rebuilt from the port's name when needed rather than kept: at 10,000 Services they were ~10 MB of strings).
const SERVICE_CHAINS: [(u8, &str); 4] =
    [(SERVICE_CHAIN, "service"), (LOCAL_CHAIN, "local"), (EXTERNAL_CHAIN, "external"), (FIREWALL_CHAIN, "firewall")];
const SERVICE_CHAIN: u8 = 1;
const LOCAL_CHAIN: u8 = 2;
const EXTERNAL_CHAIN: u8 = 4;
const FIREWALL_CHAIN: u8 = 8;

/// Whether a set or map of our table belongs to Service ports: an affinity set, an endpoints map
/// (`endpoints-tcp-<n>`...), or an endpoint map of an earlier version (`endpoints-<hash>`, `local-endpoints-<hash>`).
/// A full sync deletes those no Service port uses.
fn is_service_set(name: &str) -> bool {
    name.starts_with("affinity-")
        || OLD_ENDPOINT_MAP_PREFIXES.iter().any(|prefix| name.strip_prefix(prefix).is_some_and(|r| r.starts_with('-')))
}

/// What goes in the `delete` line of an affinity set or an endpoint map.
fn set_kind(name: &str) -> &'static str {
    if name.starts_with("affinity-") { "set" } else { "map" }
}

/// What one Service port wrote in its last sync: its chains, affinity sets and map elements, so that a
/// partial sync rewrites only the Services that changed and removes exactly what they no longer use.
#[derive(Debug, Default)]
struct ServiceRecord {
    /// The Service-level chains written ([`SERVICE_CHAINS`] bits).
    chains: u8,
    /// A hash of the rules of each Service-level chain (by bit position), so a partial sync leaves an unchanged
    /// chain alone: rewriting a chain that jumps or DNATs makes the kernel re-validate the whole table.
    rule_hashes: [u64; 4],
    /// The blocks of their endpoints map the cluster and local policy chains own (by bit position).
    picks: [Pick; 2],
    /// The endpoints written (shared with the endpoints map): each with an endpoint chain and an affinity set when
    /// the Service has session affinity, else in the endpoint maps and the hairpin set.
    endpoints: Box<[Arc<Endpoint>]>,
    affinity: bool,
    elements: Box<[(Map, Box<str>)]>,
    /// `internalTrafficPolicy: Local` without a local endpoint (for the metrics).
    no_local_internal: bool,
    /// `externalTrafficPolicy: Local` without a local endpoint (for the metrics).
    no_local_external: bool,
}

impl ServiceRecord {
    /// The names of the chains this record's Service port wrote: endpoint chains first, as written.
    fn chain_names(&self, name: &ServicePortName) -> Vec<String> {
        let mut out: Vec<String> = (self.endpoint_chains().iter())
            .map(|ep| format!("endpoint-{}", service_port_endpoint_chain_name_base(name, ep)))
            .collect();
        if self.chains != 0 {
            let base = service_port_chain_name_base(name);
            let written = SERVICE_CHAINS.iter().filter(|(bit, _)| self.chains & bit != 0);
            out.extend(written.map(|(_, prefix)| format!("{prefix}-{base}")));
        }
        out
    }

    fn chain_count(&self) -> usize {
        self.endpoint_chains().len() + self.chains.count_ones() as usize
    }

    /// The endpoints given a chain: all of them with session affinity, none otherwise (endpoint maps).
    fn endpoint_chains(&self) -> &[Arc<Endpoint>] {
        if self.affinity { &self.endpoints } else { &[] }
    }

    /// The names of the affinity sets this record's Service port wrote.
    fn sets(&self, name: &ServicePortName) -> Vec<String> {
        let mut out = Vec::new();
        if self.affinity {
            let base = |ep: &Arc<Endpoint>| service_port_endpoint_chain_name_base(name, ep);
            out.extend(self.endpoints.iter().map(|ep| format!("affinity-{}", base(ep))));
        }
        out
    }
}

/// The block of its endpoints map a policy chain owns (`n` endpoints share it; none when `n` is 0), and a hash of
/// the endpoints its ranges map to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Pick {
    block: u32,
    n: u32,
    hash: u64,
}

impl Pick {
    /// `add element <map> { A-B : IP . PORT, ... }` of `endpoints`, or (None) `delete element <map> { A-B, ... }`.
    fn write_ranges(&self, tx: &mut Tx, map: &str, endpoints: Option<&[Arc<Endpoint>]>) {
        let verb = if endpoints.is_some() { "add" } else { "delete" };
        let _ = write!(tx.text, "{verb} element {} {map} {{ ", tx.family);
        for i in 0..self.n {
            let (a, b) = self.range(i);
            let sep = if i == 0 { "" } else { ", " };
            let _ = match endpoints.and_then(|eps| eps.get(i as usize)) {
                Some(ep) => write!(tx.text, "{sep}{a}-{b} : {} . {}", ep.ip, ep.port),
                None => write!(tx.text, "{sep}{a}-{b}"),
            };
        }
        tx.text.push_str(" }\n");
    }

    /// Endpoint `i`'s range of keys.
    fn range(&self, i: u32) -> (u64, u64) {
        let (spread, n) = (u64::from(ENDPOINT_SPREAD), u64::from(self.n));
        let base = u64::from(self.block) * spread;
        (base + u64::from(i) * spread / n, base + (u64::from(i) + 1) * spread / n - 1)
    }
}

/// The blocks of one endpoints map in use: a block freed by a sync is handed out again from the next one on (its
/// ranges are deleted in the freeing transaction); a full sync starts over.
#[derive(Debug, Default)]
struct PickBlocks {
    next: u32,
    free: Vec<u32>,
    freed: Vec<u32>,
}

impl PickBlocks {
    fn take(&mut self) -> Option<u32> {
        if let Some(b) = self.free.pop() {
            return Some(b);
        }
        (self.next < PICK_BLOCKS).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    fn release(&mut self, block: u32) {
        self.freed.push(block);
    }

    /// At the end of a sync: what it freed may be taken by the next.
    fn settle(&mut self) {
        self.free.append(&mut self.freed);
    }
}

/// One `nft -f` transaction being written.
struct Tx {
    family: String,
    text: String,
}

impl Tx {
    fn add_chain(&mut self, chain: &str) {
        cmd!(self, "add chain {} {chain}", self.family);
    }

    fn flush_chain(&mut self, chain: &str) {
        cmd!(self, "flush chain {} {chain}", self.family);
    }

    fn rule(&mut self, chain: &str, rule: &str) {
        cmd!(self, "add rule {} {chain} {rule}", self.family);
    }
}

/// Creates and flushes a chain once per transaction; `skip` only records it as in use (partial sync of an
/// unchanged Service). Chains not in `existing` are new, so there is nothing to flush.
fn ensure_chain(chain: &str, tx: &mut Tx, created: &mut BTreeSet<String>, skip: bool, existing: &BTreeSet<String>) {
    if !created.insert(chain.to_string()) || skip {
        return;
    }
    tx.add_chain(chain);
    if existing.contains(chain) || !chain.contains('/') {
        tx.flush_chain(chain);
    }
}

/// The nftables proxier for one IP family.
pub struct NftProxier {
    family: IpFamily,
    exec: Arc<dyn Exec>,
    masquerade_all: bool,
    masquerade_mark: String,
    local_detector: LocalDetector,
    node_port_addresses: NodePortAddresses,
    /// This node's IP (for loadBalancerSourceRanges that include the node).
    node_ip: Option<std::net::IpAddr>,
    /// Whether the base chains were deleted and recreated once (so their properties can change across versions).
    flushed: bool,
    /// What each Service port wrote in its last sync (its chains exist in the kernel).
    records: BTreeMap<ServicePortName, ServiceRecord>,
    /// Chains flushed as stale, to delete once no map element can still reference them.
    stale_chains: BTreeMap<String, Instant>,
    /// The elements of the sets and maps, indexed by [`Map`].
    maps: [ElementStorage; 6],
    /// The elements of [`ENDPOINT_HAIRPIN_SET`], one per endpoint IP.
    hairpin: HairpinSet,
    /// The endpoints maps (see [`ENDPOINTS_MAP_PREFIX`]).
    shards: Vec<EndpointShard>,
    /// The declarations of the endpoints maps this sync uses first.
    shard_declarations: String,
    /// A policy chain found no free block in this sync (more than 65,536 in one endpoints map).
    blocks_exhausted: bool,
}

/// One endpoints map: its blocks, and whether it exists in the kernel.
#[derive(Debug, Default)]
struct EndpointShard {
    blocks: PickBlocks,
    declared: bool,
}

impl NftProxier {
    pub fn new(
        family: IpFamily,
        exec: Arc<dyn Exec>,
        masquerade_all: bool,
        masquerade_bit: u32,
        local_detector: LocalDetector,
        node_port_addresses: NodePortAddresses,
        node_ip: Option<std::net::IpAddr>,
    ) -> Self {
        NftProxier {
            family,
            exec,
            masquerade_all,
            masquerade_mark: format!("{:#08x}", 1u32 << masquerade_bit),
            local_detector,
            node_port_addresses,
            node_ip,
            flushed: false,
            records: BTreeMap::new(),
            stale_chains: BTreeMap::new(),
            maps: [
                ElementStorage::new("set", CLUSTER_IPS_SET),
                ElementStorage::new("map", SERVICE_IPS_MAP),
                ElementStorage::new("map", FIREWALL_IPS_MAP),
                ElementStorage::new("map", NO_ENDPOINT_SERVICES_MAP),
                ElementStorage::new("map", NO_ENDPOINT_NODE_PORTS_MAP),
                ElementStorage::new("map", SERVICE_NODE_PORTS_MAP),
            ],
            hairpin: HairpinSet::default(),
            shards: (0..PROTOCOLS.len() * ENDPOINT_SHARDS).map(|_| EndpointShard::default()).collect(),
            shard_declarations: String::new(),
            blocks_exhausted: false,
        }
    }

    fn ip_x(&self) -> &'static str {
        match self.family {
            IpFamily::V4 => "ip",
            IpFamily::V6 => "ip6",
        }
    }

    fn addr_type(&self) -> &'static str {
        match self.family {
            IpFamily::V4 => "ipv4_addr",
            IpFamily::V6 => "ipv6_addr",
        }
    }

    fn family_table(&self) -> String {
        format!("{} {TABLE}", self.ip_x())
    }

    fn run_nft(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let cmd = format!("nft {}", args.join(" "));
        let out = self.exec.run("nft", args, stdin).map_err(|source| Error::Exec { cmd: cmd.clone(), source })?;
        if !out.success() {
            return Err(Error::Tool { cmd, stderr: out.stderr.trim().to_string() });
        }
        Ok(out.stdout)
    }

    /// Writes a transaction: a partial sync through our own netlink socket when the tools act on this namespace and
    /// every line is one [`nfnetlink`] compiles (no `nft` chain-cache dump), otherwise, or when the kernel refuses
    /// that batch (which then changed nothing), with `nft -f`.
    fn write(&self, text: &str, partial: bool) -> Result<()> {
        if partial
            && self.exec.own_netns()
            && let Some(batch) = nfnetlink::compile(&self.family_table(), text)
            && self.send_batch(&batch, text)?
        {
            return Ok(());
        }
        self.run_nft(&["-f", "-"], Some(text)).map(drop)
    }

    /// Writes a full sync: its skeleton with `nft -f`, then its Service part as one netlink batch when every line of
    /// it compiles (which spares `nft` parsing ~40,000 lines; the batch empties and refills the maps, so no packet
    /// sees them half-written), otherwise (or when the kernel refuses the batch) the rest with `nft -f`.
    fn write_full(&self, skeleton: &str, services: &str) -> Result<()> {
        let t0 = Instant::now();
        if self.exec.own_netns()
            && let Some(batch) = nfnetlink::compile(&self.family_table(), services)
        {
            let t1 = Instant::now();
            self.run_nft(&["-f", "-"], Some(skeleton))?;
            let t2 = Instant::now();
            if !self.send_batch(&batch, services)? {
                return self.run_nft(&["-f", "-"], Some(services)).map(drop);
            }
            let (compile, skeleton, batch_took) = (t1 - t0, t2 - t1, t2.elapsed());
            tracing::debug!(bytes = batch.len(), ?compile, ?skeleton, batch = ?batch_took, "full sync written through netlink");
            return Ok(());
        }
        self.run_nft(&["-f", "-"], Some(&format!("{skeleton}{services}"))).map(drop)
    }

    /// Sends a compiled batch of `text`: true when the kernel committed it, false when it refused it (so nothing
    /// changed, and the caller runs `nft` instead); an error when whether it was applied is unknown (the caller's
    /// retry is a full sync).
    fn send_batch(&self, batch: &nfnetlink::Batch, text: &str) -> Result<bool> {
        match nfnetlink::send(batch) {
            Ok(nfnetlink::Outcome::Applied) => Ok(true),
            Ok(nfnetlink::Outcome::Refused { errno, line }) => {
                let line = line.and_then(|i| text.lines().filter(|l| !l.trim().is_empty()).nth(i));
                let error = std::io::Error::from_raw_os_error(errno);
                tracing::warn!(%error, line = line.unwrap_or("(commit)"), "nf_tables refused the batch; running nft");
                Ok(false)
            }
            Err(source) => Err(Error::Exec { cmd: "nf_tables batch".into(), source }),
        }
    }

    /// The chains and sets of our table in the kernel (none when it does not exist).
    fn list_objects(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let Ok(out) = self.run_nft(&["list", "table", self.ip_x(), TABLE], None) else {
            return Default::default();
        };
        let (mut chains, mut sets) = (BTreeSet::new(), BTreeSet::new());
        for line in out.lines() {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("chain"), Some(name)) => {
                    chains.insert(name.to_string());
                }
                (Some("set" | "map"), Some(name)) => {
                    sets.insert(name.to_string());
                }
                _ => {}
            }
        }
        (chains, sets)
    }

    /// The table's skeleton: base chains, jumps, masquerading, the dispatch maps (upstream's `setupNFTables`).
    fn setup(&mut self, tx: &mut Tx) {
        let (ip_x, addr) = (self.ip_x(), self.addr_type());
        let no_localhost = match self.family {
            IpFamily::V4 => "ip daddr != 127.0.0.0/8",
            IpFamily::V6 => "ip6 daddr != ::1",
        };
        cmd!(tx, "add table {} {{ comment \"rules for kube-proxy\" ; }}", tx.family);
        if !self.flushed {
            for (name, ..) in BASE_CHAINS {
                tx.add_chain(name);
                cmd!(tx, "delete chain {} {name}", tx.family);
            }
            self.flushed = true;
        }
        for (name, kind, hook, priority) in BASE_CHAINS {
            cmd!(tx, "add chain {} {name} {{ type {kind} hook {hook} priority {priority} ; }}", tx.family);
            tx.flush_chain(name);
        }
        let mut created = BTreeSet::new();
        let existing = BTreeSet::new();
        for (dst, src, extra) in JUMP_CHAINS {
            ensure_chain(dst, tx, &mut created, false, &existing);
            let rule = if extra.is_empty() { format!("jump {dst}") } else { format!("{extra} jump {dst}") };
            tx.rule(src, &rule);
        }
        for chain in [SERVICES_CHAIN, CLUSTER_IPS_CHECK_CHAIN, MASQUERADING_CHAIN, MARK_MASQ_CHAIN] {
            ensure_chain(chain, tx, &mut created, false, &existing);
        }
        let mark = self.masquerade_mark.clone();
        tx.rule(MARK_MASQ_CHAIN, &format!("mark set mark or {mark}"));
        cmd!(
            tx,
            "add set {} {ENDPOINT_HAIRPIN_SET} {{ type {addr} . {addr} ; comment \"endpoint . endpoint: hairpin traffic\" ; }}",
            tx.family
        );
        tx.rule(
            MASQUERADING_CHAIN,
            &format!("ct status dnat {ip_x} saddr . {ip_x} daddr @{ENDPOINT_HAIRPIN_SET} mark set mark or {mark}"),
        );
        tx.rule(MASQUERADING_CHAIN, &format!("mark and {mark} == 0 return"));
        tx.rule(MASQUERADING_CHAIN, &format!("mark set mark xor {mark}"));
        tx.rule(MASQUERADING_CHAIN, "masquerade fully-random");

        cmd!(tx, "add set {} {CLUSTER_IPS_SET} {{ type {addr} ; comment \"Active ClusterIPs\" ; }}", tx.family);
        tx.rule(
            CLUSTER_IPS_CHECK_CHAIN,
            &format!(
                "{ip_x} daddr @{CLUSTER_IPS_SET} reject comment \"Reject traffic to invalid ports of ClusterIPs\""
            ),
        );

        cmd!(
            tx,
            "add set {} {NODE_PORT_IPS_SET} {{ type {addr} ; comment \"IPs that accept NodePort traffic\" ; }}",
            tx.family
        );
        if self.node_port_addresses.match_all() {
            cmd!(tx, "delete set {} {NODE_PORT_IPS_SET}", tx.family);
        } else {
            cmd!(tx, "flush set {} {NODE_PORT_IPS_SET}", tx.family);
            match self.node_port_addresses.node_ips(self.exec.as_ref()) {
                Ok(ips) => {
                    for ip in ips.into_iter().filter(|ip| self.family.matches(ip)) {
                        if ip.is_loopback() {
                            tracing::error!(%ip, "nodePortAddresses includes localhost but localhost NodePorts are not supported");
                            continue;
                        }
                        cmd!(tx, "add element {} {NODE_PORT_IPS_SET} {{ {ip} }}", tx.family);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "failed to get node IPs matching nodePortAddresses; NodePorts may not work")
                }
            }
        }

        cmd!(
            tx,
            "add map {} {NO_ENDPOINT_SERVICES_MAP} {{ type {addr} . inet_proto . inet_service : verdict ; comment \"vmap to drop or reject packets to services with no endpoints\" ; }}",
            tx.family
        );
        cmd!(
            tx,
            "add map {} {NO_ENDPOINT_NODE_PORTS_MAP} {{ type inet_proto . inet_service : verdict ; comment \"vmap to drop or reject packets to service nodeports with no endpoints\" ; }}",
            tx.family
        );
        cmd!(
            tx,
            "add chain {} {REJECT_CHAIN} {{ comment \"helper for @no-endpoint-services / @no-endpoint-nodeports\" ; }}",
            tx.family
        );
        tx.flush_chain(REJECT_CHAIN);
        tx.rule(REJECT_CHAIN, "reject");
        tx.rule(
            SERVICE_ENDPOINTS_CHECK_CHAIN,
            &format!("{ip_x} daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES_MAP}"),
        );
        if self.node_port_addresses.match_all() {
            tx.rule(
                NODE_PORT_ENDPOINTS_CHECK_CHAIN,
                &format!("{no_localhost} meta l4proto . th dport vmap @{NO_ENDPOINT_NODE_PORTS_MAP}"),
            );
        } else {
            tx.rule(
                NODE_PORT_ENDPOINTS_CHECK_CHAIN,
                &format!(
                    "{ip_x} daddr @{NODE_PORT_IPS_SET} meta l4proto . th dport vmap @{NO_ENDPOINT_NODE_PORTS_MAP}"
                ),
            );
        }

        cmd!(
            tx,
            "add map {} {FIREWALL_IPS_MAP} {{ type {addr} . inet_proto . inet_service : verdict ; comment \"destinations that are subject to LoadBalancerSourceRanges\" ; }}",
            tx.family
        );
        ensure_chain(FIREWALL_CHECK_CHAIN, tx, &mut created, false, &existing);
        tx.rule(FIREWALL_CHECK_CHAIN, &format!("{ip_x} daddr . meta l4proto . th dport vmap @{FIREWALL_IPS_MAP}"));

        cmd!(
            tx,
            "add map {} {SERVICE_IPS_MAP} {{ type {addr} . inet_proto . inet_service : verdict ; comment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\" ; }}",
            tx.family
        );
        cmd!(
            tx,
            "add map {} {SERVICE_NODE_PORTS_MAP} {{ type inet_proto . inet_service : verdict ; comment \"NodePort traffic\" ; }}",
            tx.family
        );
        tx.rule(SERVICES_CHAIN, &format!("{ip_x} daddr . meta l4proto . th dport vmap @{SERVICE_IPS_MAP}"));
        if self.node_port_addresses.match_all() {
            tx.rule(
                SERVICES_CHAIN,
                &format!("fib daddr type local {no_localhost} meta l4proto . th dport vmap @{SERVICE_NODE_PORTS_MAP}"),
            );
        } else {
            tx.rule(
                SERVICES_CHAIN,
                &format!("{ip_x} daddr @{NODE_PORT_IPS_SET} meta l4proto . th dport vmap @{SERVICE_NODE_PORTS_MAP}"),
            );
        }
    }

    /// Empties the maps and sets whose elements the Services make (the start of a full sync's Service part, so that
    /// emptying and refilling them is one transaction), the endpoints maps among `kernel_sets` included.
    fn reset_elements(&mut self, tx: &mut Tx, kernel_sets: &BTreeSet<String>) {
        for map in &mut self.maps {
            map.reset(tx);
        }
        self.hairpin.reset(tx);
        for (i, shard) in self.shards.iter_mut().enumerate() {
            let name = endpoint_shard_name(i);
            *shard = EndpointShard { declared: kernel_sets.contains(&name), ..Default::default() };
            if shard.declared {
                cmd!(tx, "flush map {} {name}", tx.family);
            }
        }
    }

    /// A policy chain of a Service with session affinity: to the endpoint its client's affinity set names, else a
    /// random endpoint's chain.
    fn write_service_to_endpoint_rules(
        &self,
        tx: &mut Tx,
        svc: &ServicePort,
        chain: &str,
        endpoints: &[Arc<Endpoint>],
    ) {
        let ip_x = self.ip_x();
        if svc.sticky_max_age_seconds.is_some() {
            for ep in endpoints {
                let base = service_port_endpoint_chain_name_base(&svc.name, ep);
                tx.rule(chain, &format!("{ip_x} saddr @affinity-{base} goto endpoint-{base}"));
            }
        }
        // A cascade of `numgen random mod (n - i) == 0` rules, as the iptables proxier's probabilities, rather
        // than upstream's `numgen random mod n vmap { ... }`: each such anonymous map is a kernel set, and the
        // kernel names new anonymous sets by scanning every set of the table, so 10,000 Services took minutes
        // to load (measured: 120 s with vmaps, 8 s with this cascade, same distribution).
        let n = endpoints.len();
        for (i, ep) in endpoints.iter().enumerate() {
            let target = format!("endpoint-{}", service_port_endpoint_chain_name_base(&svc.name, ep));
            if i + 1 < n {
                tx.rule(chain, &format!("numgen random mod {} == 0 goto {target}", n - i));
            } else {
                tx.rule(chain, &format!("goto {target}"));
            }
        }
    }

    /// Removes our tables of both families (upstream's `CleanupLeftovers`). False when something failed.
    pub fn cleanup_leftovers(exec: &dyn Exec) -> bool {
        let mut ok = true;
        for family in ["ip", "ip6"] {
            let tx = format!("add table {family} {TABLE}\ndelete table {family} {TABLE}\n");
            match exec.run("nft", &["-f", "-"], Some(&tx)) {
                Ok(o) if o.success() => {}
                Ok(o) => {
                    tracing::error!(family, stderr = %o.stderr.trim(), "error cleaning up nftables rules");
                    ok = false;
                }
                Err(e) => {
                    tracing::error!(family, error = %e, "error cleaning up nftables rules");
                    ok = false;
                }
            }
        }
        ok
    }
}

impl Proxier for NftProxier {
    fn mode(&self) -> &'static str {
        "nftables"
    }

    fn family(&self) -> IpFamily {
        self.family
    }

    fn periodic_full_sync(&self) -> bool {
        false
    }

    fn sync_rules(&mut self, input: &SyncInput<'_>) -> Result<SyncStats> {
        let start = Instant::now();
        let partial = input.partial;
        let family = self.family_table();

        let mut tx = Tx { family: family.clone(), text: String::with_capacity(if partial { 4096 } else { 1 << 20 }) };
        // A full sync's skeleton (base chains, the jumps to ours, the dispatch maps' declarations), written before
        // the Service part (see `write_full`).
        let mut skeleton = Tx { family: family.clone(), text: String::new() };
        // The elements of the endpoints maps, written after the rules.
        let mut picks = Tx { family: family.clone(), text: String::new() };
        // Per-Service chains and affinity sets in the kernel, listed by a full sync only: a partial one knows
        // them from the records.
        let (mut kernel_chains, mut kernel_sets) = (BTreeSet::new(), BTreeSet::new());
        if !partial {
            let (chains, sets) = self.list_objects();
            kernel_chains = chains.into_iter().filter(|c| c.contains('/')).collect();
            kernel_sets = sets.into_iter().filter(|s| is_service_set(s)).collect();
            self.setup(&mut skeleton);
            self.reset_elements(&mut tx, &kernel_sets);
        }
        // The Service ports to write: all of them, or those of the Services that changed (including ports that
        // are gone, which only release what they wrote).
        let todo: Vec<ServicePortName> = if partial {
            let changed: BTreeSet<&ServiceName> =
                input.services.updated_services.iter().chain(&input.endpoints.updated_services).collect();
            let mut todo = BTreeSet::new();
            for service in changed {
                let first = ServicePortName { service: service.clone(), port: "".into(), protocol: Protocol::Tcp };
                let in_map = input.svc_port_map.range(first.clone()..).map(|(k, _)| k);
                let in_records = self.records.range(first..).map(|(k, _)| k);
                todo.extend(in_map.take_while(|k| k.service == *service).cloned());
                todo.extend(in_records.take_while(|k| k.service == *service).cloned());
            }
            todo.into_iter().collect()
        } else {
            input.svc_port_map.keys().cloned().collect()
        };
        let mut old_records = if partial { BTreeMap::new() } else { std::mem::take(&mut self.records) };

        let mut stats = SyncStats::default();
        let mut unused_chains: Vec<String> = Vec::new();
        let mut unused_sets: BTreeSet<String> = BTreeSet::new();
        for svc_name in &todo {
            let old = if partial { self.records.remove(svc_name) } else { old_records.remove(svc_name) };
            let old = old.unwrap_or_default();
            // Release first, so an element this port writes again is kept rather than deleted.
            if partial {
                for (map, key) in &old.elements {
                    self.maps[*map as usize].release(key);
                }
                if !old.affinity {
                    endpoint_ips(&old.endpoints).into_iter().for_each(|ip| self.hairpin.release(ip));
                }
            }
            // A full sync tells unused chains and sets from the kernel's list instead: no names to rebuild.
            let (old_chains, old_sets) = match partial {
                true => (old.chain_names(svc_name), old.sets(svc_name)),
                false => (Vec::new(), Vec::new()),
            };
            let Some(svc) = input.svc_port_map.get(svc_name) else {
                unused_chains.extend(old_chains);
                unused_sets.extend(old_sets);
                if partial {
                    self.release_picks(&mut picks, svc_name, &old, None);
                }
                continue;
            };
            let exists = |name: &str| {
                kernel_chains.contains(name) || kernel_sets.contains(name) || old_chains.iter().any(|c| c == name)
            };
            let rec = self.write_service(&mut tx, &mut picks, svc_name, svc, input, &exists, partial.then_some(&old));
            if partial {
                self.release_picks(&mut picks, svc_name, &old, Some(&rec));
            }
            if !old_chains.is_empty() {
                let chains = rec.chain_names(svc_name);
                unused_chains.extend(old_chains.into_iter().filter(|c| !chains.contains(c)));
            }
            if !old_sets.is_empty() {
                let sets = rec.sets(svc_name);
                unused_sets.extend(old_sets.into_iter().filter(|s| !sets.contains(s)));
            }
            self.records.insert(svc_name.clone(), rec);
        }
        if !partial {
            // What a previous run (or the records of a failed sync) left in the kernel that no Service wants.
            if !kernel_chains.is_empty() {
                let active: BTreeSet<String> = self.records.iter().flat_map(|(n, r)| r.chain_names(n)).collect();
                unused_chains.extend(kernel_chains.difference(&active).cloned());
            }
            if !kernel_sets.is_empty() {
                let mut active: BTreeSet<String> = self.records.iter().flat_map(|(n, r)| r.sets(n)).collect();
                for (i, shard) in self.shards.iter_mut().enumerate() {
                    // An endpoints map no policy chain took a block of is deleted.
                    shard.declared = shard.blocks.next > 0;
                    if shard.declared {
                        active.insert(endpoint_shard_name(i));
                    }
                }
                unused_sets.extend(kernel_sets.difference(&active).cloned());
            }
        }
        for map in &mut self.maps {
            map.write_added(&mut tx);
        }
        self.hairpin.write_added(&mut tx);
        // The endpoints maps' elements after every rule (a rule looking a map up reads its elements), and the maps
        // first used by this sync declared before everything (with the skeleton in a full sync).
        tx.text.push_str(&picks.text);
        let declarations = std::mem::take(&mut self.shard_declarations);
        if partial {
            tx.text.insert_str(0, &declarations);
        } else {
            skeleton.text.push_str(&declarations);
        }

        // Chains no Service uses any more: flushed now, deleted a second later (kernels before 6.2 notice late
        // that a map element no longer references a chain). Deleting them in this transaction saves running nft
        // twice per sync, which is most of a partial sync's time.
        let one_second_ago = start.checked_sub(Duration::from_secs(1)).unwrap_or(start);
        let due: BTreeSet<String> =
            self.stale_chains.iter().filter(|(_, t)| **t < one_second_ago).map(|(c, _)| c.clone()).collect();
        for chain in &due {
            cmd!(tx, "delete chain {family} {chain}");
            self.stale_chains.remove(chain);
        }
        unused_chains.sort();
        unused_chains.dedup();
        let mut newly_stale = Vec::new();
        for chain in unused_chains {
            if !self.stale_chains.contains_key(&chain) && !due.contains(&chain) {
                tx.flush_chain(&chain);
                newly_stale.push(chain);
            }
        }
        for set in &unused_sets {
            cmd!(tx, "delete {} {family} {set}", set_kind(set));
        }
        for map in &mut self.maps {
            map.cleanup_leftover(&mut tx);
        }
        self.hairpin.cleanup_leftover(&mut tx, &self.records);

        self.shards.iter_mut().for_each(|shard| shard.blocks.settle());
        if std::mem::take(&mut self.blocks_exhausted) {
            self.stale_chains.clear();
            return Err(Error::Tool {
                cmd: "kube-proxy".into(),
                stderr: format!("more than {PICK_BLOCKS} Service policy chains without session affinity"),
            });
        }
        if !partial {
            tracing::debug!(lines = tx.text.lines().count(), took = ?start.elapsed(), "full sync's transaction made");
        }
        let written = match partial {
            true if tx.text.is_empty() => Ok(()),
            true => self.write(&tx.text, true),
            false => self.write_full(&skeleton.text, &tx.text),
        };
        if let Err(e) = written {
            // The element storages and records no longer match the kernel: the retry is a full sync that
            // relists the kernel's chains and resets them.
            self.stale_chains.clear();
            return Err(e);
        }
        for chain in newly_stale {
            self.stale_chains.insert(chain, start);
        }
        if !partial {
            // The megabytes of the full sync's transaction and batch go back to the system now, not at this thread's
            // next sync.
            drop((tx, picks, skeleton));
            runtime::allocator::collect_when_idle();
        }
        stats.no_local_endpoints_internal = self.records.values().filter(|r| r.no_local_internal).count();
        stats.no_local_endpoints_external = self.records.values().filter(|r| r.no_local_external).count();
        stats.counts.insert("chains".into(), self.records.values().map(ServiceRecord::chain_count).sum());
        let elements: usize = self.maps.iter().map(|m| m.elements.len()).sum();
        stats.counts.insert("elements".into(), elements);
        Ok(stats)
    }
}

impl NftProxier {
    /// Writes one Service port's chains, rules, endpoint maps, affinity sets and map elements and returns what it
    /// wrote. `exists` tells whether a chain or set is already in the kernel (and so needs a flush). `old` is what a
    /// partial sync knows the port wrote last: a chain or an endpoint map whose content is the same is left alone,
    /// so an endpoint change is only map elements (no new jump, no re-validation of the table by the kernel).
    #[allow(clippy::too_many_arguments)]
    fn write_service(
        &mut self,
        tx: &mut Tx,
        picks: &mut Tx,
        svc_name: &ServicePortName,
        svc: &ServicePort,
        input: &SyncInput<'_>,
        exists: &dyn Fn(&str) -> bool,
        old: Option<&ServiceRecord>,
    ) -> ServiceRecord {
        let ip_x = self.ip_x();
        let addr_type = self.addr_type();
        let family = tx.family.clone();
        let affinity = svc.sticky_max_age_seconds.is_some();
        let mut rec = ServiceRecord { affinity, ..Default::default() };
        // The chains in use (name, Service-level bit or 0, whether it exists, whether it was stale); their rules
        // go to `rules` and are written at the end, each chain's only if they changed.
        let mut chains: Vec<(String, u8, bool, bool)> = Vec::new();
        let mut rules = Tx { family: family.clone(), text: String::new() };
        let mut chain = |tx: &mut Tx, name: &str, bit: u8| {
            // A chain that was stale is wanted again: it exists, and must not be deleted.
            let was_stale = self.stale_chains.remove(name).is_some();
            let existed = was_stale || exists(name);
            tx.add_chain(name);
            chains.push((name.to_string(), bit, existed, was_stale));
        };

        let protocol = svc.protocol.lower();
        let name_string = svc_name.to_string();
        let all_endpoints = input.endpoints_map.get(svc_name).map(Vec::as_slice).unwrap_or_default();
        let cat = categorize_endpoints(all_endpoints, svc, input.node_labels);
        // Endpoint chains only with session affinity (each holds its affinity set's update); otherwise the
        // policy chains DNAT through endpoint maps.
        let endpoint_bases: Vec<String> = match affinity {
            true => cat.all_reachable.iter().map(|ep| service_port_endpoint_chain_name_base(svc_name, ep)).collect(),
            false => Vec::new(),
        };
        for base in &endpoint_bases {
            chain(tx, &format!("endpoint-{base}"), 0);
        }
        rec.endpoints = cat.all_reachable.iter().map(Arc::clone).collect();
        let base = service_port_chain_name_base(svc_name);
        let cluster_policy_chain = format!("service-{base}");
        let local_policy_chain = format!("local-{base}");
        let external_chain = format!("external-{base}");
        let firewall_chain = format!("firewall-{base}");

        let uses_cluster_policy_chain = !cat.cluster.is_empty() && svc.uses_cluster_endpoints();
        if uses_cluster_policy_chain {
            chain(tx, &cluster_policy_chain, SERVICE_CHAIN);
            rec.chains |= SERVICE_CHAIN;
        }
        let uses_local_policy_chain = !cat.local.is_empty() && svc.uses_local_endpoints();
        if uses_local_policy_chain {
            chain(tx, &local_policy_chain, LOCAL_CHAIN);
            rec.chains |= LOCAL_CHAIN;
        }

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
        let uses_external_chain = cat.has_any && svc.externally_accessible();
        if uses_external_chain {
            chain(tx, &external_chain, EXTERNAL_CHAIN);
            rec.chains |= EXTERNAL_CHAIN;
        }

        let (mut internal_verdict, mut external_verdict) = (String::new(), String::new());
        if !cat.has_any {
            internal_verdict = format!("goto {REJECT_CHAIN}");
            external_verdict = internal_verdict.clone();
        } else {
            if !has_internal {
                internal_verdict = "drop".into();
                rec.no_local_internal = true;
            }
            if !has_external {
                external_verdict = "drop".into();
                rec.no_local_external = true;
            }
        }

        let uses_fw_chain = !svc.load_balancer_vips.is_empty() && !svc.load_balancer_source_ranges.is_empty();
        if uses_fw_chain {
            chain(tx, &firewall_chain, FIREWALL_CHAIN);
            rec.chains |= FIREWALL_CHAIN;
        }

        let maps = &mut self.maps;
        let mut elements: Vec<(Map, Box<str>)> = Vec::new();
        let mut ensure = |tx: &mut Tx, map: Map, key: String, value: &str, comment: Option<&str>| {
            maps[map as usize].ensure(tx, &key, value, comment);
            elements.push((map, key.into_boxed_str()));
        };
        let key = |ip: &std::net::IpAddr, port: u16| format!("{ip} . {protocol} . {port}");
        ensure(tx, Map::ClusterIps, svc.cluster_ip.to_string(), "", None);
        if has_internal {
            ensure(tx, Map::ServiceIps, key(&svc.cluster_ip, svc.port), &format!("goto {internal_chain}"), None);
        } else {
            ensure(tx, Map::NoEndpointServices, key(&svc.cluster_ip, svc.port), &internal_verdict, Some(&name_string));
        }
        for ip in &svc.external_ips {
            if cat.has_any {
                ensure(tx, Map::ServiceIps, key(ip, svc.port), &format!("goto {external_chain}"), None);
            }
            if !has_external {
                ensure(tx, Map::NoEndpointServices, key(ip, svc.port), &external_verdict, Some(&name_string));
            }
        }
        for ip in &svc.load_balancer_vips {
            if cat.has_any {
                ensure(tx, Map::ServiceIps, key(ip, svc.port), &format!("goto {external_chain}"), None);
            }
            if uses_fw_chain {
                ensure(tx, Map::FirewallIps, key(ip, svc.port), &format!("goto {firewall_chain}"), None);
            }
        }
        if !has_external {
            for ip in &svc.load_balancer_vips {
                ensure(tx, Map::NoEndpointServices, key(ip, svc.port), &external_verdict, Some(&name_string));
            }
        }
        if svc.node_port != 0 {
            let np_key = format!("{protocol} . {}", svc.node_port);
            if cat.has_any {
                ensure(tx, Map::ServiceNodePorts, np_key.clone(), &format!("goto {external_chain}"), None);
            }
            if !has_external {
                ensure(tx, Map::NoEndpointNodePorts, np_key, &external_verdict, Some(&name_string));
            }
        }
        if !affinity {
            endpoint_ips(&cat.all_reachable).into_iter().for_each(|ip| self.hairpin.ensure(&tx.family, ip));
        }

        if has_internal {
            if self.masquerade_all {
                rules.rule(
                    internal_chain,
                    &format!("{ip_x} daddr {} {protocol} dport {} jump {MARK_MASQ_CHAIN}", svc.cluster_ip, svc.port),
                );
            } else if self.local_detector.is_implemented() {
                // Off-cluster traffic to a ClusterIP may leave through another node: masquerade it.
                rules.rule(
                    internal_chain,
                    &format!(
                        "{ip_x} daddr {} {protocol} dport {} {} jump {MARK_MASQ_CHAIN}",
                        svc.cluster_ip,
                        svc.port,
                        self.local_detector.if_not_local_nft()
                    ),
                );
            }
        }
        if uses_external_chain {
            if !svc.external_policy_local {
                rules.rule(&external_chain, &format!("jump {MARK_MASQ_CHAIN}"));
            } else {
                if self.local_detector.is_implemented() {
                    rules.rule(
                        &external_chain,
                        &format!(
                            "{} goto {cluster_policy_chain} comment \"short-circuit pod traffic\"",
                            self.local_detector.if_local_nft()
                        ),
                    );
                }
                rules.rule(
                    &external_chain,
                    &format!("fib saddr type local jump {MARK_MASQ_CHAIN} comment \"masquerade local traffic\""),
                );
                rules.rule(
                    &external_chain,
                    &format!(
                        "fib saddr type local goto {cluster_policy_chain} comment \"short-circuit local traffic\""
                    ),
                );
            }
            if has_external {
                rules.rule(&external_chain, &format!("goto {external_policy_chain}"));
            }
        }
        if uses_fw_chain {
            let mut sources: Vec<String> = Vec::new();
            let mut allow_from_node = false;
            for cidr in &svc.load_balancer_source_ranges {
                sources.push(cidr.to_string());
                allow_from_node |= self.node_ip.is_some_and(|ip| cidr.contains(ip));
            }
            if allow_from_node {
                sources.extend(svc.load_balancer_vips.iter().map(ToString::to_string));
            }
            rules.rule(&firewall_chain, &format!("{ip_x} saddr != {{ {} }} drop", sources.join(" , ")));
        }
        rec.elements = elements.into_boxed_slice();
        if let Some(timeout) = svc.sticky_max_age_seconds {
            for base in &endpoint_bases {
                cmd!(
                    tx,
                    "add set {family} affinity-{base} {{ type {addr_type} ; flags dynamic,timeout ; timeout {timeout}s ; }}"
                );
            }
        }
        for (used, chain, bit, eps) in [
            (uses_cluster_policy_chain, &cluster_policy_chain, 1, &cat.cluster),
            (uses_local_policy_chain, &local_policy_chain, 2, &cat.local),
        ] {
            if !used {
                continue;
            }
            if affinity {
                self.write_service_to_endpoint_rules(&mut rules, svc, chain, eps);
            } else {
                self.write_endpoint_picks(picks, &mut rules, svc, (chain, bit), eps, old, &mut rec);
            }
        }
        for (ep, base) in cat.all_reachable.iter().zip(&endpoint_bases) {
            let chain = format!("endpoint-{base}");
            rules.rule(&chain, &format!("{ip_x} saddr {} jump {MARK_MASQ_CHAIN}", ep.ip));
            rules.rule(&chain, &format!("update @affinity-{base} {{ {ip_x} saddr }}"));
            rules.rule(&chain, &format!("meta l4proto {protocol} dnat to {}", ep.addr()));
        }

        // Each chain's rules, unless a partial sync finds them as it last wrote them.
        for (name, bit, existed, was_stale) in chains {
            let prefix = format!("add rule {family} {name} ");
            let body: String =
                rules.text.lines().filter(|l| l.starts_with(&prefix)).map(|l| format!("{l}\n")).collect();
            if bit != 0 {
                let slot = bit.trailing_zeros() as usize;
                let hash = value_hash(&body);
                rec.rule_hashes[slot] = hash;
                let same = old.is_some_and(|o| o.chains & bit != 0 && o.rule_hashes[slot] == hash);
                if same && existed && !was_stale {
                    continue;
                }
            }
            if existed {
                tx.flush_chain(&name);
            }
            tx.text.push_str(&body);
        }
        rec
    }

    /// Deletes the ranges of the blocks `old` owned that `new` (the port's record now; None: the port is gone) no
    /// longer does, and frees the blocks.
    fn release_picks(&mut self, tx: &mut Tx, name: &ServicePortName, old: &ServiceRecord, new: Option<&ServiceRecord>) {
        let shard = endpoint_shard(name);
        for (slot, p) in old.picks.iter().enumerate() {
            if p.n == 0 || new.is_some_and(|r| r.picks[slot].n != 0) {
                continue;
            }
            p.write_ranges(tx, &endpoint_shard_name(shard), None);
            self.shards[shard].blocks.release(p.block);
        }
    }

    /// A policy chain's endpoints as ranges of its block of its endpoints map (`bit` 1 for the cluster chain, 2 for
    /// the local one): each endpoint gets an equal share of the block, and the chain DNATs to
    /// `numgen random mod 65536 offset <block start> map @endpoints-<shard>`. The elements go to `picks`, written
    /// after every rule of the transaction (a new rule looking a map up reads all of the map's elements). The chain
    /// keeps its block, so its rule stays and an endpoint change is elements only (no new jump or DNAT in the transaction: the kernel does not
    /// re-validate the table); unchanged endpoints are not rewritten.
    #[allow(clippy::too_many_arguments)]
    fn write_endpoint_picks(
        &mut self,
        picks: &mut Tx,
        rules: &mut Tx,
        svc: &ServicePort,
        (chain, bit): (&str, u8),
        endpoints: &[Arc<Endpoint>],
        old: Option<&ServiceRecord>,
        rec: &mut ServiceRecord,
    ) {
        let (ip_x, family, protocol) = (self.ip_x(), picks.family.clone(), svc.protocol.lower());
        let shard = endpoint_shard(&svc.name);
        let map = endpoint_shard_name(shard);
        if !self.shards[shard].declared {
            self.shards[shard].declared = true;
            let _ = writeln!(
                self.shard_declarations,
                "add map {family} {map} {{ typeof numgen random mod {ENDPOINT_SPREAD} : {ip_x} daddr . {protocol} dport ; flags interval ; }}"
            );
        }
        let endpoints = &endpoints[..endpoints.len().min(ENDPOINT_SPREAD as usize)];
        // (Written straight into the transaction, and hashed without a string: small strings made and freed for
        // each of 10,000 Services fragment the allocator's pages among the records that stay.)
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            endpoints.iter().for_each(|ep| (ep.ip, ep.port).hash(&mut h));
            h.finish()
        };
        let slot = usize::from(bit - 1);
        let before = old.map(|o| o.picks[slot]).filter(|p| p.n != 0);
        let Some(block) = before.map(|p| p.block).or_else(|| self.shards[shard].blocks.take()) else {
            self.blocks_exhausted = true;
            return;
        };
        let pick = Pick { block, n: endpoints.len() as u32, hash };
        if before != Some(pick) {
            if let Some(p) = before {
                p.write_ranges(picks, &map, None);
            }
            pick.write_ranges(picks, &map, Some(endpoints));
        }
        rec.picks[slot] = pick;
        let base = u64::from(block) * u64::from(ENDPOINT_SPREAD);
        rules.rule(
            chain,
            &format!(
                "meta l4proto {protocol} dnat {ip_x} to numgen random mod {ENDPOINT_SPREAD} offset {base} map @{map}"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sync's added elements go `per_line` to a line, the last line holding the rest, and start over once written.
    #[test]
    fn added_elements_lines() {
        let mut added = AddedElements::default();
        for i in 0..450 {
            added.add("ip kube-proxy", "cluster-ips", 200, format_args!("10.96.{}.{}", i / 250, i % 250));
        }
        let mut tx = Tx { family: "ip kube-proxy".into(), text: String::new() };
        added.write(&mut tx);
        let lines: Vec<&str> = tx.text.lines().collect();
        assert_eq!(lines.len(), 3, "{}", tx.text);
        assert!(
            lines.iter().all(|l| l.starts_with("add element ip kube-proxy cluster-ips { 10.96.") && l.ends_with(" }"))
        );
        assert_eq!(lines.iter().map(|l| l.matches("10.96.").count()).collect::<Vec<_>>(), [200, 200, 50]);
        assert!(lines[2].ends_with("10.96.1.199 }"));
        added.write(&mut tx);
        assert_eq!(tx.text.lines().count(), 3, "nothing left to write");
    }

    /// Blocks of the endpoints map: handed out in order, one freed by a sync is taken again only from the next sync
    /// on (its ranges are deleted in the freeing transaction), none past the 65,536th; a block's ranges split it
    /// evenly and cover it.
    #[test]
    fn endpoint_map_blocks() {
        let mut blocks = PickBlocks::default();
        assert_eq!((blocks.take(), blocks.take()), (Some(0), Some(1)));
        blocks.release(0);
        assert_eq!(blocks.take(), Some(2), "not in the sync that freed it");
        blocks.settle();
        assert_eq!(blocks.take(), Some(0));
        blocks.next = PICK_BLOCKS - 1;
        assert_eq!((blocks.take(), blocks.take()), (Some(PICK_BLOCKS - 1), None));

        let pick = Pick { block: 3, n: 3, hash: 0 };
        assert_eq!(pick.range(0), (196_608, 196_608 + 21_844));
        assert_eq!(pick.range(2).1, 4 * 65_536 - 1);
        let sizes: Vec<u64> = (0..3).map(|i| pick.range(i)).map(|(a, b)| b - a + 1).collect();
        assert_eq!(sizes.iter().sum::<u64>(), 65_536);
        assert!(sizes.iter().all(|s| s.abs_diff(65_536 / 3) <= 1), "{sizes:?}");
        for i in 0..2 {
            assert_eq!(pick.range(i).1 + 1, pick.range(i + 1).0);
        }
    }
    use crate::serviceport::Protocol;

    #[test]
    fn chain_names() {
        let name = ServicePortName::new("ns1", "svc1", "p80", Protocol::Tcp);
        let base = service_port_chain_name_base(&name);
        assert!(base.ends_with("-ns1/svc1/tcp/p80"), "{base}");
        assert_eq!(base.len(), 8 + 1 + "ns1/svc1/tcp/p80".len());
        let ep = Endpoint {
            ip: "fd00::1".parse().unwrap(),
            port: 80,
            is_local: false,
            ready: true,
            serving: true,
            terminating: false,
            zone_hints: Default::default(),
        };
        assert!(service_port_endpoint_chain_name_base(&name, &ep).ends_with("-ns1/svc1/tcp/p80__fd00..1/80"));
        let long = hash_and_truncate(&"x".repeat(300));
        assert_eq!(long.len(), 240);
        assert!(long.ends_with("..."));
    }
}
