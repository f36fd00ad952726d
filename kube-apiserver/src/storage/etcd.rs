//! The etcd backend (HA): etcd v3 through `etcd-client`, keys laid out as upstream's (`/registry/...`), so
//! `etcdctl get --prefix /registry/` shows them. Writes are transactions on the key's modification revision,
//! watches carry previous values and progress, TTLs share leases as upstream's lease manager does.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, Identity, KvClient,
    PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};

use super::{
    DEFAULT_PROGRESS_INTERVAL, Event, KeyValue, ListOptions, ListResult, Result, Revision, Storage, StorageError,
    WatchStream, prefix_end, validate_key, validate_prefix,
};

/// Upstream's key recording the last compaction (outside the prefix, as upstream's compactor writes it).
pub const COMPACT_REV_KEY: &str = "compact_rev_key";

/// Largest gRPC response accepted from etcd.
const MAX_MESSAGE: usize = i32::MAX as usize;

/// How to reach etcd: upstream's `--etcd-servers`, `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`,
/// `--etcd-prefix`.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// A silent watch asks etcd for progress after this long.
    pub progress_interval: Duration,
}

impl EtcdConfig {
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdConfig {
            endpoints,
            prefix: "/registry".to_string(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
        }
    }
}

/// The etcd backend. Cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
    progress_interval: Duration,
    leases: std::sync::Arc<LeaseManager>,
}

fn unavailable(e: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

impl EtcdStore {
    pub async fn connect(config: EtcdConfig) -> Result<Self> {
        let mut options =
            ConnectOptions::new().with_connect_timeout(Duration::from_secs(5)).with_timeout(Duration::from_secs(30));
        let uses_tls = config.endpoints.iter().any(|e| e.starts_with("https://"));
        if uses_tls || config.ca_file.is_some() || config.cert_file.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &config.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(std::fs::read(ca).map_err(unavailable)?));
            }
            match (&config.cert_file, &config.key_file) {
                (Some(cert), Some(key)) => {
                    let cert = std::fs::read(cert).map_err(unavailable)?;
                    let key = std::fs::read(key).map_err(unavailable)?;
                    tls = tls.identity(Identity::from_pem(cert, key));
                }
                (None, None) => {}
                _ => {
                    return Err(unavailable("--etcd-certfile and --etcd-keyfile go together"));
                }
            }
            options = options.with_tls(tls);
        }
        let client = Client::connect(&config.endpoints, Some(options)).await.map_err(unavailable)?;
        let prefix = config.prefix.trim_end_matches('/').to_string();
        let store =
            EtcdStore { client, prefix, progress_interval: config.progress_interval, leases: Default::default() };
        store.current_revision().await?;
        tracing::info!(endpoints = ?config.endpoints, prefix = %store.prefix, "connected to etcd");
        Ok(store)
    }

    /// A KV client that accepts large responses (a list of thousands of objects), as upstream's (MaxInt32).
    fn kv(&self) -> KvClient {
        self.client.kv_client().max_decoding_message_size(MAX_MESSAGE)
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn to_kv(&self, kv: &etcd_client::KeyValue) -> KeyValue {
        let key = String::from_utf8_lossy(kv.key());
        KeyValue {
            key: key.strip_prefix(self.prefix.as_str()).unwrap_or(&key).to_string(),
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            version: kv.version(),
        }
    }

    /// Maps etcd's errors to ours (compaction and future revisions come back as gRPC statuses).
    async fn map_err(&self, e: etcd_client::Error, requested: Revision) -> StorageError {
        let message = e.to_string();
        if message.contains("required revision has been compacted") {
            let compact_revision = self.compacted_revision().await.unwrap_or(0);
            let current_revision = self.current_revision().await.unwrap_or(0);
            return StorageError::Compacted { compact_revision, current_revision };
        }
        if message.contains("required revision is a future revision") {
            let current = self.current_revision().await.unwrap_or(0);
            return StorageError::FutureRevision { requested, current };
        }
        unavailable(message)
    }

    async fn lease_for(&self, ttl: Option<Duration>) -> Result<PutOptions> {
        let Some(ttl) = ttl else {
            return Ok(PutOptions::new());
        };
        let id = self.leases.lease(&self.client, ttl).await?;
        Ok(PutOptions::new().with_lease(id))
    }

    /// The current value, for a compare that failed: NotFound when the key is gone, Conflict otherwise.
    fn refused(&self, key: &str, responses: Vec<TxnOpResponse>) -> StorageError {
        let current = responses.into_iter().find_map(|r| match r {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| self.to_kv(kv)),
            _ => None,
        });
        match current {
            Some(current) => StorageError::Conflict { current: Box::new(current) },
            None => StorageError::NotFound { key: key.to_string() },
        }
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map(|h| h.revision()).unwrap_or(0)
}

