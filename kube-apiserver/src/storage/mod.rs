//! Storage: the one interface the apiserver persists objects through, with etcd's semantics.
//!
//! Two backends implement [`Storage`]: the embedded SQLite store ([`sqlite::SqliteStore`], the default) and
//! etcd ([`etcd::EtcdStore`], for HA). [`Backend`] dispatches between them. Keys passed to a backend are
//! relative to its prefix (upstream's `--etcd-prefix`, `/registry` by default): `/pods/default/nginx`.
//! See `docs/storage.md` for the semantics every backend must keep; `tests/conformance.rs` checks both.

pub mod compactor;
pub mod etcd;
pub mod keys;
pub mod snapshot;
pub mod sqlite;
pub mod testing;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

pub use keys::{object_key, resource_prefix, validate_key, validate_prefix};

/// A store revision. Every successful write takes the next one; `0` means "none".
pub type Revision = i64;

/// One stored key with its metadata, as etcd reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision at which the key was (last) created.
    pub create_revision: Revision,
    /// Revision of the last modification; the object's `resourceVersion`.
    pub mod_revision: Revision,
    /// Number of writes since creation, starting at 1.
    pub version: i64,
}

/// The answer to a list: a page of keys, all read at `revision`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListResult {
    /// The revision the whole page was read at (pin later pages to it).
    pub revision: Revision,
    pub items: Vec<KeyValue>,
    /// More keys follow the last item.
    pub more: bool,
    /// How many keys follow the last item (0 unless `more`).
    pub remaining: i64,
}

/// What to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Return only keys strictly after this one (the continue key of the previous page).
    pub start_after: Option<String>,
    /// Read at this revision instead of the current one.
    pub at_revision: Option<Revision>,
    /// At most this many items; 0 means no limit.
    pub limit: usize,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The key was created or updated; `prev` is the value before (None on create).
    Put { kv: KeyValue, prev: Option<KeyValue> },
    /// The key was deleted at `revision`; `prev` is its last value.
    Delete { key: String, revision: Revision, prev: Option<KeyValue> },
    /// Every event up to and including `revision` has been delivered (a bookmark).
    Progress { revision: Revision },
}

impl Event {
    /// The revision this event brings the watcher to.
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } | Event::Progress { revision } => *revision,
        }
    }

    /// The key the event is about (None for progress).
    pub fn key(&self) -> Option<&str> {
        match self {
            Event::Put { kv, .. } => Some(&kv.key),
            Event::Delete { key, .. } => Some(key),
            Event::Progress { .. } => None,
        }
    }
}

/// Storage errors, as the apiserver maps them to API statuses.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum StorageError {
    #[error("key not found: {key}")]
    NotFound { key: String },
    #[error("key already exists: {key}")]
    AlreadyExists { key: String },
    /// The expected revision did not match; `current` is the value now stored.
    #[error("revision mismatch for {}: now at revision {}", current.key, current.mod_revision)]
    Conflict { current: Box<KeyValue> },
    #[error(
        "revision has been compacted: the oldest readable revision is {compact_revision}, current is {current_revision}"
    )]
    Compacted { compact_revision: Revision, current_revision: Revision },
    #[error("revision {requested} is in the future: current is {current}")]
    FutureRevision { requested: Revision, current: Revision },
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A stream of watch events. Ends (`None`) when the backend goes away; an `Err` item is the last one.
/// Dropping it cancels the watch.
pub struct WatchStream {
    rx: mpsc::Receiver<Result<Event>>,
}

impl WatchStream {
    /// A stream fed by a sender; backends spawn a task that owns the sender.
    pub(crate) fn channel(buffer: usize) -> (mpsc::Sender<Result<Event>>, WatchStream) {
        let (tx, rx) = mpsc::channel(buffer);
        (tx, WatchStream { rx })
    }

    /// The next event, or None when the watch has ended.
    pub async fn next(&mut self) -> Option<Result<Event>> {
        self.rx.recv().await
    }
}

