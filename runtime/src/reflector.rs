//! The reflector's store: the in-memory copy of one resource that a watcher feeds, keyed by `namespace/name`.
//!
//! One [`Writer`] applies watcher events; any number of cheap [`Store`] clones read. A relist builds the new map
//! (and indexes) aside and swaps it in whole, so a reader never sees half of one. Optional indexers (client-go's
//! `Indexers`) map an object to index values, e.g. pods by `spec.nodeName`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde_json::Value;
use tokio::sync::watch;

use crate::watcher::Event;

/// Maps an object to the values it is indexed under.
pub type IndexFn = Arc<dyn Fn(&Value) -> Vec<String> + Send + Sync>;

/// One index: value -> keys.
type Index = HashMap<String, HashSet<String>>;

#[derive(Default)]
struct Inner {
    objects: HashMap<String, Arc<Value>>,
    indexers: HashMap<String, IndexFn>,
    indices: HashMap<String, Index>,
}

fn index_add(index: &mut Index, f: &IndexFn, key: &str, obj: &Value) {
    for v in f(obj) {
        index.entry(v).or_default().insert(key.to_string());
    }
}

fn index_remove(index: &mut Index, f: &IndexFn, key: &str, obj: &Value) {
    for v in f(obj) {
        if let Some(keys) = index.get_mut(&v) {
            keys.remove(key);
            if keys.is_empty() {
                index.remove(&v);
            }
        }
    }
}

impl Inner {
    fn build_indices(
        indexers: &HashMap<String, IndexFn>,
        objects: &HashMap<String, Arc<Value>>,
    ) -> HashMap<String, Index> {
        let mut indices = HashMap::new();
        for (name, f) in indexers {
            let mut index = Index::new();
            for (key, obj) in objects {
                index_add(&mut index, f, key, obj);
            }
            indices.insert(name.clone(), index);
        }
        indices
    }

    fn put(&mut self, key: String, obj: Arc<Value>) -> Option<Arc<Value>> {
        let old = self.objects.insert(key.clone(), obj.clone());
        for (name, f) in &self.indexers {
            let index = self.indices.entry(name.clone()).or_default();
            if let Some(old) = &old {
                index_remove(index, f, &key, old);
            }
            index_add(index, f, &key, &obj);
        }
        old
    }

    fn remove(&mut self, key: &str) -> Option<Arc<Value>> {
        let old = self.objects.remove(key)?;
        for (name, f) in &self.indexers {
            if let Some(index) = self.indices.get_mut(name) {
                index_remove(index, f, key, &old);
            }
        }
        Some(old)
    }
}

/// A read handle on the cache. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<RwLock<Inner>>,
    synced: watch::Receiver<bool>,
}

/// What applying an event changed (client-go's informer notifications).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Added(Arc<Value>),
    Updated { old: Arc<Value>, new: Arc<Value> },
    Deleted(Arc<Value>),
}

