//! The `kubernetes` plugin: the cluster zone from Services, EndpointSlices, Namespaces and Pods, per the
//! Kubernetes DNS specification (kubernetes/dns `docs/specification.md`) and CoreDNS's answers
//! (`plugin/kubernetes`): `<svc>.<ns>.svc.<zone>` A/AAAA (cluster IPs, or every ready endpoint of a headless
//! service), `<hostname>.<svc>.<ns>.svc.<zone>` for endpoints, SRV for named ports, CNAME for ExternalName, PTR for
//! service and endpoint IPs, `<a-b-c-d>.<ns>.pod.<zone>` pod records (`pods disabled|insecure|verified`),
//! `dns-version.<zone>` TXT, NS and SOA; NXDOMAIN for names that do not exist and NODATA (NOERROR, SOA in the
//! authority section) for names that exist without records of the asked type.

use std::collections::HashSet;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::{Answer, BoxFuture, Fallthrough, Next, Plugin, Setup, fqdn, in_zone, matches};
use crate::controller::{Address, Controller, State, service_key};
use crate::corefile::Directive;
use crate::request::Request;

/// The schema version of the specification served at `dns-version.<zone>`.
pub const DNS_SCHEMA_VERSION: &str = "1.1.0";
/// CoreDNS's default TTL for the kubernetes plugin.
pub const DEFAULT_TTL: u32 = 5;
const MAX_CNAME_CHAIN: usize = 10;

/// How pod names (`1-2-3-4.<ns>.pod.<zone>`) are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodMode {
    /// Not at all (NXDOMAIN).
    Disabled,
    /// Any well-formed name in an existing namespace gets the address it spells.
    Insecure,
    /// Only names of pods with that IP in that namespace.
    Verified,
}

/// What a record stands for before it becomes a resource record (CoreDNS's `msg.Service`).
#[derive(Debug, Clone, PartialEq)]
pub enum Host {
    Ip(IpAddr),
    /// A domain name (ExternalName targets, PTR targets).
    Name(String),
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rec {
    pub host: Host,
    pub port: i32,
    /// The record's own domain name (SRV targets, additional records).
    pub target: String,
    pub ttl: u32,
}

/// A name that does not exist (CoreDNS's errNoItems, errNsNotExposed, errInvalidRequest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameError;

type Found = Result<Vec<Rec>, NameError>;

/// A parsed query name below the zone (CoreDNS's `recordRequest`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordRequest {
    pub port: String,
    pub protocol: String,
    pub endpoint: String,
    pub service: String,
    pub namespace: String,
    pub pod_or_svc: String,
}

fn strip_underscore(s: &str) -> String {
    s.strip_prefix('_').unwrap_or(s).to_string()
}

/// The part of `name` below `zone` ("" for the apex); both lower case and fully qualified.
fn trim_zone<'a>(name: &'a str, zone: &str) -> &'a str {
    if name == zone || zone == "." && name == "." {
        return "";
    }
    let base = if zone == "." { name } else { &name[..name.len() - zone.len()] };
    base.trim_end_matches('.')
}

/// CoreDNS's `parseRequest`: `[_port._proto.|endpoint.]service.namespace.(svc|pod)`.
pub fn parse_request(name: &str, zone: &str) -> Result<RecordRequest, NameError> {
    let mut r = RecordRequest::default();
    let base = trim_zone(name, zone);
    if base.is_empty() || base == "svc" || base == "pod" {
        return Ok(r);
    }
    let segs: Vec<&str> = base.split('.').collect();
    let mut last = segs.len() as isize - 1;
    r.pod_or_svc = segs[last as usize].to_string();
    if r.pod_or_svc != "pod" && r.pod_or_svc != "svc" {
        return Err(NameError);
    }
    last -= 1;
    if last < 0 {
        return Ok(r);
    }
    r.namespace = segs[last as usize].to_string();
    last -= 1;
    if last < 0 {
        return Ok(r);
    }
    r.service = segs[last as usize].to_string();
    last -= 1;
    match last {
        -1 => {}
        0 => r.endpoint = segs[0].to_string(),
        1 => {
            r.protocol = strip_underscore(segs[1]);
            r.port = strip_underscore(segs[0]);
        }
        _ => return Err(NameError),
    }
    Ok(r)
}

