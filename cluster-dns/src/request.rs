//! One DNS request as the plugins see it (CoreDNS's `request.Request`): the query message, who sent it and over
//! what transport, the server block it reached, and a way back into the server for lookups of other names.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use crate::plugin::BoxFuture;

/// The transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }
}

/// Resolves a name through a server's whole plugin chain, as CoreDNS's `upstream` package does (used by the
/// kubernetes plugin for the targets of ExternalName services).
pub trait Lookup: Send + Sync {
    fn lookup(&self, name: Name, qtype: RecordType, proto: Proto, client: SocketAddr) -> BoxFuture<'_, Message>;
}

/// A request in flight.
pub struct Request {
    /// The query (plugins such as `rewrite` may change its question).
    pub msg: Message,
    pub client: SocketAddr,
    pub proto: Proto,
    /// The server block's zone that matched (lower case, fully qualified: `.`, `cluster.local.`).
    pub zone: Arc<String>,
    /// The server's address as CoreDNS labels it (`dns://:53`).
    pub server: Arc<String>,
    /// The plugin that wrote the answer (for `coredns_dns_responses_total`).
    pub responder: &'static str,
    /// Re-enters the server for other names.
    pub lookup: Arc<dyn Lookup>,
    /// Set by the `prometheus` plugin: where the server records the size of the response it writes.
    pub size_report: Option<SizeReport>,
}

/// The labels of `coredns_dns_response_size_bytes` for one response.
pub struct SizeReport {
    pub server: Arc<String>,
    pub zone: Arc<String>,
    pub proto: Proto,
}

impl SizeReport {
    pub fn observe(&self, len: usize) {
        crate::metrics::metrics()
            .response_size
            .get_or_create(&crate::metrics::SizeLabels {
                server: self.server.clone(),
                zone: self.zone.clone(),
                view: "",
                proto: self.proto.as_str(),
            })
            .observe(len as f64);
    }
}

impl Request {
    /// The first question (a request without one never reaches the plugins).
    pub fn query(&self) -> &Query {
        &self.msg.queries[0]
    }

    pub fn qname(&self) -> &Name {
        &self.query().name
    }

    pub fn qtype(&self) -> RecordType {
        self.query().query_type
    }

    /// The question's name in lower case with its trailing dot (`svc.ns.svc.cluster.local.`).
    pub fn name(&self) -> String {
        let mut n = self.qname().to_ascii().to_ascii_lowercase();
        if !n.ends_with('.') {
            n.push('.');
        }
        n
    }

    /// The DO (DNSSEC OK) bit of the request's EDNS record.
    pub fn do_bit(&self) -> bool {
        self.msg.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok)
    }

    /// The largest response the client accepts (CoreDNS's `Size`): 64 KiB over TCP, the EDNS buffer size (at
    /// least 512) over UDP, else 512.
    pub fn size(&self) -> usize {
        size_for(&self.msg, self.proto)
    }

    /// "1" for IPv4 clients, "2" for IPv6 (CoreDNS's `Family`).
    pub fn family(&self) -> &'static str {
        if self.client.is_ipv4() || self.client.ip().to_canonical().is_ipv4() { "1" } else { "2" }
    }

    /// A reply skeleton to this request (CoreDNS's `SetReply`): same id, opcode, question and RD bit.
    pub fn reply(&self) -> Message {
        reply_to(&self.msg)
    }

    /// A reply with this rcode and nothing else.
    pub fn reply_rcode(&self, rcode: ResponseCode) -> Message {
        let mut m = self.reply();
        m.metadata.response_code = rcode;
        m
    }
}

/// The largest response `msg`'s sender accepts over `proto`.
pub fn size_for(msg: &Message, proto: Proto) -> usize {
    match proto {
        Proto::Tcp => 65535,
        Proto::Udp => msg.edns.as_ref().map(|e| e.max_payload()).unwrap_or(512).max(512) as usize,
    }
}

/// A reply skeleton to `msg`.
pub fn reply_to(msg: &Message) -> Message {
    let mut m = Message::response(msg.metadata.id, msg.metadata.op_code);
    m.metadata.message_type = MessageType::Response;
    m.metadata.recursion_desired = msg.metadata.recursion_desired;
    m.metadata.checking_disabled = msg.metadata.checking_disabled;
    m.queries = msg.queries.clone();
    m
}
