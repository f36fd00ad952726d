//! The `prometheus` plugin: counts and times every request of its server block with CoreDNS's metrics
//! (`coredns_dns_requests_total`, `coredns_dns_responses_total`, `coredns_dns_request_duration_seconds`,
//! request and response sizes) and serves `/metrics` (default `localhost:9153`).

use std::time::Instant;

use super::{Answer, BoxFuture, Next, Plugin, Setup};
use crate::corefile::Directive;
use crate::metrics::{self, DurationLabels, RequestLabels, ResponseLabels, SizeLabels};
use crate::request::{Request, SizeReport};

pub struct Prometheus;

impl Plugin for Prometheus {
    fn name(&self) -> &'static str {
        "prometheus"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let start = Instant::now();
            let m = metrics::metrics();
            let (server, zone) = (req.server.clone(), req.zone.clone());
            let qtype = metrics::qtype_label(req.qtype());
            let proto = req.proto.as_str();
            m.requests
                .get_or_create(&RequestLabels {
                    server: server.clone(),
                    zone: zone.clone(),
                    view: "",
                    proto,
                    family: req.family(),
                    r#type: qtype,
                })
                .inc();
            let size = if req.proto == crate::request::Proto::Tcp { 65535 } else { req.size() };
            m.request_size
                .get_or_create(&SizeLabels { server: server.clone(), zone: zone.clone(), view: "", proto })
                .observe(size as f64);
            let answer = next.serve(&mut *req).await;
            let rcode = match &answer {
                Ok(msg) => msg.metadata.response_code,
                Err(e) => e.rcode,
            };
            let plugin = if answer.is_ok() { req.responder } else { "" };
            m.responses
                .get_or_create(&ResponseLabels {
                    server: server.clone(),
                    zone: zone.clone(),
                    view: "",
                    rcode: metrics::rcode_label(rcode),
                    plugin,
                })
                .inc();
            m.request_duration
                .get_or_create(&DurationLabels { server: server.clone(), zone: zone.clone(), view: "", r#type: qtype })
                .observe(start.elapsed().as_secs_f64());
            req.size_report = Some(SizeReport { server, zone, proto: req.proto });
            answer
        })
    }
}

/// `prometheus [ADDRESS]`.
pub fn setup(d: &Directive, s: &mut Setup<'_>) -> Result<Prometheus, String> {
    if d.args.len() > 1 || !d.block.is_empty() {
        return Err(s.err(d, d.line, "Wrong argument count or unexpected line ending after 'prometheus'"));
    }
    let addr = d.args.first().cloned().unwrap_or_else(|| "localhost:9153".into());
    crate::http::resolve(&addr).map_err(|e| s.err(d, d.line, e))?;
    if !s.settings.metrics.contains(&addr) {
        s.settings.metrics.push(addr);
    }
    Ok(Prometheus)
}
