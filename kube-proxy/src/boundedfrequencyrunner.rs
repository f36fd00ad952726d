//! Runs a function when asked, but not more often than a burst followed by one run per `minInterval`, and at
//! least every `maxInterval` (upstream's `pkg/util/async/bounded_frequency_runner.go`). Requests made while a
//! run is pending or rate-limited coalesce into one run; a failed run asks for a retry after a delay.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// Asks the loop for runs. Cheap to clone.
#[derive(Clone)]
pub struct BoundedFrequencyRunner {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    min_interval: Duration,
    max_interval: Duration,
    burst: u32,
    notify: Notify,
    /// Set by [`BoundedFrequencyRunner::run`] (a wake-up without it only moves the retry deadline).
    run_requested: std::sync::atomic::AtomicBool,
    retry_at: Mutex<Option<Instant>>,
}

impl BoundedFrequencyRunner {
    pub fn new(name: &str, min_interval: Duration, max_interval: Duration, burst: u32) -> Self {
        BoundedFrequencyRunner {
            shared: Arc::new(Shared {
                name: name.to_string(),
                min_interval,
                max_interval,
                burst: burst.max(1),
                notify: Notify::new(),
                run_requested: Default::default(),
                retry_at: Mutex::new(None),
            }),
        }
    }

    /// Requests a run as soon as the rate limit allows.
    pub fn run(&self) {
        self.shared.run_requested.store(true, std::sync::atomic::Ordering::SeqCst);
        self.shared.notify.notify_one();
    }

    /// Requests a run after `d` at the latest (an earlier pending retry wins).
    pub fn retry_after(&self, d: Duration) {
        let at = Instant::now() + d;
        let mut r = self.shared.retry_at.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none_or(|cur| at < cur) {
            *r = Some(at);
        }
        drop(r);
        // Wake the loop so it recomputes its deadline (the run itself still waits for the retry time).
        self.shared.notify.notify_one();
    }

    /// Runs `f` (a blocking function, run on the blocking pool) as requested until `stop`; a failing `f` asks for
    /// a retry with [`BoundedFrequencyRunner::retry_after`].
    pub async fn run_loop<F>(&self, f: F, mut stop: watch::Receiver<bool>)
    where
        F: Fn() + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let s = &self.shared;
        let per_token = s.min_interval;
        let mut tokens = s.burst as f64;
        let mut last_refill = Instant::now();
        let mut next_periodic = Instant::now() + s.max_interval;
        let mut requested = false;
        loop {
            let retry = *s.retry_at.lock().unwrap_or_else(|e| e.into_inner());
            let deadline = retry.map_or(next_periodic, |r| r.min(next_periodic));
            if !requested {
                tokio::select! {
                    _ = s.notify.notified() => {
                        if !s.run_requested.swap(false, std::sync::atomic::Ordering::SeqCst) {
                            continue;
                        }
                        requested = true;
                    }
                    _ = tokio::time::sleep_until(deadline) => requested = true,
                    _ = stop.changed() => return,
                }
            }
            // Refill the bucket, and wait for a token if none is left.
            if !per_token.is_zero() {
                let now = Instant::now();
                tokens = (tokens + now.duration_since(last_refill).as_secs_f64() / per_token.as_secs_f64())
                    .min(s.burst as f64);
                last_refill = now;
                if tokens < 1.0 {
                    let wait = per_token.mul_f64(1.0 - tokens);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return,
                    }
                    continue;
                }
                tokens -= 1.0;
            }
            requested = false;
            s.run_requested.store(false, std::sync::atomic::Ordering::SeqCst);
            *s.retry_at.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let run = f.clone();
            if tokio::task::spawn_blocking(move || run()).await.is_err() {
                tracing::error!(runner = %s.name, "run panicked");
            }
            next_periodic = Instant::now() + s.max_interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn bursts_then_limits_and_coalesces() {
        let runner = BoundedFrequencyRunner::new("test", Duration::from_millis(200), Duration::from_secs(3600), 2);
        let count = Arc::new(AtomicUsize::new(0));
        let (stop_tx, stop) = watch::channel(false);
        let c = count.clone();
        let r = runner.clone();
        let task = tokio::spawn(async move {
            r.run_loop(
                move || {
                    c.fetch_add(1, Ordering::SeqCst);
                },
                stop,
            )
            .await
        });
        let start = std::time::Instant::now();
        for _ in 0..2 {
            runner.run();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(count.load(Ordering::SeqCst), 2, "the burst runs at once");
        // Many requests while rate-limited: one more run, after about minInterval.
        for _ in 0..10 {
            runner.run();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(count.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(count.load(Ordering::SeqCst), 3);
        assert!(start.elapsed() >= Duration::from_millis(150));
        // A retry runs after its delay without another request.
        runner.retry_after(Duration::from_millis(100));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(count.load(Ordering::SeqCst), 4);
        let _ = stop_tx.send(true);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn runs_every_max_interval() {
        let runner = BoundedFrequencyRunner::new("test", Duration::from_millis(10), Duration::from_millis(100), 2);
        let count = Arc::new(AtomicUsize::new(0));
        let (stop_tx, stop) = watch::channel(false);
        let c = count.clone();
        let r = runner.clone();
        let task = tokio::spawn(async move {
            r.run_loop(
                move || {
                    c.fetch_add(1, Ordering::SeqCst);
                },
                stop,
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(350)).await;
        let n = count.load(Ordering::SeqCst);
        assert!((2..=4).contains(&n), "{n} periodic runs");
        let _ = stop_tx.send(true);
        task.await.unwrap();
    }
}
