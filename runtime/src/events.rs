//! An event recorder: core/v1 Events about an object (its ObjectReference as `involvedObject`), as client-go's
//! `record.EventRecorder` writes them, through the three steps of its `EventCorrelator`:
//! - aggregation: from the 10th distinct message with the same object, type and reason within 10 minutes, the
//!   events become one Event whose message is `(combined from similar events): <latest message>`;
//! - de-duplication: the same event (same object, type, reason, message and source) seen again within the window
//!   increments `count` and moves `lastTimestamp` on the existing Event (a PATCH) instead of creating another;
//! - the spam filter: a source may write 25 events about one object, then one more every 5 minutes (a token
//!   bucket per object); the rest are dropped.
//!
//! Events are named `<object name>.<hex unix nanos>` and live in the object's namespace (`default` for
//! cluster-scoped objects).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use api_types::patch::PatchType;
use client::{Api, Client};
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::time::Instant;

/// An event's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// A core/v1 ObjectReference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ObjectReference {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub api_version: String,
    pub resource_version: String,
    pub field_path: String,
}

impl ObjectReference {
    /// The reference to an object as the API returned it (kind and apiVersion must be set, as the watcher does).
    pub fn from_object(obj: &Value) -> Self {
        let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
        ObjectReference {
            kind: s("/kind"),
            namespace: s("/metadata/namespace"),
            name: s("/metadata/name"),
            uid: s("/metadata/uid"),
            api_version: s("/apiVersion"),
            resource_version: s("/metadata/resourceVersion"),
            field_path: String::new(),
        }
    }

    /// As JSON, without empty fields.
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (k, v) in [
            ("kind", &self.kind),
            ("namespace", &self.namespace),
            ("name", &self.name),
            ("uid", &self.uid),
            ("apiVersion", &self.api_version),
            ("resourceVersion", &self.resource_version),
            ("fieldPath", &self.field_path),
        ] {
            if !v.is_empty() {
                m.insert(k.into(), Value::String(v.clone()));
            }
        }
        Value::Object(m)
    }
}

/// How the recorder aggregates, de-duplicates and filters (client-go's `CorrelatorOptions`).
#[derive(Debug, Clone)]
pub struct Config {
    /// A repeat within this long of the previous occurrence updates the existing Event; also how long distinct
    /// messages count towards aggregation.
    pub window: Duration,
    /// Most entries each cache remembers (the least recently seen are forgotten first); upstream's LRU holds 4096.
    pub max_entries: usize,
    /// Distinct messages (same object, type and reason) within the window from which events are aggregated.
    pub aggregate_max_events: usize,
    /// Events one object may have at once before the spam filter drops them.
    pub spam_burst: u32,
    /// Refill of an object's spam budget: one event per this long.
    pub spam_refill: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            window: Duration::from_secs(600),
            max_entries: 4096,
            aggregate_max_events: 10,
            spam_burst: 25,
            spam_refill: Duration::from_secs(300),
        }
    }
}

/// The involved object, without resourceVersion (upstream's spam key; with `field_path`, its event key).
type ObjectKey = (String, String, String, String, String);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EventKey {
    object: ObjectKey,
    field_path: String,
    type_: EventType,
    reason: String,
    /// None for an aggregate Event (one per object, type and reason).
    message: Option<String>,
}

/// Distinct messages seen for one object, type and reason (by their [`fingerprint`]s).
#[derive(Debug)]
struct Aggregate {
    /// The [`fingerprint`] of the object's uid, for [`Recorder::forget`].
    owner: u64,
    messages: Messages,
    last: Instant,
}

/// A set of message fingerprints whose first member is held inline: almost every group only ever sees one
/// message, and the caches outlive the busy moments that fill them, so an allocation per entry would pin the
/// allocator's pages of those moments long after their other objects are freed.
#[derive(Debug, Default)]
struct Messages {
    first: Option<u64>,
    rest: Vec<u64>,
}

impl Messages {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn clear(&mut self) {
        *self = Messages::default();
    }

