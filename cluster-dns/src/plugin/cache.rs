//! The `cache` plugin: keeps answers for their TTL, capped (`cache 30` caps at 30 s) and floored (5 s), in a
//! success cache (answers) and a denial cache (NXDOMAIN and NODATA), 9984 entries each by default; SERVFAIL
//! answers are kept for 5 s. Cached answers go out with their TTLs counted down. Keys are the lower-cased name,
//! type and DO/CD bits, as CoreDNS's.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use super::{Answer, BoxFuture, Next, Plugin, Setup, in_zone, parse_duration};
use crate::corefile::Directive;
use crate::metrics::{self, CacheLabels, CacheZoneLabels, Shared};
use crate::request::Request;

/// CoreDNS's defaults.
pub const DEFAULT_CAPACITY: usize = 9984;
pub const MAX_TTL: Duration = Duration::from_secs(3600);
pub const MAX_NTTL: Duration = Duration::from_secs(1800);
pub const MIN_TTL: Duration = Duration::from_secs(5);
pub const FAIL_TTL: Duration = Duration::from_secs(5);

const SHARDS: usize = 16;

/// What kind of response a message is (CoreDNS's `response.Typify`, the parts the cache needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Success,
    Denial,
    ServerError,
    Other,
}

pub fn classify(m: &Message) -> Kind {
    match m.metadata.response_code {
        ResponseCode::NoError if !m.answers.is_empty() => Kind::Success,
        ResponseCode::NoError if m.authorities.iter().any(|r| r.record_type() == RecordType::SOA) => Kind::Denial,
        ResponseCode::NoError => Kind::Other,
        ResponseCode::NXDomain => Kind::Denial,
        ResponseCode::ServFail => Kind::ServerError,
        _ => Kind::Other,
    }
}

/// The TTL a message may be cached for (CoreDNS's `dnsutil.MinimalTTL`): the smallest record TTL, for denials
/// also the SOA's minimum.
pub fn minimal_ttl(m: &Message, kind: Kind) -> Duration {
    let mut ttl = u32::MAX;
    for r in m.answers.iter().chain(m.authorities.iter()).chain(m.additionals.iter()) {
        ttl = ttl.min(r.ttl);
        if kind == Kind::Denial
            && let RData::SOA(soa) = &r.data
        {
            ttl = ttl.min(soa.minimum);
        }
    }
    if ttl == u32::MAX { MIN_TTL } else { Duration::from_secs(ttl as u64) }
}

struct Item {
    msg: Message,
    stored: Instant,
    ttl: Duration,
}

struct Store {
    shards: Vec<Mutex<HashMap<u64, Item>>>,
    capacity: usize,
}

impl Store {
    fn new(capacity: usize) -> Self {
        Store { shards: (0..SHARDS).map(|_| Mutex::default()).collect(), capacity }
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Item>> {
        self.shards[(key as usize) % SHARDS].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: u64, now: Instant) -> Option<(Message, Duration)> {
        let shard = self.shard(key);
        let item = shard.get(&key)?;
        let age = now.duration_since(item.stored);
        (age < item.ttl).then(|| (item.msg.clone(), item.ttl - age))
    }

    fn insert(&self, key: u64, item: Item) {
        let per_shard = self.capacity.div_ceil(SHARDS).max(1);
        let mut shard = self.shard(key);
        if shard.len() >= per_shard && !shard.contains_key(&key) {
            // As CoreDNS: evict some entry to make room.
            if let Some(k) = shard.keys().next().copied() {
                shard.remove(&k);
            }
        }
        shard.insert(key, item);
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len()).sum()
    }
}

pub struct Cache {
    zones: Vec<String>,
    zones_label: Shared,
    success: Store,
    denial: Store,
    pub max_ttl: Duration,
    pub max_nttl: Duration,
    pub min_ttl: Duration,
    pub min_nttl: Duration,
    pub fail_ttl: Duration,
    keepttl: bool,
    /// `disable success|denial [ZONES...]`: names in these zones are not cached as answers / as denials.
    no_success: Vec<String>,
    no_denial: Vec<String>,
}

/// CoreDNS's cache key: the name (lower case), type, and the DO and CD bits.
pub fn key(req: &Request) -> u64 {
    let mut h = DefaultHasher::new();
    req.name().hash(&mut h);
    u16::from(req.qtype()).hash(&mut h);
    req.do_bit().hash(&mut h);
    req.msg.metadata.checking_disabled.hash(&mut h);
    h.finish()
}

impl Cache {
    pub fn new(zones: Vec<String>) -> Self {
        Cache {
            zones_label: std::sync::Arc::new(zones.join(",")),
            zones,
            success: Store::new(DEFAULT_CAPACITY),
            denial: Store::new(DEFAULT_CAPACITY),
            max_ttl: MAX_TTL,
            max_nttl: MAX_NTTL,
            min_ttl: MIN_TTL,
            min_nttl: MIN_TTL,
            fail_ttl: FAIL_TTL,
            keepttl: false,
            no_success: Vec::new(),
            no_denial: Vec::new(),
        }
    }

