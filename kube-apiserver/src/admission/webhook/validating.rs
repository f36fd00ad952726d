//! Validating webhooks (upstream's `validating/dispatcher.go`): every webhook that applies is called at once, all
//! answers are awaited, and the first failure in configuration order fails the request. A webhook matched through
//! another version of the resource (matchPolicy Equivalent) sees the objects in that version.

use api_types::ApiError;

use super::client::Clients;
use super::source::Hook;
use super::{Cluster, should_call, versioned};
use crate::admission::Request;

/// Calls the validating webhooks in `hooks` that apply to the request.
pub async fn dispatch(
    cluster: &dyn Cluster,
    clients: &Clients,
    hooks: &[std::sync::Arc<Hook>],
    r: &Request<'_>,
) -> Result<(), ApiError> {
    let mut relevant = Vec::new();
    for hook in hooks {
        if let Some(matched) = should_call(cluster, hook, r, r.object).await? {
            relevant.push((hook, matched));
        }
    }
    if relevant.is_empty() {
        return Ok(());
    }
    // Polled together in this task (so the request's warnings and user stay in scope), not one after the other.
    let calls = relevant.iter().map(|(hook, matched)| async move {
        let outcome = async {
            let converted = versioned(cluster, r, *matched, r.object).await?;
            let (object, old) = match &converted {
                Some((object, old)) => (object.as_ref(), old.as_ref()),
                None => (r.object, r.old),
            };
            super::call(cluster, clients, hook, r, matched.resource(r), object, old, false).await
        };
        match outcome.await {
            Ok(_) => None,
            Err(e) => e.outcome(hook),
        }
    });
    match futures_util::future::join_all(calls).await.into_iter().flatten().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
