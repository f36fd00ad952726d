//! The DNS server (CoreDNS's `core/dnsserver`): UDP and TCP listeners per address, the dispatcher that routes a
//! query to the server block with the longest matching zone and runs its plugin chain, and the response
//! writer: EDNS echoed, and over UDP a response larger than the client accepts (512 bytes, or its EDNS buffer
//! size) cut to what fits with the TC bit set, so that the client retries over TCP.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use crate::plugin::{BoxFuture, Next, Plugin};
use crate::request::{Lookup, Proto, Request, reply_to, size_for};

/// One zone of a server block with its chain.
pub struct Block {
    /// Lower case, fully qualified.
    pub zone: String,
    pub chain: Arc<[Arc<dyn Plugin>]>,
    /// `dns://:53`, as CoreDNS labels servers.
    pub server: Arc<String>,
    pub zone_label: Arc<String>,
}

/// The blocks served on one address, longest zone first.
#[derive(Default)]
pub struct Table {
    pub blocks: Vec<Block>,
}

impl Table {
    pub fn new(mut blocks: Vec<Block>) -> Self {
        blocks.sort_by_key(|b| std::cmp::Reverse(if b.zone == "." { 0 } else { b.zone.len() }));
        Table { blocks }
    }

    fn find(&self, name: &str) -> Option<&Block> {
        self.blocks.iter().find(|b| crate::plugin::in_zone(name, &b.zone))
    }
}

/// Routes queries on one address to its blocks; its table is swapped on reload while queries keep flowing.
pub struct Dispatcher {
    pub table: ArcSwap<Table>,
    me: Weak<Dispatcher>,
}

/// How long a TCP connection may stay idle (CoreDNS's default read timeout).
const TCP_IDLE: Duration = Duration::from_secs(10);

impl Dispatcher {
    pub fn new(table: Table) -> Arc<Self> {
        Arc::new_cyclic(|me| Dispatcher { table: ArcSwap::from_pointee(table), me: me.clone() })
    }

    /// Answers one query message.
    pub async fn handle(&self, msg: Message, client: SocketAddr, proto: Proto) -> Message {
        self.handle_reporting(msg, client, proto).await.0
    }

    /// Answers one query message, with the `prometheus` plugin's labels for the response size if it ran.
    async fn handle_reporting(
        &self,
        msg: Message,
        client: SocketAddr,
        proto: Proto,
    ) -> (Message, Option<crate::request::SizeReport>) {
        if msg.metadata.op_code != OpCode::Query {
            let mut m = reply_to(&msg);
            m.metadata.response_code = ResponseCode::NotImp;
            return (m, None);
        }
        if msg.queries.len() != 1 {
            let mut m = reply_to(&msg);
            m.metadata.response_code = ResponseCode::FormErr;
            return (m, None);
        }
        let table = self.table.load_full();
        let name = crate::plugin::fqdn(&msg.queries[0].name.to_ascii());
        let Some(block) = table.find(&name) else {
            let mut m = reply_to(&msg);
            m.metadata.response_code = ResponseCode::Refused;
            return (finish(&msg, m), None);
        };
        let Some(me) = self.me.upgrade() else { return (reply_to(&msg), None) };
        let original = msg.clone();
        let mut req = Request {
            msg,
            client,
            proto,
            zone: block.zone_label.clone(),
            server: block.server.clone(),
            responder: "",
            lookup: me,
            size_report: None,
        };
        let answer = Next::new(&block.chain).serve(&mut req).await;
        let reply = match answer {
            Ok(m) => m,
            Err(e) => {
                let mut m = reply_to(&original);
                m.metadata.response_code = e.rcode;
                m
            }
        };
        (finish(&original, reply), req.size_report.take())
    }

    /// Answers raw bytes: None for what gets no answer (responses, garbage shorter than a header).
    pub async fn handle_bytes(&self, data: &[u8], client: SocketAddr, proto: Proto) -> Option<Vec<u8>> {
        let msg = match Message::from_vec(data) {
            Ok(m) => m,
            Err(_) if data.len() >= 12 => {
                let mut m = Message::response(u16::from_be_bytes([data[0], data[1]]), OpCode::Query);
                m.metadata.response_code = ResponseCode::FormErr;
                return m.to_vec().ok();
            }
            Err(_) => return None,
        };
        if msg.metadata.message_type == MessageType::Response {
            return None;
        }
        let limit = size_for(&msg, proto);
        let (reply, report) = self.handle_reporting(msg, client, proto).await;
        let bytes = encode(&reply, limit);
        if let Some(r) = report {
            r.observe(bytes.len());
        }
        Some(bytes)
    }
}

impl Lookup for Dispatcher {
    fn lookup(&self, name: Name, qtype: RecordType, proto: Proto, client: SocketAddr) -> BoxFuture<'_, Message> {
        Box::pin(async move {
            let mut m = Message::query();
            m.metadata.recursion_desired = true;
            m.add_query(Query::query(name, qtype));
            self.handle(m, client, proto).await
        })
    }
}