    fn insert(&mut self, m: u64) {
        match self.first {
            None => self.first = Some(m),
            Some(f) if f == m => {}
            Some(_) if !self.rest.contains(&m) => self.rest.push(m),
            Some(_) => {}
        }
    }

    /// Forgets one member other than `keep`, if there is one.
    fn remove_other_than(&mut self, keep: u64) {
        if let Some(i) = self.rest.iter().position(|m| *m != keep) {
            self.rest.swap_remove(i);
        } else if self.first.is_some_and(|f| f != keep) {
            self.first = self.rest.pop();
        }
    }
}

/// One object's token bucket.
#[derive(Debug)]
struct Budget {
    owner: u64,
    tokens: f64,
    last: Instant,
}

/// The Event written for one distinct event, held inline in the cache (no allocation per entry, see
/// [`Messages`]): its name is `<object name>.<hex stamp>` in the object's namespace, both known from the key's
/// object.
#[derive(Debug, Default)]
struct Seen {
    owner: u64,
    /// The Event, once a write made it.
    written: Option<Written>,
    /// A write of this event is under way: a repeat waits for it, so that it patches the Event that write made.
    busy: bool,
}

/// An Event as the recorder last wrote it.
#[derive(Debug, Clone, Copy)]
struct Written {
    /// When the Event was created, in unix nanoseconds (its name's suffix).
    stamp: i128,
    count: i64,
    last: Instant,
}

/// Records Events for one component. Cheap to clone (clones share the de-duplication cache). Writes of the same
/// event are serialized, so repeats from concurrent callers aggregate; different events are written concurrently.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    api: Api,
    component: String,
    host: String,
    config: Config,
    // The caches are keyed by fingerprints of their keys: a node's kubelet sees thousands of pods come and go, and
    // the keys' strings (kind, namespace, name, uid, apiVersion, reason, message...) were most of the memory the
    // full caches held.
    seen: std::sync::Mutex<HashMap<u64, Seen>>,
    /// Woken when a write of an event ends (its [`Seen::busy`] cleared).
    written: tokio::sync::Notify,
    aggregates: std::sync::Mutex<HashMap<u64, Aggregate>>,
    budgets: std::sync::Mutex<HashMap<u64, Budget>>,
}

/// A 64-bit hash of a cache key, the same for equal keys within the process (two of the at most 4,096 keys of a
/// cache colliding is about as likely as 1 in 10^12).
fn fingerprint(key: &impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// Keeps a cache within `max` entries: when full, the oldest tenth goes (one sort per many insertions).
fn bound<K: Clone + Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>, max: usize, age: impl Fn(&V) -> Instant) {
    if map.len() < max {
        return;
    }
    let mut by_age: Vec<(Instant, K)> = map.iter().map(|(k, v)| (age(v), k.clone())).collect();
    by_age.sort_by_key(|(t, _)| *t);
    for (_, k) in by_age.into_iter().take((max / 10).max(1)) {
        map.remove(&k);
    }
}

/// Holds a [`Seen`] entry busy; on drop (the write done, failed or cancelled) stores what the write left and wakes
/// the repeats waiting for it.
struct Claim<'a> {
    inner: &'a Inner,
    key: u64,
    written: Option<Written>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut seen = self.inner.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = seen.get_mut(&self.key) {
            s.busy = false;
            if self.written.is_some() {
                s.written = self.written;
            }
        }
        drop(seen);
        self.inner.written.notify_waiters();
    }
}

