//! The watch cache (upstream's cacher): per resource, one storage watch feeds an in-memory copy of every object
//! and a ring of recent events, each decoded once. API watches and `resourceVersion=0` lists are served from it;
//! pods are indexed by `spec.nodeName`, so a kubelet's list and watch touch only its own pods: each node has a feed of
//! the events of its pods (upstream's watch-cache triggers), and a kubelet's watch wakes only for those, not for every
//! pod event of the cluster. A watch from a revision older than the ring is 410 Gone, and clients relist.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use api_types::{ApiError, Resource};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::registry::{ListParams, Shared, WatchEvent, matches, prefix, set_rv, storage_error};
use crate::storage::{Backend, Event, ListOptions, Revision, Storage};

/// Events kept per resource for watchers resuming from a recent resourceVersion.
pub const RING_CAPACITY: usize = 4096;

/// One change, decoded once and shared by every watcher.
#[derive(Debug)]
struct CacheEvent {
    rev: Revision,
    key: String,
    /// The object after the change (None: deleted).
    obj: Option<Shared>,
    /// The object before (None: created).
    prev: Option<Shared>,
    /// `prev` as a DELETED event shows it (its resourceVersion the deletion's), made once for all watchers.
    gone: OnceLock<Shared>,
}

/// The events of the pods on one node (the part of the ring a kubelet's watch reads) and its wake-up signal.
struct NodeFeed {
    events: VecDeque<Arc<CacheEvent>>,
    /// Every event of this node after this revision is in `events`. A kubelet's watch reads only its node's
    /// events, so it stays valid while the ring moves on with other nodes' pods.
    floor: Revision,
    notify: watch::Sender<(Revision, u64)>,
}

impl NodeFeed {
    /// A feed starting at the ring's floor: an older event of the node, if any, has left the ring.
    fn new(floor: Revision) -> Self {
        NodeFeed { events: VecDeque::new(), floor, notify: watch::Sender::new((0, 0)) }
    }
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Shared>,
    /// Pods by spec.nodeName (pods only).
    by_node: HashMap<String, BTreeSet<String>>,
    /// Per node, the ring's events of pods on that node before or after the change (pods only).
    node_feeds: HashMap<String, NodeFeed>,
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

    /// The nodes an event concerns: where the pod was and where it is.
    fn event_nodes(ev: &CacheEvent) -> impl Iterator<Item = &str> {
        let was = ev.prev.as_deref().and_then(node_of);
        let is = ev.obj.as_deref().and_then(node_of).filter(|n| Some(*n) != was);
        was.into_iter().chain(is)
    }

    /// Appends a new event to the ring (and to its nodes' feeds), dropping the oldest beyond the capacity.
    fn push(&mut self, event: Arc<CacheEvent>, pods: bool) {
        if pods {
            for n in Self::event_nodes(&event) {
                let floor = self.floor;
                let feed = self.node_feeds.entry(n.to_string()).or_insert_with(|| NodeFeed::new(floor));
                feed.events.push_back(event.clone());
                feed.notify.send_replace((event.rev, 0));
            }
        }
        self.ring.push_back(event);
        while self.ring.len() > RING_CAPACITY {
            let Some(old) = self.ring.pop_front() else { break };
            self.floor = old.rev;
            for n in Self::event_nodes(&old) {
                if let Some(feed) = self.node_feeds.get_mut(n) {
                    if feed.events.front().is_some_and(|e| Arc::ptr_eq(e, &old)) {
                        feed.events.pop_front();
                        feed.floor = old.rev;
                    }
                    if feed.events.is_empty() && feed.notify.receiver_count() == 0 {
                        self.node_feeds.remove(n);
                    }
                }
            }
        }
    }

    /// Up to 512 events after `pos` of a watch's source, or Err(floor) when `pos` is older than the ring.
    fn read(&self, source: &Source, pos: Revision) -> Result<Vec<Arc<CacheEvent>>, Revision> {
        let (events, floor) = match source {
            Source::All => (&self.ring, self.floor),
            Source::Node(n) => match self.node_feeds.get(n) {
                Some(feed) => (&feed.events, feed.floor),
                None if pos < self.floor => return Err(self.floor),
                None => return Ok(Vec::new()),
            },
        };
        if pos < floor {
            return Err(floor);
        }
        let idx = events.partition_point(|e| e.rev <= pos);
        Ok(events.iter().skip(idx).take(512).cloned().collect())
    }
}

/// What a watch reads: every event of the resource, or those of the pods on one node.
enum Source {
    All,
    Node(String),
}

