//! The watch cache (upstream's cacher): per resource, one storage watch feeds an in-memory copy of every object
//! and a ring of recent events, each decoded once. API watches and `resourceVersion=0` lists are served from it;
//! pods are indexed by `spec.nodeName`, so a kubelet's list and watch touch only its own pods. A watch from a
//! revision older than the ring is 410 Gone, and clients relist.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use api_types::{ApiError, Resource};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::registry::{ListParams, WatchEvent, decode, matches, prefix, set_rv, storage_error};
use crate::storage::{Backend, Event, ListOptions, Revision, Storage};

/// Events kept per resource for watchers resuming from a recent resourceVersion.
pub const RING_CAPACITY: usize = 4096;

/// One change, decoded once and shared by every watcher.
#[derive(Debug)]
struct CacheEvent {
    rev: Revision,
    key: String,
    /// The object after the change (None: deleted).
    obj: Option<Arc<Value>>,
    /// The object before (None: created).
    prev: Option<Arc<Value>>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Arc<Value>>,
    /// Pods by spec.nodeName (pods only).
    by_node: HashMap<String, BTreeSet<String>>,
    ring: VecDeque<Arc<CacheEvent>>,
    /// Every event after this revision is in the ring.
    floor: Revision,
    /// The cache reflects storage up to here.
    rev: Revision,
}

fn node_of(obj: &Value) -> Option<&str> {
    obj.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty())
}

impl State {
    fn index(&mut self, key: &str, old: Option<&Value>, new: Option<&Value>, pods: bool) {
        if !pods {
            return;
        }
        if let Some(n) = old.and_then(node_of)
            && let Some(set) = self.by_node.get_mut(n)
        {
            set.remove(key);
            if set.is_empty() {
                self.by_node.remove(n);
            }
        }
        if let Some(n) = new.and_then(node_of) {
            self.by_node.entry(n.to_string()).or_default().insert(key.to_string());
        }
    }
}

/// The cache of one resource.
pub struct ResourceCache {
    res: &'static Resource,
    state: RwLock<State>,
    /// (revision, generation): the generation changes when the cache restarts, ending every watcher.
    notify: watch::Sender<(Revision, u64)>,
}

fn poisoned() -> ApiError {
    ApiError::internal("watch cache lock poisoned")
}

impl ResourceCache {
    fn pods(&self) -> bool {
        self.res.group.is_empty() && self.res.plural == "pods"
    }