fn is_reverse(name: &str) -> bool {
    name.ends_with("in-addr.arpa.") || name.ends_with("ip6.arpa.")
}

/// The address a full reverse name spells (CoreDNS's `dnsutil.ExtractAddressFromReverse`).
pub fn address_from_reverse(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa.") {
        let mut parts: Vec<&str> = rest.split('.').collect();
        if parts.len() != 4 {
            return None;
        }
        parts.reverse();
        return parts.join(".").parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4);
    }
    if let Some(rest) = name.strip_suffix(".ip6.arpa.") {
        let nibbles: Vec<&str> = rest.split('.').collect();
        if nibbles.len() != 32 || nibbles.iter().any(|n| n.len() != 1) {
            return None;
        }
        let hex: String = nibbles.iter().rev().copied().collect();
        let groups: Vec<&str> = (0..8).map(|i| &hex[i * 4..i * 4 + 4]).collect();
        return groups.join(":").parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    None
}

/// CoreDNS's `endpointHostname`: the endpoint's hostname, its pod's name (`endpoint_pod_names`), or its IP with
/// dashes.
pub fn endpoint_hostname(a: &Address, endpoint_name_mode: bool) -> String {
    if !a.hostname.is_empty() {
        return a.hostname.clone();
    }
    if endpoint_name_mode && !a.target_ref_name.is_empty() {
        return a.target_ref_name.clone();
    }
    match a.ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => {
            let h = v6.to_string().replace(':', "-");
            if h.ends_with('-') { h + "0" } else { h }
        }
    }
}

