//! The `forward` plugin: sends queries for names under FROM (except the `except` names) to upstream servers,
//! listed or read from a resolv.conf, chosen by `policy` (random, round_robin, sequential). An upstream that fails
//! is health-checked (`. IN NS` every `health_check` interval, 0.5 s) until it answers; after `max_fails`
//! failures it counts as down and is skipped while others are up. Queries go out over the transport they came in
//! on (`force_tcp`, `prefer_udp`); a truncated UDP answer is passed on for the client to retry over TCP.
//! `max_concurrent` caps queries in flight (REFUSED beyond it).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use rand::seq::{IndexedRandom, SliceRandom};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Answer, BoxFuture, Next, Plugin, PluginError, Setup, fqdn, in_zone, parse_duration};
use crate::corefile::Directive;
use crate::metrics::{self, ProxyLabels, ProxyToLabels};
use crate::request::{Proto, Request};

const MAX_UPSTREAMS: usize = 15;
/// How long one query may take over all upstreams.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one exchange with an upstream may take.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Random,
    RoundRobin,
    Sequential,
}

/// One upstream.
pub struct Proxy {
    pub addr: SocketAddr,
    label: Arc<String>,
    fails: AtomicU32,
    probing: AtomicBool,
}

impl Proxy {
    fn new(addr: SocketAddr) -> Arc<Self> {
        Arc::new(Proxy {
            addr,
            label: Arc::new(addr.to_string()),
            fails: AtomicU32::new(0),
            probing: AtomicBool::new(false),
        })
    }

    fn down(&self, max_fails: u32) -> bool {
        max_fails != 0 && self.fails.load(Ordering::Relaxed) > max_fails
    }

    /// One exchange over UDP or TCP.
    async fn exchange(&self, query: &[u8], id: u16, proto: Proto) -> std::io::Result<Message> {
        let bad = |e: &str| std::io::Error::other(e.to_string());
        match proto {
            Proto::Udp => {
                let bind: SocketAddr = if self.addr.is_ipv4() {
                    "0.0.0.0:0".parse().unwrap_or(self.addr)
                } else {
                    "[::]:0".parse().unwrap_or(self.addr)
                };
                let sock = tokio::net::UdpSocket::bind(bind).await?;
                sock.connect(self.addr).await?;
                sock.send(query).await?;
                let mut buf = vec![0u8; 65535];
                loop {
                    let n = sock.recv(&mut buf).await?;
                    let Ok(m) = Message::from_vec(&buf[..n]) else { continue };
                    if m.metadata.id == id {
                        return Ok(m);
                    }
                }
            }
            Proto::Tcp => {
                let mut s = tokio::net::TcpStream::connect(self.addr).await?;
                let mut out = Vec::with_capacity(query.len() + 2);
                out.extend_from_slice(&(query.len() as u16).to_be_bytes());
                out.extend_from_slice(query);
                s.write_all(&out).await?;
                let mut len = [0u8; 2];
                s.read_exact(&mut len).await?;
                let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
                s.read_exact(&mut buf).await?;
                Message::from_vec(&buf).map_err(|e| bad(&e.to_string()))
            }
        }
    }

    /// Starts health checking (once): probes every `interval` until the upstream answers.
    fn healthcheck(self: &Arc<Self>, hc: HealthCheck) {
        if self.probing.swap(true, Ordering::SeqCst) || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let weak: Weak<Proxy> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(p) = weak.upgrade() else { return };
                let mut m = Message::query();
                m.metadata.recursion_desired = hc.recursion_desired;
                m.add_query(Query::query(hc.domain.clone(), RecordType::NS));
                let ok = match m.to_vec() {
                    Ok(bytes) => matches!(
                        tokio::time::timeout(READ_TIMEOUT, p.exchange(&bytes, m.metadata.id, Proto::Udp)).await,
                        Ok(Ok(_))
                    ),
                    Err(_) => false,
                };
                if ok {
                    p.fails.store(0, Ordering::Relaxed);
                    p.probing.store(false, Ordering::SeqCst);
                    return;
                }
                p.fails.fetch_add(1, Ordering::Relaxed);
                metrics::metrics()
                    .proxy_healthcheck_failures
                    .get_or_create(&ProxyToLabels { proxy_name: "forward", to: p.label.clone() })
                    .inc();
                drop(p);
                tokio::time::sleep(hc.interval).await;
            }
        });
    }
}

#[derive(Clone)]
struct HealthCheck {
    interval: Duration,
    recursion_desired: bool,
    domain: Name,
}

pub struct Forward {
    from: String,
    ignored: Vec<String>,
    pub proxies: Vec<Arc<Proxy>>,
    policy: Policy,
    max_fails: u32,
    force_tcp: bool,
    prefer_udp: bool,
    hc: HealthCheck,
    max_concurrent: i64,
    concurrent: AtomicI64,
    next_rr: AtomicUsize,
}

