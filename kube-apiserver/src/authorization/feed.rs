//! Keeps the indexed authorizers (RBAC, Node) current: each resource they index is listed, then watched through the
//! watch cache, and every object is handed to the authorizer as it changes, as upstream's informers do.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use api_types::resources::find;
use serde_json::Value;

use crate::registry::{ListParams, Registry, WatchEvent};

/// An authorizer built from an in-memory index of API objects.
pub trait Indexed: Send + Sync {
    /// The (group, version, plural) resources it indexes.
    fn resources(&self) -> &'static [(&'static str, &'static str, &'static str)];
    /// Replaces everything known of `plural` (a relist).
    fn reset(&self, plural: &str, objs: Vec<Value>);
    /// One object added, changed or deleted.
    fn apply(&self, plural: &str, obj: &Value, deleted: bool);
}

impl Indexed for super::node::NodeAuthorizer {
    fn resources(&self) -> &'static [(&'static str, &'static str, &'static str)] {
        &[("", "v1", "pods"), ("", "v1", "persistentvolumes"), ("storage.k8s.io", "v1", "volumeattachments")]
    }
    /// The graph only grows from a relist (objects deleted during a watch gap stay until they change again).
    fn reset(&self, plural: &str, objs: Vec<Value>) {
        for o in &objs {
            self.apply(plural, o, false);
        }
    }
    fn apply(&self, plural: &str, obj: &Value, deleted: bool) {
        super::node::NodeAuthorizer::apply(self, plural, obj, deleted)
    }
}

impl Indexed for super::rbac::RbacAuthorizer {
    fn resources(&self) -> &'static [(&'static str, &'static str, &'static str)] {
        &[
            ("rbac.authorization.k8s.io", "v1", "roles"),
            ("rbac.authorization.k8s.io", "v1", "clusterroles"),
            ("rbac.authorization.k8s.io", "v1", "rolebindings"),
            ("rbac.authorization.k8s.io", "v1", "clusterrolebindings"),
        ]
    }
    fn reset(&self, plural: &str, objs: Vec<Value>) {
        super::rbac::RbacAuthorizer::reset(self, plural, objs)
    }
    fn apply(&self, plural: &str, obj: &Value, deleted: bool) {
        super::rbac::RbacAuthorizer::apply(self, plural, obj, deleted)
    }
}

/// Counts the resources whose first list has been indexed.
#[derive(Default)]
pub struct Synced {
    done: AtomicUsize,
    total: AtomicUsize,
}

impl Synced {
    pub fn all(&self) -> bool {
        self.done.load(Ordering::Acquire) >= self.total.load(Ordering::Acquire)
    }
}

/// Starts feeding `index` from `registry`; `synced` turns true once every resource was listed once.
pub fn spawn(registry: Registry, index: Arc<dyn Indexed>, synced: Arc<Synced>) {
    for &(group, version, plural) in index.resources() {
        let Some(res) = find(group, version, plural) else {
            tracing::error!(group, plural, "authorizer indexes an unknown resource");
            continue;
        };
        synced.total.fetch_add(1, Ordering::AcqRel);
        let (registry, index, synced) = (registry.clone(), index.clone(), synced.clone());
        tokio::spawn(async move {
            let mut first = true;
            loop {
                let page = match registry.list(res, None, &ListParams::default()).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(plural, error = %e, "authorizer list failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                let objs: Vec<Value> = page.items.iter().filter_map(|i| i.value().ok()).collect();
                index.reset(plural, objs);
                if std::mem::take(&mut first) {
                    synced.done.fetch_add(1, Ordering::AcqRel);
                }
                let p = ListParams { resource_version: Some(page.resource_version.to_string()), ..Default::default() };
                let mut rx = match registry.watch(res, None, p, false).await {
                    Ok(rx) => rx,
                    Err(e) => {
                        tracing::warn!(plural, error = %e, "authorizer watch failed; relisting");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                while let Some(ev) = rx.recv().await {
                    match ev {
                        WatchEvent::Added(o) | WatchEvent::Modified(o) => index.apply(plural, &o, false),
                        WatchEvent::Deleted(o) => index.apply(plural, &o, true),
                        WatchEvent::Bookmark(_) => {}
                        WatchEvent::Error(e) => {
                            tracing::info!(plural, error = %e, "authorizer watch ended; relisting");
                            break;
                        }
                    }
                }
            }
        });
    }
}
