//! The `log` plugin: one line per query in CoreDNS's common log format
//! (`[INFO] 127.0.0.1:55983 - 29468 "A IN example.org. udp 41 false 512" NOERROR qr,aa,rd 108 0.000123s`), for
//! the names under its zones.

use std::time::Instant;

use hickory_proto::op::Message;

use super::{Answer, BoxFuture, Next, Plugin, Setup, in_zone};
use crate::corefile::Directive;
use crate::request::Request;

pub struct Log {
    zones: Vec<String>,
}

fn flags(m: &Message) -> String {
    let md = &m.metadata;
    let mut f = vec!["qr"];
    if md.authoritative {
        f.push("aa");
    }
    if md.truncation {
        f.push("tc");
    }
    if md.recursion_desired {
        f.push("rd");
    }
    if md.recursion_available {
        f.push("ra");
    }
    f.join(",")
}

impl Plugin for Log {
    fn name(&self) -> &'static str {
        "log"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let name = req.name();
            if !self.zones.iter().any(|z| in_zone(&name, z)) {
                return next.serve(req).await;
            }
            let start = Instant::now();
            let (id, qtype, client, proto, do_bit, size) =
                (req.msg.metadata.id, req.qtype(), req.client, req.proto, req.do_bit(), req.size());
            let req_len = req.msg.to_vec().map(|b| b.len()).unwrap_or(0);
            let answer = next.serve(&mut *req).await;
            let (rcode, fl, len) = match &answer {
                Ok(m) => (
                    crate::metrics::rcode_label(m.metadata.response_code),
                    flags(m),
                    m.to_vec().map(|b| b.len()).unwrap_or(0),
                ),
                Err(e) => (crate::metrics::rcode_label(e.rcode), "qr".to_string(), 0),
            };
            tracing::info!(
                "{}:{} - {id} \"{} IN {name} {} {req_len} {do_bit} {size}\" {rcode} {fl} {len} {:.9}s",
                client.ip(),
                client.port(),
                crate::metrics::qtype_label(qtype),
                proto.as_str(),
                start.elapsed().as_secs_f64()
            );
            answer
        })
    }
}

/// `log [NAMES...]` (the common format; custom formats and `class` filters are not offered).
pub fn setup(d: &Directive, s: &mut Setup<'_>) -> Result<Log, String> {
    if let Some(l) = d.block.first() {
        return Err(s.err(d, l.line, format!("unknown property '{}'", l.tokens[0])));
    }
    if d.args.iter().any(|a| a.contains('{')) {
        return Err(s.err(d, d.line, "custom log formats are not supported"));
    }
    Ok(Log { zones: if d.args.is_empty() { vec![".".into()] } else { super::origins(&d.args, s) } })
}