impl futures_util::Stream for WatchStream {
    type Item = Result<Event>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// The storage interface: etcd's key-value model with revisions, compare-and-swap writes and watches.
pub trait Storage: Send + Sync + 'static {
    /// The key's value now, or as of `at_revision`.
    fn get(&self, key: &str, at_revision: Option<Revision>) -> impl Future<Output = Result<KeyValue>> + Send;

    /// Keys under `prefix` (which ends in `/`) in key order, one page at one revision.
    fn list(&self, prefix: &str, opts: ListOptions) -> impl Future<Output = Result<ListResult>> + Send;

    /// Creates the key; `AlreadyExists` if it is there. With a TTL the key is deleted (an ordinary DELETE)
    /// once it expires.
    fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> impl Future<Output = Result<KeyValue>> + Send;

    /// Replaces the value if the key is at `expected_revision`; otherwise `Conflict` with the current value.
    fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_revision: Revision,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<KeyValue>> + Send;

    /// Deletes the key (if at `expected_revision`, when given). Returns the deletion's revision and the last value.
    fn delete(
        &self,
        key: &str,
        expected_revision: Option<Revision>,
    ) -> impl Future<Output = Result<(Revision, KeyValue)>> + Send;

    /// Every change under `prefix` after `after_revision`, in revision order, then live ones, with progress
    /// events while idle. `Compacted` (as the stream's first item) when history before it is gone.
    fn watch(&self, prefix: &str, after_revision: Revision) -> impl Future<Output = Result<WatchStream>> + Send;

    /// The revision of the last write.
    fn current_revision(&self) -> impl Future<Output = Result<Revision>> + Send;

    /// Forgets history before `revision`: reads and watches below it get `Compacted` from now on.
    fn compact(&self, revision: Revision) -> impl Future<Output = Result<()>> + Send;

    /// The revision history is compacted to (0 when never compacted), as far as this backend knows.
    fn compacted_revision(&self) -> impl Future<Output = Result<Revision>> + Send;
}

/// The configured backend: the embedded store by default, etcd when `--etcd-servers` is given.
pub enum Backend {
    Sqlite(sqlite::SqliteStore),
    Etcd(Box<etcd::EtcdStore>),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Backend::Sqlite($s) => $e,
            Backend::Etcd($s) => $e,
        }
    };
}

impl Storage for Backend {
    async fn get(&self, key: &str, at_revision: Option<Revision>) -> Result<KeyValue> {
        dispatch!(self, s => s.get(key, at_revision).await)
    }
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        dispatch!(self, s => s.list(prefix, opts).await)
    }
    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<KeyValue> {
        dispatch!(self, s => s.create(key, value, ttl).await)
    }
    async fn update(&self, key: &str, value: Bytes, expected: Revision, ttl: Option<Duration>) -> Result<KeyValue> {
        dispatch!(self, s => s.update(key, value, expected, ttl).await)
    }
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        dispatch!(self, s => s.delete(key, expected).await)
    }
    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream> {
        dispatch!(self, s => s.watch(prefix, after_revision).await)
    }
    async fn current_revision(&self) -> Result<Revision> {
        dispatch!(self, s => s.current_revision().await)
    }
    async fn compact(&self, revision: Revision) -> Result<()> {
        dispatch!(self, s => s.compact(revision).await)
    }
    async fn compacted_revision(&self) -> Result<Revision> {
        dispatch!(self, s => s.compacted_revision().await)
    }
}

/// The end of a prefix range: the smallest key greater than every key starting with `prefix`.
/// Prefixes are validated to end in `/`, so this is the prefix with `/` bumped to `0`.
pub(crate) fn prefix_end(prefix: &str) -> String {
    debug_assert!(prefix.ends_with('/'));
    format!("{}0", &prefix[..prefix.len() - 1])
}

/// How long a watch stays silent before it reports progress, unless a backend is told otherwise.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
