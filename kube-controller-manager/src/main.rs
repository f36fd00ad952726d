//! kube-controller-manager binary: flags, logging, leader election, the controllers, until SIGTERM.

use clap::Parser;

/// mimalloc instead of glibc's malloc: the daemons allocate and free many small JSON values per request, where
/// glibc's allocator spent about a quarter of the apiserver's CPU (consolidation and chunk unlinking under load).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    runtime::daemon::init_logging();
    let opts = kube_controller_manager::Options::parse();
    let stop = runtime::daemon::shutdown_signal();
    if let Err(e) = kube_controller_manager::run(opts, stop).await {
        tracing::error!("kube-controller-manager: {e}");
        std::process::exit(1);
    }
}
