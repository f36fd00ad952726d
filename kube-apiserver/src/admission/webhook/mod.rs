//! Dynamic admission webhooks: upstream's MutatingAdmissionWebhook and ValidatingAdmissionWebhook plugins
//! (`k8s.io/apiserver/pkg/admission/plugin/webhook`). [`source`] keeps the configurations in force, [`rules`] and
//! [`predicates`] and [`matchconditions`] decide which webhooks a request concerns, [`review`] builds the AdmissionReview and checks the
//! answer, [`client`] makes the HTTPS call; [`mutating`] calls mutating webhooks one after the other and applies
//! their patches, [`validating`] calls validating webhooks in parallel.
//!
//! A write that no webhook's rules cover costs one atomic load and a scan of the rules: no allocation, no await.

pub mod client;
pub mod matchconditions;
pub mod mutating;
pub mod predicates;
pub mod review;
pub mod rules;
pub mod source;
pub mod testserver;
pub mod validating;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use api_types::{ApiError, Resource};
use rules::Matched;
use serde_json::Value;

use crate::admission::Request;
use source::{Hook, SideEffects, Snapshot};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What webhook admission reads from the cluster.
pub trait Cluster: Send + Sync {
    /// A namespace (for namespaceSelector); its 404 when it does not exist.
    fn namespace<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Value, ApiError>>;
    /// An endpoint (IP, port) of a webhook's Service, or why there is none.
    fn service_endpoint<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<(String, u16), String>>;
    /// The authorizer chain, for the `authorizer` of CEL expressions (None: expressions have none).
    fn authorizer(&self) -> Option<crate::apiextensions::cel::authz::AuthorizeFn> {
        None
    }
    /// The other versions the request's resource is served at (matchPolicy Equivalent): by default the
    /// built-ins sharing its storage.
    fn equivalents(&self, res: &Resource) -> Vec<&'static Resource> {
        rules::equivalents(&Default::default(), res)
    }
    /// An object of one served version of a resource as another version shows it (by default as the
    /// built-in conversions and conversion `None` make it).
    fn convert<'a>(
        &'a self,
        from: &'a Resource,
        to: &'a Resource,
        obj: Value,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move { Ok(crate::convert::to_external(to, crate::convert::to_internal(from, obj))) })
    }
}

/// The two webhook plugins of one apiserver.
pub struct Webhooks {
    pub source: Arc<source::Source>,
    pub clients: client::Clients,
    mutating_on: bool,
    validating_on: bool,
    /// Set once both configuration kinds were listed: until then requests wait for them.
    synced: AtomicBool,
    /// The apiserver's authorizer chain as CEL expressions call it (set once the apiserver exists).
    pub authorizer: std::sync::OnceLock<crate::apiextensions::cel::authz::AuthorizeFn>,
}

/// How long a request waits for the first lists of configurations (upstream's `WaitForReady`).
const READY_WAIT: Duration = Duration::from_secs(10);

impl Webhooks {
    /// The plugins, on as `--enable-admission-plugins`/`--disable-admission-plugins` say.
    pub fn new(plugins: &[String]) -> Self {
        let on = |n: &str| plugins.iter().any(|p| p == n);
        Webhooks {
            source: Default::default(),
            clients: Default::default(),
            mutating_on: on("MutatingAdmissionWebhook"),
            validating_on: on("ValidatingAdmissionWebhook"),
            synced: AtomicBool::new(false),
            authorizer: Default::default(),
        }
    }

    /// The webhooks of one kind some of whose rules cover the request: None (the common case, decided without
    /// allocating) when there is nothing to call.
    fn candidates(&self, cluster: &dyn Cluster, on: bool, mutating: bool, r: &Request<'_>) -> Option<Arc<Snapshot>> {
        if !on || rules::is_exempt(r.resource.group, r.resource.kind) {
            return None;
        }
        let snap = self.source.load();
        if !self.synced.load(Ordering::Acquire) {
            return Some(arc_swap::Guard::into_inner(snap));
        }
        let hooks = if mutating { &snap.mutating } else { &snap.validating };
        let attrs = attrs(r);
        if hooks.iter().any(|h| h.rules_match(&attrs)) {
            return Some(arc_swap::Guard::into_inner(snap));
        }
        if !hooks.iter().any(|h| h.equivalent) {
            return None;
        }
        let equivalents = cluster.equivalents(r.resource);
        hooks
            .iter()
            .any(|h| h.matched(&attrs, || equivalents.clone()).is_some())
            .then(|| arc_swap::Guard::into_inner(snap))
    }

    pub fn mutating_candidates(&self, cluster: &dyn Cluster, r: &Request<'_>) -> Option<Arc<Snapshot>> {
        self.candidates(cluster, self.mutating_on, true, r)
    }

