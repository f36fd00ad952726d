//! kube-proxy: programs this node's packet filter so that traffic to Services reaches their endpoints.
//!
//! Informers (Services, EndpointSlices, this Node) feed upstream's change trackers
//! ([`servicechangetracker`], [`endpointschangetracker`]); a [`boundedfrequencyrunner`] decides when to sync
//! (`minSyncPeriod`, `syncPeriod`); each IP family's [`provider::Provider`] applies the changes and hands the
//! Service and endpoint maps to its [`proxier::Proxier`], [`nftables`] (the default), [`iptables`] or [`ipvs`],
//! which write the rules with `nft -f` / `iptables-restore` / `ipvsadm-restore` through an [`exec::Exec`] (the
//! real tools, or a recording fake in unit tests). [`healthcheck`] serves `/healthz` and the health check node ports, [`metrics`] the
//! Prometheus series. `--cleanup` removes everything any mode wrote.

pub mod boundedfrequencyrunner;
pub mod config;
pub mod conntrack;
pub mod conntrack_config;
pub mod endpoint;
pub mod endpointschangetracker;
pub mod exec;
pub mod healthcheck;
pub mod iptables;
pub mod ipvs;
pub mod localdetector;
pub mod metrics;
pub mod nfnetlink;
pub mod nftables;
pub mod nodeportaddresses;
pub mod options;
pub mod provider;
pub mod proxier;
pub mod server;
pub mod servicechangetracker;
pub mod serviceport;
pub mod topology;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use config::{ProxyConfig, ProxyMode};
pub use options::Options;
pub use server::{BoxError, Context, Running};

/// Removes every table, chain and rule kube-proxy wrote in any mode and family (upstream's `--cleanup`).
/// False when something could not be removed.
pub fn cleanup(exec: &dyn exec::Exec) -> bool {
    let nft = nftables::NftProxier::cleanup_leftovers(exec);
    let ipt = iptables::IptablesProxier::cleanup_leftovers(exec);
    let ipvs = ipvs::IpvsProxier::cleanup_leftovers(exec);
    // The iptables and ipvs modes share chain names (KUBE-PROXY-FIREWALL...) jumped to with different rules, so
    // the iptables cleanup may have been blocked by the ipvs jumps just removed: once more then.
    let ipt = ipt || iptables::IptablesProxier::cleanup_leftovers(exec);
    nft && ipt && ipvs
}

/// The kube-proxy binary: flags, `--cleanup`, or the proxy until `stop` (SIGTERM leaves the rules in place).
pub async fn run(opts: Options, stop: watch::Receiver<bool>) -> Result<(), BoxError> {
    let config = opts.proxy_config()?;
    let exec: Arc<dyn exec::Exec> = Arc::new(exec::RealExec::new());
    if opts.cleanup == Some(true) {
        return if cleanup(exec.as_ref()) { Ok(()) } else { Err("cleanup failed".into()) };
    }
    let mut cfg = match &config.kubeconfig {
        Some(p) => client::Config::from_kubeconfig(p)?,
        None => client::Config::infer()?,
    };
    if let Some(master) = &opts.master {
        cfg.server = master.clone();
    }
    let client = client::Client::new(&cfg)?;
    conntrack_config::apply(&config.conntrack);
    let hostname = server::hostname(&config.hostname_override);
    let ctx = Context { config, client, hostname, exec, node_wait: Duration::from_secs(30) };
    let running = server::start(ctx, stop).await?;
    running.wait().await;
    tracing::info!("kube-proxy stopped; rules left in place");
    Ok(())
}