/// Makes `reply` a response to `query`: id, flags, question, and EDNS as the query had it (CoreDNS's
/// `SizeAndDo`).
fn finish(query: &Message, mut reply: Message) -> Message {
    reply.metadata.id = query.metadata.id;
    reply.metadata.message_type = MessageType::Response;
    reply.metadata.op_code = query.metadata.op_code;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    if reply.queries.is_empty() {
        reply.queries = query.queries.clone();
    }
    match &query.edns {
        Some(q) => {
            let mut e = reply.edns.take().unwrap_or_default();
            e.set_max_payload(q.max_payload().max(512));
            e.set_version(0);
            e.set_dnssec_ok(q.flags().dnssec_ok);
            reply.edns = Some(e);
        }
        None => reply.edns = None,
    }
    reply
}

/// Encodes `msg` within `limit` bytes (CoreDNS's `Truncate`): as many answers as fit, then authority and
/// additional records while they fit; TC when answers had to go.
pub fn encode(msg: &Message, limit: usize) -> Vec<u8> {
    let servfail = |msg: &Message| {
        let mut m = reply_to(msg);
        m.metadata.id = msg.metadata.id;
        m.metadata.response_code = ResponseCode::ServFail;
        m.edns = msg.edns.clone();
        m.to_vec().unwrap_or_default()
    };
    let Ok(full) = msg.to_vec() else { return servfail(msg) };
    if full.len() <= limit {
        return full;
    }
    let mut m = msg.clone();
    let answers = std::mem::take(&mut m.answers);
    let authorities = std::mem::take(&mut m.authorities);
    let additionals = std::mem::take(&mut m.additionals);
    let fits = |m: &Message| m.to_vec().map(|b| b.len() <= limit).unwrap_or(false);
    // The largest prefix of the answers that fits.
    let (mut lo, mut hi) = (0, answers.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        m.answers = answers[..mid].to_vec();
        if fits(&m) { lo = mid } else { hi = mid - 1 }
    }
    m.answers = answers[..lo].to_vec();
    m.metadata.truncation = lo < answers.len();
    if !m.metadata.truncation {
        for rr in authorities {
            m.authorities.push(rr);
            if !fits(&m) {
                m.authorities.pop();
                break;
            }
        }
        for rr in additionals {
            m.additionals.push(rr);
            if !fits(&m) {
                m.additionals.pop();
                break;
            }
        }
    }
    m.to_vec().unwrap_or_else(|_| servfail(msg))
}

/// Serves UDP on a bound socket until aborted.
pub fn serve_udp(socket: UdpSocket, dispatcher: Arc<Dispatcher>) -> JoinHandle<()> {
    let socket = Arc::new(socket);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        loop {
            let (n, peer) = match socket.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!("udp receive: {e}");
                    continue;
                }
            };
            let data = buf[..n].to_vec();
            let (socket, dispatcher) = (socket.clone(), dispatcher.clone());
            tokio::spawn(async move {
                if let Some(resp) = dispatcher.handle_bytes(&data, peer, Proto::Udp).await {
                    let _ = socket.send_to(&resp, peer).await;
                }
            });
        }
    })
}

/// Serves DNS over TCP (RFC 7766 framing) on a listener until aborted.
pub fn serve_tcp(listener: TcpListener, dispatcher: Arc<Dispatcher>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (mut stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!("tcp accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let dispatcher = dispatcher.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                loop {
                    let mut len = [0u8; 2];
                    match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
                        Ok(Ok(_)) => {}
                        _ => return,
                    }
                    let mut data = vec![0u8; u16::from_be_bytes(len) as usize];
                    if stream.read_exact(&mut data).await.is_err() {
                        return;
                    }
                    let Some(resp) = dispatcher.handle_bytes(&data, peer, Proto::Tcp).await else { return };
                    let mut out = Vec::with_capacity(resp.len() + 2);
                    out.extend_from_slice(&(resp.len() as u16).to_be_bytes());
                    out.extend_from_slice(&resp);
                    if stream.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record};

    #[test]
    fn truncates_over_the_limit() {
        let mut m = Message::response(7, OpCode::Query);
        let name = Name::from_ascii("many.ns.svc.cluster.local.").unwrap();
        m.add_query(Query::query(name.clone(), RecordType::A));
        for i in 0..100u8 {
            m.answers.push(Record::from_rdata(name.clone(), 5, RData::A(A::new(10, 0, 0, i))));
        }
        let full = encode(&m, 65535);
        assert!(full.len() > 512);
        let cut = Message::from_vec(&encode(&m, 512)).unwrap();
        assert!(cut.metadata.truncation);
        assert!(!cut.answers.is_empty() && cut.answers.len() < 100);
        assert!(encode(&m, 512).len() <= 512);
        let whole = Message::from_vec(&full).unwrap();
        assert!(!whole.metadata.truncation);
        assert_eq!(whole.answers.len(), 100);
    }
}
