//! The event handlers and the sync of one IP family (upstream's `proxy.Provider` with the parts of
//! `syncProxyRules` every mode shares): Service, EndpointSlice and Node events feed the change trackers; a sync
//! applies them, lets the [`Proxier`] write the rules (partially when it can), then records the metrics, tells
//! the health servers, and deletes stale UDP conntrack entries.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::conntrack;
use crate::endpointschangetracker::{EndpointsChangeTracker, EndpointsMap, local_ready_endpoints};
use crate::exec::Exec;
use crate::healthcheck::{ProxierHealthServer, ServiceHealthServer};
use crate::metrics::ProxyMetrics;
use crate::proxier::{Proxier, SyncInput};
use crate::servicechangetracker::{ServiceChangeTracker, ServicePortMap, health_check_node_ports};
use crate::serviceport::IpFamily;

struct State {
    proxier: Box<dyn Proxier>,
    svc_port_map: ServicePortMap,
    endpoints_map: EndpointsMap,
    node_labels: BTreeMap<String, String>,
    services_synced: bool,
    endpoint_slices_synced: bool,
    need_full_sync: bool,
    last_full_sync: Option<Instant>,
}

/// How a sync ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Services or EndpointSlices have not been listed yet: nothing written.
    NotInitialized,
    Full,
    Partial,
    /// Writing failed; the next sync is a full one.
    Failed,
}

/// One IP family's trackers, maps and proxier.
pub struct Provider {
    family: IpFamily,
    hostname: String,
    service_changes: ServiceChangeTracker,
    endpoints_changes: EndpointsChangeTracker,
    state: Mutex<State>,
    exec: Arc<dyn Exec>,
    sync_period: Duration,
    metrics: Arc<ProxyMetrics>,
    healthz: Option<Arc<ProxierHealthServer>>,
    service_health: Option<Arc<ServiceHealthServer>>,
}

