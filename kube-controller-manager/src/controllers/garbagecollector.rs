//! `garbagecollector`: deletes objects whose owners are gone, as upstream's `pkg/controller/garbagecollector`.
//!
//! The owner/dependent graph is the informers of every resource of the resource table that can be listed,
//! watched and deleted (one version per stored resource; events are skipped), each indexed by the uids its
//! `ownerReferences` name. An object is reconciled (upstream's `attemptToDeleteItem` / `processDeletingDependentsItem`
//! / `orphanDependents`) when it or one of its owners changes:
//!
//! - an object with owners is classified against each owner: *solid* (exists with that uid), *dangling* (absent or
//!   another uid — always confirmed with a live GET, never from the cache alone) or *waiting* (being deleted with
//!   the `foregroundDeletion` finalizer). With a solid owner, dangling and waiting references are removed from it;
//!   with only waiting owners it is deleted with `propagationPolicy=Foreground`, after its references stop
//!   blocking (`blockOwnerDeletion: false`) when one of its dependents is itself waiting for its dependents, so a
//!   circle of blocking references drains instead of waiting on itself forever; otherwise (all owners gone) it is
//!   deleted with the policy its own finalizers ask for (`orphan`, `foregroundDeletion`, else Background), with a
//!   uid precondition;
//! - an owner being deleted with the `foregroundDeletion` finalizer gets every dependent deleted and keeps the
//!   finalizer while dependents with `blockOwnerDeletion: true` remain; then the finalizer is removed;
//! - an owner being deleted with the `orphan` finalizer gets its reference removed from every dependent, then the
//!   finalizer removed.
//!
//! Custom resources join the graph as aggregated discovery finds them (checked at start, every 30 s as upstream's
//! monitor resync, and soon after an owner reference names a kind not tracked yet); once a new kind is listed, the
//! objects naming owners of that kind are reconciled again. So an object owned by a custom resource goes when it
//! goes, and the other way round.
//! Deliberate gaps: resources whose CRD is deleted keep their (then empty) informer; there is no virtual-node
//! bookkeeping for owners that never existed in a cache (the live GET decides instead);
//! no `OwnerRefInvalidNamespace` events; owners of unknown kinds are treated as present (never cascaded).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use api_types::patch::PatchType;
use api_types::resources::{RESOURCES, Resource};
use runtime::{Action, Controller, Informer, Notification, WorkQueue};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{BoxError, Context, stopped};

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";
const OWNER_INDEX: &str = "gc-owner-uid";

/// A node of the graph: the index of its resource in [`Graph::informers`] and its cache key.
type Key = (usize, String);

/// Whether the garbage collector tracks a resource: stored, listable, watchable and deletable, not events.
pub fn collectable(r: &Resource) -> bool {
    r.stored() && ["list", "watch", "delete"].iter().all(|v| r.has_verb(v)) && r.plural != "events"
}

/// One resource per storage key (the first, preferred, version of the table).
pub fn collectable_resources() -> Vec<&'static Resource> {
    let mut out: Vec<&'static Resource> = Vec::new();
    for r in RESOURCES.iter().filter(|r| collectable(r)) {
        if !out.iter().any(|o| o.storage == r.storage) {
            out.push(r);
        }
    }
    out
}

/// The `ownerReferences` of an object.
pub fn owner_refs(obj: &Value) -> &[Value] {
    obj.pointer("/metadata/ownerReferences").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

pub fn has_finalizer(obj: &Value, f: &str) -> bool {
    obj.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|l| l.iter().any(|x| x == f))
}

fn deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some()
}

/// Being deleted, waiting for its dependents (upstream's `isDeletingDependents`).
pub fn deleting_dependents(obj: &Value) -> bool {
    deleting(obj) && has_finalizer(obj, FOREGROUND)
}

fn ref_str<'a>(r: &'a Value, field: &str) -> &'a str {
    r.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// A merge patch keeping only the owner references whose uid is not in `uids` (pinned to the object's uid and
/// resourceVersion, so a concurrent change makes it fail and retry).
pub fn remove_owner_refs_patch(obj: &Value, uids: &[&str]) -> Value {
    let kept: Vec<Value> = owner_refs(obj).iter().filter(|r| !uids.contains(&ref_str(r, "uid"))).cloned().collect();
    json!({"metadata": {"ownerReferences": kept, "uid": runtime::uid(obj),
        "resourceVersion": runtime::resource_version(obj)}})
}