impl Forward {
    fn list(&self) -> Vec<Arc<Proxy>> {
        let mut l = self.proxies.clone();
        match self.policy {
            Policy::Random => l.shuffle(&mut rand::rng()),
            Policy::RoundRobin => {
                let n = self.next_rr.fetch_add(1, Ordering::Relaxed) % l.len().max(1);
                l.rotate_left(n);
            }
            Policy::Sequential => {}
        }
        l
    }

    fn matches(&self, name: &str) -> bool {
        in_zone(name, &self.from) && !self.ignored.iter().any(|z| in_zone(name, z))
    }
}

struct Inflight<'a>(&'a AtomicI64);

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Plugin for Forward {
    fn name(&self) -> &'static str {
        "forward"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            if !self.matches(&req.name()) {
                return next.serve(req).await;
            }
            let n = self.concurrent.fetch_add(1, Ordering::Relaxed) + 1;
            let _inflight = Inflight(&self.concurrent);
            if self.max_concurrent > 0 && n > self.max_concurrent {
                metrics::metrics().forward_max_concurrent_rejects.inc();
                return Err(PluginError {
                    plugin: "forward",
                    rcode: ResponseCode::Refused,
                    message: format!("concurrent queries exceeded maximum {}", self.max_concurrent),
                });
            }
            let proto = if self.force_tcp {
                Proto::Tcp
            } else if self.prefer_udp {
                Proto::Udp
            } else {
                req.proto
            };
            let bytes = req.msg.to_vec().map_err(|e| PluginError::servfail("forward", e.to_string()))?;
            let id = req.msg.metadata.id;
            let deadline = Instant::now() + DEFAULT_TIMEOUT;
            let list = self.list();
            let mut fails = 0;
            let mut i = 0;
            let mut last_err = None;
            while Instant::now() < deadline && !list.is_empty() {
                if i >= list.len() {
                    i = 0;
                    fails = 0;
                }
                let mut proxy = list[i].clone();
                i += 1;
                if proxy.down(self.max_fails) {
                    fails += 1;
                    if fails < self.proxies.len() {
                        continue;
                    }
                    // Every upstream is down: the health checks may be what is broken; try one anyway.
                    metrics::metrics().forward_healthcheck_broken.inc();
                    proxy = self.proxies.choose(&mut rand::rng()).cloned().unwrap_or(proxy);
                }
                let start = Instant::now();
                let result = tokio::time::timeout(READ_TIMEOUT, proxy.exchange(&bytes, id, proto)).await;
                let mut ret = match result {
                    Ok(Ok(m)) => m,
                    Ok(Err(e)) => {
                        last_err = Some(e.to_string());
                        if self.max_fails != 0 {
                            proxy.healthcheck(self.hc.clone());
                        }
                        if fails < self.proxies.len() {
                            continue;
                        }
                        break;
                    }
                    Err(_) => {
                        last_err = Some(format!("read udp {}: i/o timeout", proxy.addr));
                        if self.max_fails != 0 {
                            proxy.healthcheck(self.hc.clone());
                        }
                        if fails < self.proxies.len() {
                            continue;
                        }
                        break;
                    }
                };
                if ret.metadata.truncation
                    && proto == Proto::Udp
                    && self.prefer_udp
                    && req.proto == Proto::Tcp
                    && let Ok(Ok(m)) = tokio::time::timeout(READ_TIMEOUT, proxy.exchange(&bytes, id, Proto::Tcp)).await
                {
                    ret = m;
                }
                metrics::metrics()
                    .proxy_duration
                    .get_or_create(&ProxyLabels {
                        proxy_name: "forward",
                        to: proxy.label.clone(),
                        rcode: metrics::rcode_label(ret.metadata.response_code),
                    })
                    .observe(start.elapsed().as_secs_f64());
                req.responder = "forward";
                // The answer must be to our question (CoreDNS's `state.Match`).
                let same = ret.queries.len() == 1
                    && ret.queries[0].query_type == req.qtype()
                    && fqdn(&ret.queries[0].name.to_ascii()) == req.name();
                if !same {
                    return Ok(req.reply_rcode(ResponseCode::FormErr));
                }
                return Ok(ret);
            }
            Err(PluginError::servfail("forward", last_err.unwrap_or_else(|| "no healthy proxies".into())))
        })
    }
}

/// An upstream address: `IP`, `IP:PORT`, `[IPv6]:PORT`, `dns://IP[:PORT]`.
pub fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    let t = s.strip_prefix("dns://").unwrap_or(s);
    if t.contains("://") {
        return Err(format!("unsupported protocol in {s:?}: only plain DNS upstreams are supported"));
    }
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    t.parse::<SocketAddr>().map_err(|_| format!("not an IP address or file: {s:?}"))
}

/// The nameservers of a resolv.conf.
pub fn resolv_conf_servers(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("nameserver")).then(|| f.next().map(String::from)).flatten()
        })
        .collect()
}