    fn labels(&self, req: &Request, kind: &'static str) -> CacheLabels {
        CacheLabels { server: req.server.clone(), r#type: kind, zones: self.zones_label.clone(), view: "" }
    }

    /// Stores an answer (if it may be cached).
    pub fn store(&self, key: u64, m: &Message, now: Instant) {
        if m.metadata.truncation {
            return;
        }
        let kind = classify(m);
        let disabled = match kind {
            Kind::Success => &self.no_success,
            Kind::Denial => &self.no_denial,
            _ => &Vec::new(),
        };
        if !disabled.is_empty()
            && let Some(q) = m.queries.first()
            && super::matches(disabled, &super::fqdn(&q.name().to_string())).is_some()
        {
            return;
        }
        let (store, ttl) = match kind {
            Kind::Success => (&self.success, minimal_ttl(m, kind).clamp(self.min_ttl, self.max_ttl.max(self.min_ttl))),
            Kind::Denial => (&self.denial, minimal_ttl(m, kind).clamp(self.min_nttl, self.max_nttl.max(self.min_nttl))),
            Kind::ServerError if !self.fail_ttl.is_zero() => (&self.denial, self.fail_ttl),
            _ => return,
        };
        if ttl.is_zero() {
            return;
        }
        store.insert(key, Item { msg: m.clone(), stored: now, ttl });
    }

    /// A cached answer to `req`, TTLs counted down.
    pub fn lookup(&self, key: u64, req: &Request, now: Instant) -> Option<(Message, &'static str)> {
        let (mut m, left, kind) = match self.success.get(key, now) {
            Some((m, left)) => (m, left, "success"),
            None => {
                let (m, left) = self.denial.get(key, now)?;
                (m, left, "denial")
            }
        };
        let ttl = left.as_secs() as u32;
        if !self.keepttl {
            for r in m.answers.iter_mut().chain(m.authorities.iter_mut()).chain(m.additionals.iter_mut()) {
                r.ttl = r.ttl.min(ttl);
            }
        }
        m.metadata.id = req.msg.metadata.id;
        m.queries = req.msg.queries.clone();
        Some((m, kind))
    }
}

impl Plugin for Cache {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let name = req.name();
            if !self.zones.iter().any(|z| in_zone(&name, z)) {
                return next.serve(req).await;
            }
            let m = metrics::metrics();
            let zl = CacheZoneLabels { server: req.server.clone(), zones: self.zones_label.clone(), view: "" };
            m.cache_requests.get_or_create(&zl).inc();
            let key = key(req);
            let now = Instant::now();
            if let Some((msg, kind)) = self.lookup(key, req, now) {
                m.cache_hits.get_or_create(&self.labels(req, kind)).inc();
                req.responder = "cache";
                return Ok(msg);
            }
            m.cache_misses.get_or_create(&zl).inc();
            let answer = next.serve(&mut *req).await?;
            self.store(key, &answer, now);
            m.cache_entries.get_or_create(&self.labels(req, "success")).set(self.success.len() as i64);
            m.cache_entries.get_or_create(&self.labels(req, "denial")).set(self.denial.len() as i64);
            Ok(answer)
        })
    }
}

/// `cache [TTL] [ZONES...] { success CAPACITY [TTL] [MINTTL]; denial CAPACITY [TTL] [MINTTL]; servfail DURATION;
/// disable success|denial [ZONES...]; keepttl }` (kubeadm's Corefile disables both for `cluster.local`).
pub fn setup(d: &Directive, s: &mut Setup<'_>) -> Result<Cache, String> {
    let mut args = d.args.as_slice();
    let mut ttl_arg = None;
    if let Some(first) = args.first()
        && let Ok(t) = first.parse::<u64>()
    {
        if t == 0 {
            return Err(s.err(d, d.line, format!("cache TTL can not be zero or negative: {t}")));
        }
        ttl_arg = Some(Duration::from_secs(t));
        args = &args[1..];
    }
    let mut c = Cache::new(super::origins(args, s));
    if let Some(t) = ttl_arg {
        c.max_ttl = t;
        c.max_nttl = t;
    }
    for l in &d.block {
        let a = &l.tokens[1..];
        let arg_err =
            || s.err(d, l.line, format!("Wrong argument count or unexpected line ending after '{}'", l.tokens[0]));
        match l.tokens[0].as_str() {
            kind @ ("success" | "denial") => {
                if a.is_empty() || a.len() > 3 {
                    return Err(arg_err());
                }
                let num = |v: &String| v.parse::<u64>().map_err(|_| arg_err());
                let cap = num(&a[0])? as usize;
                let (max, min) = (a.get(1).map(num).transpose()?, a.get(2).map(num).transpose()?);
                let store = Store::new(cap.max(1));
                if kind == "success" {
                    c.success = store;
                    if let Some(t) = max {
                        c.max_ttl = Duration::from_secs(t);
                    }
                    if let Some(t) = min {
                        c.min_ttl = Duration::from_secs(t);
                    }
                } else {
                    c.denial = store;
                    if let Some(t) = max {
                        c.max_nttl = Duration::from_secs(t);
                    }
                    if let Some(t) = min {
                        c.min_nttl = Duration::from_secs(t);
                    }
                }
            }
            "servfail" => {
                let [v] = a else { return Err(arg_err()) };
                let t = parse_duration(v).ok_or_else(arg_err)?;
                if t > Duration::from_secs(300) {
                    return Err(s.err(d, l.line, "caching SERVFAIL responses over 5 minutes is not permitted"));
                }
                c.fail_ttl = t;
            }
            "disable" => {
                let Some((kind, zones)) = a.split_first() else { return Err(arg_err()) };
                let zones = if zones.is_empty() { c.zones.clone() } else { super::origins(zones, s) };
                match kind.as_str() {
                    "success" => c.no_success.extend(zones),
                    "denial" => c.no_denial.extend(zones),
                    other => {
                        return Err(s.err(
                            d,
                            l.line,
                            format!("cache type for disable must be \"success\" or \"denial\", got {other:?}"),
                        ));
                    }
                }
            }
            "keepttl" => {
                if !a.is_empty() {
                    return Err(arg_err());
                }
                c.keepttl = true;
            }
            other => return Err(s.err(d, l.line, format!("unknown property '{other}'"))),
        }
    }
    Ok(c)
}
