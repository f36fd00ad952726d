//! kube-proxy's Prometheus metrics with upstream's names (`pkg/proxy/metrics`): sync durations (all, full,
//! partial), network programming latency, last sync and last queued timestamps, pending and total changes,
//! rule counts, failures and health check answers.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::proxier::SyncStats;

/// Upstream's sync duration buckets: `prometheus.ExponentialBuckets(0.001, 2, 15)`.
fn sync_buckets() -> Vec<f64> {
    (0..15).map(|i| 0.001 * 2f64.powi(i)).collect()
}

/// Upstream's network programming buckets: 0.25, 0.5, 1..59 by 1, 60..115 by 5, 120..300 by 30.
fn network_programming_buckets() -> Vec<f64> {
    let mut b = vec![0.25, 0.5];
    b.extend((1..60).map(f64::from));
    b.extend((0..12).map(|i| 60.0 + 5.0 * f64::from(i)));
    b.extend((0..7).map(|i| 120.0 + 30.0 * f64::from(i)));
    b
}

#[derive(Debug, Clone)]
struct Histogram {
    buckets: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(buckets: Vec<f64>) -> Self {
        let n = buckets.len();
        Histogram { buckets, counts: vec![0; n], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, v: f64) {
        for (i, b) in self.buckets.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.buckets.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            self.count, self.sum, self.count
        );
    }
}

struct Inner {
    sync: Histogram,
    sync_full: Histogram,
    sync_partial: Histogram,
    network_programming: Histogram,
    /// Counters and gauges: series (name with labels) -> value.
    series: BTreeMap<String, f64>,
}

/// The metrics of one kube-proxy process (every IP family).
pub struct ProxyMetrics {
    inner: Mutex<Inner>,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        ProxyMetrics {
            inner: Mutex::new(Inner {
                sync: Histogram::new(sync_buckets()),
                sync_full: Histogram::new(sync_buckets()),
                sync_partial: Histogram::new(sync_buckets()),
                network_programming: Histogram::new(network_programming_buckets()),
                series: BTreeMap::new(),
            }),
        }
    }
}

const HELP: &[(&str, &str)] = &[
    ("kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds"),
    ("kubeproxy_sync_full_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for full resyncs"),
    ("kubeproxy_sync_partial_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for partial resyncs"),
    ("kubeproxy_network_programming_duration_seconds", "In Cluster Network Programming Latency in seconds"),
];

impl ProxyMetrics {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn inc(&self, series: &str) {
        *self.inner().series.entry(series.to_string()).or_default() += 1.0;
    }

    pub fn set(&self, series: &str, v: f64) {
        self.inner().series.insert(series.to_string(), v);
    }

    pub fn get(&self, series: &str) -> f64 {
        self.inner().series.get(series).copied().unwrap_or_default()
    }

    /// Sets a gauge to the current Unix time.
    pub fn set_now(&self, series: &str) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        self.set(series, now);
    }

    /// `kubeproxy_sync_proxy_rules_{service,endpoint}_changes_pending`.
    pub fn set_pending(&self, kind: &str, n: usize) {
        self.set(&format!("kubeproxy_sync_proxy_rules_{kind}_changes_pending"), n as f64);
    }

    pub fn observe_sync(&self, partial: bool, took: Duration) {
        let mut m = self.inner();
        let s = took.as_secs_f64();
        m.sync.observe(s);
        if partial { m.sync_partial.observe(s) } else { m.sync_full.observe(s) }
    }

    pub fn observe_network_programming(&self, latency: Duration) {
        self.inner().network_programming.observe(latency.as_secs_f64());
    }

    /// Failed syncs: `kubeproxy_sync_proxy_rules_iptables_restore_failures_total` or
    /// `kubeproxy_sync_proxy_rules_nftables_sync_failures_total`.
    pub fn inc_failure(&self, mode: &str) {
        match mode {
            "iptables" | "ipvs" => self.inc("kubeproxy_sync_proxy_rules_iptables_restore_failures_total"),
            _ => self.inc("kubeproxy_sync_proxy_rules_nftables_sync_failures_total"),
        }
    }

    /// Rule counts of the last sync and the no-local-endpoints gauges.
    pub fn record_stats(&self, mode: &str, stats: &SyncStats) {
        for (kind, n) in &stats.counts {
            let series = match mode {
                "iptables" | "ipvs" => format!("kubeproxy_sync_proxy_rules_iptables_total{{table=\"{kind}\"}}"),
                _ => format!("kubeproxy_sync_proxy_rules_nftables_objects_total{{kind=\"{kind}\"}}"),
            };
            self.set(&series, *n as f64);
        }
        self.set(
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy=\"internal\"}",
            stats.no_local_endpoints_internal as f64,
        );
        self.set(
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy=\"external\"}",
            stats.no_local_endpoints_external as f64,
        );
    }

    /// Observations of the network programming histogram so far.
    pub fn network_programming_count(&self) -> u64 {
        self.inner().network_programming.count
    }

    /// Syncs so far.
    pub fn sync_count(&self) -> u64 {
        self.inner().sync.count
    }

    /// Prometheus text format.
    pub fn render(&self) -> String {
        let m = self.inner();
        let mut out = String::new();
        for (h, (name, help)) in [&m.sync, &m.sync_full, &m.sync_partial, &m.network_programming].into_iter().zip(HELP)
        {
            h.render(name, help, &mut out);
        }
        let mut last = "";
        for (series, v) in &m.series {
            let name = series.split('{').next().unwrap_or(series);
            if name != last {
                let kind = if name.ends_with("_total")
                    && !name.contains("_no_local_")
                    && !name.contains("rules_iptables_total")
                    && !name.contains("nftables_objects")
                {
                    "counter"
                } else {
                    "gauge"
                };
                let _ = writeln!(out, "# TYPE {name} {kind}");
                last = name;
            }
            let _ = writeln!(out, "{series} {v}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders() {
        let m = ProxyMetrics::default();
        m.observe_sync(false, Duration::from_millis(3));
        m.observe_network_programming(Duration::from_millis(300));
        m.inc("kubeproxy_sync_proxy_rules_endpoint_changes_total");
        let text = m.render();
        assert!(text.contains("kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.004\"} 1"), "{text}");
        assert!(text.contains("kubeproxy_sync_proxy_rules_duration_seconds_count 1"));
        assert!(text.contains("kubeproxy_network_programming_duration_seconds_bucket{le=\"0.5\"} 1"));
        assert!(text.contains("kubeproxy_network_programming_duration_seconds_bucket{le=\"0.25\"} 0"));
        assert!(text.contains("# TYPE kubeproxy_sync_proxy_rules_endpoint_changes_total counter"));
        assert_eq!(network_programming_buckets().len(), 2 + 59 + 12 + 7);
    }
}
