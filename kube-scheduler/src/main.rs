//! kube-scheduler binary: flags, logging, leader election, the scheduling loop, until SIGTERM.

use clap::Parser;

#[tokio::main]
async fn main() {
    runtime::daemon::init_logging();
    let opts = kube_scheduler::Options::parse();
    let stop = runtime::daemon::shutdown_signal();
    if let Err(e) = kube_scheduler::run(opts, stop).await {
        tracing::error!("kube-scheduler: {e}");
        std::process::exit(1);
    }
}