impl Storage for EtcdStore {
    async fn get(&self, key: &str, at_revision: Option<Revision>) -> Result<KeyValue> {
        validate_key(key)?;
        let at = at_revision.unwrap_or(0).max(0);
        let resp = match self.client.kv_client().get(self.full(key), Some(GetOptions::new().with_revision(at))).await {
            Ok(r) => r,
            Err(e) => return Err(self.map_err(e, at).await),
        };
        resp.kvs().first().map(|kv| self.to_kv(kv)).ok_or_else(|| StorageError::NotFound { key: key.to_string() })
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        validate_prefix(prefix)?;
        let start = match &opts.start_after {
            Some(after) if after.as_str() >= prefix => format!("{}{after}\0", self.prefix),
            _ => self.full(prefix),
        };
        let at = opts.at_revision.unwrap_or(0).max(0);
        let get = GetOptions::new()
            .with_range(self.full(&prefix_end(prefix)))
            .with_revision(at)
            .with_limit(opts.limit as i64);
        let resp = match self.kv().get(start, Some(get)).await {
            Ok(r) => r,
            Err(e) => return Err(self.map_err(e, at).await),
        };
        let items: Vec<KeyValue> = resp.kvs().iter().map(|kv| self.to_kv(kv)).collect();
        let remaining = if resp.more() { resp.count() - items.len() as i64 } else { 0 };
        let revision = if at > 0 { at } else { header_revision(resp.header()) };
        Ok(ListResult { revision, items, more: resp.more(), remaining })
    }

    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<KeyValue> {
        validate_key(key)?;
        let full = self.full(key);
        let put = self.lease_for(ttl).await?;
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full, value.to_vec(), Some(put))]);
        let resp = self.client.kv_client().txn(txn).await.map_err(unavailable)?;
        if !resp.succeeded() {
            return Err(StorageError::AlreadyExists { key: key.to_string() });
        }
        let rev = header_revision(resp.header());
        Ok(KeyValue { key: key.to_string(), value, create_revision: rev, mod_revision: rev, version: 1 })
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision, ttl: Option<Duration>) -> Result<KeyValue> {
        validate_key(key)?;
        let full = self.full(key);
        let put = self.lease_for(ttl).await?.with_prev_key();
        // Revision 0 would match a missing key; no stored key is at revision 0, so only refuse.
        let compare = if expected > 0 { expected } else { -1 };
        let txn = Txn::new()
            .when([Compare::mod_revision(full.clone(), CompareOp::Equal, compare)])
            .and_then([TxnOp::put(full.clone(), value.to_vec(), Some(put))])
            .or_else([TxnOp::get(full, None)]);
        let resp = self.client.kv_client().txn(txn).await.map_err(unavailable)?;
        if !resp.succeeded() {
            return Err(self.refused(key, resp.op_responses()));
        }
        let rev = header_revision(resp.header());
        let prev = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Put(put) => put.prev_key().map(|kv| self.to_kv(kv)),
            _ => None,
        });
        let prev = prev.ok_or_else(|| unavailable("etcd returned no previous value for an update"))?;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: prev.create_revision,
            mod_revision: rev,
            version: prev.version + 1,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        validate_key(key)?;
        let full = self.full(key);
        let compares = match expected {
            Some(e) => vec![Compare::mod_revision(full.clone(), CompareOp::Equal, if e > 0 { e } else { -1 })],
            None => vec![Compare::create_revision(full.clone(), CompareOp::NotEqual, 0)],
        };
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(full.clone(), Some(DeleteOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(full, None)]);
        let resp = self.client.kv_client().txn(txn).await.map_err(unavailable)?;
        if !resp.succeeded() {
            return Err(self.refused(key, resp.op_responses()));
        }
        let rev = header_revision(resp.header());
        let prev = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Delete(del) => del.prev_kvs().first().map(|kv| self.to_kv(kv)),
            _ => None,
        });
        prev.map(|p| (rev, p)).ok_or_else(|| StorageError::NotFound { key: key.to_string() })
    }

    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream> {
        validate_prefix(prefix)?;
        let options = WatchOptions::new()
            .with_range(self.full(&prefix_end(prefix)))
            .with_start_revision(after_revision.max(0) + 1)
            .with_prev_key()
            .with_progress_notify();
        let mut stream =
            self.client.watch_client().watch(self.full(prefix), Some(options)).await.map_err(unavailable)?;
        let (tx, out) = WatchStream::channel(256);
        let store = self.clone();
        let interval = self.progress_interval;
        tokio::spawn(async move {
            let mut pos = after_revision.max(0);
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            loop {
                let msg = tokio::select! {
                    msg = stream.message() => msg,
                    _ = ticker.tick() => {
                        if stream.request_progress().await.is_err() { return; }
                        continue;
                    }
                    _ = tx.closed() => return,
                };
                let resp = match msg {
                    Ok(Some(resp)) => resp,
                    Ok(None) => {
                        let _ = tx.send(Err(unavailable("etcd closed the watch"))).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(unavailable(e))).await;
                        return;
                    }
                };
                if resp.canceled() {
                    let err = if resp.compact_revision() > 0 {
                        StorageError::Compacted {
                            compact_revision: resp.compact_revision(),
                            current_revision: store.current_revision().await.unwrap_or(0),
                        }
                    } else {
                        unavailable(format!("etcd cancelled the watch: {}", resp.cancel_reason()))
                    };
                    let _ = tx.send(Err(err)).await;
                    return;
                }
                if resp.created() && resp.events().is_empty() {
                    continue;
                }
                if resp.events().is_empty() {
                    let revision = header_revision(resp.header());
                    if revision >= pos {
                        pos = revision;
                        if tx.send(Ok(Event::Progress { revision })).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
                ticker.reset();
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let prev = ev.prev_kv().map(|p| store.to_kv(p));
                    let event = match ev.event_type() {
                        EventType::Put => Event::Put { kv: store.to_kv(kv), prev },
                        EventType::Delete => {
                            Event::Delete { key: store.to_kv(kv).key, revision: kv.mod_revision(), prev }
                        }
                    };
                    pos = event.revision();
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(out)
    }

    async fn current_revision(&self) -> Result<Revision> {
        let resp = self
            .client
            .kv_client()
            .get(COMPACT_REV_KEY, Some(GetOptions::new().with_count_only()))
            .await
            .map_err(unavailable)?;
        Ok(header_revision(resp.header()))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let compacted = self.compacted_revision().await?;
        if revision <= compacted {
            let current_revision = self.current_revision().await?;
            return Err(StorageError::Compacted { compact_revision: compacted, current_revision });
        }
        if let Err(e) = self.kv().compact(revision, None).await {
            return Err(self.map_err(e, revision).await);
        }
        self.client.kv_client().put(COMPACT_REV_KEY, revision.to_string(), None).await.map_err(unavailable)?;
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        let resp = self.client.kv_client().get(COMPACT_REV_KEY, None).await.map_err(unavailable)?;
        Ok(resp.kvs().first().and_then(|kv| std::str::from_utf8(kv.value()).ok()?.parse().ok()).unwrap_or(0))
    }
}

/// Shares one lease among keys with similar TTLs, as upstream's lease manager: a lease is granted for the
/// TTL plus a reuse window (5% of the TTL, at most 60 s) and reused while it expires within that window.
#[derive(Default)]
struct LeaseManager {
    current: Mutex<Option<(i64, Instant)>>,
}

impl LeaseManager {
    async fn lease(&self, client: &Client, ttl: Duration) -> Result<i64> {
        let ttl_secs = ttl.as_secs_f64().ceil().max(1.0) as i64;
        let reuse_secs = ((ttl_secs as f64 * 0.05) as i64).min(60);
        let now = Instant::now();
        let wanted = now + Duration::from_secs(ttl_secs as u64);
        let window = wanted + Duration::from_secs(reuse_secs as u64);
        if let Ok(current) = self.current.lock()
            && let Some((id, expires)) = *current
            && expires >= wanted
            && expires <= window
        {
            return Ok(id);
        }
        let granted = client.lease_client().grant(ttl_secs + reuse_secs, None).await.map_err(unavailable)?;
        if let Ok(mut current) = self.current.lock() {
            *current = Some((granted.id(), now + Duration::from_secs((ttl_secs + reuse_secs) as u64)));
        }
        Ok(granted.id())
    }
}