/// A merge patch turning every `blockOwnerDeletion: true` of the object's owner references to false (upstream's
/// `unblockOwnerReferences`), pinned to the uid and resourceVersion; None when no reference blocks.
pub fn unblock_owner_refs_patch(obj: &Value) -> Option<Value> {
    let refs = owner_refs(obj);
    if !refs.iter().any(|r| r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true)) {
        return None;
    }
    let unblocked: Vec<Value> = refs
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true) {
                r["blockOwnerDeletion"] = json!(false);
            }
            r
        })
        .collect();
    Some(json!({"metadata": {"ownerReferences": unblocked, "uid": runtime::uid(obj),
        "resourceVersion": runtime::resource_version(obj)}}))
}

/// A merge patch removing one finalizer (pinned to the resourceVersion).
pub fn remove_finalizer_patch(obj: &Value, f: &str) -> Value {
    let kept: Vec<Value> = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter(|x| *x != f).cloned().collect())
        .unwrap_or_default();
    json!({"metadata": {"finalizers": kept, "resourceVersion": runtime::resource_version(obj)}})
}

/// The policy an ownerless object is deleted with: the one its own finalizers ask for.
pub fn own_policy(obj: &Value) -> &'static str {
    if has_finalizer(obj, ORPHAN) {
        "Orphan"
    } else if has_finalizer(obj, FOREGROUND) {
        "Foreground"
    } else {
        "Background"
    }
}

/// How an owner reference resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    Solid,
    Dangling,
    Waiting,
}

/// The state of an owner reference given the owner found (None: absent).
pub fn classify(owner_ref: &Value, owner: Option<&Value>) -> OwnerState {
    match owner {
        Some(o) if runtime::uid(o) == ref_str(owner_ref, "uid") => {
            if deleting_dependents(o) {
                OwnerState::Waiting
            } else {
                OwnerState::Solid
            }
        }
        _ => OwnerState::Dangling,
    }
}

