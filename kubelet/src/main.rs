//! kubelet binary: flags, logging, run until SIGTERM.

use clap::Parser;

/// glibc's malloc, where the other daemons use mimalloc: the kubelet's load is light, and what matters is that the
/// memory of a busy moment goes back once its pods are gone. glibc's `malloc_trim` (`runtime::allocator`) returns
/// every free 4 KiB page; mimalloc keeps a 64 KiB page resident for any small object still in it, and after 300
/// pods came and went the kubelet stayed 5.3-5.8 MB of anonymous memory above idle with it (2.9-3.4 MB with glibc).
#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

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
