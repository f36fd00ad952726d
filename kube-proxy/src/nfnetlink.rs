//! nf_tables over netlink for the nftables proxier's partial syncs and a full sync's Service part: the lines of an
//! `nft -f` transaction that a sync of an IPv4 table writes, compiled to one nf_tables batch with the expressions
//! `nft` itself would send, and sent on a netlink socket of this process.
//!
//! The subset: `add`/`flush`/`delete chain`, the rules of Service and endpoint chains (address and port matches,
//! the off-cluster masquerade jump, `numgen` picks, gotos, DNAT to an address and port or through the endpoints
//! map), elements of the verdict maps and sets (with comments), `flush`/`delete` of a map or set, and the ranges of
//! an interval map (the endpoints maps, keyed by a number). A full sync's Service part is compiled too, the
//! table's skeleton going through `nft` first.
//!
//! Why: before it sends anything, `nft -f` dumps every chain of the table to fill its cache. With 10,000 Services
//! (110,000 chains) that dump is over a second, and it was most of a partial sync's time; and `nft` took 2.4 s to
//! parse a full sync's ~40,000 lines, which this module compiles in ~0.1 s. The batch is atomic: a
//! refused one changes nothing, and the caller runs the same text through `nft` instead. A transaction holding a
//! line outside the subset (new maps and sets, affinity, `fib`, interface matches, IPv6...) is not compiled at all.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

// Netlink and nfnetlink framing.
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 0x2;
const NLA_F_NESTED: u16 = 0x8000;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFPROTO_IPV4: u8 = 2;

// nf_tables messages.
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;

// Attributes of chains, rules, expressions, data and set elements (linux/netfilter/nf_tables.h).
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;
/// libnftnl's userdata type of an element's comment.
const NFTNL_UDATA_SET_ELEM_COMMENT: u8 = 0;

const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_META_L4PROTO: u32 = 16;
const NFT_NG_RANDOM: u32 = 1;
/// The 32-bit registers after `NFT_REG_1`'s first word: a map's `address . port` data puts the port in the second.
const NFT_REG32_01: u32 = 9;
const NFT_NAT_DNAT: u32 = 1;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;
const NF_DROP: i32 = 0;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;

/// A batch is sent in one `sendmsg`; past the socket's default send buffer (~208 KB) the buffer is raised to the
/// batch's size, as `nft` does.
const DEFAULT_SNDBUF: usize = 128 * 1024;

/// A netlink message being built: attributes are appended, nests closed by patching their length.
struct Msg {
    buf: Vec<u8>,
    /// A nest outgrew its 16-bit length: the message cannot be sent (its line goes to nft).
    overflow: bool,
}