    /// Loads every object and starts following storage; restarts from a fresh list if the watch fails.
    async fn start(res: &'static Resource, store: Arc<Backend>) -> Result<Arc<Self>, ApiError> {
        let cache =
            Arc::new(ResourceCache { res, state: RwLock::new(State::default()), notify: watch::Sender::new((0, 0)) });
        let rev = cache.load(&store).await?;
        let weak = Arc::downgrade(&cache);
        tokio::spawn(async move {
            let mut from = rev;
            loop {
                let Some(cache) = weak.upgrade() else { return };
                let pfx = prefix(cache.res, None);
                match store.watch(&pfx, from).await {
                    Ok(mut stream) => {
                        drop(cache);
                        while let Some(item) = stream.next().await {
                            let Some(cache) = weak.upgrade() else { return };
                            match item {
                                Ok(ev) => cache.apply(ev),
                                Err(e) => {
                                    tracing::warn!(resource = %pfx, error = %e, "watch cache lost its storage watch");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(resource = %pfx, error = %e, "watch cache could not watch storage")
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                let Some(cache) = weak.upgrade() else { return };
                match cache.load(&store).await {
                    Ok(r) => from = r,
                    Err(e) => tracing::warn!(error = %e, "watch cache relist failed"),
                }
            }
        });
        Ok(cache)
    }

    /// (Re)lists everything; bumps the generation so current watchers end and re-watch.
    async fn load(&self, store: &Backend) -> Result<Revision, ApiError> {
        let page = store
            .list(&prefix(self.res, None), ListOptions::default())
            .await
            .map_err(|e| storage_error(self.res, "", e))?;
        let mut st = State { floor: page.revision, rev: page.revision, ..Default::default() };
        for kv in &page.items {
            let obj = decode(kv)?;
            st.index(&kv.key, None, Some(&obj), self.pods());
            st.objects.insert(kv.key.clone(), Arc::new(obj));
        }
        *self.state.write().map_err(|_| poisoned())? = st;
        self.notify.send_modify(|(r, generation)| {
            *r = page.revision;
            *generation += 1;
        });
        Ok(page.revision)
    }

    fn apply(&self, ev: Event) {
        let pods = self.pods();
        let Ok(mut st) = self.state.write() else {
            return;
        };
        let event = match ev {
            Event::Progress { revision } => {
                st.rev = st.rev.max(revision);
                drop(st);
                self.notify.send_modify(|(r, _)| *r = (*r).max(revision));
                return;
            }
            Event::Put { kv, .. } => {
                let Ok(obj) = decode(&kv) else { return };
                let obj = Arc::new(obj);
                let prev = st.objects.insert(kv.key.clone(), obj.clone());
                st.index(&kv.key, prev.as_deref(), Some(&obj), pods);
                CacheEvent { rev: kv.mod_revision, key: kv.key, obj: Some(obj), prev }
            }
            Event::Delete { key, revision, .. } => {
                let Some(prev) = st.objects.remove(&key) else {
                    st.rev = st.rev.max(revision);
                    return;
                };
                st.index(&key, Some(&prev), None, pods);
                CacheEvent { rev: revision, key, obj: None, prev: Some(prev) }
            }
        };
        let rev = event.rev;
        st.rev = st.rev.max(rev);
        st.ring.push_back(Arc::new(event));
        while st.ring.len() > RING_CAPACITY {
            if let Some(old) = st.ring.pop_front() {
                st.floor = old.rev;
            }
        }
        drop(st);
        self.notify.send_modify(|(r, _)| *r = (*r).max(rev));
    }

    /// Events after this revision are all in the ring.
    pub fn floor(&self) -> Revision {
        self.state.read().map(|st| st.floor).unwrap_or(Revision::MAX)
    }

    /// The matching objects now (a `resourceVersion=0` list), with the cache's revision.
    pub fn list(&self, ns: Option<&str>, p: &ListParams) -> Result<(Vec<Value>, Revision), ApiError> {
        let st = self.state.read().map_err(|_| poisoned())?;
        let pfx = prefix(self.res, ns);
        let node = p.field_selector.as_ref().and_then(|f| f.exact_match("spec.nodeName")).filter(|_| self.pods());
        let mut out = Vec::new();
        let mut consider = |obj: &Arc<Value>| -> Result<(), ApiError> {
            if matches(self.res, obj, p)? {
                out.push((**obj).clone());
            }
            Ok(())
        };
        match node {
            Some(n) => {
                for key in st.by_node.get(n).into_iter().flatten().filter(|k| k.starts_with(&pfx)) {
                    if let Some(obj) = st.objects.get(key) {
                        consider(obj)?;
                    }
                }
            }
            None => {
                for (_, obj) in st.objects.range(pfx.clone()..).take_while(|(k, _)| k.starts_with(&pfx)) {
                    consider(obj)?;
                }
            }
        }
        Ok((out, st.rev))
    }

    /// A watch from `from` (None: the current objects as ADDED first).
    pub fn watch(
        self: &Arc<Self>,
        ns: Option<&str>,
        from: Option<Revision>,
        p: ListParams,
        bookmarks: bool,
    ) -> Result<mpsc::Receiver<WatchEvent>, ApiError> {
        let (tx, rx) = mpsc::channel(256);
        let (initial, start) = match from {
            None => {
                let (objs, rev) = self.list(ns, &p)?;
                (objs, rev)
            }
            Some(rev) => {
                let st = self.state.read().map_err(|_| poisoned())?;
                if rev < st.floor {
                    return Err(ApiError::gone(format!("too old resource version: {rev} ({})", st.floor)));
                }
                (Vec::new(), rev)
            }
        };
        let pfx = prefix(self.res, ns);
        let cache = self.clone();
        let mut notify = self.notify.subscribe();
        let generation = notify.borrow().1;
        tokio::spawn(async move {
            for obj in initial {
                if tx.send(WatchEvent::Added(obj)).await.is_err() {
                    return;
                }
            }
            let mut pos = start;
            let mut last_bookmark = tokio::time::Instant::now();
            loop {
                let (rev, g) = *notify.borrow_and_update();
                if g != generation {
                    return; // the cache restarted: the client re-watches from its last resourceVersion
                }
                let read: Result<Vec<Arc<CacheEvent>>, Revision> = match cache.state.read() {
                    Ok(st) if pos < st.floor => Err(st.floor),
                    Ok(st) => {
                        let idx = st.ring.partition_point(|e| e.rev <= pos);
                        Ok(st.ring.iter().skip(idx).take(512).cloned().collect())
                    }
                    Err(_) => return,
                };
                let batch = match read {
                    Ok(b) => b,
                    Err(floor) => {
                        let e = ApiError::gone(format!("too old resource version: {pos} ({floor})"));
                        let _ = tx.send(WatchEvent::Error(e)).await;
                        return;
                    }
                };
                let progressed = batch.is_empty() && rev > pos;
                for ev in &batch {
                    pos = ev.rev;
                    if !ev.key.starts_with(&pfx) {
                        continue;
                    }
                    if let Some(out) = translate(cache.res, &p, ev)
                        && tx.send(out).await.is_err()
                    {
                        return;
                    }
                }
                if !batch.is_empty() {
                    continue;
                }
                if progressed {
                    pos = rev;
                }
                if bookmarks && last_bookmark.elapsed() >= crate::storage::DEFAULT_PROGRESS_INTERVAL {
                    last_bookmark = tokio::time::Instant::now();
                    if tx.send(WatchEvent::Bookmark(pos)).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    changed = notify.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep_until(last_bookmark + crate::storage::DEFAULT_PROGRESS_INTERVAL), if bookmarks => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(rx)
    }
}

/// An event as one watcher sees it: objects entering or leaving its selection become ADDED or DELETED.
fn translate(res: &Resource, p: &ListParams, ev: &CacheEvent) -> Option<WatchEvent> {
    selection_change(res, p, ev.obj.as_deref(), ev.prev.as_deref(), ev.rev)
}

/// What a change from `prev` to `new` (None: deleted / created) at `rev` means to a watcher with selectors `p`.
pub fn selection_change(
    res: &Resource,
    p: &ListParams,
    new: Option<&Value>,
    prev: Option<&Value>,
    rev: Revision,
) -> Option<WatchEvent> {
    let sel = |o: &Value| matches(res, o, p).unwrap_or(false);
    let gone = |o: &Value| {
        let mut g = o.clone();
        set_rv(&mut g, rev);
        WatchEvent::Deleted(g)
    };
    match (new, prev) {
        (Some(new), None) => sel(new).then(|| WatchEvent::Added(new.clone())),
        (Some(new), Some(prev)) => match (sel(prev), sel(new)) {
            (true, true) => Some(WatchEvent::Modified(new.clone())),
            (false, true) => Some(WatchEvent::Added(new.clone())),
            (true, false) => Some(gone(prev)),
            (false, false) => None,
        },
        (None, Some(prev)) => sel(prev).then(|| gone(prev)),
        (None, None) => None,
    }
}

/// The caches of all resources, created on first use.
pub struct Cacher {
    store: Arc<Backend>,
    caches: Mutex<HashMap<&'static str, Arc<tokio::sync::OnceCell<Arc<ResourceCache>>>>>,
}

impl Cacher {
    pub fn new(store: Arc<Backend>) -> Self {
        Cacher { store, caches: Mutex::new(HashMap::new()) }
    }

    pub async fn cache(&self, res: &'static Resource) -> Result<Arc<ResourceCache>, ApiError> {
        let cell = {
            let mut caches = self.caches.lock().map_err(|_| poisoned())?;
            caches.entry(res.storage).or_default().clone()
        };
        let store = self.store.clone();
        cell.get_or_try_init(|| ResourceCache::start(res, store)).await.cloned()
    }
}