fn eq_fold(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn match_port_protocol(a_port: &str, b_port: &str, a_proto: &str, b_proto: &str) -> bool {
    (a_port.is_empty() || eq_fold(a_port, b_port)) && (a_proto.is_empty() || eq_fold(a_proto, b_proto))
}

/// The plugin.
pub struct Kubernetes {
    /// Lower case, fully qualified.
    pub zones: Vec<String>,
    pub pod_mode: PodMode,
    pub fall: Fallthrough,
    pub ttl: u32,
    /// `namespaces`: only these are served (empty: all).
    pub namespaces: HashSet<String>,
    pub endpoint_name_mode: bool,
    pub ignore_empty_service: bool,
    pub controller: Arc<Controller>,
    /// This server's addresses (for NS records, as CoreDNS's `localIPs`).
    pub local_ips: Vec<IpAddr>,
}

impl Kubernetes {
    /// A plugin over `controller` for `zones` with CoreDNS's defaults.
    pub fn new(zones: &[&str], controller: Arc<Controller>) -> Self {
        Kubernetes {
            zones: zones.iter().map(|z| fqdn(z)).collect(),
            pod_mode: PodMode::Disabled,
            fall: Fallthrough::default(),
            ttl: DEFAULT_TTL,
            namespaces: HashSet::new(),
            endpoint_name_mode: false,
            ignore_empty_service: false,
            controller,
            local_ips: Vec::new(),
        }
    }

    fn primary_zone(&self) -> &str {
        self.zones.iter().find(|z| !is_reverse(z)).map(String::as_str).unwrap_or(".")
    }

    fn namespace_exposed(&self, st: &State, ns: &str) -> bool {
        (self.namespaces.is_empty() || self.namespaces.contains(ns)) && st.namespaces.contains(ns)
    }

    /// CoreDNS's `Records`.
    pub fn records(&self, st: &State, name: &str, zone: &str) -> Found {
        let r = parse_request(name, zone)?;
        if r.pod_or_svc.is_empty() {
            return Ok(Vec::new());
        }
        if is_reverse(name) || !self.namespace_exposed(st, &r.namespace) {
            return Err(NameError);
        }
        if r.pod_or_svc == "pod" { self.find_pods(st, &r, zone) } else { self.find_services(st, &r, zone) }
    }

    fn find_pods(&self, st: &State, r: &RecordRequest, zone: &str) -> Found {
        if self.pod_mode == PodMode::Disabled {
            return Err(NameError);
        }
        if r.service.is_empty() {
            return Ok(Vec::new());
        }
        let podname = &r.service;
        let ip = if podname.matches('-').count() == 3 && !podname.contains("--") {
            podname.replace('-', ".")
        } else {
            podname.replace('-', ":")
        };
        let Ok(ip) = IpAddr::from_str(&ip) else { return Err(NameError) };
        let target = format!("{podname}.{}.pod.{zone}", r.namespace);
        let rec = Rec { host: Host::Ip(ip), port: 0, target, ttl: self.ttl };
        match self.pod_mode {
            PodMode::Insecure => Ok(vec![rec]),
            _ => {
                let found =
                    st.pods_by_ip.get(&ip).is_some_and(|pods| pods.iter().any(|(ns, _)| eq_fold(ns, &r.namespace)));
                if found { Ok(vec![rec]) } else { Err(NameError) }
            }
        }
    }

    fn find_services(&self, st: &State, r: &RecordRequest, zone: &str) -> Found {
        if r.service.is_empty() {
            return Ok(Vec::new());
        }
        let key = service_key(&r.service, &r.namespace);
        let Some(svc) = st.services.get(key.as_str()) else { return Err(NameError) };
        let mut found = false;
        let mut out = Vec::new();
        if self.ignore_empty_service && svc.external_name.is_none() && !svc.headless {
            let pods: usize = st.endpoints(&key).map(|s| s.addresses.len()).sum();
            if pods == 0 {
                return Err(NameError);
            }
        }
        if let Some(ext) = &svc.external_name {
            if !r.endpoint.is_empty() || !r.port.is_empty() || !r.protocol.is_empty() || ext.parse::<IpAddr>().is_ok() {
                return Err(NameError);
            }
            let target = format!("{}.{}.svc.{zone}", svc.name, svc.namespace);
            return Ok(vec![Rec { host: Host::Name(ext.clone()), port: 0, target, ttl: self.ttl }]);
        }
        if svc.headless || !r.endpoint.is_empty() {
            for slice in st.endpoints(&key) {
                for addr in &slice.addresses {
                    let hostname = endpoint_hostname(addr, self.endpoint_name_mode);
                    if !r.endpoint.is_empty() && !eq_fold(&r.endpoint, &hostname) {
                        continue;
                    }
                    for p in &slice.ports {
                        if !match_port_protocol(&r.port, &p.name, &r.protocol, &p.protocol) {
                            continue;
                        }
                        found = true;
                        out.push(Rec {
                            host: Host::Ip(addr.ip),
                            port: p.port,
                            target: format!("{hostname}.{}.{}.svc.{zone}", svc.name, svc.namespace),
                            ttl: self.ttl,
                        });
                    }
                }
            }
        } else {
            for p in &svc.ports {
                if !match_port_protocol(&r.port, &p.name, &r.protocol, &p.protocol) {
                    continue;
                }
                found = true;
                for ip in &svc.cluster_ips {
                    out.push(Rec {
                        host: Host::Ip(*ip),
                        port: p.port,
                        target: format!("{}.{}.svc.{zone}", svc.name, svc.namespace),
                        ttl: self.ttl,
                    });
                }
            }
        }
        if found { Ok(out) } else { Err(NameError) }
    }

    /// The name servers (CoreDNS's `nsAddrs`): the kube-dns service this server backs, or `ns.dns.<zone>` with
    /// the server's own addresses.
    pub fn ns_addrs(&self, st: &State, zone: &str) -> Vec<(String, IpAddr)> {
        let mut out = Vec::new();
        let mut found = false;
        for ip in &self.local_ips {
            for slice in st.endpoints_by_ip.get(ip).into_iter().flatten() {
                found = true;
                let key = service_key(&slice.service, &slice.namespace);
                let Some(svc) = st.services.get(key.as_str()) else { continue };
                let svc_name = format!("{}.{}.svc.{zone}", svc.name, svc.namespace);
                if svc.headless {
                    for slice in st.endpoints(&key) {
                        for a in &slice.addresses {
                            out.push((format!("{}.{svc_name}", endpoint_hostname(a, self.endpoint_name_mode)), a.ip));
                        }
                    }
                } else {
                    out.extend(svc.cluster_ips.iter().map(|ip| (svc_name.clone(), *ip)));
                }
            }
        }
        if !found {
            out = self.local_ips.iter().map(|ip| (format!("ns.dns.{zone}"), *ip)).collect();
        }
        out.dedup();
        out
    }

    /// CoreDNS's `Services`: the records for a name and type.
    pub fn services(&self, st: &State, name: &str, qtype: RecordType, zone: &str) -> Found {
        match qtype {
            RecordType::TXT => {
                if trim_zone(name, zone) == "dns-version" {
                    let text = Host::Text(DNS_SCHEMA_VERSION.into());
                    return Ok(vec![Rec { host: text, port: 0, target: name.into(), ttl: 28800 }]);
                }
                return match self.records(st, name, zone) {
                    Ok(r) if !r.is_empty() => Ok(Vec::new()),
                    _ => Err(NameError),
                };
            }
            RecordType::NS => {
                return Ok(self
                    .ns_addrs(st, zone)
                    .into_iter()
                    .map(|(n, ip)| Rec { host: Host::Ip(ip), port: 0, target: n, ttl: self.ttl })
                    .collect());
            }
            _ => {}
        }
        if name.strip_suffix(zone) == Some("ns.dns.") || zone == "." && name == "ns.dns." {
            return Ok(self
                .ns_addrs(st, zone)
                .into_iter()
                .filter(|(_, ip)| (qtype == RecordType::A) == ip.is_ipv4())
                .map(|(_, ip)| Rec { host: Host::Ip(ip), port: 0, target: name.into(), ttl: self.ttl })
                .collect());
        }
        let recs = self.records(st, name, zone)?;
        if qtype == RecordType::SRV {
            return Ok(recs.into_iter().filter(|r| !matches!(r.host, Host::Name(_))).collect());
        }
        Ok(recs)
    }

    /// CoreDNS's `Reverse`: the names of a service or endpoint IP.
    pub fn reverse(&self, st: &State, name: &str, zone: &str) -> Found {
        let Some(ip) = address_from_reverse(name) else {
            self.records(st, name, zone)?;
            return Ok(Vec::new());
        };
        let primary = self.primary_zone();
        let exposed = |ns: &str| self.namespaces.is_empty() || self.namespaces.contains(ns);
        for key in st.services_by_ip.get(&ip).into_iter().flatten() {
            if let Some(svc) = st.services.get(key).filter(|s| exposed(&s.namespace)) {
                let host = format!("{}.{}.svc.{primary}", svc.name, svc.namespace);
                return Ok(vec![Rec { host: Host::Name(host), port: 0, target: String::new(), ttl: self.ttl }]);
            }
        }
        let mut out = Vec::new();
        for slice in st.endpoints_by_ip.get(&ip).into_iter().flatten() {
            if !exposed(&slice.namespace) {
                continue;
            }
            for a in slice.addresses.iter().filter(|a| a.ip == ip) {
                let host = format!(
                    "{}.{}.{}.svc.{primary}",
                    endpoint_hostname(a, self.endpoint_name_mode),
                    slice.service,
                    slice.namespace
                );
                out.push(Rec { host: Host::Name(host), port: 0, target: String::new(), ttl: self.ttl });
            }
        }
        if out.is_empty() { Err(NameError) } else { Ok(out) }
    }

    /// CoreDNS's SOA for a zone (`zone` in the query's case).
    pub fn soa(&self, zone: &str) -> Record {
        let z = Name::from_ascii(zone).unwrap_or_else(|_| Name::root());
        let mname = Name::from_ascii(format!("ns.dns.{zone}")).unwrap_or_else(|_| Name::root());
        let rname = Name::from_ascii(format!("hostmaster.{zone}")).unwrap_or_else(|_| Name::root());
        let soa = SOA::new(mname, rname, self.controller.modified(), 7200, 1800, 86400, self.ttl);
        Record::from_rdata(z, self.ttl.min(300), RData::SOA(soa))
    }

    /// A, AAAA or TXT answers, following CNAMEs of ExternalName services (inside the zone here, outside through
    /// the server), as CoreDNS's `plugin.A`.
    fn address<'a>(
        &'a self,
        req: &'a Request,
        owner: Name,
        name: String,
        qtype: RecordType,
        zone: &'a str,
        previous: Vec<Record>,
    ) -> BoxFuture<'a, Result<(Vec<Record>, bool), NameError>> {
        Box::pin(async move {
            let services = self.services(&self.controller.read(), &name, qtype, zone)?;
            let mut records = Vec::new();
            let mut truncated = false;
            let mut seen = HashSet::new();
            for serv in services {
                match serv.host {
                    Host::Name(target) => {
                        let target_fqdn = fqdn(&target);
                        if eq_fold(&name, &target_fqdn) || previous.len() > MAX_CNAME_CHAIN {
                            continue;
                        }
                        let Ok(target_name) = Name::from_ascii(&target_fqdn) else { continue };
                        let cname =
                            Record::from_rdata(owner.clone(), serv.ttl, RData::CNAME(CNAME(target_name.clone())));
                        if previous.contains(&cname) {
                            continue;
                        }
                        if in_zone(&target_fqdn, zone) {
                            let mut chain = previous.clone();
                            chain.push(cname.clone());
                            if let Ok((next, tc)) =
                                self.address(req, target_name, target_fqdn, qtype, zone, chain).await
                            {
                                if !next.is_empty() {
                                    records.push(cname);
                                    records.extend(next);
                                }
                                truncated |= tc;
                            }
                            continue;
                        }
                        let m = req.lookup.lookup(target_name, qtype, req.proto, req.client).await;
                        truncated |= m.metadata.truncation;
                        records.push(cname);
                        records.extend(m.answers);
                    }
                    Host::Ip(ip @ IpAddr::V4(v4)) if qtype == RecordType::A && seen.insert(ip) => {
                        records.push(Record::from_rdata(owner.clone(), serv.ttl, RData::A(A(v4))));
                    }
                    Host::Ip(ip @ IpAddr::V6(v6)) if qtype == RecordType::AAAA && seen.insert(ip) => {
                        records.push(Record::from_rdata(owner.clone(), serv.ttl, RData::AAAA(AAAA(v6))));
                    }
                    Host::Text(t) if qtype == RecordType::TXT => {
                        records.push(Record::from_rdata(owner.clone(), serv.ttl, RData::TXT(TXT::new(vec![t]))));
                    }
                    _ => {}
                }
            }
            Ok((records, truncated))
        })
    }

    /// SRV answers with the targets' addresses as additional records (CoreDNS's `plugin.SRV`).
    fn srv(&self, owner: &Name, services: Vec<Rec>) -> (Vec<Record>, Vec<Record>) {
        let total = services.len().max(1) * 100;
        let weight = ((100.0 / total as f64) * 100.0).floor().max(1.0) as u16;
        let mut records = Vec::new();
        let mut extra = Vec::new();
        let mut seen_srv = HashSet::new();
        let mut seen_addr = HashSet::new();
        for s in services {
            let Host::Ip(ip) = s.host else { continue };
            if s.port == -1 {
                continue;
            }
            let Ok(target) = Name::from_ascii(&s.target) else { continue };
            if seen_srv.insert((s.target.clone(), s.port)) {
                let srv = SRV::new(0, weight, s.port as u16, target.clone());
                records.push(Record::from_rdata(owner.clone(), s.ttl, RData::SRV(srv)));
            }
            if seen_addr.insert((s.target.clone(), ip)) {
                extra.push(address_record(target, s.ttl, ip));
            }
        }
        (records, extra)
    }
}

