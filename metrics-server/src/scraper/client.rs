//! The client of the kubelets' `/metrics/resource` (upstream's `pkg/scraper/client/resource/client.go` and
//! `pkg/utils/address_resolver.go`): the node's address of the most preferred type, the port from `--kubelet-port`
//! or the Node's `status.daemonEndpoints.kubeletEndpoint` (`--kubelet-use-node-status-port`), the path from the
//! `metrics.k8s.io/resource-metrics-path` annotation if set, over HTTPS with metrics-server's own credentials.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::scraper::decode::decode_batch;
use crate::storage::MetricsBatch;

/// The annotation that overrides the path of a node's resource metrics.
pub const ANNOTATION_RESOURCE_METRICS_PATH: &str = "metrics.k8s.io/resource-metrics-path";

/// Upstream's `DefaultAddressTypePriority`: overrides first, internal before external, DNS before IPs.
pub const DEFAULT_ADDRESS_TYPES: &[&str] = &["Hostname", "InternalDNS", "InternalIP", "ExternalDNS", "ExternalIP"];

/// The address to reach a node at: the first of its `status.addresses` of the most preferred type.
pub fn node_address(node: &Value, priority: &[String]) -> Result<String, String> {
    let addresses = node.pointer("/status/addresses").and_then(Value::as_array).cloned().unwrap_or_default();
    for t in priority {
        if let Some(a) = addresses.iter().find(|a| a["type"].as_str() == Some(t.as_str())) {
            return Ok(a["address"].as_str().unwrap_or_default().to_string());
        }
    }
    Err(format!("no address matched types [{}]", priority.join(" ")))
}

/// How to reach the kubelets.
#[derive(Clone)]
pub struct KubeletClientConfig {
    /// The connection's TLS and credentials (the apiserver's configuration with the kubelet TLS flags applied).
    pub client: client::Config,
    pub default_port: u16,
    pub use_node_status_port: bool,
    pub address_type_priority: Vec<String>,
    pub timeout: Duration,
}

/// An HTTPS client for every kubelet.
#[derive(Clone)]
pub struct KubeletClient {
    http: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    token: Option<String>,
    config: KubeletClientConfig,
}

impl KubeletClient {
    pub fn new(config: KubeletClientConfig) -> Result<Self, client::Error> {
        let tls = client::rustls_config(&config.client)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_all_versions()
            .wrap_connector(http);
        let http =
            HyperClient::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(90)).build(connector);
        Ok(KubeletClient { http, token: config.client.token.clone(), config })
    }

    /// The URL of a node's resource metrics.
    pub fn url(&self, node: &Value) -> Result<String, String> {
        let mut port = self.config.default_port;
        let status_port =
            node.pointer("/status/daemonEndpoints/kubeletEndpoint/Port").and_then(Value::as_u64).unwrap_or(0);
        if self.config.use_node_status_port && status_port != 0 {
            port = status_port as u16;
        }
        let path = node
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(ANNOTATION_RESOURCE_METRICS_PATH))
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .unwrap_or("/metrics/resource");
        let address = node_address(node, &self.config.address_type_priority)?;
        let host = if address.contains(':') { format!("[{address}]") } else { address };
        Ok(format!("https://{host}:{port}{path}"))
    }

    /// Scrapes one node: its resource metrics decoded into a batch.
    pub async fn get_metrics(&self, node: &Value) -> Result<MetricsBatch, String> {
        let name = node.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let url = self.url(node)?;
        let mut req = Request::get(&url);
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
        let request_time = jiff::Timestamp::now().as_nanosecond() as i64;
        let fetch = async {
            let resp = self.http.request(req).await.map_err(|e| format!("Get \"{url}\": {e}"))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(format!("request failed, status: \"{status}\""));
            }
            let body = resp.into_body().collect().await.map_err(|e| format!("failed to read response body - {e}"))?;
            Ok(body.to_bytes())
        };
        let body = tokio::time::timeout(self.config.timeout, fetch)
            .await
            .map_err(|_| format!("Get \"{url}\": context deadline exceeded"))??;
        decode_batch(&String::from_utf8_lossy(&body), request_time, name).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn client(use_node_status_port: bool) -> KubeletClient {
        KubeletClient::new(KubeletClientConfig {
            client: client::Config { insecure_skip_tls_verify: true, ..Default::default() },
            default_port: 10250,
            use_node_status_port,
            address_type_priority: ["InternalIP", "ExternalIP", "Hostname"].map(String::from).to_vec(),
            timeout: Duration::from_secs(10),
        })
        .unwrap()
    }

    /// Upstream's client_test.go: addresses by priority, the node status port when asked, the annotation's path.
    #[test]
    fn urls_of_kubelets() {
        let node = json!({"metadata": {"name": "n1"}, "status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "ExternalIP", "address": "1.2.3.4"},
                {"type": "InternalIP", "address": "10.0.0.1"}, {"type": "InternalIP", "address": "10.0.0.2"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10255}}}});
        assert_eq!(client(false).url(&node).unwrap(), "https://10.0.0.1:10250/metrics/resource");
        assert_eq!(client(true).url(&node).unwrap(), "https://10.0.0.1:10255/metrics/resource");
        let mut annotated = node.clone();
        annotated["metadata"]["annotations"] = json!({ANNOTATION_RESOURCE_METRICS_PATH: "/custom/path"});
        assert_eq!(client(false).url(&annotated).unwrap(), "https://10.0.0.1:10250/custom/path");
        let v6 = json!({"status": {"addresses": [{"type": "InternalIP", "address": "fd00::1"}]}});
        assert_eq!(client(true).url(&v6).unwrap(), "https://[fd00::1]:10250/metrics/resource");
        let none = json!({"status": {"addresses": [{"type": "InternalDNS", "address": "n1.local"}]}});
        assert_eq!(client(false).url(&none).unwrap_err(), "no address matched types [InternalIP ExternalIP Hostname]");
        let defaults: Vec<String> = DEFAULT_ADDRESS_TYPES.iter().map(|s| s.to_string()).collect();
        assert_eq!(node_address(&node, &defaults).unwrap(), "n1");
    }
}