impl Provider {
    pub fn new(
        proxier: Box<dyn Proxier>,
        hostname: &str,
        exec: Arc<dyn Exec>,
        sync_period: Duration,
        metrics: Arc<ProxyMetrics>,
        healthz: Option<Arc<ProxierHealthServer>>,
        service_health: Option<Arc<ServiceHealthServer>>,
    ) -> Self {
        let family = proxier.family();
        Provider {
            family,
            hostname: hostname.to_string(),
            service_changes: ServiceChangeTracker::new(family),
            endpoints_changes: EndpointsChangeTracker::new(hostname, family),
            state: Mutex::new(State {
                proxier,
                svc_port_map: ServicePortMap::new(),
                endpoints_map: EndpointsMap::new(),
                node_labels: BTreeMap::new(),
                services_synced: false,
                endpoint_slices_synced: false,
                need_full_sync: true,
                last_full_sync: None,
            }),
            exec,
            sync_period,
            metrics,
            healthz,
            service_health,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn family(&self) -> IpFamily {
        self.family
    }

    /// Whether both Services and EndpointSlices were listed.
    pub fn is_initialized(&self) -> bool {
        let st = self.state();
        st.services_synced && st.endpoint_slices_synced
    }

    /// A Service was added or updated (`new`), or deleted (`new` None, `old` its last state); the change starts from
    /// the Service as the tracker last saw it. True when a sync is due.
    pub fn on_service(&self, old: Option<&Value>, new: Option<&Value>) -> bool {
        let changed = self.service_changes.update(old, new);
        self.changed("service", changed, self.service_changes.pending())
    }

    /// A full list of the Services (first list or relist): Services missing from it are deleted. True when a sync
    /// is due.
    pub fn on_services_listed(&self, services: &[Value]) -> bool {
        let changed = self.service_changes.services_listed(services);
        self.changed("service", changed, self.service_changes.pending())
    }

    /// An EndpointSlice was added or updated (or deleted, `remove`). True when a sync is due.
    pub fn on_endpoint_slice(&self, slice: &Value, remove: bool) -> bool {
        let changed = self.endpoints_changes.endpoint_slice_update(slice, remove);
        self.changed("endpoint", changed, self.endpoints_changes.pending())
    }

    /// A full list of the EndpointSlices (first list or relist): slices missing from it are deleted. True when a
    /// sync is due.
    pub fn on_endpoint_slices_listed(&self, slices: &[Value]) -> bool {
        let changed = self.endpoints_changes.endpoint_slices_listed(slices);
        self.changed("endpoint", changed, self.endpoints_changes.pending())
    }

    /// This node was added or updated (None: deleted). A change of its labels (zone) needs a full sync.
    pub fn on_node(&self, node: Option<&Value>) -> bool {
        if let Some(n) = node
            && runtime::name(n) != self.hostname
        {
            tracing::error!(event_node = runtime::name(n), current_node = %self.hostname, "watch event for another node");
            return false;
        }
        let labels: BTreeMap<String, String> = node
            .and_then(|n| n.pointer("/metadata/labels"))
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
            .unwrap_or_default();
        if let (Some(h), Some(n)) = (&self.healthz, node) {
            h.sync_node(n);
        }
        let mut st = self.state();
        if st.node_labels == labels && node.is_some() {
            return false;
        }
        st.node_labels = labels;
        st.need_full_sync = true;
        drop(st);
        self.queued()
    }

    /// After a `kind` ("service" or "endpoint") event: the pending-changes gauge and the changes counter. True when
    /// the event changed something and a sync is due.
    fn changed(&self, kind: &str, changed: bool, pending: usize) -> bool {
        self.metrics.set_pending(kind, pending);
        if changed {
            self.metrics.inc(&format!("kubeproxy_sync_proxy_rules_{kind}_changes_total"));
        }
        changed && self.queued()
    }

    fn queued(&self) -> bool {
        if let Some(h) = &self.healthz {
            h.queued_update(self.family);
        }
        self.metrics.set_now("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds");
        self.is_initialized()
    }

    /// The Service informer listed everything.
    pub fn on_services_synced(&self) {
        self.state().services_synced = true;
    }

    /// The EndpointSlice informer listed everything.
    pub fn on_endpoint_slices_synced(&self) {
        self.state().endpoint_slices_synced = true;
    }

    /// Applies the pending changes and writes the rules (upstream's `syncProxyRules`).
    pub fn sync_proxy_rules(&self) -> SyncOutcome {
        let mut st = self.state();
        if !(st.services_synced && st.endpoint_slices_synced) {
            tracing::debug!("not syncing until Services and EndpointSlices have been received");
            return SyncOutcome::NotInitialized;
        }
        let periodic_due =
            st.proxier.periodic_full_sync() && st.last_full_sync.is_none_or(|t| t.elapsed() >= self.sync_period);
        let partial = !st.need_full_sync && !periodic_due;
        let start = Instant::now();
        let services = self.service_changes.apply(&mut st.svc_port_map);
        let endpoints = self.endpoints_changes.apply(&mut st.endpoints_map);
        self.metrics.set_pending("service", self.service_changes.pending());
        self.metrics.set_pending("endpoint", self.endpoints_changes.pending());
        let st = &mut *st;
        let input = SyncInput {
            svc_port_map: &st.svc_port_map,
            endpoints_map: &st.endpoints_map,
            node_labels: &st.node_labels,
            services: &services,
            endpoints: &endpoints,
            partial,
        };
        let applied = start.elapsed();
        let result = st.proxier.sync_rules(&input);
        let took = start.elapsed();
        tracing::debug!(?applied, ?took, "sync timing");
        self.metrics.observe_sync(partial, took);
        let mode = st.proxier.mode();
        let stats = match result {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, mode, family = ?self.family, "sync failed; retrying with a full sync");
                self.metrics.inc_failure(mode);
                st.need_full_sync = true;
                return SyncOutcome::Failed;
            }
        };
        st.need_full_sync = false;
        if !partial {
            st.last_full_sync = Some(start);
        }
        tracing::debug!(
            mode,
            family = ?self.family,
            partial,
            services = st.svc_port_map.len(),
            elapsed = ?took,
            "SyncProxyRules complete"
        );
        let now = SystemTime::now();
        for (service, times) in &endpoints.last_change_trigger_times {
            for t in times {
                if let Ok(latency) = now.duration_since(*t) {
                    self.metrics.observe_network_programming(latency);
                    // As upstream logs it at V(4); bench/kube-proxy.sh reads these lines.
                    tracing::debug!(endpoint = %service, elapsed = latency.as_secs_f64(), "Network programming");
                }
            }
        }
        self.metrics.record_stats(mode, &stats);
        self.metrics.set_now("kubeproxy_sync_proxy_rules_last_timestamp_seconds");
        if let Some(h) = &self.healthz {
            h.updated(self.family);
        }
        if let Some(s) = &self.service_health {
            s.sync_services(&health_check_node_ports(&st.svc_port_map));
            s.sync_endpoints(&local_ready_endpoints(&st.endpoints_map));
        }
        conntrack::clean_stale_entries(
            self.exec.as_ref(),
            self.family == IpFamily::V6,
            &st.svc_port_map,
            &services,
            &endpoints,
        );
        if partial { SyncOutcome::Partial } else { SyncOutcome::Full }
    }
}