/// `2006-01-02T15:04:05Z`, metav1.Time's format.
fn rfc3339_seconds(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Recorder {
    /// A recorder for `component` (`source.component`, `reportingComponent`) on `host` (`source.host`,
    /// `reportingInstance`; may be empty).
    pub fn new(client: &Client, component: &str, host: &str) -> Result<Self, client::Error> {
        Self::with_config(client, component, host, Config::default())
    }

    pub fn with_config(client: &Client, component: &str, host: &str, config: Config) -> Result<Self, client::Error> {
        Ok(Recorder {
            inner: Arc::new(Inner {
                api: client.api("", "v1", "events")?,
                component: component.to_string(),
                host: host.to_string(),
                config,
                seen: std::sync::Mutex::default(),
                written: tokio::sync::Notify::new(),
                aggregates: std::sync::Mutex::default(),
                budgets: std::sync::Mutex::default(),
            }),
        })
    }

    /// Records an event in the background (as client-go's recorder does): failures are logged, not returned.
    /// Must be called inside a Tokio runtime.
    pub fn record(&self, obj: &Value, type_: EventType, reason: &str, message: &str) {
        let (this, reference) = (self.clone(), ObjectReference::from_object(obj));
        let (reason, message) = (reason.to_string(), message.to_string());
        tokio::spawn(async move {
            if let Err(e) = this.event_for(&reference, type_, &reason, &message).await {
                tracing::warn!(object = %reference.name, %reason, error = %e, "could not record event");
            }
        });
    }

    /// Records an event about `obj` (see [`ObjectReference::from_object`]). Returns the Event as written, or None
    /// when the spam filter dropped it.
    pub async fn event(
        &self,
        obj: &Value,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> Result<Option<Value>, client::Error> {
        self.event_for(&ObjectReference::from_object(obj), type_, reason, message).await
    }

    /// Forgets what the caches hold about the object with this uid (it is gone for good, so none of its events
    /// can repeat), and gives back the tables' room when they are mostly empty: a kubelet's caches would otherwise
    /// keep the size of its busiest moment.
    pub fn forget(&self, uid: &str) {
        if uid.is_empty() {
            return;
        }
        let owner = fingerprint(&uid);
        fn drop_owned<V>(map: &std::sync::Mutex<HashMap<u64, V>>, keep: impl Fn(&V) -> bool) {
            let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, v| keep(v));
            if map.capacity() > 64 && map.len() < map.capacity() / 4 {
                map.shrink_to_fit();
            }
        }
        drop_owned(&self.inner.seen, |s| s.owner != owner || s.busy);
        drop_owned(&self.inner.aggregates, |a| a.owner != owner);
        drop_owned(&self.inner.budgets, |b| b.owner != owner);
    }

    /// Records an event about the object `reference` names.
    pub async fn event_for(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> Result<Option<Value>, client::Error> {
        let config = &self.inner.config;
        let object: ObjectKey = (
            reference.kind.clone(),
            reference.namespace.clone(),
            reference.name.clone(),
            reference.uid.clone(),
            reference.api_version.clone(),
        );
        let owner = fingerprint(&reference.uid);
        // Aggregation: the aggregateth distinct message and those after it go to the one aggregate Event.
        let aggregated = {
            let mut aggregates = self.inner.aggregates.lock().unwrap_or_else(|e| e.into_inner());
            let group = fingerprint(&(&object, type_, reason));
            if !aggregates.contains_key(&group) {
                bound(&mut aggregates, config.max_entries, |a| a.last);
            }
            let a = aggregates.entry(group).or_insert_with(|| Aggregate {
                owner,
                messages: Messages::default(),
                last: Instant::now(),
            });
            if a.last.elapsed() > config.window {
                a.messages.clear();
            }
            a.last = Instant::now();
            let this = fingerprint(&message);
            a.messages.insert(this);
            let over = a.messages.len() >= config.aggregate_max_events;
            if over {
                // Upstream keeps the set below the threshold, so every later message stays aggregated.
                a.messages.remove_other_than(this);
            }
            over
        };
        let message = if aggregated { format!("(combined from similar events): {message}") } else { message.into() };
        let budget_key = fingerprint(&object);
        let key = fingerprint(&EventKey {
            object,
            field_path: if aggregated { String::new() } else { reference.field_path.clone() },
            type_,
            reason: reason.to_string(),
            message: (!aggregated).then(|| message.clone()),
        });
        // The spam filter: a token per event (new or repeat), per object.
        {
            let mut budgets = self.inner.budgets.lock().unwrap_or_else(|e| e.into_inner());
            if !budgets.contains_key(&budget_key) {
                bound(&mut budgets, config.max_entries, |b| b.last);
            }
            let burst = f64::from(config.spam_burst);
            let b = budgets.entry(budget_key).or_insert_with(|| Budget { owner, tokens: burst, last: Instant::now() });
            let refill = b.last.elapsed().as_secs_f64() / config.spam_refill.as_secs_f64().max(f64::MIN_POSITIVE);
            b.tokens = (b.tokens + refill).min(burst);
            b.last = Instant::now();
            if b.tokens < 1.0 {
                return Ok(None);
            }
            b.tokens -= 1.0;
        }
        // One write at a time per distinct event: a repeat waits for the write under way, then patches its Event.
        let (mut claim, previous) = loop {
            let mut written = std::pin::pin!(self.inner.written.notified());
            written.as_mut().enable();
            {
                let mut seen = self.inner.seen.lock().unwrap_or_else(|e| e.into_inner());
                if seen.len() >= config.max_entries && !seen.contains_key(&key) {
                    let window = config.window;
                    seen.retain(|_, e| e.busy || e.written.is_some_and(|w| w.last.elapsed() < window));
                    // Entries being written count as just seen.
                    bound(&mut seen, config.max_entries, |e| {
                        e.written.filter(|_| !e.busy).map_or_else(Instant::now, |w| w.last)
                    });
                }
                let entry = seen.entry(key).or_insert_with(|| Seen { owner, ..Seen::default() });
                if !entry.busy {
                    entry.busy = true;
                    break (Claim { inner: &self.inner, key, written: None }, entry.written);
                }
            }
            written.await;
        };
        let namespace = if reference.namespace.is_empty() { "default" } else { reference.namespace.as_str() };
        let now = Timestamp::now();
        if let Some(w) = previous.filter(|w| w.last.elapsed() < config.window) {
            let patch = json!({"count": w.count + 1, "lastTimestamp": rfc3339_seconds(now), "message": message});
            let api = self.inner.api.clone().namespaced(namespace);
            match api.patch(&format!("{}.{:x}", reference.name, w.stamp), PatchType::Merge, &patch).await {
                Ok(ev) => {
                    let count = ev.get("count").and_then(Value::as_i64).unwrap_or(w.count + 1);
                    claim.written = Some(Written { stamp: w.stamp, count, last: Instant::now() });
                    return Ok(Some(ev));
                }
                // The Event expired (TTL) or was deleted: start a new one.
                Err(e) if e.code() == Some(404) => {}
                Err(e) => return Err(e),
            }
        }
        let name = format!("{}.{:x}", reference.name, now.as_nanosecond());
        let stamp = rfc3339_seconds(now);
        let mut event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": reference.to_json(),
            "reason": reason,
            "message": message,
            "type": type_.as_str(),
            "source": {"component": self.inner.component},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "reportingComponent": self.inner.component,
            "reportingInstance": self.inner.host,
        });
        if !self.inner.host.is_empty() {
            event["source"]["host"] = json!(self.inner.host);
        }
        let created = self.inner.api.clone().namespaced(namespace).create(&event).await?;
        claim.written = Some(Written { stamp: now.as_nanosecond(), count: 1, last: Instant::now() });
        Ok(Some(created))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_from_objects() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "ns", "name": "p", "uid": "u1", "resourceVersion": "5"}});
        let r = ObjectReference::from_object(&pod);
        assert_eq!(
            r.to_json(),
            json!({"kind": "Pod", "namespace": "ns", "name": "p", "uid": "u1", "apiVersion": "v1", "resourceVersion": "5"})
        );
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}});
        assert_eq!(
            ObjectReference::from_object(&node).to_json(),
            json!({"kind": "Node", "name": "n", "apiVersion": "v1"})
        );
        let t: Timestamp = "2024-05-01T10:00:00.5Z".parse().unwrap();
        assert_eq!(rfc3339_seconds(t), "2024-05-01T10:00:00Z");
    }
}