    pub fn validating_candidates(&self, cluster: &dyn Cluster, r: &Request<'_>) -> Option<Arc<Snapshot>> {
        self.candidates(cluster, self.validating_on, false, r)
    }

    /// The snapshot to dispatch on: the one given, or, before the first lists arrived, the one after them (a 403
    /// when they do not come in time, as upstream's "not yet ready to handle request").
    async fn ready(&self, snap: Arc<Snapshot>, r: &Request<'_>) -> Result<Arc<Snapshot>, ApiError> {
        if self.synced.load(Ordering::Acquire) {
            return Ok(snap);
        }
        if !self.source.wait_synced(READY_WAIT).await {
            return Err(ApiError::forbidden(format!(
                "{} {:?} is forbidden: not yet ready to handle request",
                r.resource.qualified(),
                r.name
            )));
        }
        self.synced.store(true, Ordering::Release);
        Ok(arc_swap::Guard::into_inner(self.source.load()))
    }

    /// Mutating webhook admission of a write whose candidates were found by [`Self::mutating_candidates`].
    pub async fn mutate(
        &self,
        cluster: &dyn Cluster,
        snap: Arc<Snapshot>,
        r: &Request<'_>,
        object: Option<&mut Value>,
    ) -> Result<(), ApiError> {
        let snap = self.ready(snap, r).await?;
        mutating::dispatch(cluster, &self.clients, &snap.mutating, r, object).await
    }

    /// Validating webhook admission of a write whose candidates were found by [`Self::validating_candidates`].
    pub async fn validate(&self, cluster: &dyn Cluster, snap: Arc<Snapshot>, r: &Request<'_>) -> Result<(), ApiError> {
        let snap = self.ready(snap, r).await?;
        validating::dispatch(cluster, &self.clients, &snap.validating, r).await
    }
}

/// The request as rules see it.
pub fn attrs<'a>(r: &Request<'a>) -> rules::Attrs<'a> {
    rules::Attrs {
        operation: r.operation.as_str(),
        group: r.resource.group,
        version: r.resource.version,
        resource: r.resource.plural,
        subresource: r.subresource,
        namespace: review::request_namespace(r),
    }
}

/// How one webhook call failed (upstream's error types).
#[derive(Debug)]
pub enum CallError {
    /// The webhook could not be called or answered nonsense (`ErrCallingWebhook`): its failurePolicy decides.
    Calling(String),
    /// The webhook denied the request (`ErrWebhookRejection`).
    Rejected(ApiError),
    /// Anything else (dry run unsupported, a patch that does not apply): returned as it is.
    Other(ApiError),
}

impl CallError {
    /// The error the request fails with, or None when the webhook's failurePolicy is Ignore and the call failed.
    pub fn outcome(self, hook: &Hook) -> Option<ApiError> {
        match self {
            CallError::Calling(why) if hook.ignore_failures => {
                tracing::warn!(webhook = hook.name, error = why, "failed calling webhook, failing open");
                None
            }
            CallError::Calling(why) => {
                tracing::warn!(webhook = hook.name, error = why, "failed calling webhook, failing closed");
                Some(review::failed_calling(&hook.name, &why))
            }
            CallError::Rejected(e) | CallError::Other(e) => Some(e),
        }
    }
}

/// Whether a webhook is to be called for this request (upstream's `ShouldCallHook`), and as which version of
/// its resource: its namespaceSelector and objectSelector, then its rules; a selector that fails matters only
/// when the rules match.
pub async fn should_call(
    cluster: &dyn Cluster,
    hook: &Hook,
    r: &Request<'_>,
    object: Option<&Value>,
) -> Result<Option<Matched>, ApiError> {
    let ns = predicates::namespace_matches(cluster, &hook.namespace_selector, r, object).await;
    if matches!(ns, Ok(false)) {
        return Ok(None);
    }
    let obj = predicates::object_matches(&hook.object_selector, object, r.old);
    if matches!(obj, Ok(false)) {
        return Ok(None);
    }
    let Some(matched) = hook.matched(&attrs(r), || cluster.equivalents(r.resource)) else { return Ok(None) };
    ns?;
    obj?;
    Ok(match_conditions(cluster, hook, r, object)?.then_some(matched))
}

