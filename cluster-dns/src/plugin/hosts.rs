//! The `hosts` plugin: A, AAAA and PTR answers from a hosts file (default `/etc/hosts`, re-read every 5 s when it
//! changes) and from inline entries in the Corefile. A name it knows with no address of the asked family gets
//! NODATA; an unknown name goes to the next plugin with `fallthrough`, and gets SERVFAIL otherwise (hosts data
//! has no SOA to deny with), as CoreDNS answers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::{Answer, BoxFuture, Fallthrough, Next, Plugin, Setup, fqdn, in_zone, parse_duration};
use crate::corefile::Directive;
use crate::request::Request;

/// Names and addresses from hosts-format text.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Entries {
    by_name: HashMap<String, Vec<IpAddr>>,
    by_addr: HashMap<IpAddr, Vec<String>>,
}

impl Entries {
    /// Parses hosts-format lines, keeping names inside `origins`.
    pub fn parse(text: &str, origins: &[String]) -> Self {
        let mut e = Entries::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let mut fields = line.split_whitespace();
            let Some(addr) = fields.next() else { continue };
            let Ok(ip) = addr.split('%').next().unwrap_or_default().parse::<IpAddr>() else { continue };
            for n in fields {
                let name = fqdn(n);
                if !origins.iter().any(|z| in_zone(&name, z)) {
                    continue;
                }
                let ips = e.by_name.entry(name.clone()).or_default();
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
                let names = e.by_addr.entry(ip).or_default();
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        e
    }

    pub fn len(&self) -> usize {
        self.by_name.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

pub struct Hosts {
    origins: Vec<String>,
    pub fall: Fallthrough,
    ttl: u32,
    no_reverse: bool,
    inline: Entries,
    file: RwLock<Entries>,
}

impl Hosts {
    pub fn new(origins: Vec<String>, inline: Entries, file: Entries) -> Self {
        Hosts { origins, fall: Fallthrough::default(), ttl: 3600, no_reverse: false, inline, file: RwLock::new(file) }
    }

    fn addrs(&self, name: &str) -> Vec<IpAddr> {
        let file = self.file.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<IpAddr> = self.inline.by_name.get(name).cloned().unwrap_or_default();
        for ip in file.by_name.get(name).into_iter().flatten() {
            if !out.contains(ip) {
                out.push(*ip);
            }
        }
        out
    }

    fn names(&self, ip: IpAddr) -> Vec<String> {
        if self.no_reverse {
            return Vec::new();
        }
        let file = self.file.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<String> = self.inline.by_addr.get(&ip).cloned().unwrap_or_default();
        for n in file.by_addr.get(&ip).into_iter().flatten() {
            if !out.contains(n) {
                out.push(n.clone());
            }
        }
        out
    }
}

impl Plugin for Hosts {
    fn name(&self) -> &'static str {
        "hosts"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let name = req.name();
            let qtype = req.qtype();
            let in_origins = self.origins.iter().any(|z| in_zone(&name, z));
            if !in_origins && qtype != RecordType::PTR {
                return next.serve(req).await;
            }
            let owner = req.qname().clone();
            let addrs = self.addrs(&name);
            let answers: Vec<Record> = match qtype {
                RecordType::PTR => {
                    let names =
                        super::kubernetes::address_from_reverse(&name).map(|ip| self.names(ip)).unwrap_or_default();
                    if names.is_empty() {
                        return next.serve(req).await;
                    }
                    names
                        .iter()
                        .filter_map(|n| Name::from_ascii(n).ok())
                        .map(|n| Record::from_rdata(owner.clone(), self.ttl, RData::PTR(PTR(n))))
                        .collect()
                }
                RecordType::A => addrs
                    .iter()
                    .filter_map(|ip| match ip {
                        IpAddr::V4(v4) => Some(Record::from_rdata(owner.clone(), self.ttl, RData::A(A(*v4)))),
                        _ => None,
                    })
                    .collect(),
                RecordType::AAAA => addrs
                    .iter()
                    .filter_map(|ip| match ip {
                        IpAddr::V6(v6) => Some(Record::from_rdata(owner.clone(), self.ttl, RData::AAAA(AAAA(*v6)))),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            if answers.is_empty() && addrs.is_empty() {
                if self.fall.through(&name) {
                    return next.serve(req).await;
                }
                req.responder = "hosts";
                return Ok(req.reply_rcode(ResponseCode::ServFail));
            }
            req.responder = "hosts";
            let mut m = req.reply();
            m.metadata.authoritative = true;
            m.answers = answers;
            Ok(m)
        })
    }
}

fn file_stamp(path: &PathBuf) -> Option<(std::time::SystemTime, u64)> {
    let md = std::fs::metadata(path).ok()?;
    Some((md.modified().ok()?, md.len()))
}

/// Re-reads the hosts file every `period` when its modification time or size changed.
fn watch_file(hosts: Weak<Hosts>, path: PathBuf, period: Duration) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    let mut stamp = file_stamp(&path);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            let Some(h) = hosts.upgrade() else { return };
            let now = file_stamp(&path);
            if now == stamp {
                continue;
            }
            stamp = now;
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let entries = Entries::parse(&text, &h.origins);
            crate::metrics::metrics().hosts_entries.set((entries.len() + h.inline.len()) as i64);
            *h.file.write().unwrap_or_else(|e| e.into_inner()) = entries;
            tracing::info!("plugin/hosts: reloaded {}", path.display());
        }
    });
}

