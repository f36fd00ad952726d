//! Memory a daemon freed goes back to the system once the daemon is idle again: its tokio runtime's worker threads
//! ask the allocator to return free pages when they park, at most every few seconds: mimalloc collects their heaps
//! (and purges freed pages at once), glibc trims its arenas (the kubelet runs on glibc's malloc).
//!
//! Without it, mimalloc purges freed pages lazily, on later allocations: a kubelet that ran 100 pods and went back
//! to none kept the pages of its busiest moment resident, as nothing allocated enough to trigger the purge; glibc
//! returns only the top of its heap by itself.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How often a parking worker thread collects at most.
const INTERVAL: Duration = Duration::from_secs(5);

/// A multi-threaded tokio runtime (every driver enabled) whose worker threads collect when they park.
pub fn tokio_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().on_thread_park(collect_when_idle).build()
}

/// Runs a daemon's main future on [`tokio_runtime`]; exits with a message when the runtime cannot start.
pub fn block_on<F: std::future::Future>(daemon: &str, main: F) -> F::Output {
    match tokio_runtime() {
        Ok(rt) => rt.block_on(main),
        Err(e) => {
            eprintln!("{daemon}: starting the async runtime: {e}");
            std::process::exit(1);
        }
    }
}

/// Collects this thread's mimalloc heap and purges the freed pages, and returns glibc's free pages, unless it did so
/// less than [`INTERVAL`] ago. Each is cheap when its allocator holds little.
#[allow(unsafe_code)]
pub fn collect_when_idle() {
    thread_local!(static LAST: Cell<Option<Instant>> = const { Cell::new(None) });
    let now = Instant::now();
    if LAST.get().is_some_and(|t| now.duration_since(t) < INTERVAL) {
        return;
    }
    LAST.set(Some(now));
    // SAFETY: mi_collect takes no pointers and may be called from any thread at any time; it only frees memory
    // mimalloc itself holds as free.
    unsafe { libmimalloc_sys::mi_collect(true) };
    // SAFETY: malloc_trim takes a size and no pointers, and may be called from any thread (glibc takes each arena's
    // lock); it only returns pages glibc holds as free.
    unsafe { libc::malloc_trim(0) };
}
