//! Keeps the routing table current from APIService objects and their `Available` condition true to what the
//! backends answer (upstream's `APIServiceRegistrationController` and `AvailableConditionController`): a local
//! APIService is always available; a remote one is checked on every change and every 30 s (5 s while it fails):
//! Service, port, endpoints, then its discovery document; its status is written only when the condition changes.
//! An available backend's OpenAPI v3 document is downloaded with the check (again only when its hash changed).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use api_types::ApiError;
use api_types::resources::{Resource, find};
use serde_json::{Value, json};

use super::Route;
use crate::registry::{ListParams, WatchEvent, meta_str};
use crate::server::Apiserver;

/// How often remote APIServices are checked again without a change.
const RECHECK: Duration = Duration::from_secs(30);
/// How soon an unavailable one is checked again.
const RETRY: Duration = Duration::from_secs(5);

fn apiservices() -> &'static Resource {
    find("apiregistration.k8s.io", "v1", "apiservices").expect("APIService is in the table")
}

/// Starts the controller; it ends with the server.
pub fn spawn(server: &Arc<Apiserver>) {
    let weak = Arc::downgrade(server);
    let mut stop = server.stop_signal();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = run(&weak) => {
                    match r {
                        Ok(()) => return,
                        Err(e) => tracing::info!(error = %e, "APIService watch ended; relisting"),
                    }
                }
                _ = stop.changed() => return,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

/// Lists and watches APIServices; returns Ok when the server is gone.
async fn run(weak: &std::sync::Weak<Apiserver>) -> Result<(), ApiError> {
    let Some(server) = weak.upgrade() else { return Ok(()) };
    let page = server.registry.list(apiservices(), None, &ListParams::default()).await?;
    let mut objects: BTreeMap<String, Value> = BTreeMap::new();
    for item in &page.items {
        let o = item.value()?;
        objects.insert(meta_str(&o, "name").unwrap_or_default().to_string(), o);
    }
    let p = ListParams { resource_version: Some(page.resource_version.to_string()), ..Default::default() };
    let mut events = server.registry.watch(apiservices(), None, p, false).await?;
    drop(server);
    loop {
        if let Some(server) = weak.upgrade() {
            sync(&server, &objects).await;
        } else {
            return Ok(());
        }
        // A failing backend is retried sooner (upstream requeues it rate-limited).
        let failing = weak.upgrade().is_some_and(|s| s.aggregator.routes().values().any(|r| !r.available));
        let wait = if failing { RETRY } else { RECHECK };
        let ev = tokio::select! {
            ev = events.recv() => ev,
            _ = tokio::time::sleep(wait) => continue,
        };
        let Some(ev) = ev else { return Err(ApiError::unavailable("watch closed")) };
        let mut batch = vec![ev];
        while let Ok(more) = events.try_recv() {
            batch.push(more);
        }
        for ev in batch {
            match ev {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                    objects.insert(meta_str(&o, "name").unwrap_or_default().to_string(), (*o).clone());
                }
                WatchEvent::Deleted(o) => {
                    objects.remove(meta_str(&o, "name").unwrap_or_default());
                }
                WatchEvent::Bookmark(_) => {}
                WatchEvent::Error(e) => return Err(e),
            }
        }
    }
}

/// Rebuilds the routes, checks every remote backend and records the outcome in each status.
async fn sync(server: &Arc<Apiserver>, objects: &BTreeMap<String, Value>) {
    let previous = server.aggregator.routes();
    let mut routes: HashMap<(String, String), Route> = HashMap::new();
    for obj in objects.values() {
        let condition = match Route::from_apiservice(obj) {
            None => ("True", "Local", "Local APIServices are always available".to_string()),
            Some(mut route) => {
                let key = (route.group.clone(), route.version.clone());
                let outcome = super::proxy::check(server, &route).await;
                let cond = match &outcome {
                    Ok(_) => ("True", "Passed", "all checks passed".to_string()),
                    Err(e) => ("False", e.reason, e.message.clone()),
                };
                route.available = outcome.is_ok();
                let known = previous.get(&key).and_then(|r| r.openapi.as_ref());
                route.openapi = match outcome {
                    Ok(_) => super::proxy::openapi_v3(server, &route, known).await,
                    // The last document stays while the backend is down, as upstream keeps its last download.
                    Err(_) => known.cloned(),
                };
                route.resources = match outcome {
                    Ok(list) => Some(list),
                    // Keep the last known resources for a stale discovery entry.
                    Err(_) => previous.get(&key).and_then(|r| r.resources.clone()),
                };
                routes.insert(key, route);
                cond
            }
        };
        write_condition(server, obj, condition).await;
    }
    server.aggregator.set_routes(routes);
}

/// Writes the Available condition when it differs from the stored one.
async fn write_condition(server: &Apiserver, obj: &Value, (status, reason, message): (&str, &str, String)) {
    let current = obj["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "Available"));
    if current.is_some_and(|c| c["status"] == status && c["reason"] == reason && c["message"] == message.as_str()) {
        return;
    }
    let mut updated = obj.clone();
    let transition = match current {
        Some(c) if c["status"] == status => c["lastTransitionTime"].clone(),
        _ => json!(crate::strategy::now_rfc3339()),
    };
    let cond = json!({"type": "Available", "status": status, "lastTransitionTime": transition, "reason": reason, "message": message});
    let mut conditions: Vec<Value> = obj["status"]["conditions"]
        .as_array()
        .map(|cs| cs.iter().filter(|c| c["type"] != "Available").cloned().collect())
        .unwrap_or_default();
    conditions.push(cond);
    updated["status"] = json!({"conditions": conditions});
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    if let Err(e) = server.registry.update(apiservices(), None, &name, Some("status"), updated, false).await
        && e.code != 409
    {
        tracing::warn!(apiservice = name, error = %e, "could not update APIService status");
    }
}
