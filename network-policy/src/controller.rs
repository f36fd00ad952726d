//! The network policy controller (kube-router's NetworkPolicyController): shared informers of NetworkPolicies,
//! Pods and Namespaces; on any change (a burst coalesced into one sync) the node's [`Ruleset`] is rebuilt and its
//! script applied when it differs from the last one applied, and every `sync_period` regardless (a table changed
//! by hand is put back).
//!
//! [`Ruleset`]: crate::policy::Ruleset

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runtime::daemon::Metrics;
use runtime::informer::{Informer, InformerParams, SharedInformerFactory};

use crate::nftables::Runner;
use crate::policy::Cluster;
use crate::ruleset;

/// After a failed apply, the next try.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Whether the last sync worked, for `/healthz`.
#[derive(Clone, Default)]
pub struct Health(Arc<Mutex<Option<String>>>);

impl Health {
    /// None when healthy, else why not.
    pub fn problem(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set(&self, problem: Option<String>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = problem;
    }
}

/// Enforces the NetworkPolicies of the pods of one node.
pub struct Controller<R: Runner> {
    node_name: String,
    runner: R,
    sync_period: Duration,
    pods: Informer,
    namespaces: Informer,
    policies: Informer,
    metrics: Metrics,
    health: Health,
    /// The script last applied.
    applied: Option<String>,
}

impl<R: Runner> Controller<R> {
    /// A controller for `node_name` on the factory's informers (every Pod, Namespace and NetworkPolicy), applying
    /// with `runner`. Must be called inside a Tokio runtime.
    pub fn new(
        factory: &SharedInformerFactory,
        node_name: &str,
        runner: R,
        sync_period: Duration,
    ) -> Result<Self, client::Error> {
        Ok(Controller {
            node_name: node_name.to_string(),
            runner,
            sync_period,
            pods: factory.informer_for("", "v1", "pods", InformerParams::all())?,
            namespaces: factory.informer_for("", "v1", "namespaces", InformerParams::all())?,
            policies: factory.informer_for("networking.k8s.io", "v1", "networkpolicies", InformerParams::all())?,
            metrics: Metrics::default(),
            health: Health::default(),
            applied: None,
        })
    }

    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// The script for the informers' current contents.
    pub fn script(&self) -> String {
        let (pods, namespaces) = (self.pods.store().list(), self.namespaces.store().list());
        let cluster = Cluster::from_objects(
            pods.iter().map(|p| p.as_ref()),
            namespaces.iter().map(|n| n.as_ref()),
            self.policies.store().list(),
        );
        let rs = cluster.ruleset(&self.node_name);
        self.metrics.set("network_policy_policies", rs.policies.len() as f64);
        self.metrics.set("network_policy_isolated_pods{direction=\"ingress\"}", rs.ingress_isolated.len() as f64);
        self.metrics.set("network_policy_isolated_pods{direction=\"egress\"}", rs.egress_isolated.len() as f64);
        ruleset::render(&rs)
    }

    /// Applies the current script if it changed (or `force`); false if applying failed.
    pub async fn sync(&mut self, force: bool) -> bool {
        let script = self.script();
        if !force && self.applied.as_ref() == Some(&script) {
            return true;
        }
        let start = Instant::now();
        let result = self.runner.apply(&script).await;
        self.metrics.set("network_policy_sync_duration_seconds", start.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                self.metrics.add("network_policy_syncs_total", 1.0);
                tracing::debug!(node = %self.node_name, bytes = script.len(), "applied the network policy table");
                self.applied = Some(script);
                self.health.set(None);
                true
            }
            Err(e) => {
                self.metrics.add("network_policy_sync_errors_total", 1.0);
                tracing::warn!(error = %e, "applying the network policy table");
                self.applied = None;
                self.health.set(Some(format!("applying the nftables table failed: {e}")));
                false
            }
        }
    }

    /// Syncs after the informers' first lists and on every change until `stop`.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut changes = [self.pods.subscribe(), self.namespaces.subscribe(), self.policies.subscribe()];
        for informer in [&self.pods, &self.namespaces, &self.policies] {
            tokio::select! {
                synced = informer.wait_synced() => if !synced { return },
                _ = stop.changed() => return,
            }
        }
        tracing::info!(node = %self.node_name, "enforcing network policies");
        let mut next_full = Instant::now() + self.sync_period;
        let mut ok = self.sync(true).await;
        loop {
            let wait = if ok { next_full.saturating_duration_since(Instant::now()) } else { RETRY_AFTER };
            let [pods, namespaces, policies] = &mut changes;
            tokio::select! {
                n = pods.recv() => if n.is_none() { return },
                n = namespaces.recv() => if n.is_none() { return },
                n = policies.recv() => if n.is_none() { return },
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
            // One sync for a burst of changes.
            for c in &mut changes {
                while c.try_recv().is_ok() {}
            }
            let force = Instant::now() >= next_full;
            if force {
                next_full = Instant::now() + self.sync_period;
            }
            ok = self.sync(force || !ok).await;
        }
    }
}
