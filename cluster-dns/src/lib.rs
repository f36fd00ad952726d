//! cluster-dns: the cluster DNS server, in the role CoreDNS plays in a kubeadm cluster.
//!
//! A Corefile ([`corefile`], from `-conf FILE` or the `coredns` ConfigMap's `Corefile` key, watched through the
//! API by [`configsource`]) configures server blocks per zone and port; each block is a chain of plugins
//! ([`plugin`], CoreDNS's execution order) run by the DNS server ([`dnsserver`]) over UDP and TCP. The
//! `kubernetes` plugin answers the cluster zone from Services, EndpointSlices, Namespaces and Pods kept by the
//! [`controller`]. [`server`] builds and swaps configurations on reload; [`http`] serves health, readiness and
//! metrics ([`metrics`], CoreDNS's names).

pub mod configsource;
pub mod controller;
pub mod corefile;
pub mod dnsserver;
pub mod http;
pub mod metrics;
pub mod plugin;
pub mod request;
pub mod server;

use std::sync::Arc;

use clap::Parser;
use tokio::sync::watch;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Command-line flags. CoreDNS's single-dash Go flags (`-conf`, `-dns.port`) are accepted as well as the
/// double-dash forms.
#[derive(Debug, Clone, Parser)]
#[command(name = "cluster-dns", version, about = "Cluster DNS server (CoreDNS's role)")]
pub struct Options {
    /// Corefile to load (CoreDNS's `-conf`); without it the Corefile comes from the ConfigMap.
    #[arg(long = "conf")]
    pub conf: Option<String>,
    /// Default port for server blocks without one.
    #[arg(long = "dns.port", default_value_t = 53)]
    pub dns_port: u16,
    /// The ConfigMap holding the Corefile (namespace/name), read through the API when `-conf` is not given.
    #[arg(long = "configmap", default_value = "kube-system/coredns")]
    pub configmap: String,
    /// The ConfigMap key holding the Corefile.
    #[arg(long = "configmap-key", default_value = "Corefile")]
    pub configmap_key: String,
    /// kubeconfig for the API (default: $KUBECONFIG, ~/.kube/config, then the pod's service account).
    #[arg(long = "kubeconfig")]
    pub kubeconfig: Option<String>,
    /// Write the process id to this file.
    #[arg(long = "pidfile")]
    pub pidfile: Option<String>,
}

impl Options {
    /// Parses arguments, turning Go-style `-flag` into `--flag`.
    pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Self, clap::Error> {
        let args = args.into_iter().enumerate().map(|(i, a)| {
            if i > 0 && a.starts_with('-') && !a.starts_with("--") && a.len() > 2 { format!("-{a}") } else { a }
        });
        Options::try_parse_from(args)
    }
}

/// Runs the server until `stop` turns true.
pub async fn run(opts: Options, stop: watch::Receiver<bool>) -> Result<(), BoxError> {
    if let Some(p) = &opts.pidfile {
        std::fs::write(p, format!("{}\n", std::process::id()))?;
    }
    let client_config = match &opts.kubeconfig {
        Some(path) => Some(client::Config::from_kubeconfig(path)?),
        None => None,
    };
    let mut env = server::Env::new(client_config.clone(), opts.dns_port);
    if opts.conf.is_none() {
        // The ConfigMap source needs the API; resolve the configuration once for both.
        env.client = Some(match client_config {
            Some(c) => c,
            None => client::Config::infer()?,
        });
    }
    let instance = Arc::new(server::Instance::new(Arc::new(env)));
    let result = match &opts.conf {
        Some(path) => configsource::run_file(instance.clone(), path, stop.clone()).await,
        None => configsource::run_configmap(instance.clone(), &opts.configmap, &opts.configmap_key, stop.clone()).await,
    };
    if let Some((_, lameduck)) = instance.settings().and_then(|s| s.health)
        && !lameduck.is_zero()
    {
        tracing::info!("going into lameduck mode for {lameduck:?}");
        tokio::time::sleep(lameduck).await;
    }
    instance.stop().await;
    result
}
