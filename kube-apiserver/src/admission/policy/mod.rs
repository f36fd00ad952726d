//! ValidatingAdmissionPolicy (upstream `k8s.io/apiserver/pkg/admission/plugin/policy/validating` on
//! `policy/generic` and `policy/matching`): [`source`] keeps the policies and bindings in force, [`matcher`]
//! decides which requests they concern, [`validator`] evaluates a policy's CEL expressions, [`dispatcher`] runs
//! the policies of a request and turns their decisions into a denial, warnings or nothing. [`validation`] checks
//! the two kinds on create and update, [`status`] writes a policy's status with the [`typechecking`] warnings.
//!
//! The plugin runs in the validating phase, before the validating webhooks (upstream's default plugin order). A
//! write that no policy's rules cover costs one atomic load and a scan of the rules.

pub mod dispatcher;
pub mod matcher;
pub mod source;
pub mod status;
pub mod typechecking;
pub mod validation;
pub mod validator;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use api_types::ApiError;

use crate::admission::Request;
use crate::admission::webhook::rules;
use source::{Snapshot, Source};

/// upstream's plugin name.
pub const NAME: &str = "ValidatingAdmissionPolicy";

/// How long a request waits for the first lists of policies and bindings.
const READY_WAIT: Duration = Duration::from_secs(10);

/// The ValidatingAdmissionPolicy plugin of one apiserver.
pub struct Policies {
    pub source: Arc<Source>,
    on: bool,
    synced: AtomicBool,
}

impl Policies {
    /// The plugin, on as `--enable-admission-plugins`/`--disable-admission-plugins` say.
    pub fn new(plugins: &[String]) -> Self {
        Policies { source: Default::default(), on: plugins.iter().any(|p| p == NAME), synced: AtomicBool::new(false) }
    }

    pub fn enabled(&self) -> bool {
        self.on
    }

    /// The policies some of whose rules cover the request: None (decided without allocating when there are no
    /// policies) when there is nothing to evaluate.
    pub fn candidates(&self, cluster: &dyn dispatcher::Cluster, r: &Request<'_>) -> Option<Arc<Snapshot>> {
        if !self.on || rules::is_exempt(r.resource.group, r.resource.kind) {
            return None;
        }
        let snap = self.source.load();
        if !self.synced.load(Ordering::Acquire) {
            return Some(arc_swap::Guard::into_inner(snap));
        }
        if snap.hooks.is_empty() {
            return None;
        }
        let served = cluster.served();
        snap.hooks
            .iter()
            .any(|h| h.policy.match_constraints.as_ref().is_none_or(|m| m.rules_may_match(&served, r)))
            .then(|| arc_swap::Guard::into_inner(snap))
    }

    /// Evaluates the policies of a request whose candidates were found by [`Self::candidates`].
    pub async fn validate(
        &self,
        cluster: &dyn dispatcher::Cluster,
        snap: Arc<Snapshot>,
        r: &Request<'_>,
    ) -> Result<(), ApiError> {
        let snap = if self.synced.load(Ordering::Acquire) {
            snap
        } else if self.source.wait_synced(READY_WAIT).await {
            self.synced.store(true, Ordering::Release);
            arc_swap::Guard::into_inner(self.source.load())
        } else {
            return Err(ApiError::forbidden(format!(
                "{} {:?} is forbidden: not yet ready to handle request",
                r.resource.qualified(),
                r.name
            )));
        };
        dispatcher::dispatch(cluster, &snap.hooks, r).await
    }
}

/// Params from the watch caches (storage when the cache has not seen a named one yet, as upstream's direct
/// read after an informer miss).
impl dispatcher::Cluster for crate::server::Apiserver {
    fn served(&self) -> Arc<crate::apiextensions::served::Snapshot> {
        self.served.load()
    }

    fn param<'a>(
        &'a self,
        res: &'static api_types::Resource,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> crate::admission::webhook::BoxFuture<'a, Result<Option<serde_json::Value>, ApiError>> {
        Box::pin(async move {
            let cache = self.registry.cacher.cache(res).await?;
            if let Some(p) = cache.get(&crate::registry::key(res, namespace, name)) {
                return Ok(Some((*p).clone()));
            }
            match self.registry.get(res, namespace, name).await {
                Ok(p) => Ok(Some(p)),
                Err(e) if e.code == 404 => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn params<'a>(
        &'a self,
        res: &'static api_types::Resource,
        namespace: Option<&'a str>,
        selector: &'a api_types::selector::LabelSelector,
    ) -> crate::admission::webhook::BoxFuture<'a, Result<Vec<serde_json::Value>, ApiError>> {
        Box::pin(async move {
            let cache = self.registry.cacher.cache(res).await?;
            let p = crate::registry::ListParams { label_selector: Some(selector.clone()), ..Default::default() };
            Ok(cache.list(namespace, &p)?.0)
        })
    }
}