/// The request's object and old object as the version a webhook matched shows them: converted under matchPolicy
/// Equivalent, None when the webhook matched the request's own version. A conversion that fails is an internal
/// error, whatever the webhook's failurePolicy (upstream's `NewVersionedAttributes`).
pub async fn versioned(
    cluster: &dyn Cluster,
    r: &Request<'_>,
    matched: Matched,
    object: Option<&Value>,
) -> Result<Option<(Option<Value>, Option<Value>)>, CallError> {
    let Matched::Equivalent(to) = matched else { return Ok(None) };
    let convert = async |o: Option<&Value>| match o {
        Some(o) => cluster.convert(r.resource, to, o.clone()).await.map(Some).map_err(CallError::Other),
        None => Ok(None),
    };
    Ok(Some((convert(object).await?, convert(r.old).await?)))
}

/// A webhook's `matchConditions` (upstream `ShouldCallHook`): a false condition skips the webhook; errors under
/// failurePolicy Fail refuse the request with 403.
fn match_conditions(
    cluster: &dyn Cluster,
    hook: &Hook,
    r: &Request<'_>,
    object: Option<&Value>,
) -> Result<bool, ApiError> {
    if hook.match_conditions.is_empty() {
        return Ok(true);
    }
    match hook.match_conditions.matches(r, object, cluster.authorizer(), hook.ignore_failures) {
        matchconditions::Match::Matches => Ok(true),
        matchconditions::Match::NoMatch(_) => Ok(false),
        matchconditions::Match::Error(e) => {
            tracing::warn!(webhook = hook.name, error = e, "failed evaluating match conditions, failing closed");
            let name = match (r.name, object) {
                ("", Some(o)) => crate::registry::meta_str(o, "name").unwrap_or_default(),
                (n, _) => n,
            };
            Err(ApiError::forbidden(format!("{} {name:?} is forbidden: {e}", r.resource.qualified())))
        }
    }
}

/// Calls one webhook: the dry-run check, the review (the objects as `matched` shows them, see [`versioned`]), the
/// call and the checks on its answer; warnings go to the response; a denial is [`CallError::Rejected`].
#[allow(clippy::too_many_arguments)]
pub async fn call(
    cluster: &dyn Cluster,
    clients: &client::Clients,
    hook: &Hook,
    r: &Request<'_>,
    matched: &Resource,
    object: Option<&Value>,
    old: Option<&Value>,
    mutating: bool,
) -> Result<review::Response, CallError> {
    if r.dry_run {
        match hook.side_effects {
            None => return Err(CallError::Calling("Webhook SideEffects is nil".into())),
            Some(SideEffects::None | SideEffects::NoneOnDryRun) => {}
            Some(_) => return Err(CallError::Other(review::dry_run_unsupported(&hook.name))),
        }
    }
    let version = review::version(&hook.review_versions)
        .map_err(|e| CallError::Calling(format!("could not create admission objects: {e}")))?;
    let uid = uuid::Uuid::new_v4().to_string();
    let body = review::request_body(version, &uid, r, matched, object, old)
        .map_err(|e| CallError::Calling(format!("could not create admission objects: {e}")))?;
    let answer = clients.post(cluster, &hook.client, body, hook.timeout).await.map_err(CallError::Calling)?;
    let resp = review::verify(version, &uid, mutating, &answer).map_err(CallError::Calling)?;
    for w in &resp.warnings {
        crate::admission::add_warning(w);
    }
    if !resp.allowed {
        return Err(CallError::Rejected(review::denied(&hook.name, resp.result.as_ref())));
    }
    Ok(resp)
}

/// The apiserver's namespaces and Services, from the watch cache (storage when the cache has not seen them).
impl Cluster for crate::server::Apiserver {
    fn namespace<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let res = api_types::resources::find("", "v1", "namespaces")
                .ok_or_else(|| ApiError::internal("namespaces are not in the resource table"))?;
            let cache = self.registry.cacher.cache(res).await?;
            match cache.get(&crate::registry::key(res, None, name)) {
                Some(ns) => Ok((*ns).clone()),
                None => self.registry.get(res, None, name).await,
            }
        })
    }

    fn service_endpoint<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<(String, u16), String>> {
        Box::pin(async move {
            crate::aggregator::proxy::service_endpoint(self, namespace, name, port).await.map_err(|e| e.message)
        })
    }

    fn authorizer(&self) -> Option<crate::apiextensions::cel::authz::AuthorizeFn> {
        self.webhooks.authorizer.get().cloned()
    }

    fn equivalents(&self, res: &Resource) -> Vec<&'static Resource> {
        rules::equivalents(&self.served.load(), res)
    }

    /// Built-in conversions, and a custom resource's conversion webhook when its CRD has one.
    fn convert<'a>(
        &'a self,
        from: &'a Resource,
        to: &'a Resource,
        obj: Value,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let obj = crate::convert::to_internal(from, obj);
            let obj = crate::apiextensions::conversion::one_for_request(self, to, obj).await?;
            Ok(crate::convert::to_external(to, obj))
        })
    }
}
