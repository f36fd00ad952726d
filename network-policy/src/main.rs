//! network-policy binary: flags, logging, run until SIGTERM.

use clap::Parser;

/// mimalloc instead of glibc's malloc, as the other daemons.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    runtime::daemon::init_logging();
    let opts = network_policy::Options::parse();
    let stop = runtime::daemon::shutdown_signal();
    if let Err(e) = network_policy::run(opts, stop).await {
        tracing::error!("network-policy: {e}");
        std::process::exit(1);
    }
}