/// The single writer of a [`Store`].
pub struct Writer {
    store: Store,
    synced: watch::Sender<bool>,
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer {
    pub fn new() -> Self {
        let (synced, rx) = watch::channel(false);
        Writer { store: Store { inner: Arc::default(), synced: rx }, synced }
    }

    /// A reader of this writer's store.
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// Applies one watcher event and returns what changed. A relist reports every object in it as added or
    /// updated and every object missing from it as deleted.
    pub fn apply(&mut self, event: Event) -> Vec<Change> {
        match event {
            Event::Restarted(objs) => {
                let mut objects = HashMap::with_capacity(objs.len());
                for obj in objs {
                    objects.insert(crate::object_key(&obj), Arc::new(obj));
                }
                // The writer is the only one changing objects, so the old map is stable while we compare.
                let (changes, indexers) = {
                    let inner = self.store.read();
                    let mut changes = Vec::with_capacity(objects.len());
                    for (key, new) in &objects {
                        changes.push(match inner.objects.get(key) {
                            Some(old) => Change::Updated { old: old.clone(), new: new.clone() },
                            None => Change::Added(new.clone()),
                        });
                    }
                    for (key, old) in &inner.objects {
                        if !objects.contains_key(key) {
                            changes.push(Change::Deleted(old.clone()));
                        }
                    }
                    (changes, inner.indexers.clone())
                };
                let mut indices = Inner::build_indices(&indexers, &objects);
                {
                    let mut inner = self.store.write();
                    // An indexer added or replaced meanwhile is rebuilt below.
                    indices.retain(|name, _| match (inner.indexers.get(name), indexers.get(name)) {
                        (Some(now), Some(used)) => Arc::ptr_eq(now, used),
                        _ => false,
                    });
                    inner.objects = objects;
                    inner.indices = indices;
                }
                self.store.rebuild_missing_indices();
                self.synced.send_replace(true);
                changes
            }
            Event::Applied(obj) => {
                let obj = Arc::new(obj);
                match self.store.write().put(crate::object_key(&obj), obj.clone()) {
                    Some(old) => vec![Change::Updated { old, new: obj }],
                    None => vec![Change::Added(obj)],
                }
            }
            Event::Deleted(obj) => {
                self.store.write().remove(&crate::object_key(&obj));
                vec![Change::Deleted(Arc::new(obj))]
            }
        }
    }
}

impl Store {
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // Nothing panics while holding the lock; a poisoned lock still holds consistent data.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn rebuild_missing_indices(&self) {
        let mut inner = self.write();
        let missing: Vec<(String, IndexFn)> = inner
            .indexers
            .iter()
            .filter(|(n, _)| !inner.indices.contains_key(*n))
            .map(|(n, f)| (n.clone(), f.clone()))
            .collect();
        for (name, f) in missing {
            let mut index = Index::new();
            for (key, obj) in &inner.objects {
                index_add(&mut index, &f, key, obj);
            }
            inner.indices.insert(name, index);
        }
    }

    /// Adds (or replaces) a named index over the objects; it is kept up to date from then on.
    pub fn add_indexer(&self, name: &str, f: impl Fn(&Value) -> Vec<String> + Send + Sync + 'static) {
        let mut inner = self.write();
        inner.indexers.insert(name.to_string(), Arc::new(f));
        inner.indices.remove(name);
        drop(inner);
        self.rebuild_missing_indices();
    }

