//! Mutating webhooks (upstream's `mutating/dispatcher.go` and `reinvocationcontext.go`): the webhooks that apply
//! are called one after the other (configurations by name, webhooks in order), each seeing what the previous ones
//! made of the object; a JSONPatch answer is applied and the object defaulted again. When a webhook changed the
//! object, the earlier webhooks with `reinvocationPolicy: IfNeeded` are called once more, in a second round. A
//! webhook matched through another version of the resource (matchPolicy Equivalent) sees and patches the object
//! in that version; the result is converted back.

use std::collections::HashSet;
use std::sync::Arc;

use api_types::ApiError;
use api_types::patch::{PatchType, apply_patch};
use serde_json::Value;

use super::client::Clients;
use super::rules::Matched;
use super::source::Hook;
use super::{CallError, Cluster, should_call, versioned};
use crate::admission::{Operation, Request};

/// Which webhooks the second round calls (upstream's `webhookReinvokeContext`).
#[derive(Default)]
struct Reinvocation {
    /// IfNeeded webhooks called since the object last changed.
    previously_invoked: HashSet<String>,
    /// The webhooks the second round calls.
    reinvoke: HashSet<String>,
    /// Some webhook changed the object: a second round is due.
    should_reinvoke: bool,
}

impl Reinvocation {
    fn require_reinvoking_previously_invoked(&mut self) {
        self.reinvoke.extend(self.previously_invoked.drain());
    }
}

/// Calls the mutating webhooks in `hooks` that apply to the request; `object` is changed in place (None for a
/// delete, which a webhook may not patch).
pub async fn dispatch(
    cluster: &dyn Cluster,
    clients: &Clients,
    hooks: &[Arc<Hook>],
    r: &Request<'_>,
    mut object: Option<&mut Value>,
) -> Result<(), ApiError> {
    let mut ctx = Reinvocation::default();
    round(cluster, clients, hooks, r, &mut object, &mut ctx, false).await?;
    if ctx.should_reinvoke && !ctx.reinvoke.is_empty() {
        round(cluster, clients, hooks, r, &mut object, &mut ctx, true).await?;
    }
    Ok(())
}

async fn round(
    cluster: &dyn Cluster,
    clients: &Clients,
    hooks: &[Arc<Hook>],
    r: &Request<'_>,
    object: &mut Option<&mut Value>,
    ctx: &mut Reinvocation,
    reinvoking: bool,
) -> Result<(), ApiError> {
    for hook in hooks {
        let Some(matched) = should_call(cluster, hook, r, object.as_deref()).await? else { continue };
        // A webhook skipped in the first round is not called for the first time in the second.
        if reinvoking && !ctx.reinvoke.contains(&hook.uid) {
            continue;
        }
        let outcome = call_and_patch(cluster, clients, hook, r, matched, object).await;
        if matches!(outcome, Ok(true)) {
            ctx.require_reinvoking_previously_invoked();
            ctx.should_reinvoke = true;
        }
        if hook.reinvoke_if_needed {
            ctx.previously_invoked.insert(hook.uid.clone());
        }
        if let Err(e) = outcome
            && let Some(e) = e.outcome(hook)
        {
            return Err(e);
        }
    }
    Ok(())
}

/// Calls one webhook and applies its patch (to the object in the version the webhook matched, converted back
/// after); true when the object changed.
async fn call_and_patch(
    cluster: &dyn Cluster,
    clients: &Clients,
    hook: &Hook,
    r: &Request<'_>,
    matched: Matched,
    object: &mut Option<&mut Value>,
) -> Result<bool, CallError> {
    let converted = versioned(cluster, r, matched, object.as_deref()).await?;
    let (versioned_object, old) = match &converted {
        Some((o, old)) => (o.as_ref(), old.as_ref()),
        None => (object.as_deref(), r.old),
    };
    let resp = super::call(cluster, clients, hook, r, matched.resource(r), versioned_object, old, true).await?;
    let Some(patch) = resp.patch else { return Ok(false) };
    let undecodable = |e: String| CallError::Calling(format!("received undecodable patch in webhook response: {e}"));
    let ops: Value = serde_json::from_slice(&patch).map_err(|e| undecodable(e.to_string()))?;
    let Some(ops) = ops.as_array() else {
        return Err(undecodable("a JSONPatch must be a list of operations".into()));
    };
    if ops.is_empty() {
        return Ok(false);
    }
    let Some(obj) = object.as_deref_mut() else {
        return Err(CallError::Other(ApiError::internal(format!(
            "admission webhook {:?} attempted to modify the object, which is not supported for this operation",
            hook.name
        ))));
    };
    let target = converted.as_ref().and_then(|(o, _)| o.as_ref()).unwrap_or(obj);
    let mut patched = apply_patch(target, PatchType::Json, &patch, None)
        .map_err(|e| CallError::Other(ApiError::internal(e.to_string())))?;
    if let Matched::Equivalent(from) = matched {
        patched = cluster.convert(from, r.resource, patched).await.map_err(CallError::Other)?;
    }
    let changed = patched != *obj;
    if r.operation != Operation::Connect {
        crate::defaults::apply(r.resource, &mut patched, r.operation == Operation::Create);
    }
    *obj = patched;
    Ok(changed)
}
