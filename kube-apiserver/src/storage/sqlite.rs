//! The embedded store (the default backend): SQLite through rusqlite with etcd's revision model.
//!
//! Tables: `log` holds one row per revision (the write history), `live` points each existing key at the log row
//! of its current value, `meta` holds the current and compacted revisions. One writer thread owns the write
//! connection and commits whatever requests have queued up in one transaction (group commit); it answers the
//! callers only after the commit, so an acknowledged write survives a crash. After each commit it appends the
//! events to an in-memory ring and wakes watchers; a watcher that has fallen behind the ring reads the log.
//! Compaction removes superseded history in small batches between write batches; TTL keys are deleted by the
//! writer as ordinary deletes once they expire. Reads use a small pool of read-only WAL connections.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use tokio::sync::{oneshot, watch};

use super::{
    DEFAULT_PROGRESS_INTERVAL, Event, KeyValue, ListOptions, ListResult, Result, Revision, Storage, StorageError,
    WatchStream, prefix_end, validate_key, validate_prefix,
};

/// How the embedded store is set up.
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// The database file (`<--data-dir>/state.db`).
    pub path: PathBuf,
    /// fsync every commit (SQLite `synchronous=FULL`). Off, a process crash still loses nothing, a power cut may.
    pub fsync: bool,
    /// Events kept in memory for watchers; older ones are read back from the log.
    pub ring_capacity: usize,
    /// A silent watch reports progress after this long.
    pub progress_interval: Duration,
    /// Revisions removed per compaction step (each step is one short transaction between write batches).
    pub compaction_step: i64,
    /// Most write requests committed in one transaction.
    pub max_batch: usize,
}

impl SqliteConfig {
    /// The defaults, with the database in `data_dir` (upstream has no such flag; ours is `--data-dir`).
    pub fn in_dir(data_dir: impl AsRef<Path>) -> Self {
        Self::new(data_dir.as_ref().join("state.db"))
    }

    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            fsync: true,
            ring_capacity: 8192,
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
            compaction_step: 500,
            max_batch: 512,
        }
    }
}

/// The embedded store. Cheap to clone; the writer stops when the last clone is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Option<std_mpsc::Sender<WriteRequest>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    pool: Arc<ReadPool>,
    hub: Arc<Hub>,
    progress_interval: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.writer.lock().map(|mut w| w.take()).ok();
        if let Some(handle) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = handle.join();
        }
    }
}

const PUT: i64 = 0;
const DELETE: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    rev INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    create_rev INTEGER NOT NULL,
    prev_rev INTEGER NOT NULL,
    version INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_rev ON log(key, rev);
CREATE TABLE IF NOT EXISTS live (
    key TEXT PRIMARY KEY,
    mod_rev INTEGER NOT NULL,
    expires_at INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS live_expires ON live(expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta(name, value) VALUES ('current', 0), ('compacted', 0), ('compact_done', 0);
";

fn unavailable(e: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn read_meta(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| r.get(0))
}

impl SqliteStore {
    /// Opens (or creates) the database and starts the writer. Revisions continue where the file left them.
    pub fn open(config: SqliteConfig) -> Result<Self> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(unavailable)?;
        }
        let conn = Connection::open_with_flags(
            &config.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(unavailable)?;
        let sync = if config.fsync { "FULL" } else { "NORMAL" };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA busy_timeout=10000; \
             PRAGMA cache_size=-16000; PRAGMA wal_autocheckpoint=0;"
        ))
        .map_err(unavailable)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        let current = read_meta(&conn, "current").map_err(unavailable)?;
        let compacted = read_meta(&conn, "compacted").map_err(unavailable)?;
        let compact_done = read_meta(&conn, "compact_done").map_err(unavailable)?;
        let next_expiry: Option<i64> = conn
            .query_row("SELECT MIN(expires_at) FROM live WHERE expires_at IS NOT NULL", [], |r| r.get(0))
            .map_err(unavailable)?;

        let hub = Arc::new(Hub::new(current, compacted, compact_done, config.ring_capacity));
        let pool = Arc::new(ReadPool { path: config.path.clone(), idle: Mutex::new(Vec::new()) });
        let (tx, rx) = std_mpsc::channel();
        let writer = Writer {
            conn,
            rev: current,
            compacted,
            compact_done,
            next_expiry,
            hub: hub.clone(),
            config: config.clone(),
            checkpointer: Checkpointer::start(&config.path)?,
        };
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(unavailable)?;
        tracing::info!(path = %config.path.display(), revision = current, compacted, "opened embedded store");
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
                pool,
                hub,
                progress_interval: config.progress_interval,
            }),
        })
    }

    /// Whether a compaction pass is still removing history in the background.
    pub fn compaction_pending(&self) -> bool {
        let hub = &self.inner.hub;
        hub.compact_done.load(Ordering::Acquire) < hub.compacted.load(Ordering::Acquire)
    }

    async fn write(&self, op: Op) -> Result<Reply> {
        let (reply, rx) = oneshot::channel();
        {
            let writer = self.inner.writer.lock().map_err(unavailable)?;
            let writer = writer.as_ref().ok_or_else(|| unavailable("store is closed"))?;
            writer.send(WriteRequest { op, reply: Some(reply) }).map_err(|_| unavailable("store writer stopped"))?;
        }
        rx.await.map_err(|_| unavailable("store writer stopped"))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let pool = self.inner.pool.clone();
        tokio::task::spawn_blocking(move || pool.with(f)).await.map_err(unavailable)?
    }
}