    /// The object `namespace/name` ("" namespace for cluster-scoped objects).
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.get_by_key(&crate::key(namespace, name))
    }

    /// The object with a cache key (`namespace/name` or `name`).
    pub fn get_by_key(&self, key: &str) -> Option<Arc<Value>> {
        self.read().objects.get(key).cloned()
    }

    /// Every object (in no particular order).
    pub fn list(&self) -> Vec<Arc<Value>> {
        self.read().objects.values().cloned().collect()
    }

    /// The objects `f` accepts.
    pub fn list_by(&self, f: impl Fn(&Value) -> bool) -> Vec<Arc<Value>> {
        self.read().objects.values().filter(|o| f(o)).cloned().collect()
    }

    /// Every cache key.
    pub fn keys(&self) -> Vec<String> {
        self.read().objects.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().objects.is_empty()
    }

    /// The objects an index holds under `value` (empty for an unknown index).
    pub fn by_index(&self, index: &str, value: &str) -> Vec<Arc<Value>> {
        let inner = self.read();
        let Some(keys) = inner.indices.get(index).and_then(|i| i.get(value)) else {
            return Vec::new();
        };
        keys.iter().filter_map(|k| inner.objects.get(k).cloned()).collect()
    }

    /// Whether the first full list has been applied.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits for the first full list. False if the writer went away before it.
    pub async fn wait_synced(&self) -> bool {
        let mut rx = self.synced.clone();
        rx.wait_for(|s| *s).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, rv: &str) -> Value {
        json!({"metadata": {"namespace": "ns", "name": name, "resourceVersion": rv}, "spec": {"nodeName": node}})
    }

    fn by_node(o: &Value) -> Vec<String> {
        o.pointer("/spec/nodeName").and_then(Value::as_str).map(|n| vec![n.to_string()]).unwrap_or_default()
    }

    #[test]
    fn applies_events_and_reports_changes() {
        let mut w = Writer::new();
        let store = w.store();
        assert!(!store.is_synced());
        let changes = w.apply(Event::Restarted(vec![pod("a", "n1", "1"), pod("b", "n2", "2")]));
        assert_eq!(changes.len(), 2);
        assert!(changes.iter().all(|c| matches!(c, Change::Added(_))));
        assert!(store.is_synced());
        assert_eq!(store.len(), 2);
        assert_eq!(store.get("ns", "a").unwrap()["metadata"]["resourceVersion"], "1");

        let changes = w.apply(Event::Applied(pod("a", "n1", "3")));
        assert!(matches!(&changes[..], [Change::Updated { old, new }]
            if old["metadata"]["resourceVersion"] == "1" && new["metadata"]["resourceVersion"] == "3"));
        let changes = w.apply(Event::Deleted(pod("b", "n2", "4")));
        assert!(matches!(&changes[..], [Change::Deleted(o)] if o["metadata"]["name"] == "b"));
        assert!(store.get("ns", "b").is_none());

        // A relist: a updated, b back, c gone... and anything missing deleted.
        w.apply(Event::Applied(pod("c", "n1", "5")));
        let changes = w.apply(Event::Restarted(vec![pod("a", "n1", "6"), pod("d", "n1", "7")]));
        let mut kinds: Vec<String> = changes
            .iter()
            .map(|c| match c {
                Change::Added(o) => format!("added {}", o["metadata"]["name"].as_str().unwrap()),
                Change::Updated { new, .. } => format!("updated {}", new["metadata"]["name"].as_str().unwrap()),
                Change::Deleted(o) => format!("deleted {}", o["metadata"]["name"].as_str().unwrap()),
            })
            .collect();
        kinds.sort();
        assert_eq!(kinds, ["added d", "deleted c", "updated a"]);
        let mut keys = store.keys();
        keys.sort();
        assert_eq!(keys, ["ns/a", "ns/d"]);
        assert_eq!(store.list_by(|o| o["metadata"]["name"] == "d").len(), 1);
    }

    #[test]
    fn indexes_follow_changes_and_relists() {
        let mut w = Writer::new();
        let store = w.store();
        w.apply(Event::Restarted(vec![pod("a", "n1", "1"), pod("b", "n2", "2")]));
        store.add_indexer("node", by_node);
        assert_eq!(store.by_index("node", "n1").len(), 1);
        w.apply(Event::Applied(pod("b", "n1", "3")));
        assert_eq!(store.by_index("node", "n1").len(), 2);
        assert!(store.by_index("node", "n2").is_empty());
        w.apply(Event::Deleted(pod("a", "n1", "4")));
        assert_eq!(store.by_index("node", "n1").len(), 1);
        w.apply(Event::Restarted(vec![pod("x", "n3", "5")]));
        assert!(store.by_index("node", "n1").is_empty());
        assert_eq!(store.by_index("node", "n3")[0]["metadata"]["name"], "x");
        assert!(store.by_index("nosuch", "n3").is_empty());
    }

    #[test]
    fn readers_never_see_half_a_relist() {
        let mut w = Writer::new();
        let store = w.store();
        let big = |round: usize| (0..2000).map(|i| pod(&format!("p{i}"), "n", &round.to_string())).collect::<Vec<_>>();
        w.apply(Event::Restarted(big(0)));
        let reader = std::thread::spawn(move || {
            for _ in 0..200 {
                let all = store.list();
                assert_eq!(all.len(), 2000);
                let first = all[0]["metadata"]["resourceVersion"].clone();
                assert!(all.iter().all(|o| o["metadata"]["resourceVersion"] == first), "mixed generations");
            }
        });
        for generation in 1..20 {
            w.apply(Event::Restarted(big(generation)));
        }
        reader.join().unwrap();
    }

    #[tokio::test]
    async fn wait_synced_wakes_on_first_list() {
        let mut w = Writer::new();
        let store = w.store();
        let waiter = tokio::spawn({
            let store = store.clone();
            async move { store.wait_synced().await }
        });
        w.apply(Event::Restarted(vec![]));
        assert!(tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap());
        let w2 = Writer::new();
        let s2 = w2.store();
        drop(w2);
        assert!(!s2.wait_synced().await);
    }
}
