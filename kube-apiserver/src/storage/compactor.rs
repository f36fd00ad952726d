//! The periodic compactor, as upstream's: every interval (5 minutes by default) compact to the revision seen at
//! the previous tick, so history lives at least one interval, and never within `min_retain` revisions (1000) of
//! the current one.

use std::sync::Arc;
use std::time::Duration;

use super::{Revision, Storage};

/// Upstream's `--etcd-compaction-interval` default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// Revisions always kept behind the current one.
pub const DEFAULT_MIN_RETAIN: Revision = 1000;

/// The revision to compact to, given the revision seen at the previous tick and the current one.
pub fn target(
    previous_tick: Revision,
    current: Revision,
    compacted: Revision,
    min_retain: Revision,
) -> Option<Revision> {
    let target = previous_tick.min(current - min_retain);
    (target > compacted).then_some(target)
}

/// Runs until the store is dropped by everyone else (the task holds an `Arc`) or the task is aborted.
pub fn spawn<S: Storage>(store: Arc<S>, interval: Duration, min_retain: Revision) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut previous: Revision = 0;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let (Ok(current), Ok(compacted)) = (store.current_revision().await, store.compacted_revision().await)
            else {
                continue;
            };
            if let Some(rev) = target(previous, current, compacted, min_retain) {
                match store.compact(rev).await {
                    Ok(()) => tracing::info!(revision = rev, "compacted storage history"),
                    Err(e) => tracing::warn!(error = %e, revision = rev, "compaction failed"),
                }
            }
            previous = current;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::target;

    #[test]
    fn keeps_one_interval_and_min_retain() {
        // First tick: nothing seen before.
        assert_eq!(target(0, 5000, 0, 1000), None);
        // Second tick: compact to what the first tick saw.
        assert_eq!(target(5000, 9000, 0, 1000), Some(5000));
        // ...but never within min_retain of the current revision.
        assert_eq!(target(5000, 5500, 0, 1000), Some(4500));
        assert_eq!(target(100, 900, 0, 1000), None);
        // Already compacted there.
        assert_eq!(target(5000, 9000, 5000, 1000), None);
    }
}
