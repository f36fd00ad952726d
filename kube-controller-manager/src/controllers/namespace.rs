//! `namespace`: empties namespaces being deleted, as upstream's `pkg/controller/namespace` (its
//! `NamespacedResourcesDeleter`).
//!
//! The apiserver marks a deleted namespace (deletionTimestamp, phase `Terminating`) and keeps it while
//! `spec.finalizers` holds `kubernetes`. This controller then deletes every object of every namespaced resource in
//! it (propagationPolicy Background), keeps the namespace's deletion conditions up to date
//! (`NamespaceDeletionDiscoveryFailure`, `NamespaceDeletionGroupVersionParsingFailure`,
//! `NamespaceDeletionContentFailure`, `NamespaceContentRemaining`, `NamespaceFinalizersRemaining`, with upstream's
//! reasons and messages), retries while content remains (requeued after half the estimated time, as upstream), and
//! once nothing is left removes `kubernetes` through `PUT /api/v1/namespaces/<name>/finalize`, after which the
//! apiserver deletes the namespace.
//!
//! Resources are the built-in table plus the custom resources aggregated discovery lists (a discovery failure is
//! the `NamespaceDeletionDiscoveryFailure` condition and a retry). Deliberate gaps: objects are listed and deleted
//! one by one instead of with `deletecollection`; the `orphan` namespace finalizer is not specially handled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use api_types::resources::{RESOURCES, Resource};
use runtime::{Action, Controller};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{BoxError, Context, stopped};

pub const FINALIZER: &str = "kubernetes";
/// Upstream's estimate for content waiting on finalizers.
const FINALIZER_ESTIMATE_SECONDS: u64 = 15;

/// Every namespaced resource whose objects are deleted with the namespace (one version per stored resource).
pub fn namespaced_resources() -> Vec<&'static Resource> {
    let mut out: Vec<&'static Resource> = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.namespaced && r.stored() && r.has_verb("list") && r.has_verb("delete")) {
        if !out.iter().any(|o| o.storage == r.storage) {
            out.push(r);
        }
    }
    out
}

const CONDITION_TYPES: [(&str, &str, &str); 5] = [
    ("NamespaceDeletionDiscoveryFailure", "ResourcesDiscovered", "All resources successfully discovered"),
    ("NamespaceDeletionGroupVersionParsingFailure", "ParsedGroupVersions", "All legacy kube types successfully parsed"),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    ("NamespaceContentRemaining", "ContentRemoved", "All content successfully removed"),
    ("NamespaceFinalizersRemaining", "ContentRemoved", "All content successfully removed"),
];

/// What one pass over the namespace's content found.
#[derive(Debug, Default)]
pub struct Totals {
    /// `resource.group` -> objects still there.
    pub remaining: BTreeMap<String, usize>,
    /// finalizer -> objects still carrying it.
    pub finalizers: BTreeMap<String, usize>,
    /// Errors deleting or listing content.
    pub errors: Vec<String>,
    /// Seconds until the remaining content is expected to be gone.
    pub estimate: u64,
    /// Aggregated discovery failed: custom resources could not be listed.
    pub discovery_error: Option<String>,
}

/// The failing conditions (status True) for these totals; the other types are set to their "ok" form.
pub fn failing_conditions(t: &Totals) -> Vec<(&'static str, &'static str, String)> {
    let mut out = Vec::new();
    if let Some(e) = &t.discovery_error {
        out.push((
            "NamespaceDeletionDiscoveryFailure",
            "DiscoveryFailed",
            format!("Discovery failed for some groups, 1 failing: {e}"),
        ));
    }
    if !t.errors.is_empty() {
        let mut msgs = t.errors.clone();
        msgs.sort();
        out.push((
            "NamespaceDeletionContentFailure",
            "ContentDeletionFailed",
            format!("Failed to delete all resource types, {} remaining: {}", msgs.len(), msgs.join(", ")),
        ));
    }
    let remaining: Vec<String> =
        t.remaining.iter().filter(|(_, n)| **n > 0).map(|(r, n)| format!("{r} has {n} resource instances")).collect();
    if !remaining.is_empty() {
        out.push((
            "NamespaceContentRemaining",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", remaining.join(", ")),
        ));
    }
    let finalizers: Vec<String> =
        t.finalizers.iter().filter(|(_, n)| **n > 0).map(|(f, n)| format!("{f} in {n} resource instances")).collect();
    if !finalizers.is_empty() {
        out.push((
            "NamespaceFinalizersRemaining",
            "SomeFinalizerRemain",
            format!("Some finalizers are remaining: {}", finalizers.join(", ")),
        ));
    }
    out
}

