//! Shared informers: one watch per resource (and namespace and selectors) per process, feeding one [`Store`] and
//! fanned out to every subscriber, as client-go's `SharedInformerFactory`.
//!
//! [`SharedInformerFactory::informer`] returns the same [`Informer`] for the same resource and parameters, so
//! every component of a process shares one list and one watch. An informer starts watching when it is first
//! asked for (inside a Tokio runtime) and stops when the factory is shut down or dropped. Subscribers get
//! [`Notification`]s on an unbounded channel (client-go's listeners are unbounded too): a late subscriber first
//! gets the current objects as `Added`, then the changes; subscribers may ask for a periodic resync of every
//! object.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use api_types::Resource;
use client::{Client, ListParams};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::reflector::{Change, Store, Writer};
use crate::watcher::{self, Watcher};

/// What an informer watches within its resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct InformerParams {
    /// One namespace (None: all; ignored for cluster-scoped resources).
    pub namespace: Option<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
}

impl InformerParams {
    /// Everything of the resource.
    pub fn all() -> Self {
        Self::default()
    }

    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.to_string());
        self
    }

    pub fn labels(mut self, selector: &str) -> Self {
        self.label_selector = Some(selector.to_string());
        self
    }

    pub fn fields(mut self, selector: &str) -> Self {
        self.field_selector = Some(selector.to_string());
        self
    }
}

/// A change as subscribers see it.
#[derive(Debug, Clone, PartialEq)]
pub enum Notification {
    Added(Arc<Value>),
    Updated {
        old: Arc<Value>,
        new: Arc<Value>,
    },
    /// The last state of a deleted object.
    Deleted(Arc<Value>),
    /// A periodic resync of an unchanged object (client-go's `OnUpdate(obj, obj)` on resync).
    Resync(Arc<Value>),
}

impl Notification {
    /// The object now (the last state for a deletion).
    pub fn object(&self) -> &Arc<Value> {
        match self {
            Notification::Added(o) | Notification::Deleted(o) | Notification::Resync(o) => o,
            Notification::Updated { new, .. } => new,
        }
    }

    /// The object before an update.
    pub fn old(&self) -> Option<&Arc<Value>> {
        match self {
            Notification::Updated { old, .. } => Some(old),
            _ => None,
        }
    }

    /// The cache key (`namespace/name`) of the object.
    pub fn key(&self) -> String {
        crate::object_key(self.object())
    }
}

impl From<Change> for Notification {
    fn from(c: Change) -> Self {
        match c {
            Change::Added(o) => Notification::Added(o),
            Change::Updated { old, new } => Notification::Updated { old, new },
            Change::Deleted(o) => Notification::Deleted(o),
        }
    }
}

struct Subscriber {
    tx: mpsc::UnboundedSender<Notification>,
    resync: Option<(Duration, Instant)>,
}

struct Shared {
    res: &'static Resource,
    params: InformerParams,
    store: Store,
    /// Held while the informer applies an event and notifies, so a new subscriber's snapshot is consistent.
    subscribers: Mutex<Vec<Subscriber>>,
    /// The last resourceVersion the watch saw.
    resource_version: Mutex<Option<String>>,
    /// Wakes the informer task when a subscriber with a resync period arrives.
    resync_changed: tokio::sync::Notify,
    task: Mutex<Option<AbortHandle>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A shared informer: a store and subscriptions to its changes. Cheap to clone.
#[derive(Clone)]
pub struct Informer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Informer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informer")
            .field("resource", &self.shared.res.qualified())
            .field("params", &self.shared.params)
            .finish()
    }
}

impl Informer {
    /// The shared cache of the watched objects.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    pub fn resource(&self) -> &'static Resource {
        self.shared.res
    }

    pub fn params(&self) -> &InformerParams {
        &self.shared.params
    }

    /// Change notifications from now on; if the store is already filled, its objects come first as `Added`.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Notification> {
        self.subscribe_inner(None)
    }

    /// As [`Informer::subscribe`], plus every object as [`Notification::Resync`] every `period` (after the sync).
    pub fn subscribe_with_resync(&self, period: Duration) -> mpsc::UnboundedReceiver<Notification> {
        self.subscribe_inner(Some(period).filter(|p| !p.is_zero()))
    }

    fn subscribe_inner(&self, resync: Option<Duration>) -> mpsc::UnboundedReceiver<Notification> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut subs = lock(&self.shared.subscribers);
        for obj in self.shared.store.list() {
            let _ = tx.send(Notification::Added(obj));
        }
        // A stopped informer sends nothing more: the channel closes after the snapshot.
        if lock(&self.shared.task).is_some() {
            subs.push(Subscriber { tx, resync: resync.map(|p| (p, Instant::now() + p)) });
        }
        drop(subs);
        if resync.is_some() {
            self.shared.resync_changed.notify_one();
        }
        rx
    }

    pub fn has_synced(&self) -> bool {
        self.shared.store.is_synced()
    }

    /// Waits for the first full list. False if the informer stopped before it.
    pub async fn wait_synced(&self) -> bool {
        self.shared.store.wait_synced().await
    }

    /// The last resourceVersion the informer's watch saw.
    pub fn last_resource_version(&self) -> Option<String> {
        lock(&self.shared.resource_version).clone()
    }

    /// Stops the watch (the store keeps its last contents; subscribers' channels close).
    fn stop(&self) {
        if let Some(task) = lock(&self.shared.task).take() {
            task.abort();
        }
        lock(&self.shared.subscribers).clear();
    }

    fn start(shared: Arc<Shared>, watcher: Watcher, writer: Writer) {
        let task = tokio::spawn(run(shared.clone(), watcher, writer));
        *lock(&shared.task) = Some(task.abort_handle());
    }
}

