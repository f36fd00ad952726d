//! The controller loop: informers whose notifications map to keys, a [`WorkQueue`] of those keys, and N workers
//! calling a level-triggered `reconcile(key)`. A key is never reconciled by two workers at once; an error
//! requeues it with per-key backoff, [`Action::RequeueAfter`] requeues it after a delay, and a periodic resync of
//! every watched object (client-go's resync period) is the safety net for anything missed.
//!
//! A source added with [`Controller::watches_batched`] coalesces its notifications: a key it queues waits ten times
//! as long as that key's last reconcile took, at most 1 s (nothing for keys that reconcile in under a
//! millisecond). A ReplicaSet
//! of 10,000 pods, whose status sync reads every pod, is then synced a few times a second while its pods start
//! instead of after every pod update (upstream's endpoints controllers batch pod updates the same way, with a
//! fixed `--endpoint-updates-batch-period`).
//!
//! ```ignore
//! let pods = factory.informer_for("", "v1", "pods", InformerParams::all())?;
//! Controller::new(Config::default())
//!     .watches(&pods, |n| vec![n.key()])
//!     .run(move |key: String| async move { reconcile(&key).await }, shutdown)
//!     .await;
//! ```

use std::collections::HashMap;
use std::fmt::{Debug, Display};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::informer::{Informer, Notification};
use crate::workqueue::{RateLimit, WorkQueue};

/// What to do with a key after a successful reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing until the next change.
    Done,
    /// Reconcile again after this long (e.g. to check a timeout).
    RequeueAfter(Duration),
}

/// How a controller runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Concurrent reconciles (of different keys).
    pub workers: usize,
    /// Every watched object is mapped and queued again this often (None: never).
    pub resync: Option<Duration>,
    /// Backoff of keys whose reconcile failed.
    pub rate_limit: RateLimit,
}

impl Default for Config {
    fn default() -> Self {
        Config { workers: 1, resync: Some(Duration::from_secs(600)), rate_limit: RateLimit::default() }
    }
}

type Mapper<K> = Box<dyn Fn(&Notification) -> Vec<K> + Send + Sync>;

struct Source<K> {
    informer: Informer,
    rx: mpsc::UnboundedReceiver<Notification>,
    map: Mapper<K>,
    batched: bool,
}

/// Reconciles shorter than this are not remembered (and their keys are never delayed).
const BATCH_MIN: Duration = Duration::from_millis(1);
/// The longest a batched key waits.
const BATCH_MAX: Duration = Duration::from_secs(1);

/// How long the last reconcile of each slow key took.
struct Durations<K>(Mutex<HashMap<K, Duration>>);

impl<K: Hash + Eq> Durations<K> {
    fn record(&self, key: K, took: Duration) {
        let Ok(mut m) = self.0.lock() else { return };
        if took >= BATCH_MIN {
            m.insert(key, took);
        } else {
            m.remove(&key);
        }
    }

    /// The wait of a batched notification for `key`: ten times its last reconcile, at most `BATCH_MAX`.
    fn delay(&self, key: &K) -> Duration {
        let took = self.0.lock().ok().and_then(|m| m.get(key).copied()).unwrap_or_default();
        (took * 10).min(BATCH_MAX)
    }
}

/// A controller under construction: add sources with [`Controller::watches`], then [`Controller::run`].
pub struct Controller<K> {
    config: Config,
    queue: WorkQueue<K>,
    sources: Vec<Source<K>>,
}

impl<K> Controller<K>
where
    K: Hash + Eq + Clone + Debug + Send + Sync + 'static,
{
    pub fn new(config: Config) -> Self {
        let queue = WorkQueue::with_rate_limit(config.rate_limit);
        Controller { config, queue, sources: Vec::new() }
    }

    /// The controller's queue, for keys from elsewhere (timers, other channels).
    pub fn queue(&self) -> WorkQueue<K> {
        self.queue.clone()
    }

    /// Queues the keys `map` returns for each notification of `informer` (including resyncs). Subscribes now,
    /// so nothing that happens before [`Controller::run`] is missed.
    pub fn watches(
        mut self,
        informer: &Informer,
        map: impl Fn(&Notification) -> Vec<K> + Send + Sync + 'static,
    ) -> Self {
        let rx = match self.config.resync {
            Some(period) => informer.subscribe_with_resync(period),
            None => informer.subscribe(),
        };
        self.sources.push(Source { informer: informer.clone(), rx, map: Box::new(map), batched: false });
        self
    }

    /// As [`Controller::watches`], but the keys wait before they are queued, ten times as long as their last
    /// reconcile took, so that many notifications for a slow key make one reconcile.
    pub fn watches_batched(
        self,
        informer: &Informer,
        map: impl Fn(&Notification) -> Vec<K> + Send + Sync + 'static,
    ) -> Self {
        let mut this = self.watches(informer, map);
        if let Some(s) = this.sources.last_mut() {
            s.batched = true;
        }
        this
    }

    /// Runs until `shutdown` completes: waits for every informer's first sync, then reconciles with
    /// `config.workers` workers. On shutdown the queue stops and the workers finish their current key.
    pub async fn run<R, Fut, E>(self, reconcile: R, shutdown: impl Future<Output = ()>)
    where
        R: Fn(K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let Controller { config, queue, sources } = self;
        let informers: Vec<Informer> = sources.iter().map(|s| s.informer.clone()).collect();
        let durations = Arc::new(Durations(Mutex::new(HashMap::new())));
        let mut feeders = tokio::task::JoinSet::new();
        for Source { mut rx, map, batched, .. } in sources {
            let (queue, durations) = (queue.clone(), durations.clone());
            feeders.spawn(async move {
                while let Some(n) = rx.recv().await {
                    for key in map(&n) {
                        match batched {
                            true => {
                                let delay = durations.delay(&key);
                                queue.add_after(key, delay)
                            }
                            false => queue.add(key),
                        }
                    }
                }
            });
        }
        tokio::pin!(shutdown);
        let synced = async {
            for i in &informers {
                if !i.wait_synced().await {
                    return false;
                }
            }
            true
        };
        let start = tokio::select! {
            s = synced => s,
            _ = &mut shutdown => false,
        };
        let mut workers = tokio::task::JoinSet::new();
        if start {
            let reconcile = Arc::new(reconcile);
            for _ in 0..config.workers.max(1) {
                workers.spawn(worker(queue.clone(), reconcile.clone(), durations.clone()));
            }
            shutdown.await;
        } else {
            tracing::warn!("controller: informers stopped before they synced");
        }
        queue.shutdown();
        feeders.abort_all();
        while workers.join_next().await.is_some() {}
    }
}

async fn worker<K, R, Fut, E>(queue: WorkQueue<K>, reconcile: Arc<R>, durations: Arc<Durations<K>>)
where
    K: Hash + Eq + Clone + Debug,
    R: Fn(K) -> Fut,
    Fut: Future<Output = Result<Action, E>>,
    E: Display,
{
    while let Some(key) = queue.get().await {
        let started = Instant::now();
        let result = reconcile(key.clone()).await;
        durations.record(key.clone(), started.elapsed());
        match result {
            Ok(Action::Done) => queue.forget(&key),
            Ok(Action::RequeueAfter(d)) => {
                queue.forget(&key);
                queue.add_after(key.clone(), d);
            }
            Err(e) => {
                tracing::warn!(key = ?key, error = %e, requeues = queue.num_requeues(&key), "reconcile failed; requeued");
                queue.add_rate_limited(key.clone());
            }
        }
        queue.done(&key);
    }
}