/// The namespace's conditions with the deleter's five types set from `failing` (upstream's `updateConditions`:
/// lastTransitionTime changes only when the status does). Returns whether anything changed.
pub fn update_conditions(conditions: &mut Vec<Value>, failing: &[(&str, &str, String)], now: &str) -> bool {
    let mut changed = false;
    for (ty, ok_reason, ok_message) in CONDITION_TYPES {
        let (status, reason, message) = match failing.iter().find(|(t, _, _)| *t == ty) {
            Some((_, r, m)) => ("True", *r, m.clone()),
            None => ("False", ok_reason, ok_message.to_string()),
        };
        match conditions.iter_mut().find(|c| c["type"] == ty) {
            None => {
                conditions.push(json!({"type": ty, "status": status, "lastTransitionTime": now,
                    "reason": reason, "message": message}));
                changed = true;
            }
            Some(c) => {
                if c["status"] != status || c["reason"] != reason || c["message"] != message.as_str() {
                    if c["status"] != status {
                        c["lastTransitionTime"] = json!(now);
                    }
                    c["status"] = json!(status);
                    c["reason"] = json!(reason);
                    c["message"] = json!(message);
                    changed = true;
                }
            }
        }
    }
    changed
}

fn now() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| jiff::Timestamp::now()).to_string()
}

/// Deletes everything of one resource in `ns`; counts what remains into `totals`.
async fn delete_content(api: client::Api, ns: &str, totals: &mut Totals) {
    let r = api.res;
    let api = api.namespaced(ns);
    let list = match api.list(&client::ListParams::default()).await {
        Ok(l) => l,
        Err(e) => {
            totals.errors.push(format!("{}: {e}", r.qualified()));
            return;
        }
    };
    let items = list.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    let opts = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"});
    let mut remaining = 0;
    for item in &items {
        let gone = match api.delete(runtime::name(item), Some(&opts)).await {
            // The deleted object comes back when it is gone; an object being deleted when it stays.
            Ok(v) => v.pointer("/metadata/deletionTimestamp").is_none() || v["kind"] == "Status",
            Err(e) if e.code() == Some(404) => true,
            Err(e) => {
                totals.errors.push(format!("{} {}: {e}", r.qualified(), runtime::name(item)));
                false
            }
        };
        if gone {
            continue;
        }
        remaining += 1;
        let finalizers = item.pointer("/metadata/finalizers").and_then(Value::as_array).cloned().unwrap_or_default();
        for f in finalizers.iter().filter_map(Value::as_str) {
            *totals.finalizers.entry(f.to_string()).or_default() += 1;
            totals.estimate = totals.estimate.max(FINALIZER_ESTIMATE_SECONDS);
        }
        let grace = item.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_u64).unwrap_or(1);
        totals.estimate = totals.estimate.max(grace.max(1));
    }
    if remaining > 0 {
        totals.remaining.insert(format!("{}.{}", r.plural, r.group), remaining);
    }
}

