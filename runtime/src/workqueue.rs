//! The work queue of controllers, with client-go's semantics (util/workqueue):
//!
//! - [`WorkQueue::add`] deduplicates: a key already waiting is not queued twice;
//! - [`WorkQueue::get`] hands a key to one worker, which owns it until [`WorkQueue::done`]: a key is never
//!   processed by two workers at once; a key added while it is being processed is queued again on `done`;
//! - [`WorkQueue::add_after`] queues a key after a delay (the earliest of several pending delays wins);
//! - [`WorkQueue::add_rate_limited`] delays a key by its per-key exponential backoff (5 ms doubling to 1000 s,
//!   upstream's default item limiter), which [`WorkQueue::forget`] resets;
//! - [`WorkQueue::shutdown`] makes `add` a no-op and every `get` (waiting or future) return `None`. Unlike
//!   client-go, queued keys are not drained after a shutdown: a controller that lost leadership stops at once.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Per-key exponential backoff settings.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RateLimit {
    /// Upstream's `DefaultItemBasedRateLimiter`: 5 ms doubling to 1000 s.
    fn default() -> Self {
        RateLimit { base_delay: Duration::from_millis(5), max_delay: Duration::from_secs(1000) }
    }
}

impl RateLimit {
    /// The delay after `failures` earlier failures.
    pub fn delay(&self, failures: u32) -> Duration {
        2u32.checked_pow(failures)
            .and_then(|m| self.base_delay.checked_mul(m))
            .map_or(self.max_delay, |d| d.min(self.max_delay))
    }
}

struct State<K> {
    queue: VecDeque<K>,
    /// Keys that need processing (queued, or re-added while processing).
    dirty: HashSet<K>,
    processing: HashSet<K>,
    /// Delayed keys by (ready time, sequence).
    waiting: BTreeMap<(Instant, u64), K>,
    waiting_keys: HashMap<K, (Instant, u64)>,
    seq: u64,
    failures: HashMap<K, u32>,
    shutting_down: bool,
}

impl<K: Hash + Eq + Clone> State<K> {
    fn add(&mut self, key: K) -> bool {
        if self.shutting_down || self.dirty.contains(&key) {
            return false;
        }
        self.dirty.insert(key.clone());
        if self.processing.contains(&key) {
            return false;
        }
        self.queue.push_back(key);
        true
    }

    /// Moves delayed keys whose time has come to the queue.
    fn promote(&mut self, now: Instant) -> bool {
        let mut added = false;
        while let Some(entry) = self.waiting.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.waiting_keys.remove(&key);
            added |= self.add(key);
        }
        added
    }
}

struct Inner<K> {
    state: Mutex<State<K>>,
    /// Woken on every change a getter may care about (new key, earlier deadline, shutdown).
    changed: Notify,
    rate: RateLimit,
}

/// A work queue of keys. Cheap to clone; clones share the queue.
pub struct WorkQueue<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        WorkQueue { inner: self.inner.clone() }
    }
}

impl<K: Hash + Eq + Clone> Default for WorkQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq + Clone> WorkQueue<K> {
    /// A queue with upstream's default per-key backoff.
    pub fn new() -> Self {
        Self::with_rate_limit(RateLimit::default())
    }

    pub fn with_rate_limit(rate: RateLimit) -> Self {
        WorkQueue {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    dirty: HashSet::new(),
                    processing: HashSet::new(),
                    waiting: BTreeMap::new(),
                    waiting_keys: HashMap::new(),
                    seq: 0,
                    failures: HashMap::new(),
                    shutting_down: false,
                }),
                changed: Notify::new(),
                rate,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<K>> {
        // Nothing panics while holding the lock.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `key` unless it is already waiting; a key being processed is queued again when it is done.
    pub fn add(&self, key: K) {
        if self.state().add(key) {
            self.inner.changed.notify_waiters();
        }
    }

    /// Queues `key` after `delay` (at once for zero). A key already delayed keeps the earlier time.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let at = Instant::now() + delay;
        let mut st = self.state();
        if st.shutting_down {
            return;
        }
        if let Some(&(existing, seq)) = st.waiting_keys.get(&key) {
            if existing <= at {
                return;
            }
            st.waiting.remove(&(existing, seq));
        }
        st.seq += 1;
        let slot = (at, st.seq);
        st.waiting.insert(slot, key.clone());
        st.waiting_keys.insert(key, slot);
        drop(st);
        // Getters sleeping until a later deadline must look again.
        self.inner.changed.notify_waiters();
    }

    /// Queues `key` after its backoff (5 ms, 10 ms, 20 ms, ... up to 1000 s), counting one more failure.
    pub fn add_rate_limited(&self, key: K) {
        let delay = {
            let mut st = self.state();
            let failures = st.failures.entry(key.clone()).or_insert(0);
            let delay = self.inner.rate.delay(*failures);
            *failures = failures.saturating_add(1);
            delay
        };
        self.add_after(key, delay);
    }

    /// Resets the backoff of `key` (after it was processed successfully).
    pub fn forget(&self, key: &K) {
        self.state().failures.remove(key);
    }

    /// How many times `key` was rate-limited since it was last forgotten.
    pub fn num_requeues(&self, key: &K) -> u32 {
        self.state().failures.get(key).copied().unwrap_or(0)
    }

