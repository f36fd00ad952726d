//! kube-apiserver binary: flags, logging, run; `kube-apiserver snapshot ...` backs up and restores the embedded store.

use clap::Parser;

/// mimalloc instead of glibc's malloc: the daemons allocate and free many small JSON values per request, where
/// glibc's allocator spent about a quarter of the apiserver's CPU (consolidation and chunk unlinking under load).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    // `kube-apiserver snapshot save|restore|status`: backup and restore of the embedded store.
    if std::env::args().nth(1).as_deref() == Some("snapshot") {
        std::process::exit(kube_apiserver::storage::snapshot::run_cli(std::env::args().skip(1)));
    }
    let opts = kube_apiserver::Options::parse();
    if let Err(e) = kube_apiserver::run(opts).await {
        tracing::error!("kube-apiserver: {e}");
        std::process::exit(1);
    }
}
