//! Prometheus metrics in the text exposition format: request counts by verb, resource and code, and request
//! latency histograms by verb and resource, with upstream's metric names.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// upstream's apiserver_request_duration_seconds buckets.
const BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0,
    45.0, 60.0,
];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// Label values of one request: verb, group, version, resource, subresource, scope.
pub type RequestLabels = (String, String, String, String, String, String);

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(RequestLabels, u16), u64>>,
    latency: Mutex<BTreeMap<RequestLabels, Histogram>>,
    pub inflight_readonly: AtomicI64,
    pub inflight_mutating: AtomicI64,
    pub watchers: AtomicI64,
}

fn labels(l: &RequestLabels) -> String {
    format!(
        "verb=\"{}\",group=\"{}\",version=\"{}\",resource=\"{}\",subresource=\"{}\",scope=\"{}\",component=\"apiserver\"",
        l.0, l.1, l.2, l.3, l.4, l.5
    )
}

impl Metrics {
    pub fn observe(&self, l: RequestLabels, code: u16, took: Duration) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((l.clone(), code)).or_default() += 1;
        }
        if let Ok(mut m) = self.latency.lock() {
            let h = m.entry(l).or_default();
            if h.counts.is_empty() {
                h.counts = vec![0; BUCKETS.len()];
            }
            let secs = took.as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += secs;
            h.count += 1;
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.\n# TYPE apiserver_request_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((l, code), n) in m.iter() {
                let _ = writeln!(out, "apiserver_request_total{{{},code=\"{code}\"}} {n}", labels(l));
            }
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb, group, version, resource, subresource, scope and component.\n# TYPE apiserver_request_duration_seconds histogram\n");
        if let Ok(m) = self.latency.lock() {
            for (l, h) in m.iter() {
                let ls = labels(l);
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ =
                        writeln!(out, "apiserver_request_duration_seconds_bucket{{{ls},le=\"{b}\"}} {}", h.counts[i]);
                }
                let _ = writeln!(out, "apiserver_request_duration_seconds_bucket{{{ls},le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(out, "apiserver_request_duration_seconds_sum{{{ls}}} {}", h.sum);
                let _ = writeln!(out, "apiserver_request_duration_seconds_count{{{ls}}} {}", h.count);
            }
        }
        let _ = writeln!(
            out,
            "# HELP apiserver_current_inflight_requests Maximal number of currently used inflight request limit of this apiserver per request kind in last second.\n# TYPE apiserver_current_inflight_requests gauge"
        );
        let _ = writeln!(
            out,
            "apiserver_current_inflight_requests{{request_kind=\"readOnly\"}} {}",
            self.inflight_readonly.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "apiserver_current_inflight_requests{{request_kind=\"mutating\"}} {}",
            self.inflight_mutating.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP apiserver_longrunning_requests Gauge of all active long-running apiserver requests.\n# TYPE apiserver_longrunning_requests gauge"
        );
        let _ =
            writeln!(out, "apiserver_longrunning_requests{{verb=\"WATCH\"}} {}", self.watchers.load(Ordering::Relaxed));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_histograms() {
        let m = Metrics::default();
        let l: RequestLabels = ("GET".into(), "".into(), "v1".into(), "pods".into(), "".into(), "resource".into());
        m.observe(l.clone(), 200, Duration::from_millis(3));
        m.observe(l, 404, Duration::from_millis(30));
        let text = m.render();
        assert!(text.contains("apiserver_request_total{verb=\"GET\",group=\"\",version=\"v1\",resource=\"pods\",subresource=\"\",scope=\"resource\",component=\"apiserver\",code=\"200\"} 1"));
        assert!(text.contains("le=\"0.005\"} 1"));
        assert!(text.contains("le=\"0.05\"} 2"));
        assert!(text.contains("apiserver_request_duration_seconds_count{"));
    }
}
