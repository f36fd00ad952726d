//! kube-proxy binary: flags, logging, the proxy until SIGTERM (or `--cleanup`).

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    runtime::allocator::block_on("kube-proxy", run());
}

async fn run() {
    runtime::daemon::init_logging();
    let opts = kube_proxy::Options::parse();
    let stop = runtime::daemon::shutdown_signal();
    if let Err(e) = kube_proxy::run(opts, stop).await {
        tracing::error!("kube-proxy: {e}");
        std::process::exit(1);
    }
}