/// `forward FROM TO... { except ...; force_tcp; prefer_udp; max_fails N; expire D; health_check D [no_rec]
/// [domain NAME]; policy random|round_robin|sequential; max_concurrent N }`.
pub fn setup(d: &Directive, s: &mut Setup<'_>) -> Result<Arc<Forward>, String> {
    if d.args.len() < 2 {
        return Err(s.err(d, d.line, "Wrong argument count or unexpected line ending after 'forward'"));
    }
    let from = super::origins(&d.args[..1], s).into_iter().next().unwrap_or_else(|| ".".into());
    let mut upstreams = Vec::new();
    for to in &d.args[1..] {
        let path = std::path::Path::new(to);
        if to.starts_with('/') || path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|e| s.err(d, d.line, format!("{to}: {e}")))?;
            let servers = resolv_conf_servers(&text);
            if servers.is_empty() {
                return Err(s.err(d, d.line, format!("no nameservers found in {to}")));
            }
            for ns in servers {
                upstreams.push(parse_upstream(&ns).map_err(|e| s.err(d, d.line, e))?);
            }
        } else {
            upstreams.push(parse_upstream(to).map_err(|e| s.err(d, d.line, e))?);
        }
    }
    if upstreams.len() > MAX_UPSTREAMS {
        return Err(s.err(d, d.line, format!("more than {MAX_UPSTREAMS} TOs configured: {}", upstreams.len())));
    }
    let mut f = Forward {
        from,
        ignored: Vec::new(),
        proxies: upstreams.into_iter().map(Proxy::new).collect(),
        policy: Policy::Random,
        max_fails: 2,
        force_tcp: false,
        prefer_udp: false,
        hc: HealthCheck { interval: Duration::from_millis(500), recursion_desired: true, domain: Name::root() },
        max_concurrent: 0,
        concurrent: AtomicI64::new(0),
        next_rr: AtomicUsize::new(0),
    };
    for l in &d.block {
        let a = &l.tokens[1..];
        let arg_err =
            || s.err(d, l.line, format!("Wrong argument count or unexpected line ending after '{}'", l.tokens[0]));
        match l.tokens[0].as_str() {
            "except" => {
                if a.is_empty() {
                    return Err(arg_err());
                }
                f.ignored.extend(a.iter().map(|z| fqdn(z)));
            }
            "max_fails" => {
                let [v] = a else { return Err(arg_err()) };
                f.max_fails = v.parse().map_err(|_| arg_err())?;
            }
            "health_check" => {
                let Some(v) = a.first() else { return Err(arg_err()) };
                f.hc.interval = parse_duration(v).ok_or_else(arg_err)?;
                let mut rest = &a[1..];
                while let Some(opt) = rest.first() {
                    match opt.as_str() {
                        "no_rec" => {
                            f.hc.recursion_desired = false;
                            rest = &rest[1..];
                        }
                        "domain" => {
                            let Some(dom) = rest.get(1) else { return Err(arg_err()) };
                            f.hc.domain = Name::from_ascii(fqdn(dom)).map_err(|e| s.err(d, l.line, e))?;
                            rest = &rest[2..];
                        }
                        other => return Err(s.err(d, l.line, format!("health_check: unknown option {other}"))),
                    }
                }
            }
            "force_tcp" => f.force_tcp = true,
            "prefer_udp" => f.prefer_udp = true,
            "expire" => {
                let [v] = a else { return Err(arg_err()) };
                parse_duration(v).ok_or_else(arg_err)?;
            }
            "policy" => {
                f.policy = match a {
                    [p] if p == "random" => Policy::Random,
                    [p] if p == "round_robin" => Policy::RoundRobin,
                    [p] if p == "sequential" => Policy::Sequential,
                    [p] => return Err(s.err(d, l.line, format!("unknown policy '{p}'"))),
                    _ => return Err(arg_err()),
                }
            }
            "max_concurrent" => {
                let [v] = a else { return Err(arg_err()) };
                f.max_concurrent = v.parse().map_err(|_| arg_err())?;
                if f.max_concurrent < 0 {
                    return Err(s.err(d, l.line, format!("max_concurrent can't be negative: {v}")));
                }
            }
            "tls" | "tls_servername" => return Err(s.err(d, l.line, "DNS over TLS upstreams are not supported")),
            other => return Err(s.err(d, l.line, format!("unknown property '{other}'"))),
        }
    }
    if f.force_tcp && f.prefer_udp {
        return Err(s.err(d, d.line, "force_tcp and prefer_udp are mutually exclusive"));
    }
    Ok(Arc::new(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_addresses() {
        assert_eq!(parse_upstream("10.0.0.1").unwrap(), "10.0.0.1:53".parse().unwrap());
        assert_eq!(parse_upstream("dns://127.0.0.1:5353").unwrap(), "127.0.0.1:5353".parse().unwrap());
        assert_eq!(parse_upstream("[::1]:53").unwrap(), "[::1]:53".parse().unwrap());
        assert!(parse_upstream("tls://1.1.1.1").is_err());
        assert_eq!(resolv_conf_servers("search a\nnameserver 10.0.0.2\nnameserver ::1\n"), ["10.0.0.2", "::1"]);
    }
}
