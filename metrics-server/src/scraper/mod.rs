//! Scraping (upstream's `pkg/scraper`): every resolution, each node the node informer knows (matching
//! `--node-selector`) is asked for its resource metrics concurrently, the requests spread over a short random
//! delay, each bounded by `--kubelet-request-timeout`; the nodes' batches are merged into one.

pub mod client;
pub mod decode;

use std::sync::Arc;
use std::time::{Duration, Instant};

use api_types::selector::LabelSelector;
use rand::RngExt;
use serde_json::Value;

use crate::metrics::{Metrics, NodeLabels, SuccessLabels};
use crate::storage::MetricsBatch;
use client::KubeletClient;

/// Upstream's `maxDelayMs` and `delayPerSourceMs`: requests spread over 8 ms per node, at most 4 s.
const MAX_DELAY_MS: u64 = 4_000;
const DELAY_PER_SOURCE_MS: u64 = 8;

pub struct Scraper {
    nodes: runtime::informer::Informer,
    client: KubeletClient,
    timeout: Duration,
    selector: LabelSelector,
    metrics: Arc<Metrics>,
}

fn node_is_ready(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .is_some_and(|c| c["status"] == "True")
}

impl Scraper {
    pub fn new(
        nodes: runtime::informer::Informer,
        client: KubeletClient,
        timeout: Duration,
        selector: LabelSelector,
        metrics: Arc<Metrics>,
    ) -> Self {
        Scraper { nodes, client, timeout, selector, metrics }
    }

    /// One scrape of every node.
    pub async fn scrape(&self) -> MetricsBatch {
        let nodes = self.nodes.store().list_by(|n| self.selector.matches_value(n.pointer("/metadata/labels")));
        tracing::debug!(nodes = nodes.len(), "Scraping metrics from nodes");
        let start = Instant::now();
        let delay_ms = (DELAY_PER_SOURCE_MS * nodes.len() as u64).min(MAX_DELAY_MS);
        let mut tasks = tokio::task::JoinSet::new();
        for node in nodes {
            let (client, timeout, metrics) = (self.client.clone(), self.timeout, self.metrics.clone());
            let sleep = if delay_ms > 0 { rand::rng().random_range(0..delay_ms) } else { 0 };
            tasks.spawn(async move {
                tokio::time::sleep(Duration::from_millis(sleep)).await;
                let name = node.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
                let began = Instant::now();
                let result = tokio::time::timeout(timeout, client.get_metrics(&node)).await;
                let labels = NodeLabels { node: name.clone() };
                metrics.request_duration.get_or_create(&labels).observe(began.elapsed().as_secs_f64());
                metrics.last_request_time.get_or_create(&labels).set(jiff::Timestamp::now().as_second());
                let result = result.unwrap_or_else(|_| Err("context deadline exceeded".into()));
                let success = if result.is_ok() { "true" } else { "false" };
                metrics.request_total.get_or_create(&SuccessLabels { success }).inc();
                match result {
                    Ok(batch) => Some(batch),
                    Err(e) => {
                        if node_is_ready(&node) {
                            tracing::error!(node = %name, error = %e, "Failed to scrape node");
                        } else {
                            tracing::debug!(node = %name, error = %e, "Failed to scrape node, node is not ready");
                        }
                        None
                    }
                }
            });
        }
        let mut out = MetricsBatch::default();
        while let Some(done) = tasks.join_next().await {
            let Ok(Some(batch)) = done else { continue };
            for (name, point) in batch.nodes {
                if out.nodes.contains_key(&name) {
                    tracing::error!(node = %name, "Got duplicate node point");
                    continue;
                }
                out.nodes.insert(name, point);
            }
            for (pod, point) in batch.pods {
                if out.pods.contains_key(&pod) {
                    tracing::error!(pod = ?pod, "Got duplicate pod point");
                    continue;
                }
                out.pods.insert(pod, point);
            }
        }
        tracing::debug!(duration = ?start.elapsed(), nodes = out.nodes.len(), pods = out.pods.len(), "Scrape finished");
        out
    }
}