fn kv_from(key: String, create_rev: i64, rev: i64, version: i64, value: Vec<u8>) -> KeyValue {
    KeyValue { key, value: Bytes::from(value), create_revision: create_rev, mod_revision: rev, version }
}

/// Checks a read revision against the snapshot's current and compacted revisions.
fn check_revision(requested: Revision, current: Revision, compacted: Revision) -> Result<()> {
    if requested > current {
        return Err(StorageError::FutureRevision { requested, current });
    }
    if requested < compacted {
        return Err(StorageError::Compacted { compact_revision: compacted, current_revision: current });
    }
    Ok(())
}

const LIVE_GET: &str = "SELECT l.create_rev, l.rev, l.version, l.value FROM live JOIN log l ON l.rev = live.mod_rev \
                        WHERE live.key = ?1";

fn get_live(conn: &Connection, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    conn.prepare_cached(LIVE_GET)?
        .query_row([key], |r| Ok(kv_from(key.to_string(), r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()
}

impl Storage for SqliteStore {
    async fn get(&self, key: &str, at_revision: Option<Revision>) -> Result<KeyValue> {
        validate_key(key)?;
        let key = key.to_string();
        self.read(move |conn| {
            let not_found = || StorageError::NotFound { key: key.clone() };
            match at_revision.filter(|r| *r > 0) {
                None => get_live(conn, &key).map_err(unavailable)?.ok_or_else(not_found),
                Some(at) => {
                    let tx = conn.transaction().map_err(unavailable)?;
                    let current = read_meta(&tx, "current").map_err(unavailable)?;
                    let compacted = read_meta(&tx, "compacted").map_err(unavailable)?;
                    check_revision(at, current, compacted)?;
                    let row = tx
                        .prepare_cached(
                            "SELECT deleted, create_rev, rev, version, value FROM log \
                             WHERE key = ?1 AND rev <= ?2 ORDER BY rev DESC LIMIT 1",
                        )
                        .map_err(unavailable)?
                        .query_row(params![key, at], |r| {
                            Ok((r.get::<_, i64>(0)?, kv_from(key.clone(), r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                        })
                        .optional()
                        .map_err(unavailable)?;
                    match row {
                        Some((PUT, kv)) => Ok(kv),
                        _ => Err(not_found()),
                    }
                }
            }
        })
        .await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        validate_prefix(prefix)?;
        let start = match &opts.start_after {
            Some(after) if after.as_str() >= prefix => format!("{after}\0"),
            _ => prefix.to_string(),
        };
        let end = prefix_end(prefix);
        self.read(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            let current = read_meta(&tx, "current").map_err(unavailable)?;
            let compacted = read_meta(&tx, "compacted").map_err(unavailable)?;
            let at = opts.at_revision.filter(|r| *r > 0 && *r != current);
            if let Some(at) = at {
                check_revision(at, current, compacted)?;
            }
            let limit = if opts.limit == 0 { -1 } else { opts.limit as i64 };
            // The keys in range as of the revision: the live table now, or the newest log row of each key then.
            let (rows_sql, count_sql) = if at.is_some() {
                (
                    "SELECT l.key, l.create_rev, l.rev, l.version, l.value FROM \
                     (SELECT MAX(rev) AS r FROM log WHERE key >= ?1 AND key < ?2 AND rev <= ?3 GROUP BY key) m \
                     JOIN log l ON l.rev = m.r WHERE l.deleted = 0 ORDER BY l.key LIMIT ?4",
                    "SELECT COUNT(*) FROM \
                     (SELECT MAX(rev) AS r FROM log WHERE key >= ?1 AND key < ?2 AND rev <= ?3 GROUP BY key) m \
                     JOIN log l ON l.rev = m.r WHERE l.deleted = 0",
                )
            } else {
                (
                    "SELECT live.key, l.create_rev, l.rev, l.version, l.value FROM live \
                     JOIN log l ON l.rev = live.mod_rev WHERE live.key >= ?1 AND live.key < ?2 AND ?3 >= 0 \
                     ORDER BY live.key LIMIT ?4",
                    "SELECT COUNT(*) FROM live WHERE key >= ?1 AND key < ?2 AND ?3 >= 0",
                )
            };
            let revision = at.unwrap_or(current);
            let items = tx
                .prepare_cached(rows_sql)
                .map_err(unavailable)?
                .query_map(params![start, end, revision, limit], |r| {
                    Ok(kv_from(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .map_err(unavailable)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(unavailable)?;
            let mut remaining = 0;
            if opts.limit > 0 && items.len() == opts.limit {
                let after = format!("{}\0", items[items.len() - 1].key);
                remaining = tx
                    .prepare_cached(count_sql)
                    .map_err(unavailable)?
                    .query_row(params![after, end, revision], |r| r.get(0))
                    .map_err(unavailable)?;
            }
            Ok(ListResult { revision, items, more: remaining > 0, remaining })
        })
        .await
    }

    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<KeyValue> {
        validate_key(key)?;
        match self.write(Op::Create { key: key.to_string(), value, ttl }).await? {
            Reply::Kv(kv) => Ok(kv),
            other => Err(unavailable(format!("unexpected writer reply {other:?}"))),
        }
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision, ttl: Option<Duration>) -> Result<KeyValue> {
        validate_key(key)?;
        match self.write(Op::Update { key: key.to_string(), value, expected, ttl }).await? {
            Reply::Kv(kv) => Ok(kv),
            other => Err(unavailable(format!("unexpected writer reply {other:?}"))),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        validate_key(key)?;
        match self.write(Op::Delete { key: key.to_string(), expected }).await? {
            Reply::Deleted(rev, prev) => Ok((rev, prev)),
            other => Err(unavailable(format!("unexpected writer reply {other:?}"))),
        }
    }

    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream> {
        validate_prefix(prefix)?;
        let (tx, stream) = WatchStream::channel(256);
        let watcher = Watcher {
            hub: self.inner.hub.clone(),
            pool: self.inner.pool.clone(),
            prefix: prefix.to_string(),
            end: prefix_end(prefix),
            pos: after_revision.max(0),
            tx,
            progress_interval: self.inner.progress_interval,
        };
        tokio::spawn(watcher.run());
        Ok(stream)
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.inner.hub.state.borrow().current)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.write(Op::Compact { revision }).await.map(|_| ())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.inner.hub.compacted.load(Ordering::Acquire))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Reads

struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

const MAX_IDLE_READERS: usize = 8;

impl ReadPool {
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let conn = self.idle.lock().map_err(unavailable)?.pop();
        let mut conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(unavailable)?;
                c.execute_batch("PRAGMA busy_timeout=10000; PRAGMA cache_size=-8000; PRAGMA mmap_size=268435456;")
                    .map_err(unavailable)?;
                c
            }
        };
        let out = f(&mut conn);
        let mut idle = self.idle.lock().map_err(unavailable)?;
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The watch hub: the ring of recent events and the revision watchers wait on.

#[derive(Clone, Copy, Debug)]
struct HubState {
    current: Revision,
    closed: bool,
}

struct Hub {
    ring: RwLock<Ring>,
    state: watch::Sender<HubState>,
    compacted: AtomicI64,
    /// History up to here has been physically removed.
    compact_done: AtomicI64,
}

struct Ring {
    /// Revision of `events[0]`; every revision produces exactly one event, so they are contiguous.
    start: Revision,
    events: VecDeque<Arc<Event>>,
    capacity: usize,
}

impl Hub {
    fn new(current: Revision, compacted: Revision, compact_done: Revision, capacity: usize) -> Self {
        Hub {
            ring: RwLock::new(Ring { start: current + 1, events: VecDeque::new(), capacity: capacity.max(1) }),
            state: watch::Sender::new(HubState { current, closed: false }),
            compacted: AtomicI64::new(compacted),
            compact_done: AtomicI64::new(compact_done),
        }
    }

    fn publish(&self, events: Vec<Event>) {
        let Some(last) = events.last().map(Event::revision) else {
            return;
        };
        if let Ok(mut ring) = self.ring.write() {
            for ev in events {
                ring.events.push_back(Arc::new(ev));
            }
            while ring.events.len() > ring.capacity {
                ring.events.pop_front();
                ring.start += 1;
            }
        }
        self.state.send_modify(|s| s.current = last);
    }

    /// Up to `max` events after `pos`, or None when the ring no longer holds `pos + 1`.
    fn after(&self, pos: Revision, max: usize) -> Option<Vec<Arc<Event>>> {
        let ring = self.ring.read().ok()?;
        if pos + 1 < ring.start {
            return None;
        }
        let from = (pos + 1 - ring.start) as usize;
        Some(ring.events.iter().skip(from).take(max).cloned().collect())
    }

    fn close(&self) {
        self.state.send_modify(|s| s.closed = true);
    }
}

struct Watcher {
    hub: Arc<Hub>,
    pool: Arc<ReadPool>,
    prefix: String,
    end: String,
    /// Every event up to here has been delivered.
    pos: Revision,
    tx: tokio::sync::mpsc::Sender<Result<Event>>,
    progress_interval: Duration,
}

const WATCH_CHUNK: usize = 512;

impl Watcher {
    async fn run(mut self) {
        let mut state = self.hub.state.subscribe();
        let compacted = self.hub.compacted.load(Ordering::Acquire);
        if self.pos < compacted {
            let current = state.borrow().current;
            let _ = self
                .tx
                .send(Err(StorageError::Compacted { compact_revision: compacted, current_revision: current }))
                .await;
            return;
        }
        let mut last_sent = tokio::time::Instant::now();
        loop {
            let HubState { current, closed } = *state.borrow_and_update();
            if self.pos < current {
                let chunk = match self.hub.after(self.pos, WATCH_CHUNK) {
                    Some(events) => events,
                    None => match self.history(current).await {
                        Ok(events) => events,
                        Err(e) => {
                            let _ = self.tx.send(Err(e)).await;
                            return;
                        }
                    },
                };
                for ev in chunk {
                    self.pos = self.pos.max(ev.revision());
                    let key = ev.key().unwrap_or_default();
                    if key >= self.prefix.as_str() && key < self.end.as_str() {
                        if self.tx.send(Ok((*ev).clone())).await.is_err() {
                            return;
                        }
                        last_sent = tokio::time::Instant::now();
                    }
                }
                continue;
            }
            if closed {
                return;
            }
            tokio::select! {
                changed = state.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep_until(last_sent + self.progress_interval) => {
                    if self.tx.send(Ok(Event::Progress { revision: self.pos })).await.is_err() {
                        return;
                    }
                    last_sent = tokio::time::Instant::now();
                }
                _ = self.tx.closed() => return,
            }
        }
    }

    /// Events after `pos` read back from the log, for a watcher behind the ring. Advances `pos` over the
    /// revisions scanned even when none of them is under the prefix.
    async fn history(&mut self, current: Revision) -> Result<Vec<Arc<Event>>> {
        let (pool, prefix, end, pos) = (self.pool.clone(), self.prefix.clone(), self.end.clone(), self.pos);
        let hi = current.min(pos + 4 * WATCH_CHUNK as i64);
        let events = tokio::task::spawn_blocking(move || {
            pool.with(|conn| {
                let tx = conn.transaction().map_err(unavailable)?;
                let compacted = read_meta(&tx, "compacted").map_err(unavailable)?;
                if pos < compacted {
                    let current = read_meta(&tx, "current").map_err(unavailable)?;
                    return Err(StorageError::Compacted { compact_revision: compacted, current_revision: current });
                }
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT l.rev, l.key, l.deleted, l.create_rev, l.version, l.value, \
                         p.create_rev, p.rev, p.version, p.value \
                         FROM log l LEFT JOIN log p ON p.rev = l.prev_rev \
                         WHERE l.rev > ?1 AND l.rev <= ?2 AND l.key >= ?3 AND l.key < ?4 ORDER BY l.rev",
                    )
                    .map_err(unavailable)?;
                let rows = stmt
                    .query_map(params![pos, hi, prefix, end], |r| {
                        let rev: i64 = r.get(0)?;
                        let key: String = r.get(1)?;
                        let prev = match r.get::<_, Option<i64>>(7)? {
                            Some(prev_rev) => Some(kv_from(key.clone(), r.get(6)?, prev_rev, r.get(8)?, r.get(9)?)),
                            None => None,
                        };
                        Ok(if r.get::<_, i64>(2)? == DELETE {
                            Event::Delete { key, revision: rev, prev }
                        } else {
                            Event::Put { kv: kv_from(key, r.get(3)?, rev, r.get(4)?, r.get(5)?), prev }
                        })
                    })
                    .map_err(unavailable)?;
                rows.map(|r| r.map(Arc::new)).collect::<rusqlite::Result<Vec<_>>>().map_err(unavailable)
            })
        })
        .await
        .map_err(unavailable)??;
        self.pos = hi;
        Ok(events)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The writer

#[derive(Debug)]
enum Op {
    Create { key: String, value: Bytes, ttl: Option<Duration> },
    Update { key: String, value: Bytes, expected: Revision, ttl: Option<Duration> },
    Delete { key: String, expected: Option<Revision> },
    Compact { revision: Revision },
}

#[derive(Debug)]
enum Reply {
    Kv(KeyValue),
    Deleted(Revision, KeyValue),
    Done,
}

struct WriteRequest {
    op: Op,
    /// None for the writer's own requests (TTL expiry).
    reply: Option<oneshot::Sender<Result<Reply>>>,
}

struct Writer {
    conn: Connection,
    rev: Revision,
    compacted: Revision,
    /// History up to here has been physically removed.
    compact_done: Revision,
    next_expiry: Option<i64>,
    hub: Arc<Hub>,
    config: SqliteConfig,
    checkpointer: Checkpointer,
}

/// What applying one op inside the batch transaction produced: a reply, or a refusal that wrote nothing.
type Applied = std::result::Result<(Reply, Option<Event>), StorageError>;

impl Writer {
    fn run(mut self, rx: std_mpsc::Receiver<WriteRequest>) {
        loop {
            let compacting = self.compact_done < self.compacted;
            let wait = match self.next_expiry {
                _ if compacting => Duration::ZERO,
                Some(at) => Duration::from_millis((at - now_ms()).clamp(0, 1000) as u64),
                None => Duration::from_secs(1),
            };
            let first = match rx.recv_timeout(wait) {
                Ok(req) => Some(req),
                Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut batch: Vec<WriteRequest> = first.into_iter().collect();
            while !batch.is_empty() && batch.len() < self.config.max_batch {
                match rx.try_recv() {
                    Ok(req) => batch.push(req),
                    Err(_) => break,
                }
            }
            if self.next_expiry.is_some_and(|at| at <= now_ms()) {
                self.queue_expired(&mut batch);
            }
            if !batch.is_empty() {
                self.commit(batch);
            }
            if self.compact_done < self.compacted {
                self.compact_step();
            }
            self.checkpointer.poke();
        }
        self.hub.close();
        tracing::debug!("embedded store writer stopped");
    }

    /// Adds a delete for every key whose TTL has passed; the next expiry is looked up afterwards.
    fn queue_expired(&mut self, batch: &mut Vec<WriteRequest>) {
        let now = now_ms();
        let expired: rusqlite::Result<Vec<(String, i64)>> = self
            .conn
            .prepare_cached(
                "SELECT key, mod_rev FROM live WHERE expires_at IS NOT NULL AND expires_at <= ?1 \
                 ORDER BY expires_at LIMIT 1000",
            )
            .and_then(|mut s| s.query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?.collect());
        match expired {
            Ok(keys) if keys.is_empty() => self.next_expiry = self.earliest_expiry(),
            Ok(keys) => {
                // The writer's own deletes; the next expiry is looked up again after they commit.
                for (key, rev) in keys {
                    batch.push(WriteRequest { op: Op::Delete { key, expected: Some(rev) }, reply: None });
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading expired keys");
                self.next_expiry = Some(now + 1000);
            }
        }
    }

    fn earliest_expiry(&self) -> Option<i64> {
        self.conn
            .query_row("SELECT MIN(expires_at) FROM live WHERE expires_at IS NOT NULL", [], |r| r.get(0))
            .unwrap_or(Some(now_ms() + 1000))
    }

    fn commit(&mut self, batch: Vec<WriteRequest>) {
        let start_rev = self.rev;
        let start_compacted = self.compacted;
        let mut outcomes: Vec<Applied> = Vec::with_capacity(batch.len());
        let mut events = Vec::with_capacity(batch.len());
        let mut expiry_changed = false;
        let started = Instant::now();
        let result = (|| -> rusqlite::Result<()> {
            // IMMEDIATE: the write lock is taken (waiting out busy_timeout) before the first read, so the snapshot
            // the batch reads is the one it writes on; a deferred transaction that has read cannot wait for it.
            let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let now = now_ms();
            for req in &batch {
                let outcome = apply(&tx, &mut self.rev, &mut self.compacted, &req.op, now)?;
                if let Ok((_, Some(ev))) = &outcome {
                    events.push(ev.clone());
                }
                expiry_changed |= matches!(req.op, Op::Create { ttl: Some(_), .. } | Op::Update { ttl: Some(_), .. })
                    || req.reply.is_none();
                outcomes.push(outcome);
            }
            tx.execute("UPDATE meta SET value = ?1 WHERE name = 'current'", [self.rev])?;
            tx.execute("UPDATE meta SET value = ?1 WHERE name = 'compacted'", [self.compacted])?;
            tx.commit()
        })();
        if let Err(e) = result {
            let code = e.sqlite_error().map(|c| c.extended_code).unwrap_or_default();
            let (ops, after) = (batch.len(), started.elapsed());
            tracing::error!(error = %e, code, ops, ?after, "write batch failed; nothing of it was written");
            self.rev = start_rev;
            self.compacted = start_compacted;
            for req in batch {
                if let Some(reply) = req.reply {
                    let _ = reply.send(Err(unavailable(&e)));
                }
            }
            return;
        }
        if self.compacted != start_compacted {
            self.hub.compacted.store(self.compacted, Ordering::Release);
        }
        self.hub.publish(events);
        if expiry_changed {
            self.next_expiry = self.earliest_expiry();
        }
        for (req, outcome) in batch.into_iter().zip(outcomes) {
            if let Some(reply) = req.reply {
                let _ = reply.send(outcome.map(|(reply, _)| reply));
            }
        }
    }

    /// Removes one step of superseded history: rows replaced by a later write at or below the compacted
    /// revision, and deletion tombstones there. The newest value of each key at that revision stays readable.
    fn compact_step(&mut self) {
        let lo = self.compact_done;
        let hi = self.compacted.min(lo + self.config.compaction_step);
        let result = (|| -> rusqlite::Result<()> {
            let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "DELETE FROM log WHERE rev IN \
                 (SELECT prev_rev FROM log WHERE rev > ?1 AND rev <= ?2 AND prev_rev > 0)",
                [lo, hi],
            )?;
            tx.execute("DELETE FROM log WHERE rev > ?1 AND rev <= ?2 AND deleted = 1", [lo, hi])?;
            tx.execute("UPDATE meta SET value = ?1 WHERE name = 'compact_done'", [hi])?;
            tx.commit()
        })();
        match result {
            Ok(()) => {
                self.compact_done = hi;
                self.hub.compact_done.store(hi, Ordering::Release);
            }
            Err(e) => tracing::warn!(error = %e, "compaction step failed; will retry"),
        }
    }
}

fn expiry(now: i64, ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|t| now + t.as_millis() as i64)
}

/// Applies one op in the batch transaction. The outer error is a database failure (the batch is rolled
/// back); the inner one a refusal that wrote nothing.
fn apply(
    tx: &Transaction<'_>,
    rev: &mut Revision,
    compacted: &mut Revision,
    op: &Op,
    now: i64,
) -> rusqlite::Result<Applied> {
    let insert_log = |rev: i64, key: &str, deleted: i64, create_rev: i64, prev_rev: i64, version: i64, value: &[u8]| {
        tx.prepare_cached(
            "INSERT INTO log(rev, key, deleted, create_rev, prev_rev, version, value) VALUES (?1,?2,?3,?4,?5,?6,?7)",
        )?
        .execute(params![rev, key, deleted, create_rev, prev_rev, version, value])
    };
    match op {
        Op::Create { key, value, ttl } => {
            if tx.prepare_cached("SELECT 1 FROM live WHERE key = ?1")?.exists([key])? {
                return Ok(Err(StorageError::AlreadyExists { key: key.clone() }));
            }
            let new = *rev + 1;
            insert_log(new, key, PUT, new, 0, 1, value)?;
            tx.prepare_cached("INSERT INTO live(key, mod_rev, expires_at) VALUES (?1, ?2, ?3)")?.execute(params![
                key,
                new,
                expiry(now, *ttl)
            ])?;
            *rev = new;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: new,
                mod_revision: new,
                version: 1,
            };
            Ok(Ok((Reply::Kv(kv.clone()), Some(Event::Put { kv, prev: None }))))
        }
        Op::Update { key, value, expected, ttl } => {
            let Some(cur) = get_live(tx, key)? else {
                return Ok(Err(StorageError::NotFound { key: key.clone() }));
            };
            if cur.mod_revision != *expected {
                return Ok(Err(StorageError::Conflict { current: Box::new(cur) }));
            }
            let new = *rev + 1;
            insert_log(new, key, PUT, cur.create_revision, cur.mod_revision, cur.version + 1, value)?;
            tx.prepare_cached("UPDATE live SET mod_rev = ?2, expires_at = ?3 WHERE key = ?1")?.execute(params![
                key,
                new,
                expiry(now, *ttl)
            ])?;
            *rev = new;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: cur.create_revision,
                mod_revision: new,
                version: cur.version + 1,
            };
            Ok(Ok((Reply::Kv(kv.clone()), Some(Event::Put { kv, prev: Some(cur) }))))
        }
        Op::Delete { key, expected } => {
            let Some(cur) = get_live(tx, key)? else {
                return Ok(Err(StorageError::NotFound { key: key.clone() }));
            };
            if expected.is_some_and(|e| e != cur.mod_revision) {
                return Ok(Err(StorageError::Conflict { current: Box::new(cur) }));
            }
            let new = *rev + 1;
            insert_log(new, key, DELETE, cur.create_revision, cur.mod_revision, 0, &[])?;
            tx.prepare_cached("DELETE FROM live WHERE key = ?1")?.execute([key])?;
            *rev = new;
            Ok(Ok((
                Reply::Deleted(new, cur.clone()),
                Some(Event::Delete { key: key.clone(), revision: new, prev: Some(cur) }),
            )))
        }
        Op::Compact { revision } => {
            if *revision <= *compacted {
                return Ok(Err(StorageError::Compacted { compact_revision: *compacted, current_revision: *rev }));
            }
            if *revision > *rev {
                return Ok(Err(StorageError::FutureRevision { requested: *revision, current: *rev }));
            }
            *compacted = *revision;
            Ok(Ok((Reply::Done, None)))
        }
    }
}

/// Copies the WAL back into the database from its own connection and thread, so the writer never stalls on it.
struct Checkpointer {
    tx: Option<std_mpsc::SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    last: Instant,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Self> {
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(unavailable)?;
        conn.execute_batch("PRAGMA busy_timeout=10000;").map_err(unavailable)?;
        let (tx, rx) = std_mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
                let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            })
            .map_err(unavailable)?;
        Ok(Checkpointer { tx: Some(tx), thread: Some(thread), last: Instant::now() })
    }

    /// Asks for a checkpoint at most every 500 ms; never blocks.
    fn poke(&mut self) {
        if self.last.elapsed() >= Duration::from_millis(500) {
            self.last = Instant::now();
            if let Some(tx) = &self.tx {
                let _ = tx.try_send(());
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
