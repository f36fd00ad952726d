//! Proxying from the apiserver: to the kubelet for `pods/exec`, `pods/attach`, `pods/portforward` and
//! `nodes/proxy` ([`kubelet`]), to pods and Service endpoints for `pods/proxy` and `services/proxy` ([`rest`],
//! where [`location`] finds the backend and [`transport`] rewrites headers and links), all through the
//! upgrade-aware handler ([`upgradeaware`], also the aggregator's path to extension apiservers).

pub mod kubelet;
pub mod location;
pub mod rest;
pub mod transport;
pub mod upgradeaware;

use std::sync::Arc;

use api_types::{ApiError, Resource};
use hyper::body::Incoming;

pub use kubelet::{container_of, kubelet_address, node_of, preferred_address};
pub use upgradeaware::{Target, forward};

use crate::request::RequestInfo;
use crate::server::{Apiserver, Resp};

/// Serves a connect subresource: `pods/proxy` and `services/proxy` to the pod or endpoint, the others through the
/// kubelet.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    server: &Arc<Apiserver>,
    res: &'static Resource,
    ns: Option<&str>,
    name: &str,
    sub: &str,
    info: &RequestInfo,
    parts: &mut http::request::Parts,
    body: Incoming,
) -> Result<Resp, ApiError> {
    match (res.plural, sub) {
        ("pods" | "services", "proxy") => {
            rest::serve(server, res, ns.unwrap_or_default(), name, &info.rest, parts, body).await
        }
        _ => kubelet::serve(server, res, ns, name, sub, info, parts, body).await,
    }
}