struct Graph {
    ctx: Arc<Context>,
    /// Every tracked resource's informer; only grows (indexes are node keys).
    informers: RwLock<Vec<Informer>>,
    /// Storage key of a resource -> its index in `informers`.
    by_storage: RwLock<HashMap<&'static str, usize>>,
    /// (group, kind) of a custom resource -> its index in `informers` (built-ins resolve through the table).
    custom_kinds: RwLock<HashMap<(String, String), usize>>,
    queue: WorkQueue<Key>,
    /// Poked when an owner reference names a kind the graph does not track yet: discovery runs again at once.
    rediscover: tokio::sync::Notify,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Graph {
    fn informer(&self, i: usize) -> Informer {
        read(&self.informers)[i].clone()
    }

    /// Adds a resource's informer (indexed by owner uid) to the graph; its index.
    fn track(&self, inf: &Informer, custom_kind: Option<(String, String)>) -> usize {
        inf.store().add_indexer(OWNER_INDEX, |o| {
            owner_refs(o).iter().filter_map(|r| r.get("uid").and_then(Value::as_str)).map(str::to_string).collect()
        });
        let mut informers = write(&self.informers);
        let i = informers.len();
        informers.push(inf.clone());
        write(&self.by_storage).insert(inf.resource().storage, i);
        if let Some(k) = custom_kind {
            write(&self.custom_kinds).insert(k, i);
        }
        i
    }

    /// The resource an owner reference names.
    fn owner_resource(&self, owner_ref: &Value) -> Option<(usize, &'static Resource)> {
        let (api_version, kind) = (ref_str(owner_ref, "apiVersion"), ref_str(owner_ref, "kind"));
        let i = match api_types::resources::by_kind(api_version, kind) {
            Some(r) => read(&self.by_storage).get(r.storage).copied()?,
            None => {
                let (group, _) = api_types::resources::split_api_version(api_version);
                read(&self.custom_kinds).get(&(group.to_string(), kind.to_string())).copied()?
            }
        };
        Some((i, self.informer(i).resource()))
    }

    /// Every object (of every resource) that names `uid` as an owner.
    fn dependents(&self, uid: &str) -> Vec<(usize, Arc<Value>)> {
        let mut out = Vec::new();
        let informers = read(&self.informers).clone();
        for (i, inf) in informers.iter().enumerate() {
            for o in inf.store().by_index(OWNER_INDEX, uid) {
                out.push((i, o));
            }
        }
        out
    }

    fn api(&self, i: usize, ns: &str) -> client::Api {
        self.ctx.client.api_for(self.informer(i).resource()).namespaced(ns)
    }

    /// The owner named by a reference of a dependent in namespace `ns`: the cache, confirmed live when the cache
    /// does not have it with that uid. `Err` when the owner cannot be looked up.
    async fn owner(&self, ns: &str, owner_ref: &Value) -> Result<Option<Value>, BoxError> {
        let Some((i, r)) = self.owner_resource(owner_ref) else {
            // An unknown kind: never cascade on what cannot be checked; it may be a custom resource discovery has
            // not found yet (its objects are queued again once it is tracked).
            self.rediscover.notify_one();
            return Ok(Some(json!({"metadata": {"uid": ref_str(owner_ref, "uid")}})));
        };
        if !r.namespaced || !ns.is_empty() {
            let owner_ns = if r.namespaced { ns } else { "" };
            let name = ref_str(owner_ref, "name");
            if let Some(o) = self.informer(i).store().get(owner_ns, name)
                && runtime::uid(&o) == ref_str(owner_ref, "uid")
            {
                return Ok(Some((*o).clone()));
            }
            return match self.api(i, owner_ns).get(name).await {
                Ok(o) => Ok(Some(o)),
                Err(e) if e.code() == Some(404) => Ok(None),
                Err(e) => Err(e.into()),
            };
        }
        // A cluster-scoped dependent cannot have a namespaced owner: that reference resolves to nothing.
        Ok(None)
    }

    async fn delete(&self, i: usize, obj: &Value, policy: &str) -> Result<(), BoxError> {
        let opts = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": policy,
            "preconditions": {"uid": runtime::uid(obj)}});
        tracing::info!(resource = self.informer(i).resource().plural, key = %runtime::object_key(obj), policy,
            "garbage collector: deleting");
        match self.api(i, runtime::namespace(obj)).delete(runtime::name(obj), Some(&opts)).await {
            Ok(_) => Ok(()),
            // Gone already, or replaced by another object of the same name.
            Err(e) if matches!(e.code(), Some(404 | 409)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn patch(&self, i: usize, obj: &Value, patch: &Value) -> Result<(), BoxError> {
        match self.api(i, runtime::namespace(obj)).patch(runtime::name(obj), PatchType::Merge, patch).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn reconcile(&self, (i, key): Key) -> Result<Action, BoxError> {
        let Some(obj) = self.informer(i).store().get_by_key(&key) else { return Ok(Action::Done) };
        if deleting(&obj) {
            if has_finalizer(&obj, ORPHAN) {
                return self.orphan_dependents(i, &obj).await;
            }
            if has_finalizer(&obj, FOREGROUND) {
                return self.delete_dependents(i, &obj).await;
            }
            // Being deleted without waiting for anything of ours.
            return Ok(Action::Done);
        }
        if owner_refs(&obj).is_empty() {
            return Ok(Action::Done);
        }
        let ns = runtime::namespace(&obj);
        let (mut solid, mut dangling, mut waiting) = (0, Vec::new(), Vec::new());
        for r in owner_refs(&obj) {
            let owner = self.owner(ns, r).await?;
            match classify(r, owner.as_ref()) {
                OwnerState::Solid => solid += 1,
                OwnerState::Dangling => dangling.push(ref_str(r, "uid")),
                OwnerState::Waiting => waiting.push(ref_str(r, "uid")),
            }
        }
        if solid > 0 {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(Action::Done);
            }
            // Keep the live owners; drop the references to the gone and the foreground-deleting ones (otherwise the
            // latter would wait on this object forever).
            let uids: Vec<&str> = dangling.iter().chain(&waiting).copied().collect();
            self.patch(i, &obj, &remove_owner_refs_patch(&obj, &uids)).await?;
            return Ok(Action::Done);
        }
        if !waiting.is_empty() {
            let dependents = self.dependents(runtime::uid(&obj));
            if !dependents.is_empty() {
                // A dependent that itself waits for its dependents may close a circle of blocking references
                // (this object waits on it, it waits on ... an owner of this object): the references of this
                // object stop blocking, so its owners need not wait for it (upstream's false-positive-prone
                // circle detection, kept as is).
                if dependents.iter().any(|(_, d)| deleting_dependents(d))
                    && let Some(patch) = unblock_owner_refs_patch(&obj)
                {
                    tracing::info!(key = %runtime::object_key(&obj),
                        "garbage collector: unblocking owner references to break a possible circle");
                    self.patch(i, &obj, &patch).await?;
                }
                self.delete(i, &obj, "Foreground").await?;
                return Ok(Action::Done);
            }
        }
        self.delete(i, &obj, own_policy(&obj)).await?;
        Ok(Action::Done)
    }

    /// `orphan`: every dependent loses its reference to the owner, then the owner loses the finalizer.
    async fn orphan_dependents(&self, i: usize, owner: &Value) -> Result<Action, BoxError> {
        let uid = runtime::uid(owner);
        for (j, d) in self.dependents(uid) {
            self.patch(j, &d, &remove_owner_refs_patch(&d, &[uid])).await?;
        }
        self.patch(i, owner, &remove_finalizer_patch(owner, ORPHAN)).await?;
        Ok(Action::Done)
    }

    /// `foregroundDeletion`: every dependent is deleted; the finalizer goes once no dependent blocks the owner.
    async fn delete_dependents(&self, i: usize, owner: &Value) -> Result<Action, BoxError> {
        let uid = runtime::uid(owner);
        let mut blocking = 0;
        for (j, d) in self.dependents(uid) {
            let blocks = owner_refs(&d).iter().any(|r| {
                ref_str(r, "uid") == uid && r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true)
            });
            if blocks {
                blocking += 1;
            }
            if !deleting(&d) {
                self.queue.add((j, runtime::object_key(&d)));
            }
        }
        if blocking > 0 {
            // Dependents' deletions requeue the owner; this is the safety net.
            return Ok(Action::RequeueAfter(Duration::from_secs(30)));
        }
        self.patch(i, owner, &remove_finalizer_patch(owner, FOREGROUND)).await?;
        Ok(Action::Done)
    }

    /// The keys a change queues: the object (if it has owners or waits on dependents), its dependents when it is
    /// deleted or starts deleting them, and its owners when it is deleted or its references change.
    fn keys_for(&self, i: usize, n: &Notification) -> Vec<Key> {
        let obj = n.object();
        let mut keys = Vec::new();
        let owners_of = |o: &Value, keys: &mut Vec<Key>| {
            for r in owner_refs(o) {
                if let Some((j, res)) = self.owner_resource(r) {
                    let ns = if res.namespaced { runtime::namespace(o) } else { "" };
                    keys.push((j, runtime::key(ns, ref_str(r, "name"))));
                }
            }
        };
        match n {
            Notification::Deleted(o) => {
                for (j, d) in self.dependents(runtime::uid(o)) {
                    keys.push((j, runtime::object_key(&d)));
                }
                owners_of(o, &mut keys);
            }
            _ => {
                if !owner_refs(obj).is_empty()
                    || (deleting(obj) && (has_finalizer(obj, ORPHAN) || has_finalizer(obj, FOREGROUND)))
                {
                    keys.push((i, runtime::object_key(obj)));
                }
                if let Some(old) = n.old() {
                    if owner_refs(old) != owner_refs(obj) || deleting(old) != deleting(obj) {
                        owners_of(old, &mut keys);
                    }
                    if deleting_dependents(obj) && !deleting_dependents(old) {
                        for (j, d) in self.dependents(runtime::uid(obj)) {
                            keys.push((j, runtime::object_key(&d)));
                        }
                    }
                }
            }
        }
        keys
    }
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let workers = ctx.options.concurrent_gc_syncs;
    let mut controller: Controller<Key> =
        Controller::new(runtime::controller::Config { workers, ..Default::default() });
    let queue = controller.queue();
    let graph = Arc::new(Graph {
        ctx: ctx.clone(),
        informers: Default::default(),
        by_storage: Default::default(),
        custom_kinds: Default::default(),
        queue,
        rediscover: tokio::sync::Notify::new(),
    });
    for r in collectable_resources() {
        let inf = ctx.informer(r.group, r.version, r.plural);
        let i = graph.track(&inf, None);
        let g = graph.clone();
        controller = controller.watches(&inf, move |n| g.keys_for(i, n));
    }
    tokio::spawn(discover_custom(graph.clone(), stop.clone()));
    controller
        .run(
            move |key: Key| {
                let g = graph.clone();
                async move { g.reconcile(key).await }
            },
            stopped(stop),
        )
        .await;
}

/// Adds the custom resources discovery lists to the graph, at start and every 30 s; each new informer feeds the
/// queue as the controller's own sources do.
async fn discover_custom(graph: Arc<Graph>, mut stop: watch::Receiver<bool>) {
    loop {
        match graph.ctx.client.discover_resources().await {
            Ok(found) => {
                for d in found {
                    let collectable =
                        d.is_custom() && ["list", "watch", "delete"].iter().all(|v| d.verbs.iter().any(|x| x == v));
                    if !collectable {
                        continue;
                    }
                    let res = graph.ctx.client.api_dynamic(&d.group, &d.version, &d.plural, &d.kind, d.namespaced).res;
                    if read(&graph.by_storage).contains_key(res.storage) {
                        continue;
                    }
                    let inf = match graph.ctx.factory.informer(res, runtime::InformerParams::all()) {
                        Ok(inf) => inf,
                        Err(e) => {
                            tracing::warn!(resource = %format!("{}.{}", d.plural, d.group), error = %e, "garbage collector: no informer");
                            continue;
                        }
                    };
                    let i = graph.track(&inf, Some((d.group.clone(), d.kind.clone())));
                    tracing::info!(resource = %format!("{}.{}", d.plural, d.group), "garbage collector: tracking a custom resource");
                    let mut rx = inf.subscribe();
                    let g = graph.clone();
                    tokio::spawn(async move {
                        while let Some(n) = rx.recv().await {
                            for k in g.keys_for(i, &n) {
                                g.queue.add(k);
                            }
                        }
                    });
                    // Dependents seen before the kind was tracked were judged against an unknown owner: once its
                    // objects are listed, every object naming an owner of that kind is reconciled again.
                    let g = graph.clone();
                    tokio::spawn(async move {
                        inf.wait_synced().await;
                        let informers = read(&g.informers).clone();
                        for (j, other) in informers.iter().enumerate() {
                            for o in other.store().list_by(|o| {
                                owner_refs(o).iter().any(|r| {
                                    let (group, _) = api_types::resources::split_api_version(ref_str(r, "apiVersion"));
                                    group == d.group && ref_str(r, "kind") == d.kind
                                })
                            }) {
                                g.queue.add((j, runtime::object_key(&o)));
                            }
                        }
                    });
                }
            }
            Err(e) => tracing::info!(error = %e, "garbage collector: discovery failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            // An unknown owner kind: look again soon (at most once a second).
            _ = async {
                graph.rediscover.notified().await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            } => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_one_version_per_stored_resource_without_events() {
        let rs = collectable_resources();
        assert!(rs.iter().any(|r| r.plural == "configmaps"));
        assert!(rs.iter().any(|r| r.plural == "namespaces"));
        assert!(!rs.iter().any(|r| r.plural == "events"));
        assert!(!rs.iter().any(|r| r.plural == "bindings" || r.plural == "componentstatuses"));
        assert_eq!(rs.iter().filter(|r| r.plural == "horizontalpodautoscalers").count(), 1);
    }

    #[test]
    fn owners_classify_by_uid_and_foreground_deletion() {
        let r = json!({"uid": "u1"});
        assert_eq!(classify(&r, None), OwnerState::Dangling);
        assert_eq!(classify(&r, Some(&json!({"metadata": {"uid": "u2"}}))), OwnerState::Dangling);
        assert_eq!(classify(&r, Some(&json!({"metadata": {"uid": "u1"}}))), OwnerState::Solid);
        let waiting = json!({"metadata": {"uid": "u1", "deletionTimestamp": "t", "finalizers": [FOREGROUND]}});
        assert_eq!(classify(&r, Some(&waiting)), OwnerState::Waiting);
        let orphaning = json!({"metadata": {"uid": "u1", "deletionTimestamp": "t", "finalizers": [ORPHAN]}});
        assert_eq!(classify(&r, Some(&orphaning)), OwnerState::Solid);
    }

    #[test]
    fn patches_and_policies() {
        let obj = json!({"metadata": {"uid": "d", "resourceVersion": "5", "finalizers": ["a", ORPHAN],
            "ownerReferences": [{"uid": "x"}, {"uid": "y"}]}});
        let p = remove_owner_refs_patch(&obj, &["x"]);
        assert_eq!(p["metadata"]["ownerReferences"], json!([{"uid": "y"}]));
        assert_eq!(p["metadata"]["resourceVersion"], "5");
        assert_eq!(remove_finalizer_patch(&obj, ORPHAN)["metadata"]["finalizers"], json!(["a"]));
        assert_eq!(own_policy(&obj), "Orphan");
        assert_eq!(own_policy(&json!({"metadata": {"finalizers": [FOREGROUND]}})), "Foreground");
        assert_eq!(own_policy(&json!({})), "Background");
    }

    #[test]
    fn unblocking_turns_every_blocking_reference_off() {
        let obj = json!({"metadata": {"uid": "d", "resourceVersion": "7", "ownerReferences": [
            {"uid": "x", "blockOwnerDeletion": true, "controller": true}, {"uid": "y"}]}});
        let p = unblock_owner_refs_patch(&obj).unwrap();
        assert_eq!(
            p["metadata"]["ownerReferences"],
            json!([{"uid": "x", "blockOwnerDeletion": false, "controller": true}, {"uid": "y"}])
        );
        assert_eq!((p["metadata"]["uid"].clone(), p["metadata"]["resourceVersion"].clone()), (json!("d"), json!("7")));
        assert_eq!(unblock_owner_refs_patch(&json!({"metadata": {"ownerReferences": [{"uid": "y"}]}})), None);
    }
}
