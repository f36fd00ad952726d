//! cluster-dns binary: flags, logging, the server until SIGTERM.

/// mimalloc instead of glibc's malloc, as the other daemons.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    runtime::allocator::block_on("cluster-dns", run());
}

async fn run() {
    runtime::daemon::init_logging();
    let opts = match cluster_dns::Options::parse_args(std::env::args()) {
        Ok(o) => o,
        Err(e) => e.exit(),
    };
    let stop = runtime::daemon::shutdown_signal();
    if let Err(e) = cluster_dns::run(opts, stop).await {
        tracing::error!("cluster-dns: {e}");
        std::process::exit(1);
    }
}