/// Sends `n` to every subscriber, dropping those that went away.
fn dispatch(subs: &mut Vec<Subscriber>, n: Notification) {
    subs.retain(|s| s.tx.send(n.clone()).is_ok());
}

async fn run(shared: Arc<Shared>, watcher: Watcher, mut writer: Writer) {
    // Polled through a stream so that a resync tick does not interrupt a list in progress.
    let mut events = std::pin::pin!(watcher.into_stream());
    loop {
        let next_resync = if shared.store.is_synced() {
            lock(&shared.subscribers).iter().filter_map(|s| s.resync.map(|(_, at)| at)).min()
        } else {
            None
        };
        tokio::select! {
            next = events.next() => {
                let Some((ev, rv)) = next else { return };
                let mut subs = lock(&shared.subscribers);
                for change in writer.apply(ev) {
                    dispatch(&mut subs, change.into());
                }
                drop(subs);
                *lock(&shared.resource_version) = rv;
            }
            _ = tokio::time::sleep_until(next_resync.unwrap_or_else(Instant::now)), if next_resync.is_some() => {
                let now = Instant::now();
                let mut subs = lock(&shared.subscribers);
                let objects = shared.store.list();
                subs.retain_mut(|s| {
                    let Some((period, at)) = s.resync else { return true };
                    if at > now {
                        return true;
                    }
                    s.resync = Some((period, now + period));
                    objects.iter().all(|o| s.tx.send(Notification::Resync(o.clone())).is_ok())
                });
            }
            _ = shared.resync_changed.notified() => {}
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct InformerKey {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    params: InformerParams,
}

pub use watcher::Transform;

/// Drops `metadata.managedFields` (client-go's `cache.TransformStripManagedFields`): most of a small object's
/// bytes, and nothing a controller that only reads needs.
pub fn strip_managed_fields(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
}

struct FactoryInner {
    client: Client,
    config: watcher::Config,
    informers: Mutex<HashMap<InformerKey, Informer>>,
}

impl Drop for FactoryInner {
    fn drop(&mut self) {
        for informer in lock(&self.informers).values() {
            informer.stop();
        }
    }
}

/// Hands out shared informers. Cheap to clone; the informers stop when the last clone is dropped or on
/// [`SharedInformerFactory::shutdown`].
#[derive(Clone)]
pub struct SharedInformerFactory {
    inner: Arc<FactoryInner>,
}

impl SharedInformerFactory {
    pub fn new(client: Client) -> Self {
        Self::with_config(client, watcher::Config::default())
    }

    /// With the watchers' settings (page size, watch timeout, backoff).
    pub fn with_config(client: Client, config: watcher::Config) -> Self {
        SharedInformerFactory { inner: Arc::new(FactoryInner { client, config, informers: Mutex::default() }) }
    }

    /// Every informer of this factory applies `transform` to its objects before storing them (client-go's
    /// `informers.WithTransform`), e.g. [`strip_managed_fields`]. Set before the first informer is handed out.
    pub fn with_transform(client: Client, config: watcher::Config, transform: Transform) -> Self {
        Self::with_config(client, watcher::Config { transform: Some(transform), ..config })
    }

    /// The informer of `res` (from [`api_types::resources`]) with `params`, started on first use. Must be
    /// called inside a Tokio runtime.
    pub fn informer(&self, res: &'static Resource, params: InformerParams) -> Result<Informer, client::Error> {
        let mut params = params;
        if !res.namespaced {
            params.namespace = None;
        }
        let key = InformerKey { group: res.group, version: res.version, plural: res.plural, params: params.clone() };
        let mut informers = lock(&self.inner.informers);
        if let Some(i) = informers.get(&key) {
            return Ok(i.clone());
        }
        let mut api = if res.custom {
            self.inner.client.api_for(res)
        } else {
            self.inner.client.api(res.group, res.version, res.plural)?
        };
        if let Some(ns) = &params.namespace {
            api = api.namespaced(ns);
        }
        let lp = ListParams {
            label_selector: params.label_selector.clone(),
            field_selector: params.field_selector.clone(),
            ..Default::default()
        };
        let watcher = Watcher::new(api, &lp, self.inner.config.clone());
        let writer = Writer::new();
        let shared = Arc::new(Shared {
            res,
            params,
            store: writer.store(),
            subscribers: Mutex::default(),
            resource_version: Mutex::default(),
            resync_changed: tokio::sync::Notify::new(),
            task: Mutex::default(),
        });
        Informer::start(shared.clone(), watcher, writer);
        let informer = Informer { shared };
        informers.insert(key, informer.clone());
        Ok(informer)
    }

    /// The informer of a resource named by group, version and plural (`"", "v1", "pods"`).
    pub fn informer_for(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        params: InformerParams,
    ) -> Result<Informer, client::Error> {
        let res = api_types::resources::find(group, version, plural)
            .ok_or_else(|| client::Error::UnknownResource(format!("{plural}.{group}/{version}")))?;
        self.informer(res, params)
    }

    /// Every informer handed out so far.
    pub fn informers(&self) -> Vec<Informer> {
        lock(&self.inner.informers).values().cloned().collect()
    }

    /// Waits until every informer handed out so far has synced; false if one stopped first.
    pub async fn wait_for_cache_sync(&self) -> bool {
        for i in self.informers() {
            if !i.wait_synced().await {
                return false;
            }
        }
        true
    }

    /// Stops every informer (their stores keep their last contents).
    pub fn shutdown(&self) {
        for informer in lock(&self.inner.informers).drain().map(|(_, i)| i) {
            informer.stop();
        }
    }
}