fn address_record(name: Name, ttl: u32, ip: IpAddr) -> Record {
    match ip {
        IpAddr::V4(v4) => Record::from_rdata(name, ttl, RData::A(A(v4))),
        IpAddr::V6(v6) => Record::from_rdata(name, ttl, RData::AAAA(AAAA(v6))),
    }
}

impl Plugin for Kubernetes {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn ready(&self) -> Option<bool> {
        Some(self.controller.has_synced())
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let name = req.name();
            let Some(zone) = matches(&self.zones, &name) else { return next.serve(req).await };
            // The zone as the query spelled it.
            let qname_text = {
                let mut t = req.qname().to_ascii();
                if !t.ends_with('.') {
                    t.push('.');
                }
                t
            };
            let zone_q =
                if zone == "." { ".".to_string() } else { qname_text[qname_text.len() - zone.len()..].to_string() };
            let owner = req.qname().clone();
            let qtype = req.qtype();
            let mut extra = Vec::new();
            let mut truncated = false;
            let result: Result<Vec<Record>, NameError> = match qtype {
                RecordType::A | RecordType::AAAA | RecordType::TXT => {
                    match self.address(req, owner.clone(), name.clone(), qtype, zone, Vec::new()).await {
                        Ok((r, tc)) => {
                            truncated = tc;
                            Ok(r)
                        }
                        Err(e) => Err(e),
                    }
                }
                RecordType::CNAME => self.services(&self.controller.read(), &name, qtype, zone).map(|s| {
                    s.into_iter()
                        .take(1)
                        .filter_map(|r| match r.host {
                            Host::Name(n) => Name::from_ascii(fqdn(&n))
                                .ok()
                                .map(|t| Record::from_rdata(owner.clone(), r.ttl, RData::CNAME(CNAME(t)))),
                            _ => None,
                        })
                        .collect()
                }),
                RecordType::PTR => self.reverse(&self.controller.read(), &name, zone).map(|s| {
                    let mut seen = HashSet::new();
                    s.into_iter()
                        .filter_map(|r| match r.host {
                            Host::Name(n) if seen.insert(n.clone()) => Name::from_ascii(fqdn(&n))
                                .ok()
                                .map(|t| Record::from_rdata(owner.clone(), r.ttl, RData::PTR(PTR(t)))),
                            _ => None,
                        })
                        .collect()
                }),
                RecordType::SRV => self.services(&self.controller.read(), &name, qtype, zone).map(|s| {
                    let (r, x) = self.srv(&owner, s);
                    extra = x;
                    r
                }),
                RecordType::SOA => Ok(if name == zone { vec![self.soa(&zone_q)] } else { Vec::new() }),
                RecordType::AXFR | RecordType::IXFR => return Ok(req.reply_rcode(ResponseCode::Refused)),
                RecordType::NS if name == zone => self.services(&self.controller.read(), &name, qtype, zone).map(|s| {
                    let mut seen = HashSet::new();
                    let mut records = Vec::new();
                    for r in s {
                        let (Host::Ip(ip), Ok(target)) = (r.host, Name::from_ascii(&r.target)) else { continue };
                        extra.push(address_record(target.clone(), r.ttl, ip));
                        if seen.insert(r.target.clone()) {
                            records.push(Record::from_rdata(owner.clone(), r.ttl, RData::NS(NS(target))));
                        }
                    }
                    records
                }),
                _ => self.services(&self.controller.read(), &name, RecordType::A, zone).map(|_| Vec::new()),
            };
            let records = match result {
                Ok(r) => r,
                Err(NameError) => {
                    if self.fall.through(&name) {
                        return next.serve(req).await;
                    }
                    let rcode =
                        if self.controller.has_synced() { ResponseCode::NXDomain } else { ResponseCode::ServFail };
                    let mut m = req.reply_rcode(rcode);
                    m.metadata.authoritative = true;
                    m.authorities.push(self.soa(&zone_q));
                    req.responder = "kubernetes";
                    return Ok(m);
                }
            };
            req.responder = "kubernetes";
            let mut m = req.reply();
            m.metadata.authoritative = true;
            if records.is_empty() {
                m.authorities.push(self.soa(&zone_q));
                return Ok(m);
            }
            m.metadata.truncation = truncated;
            m.answers = records;
            m.additionals = extra;
            Ok(m)
        })
    }
}

