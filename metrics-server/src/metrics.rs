//! metrics-server's own Prometheus metrics, with upstream's names: kubelet requests
//! (`metrics_server_kubelet_*`, pkg/scraper), scrape cycles (`metrics_server_manager_tick_duration_seconds`,
//! pkg/server), stored points (`metrics_server_storage_points`, pkg/storage) and the freshness of served
//! metrics (`metrics_server_api_metric_freshness_seconds`, pkg/api).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// client_golang's `DefBuckets`.
const DEF_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SuccessLabels {
    pub success: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabels {
    pub r#type: &'static str,
}

/// The default buckets with the scrape's timeout among them (upstream's `BucketsForScrapeDuration`).
pub fn buckets_for_scrape_duration(timeout_secs: f64) -> Vec<f64> {
    let mut buckets = DEF_BUCKETS.to_vec();
    let max = DEF_BUCKETS[DEF_BUCKETS.len() - 1];
    if timeout_secs > max {
        buckets.extend([max + (timeout_secs - max) / 2.0, timeout_secs, timeout_secs * 1.5, timeout_secs * 2.0]);
    } else if timeout_secs < max {
        let i = buckets.iter().position(|b| *b > timeout_secs).unwrap_or(buckets.len() - 1);
        let close = buckets[i] - timeout_secs < buckets[0] || (i > 0 && timeout_secs - buckets[i - 1] < buckets[0]);
        if !close {
            buckets.insert(i, timeout_secs);
        }
    }
    buckets
}

pub struct Metrics {
    registry: Registry,
    pub request_duration: Family<NodeLabels, Histogram>,
    pub request_total: Family<SuccessLabels, Counter>,
    pub last_request_time: Family<NodeLabels, Gauge>,
    pub tick_duration: Histogram,
    pub points_stored: Family<TypeLabels, Gauge>,
    pub metric_freshness: Histogram,
}

impl Metrics {
    /// The registry for a server scraping every `resolution_secs`.
    pub fn new(resolution_secs: f64) -> Self {
        let mut registry = Registry::default();
        let request_duration =
            Family::<NodeLabels, Histogram>::new_with_constructor(|| Histogram::new(DEF_BUCKETS.iter().copied()));
        registry.register(
            "metrics_server_kubelet_request_duration_seconds",
            "Duration of requests to Kubelet API in seconds",
            request_duration.clone(),
        );
        let request_total = Family::<SuccessLabels, Counter>::default();
        registry.register(
            "metrics_server_kubelet_request",
            "Number of requests sent to Kubelet API",
            request_total.clone(),
        );
        let last_request_time = Family::<NodeLabels, Gauge>::default();
        registry.register(
            "metrics_server_kubelet_last_request_time_seconds",
            "Time of last request performed to Kubelet API since unix epoch in seconds",
            last_request_time.clone(),
        );
        let tick_duration = Histogram::new(buckets_for_scrape_duration(resolution_secs));
        registry.register(
            "metrics_server_manager_tick_duration_seconds",
            "The total time spent collecting and storing metrics in seconds.",
            tick_duration.clone(),
        );
        let points_stored = Family::<TypeLabels, Gauge>::default();
        registry.register("metrics_server_storage_points", "Number of metrics points stored.", points_stored.clone());
        let metric_freshness = Histogram::new(exponential_buckets(1.0, 1.364, 20));
        registry.register(
            "metrics_server_api_metric_freshness_seconds",
            "Freshness of metrics exported",
            metric_freshness.clone(),
        );
        Metrics {
            registry,
            request_duration,
            request_total,
            last_request_time,
            tick_duration,
            points_stored,
            metric_freshness,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream's TestBucketsForScrapeDuration cases.
    #[test]
    fn scrape_duration_buckets() {
        assert_eq!(buckets_for_scrape_duration(10.0), DEF_BUCKETS.to_vec());
        assert_eq!(buckets_for_scrape_duration(15.0), [&DEF_BUCKETS[..], &[12.5, 15.0, 22.5, 30.0]].concat());
        assert_eq!(
            buckets_for_scrape_duration(4.0),
            [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 4.0, 5.0, 10.0]
        );
        assert_eq!(buckets_for_scrape_duration(5.004), DEF_BUCKETS.to_vec());
    }
}