async fn sync(ctx: &Context, name: &str, ns: &Value) -> Result<Action, BoxError> {
    if ns.pointer("/metadata/deletionTimestamp").is_none() {
        return Ok(Action::Done);
    }
    let finalizers = ns.pointer("/spec/finalizers").and_then(Value::as_array).cloned().unwrap_or_default();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(Action::Done);
    }
    let mut totals = Totals::default();
    for r in namespaced_resources() {
        delete_content(ctx.api(r.group, r.version, r.plural), name, &mut totals).await;
    }
    match ctx.client.discover_resources().await {
        Ok(found) => {
            let custom = found.into_iter().filter(|d| {
                d.is_custom()
                    && d.namespaced
                    && d.verbs.iter().any(|v| v == "list")
                    && d.verbs.iter().any(|v| v == "delete")
            });
            for d in custom {
                let api = ctx.client.api_dynamic(&d.group, &d.version, &d.plural, &d.kind, true);
                delete_content(api, name, &mut totals).await;
            }
        }
        Err(e) => totals.discovery_error = Some(e.to_string()),
    }
    let api = ctx.api("", "v1", "namespaces");
    let mut status_ns = ns.clone();
    let mut conditions = status_ns.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    if update_conditions(&mut conditions, &failing_conditions(&totals), &now()) {
        status_ns["status"]["conditions"] = json!(conditions);
        match api.replace_status(name, &status_ns).await {
            Ok(_) => {}
            Err(e) if e.code() == Some(404) => return Ok(Action::Done),
            Err(e) => return Err(e.into()),
        }
    }
    if !totals.errors.is_empty() {
        return Err(format!("namespace {name}: {}", totals.errors.join("; ")).into());
    }
    if let Some(e) = &totals.discovery_error {
        return Err(format!("namespace {name}: discovery failed: {e}").into());
    }
    if !totals.remaining.is_empty() {
        tracing::debug!(namespace = name, remaining = ?totals.remaining, "namespace content remains");
        return Ok(Action::RequeueAfter(Duration::from_secs(totals.estimate / 2 + 1)));
    }
    // Everything is gone: drop our finalizer through the finalize subresource.
    let mut fin = match api.get(name).await {
        Ok(n) => n,
        Err(e) if e.code() == Some(404) => return Ok(Action::Done),
        Err(e) => return Err(e.into()),
    };
    let kept: Vec<Value> = finalizers.into_iter().filter(|f| f != FINALIZER).collect();
    fin["spec"]["finalizers"] = json!(kept);
    let body = bytes::Bytes::from(serde_json::to_vec(&fin)?);
    let path = format!("/api/v1/namespaces/{name}/finalize");
    match ctx.client.request(http::Method::PUT, &path, Some((body, "application/json"))).await {
        Ok(_) => Ok(Action::Done),
        Err(e) if e.code() == Some(404) => Ok(Action::Done),
        Err(e) => Err(e.into()),
    }
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let namespaces = ctx.informer("", "v1", "namespaces");
    let c = ctx.clone();
    let workers = ctx.options.concurrent_namespace_syncs;
    Controller::new(runtime::controller::Config { workers, ..Default::default() })
        .watches(&namespaces, |n| match n {
            runtime::Notification::Deleted(_) => vec![],
            _ if n.object().pointer("/metadata/deletionTimestamp").is_some() => vec![n.key()],
            _ => vec![],
        })
        .run(
            move |name: String| {
                let (c, namespaces) = (c.clone(), namespaces.clone());
                async move {
                    let Some(ns) = namespaces.store().get("", &name) else { return Ok::<_, BoxError>(Action::Done) };
                    sync(&c, &name, &ns).await
                }
            },
            stopped(stop),
        )
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_namespaced_resource_once_with_events() {
        let rs = namespaced_resources();
        assert!(rs.iter().any(|r| r.plural == "pods"));
        assert_eq!(rs.iter().filter(|r| r.plural == "events").count(), 1);
        assert!(!rs.iter().any(|r| r.plural == "bindings" || !r.namespaced));
    }

    #[test]
    fn conditions_as_upstream() {
        let mut conds = Vec::new();
        let mut t = Totals::default();
        t.remaining.insert("pods.".into(), 2);
        t.finalizers.insert("example.com/x".into(), 1);
        assert!(update_conditions(&mut conds, &failing_conditions(&t), "t1"));
        assert_eq!(conds.len(), 5);
        let get = |conds: &[Value], ty: &str| conds.iter().find(|c| c["type"] == ty).cloned().unwrap();
        let remaining = get(&conds, "NamespaceContentRemaining");
        assert_eq!(remaining["status"], "True");
        assert_eq!(remaining["reason"], "SomeResourcesRemain");
        assert_eq!(remaining["message"], "Some resources are remaining: pods. has 2 resource instances");
        let fin = get(&conds, "NamespaceFinalizersRemaining");
        assert_eq!(fin["message"], "Some finalizers are remaining: example.com/x in 1 resource instances");
        assert_eq!(get(&conds, "NamespaceDeletionContentFailure")["reason"], "ContentDeleted");
        // Unchanged totals change nothing; a fixed failure flips to the ok form with a new transition time.
        assert!(!update_conditions(&mut conds, &failing_conditions(&t), "t2"));
        assert!(update_conditions(&mut conds, &failing_conditions(&Totals::default()), "t3"));
        let remaining = get(&conds, "NamespaceContentRemaining");
        assert_eq!(
            (remaining["status"].as_str(), remaining["reason"].as_str()),
            (Some("False"), Some("ContentRemoved"))
        );
        assert_eq!(remaining["lastTransitionTime"], "t3");
        assert_eq!(get(&conds, "NamespaceDeletionDiscoveryFailure")["lastTransitionTime"], "t1");
    }
}
