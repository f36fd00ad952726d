//! The proxier health server (upstream's `ProxierHealthServer`): healthy while no queued update of any IP
//! family has waited longer than the health timeout (2 x syncPeriod); `/healthz` is also unhealthy while the
//! node is being deleted, `/livez` is not.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::StatusCode;
use serde_json::Value;

use super::{Handler, Reply, go_time};
use crate::metrics::ProxyMetrics;
use crate::serviceport::IpFamily;

/// The taint the cluster autoscaler puts on nodes it is about to delete.
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";

#[derive(Default)]
struct State {
    last_updated: BTreeMap<IpFamily, SystemTime>,
    oldest_pending_queued: BTreeMap<IpFamily, SystemTime>,
    node_eligible: bool,
}

pub struct ProxierHealthServer {
    health_timeout: Duration,
    state: Mutex<State>,
    metrics: Arc<ProxyMetrics>,
}

impl ProxierHealthServer {
    pub fn new(health_timeout: Duration, metrics: Arc<ProxyMetrics>) -> Self {
        ProxierHealthServer {
            health_timeout,
            state: Mutex::new(State { node_eligible: true, ..Default::default() }),
            metrics,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A sync of `family` succeeded: it has nothing pending.
    pub fn updated(&self, family: IpFamily) {
        let mut st = self.state();
        st.oldest_pending_queued.remove(&family);
        st.last_updated.insert(family, SystemTime::now());
    }

    /// An update of `family` was queued (the oldest pending one counts).
    pub fn queued_update(&self, family: IpFamily) {
        self.state().oldest_pending_queued.entry(family).or_insert_with(SystemTime::now);
    }

    /// The node is eligible unless it is being deleted or tainted for deletion.
    pub fn sync_node(&self, node: &Value) {
        let deleting = node.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null());
        let tainted = runtime::array(node, "/spec/taints")
            .iter()
            .any(|t| t.get("key").and_then(Value::as_str) == Some(TO_BE_DELETED_TAINT));
        self.state().node_eligible = !deleting && !tainted;
    }

    pub fn node_eligible(&self) -> bool {
        self.state().node_eligible
    }

    /// (healthy, last updated, now), as upstream's `isHealthy`.
    pub fn is_healthy(&self) -> (bool, SystemTime, SystemTime) {
        let st = self.state();
        let now = SystemTime::now();
        let mut last = SystemTime::UNIX_EPOCH;
        for (family, updated) in &st.last_updated {
            last = last.max(*updated);
            let Some(queued) = st.oldest_pending_queued.get(family) else { continue };
            if now.duration_since(*queued).unwrap_or_default() < self.health_timeout {
                continue;
            }
            return (false, *updated, now);
        }
        (true, last, now)
    }

    /// Serves `/healthz` and `/livez`.
    pub fn handler(self: &Arc<Self>) -> Handler {
        let this = self.clone();
        Arc::new(move |path: &str| {
            let (healthy, mut last, now) = this.is_healthy();
            let (body_healthy, eligible, counter) = match path {
                "/healthz" => {
                    let eligible = this.node_eligible();
                    (healthy && eligible, Some(eligible), "kubeproxy_proxy_healthz_total")
                }
                "/livez" => (healthy, None, "kubeproxy_proxy_livez_total"),
                _ => {
                    return Reply::new(
                        StatusCode::NOT_FOUND,
                        "text/plain; charset=utf-8",
                        "404 page not found\n".into(),
                    );
                }
            };
            let status = if body_healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            this.metrics.inc(&format!("{counter}{{code=\"{}\"}}", status.as_u16()));
            if body_healthy {
                // As upstream: a healthy answer reports "now" as the last update.
                last = now;
            }
            let mut body = format!("{{\"lastUpdated\": {:?},\"currentTime\": {:?}", go_time(last), go_time(now));
            if let Some(e) = eligible {
                body.push_str(&format!(", \"nodeEligible\": {e}"));
            }
            body.push('}');
            Reply::new(status, "application/json", body)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stale_updates_make_it_unhealthy() {
        let hs = Arc::new(ProxierHealthServer::new(Duration::from_millis(50), Arc::default()));
        assert!(hs.is_healthy().0);
        hs.updated(IpFamily::V4);
        hs.queued_update(IpFamily::V4);
        assert!(hs.is_healthy().0, "a fresh queued update is not late");
        std::thread::sleep(Duration::from_millis(80));
        assert!(!hs.is_healthy().0);
        let reply = (hs.handler())("/healthz");
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(reply.body.starts_with("{\"lastUpdated\": \""), "{}", reply.body);
        assert!(reply.body.contains("\"nodeEligible\": true"));
        hs.updated(IpFamily::V4);
        assert_eq!((hs.handler())("/healthz").status, StatusCode::OK);
        hs.sync_node(&json!({"metadata": {"name": "n", "deletionTimestamp": "2024-01-01T00:00:00Z"}}));
        assert_eq!((hs.handler())("/healthz").status, StatusCode::SERVICE_UNAVAILABLE);
        let live = (hs.handler())("/livez");
        assert_eq!(live.status, StatusCode::OK);
        assert!(!live.body.contains("nodeEligible"));
    }
}
