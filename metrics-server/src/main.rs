//! metrics-server binary: flags, logging, the server until SIGTERM.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    runtime::daemon::init_logging();
    let opts = metrics_server::Options::parse();
    let stop = runtime::daemon::shutdown_signal();
    if let Err(e) = metrics_server::run(opts, stop).await {
        tracing::error!("metrics-server: {e}");
        std::process::exit(1);
    }
}
