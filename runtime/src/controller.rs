//! The controller loop: informers whose notifications map to keys, a [`WorkQueue`] of those keys, and N workers
//! calling a level-triggered `reconcile(key)`. A key is never reconciled by two workers at once; an error
//! requeues it with per-key backoff, [`Action::RequeueAfter`] requeues it after a delay, and a periodic resync of
//! every watched object (client-go's resync period) is the safety net for anything missed.
//!
//! ```ignore
//! let pods = factory.informer_for("", "v1", "pods", InformerParams::all())?;
//! Controller::new(Config::default())
//!     .watches(&pods, |n| vec![n.key()])
//!     .run(move |key: String| async move { reconcile(&key).await }, shutdown)
//!     .await;
//! ```

use std::fmt::{Debug, Display};
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

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
        self.sources.push(Source { informer: informer.clone(), rx, map: Box::new(map) });
        self
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
        let mut feeders = tokio::task::JoinSet::new();
        for Source { mut rx, map, .. } in sources {
            let queue = queue.clone();
            feeders.spawn(async move {
                while let Some(n) = rx.recv().await {
                    for key in map(&n) {
                        queue.add(key);
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
                workers.spawn(worker(queue.clone(), reconcile.clone()));
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

async fn worker<K, R, Fut, E>(queue: WorkQueue<K>, reconcile: Arc<R>)
where
    K: Hash + Eq + Clone + Debug,
    R: Fn(K) -> Fut,
    Fut: Future<Output = Result<Action, E>>,
    E: Display,
{
    while let Some(key) = queue.get().await {
        match reconcile(key.clone()).await {
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
