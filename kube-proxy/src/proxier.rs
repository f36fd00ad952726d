//! The one trait every data-plane backend implements (upstream's per-mode `Proxier.syncProxyRules`), and what a
//! sync hands it: the Service and endpoint maps after the change trackers were applied, what changed, and
//! whether a partial sync (only the changed Services' chains) is allowed.

use std::collections::BTreeMap;

use crate::endpointschangetracker::{EndpointsMap, UpdateEndpointsMapResult};
use crate::servicechangetracker::{ServicePortMap, UpdateServiceMapResult};
use crate::serviceport::IpFamily;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("running {cmd}: {source}")]
    Exec { cmd: String, source: std::io::Error },
    #[error("{cmd} failed: {stderr}")]
    Tool { cmd: String, stderr: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything one sync programs.
pub struct SyncInput<'a> {
    pub svc_port_map: &'a ServicePortMap,
    pub endpoints_map: &'a EndpointsMap,
    pub node_labels: &'a BTreeMap<String, String>,
    pub services: &'a UpdateServiceMapResult,
    pub endpoints: &'a UpdateEndpointsMapResult,
    /// Rewrite only the Services that changed (the rest of the data plane is known to be as last written).
    pub partial: bool,
}

/// What a sync wrote, for the metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncStats {
    /// Object counts by kind (iptables: rules per table; nftables: chains and map elements).
    pub counts: BTreeMap<String, usize>,
    /// Services with `internalTrafficPolicy: Local` and no local endpoint.
    pub no_local_endpoints_internal: usize,
    /// Services with `externalTrafficPolicy: Local` and no local endpoint.
    pub no_local_endpoints_external: usize,
}

/// A data-plane backend for one IP family.
pub trait Proxier: Send {
    /// `nftables`, `iptables` or `ipvs`.
    fn mode(&self) -> &'static str;

    fn family(&self) -> IpFamily;

    /// Whether a full rewrite is due every `syncPeriod` (iptables); otherwise only at start and after a failure.
    fn periodic_full_sync(&self) -> bool;

    /// Writes the rules for `input`. On error the caller retries with a full sync.
    fn sync_rules(&mut self, input: &SyncInput<'_>) -> Result<SyncStats>;
}