/// `hosts [FILE [ZONES...]] { [INLINE] ; ttl SECONDS; no_reverse; reload DURATION; fallthrough [ZONES...] }`.
pub fn setup(d: &Directive, s: &mut Setup<'_>) -> Result<Arc<Hosts>, String> {
    let (path, explicit) = match d.args.first() {
        Some(p) => (PathBuf::from(p), true),
        None => (PathBuf::from("/etc/hosts"), false),
    };
    let origins = super::origins(d.args.get(1..).unwrap_or_default(), s);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if explicit && e.kind() != std::io::ErrorKind::NotFound => {
            return Err(s.err(d, d.line, format!("unable to access hosts file '{}': {e}", path.display())));
        }
        Err(_) => String::new(),
    };
    let mut inline_text = String::new();
    let mut h = Hosts::new(origins.clone(), Entries::default(), Entries::parse(&text, &origins));
    let mut reload = Duration::from_secs(5);
    for l in &d.block {
        let a = &l.tokens[1..];
        match l.tokens[0].as_str() {
            "fallthrough" => h.fall.set(a),
            "no_reverse" => h.no_reverse = true,
            "ttl" => {
                let [v] = a else { return Err(s.err(d, l.line, "ttl needs a time in second")) };
                let t: u32 = v.parse().map_err(|_| s.err(d, l.line, "ttl needs a number of second"))?;
                if t == 0 || t > 65535 {
                    return Err(s.err(d, l.line, "ttl provided is invalid"));
                }
                h.ttl = t;
            }
            "reload" => {
                let [v] = a else { return Err(s.err(d, l.line, "reload needs a duration (zero seconds to disable)")) };
                reload =
                    parse_duration(v).ok_or_else(|| s.err(d, l.line, format!("invalid duration for reload '{v}'")))?;
            }
            first
                if first.parse::<IpAddr>().is_ok()
                    || first.split('%').next().is_some_and(|f| f.parse::<IpAddr>().is_ok()) =>
            {
                inline_text.push_str(&l.tokens.join(" "));
                inline_text.push('\n');
            }
            other => return Err(s.err(d, l.line, format!("unknown property '{other}'"))),
        }
    }
    h.inline = Entries::parse(&inline_text, &origins);
    crate::metrics::metrics().hosts_entries.set((h.inline.len() + h.file.read().map(|f| f.len()).unwrap_or(0)) as i64);
    let h = Arc::new(h);
    if !reload.is_zero() {
        watch_file(Arc::downgrade(&h), path, reload);
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_text() {
        let e = Entries::parse(
            "127.0.0.1 localhost\n# comment\n10.0.0.1 db.example.org db # trailing\nfe80::1%eth0 link.example.org\nbad line\n",
            &[".".to_string()],
        );
        assert_eq!(e.by_name["db.example.org."], ["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(e.by_name["db."].len(), 1);
        assert_eq!(e.by_addr[&"10.0.0.1".parse::<IpAddr>().unwrap()], ["db.example.org.", "db."]);
        assert!(e.by_name.contains_key("link.example.org."));
        let scoped = Entries::parse("10.0.0.1 db.example.org other.net\n", &["example.org.".to_string()]);
        assert!(!scoped.by_name.contains_key("other.net."));
    }
}