/// `kubernetes [ZONES...] { pods ...; fallthrough ...; ttl ...; namespaces ...; endpoint_pod_names; ignore
/// empty_service; kubeconfig FILE [CONTEXT] }`.
pub fn setup(d: &Directive, s: &mut Setup<'_>) -> Result<Kubernetes, String> {
    let zones = super::origins(&d.args, s);
    let mut k = Kubernetes {
        zones,
        pod_mode: PodMode::Disabled,
        fall: Fallthrough::default(),
        ttl: DEFAULT_TTL,
        namespaces: HashSet::new(),
        endpoint_name_mode: false,
        ignore_empty_service: false,
        controller: Controller::fixed(State::default()),
        local_ips: Vec::new(),
    };
    if k.zones.iter().all(|z| is_reverse(z)) {
        return Err(s.err(d, d.line, "non-reverse zone name must be used"));
    }
    let mut kubeconfig = None;
    for line in &d.block {
        let t = &line.tokens;
        let args = &t[1..];
        let arg_err =
            || s.err(d, line.line, format!("Wrong argument count or unexpected line ending after '{}'", t[0]));
        match t[0].as_str() {
            "pods" => {
                k.pod_mode = match args {
                    [m] if m == "disabled" => PodMode::Disabled,
                    [m] if m == "insecure" => PodMode::Insecure,
                    [m] if m == "verified" => PodMode::Verified,
                    [m] => {
                        return Err(s.err(
                            d,
                            line.line,
                            format!("wrong value for pods: {m},  must be one of: disabled, verified, insecure"),
                        ));
                    }
                    _ => return Err(arg_err()),
                }
            }
            "fallthrough" => k.fall.set(args),
            "ttl" => {
                let [v] = args else { return Err(arg_err()) };
                let ttl: i64 = v.parse().map_err(|_| arg_err())?;
                if !(0..=3600).contains(&ttl) {
                    return Err(s.err(d, line.line, format!("ttl must be in range [0, 3600]: {ttl}")));
                }
                k.ttl = ttl as u32;
            }
            "namespaces" => {
                if args.is_empty() {
                    return Err(arg_err());
                }
                k.namespaces.extend(args.iter().cloned());
            }
            "endpoint_pod_names" => {
                if !args.is_empty() {
                    return Err(arg_err());
                }
                k.endpoint_name_mode = true;
            }
            "ignore" => match args {
                [v] if v == "empty_service" => k.ignore_empty_service = true,
                [v] => return Err(s.err(d, line.line, format!("unable to parse ignore value: '{v}'"))),
                _ => return Err(arg_err()),
            },
            "kubeconfig" => match args {
                [path] => kubeconfig = Some((path.clone(), None)),
                [path, context] => kubeconfig = Some((path.clone(), Some(context.clone()))),
                _ => return Err(arg_err()),
            },
            // Client tuning CoreDNS offers; our client has its own limits.
            "startup_timeout" | "apiserver_qps" | "apiserver_burst" | "apiserver_max_inflight" => {
                if args.len() != 1 {
                    return Err(arg_err());
                }
            }
            other => return Err(s.err(d, line.line, format!("unknown property '{other}'"))),
        }
    }
    k.controller = s.env.controller(kubeconfig.as_ref()).map_err(|e| s.err(d, d.line, e))?;
    if k.pod_mode == PodMode::Verified {
        k.controller.watch_pods();
    }
    k.local_ips = s.env.local_ips(s.keys);
    Ok(k)
}