impl Msg {
    fn new(kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Msg {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `finish`
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        buf.extend_from_slice(&[family, 0]);
        buf.extend_from_slice(&res_id.to_be_bytes());
        Msg { buf, overflow: false }
    }

    fn nft(kind: u16, flags: u16, seq: u32) -> Msg {
        Msg::new((NFNL_SUBSYS_NFTABLES << 8) | kind, flags, seq, NFPROTO_IPV4, 0)
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn attr(&mut self, kind: u16, data: &[u8]) {
        self.buf.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn str(&mut self, kind: u16, s: &str) {
        let mut data = Vec::with_capacity(s.len() + 1);
        data.extend_from_slice(s.as_bytes());
        data.push(0);
        self.attr(kind, &data);
    }

    fn u32(&mut self, kind: u16, v: u32) {
        self.attr(kind, &v.to_be_bytes());
    }

    fn nest(&mut self, kind: u16, f: impl FnOnce(&mut Msg)) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        f(self);
        let len = self.buf.len() - start;
        self.overflow |= len > usize::from(u16::MAX);
        self.buf[start..start + 2].copy_from_slice(&(len as u16).to_ne_bytes());
    }

    fn value(&mut self, kind: u16, data: &[u8]) {
        self.nest(kind, |m| m.attr(NFTA_DATA_VALUE, data));
    }

    fn verdict(&mut self, kind: u16, v: &Verdict) {
        self.nest(kind, |m| {
            m.nest(NFTA_DATA_VERDICT, |m| {
                m.attr(NFTA_VERDICT_CODE, &v.code().to_be_bytes());
                if let Verdict::Jump(c) | Verdict::Goto(c) = v {
                    m.str(NFTA_VERDICT_CHAIN, c);
                }
            })
        });
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Drop,
    Jump(String),
    Goto(String),
}

impl Verdict {
    fn code(&self) -> i32 {
        match self {
            Verdict::Drop => NF_DROP,
            Verdict::Jump(_) => NFT_JUMP,
            Verdict::Goto(_) => NFT_GOTO,
        }
    }

    fn parse(words: &[&str]) -> Option<Verdict> {
        match words {
            ["drop"] => Some(Verdict::Drop),
            ["jump", chain] => Some(Verdict::Jump(chain.to_string())),
            ["goto", chain] => Some(Verdict::Goto(chain.to_string())),
            _ => None,
        }
    }
}

/// One expression of a rule, as `nft --debug=netlink` shows them.
enum Expr {
    Payload {
        base: u32,
        offset: u32,
        len: u32,
    },
    Cmp {
        op: u32,
        data: Vec<u8>,
    },
    Bitwise {
        mask: [u8; 4],
    },
    MetaL4proto,
    Numgen {
        modulus: u32,
        offset: u32,
    },
    Lookup {
        set: String,
    },
    /// Register 1's 32-bit number to network byte order.
    Hton,
    Immediate {
        dreg: u32,
        data: Vec<u8>,
    },
    Verdict(Verdict),
    /// DNAT to the address in register 1 and the port in `port_reg`.
    Dnat {
        port_reg: u32,
    },
}

impl Expr {
    fn write(&self, m: &mut Msg) {
        let name = match self {
            Expr::Payload { .. } => "payload",
            Expr::Cmp { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::MetaL4proto => "meta",
            Expr::Numgen { .. } => "numgen",
            Expr::Lookup { .. } => "lookup",
            Expr::Hton => "byteorder",
            Expr::Immediate { .. } | Expr::Verdict(_) => "immediate",
            Expr::Dnat { .. } => "nat",
        };
        m.nest(NFTA_LIST_ELEM, |m| {
            m.str(NFTA_EXPR_NAME, name);
            m.nest(NFTA_EXPR_DATA, |m| match self {
                Expr::Payload { base, offset, len } => {
                    m.u32(1, NFT_REG_1); // NFTA_PAYLOAD_DREG
                    m.u32(2, *base);
                    m.u32(3, *offset);
                    m.u32(4, *len);
                }
                Expr::Cmp { op, data } => {
                    m.u32(1, NFT_REG_1); // NFTA_CMP_SREG
                    m.u32(2, *op);
                    m.value(3, data);
                }
                Expr::Bitwise { mask } => {
                    m.u32(1, NFT_REG_1); // NFTA_BITWISE_SREG
                    m.u32(2, NFT_REG_1);
                    m.u32(3, 4);
                    m.value(4, mask);
                    m.value(5, &[0; 4]);
                }
                Expr::MetaL4proto => {
                    m.u32(1, NFT_REG_1); // NFTA_META_DREG
                    m.u32(2, NFT_META_L4PROTO);
                }
                Expr::Numgen { modulus, offset } => {
                    m.u32(1, NFT_REG_1); // NFTA_NG_DREG
                    m.u32(2, *modulus);
                    m.u32(3, NFT_NG_RANDOM);
                    if *offset != 0 {
                        m.u32(4, *offset); // NFTA_NG_OFFSET
                    }
                }
                Expr::Hton => {
                    m.u32(1, NFT_REG_1); // NFTA_BYTEORDER_SREG
                    m.u32(2, NFT_REG_1); // NFTA_BYTEORDER_DREG
                    m.u32(3, 1); // NFTA_BYTEORDER_OP: NFT_BYTEORDER_HTON
                    m.u32(4, 4); // NFTA_BYTEORDER_LEN
                    m.u32(5, 4); // NFTA_BYTEORDER_SIZE
                }
                Expr::Lookup { set } => {
                    m.str(1, set); // NFTA_LOOKUP_SET
                    m.u32(2, NFT_REG_1); // NFTA_LOOKUP_SREG
                    m.u32(3, NFT_REG_1); // NFTA_LOOKUP_DREG: the map's data
                }
                Expr::Immediate { dreg, data } => {
                    m.u32(1, *dreg); // NFTA_IMMEDIATE_DREG
                    m.value(2, data);
                }
                Expr::Verdict(v) => {
                    m.u32(1, NFT_REG_VERDICT);
                    m.verdict(2, v);
                }
                Expr::Dnat { port_reg } => {
                    m.u32(1, NFT_NAT_DNAT); // NFTA_NAT_TYPE
                    m.u32(2, u32::from(NFPROTO_IPV4));
                    m.u32(3, NFT_REG_1); // address in register 1
                    m.u32(5, *port_reg);
                    m.u32(7, NF_NAT_RANGE_PROTO_SPECIFIED);
                }
            })
        });
    }
}

fn proto_number(name: &str) -> Option<u8> {
    match name {
        "tcp" => Some(6),
        "udp" => Some(17),
        "sctp" => Some(132),
        _ => None,
    }
}

/// `ip <field> == addr` (daddr at offset 16, saddr at 12).
fn match_addr(out: &mut Vec<Expr>, offset: u32, addr: Ipv4Addr) {
    out.push(Expr::Payload { base: NFT_PAYLOAD_NETWORK_HEADER, offset, len: 4 });
    out.push(Expr::Cmp { op: NFT_CMP_EQ, data: addr.octets().to_vec() });
}

/// `<proto> dport <port>`: the protocol from `meta l4proto`, then the port.
fn match_port(out: &mut Vec<Expr>, proto: u8, port: u16) {
    out.push(Expr::MetaL4proto);
    out.push(Expr::Cmp { op: NFT_CMP_EQ, data: vec![proto] });
    out.push(Expr::Payload { base: NFT_PAYLOAD_TRANSPORT_HEADER, offset: 2, len: 2 });
    out.push(Expr::Cmp { op: NFT_CMP_EQ, data: port.to_be_bytes().to_vec() });
}

/// `ip saddr != <cidr>` as nft writes it: whole bytes compared directly, a partial byte through a mask.
fn saddr_not_in(out: &mut Vec<Expr>, net: Ipv4Network) {
    let prefix = u32::from(net.prefix());
    let octets = net.network().octets();
    if prefix.is_multiple_of(8) && prefix > 0 {
        out.push(Expr::Payload { base: NFT_PAYLOAD_NETWORK_HEADER, offset: 12, len: prefix / 8 });
        out.push(Expr::Cmp { op: NFT_CMP_NEQ, data: octets[..(prefix / 8) as usize].to_vec() });
    } else {
        out.push(Expr::Payload { base: NFT_PAYLOAD_NETWORK_HEADER, offset: 12, len: 4 });
        out.push(Expr::Bitwise { mask: net.mask().octets() });
        out.push(Expr::Cmp { op: NFT_CMP_NEQ, data: octets.to_vec() });
    }
}

/// The expressions of one rule this module knows, from the words after `add rule ip <table> <chain>`.
fn rule(words: &[&str]) -> Option<Vec<Expr>> {
    let mut out = Vec::new();
    let rest: &[&str] = match words {
        // `ip daddr A <proto> dport P [ip saddr != CIDR] jump|goto C`
        ["ip", "daddr", addr, proto, "dport", port, rest @ ..] => {
            match_addr(&mut out, 16, addr.parse().ok()?);
            match_port(&mut out, proto_number(proto)?, port.parse().ok()?);
            match rest {
                ["ip", "saddr", "!=", cidr, rest @ ..] if cidr.contains('/') => {
                    saddr_not_in(&mut out, cidr.parse().ok()?);
                    rest
                }
                _ => rest,
            }
        }
        // `ip saddr A jump|goto C`
        ["ip", "saddr", addr, rest @ ..] if !addr.contains('/') && *addr != "!=" && !addr.starts_with('@') => {
            match_addr(&mut out, 12, addr.parse().ok()?);
            rest
        }
        // `numgen random mod N == 0 goto C`
        ["numgen", "random", "mod", n, "==", "0", rest @ ..] => {
            out.push(Expr::Numgen { modulus: n.parse().ok().filter(|n| *n > 0)?, offset: 0 });
            out.push(Expr::Cmp { op: NFT_CMP_EQ, data: 0u32.to_ne_bytes().to_vec() });
            rest
        }
        // `meta l4proto <proto> dnat to A:P`
        ["meta", "l4proto", proto, "dnat", "to", target] => {
            let target: std::net::SocketAddrV4 = target.parse().ok()?;
            out.push(Expr::MetaL4proto);
            out.push(Expr::Cmp { op: NFT_CMP_EQ, data: vec![proto_number(proto)?] });
            out.push(Expr::Immediate { dreg: NFT_REG_1, data: target.ip().octets().to_vec() });
            out.push(Expr::Immediate { dreg: NFT_REG_2, data: target.port().to_be_bytes().to_vec() });
            out.push(Expr::Dnat { port_reg: NFT_REG_2 });
            return Some(out);
        }
        // `meta l4proto <proto> dnat ip to numgen random mod N offset B map @endpoints`
        ["meta", "l4proto", proto, "dnat", "ip", "to", "numgen", "random", "mod", n, "offset", base, "map", map] => {
            out.push(Expr::MetaL4proto);
            out.push(Expr::Cmp { op: NFT_CMP_EQ, data: vec![proto_number(proto)?] });
            let (modulus, offset) = (n.parse().ok().filter(|n| *n > 0)?, base.parse().ok()?);
            out.push(Expr::Numgen { modulus, offset });
            // An interval map's keys are big-endian.
            out.push(Expr::Hton);
            out.push(Expr::Lookup { set: map.strip_prefix('@')?.to_string() });
            out.push(Expr::Dnat { port_reg: NFT_REG32_01 });
            return Some(out);
        }
        _ => words,
    };
    out.push(Expr::Verdict(Verdict::parse(rest).filter(|v| *v != Verdict::Drop)?));
    Some(out)
}

/// A set element's key or a map element's data: fields joined by ` . ` (addresses, protocols, ports), each padded
/// to 4 bytes.
fn element_key(words: &[&str]) -> Option<Vec<u8>> {
    let mut key = Vec::with_capacity(12);
    for field in words.split(|w| *w == ".") {
        let [field] = field else { return None };
        if let Some(p) = proto_number(field) {
            key.extend_from_slice(&[p, 0, 0, 0]);
        } else if let Ok(addr) = field.parse::<Ipv4Addr>() {
            key.extend_from_slice(&addr.octets());
        } else {
            let port: u16 = field.parse().ok()?;
            key.extend_from_slice(&port.to_be_bytes());
            key.extend_from_slice(&[0, 0]);
        }
    }
    (!key.is_empty()).then_some(key)
}

/// `add element ip <table> <map> { A-B : DATA, C-D : DATA }` (or `delete element ... { A-B, C-D }`), ranges of an
/// interval map keyed by a number (the endpoints map), as nft sends them: each range's start (big-endian) with its
/// data, then its end + 1 flagged as an interval end. (A range ending at 2^32 - 1 is left to nft.)
fn ranges(m: &mut Msg, table: &str, set: &str, inside: &str, add: bool) -> Option<()> {
    let mut elements = Vec::new();
    for range in inside.split(", ") {
        let (bounds, data) = match range.split_once(" : ") {
            Some((b, d)) if add => (b, Some(element_key(&d.split_whitespace().collect::<Vec<_>>())?)),
            None if !add => (range, None),
            _ => return None,
        };
        let (start, end) = bounds.split_once('-')?;
        let (start, end): (u32, u32) = (start.parse().ok()?, end.parse().ok()?);
        elements.push((start.to_be_bytes(), data, false));
        elements.push((end.checked_add(1)?.to_be_bytes(), None, true));
    }
    m.str(NFTA_SET_ELEM_LIST_TABLE, table);
    m.str(NFTA_SET_ELEM_LIST_SET, set);
    m.nest(NFTA_SET_ELEM_LIST_ELEMENTS, |m| {
        for (key, data, end) in &elements {
            m.nest(NFTA_LIST_ELEM, |m| {
                if *end {
                    m.u32(NFTA_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
                }
                m.value(NFTA_SET_ELEM_KEY, key);
                if let Some(d) = data {
                    m.value(NFTA_SET_ELEM_DATA, d);
                }
            })
        }
    });
    Some(())
}

/// `add|delete element ip <table> <set> { KEY [comment "C"] [: VERDICT], ... }`: the elements of a line in one
/// message.
fn element(m: &mut Msg, table: &str, set: &str, inside: &str, add: bool) -> Option<()> {
    let mut elements = Vec::new();
    for one in inside.split(", ") {
        let (key_part, verdict) = match one.split_once(" : ") {
            Some((k, v)) => (k, Some(Verdict::parse(&v.split_whitespace().collect::<Vec<_>>())?)),
            None => (one, None),
        };
        let (key_part, comment) = match key_part.split_once(" comment ") {
            Some((k, c)) => (k, Some(c.strip_prefix('"')?.strip_suffix('"')?)),
            None => (key_part, None),
        };
        if comment.is_some_and(|c| c.contains('"') || c.len() > 128)
            || (!add && (verdict.is_some() || comment.is_some()))
        {
            return None;
        }
        elements.push((element_key(&key_part.split_whitespace().collect::<Vec<_>>())?, verdict, comment));
    }
    m.str(NFTA_SET_ELEM_LIST_TABLE, table);
    m.str(NFTA_SET_ELEM_LIST_SET, set);
    m.nest(NFTA_SET_ELEM_LIST_ELEMENTS, |m| {
        for (key, verdict, comment) in &elements {
            m.nest(NFTA_LIST_ELEM, |m| {
                m.value(NFTA_SET_ELEM_KEY, key);
                if let Some(v) = verdict {
                    m.verdict(NFTA_SET_ELEM_DATA, v);
                }
                if let Some(c) = comment {
                    let mut udata = vec![NFTNL_UDATA_SET_ELEM_COMMENT, (c.len() + 1) as u8];
                    udata.extend_from_slice(c.as_bytes());
                    udata.push(0);
                    m.attr(NFTA_SET_ELEM_USERDATA, &udata);
                }
            })
        }
    });
    Some(())
}

/// Whether an element line holds ranges (`{ 0-32767 : ...`), the elements of an endpoint map.
fn is_ranges(rest: &str) -> bool {
    let inside = rest.split_once("{ ").map_or("", |(_, i)| i);
    let first = inside.split_whitespace().next().unwrap_or("").trim_end_matches(',');
    first.split_once('-').is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok())
}

/// One line of the transaction as a message with sequence number `seq`, or None when the line is outside the
/// subset. `family_table` is `ip <table>`.
fn line(family_table: &str, text: &str, seq: u32, ack: bool) -> Option<Vec<u8>> {
    let ack = if ack { NLM_F_ACK } else { 0 };
    let (verb, rest) = text.split_once(' ')?;
    let (object, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix(family_table)?.strip_prefix(' ')?;
    let table = family_table.strip_prefix("ip ")?;
    let msg = match (verb, object) {
        ("add" | "flush" | "delete", "chain") if !rest.contains([' ', '{']) => {
            let (kind, flags, name_attr) = match verb {
                "add" => (NFT_MSG_NEWCHAIN, NLM_F_CREATE, NFTA_CHAIN_NAME),
                "delete" => (NFT_MSG_DELCHAIN, 0, NFTA_CHAIN_NAME),
                _ => (NFT_MSG_DELRULE, 0, NFTA_RULE_CHAIN),
            };
            let mut m = Msg::nft(kind, NLM_F_REQUEST | flags | ack, seq);
            m.str(NFTA_CHAIN_TABLE, table);
            m.str(name_attr, rest);
            m
        }
        ("add", "rule") => {
            let (chain, body) = rest.split_once(' ')?;
            let exprs = rule(&body.split_whitespace().collect::<Vec<_>>())?;
            let mut m = Msg::nft(NFT_MSG_NEWRULE, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND | ack, seq);
            m.str(NFTA_RULE_TABLE, table);
            m.str(NFTA_RULE_CHAIN, chain);
            m.nest(NFTA_RULE_EXPRESSIONS, |m| exprs.iter().for_each(|e| e.write(m)));
            m
        }
        ("delete", "map" | "set") if !rest.contains([' ', '{']) => {
            let mut m = Msg::nft(NFT_MSG_DELSET, NLM_F_REQUEST | ack, seq);
            m.str(NFTA_SET_TABLE, table);
            m.str(NFTA_SET_NAME, rest);
            m
        }
        // `flush map|set`: a set-element delete naming no element empties the map or set.
        ("flush", "map" | "set") if !rest.contains([' ', '{']) => {
            let mut m = Msg::nft(NFT_MSG_DELSETELEM, NLM_F_REQUEST | ack, seq);
            m.str(NFTA_SET_ELEM_LIST_TABLE, table);
            m.str(NFTA_SET_ELEM_LIST_SET, rest);
            m
        }
        ("add" | "delete", "element") if is_ranges(rest) => {
            let (set, inside) = rest.split_once(' ')?;
            let inside = inside.strip_prefix("{ ")?.strip_suffix(" }")?;
            let (kind, flags) =
                if verb == "add" { (NFT_MSG_NEWSETELEM, NLM_F_CREATE) } else { (NFT_MSG_DELSETELEM, 0) };
            let mut m = Msg::nft(kind, NLM_F_REQUEST | flags | ack, seq);
            ranges(&mut m, table, set, inside, verb == "add")?;
            m
        }
        ("add" | "delete", "element") => {
            let (set, inside) = rest.split_once(' ')?;
            let inside = inside.strip_prefix("{ ")?.strip_suffix(" }")?;
            let (kind, flags) =
                if verb == "add" { (NFT_MSG_NEWSETELEM, NLM_F_CREATE) } else { (NFT_MSG_DELSETELEM, 0) };
            let mut m = Msg::nft(kind, NLM_F_REQUEST | flags | ack, seq);
            element(&mut m, table, set, inside, verb == "add")?;
            m
        }
        _ => return None,
    };
    (!msg.overflow).then(|| msg.finish())
}

/// A compiled transaction: the batch and the sequence numbers of its lines (the first is the batch's begin).
#[derive(Debug)]
pub struct Batch {
    bytes: Vec<u8>,
    first_seq: u32,
    lines: u32,
}

impl Batch {
    /// The batch's size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }
}

/// Sequence numbers of this process's batches (they only tell the kernel's answers apart; they wrap).
static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// Compiles an `nft -f` transaction on the IPv4 table `family_table` (`ip kube-proxy`) into one batch, or None
/// when a line is outside what this module writes (then `nft` runs it).
pub fn compile(family_table: &str, text: &str) -> Option<Batch> {
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count() as u32;
    compile_at(family_table, text, SEQ.fetch_add(lines + 2, std::sync::atomic::Ordering::Relaxed))
}

fn compile_at(family_table: &str, text: &str, first_seq: u32) -> Option<Batch> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() || !family_table.starts_with("ip ") {
        return None;
    }
    let res_id = NFNL_SUBSYS_NFTABLES;
    let mut bytes = Msg::new(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, first_seq, 0, res_id).finish();
    for (i, l) in lines.iter().enumerate() {
        // Only the last message asks for an acknowledgement: errors are reported whatever the flag, and one ack per
        // message could overflow the socket's receive buffer.
        let last = i + 1 == lines.len();
        bytes.extend(line(family_table, l, first_seq.wrapping_add(1 + i as u32), last)?);
    }
    let end_seq = first_seq.wrapping_add(1 + lines.len() as u32);
    bytes.extend(Msg::new(NFNL_MSG_BATCH_END, NLM_F_REQUEST, end_seq, 0, res_id).finish());
    Some(Batch { bytes, first_seq, lines: lines.len() as u32 })
}

/// How sending a batch ended.
#[derive(Debug)]
pub enum Outcome {
    /// Committed.
    Applied,
    /// Refused by the kernel, so nothing changed: the errno and the index of the line it names (None: the batch).
    Refused { errno: i32, line: Option<usize> },
}

/// Sends a batch on a new nf_tables netlink socket of this process's network namespace and reads the kernel's
/// answer (the kernel handles a batch within `sendmsg`, so its answers are queued when it returns). An `Err` means
/// the outcome is unknown.
pub fn send(batch: &Batch) -> std::io::Result<Outcome> {
    use rustix::net::{
        AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, netlink, recv, sendto, socket_with,
    };
    let fd = socket_with(AddressFamily::NETLINK, SocketType::RAW, SocketFlags::CLOEXEC, Some(netlink::NETFILTER))?;
    if batch.bytes.len() > DEFAULT_SNDBUF {
        // The kernel takes a message only up to the send buffer's size; a full sync's batch is megabytes.
        rustix::net::sockopt::set_socket_send_buffer_size_force(&fd, batch.bytes.len() + 4096)?;
    }
    let kernel = netlink::SocketAddrNetlink::new(0, 0);
    let sent = sendto(&fd, &batch.bytes, SendFlags::empty(), &kernel)?;
    if sent != batch.bytes.len() {
        return Err(std::io::Error::other(format!("short netlink send: {sent} of {}", batch.bytes.len())));
    }
    let last_seq = batch.first_seq.wrapping_add(batch.lines);
    let mut buf = vec![0u8; 64 * 1024];
    let mut acked = false;
    loop {
        let n = match recv(&fd, &mut buf, RecvFlags::DONTWAIT) {
            Ok((n, _)) => n,
            Err(rustix::io::Errno::AGAIN) => break,
            Err(e) => return Err(e.into()),
        };
        let mut at = 0;
        while at + 16 <= n {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap());
            if len < 16 || at + len > n {
                break;
            }
            if kind == NLMSG_ERROR && len >= 20 + 16 {
                let errno = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap());
                // The header of the message answered follows the error code.
                let seq = u32::from_ne_bytes(buf[at + 28..at + 32].try_into().unwrap());
                if errno != 0 {
                    let line = Some(seq.wrapping_sub(batch.first_seq.wrapping_add(1)) as usize)
                        .filter(|i| *i < batch.lines as usize);
                    return Ok(Outcome::Refused { errno: -errno, line });
                }
                acked |= seq == last_seq;
            }
            at += (len + 3) & !3;
        }
    }
    if acked { Ok(Outcome::Applied) } else { Err(std::io::Error::other("no acknowledgement from nf_tables")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_what_a_partial_sync_writes() {
        let text = "add chain ip kube-proxy endpoint-X-ns/svc/tcp/http__10.1.0.5/8080\n\
            flush chain ip kube-proxy service-Y-ns/svc/tcp/http\n\
            add rule ip kube-proxy service-Y-ns/svc/tcp/http ip daddr 10.96.0.10 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade\n\
            add rule ip kube-proxy service-Y-ns/svc/tcp/http ip daddr 10.96.0.10 udp dport 53 ip saddr != 10.240.0.0/12 jump mark-for-masquerade\n\
            add rule ip kube-proxy service-Y-ns/svc/tcp/http numgen random mod 2 == 0 goto endpoint-X\n\
            add rule ip kube-proxy service-Y-ns/svc/tcp/http goto endpoint-X\n\
            add rule ip kube-proxy endpoint-X ip saddr 10.1.0.5 jump mark-for-masquerade\n\
            add rule ip kube-proxy endpoint-X meta l4proto tcp dnat to 10.1.0.5:8080\n\
            add element ip kube-proxy cluster-ips { 10.96.0.10 }\n\
            add element ip kube-proxy service-ips { 10.96.0.10 . tcp . 80 : goto service-Y-ns/svc/tcp/http }\n\
            add element ip kube-proxy no-endpoint-services { 10.96.0.11 . udp . 53 comment \"ns/dns:dns\" : goto reject-chain }\n\
            add element ip kube-proxy service-nodeports { tcp . 30080 : goto external-Z }\n\
            delete element ip kube-proxy cluster-ips { 10.96.0.12 }\n\
            delete chain ip kube-proxy endpoint-old\n";
        let batch = compile_at("ip kube-proxy", text, 100).expect("every line is in the subset");
        assert_eq!(batch.lines, 14);
        // Begin, 14 messages, end: walk the headers.
        let (mut at, mut kinds) = (0, Vec::new());
        while at < batch.bytes.len() {
            let len = u32::from_ne_bytes(batch.bytes[at..at + 4].try_into().unwrap()) as usize;
            kinds.push(u16::from_ne_bytes(batch.bytes[at + 4..at + 6].try_into().unwrap()) & 0xff);
            let seq = u32::from_ne_bytes(batch.bytes[at + 8..at + 12].try_into().unwrap());
            assert_eq!(seq as usize, 100 + kinds.len() - 1);
            assert_eq!(len % 4, 0);
            at += len;
        }
        assert_eq!(kinds, [0x10, 3, 8, 6, 6, 6, 6, 6, 6, 12, 12, 12, 12, 14, 5, 0x11]);
        // The element's key: address, protocol and port each padded to 4 bytes.
        assert_eq!(
            element_key(&["10.96.0.10", ".", "tcp", ".", "80"]).unwrap(),
            [10, 96, 0, 10, 6, 0, 0, 0, 0, 80, 0, 0]
        );
        assert_eq!(element_key(&["udp", ".", "30053"]).unwrap(), [17, 0, 0, 0, 0x75, 0x65, 0, 0]);
    }

    /// Several keys of a set in one message; a message whose elements outgrow a netlink attribute is left to nft.
    #[test]
    fn many_keys_in_one_message() {
        let keys: Vec<String> =
            (0..1000).map(|i| format!("10.1.{}.{} . 10.1.{}.{}", i / 250, i % 250, i / 250, i % 250)).collect();
        let text = format!("add element ip kube-proxy endpoint-hairpin {{ {} }}\n", keys.join(", "));
        let batch = compile_at("ip kube-proxy", &text, 1).expect("a thousand keys compile");
        assert_eq!(batch.lines, 1);
        // Every key is in it, the last too (10.1.3.249 . 10.1.3.249).
        assert!(batch.bytes.len() > 1000 * 16);
        assert!(batch.bytes.windows(8).any(|w| w == [10, 1, 3, 249, 10, 1, 3, 249]));
        let keys: Vec<String> =
            (0..5000).map(|i| format!("10.2.{}.{} . 10.2.{}.{}", i / 250, i % 250, i / 250, i % 250)).collect();
        let text = format!("add element ip kube-proxy endpoint-hairpin {{ {} }}\n", keys.join(", "));
        assert!(compile_at("ip kube-proxy", &text, 1).is_none(), "over 64 KiB of elements");
    }

    #[test]
    fn leaves_the_rest_to_nft() {
        for text in [
            "add set ip kube-proxy affinity-X { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }",
            "add rule ip kube-proxy endpoint-X update @affinity-X { ip saddr }",
            "add rule ip kube-proxy service-Y ip saddr @affinity-X goto endpoint-X",
            "add rule ip kube-proxy external-Z fib saddr type local jump mark-for-masquerade",
            "add rule ip kube-proxy service-Y ip daddr 10.96.0.10 tcp dport 80 iifname != cbr0 jump mark-for-masquerade",
            "add rule ip kube-proxy firewall-Z ip saddr != { 10.0.0.0/8 } drop",
            "add rule ip kube-proxy endpoint-X meta l4proto tcp dnat to [fd00::1]:80",
            "add chain ip kube-proxy reject-chain { comment \"helper\" ; }",
        ] {
            assert!(compile("ip kube-proxy", text).is_none(), "{text}");
        }
        assert!(compile("ip6 kube-proxy", "add chain ip6 kube-proxy x").is_none());
    }
}
