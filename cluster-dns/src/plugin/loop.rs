//! The `loop` plugin: at start the server sends itself a query for a random name under each zone
//! (`<random>.<random>.<zone> HINFO`); if that query comes back to this plugin more than twice, the server is
//! forwarding to itself, and as CoreDNS it stops with "Loop ... detected for zone".

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

use super::{Answer, BoxFuture, Next, Plugin, Setup};
use crate::corefile::Directive;
use crate::request::Request;

pub struct Loop {
    /// Lower case, fully qualified probe name.
    qname: String,
    zone: String,
    seen: Arc<AtomicU32>,
    done: Arc<AtomicBool>,
    /// What happens on a detected loop (the process exits; tests record it).
    on_loop: fn(&str),
}

fn fatal(msg: &str) {
    tracing::error!("{msg}");
    std::process::exit(1);
}

impl Loop {
    pub fn new(zone: &str, on_loop: fn(&str)) -> Self {
        let qname =
            format!("{}.{}.{}", rand::random::<u64>(), rand::random::<u64>(), if zone == "." { "" } else { zone });
        Loop {
            qname: crate::plugin::fqdn(&qname),
            zone: zone.into(),
            seen: Arc::default(),
            done: Arc::default(),
            on_loop,
        }
    }

    /// The probe query's name.
    pub fn qname(&self) -> &str {
        &self.qname
    }

    /// Sends the probe to the server on `addr` until it gets an answer (or a few tries pass).
    pub fn probe(&self, addr: SocketAddr) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (qname, done, seen) = (self.qname.clone(), self.done.clone(), self.seen.clone());
        async move {
            let Ok(name) = Name::from_ascii(&qname) else { return };
            for _ in 0..15 {
                let mut m = Message::query();
                m.add_query(Query::query(name.clone(), RecordType::HINFO));
                let Ok(bytes) = m.to_vec() else { return };
                let Ok(sock) = tokio::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await else { return };
                if sock.send_to(&bytes, addr).await.is_ok() {
                    let mut buf = vec![0u8; 4096];
                    if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await {
                        // Answered: queries still arriving in the next two seconds count, then the plugin rests.
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        break;
                    }
                }
                // No answer (a slow or unreachable upstream) is no loop: the count starts over, as CoreDNS's reset.
                seen.store(0, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            done.store(true, Ordering::Relaxed);
        }
    }
}

impl Plugin for Loop {
    fn name(&self) -> &'static str {
        "loop"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            if !self.done.load(Ordering::Relaxed) && req.qtype() == RecordType::HINFO && req.name() == self.qname {
                let seen = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
                if seen > 2 {
                    (self.on_loop)(&format!(
                        "plugin/loop: Loop ({} -> {}) detected for zone {:?}, see https://coredns.io/plugins/loop#troubleshooting. Query: \"HINFO {}\"",
                        req.client, req.server, self.zone, self.qname
                    ));
                }
            }
            next.serve(req).await
        })
    }
}

/// `loop`: probes each zone of the block on its port once the configuration serves.
pub fn setup(d: &Directive, s: &mut Setup<'_>) -> Result<Loop, String> {
    if !d.args.is_empty() || !d.block.is_empty() {
        return Err(s.err(d, d.line, "Wrong argument count or unexpected line ending after 'loop'"));
    }
    let key = s.keys[0].clone();
    let l = Loop::new(&key.zone, fatal);
    let target = SocketAddr::new(
        if s.env.default_bind.is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { s.env.default_bind },
        key.port,
    );
    let probe = l.probe(target);
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::spawn(async move {
            // After the configuration is in place and listening.
            tokio::time::sleep(Duration::from_millis(500)).await;
            probe.await;
        });
    }
    Ok(l)
}