impl Source {
    fn of(res: &Resource, p: &ListParams) -> Source {
        let pods = res.group.is_empty() && res.plural == "pods";
        match p.field_selector.as_ref().and_then(|f| f.exact_match("spec.nodeName")) {
            Some(n) if pods => Source::Node(n.to_string()),
            _ => Source::All,
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
            let obj = Shared::decode(kv)?;
            st.index(&kv.key, None, Some(&*obj), self.pods());
            st.objects.insert(kv.key.clone(), obj);
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
        // Decoded before taking the lock: readers wait only for the index updates.
        let decoded = match &ev {
            Event::Put { kv, .. } => match Shared::decode(kv) {
                Ok(obj) => Some(obj),
                Err(_) => return,
            },
            _ => None,
        };
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
                let Some(obj) = decoded else { return };
                let prev = st.objects.insert(kv.key.clone(), obj.clone());
                st.index(&kv.key, prev.as_deref(), Some(&obj), pods);
                CacheEvent { rev: kv.mod_revision, key: kv.key, obj: Some(obj), prev, gone: OnceLock::new() }
            }
            Event::Delete { key, revision, .. } => {
                let Some(prev) = st.objects.remove(&key) else {
                    st.rev = st.rev.max(revision);
                    return;
                };
                st.index(&key, Some(&prev), None, pods);
                CacheEvent { rev: revision, key, obj: None, prev: Some(prev), gone: OnceLock::new() }
            }
        };
        let rev = event.rev;
        st.rev = st.rev.max(rev);
        st.push(Arc::new(event), pods);
        drop(st);
        self.notify.send_modify(|(r, _)| *r = (*r).max(rev));
    }

    /// The cached object under a storage key, if the cache has it.
    pub fn get(&self, key: &str) -> Option<Shared> {
        self.state.read().ok()?.objects.get(key).cloned()
    }

    /// For each (storage key, revision), the cached object under the key if the cache holds it at that revision
    /// (a revision is one write: the same object as stored), under one read of the cache.
    pub fn get_at<'k>(&self, wanted: impl IntoIterator<Item = (&'k str, Revision)>) -> Vec<Option<Shared>> {
        let Ok(st) = self.state.read() else { return wanted.into_iter().map(|_| None).collect() };
        wanted
            .into_iter()
            .map(|(key, rev)| {
                st.objects
                    .get(key)
                    .filter(|o| {
                        let at =
                            crate::registry::meta_str(o, "resourceVersion").and_then(|v| v.parse::<Revision>().ok());
                        at == Some(rev)
                    })
                    .cloned()
            })
            .collect()
    }

    /// Events after this revision that a watch with selectors `p` sees are all in the cache.
    pub fn floor(&self, p: &ListParams) -> Revision {
        let Ok(st) = self.state.read() else { return Revision::MAX };
        match Source::of(self.res, p) {
            Source::Node(n) => st.node_feeds.get(&n).map_or(st.floor, |f| f.floor),
            Source::All => st.floor,
        }
    }

    /// The matching objects now (a `resourceVersion=0` list), with the cache's revision.
    pub fn list(&self, ns: Option<&str>, p: &ListParams) -> Result<(Vec<Value>, Revision), ApiError> {
        let (objs, rev) = self.select(ns, p)?;
        Ok((objs.iter().map(|o| (**o).clone()).collect(), rev))
    }

    /// The matching objects now, shared with the cache (their encodings made once for every list and watch).
    pub fn list_shared(&self, ns: Option<&str>, p: &ListParams) -> Result<(Vec<Shared>, Revision), ApiError> {
        self.select(ns, p)
    }

    /// The matching objects now, shared with the cache.
    fn select(&self, ns: Option<&str>, p: &ListParams) -> Result<(Vec<Shared>, Revision), ApiError> {
        let st = self.state.read().map_err(|_| poisoned())?;
        let pfx = prefix(self.res, ns);
        let node = p.field_selector.as_ref().and_then(|f| f.exact_match("spec.nodeName")).filter(|_| self.pods());
        let mut out = Vec::new();
        let mut consider = |obj: &Shared| -> Result<(), ApiError> {
            if matches(self.res, obj, p)? {
                out.push(obj.clone());
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
                let (objs, rev) = self.select(ns, &p)?;
                (objs, rev)
            }
            Some(rev) => {
                let floor = self.floor(&p);
                if rev < floor {
                    return Err(ApiError::gone(format!("too old resource version: {rev} ({floor})")));
                }
                (Vec::new(), rev)
            }
        };
        let pfx = prefix(self.res, ns);
        let cache = self.clone();
        let source = Source::of(self.res, &p);
        let mut notify = match &source {
            Source::Node(n) => {
                let mut st = self.state.write().map_err(|_| poisoned())?;
                let floor = st.floor;
                let feed = st.node_feeds.entry(n.clone()).or_insert_with(|| NodeFeed::new(floor));
                feed.notify.subscribe()
            }
            Source::All => self.notify.subscribe(),
        };
        let generation = self.notify.borrow().1;
        tokio::spawn(async move {
            for obj in initial {
                if tx.send(WatchEvent::Added(obj)).await.is_err() {
                    return;
                }
            }
            let mut pos = start;
            let mut last_bookmark = tokio::time::Instant::now();
            loop {
                notify.borrow_and_update();
                if cache.notify.borrow().1 != generation {
                    return; // the cache restarted: the client re-watches from its last resourceVersion
                }
                let (read, rev) = match cache.state.read() {
                    Ok(st) => (st.read(&source, pos), st.rev),
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
                // Nothing newer in the source: the watch has seen everything up to the cache's revision.
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
    selection_change(res, p, ev.obj.as_ref(), ev.prev.as_ref(), ev.rev, Some(&ev.gone))
}

/// What a change from `prev` to `new` (None: deleted / created) at `rev` means to a watcher with selectors `p`.
/// `gone_cache` keeps the DELETED form of `prev` for the other watchers of the same event.
pub fn selection_change(
    res: &Resource,
    p: &ListParams,
    new: Option<&Shared>,
    prev: Option<&Shared>,
    rev: Revision,
    gone_cache: Option<&OnceLock<Shared>>,
) -> Option<WatchEvent> {
    let sel = |o: &Value| matches(res, o, p).unwrap_or(false);
    let gone = |o: &Shared| {
        let make = || {
            let mut g = (**o).clone();
            set_rv(&mut g, rev);
            Shared::with_stored(g, o.stored().cloned())
        };
        WatchEvent::Deleted(match gone_cache {
            Some(cell) => cell.get_or_init(make).clone(),
            None => make(),
        })
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

    /// The cache of `res` if it has started (no waiting; for synchronous readers such as admission).
    pub fn started(&self, res: &Resource) -> Option<Arc<ResourceCache>> {
        let caches = self.caches.lock().ok()?;
        caches.get(res.storage)?.get().cloned()
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
