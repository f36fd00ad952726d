//! network-policy: NetworkPolicy (`networking.k8s.io/v1`) enforcement on every node, as kube-router's
//! `--run-firewall` (which k3s bundles): a [`controller`] watches NetworkPolicies, Pods and Namespaces through shared
//! informers, resolves the policies for the pods of its node ([`policy`]) and programs one nftables table,
//! `inet kube-network-policy` ([`ruleset`], applied with `nft -f` by [`nftables`]). Runs as a DaemonSet or a
//! systemd unit (`deploy/network-policy.*`), or in-process ([`Controller`]).

pub mod controller;
pub mod nftables;
pub mod policy;
pub mod ruleset;
pub mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use controller::Controller;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The flags (kube-router's and kube-proxy's names where they have one).
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "network-policy", version, about = "Enforces NetworkPolicies for the pods of this node with nftables")]
pub struct Options {
    /// Path to a kubeconfig (default: $KUBECONFIG, ~/.kube/config, then the in-cluster service account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The name of this node (default: the hostname, as the kubelet's).
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// Remove the nftables table and exit.
    #[arg(long)]
    pub cleanup: bool,
    /// Where `/healthz` (and `/metrics`) is served; port 0 disables it (kube-router's health port, 20244).
    #[arg(long, default_value = "0.0.0.0:20244")]
    pub healthz_bind_address: SocketAddr,
    /// Where `/metrics` (and `/healthz`) is served; port 0 disables it.
    #[arg(long, default_value = "127.0.0.1:20245")]
    pub metrics_bind_address: SocketAddr,
    /// How often the table is rewritten even without changes (kube-router's `--iptables-sync-period`, 5m).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub sync_period: Duration,
    /// Turn on `net.bridge.bridge-nf-call-iptables` (and ip6tables), without which traffic between two pods of
    /// one bridge is never seen by the firewall.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub enable_bridge_netfilter: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    api_types::duration::parse(s).ok_or_else(|| format!("invalid duration {s:?}"))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

/// Sets the bridge netfilter switches (loading br_netfilter if need be); warns when it cannot.
pub async fn ensure_bridge_netfilter() {
    let dir = std::path::Path::new("/proc/sys/net/bridge");
    if !dir.exists() {
        let loaded = tokio::process::Command::new("modprobe").arg("br_netfilter").status().await;
        if !matches!(loaded, Ok(s) if s.success()) {
            tracing::warn!("br_netfilter is not loaded: traffic between pods of one bridge is not filtered");
            return;
        }
    }
    for name in ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables"] {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).map(|v| v.trim() == "1").unwrap_or(false) {
            continue;
        }
        match std::fs::write(&path, "1") {
            Ok(()) => tracing::info!("set net.bridge.{name}=1"),
            Err(e) => tracing::warn!(error = %e, "setting net.bridge.{name}"),
        }
    }
}

/// Runs until `stop` (or, with `--cleanup`, removes the table).
pub async fn run(opts: Options, stop: tokio::sync::watch::Receiver<bool>) -> Result<(), BoxError> {
    let nft = nftables::Nft::default();
    if opts.cleanup {
        use nftables::Runner;
        nft.apply(&ruleset::cleanup()).await?;
        tracing::info!(table = ruleset::TABLE, "removed the nftables table");
        return Ok(());
    }
    let config = match &opts.kubeconfig {
        Some(p) => client::Config::from_kubeconfig(p)?,
        None => client::Config::infer()?,
    };
    let client = client::Client::new(&config)?;
    if opts.enable_bridge_netfilter {
        ensure_bridge_netfilter().await;
    }
    let node = opts.hostname_override.clone().unwrap_or_else(hostname);
    let factory = runtime::SharedInformerFactory::new(client);
    let controller = Controller::new(&factory, &node, nft, opts.sync_period)?;
    let (health, metrics) = (controller.health(), controller.metrics());
    server::start(Some(opts.healthz_bind_address), "/healthz", health.clone(), metrics.clone(), stop.clone()).await?;
    if opts.metrics_bind_address != opts.healthz_bind_address {
        server::start(Some(opts.metrics_bind_address), "/metrics", health, metrics, stop.clone()).await?;
    }
    controller.run(stop).await;
    factory.shutdown();
    tracing::info!("network-policy stopped");
    Ok(())
}
