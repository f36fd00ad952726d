//! kubelet binary: flags, logging, run until SIGTERM.

use clap::Parser;

/// mimalloc instead of glibc's malloc: the daemons allocate and free many small JSON values per request, where
/// glibc's allocator spent about a quarter of the apiserver's CPU (consolidation and chunk unlinking under load).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    runtime::allocator::block_on("kubelet", run());
}

async fn run() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let flags = kubelet::Flags::parse();
    let hollow = (flags.hollow_nodes, flags.hollow_prefix.clone(), flags.kubeconfig.clone(), flags.root_dir.clone());
    let cfg = match kubelet::Config::resolve(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kubelet: {e}");
            std::process::exit(1);
        }
    };
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            let _ = tx.send(true);
        }
    });
    if hollow.0 > 0 {
        let client_cfg = match &hollow.2 {
            Some(p) => client::Config::from_kubeconfig(p),
            None => client::Config::infer(),
        };
        let client_cfg = match client_cfg {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("kubelet: {e}");
                std::process::exit(1);
            }
        };
        let dir = hollow.3.unwrap_or_else(|| std::path::PathBuf::from("/var/lib/kubelet-hollow"));
        match kubelet::hollow::start(&client_cfg, hollow.0, &hollow.1, &dir, rx.clone()).await {
            Ok(handles) => {
                for h in handles {
                    let _ = h.await;
                }
            }
            Err(e) => {
                tracing::error!("kubelet: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if let Err(e) = kubelet::run(cfg, rx).await {
        tracing::error!("kubelet: {e}");
        std::process::exit(1);
    }
}
