//! The HTTPS client that calls webhooks (upstream's `util/webhook` ClientManager): a `url` is called as given, a
//! `service` at one of its endpoints (as the aggregator reaches its backends, [`crate::aggregator::proxy`]) with TLS
//! checked against `caBundle` for the name `<service>.<namespace>.svc`; `?timeout=` tells the webhook how long it
//! has. Connections are pooled per (CA, TLS name), so a busy webhook costs no handshake per call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::Cluster;
use super::source::{ClientConfig, Endpoint};

type Https = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A pool's key: the CA bundle and the TLS server name.
type PoolKey = (Option<Vec<u8>>, String);

/// Pools beyond this many (distinct CA and name pairs) are dropped and built again as needed.
const MAX_POOLS: usize = 256;

/// Answers larger than this (the apiserver's own request body limit) are refused.
const MAX_RESPONSE: usize = 3 * 1024 * 1024;

/// One connection pool per (caBundle, TLS server name).
#[derive(Default)]
pub struct Clients {
    pools: Mutex<HashMap<PoolKey, Https>>,
}

/// Where one call goes.
struct Target {
    /// The URL as upstream shows it in errors (`https://svc.ns.svc:443/path?timeout=10s`).
    display: String,
    /// The URL actually connected to (an endpoint's address for a service).
    uri: String,
    /// The Host header and TLS name.
    host: String,
    server_name: String,
}

fn with_timeout(url: &str, timeout: Duration) -> String {
    let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}timeout={secs}s")
}

async fn target(cluster: &dyn Cluster, cfg: &ClientConfig, timeout: Duration) -> Result<Target, String> {
    match &cfg.endpoint {
        Endpoint::Service { namespace, name, port, path } => {
            let host = format!("{name}.{namespace}.svc");
            let path = if path.is_empty() { "/" } else { path.as_str() };
            let display = with_timeout(&format!("https://{host}:{port}{path}"), timeout);
            let (ip, ep_port) =
                cluster.service_endpoint(namespace, name, *port).await.map_err(|e| format!("Post {display:?}: {e}"))?;
            let ip = if ip.contains(':') { format!("[{ip}]") } else { ip };
            Ok(Target {
                uri: with_timeout(&format!("https://{ip}:{ep_port}{path}"), timeout),
                display,
                host: format!("{host}:{port}"),
                server_name: host,
            })
        }
        Endpoint::Url(url) => {
            let uri: http::Uri = url.parse().map_err(|e| format!("invalid webhook url {url:?}: {e}"))?;
            let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
            let authority = uri.authority().map(|a| a.as_str().to_string()).unwrap_or_default();
            let display = with_timeout(url, timeout);
            Ok(Target { uri: display.clone(), display, host: authority, server_name: host })
        }
    }
}

/// An error and its causes, as Go prints wrapped errors.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// client-go's message for an answer that is not a 2xx without a Status body.
fn status_error(code: u16, body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && v["kind"] == "Status"
        && let Some(m) = v["message"].as_str()
    {
        return m.to_string();
    }
    let text = String::from_utf8_lossy(body).trim().to_string();
    match code {
        500 if !text.is_empty() => {
            format!("an error on the server ({text:?}) has prevented the request from succeeding")
        }
        _ => format!("the server responded with the status code {code} but did not return more information"),
    }
}

impl Clients {
    fn pool(&self, cfg: &ClientConfig, server_name: &str) -> Result<Https, String> {
        let key = (cfg.ca_bundle.clone(), server_name.to_string());
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = pools.get(&key) {
            return Ok(c.clone());
        }
        let tls = client::rustls_config(&client::Config { ca_pem: cfg.ca_bundle.clone(), ..Default::default() })
            .map_err(|e| format!("could not get REST client: {e}"))?;
        let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
            .map_err(|e| format!("invalid webhook host {server_name:?}: {e}"))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
            .enable_http1()
            .wrap_connector(http);
        let c = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(90)).build(https);
        if pools.len() >= MAX_POOLS {
            pools.clear();
        }
        pools.insert(key, c.clone());
        Ok(c)
    }

    /// POSTs an AdmissionReview and returns the answer's body; the error is why the call failed, in upstream's
    /// words (`failed to call webhook: Post "<url>": ...`).
    pub async fn post(
        &self,
        cluster: &dyn Cluster,
        cfg: &ClientConfig,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Bytes, String> {
        let failed = |e: String| format!("failed to call webhook: {e}");
        let t = target(cluster, cfg, timeout).await.map_err(failed)?;
        let client = self.pool(cfg, &t.server_name).map_err(failed)?;
        let req = Request::post(t.uri.as_str())
            .header(header::HOST, t.host.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, */*")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| failed(e.to_string()))?;
        let display = t.display;
        let call = async {
            let resp = client.request(req).await.map_err(|e| format!("Post {display:?}: {}", chain(&e)))?;
            let status = resp.status();
            let limited = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE);
            let body = limited.collect().await.map_err(|e| format!("Post {display:?}: {e}"))?.to_bytes();
            if !status.is_success() {
                return Err(status_error(status.as_u16(), &body));
            }
            Ok(body)
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(r) => r.map_err(failed),
            Err(_) => Err(failed(format!("Post {display:?}: context deadline exceeded"))),
        }
    }
}