    /// The next key to process; the caller owns it until [`WorkQueue::done`]. `None` once the queue is shut down.
    pub async fn get(&self) -> Option<K> {
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a change made after the look wakes us.
            changed.as_mut().enable();
            let deadline = {
                let mut st = self.state();
                if st.shutting_down {
                    return None;
                }
                st.promote(Instant::now());
                if let Some(key) = st.queue.pop_front() {
                    st.dirty.remove(&key);
                    st.processing.insert(key.clone());
                    return Some(key);
                }
                st.waiting.first_key_value().map(|((at, _), _)| *at)
            };
            match deadline {
                Some(at) => {
                    tokio::select! {
                        _ = &mut changed => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// Marks `key` processed; if it was added meanwhile, it is queued again.
    pub fn done(&self, key: &K) {
        let mut st = self.state();
        st.processing.remove(key);
        if st.dirty.contains(key) && !st.shutting_down {
            st.queue.push_back(key.clone());
            drop(st);
            self.inner.changed.notify_waiters();
        }
    }

    /// Stops the queue: adds are ignored and every `get` returns `None`.
    pub fn shutdown(&self) {
        let mut st = self.state();
        st.shutting_down = true;
        st.queue.clear();
        st.waiting.clear();
        st.waiting_keys.clear();
        drop(st);
        self.inner.changed.notify_waiters();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.state().shutting_down
    }

    /// Keys ready to be handed out (not counting delayed or in-process ones).
    pub fn len(&self) -> usize {
        let mut st = self.state();
        st.promote(Instant::now());
        st.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys waiting for their delay.
    pub fn delayed_len(&self) -> usize {
        self.state().waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const T: Duration = Duration::from_secs(5);

    async fn get<K: Hash + Eq + Clone>(q: &WorkQueue<K>) -> Option<K> {
        tokio::time::timeout(T, q.get()).await.expect("get timed out")
    }

    #[tokio::test]
    async fn deduplicates_pending_keys() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(get(&q).await, Some("a"));
        assert_eq!(get(&q).await, Some("b"));
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn key_added_while_processing_is_requeued_after_done() {
        let q = WorkQueue::new();
        q.add("a");
        let k = get(&q).await.unwrap();
        q.add("a");
        q.add("a");
        // Not handed to a second worker while the first holds it.
        assert!(tokio::time::timeout(Duration::from_millis(50), q.get()).await.is_err());
        assert_eq!(q.len(), 0);
        q.done(&k);
        assert_eq!(q.len(), 1);
        assert_eq!(get(&q).await, Some("a"));
        q.done(&"a");
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn waiting_getter_wakes_on_add_and_workers_get_distinct_keys() {
        let q: WorkQueue<u32> = WorkQueue::new();
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move { tokio::time::timeout(T, q.get()).await })
            })
            .collect();
        tokio::task::yield_now().await;
        for k in 0..4 {
            q.add(k);
        }
        let mut got = Vec::new();
        for w in workers {
            got.push(w.await.unwrap().unwrap().unwrap());
        }
        got.sort();
        assert_eq!(got, [0, 1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_waits_and_keeps_the_earliest_time() {
        let q = WorkQueue::new();
        let start = Instant::now();
        q.add_after("a", Duration::from_secs(10));
        q.add_after("a", Duration::from_secs(3));
        q.add_after("a", Duration::from_secs(7));
        assert_eq!(q.delayed_len(), 1);
        assert!(q.is_empty());
        assert_eq!(get(&q).await, Some("a"));
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        q.done(&"a");
        // An earlier add_after wakes a getter sleeping until a later deadline.
        q.add_after("b", Duration::from_secs(60));
        let q2 = q.clone();
        let getter = tokio::spawn(async move { q2.get().await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        q.add_after("c", Duration::from_secs(1));
        assert_eq!(tokio::time::timeout(T, getter).await.unwrap().unwrap(), Some("c"));
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_backoff_doubles_and_forget_resets() {
        let q = WorkQueue::new();
        let mut delays = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            q.add_rate_limited("k");
            let k = get(&q).await.unwrap();
            delays.push(start.elapsed().as_millis());
            q.done(&k);
        }
        assert_eq!(delays, [5, 10, 20, 40, 80]);
        assert_eq!(q.num_requeues(&"k"), 5);
        q.forget(&"k");
        assert_eq!(q.num_requeues(&"k"), 0);
        let start = Instant::now();
        q.add_rate_limited("k");
        get(&q).await;
        assert_eq!(start.elapsed(), Duration::from_millis(5));
        let r = RateLimit::default();
        assert_eq!(r.delay(17), Duration::from_millis(5 << 17));
        assert_eq!(r.delay(18), Duration::from_secs(1000));
        assert_eq!(r.delay(1000), Duration::from_secs(1000));
    }

    #[tokio::test]
    async fn shutdown_ends_waiting_getters() {
        let q: WorkQueue<&str> = WorkQueue::new();
        let getters: Vec<_> = (0..3)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move { q.get().await })
            })
            .collect();
        tokio::task::yield_now().await;
        q.shutdown();
        for g in getters {
            assert_eq!(tokio::time::timeout(T, g).await.unwrap().unwrap(), None);
        }
        q.add("a");
        assert_eq!(get(&q).await, None);
        assert!(q.is_shutting_down());
    }
}
