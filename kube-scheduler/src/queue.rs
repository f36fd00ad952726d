//! The scheduling queue, as upstream's: an active queue ordered by priority then arrival, a backoff queue (1 s
//! doubling to 10 s per failed attempt) and the unschedulable pods, which go back to active (or backoff) when a
//! cluster event may have made them schedulable, or after five minutes.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long an unschedulable pod waits at most before it is tried again.
const UNSCHEDULABLE_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct QueuedPod {
    pub pod: Arc<Value>,
    pub attempts: u32,
    /// When the pod was first queued (for latency metrics).
    pub since: Instant,
}

#[derive(PartialEq, Eq)]
struct Entry {
    priority: i64,
    seq: u64,
    uid: String,
}

impl Ord for Entry {
    fn cmp(&self, o: &Self) -> Ordering {
        self.priority.cmp(&o.priority).then(o.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum Where {
    Active,
    Backoff(Instant),
    Unschedulable(Instant),
    /// Popped and being scheduled.
    InFlight,
}

#[derive(Default)]
struct Inner {
    active: BinaryHeap<Entry>,
    pods: HashMap<String, (QueuedPod, Where)>,
    seq: u64,
    closed: bool,
    /// A move request arrived while pods were in flight: those go back to active on failure.
    moved_while_in_flight: bool,
}

pub struct Queue {
    inner: Mutex<Inner>,
    notify: Notify,
    initial_backoff: Duration,
    max_backoff: Duration,
}

fn priority(pod: &Value) -> i64 {
    pod.pointer("/spec/priority").and_then(Value::as_i64).unwrap_or(0)
}

impl Queue {
    pub fn new(initial_backoff: Duration, max_backoff: Duration) -> Self {
        Queue { inner: Mutex::default(), notify: Notify::new(), initial_backoff, max_backoff }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push_active(inner: &mut Inner, uid: &str, pod: &Value) {
        inner.seq += 1;
        let seq = inner.seq;
        inner.active.push(Entry { priority: priority(pod), seq, uid: uid.to_string() });
    }

    /// A pod waiting to be scheduled, new or updated. An update to an unschedulable pod tries it again.
    pub fn add(&self, pod: Arc<Value>) {
        let uid = runtime::uid(&pod).to_string();
        let mut inner = self.lock();
        match inner.pods.get_mut(&uid) {
            Some((q, w)) => {
                let spec_changed = q.pod.get("spec") != pod.get("spec")
                    || q.pod.pointer("/metadata/labels") != pod.pointer("/metadata/labels");
                q.pod = pod.clone();
                if matches!(w, Where::Unschedulable(_)) && spec_changed {
                    *w = Where::Active;
                    Self::push_active(&mut inner, &uid, &pod);
                    self.notify.notify_one();
                }
            }
            None => {
                let q = QueuedPod { pod: pod.clone(), attempts: 0, since: Instant::now() };
                inner.pods.insert(uid.clone(), (q, Where::Active));
                Self::push_active(&mut inner, &uid, &pod);
                self.notify.notify_one();
            }
        }
    }

    /// The pod is gone or no longer waits (bound, deleted).
    pub fn delete(&self, uid: &str) {
        self.lock().pods.remove(uid);
    }

    /// The next pod to schedule, waiting for one; None once closed.
    pub async fn pop(&self) -> Option<QueuedPod> {
        loop {
            let notified = self.notify.notified();
            {
                let mut inner = self.lock();
                if inner.closed {
                    return None;
                }
                while let Some(e) = inner.active.pop() {
                    if let Some((q, w)) = inner.pods.get_mut(&e.uid)
                        && *w == Where::Active
                    {
                        *w = Where::InFlight;
                        q.attempts += 1;
                        return Some(q.clone());
                    }
                }
            }
            notified.await;
        }
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let mut d = self.initial_backoff;
        for _ in 1..attempts {
            d = (d * 2).min(self.max_backoff);
        }
        d.min(self.max_backoff)
    }

    /// The pod fits nowhere now: it waits for a cluster event (or five minutes).
    pub fn unschedulable(&self, uid: &str) {
        let mut inner = self.lock();
        let moved = inner.moved_while_in_flight;
        if let Some((q, w)) = inner.pods.get_mut(uid) {
            *w = if moved {
                Where::Backoff(Instant::now() + self.backoff(q.attempts))
            } else {
                Where::Unschedulable(Instant::now())
            };
        }
    }

    /// Scheduling or binding failed for another reason: retry after the backoff.
    pub fn retry(&self, uid: &str) {
        let mut inner = self.lock();
        if let Some((q, w)) = inner.pods.get_mut(uid) {
            *w = Where::Backoff(Instant::now() + self.backoff(q.attempts));
        }
    }

    /// Something changed in the cluster: unschedulable pods move to active (or to backoff if theirs has not
    /// expired), as upstream's MoveAllToActiveOrBackoffQueue.
    pub fn move_all(&self) {
        let mut inner = self.lock();
        let now = Instant::now();
        let mut to_active = Vec::new();
        let mut in_flight = false;
        for (uid, (q, w)) in inner.pods.iter_mut() {
            match *w {
                Where::Unschedulable(since) => {
                    let until = since + self.backoff(q.attempts);
                    if until <= now {
                        *w = Where::Active;
                        to_active.push((uid.clone(), q.pod.clone()));
                    } else {
                        *w = Where::Backoff(until);
                    }
                }
                Where::InFlight => in_flight = true,
                _ => {}
            }
        }
        inner.moved_while_in_flight = in_flight;
        for (uid, pod) in to_active {
            Self::push_active(&mut inner, &uid, &pod);
        }
        drop(inner);
        self.notify.notify_one();
    }

    /// Moves due backoff pods to active and stale unschedulable ones too; call every second.
    pub fn flush(&self) {
        let mut inner = self.lock();
        let now = Instant::now();
        let mut due = Vec::new();
        for (uid, (q, w)) in inner.pods.iter_mut() {
            let ready = match *w {
                Where::Backoff(t) => t <= now,
                Where::Unschedulable(t) => now.duration_since(t) >= UNSCHEDULABLE_MAX,
                _ => false,
            };
            if ready {
                *w = Where::Active;
                due.push((uid.clone(), q.pod.clone()));
            }
        }
        if inner.pods.values().all(|(_, w)| *w != Where::InFlight) {
            inner.moved_while_in_flight = false;
        }
        let any = !due.is_empty();
        for (uid, pod) in due {
            Self::push_active(&mut inner, &uid, &pod);
        }
        drop(inner);
        if any {
            self.notify.notify_one();
        }
    }

    /// Pods by state: (active, backoff, unschedulable).
    pub fn counts(&self) -> (usize, usize, usize) {
        let inner = self.lock();
        let mut c = (0, 0, 0);
        for (_, w) in inner.pods.values() {
            match w {
                Where::Active | Where::InFlight => c.0 += 1,
                Where::Backoff(_) => c.1 += 1,
                Where::Unschedulable(_) => c.2 += 1,
            }
        }
        c
    }

    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
        self.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, prio: i64) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": name, "uid": name}, "spec": {"priority": prio}}))
    }

    #[tokio::test(start_paused = true)]
    async fn priority_then_arrival_backoff_and_unschedulable() {
        let q = Queue::new(Duration::from_secs(1), Duration::from_secs(10));
        q.add(pod("low", 0));
        q.add(pod("high", 10));
        q.add(pod("low2", 0));
        assert_eq!(runtime::name(&q.pop().await.unwrap().pod), "high");
        assert_eq!(runtime::name(&q.pop().await.unwrap().pod), "low");
        let p = q.pop().await.unwrap();
        assert_eq!(runtime::name(&p.pod), "low2");
        q.retry("low2");
        assert_eq!(q.counts(), (2, 1, 0));
        tokio::time::advance(Duration::from_millis(1100)).await;
        q.flush();
        assert_eq!(q.pop().await.unwrap().attempts, 2);
        q.unschedulable("low2");
        q.flush();
        assert_eq!(q.counts().2, 1, "waits for an event");
        q.move_all();
        tokio::time::advance(Duration::from_secs(3)).await;
        q.flush();
        assert_eq!(q.counts().2, 0);
        assert_eq!(runtime::name(&q.pop().await.unwrap().pod), "low2");
        // Backoff doubles up to the maximum.
        assert_eq!(q.backoff(1), Duration::from_secs(1));
        assert_eq!(q.backoff(3), Duration::from_secs(4));
        assert_eq!(q.backoff(9), Duration::from_secs(10));
    }
}
