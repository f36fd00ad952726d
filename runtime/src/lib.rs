//! The controller runtime every component is built on (kube-rs's kube-runtime and client-go's tools/cache,
//! util/workqueue, tools/leaderelection and tools/record are the models):
//!
//! - [`watcher`]: list then watch one resource forever, relisting on 410 Expired and backing off on errors;
//! - [`reflector`]: the [`Store`] a watcher feeds, with cheap readers and optional indexes;
//! - [`informer`]: one shared watch per resource and selector per process, fanned out to subscribers;
//! - [`workqueue`]: the deduplicating, per-key exclusive, rate-limited queue of keys;
//! - [`controller`]: informers, a queue and N workers around a level-triggered reconcile function;
//! - [`leader_election`]: leader election on a `coordination.k8s.io/v1` Lease;
//! - [`events`]: a recorder of core/v1 Events with upstream's de-duplication;
//! - [`daemon`]: logging, signals and the health/metrics port every daemon serves;
//! - [`allocator`]: a tokio runtime whose idle worker threads return freed memory to the system;
//! - [`delegating_auth`]: who may use that port (client certificates, front proxies, TokenReview,
//!   SubjectAccessReview), as upstream's delegated authentication and authorization.
//!
//! Objects are `serde_json::Value`s as the [`client`] returns them.

pub mod allocator;
pub mod backoff;
pub mod controller;
pub mod daemon;
pub mod delegating_auth;
pub mod events;
pub mod informer;
pub mod leader_election;
pub mod reflector;
pub mod transform;
pub mod watcher;
pub mod workqueue;

pub use controller::{Action, Controller};
pub use informer::{Informer, InformerParams, Notification, SharedInformerFactory};
pub use reflector::Store;
pub use watcher::Watcher;
pub use workqueue::WorkQueue;

use serde_json::Value;

/// `metadata.name` of an object ("" when absent).
pub fn name(obj: &Value) -> &str {
    obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
}

/// `metadata.namespace` of an object ("" for cluster-scoped objects).
pub fn namespace(obj: &Value) -> &str {
    obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default()
}

/// `metadata.resourceVersion` of an object ("" when absent).
pub fn resource_version(obj: &Value) -> &str {
    obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default()
}

/// The array at a JSON pointer in an object (empty when absent or not an array).
pub fn array<'a>(obj: &'a Value, pointer: &str) -> &'a [Value] {
    obj.pointer(pointer).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// `metadata.uid` of an object ("" when absent).
pub fn uid(obj: &Value) -> &str {
    obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default()
}

/// The cache key of a namespace and name, as client-go's `MetaNamespaceKeyFunc`: `namespace/name`, or `name` for
/// cluster-scoped objects (empty namespace).
pub fn key(namespace: &str, name: &str) -> String {
    if namespace.is_empty() { name.to_string() } else { format!("{namespace}/{name}") }
}

/// The cache key of an object (see [`key`]).
pub fn object_key(obj: &Value) -> String {
    key(namespace(obj), name(obj))
}

/// Splits a cache key into (namespace, name); the namespace is "" for cluster-scoped keys.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys() {
        let pod = json!({"metadata": {"namespace": "ns", "name": "p", "resourceVersion": "7", "uid": "u"}});
        assert_eq!(object_key(&pod), "ns/p");
        assert_eq!((resource_version(&pod), uid(&pod)), ("7", "u"));
        let node = json!({"metadata": {"name": "n1"}});
        assert_eq!(object_key(&node), "n1");
        assert_eq!(split_key("ns/p"), ("ns", "p"));
        assert_eq!(split_key("n1"), ("", "n1"));
        assert_eq!(name(&json!({})), "");
    }
}
