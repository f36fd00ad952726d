//! metrics-server: scrapes every kubelet's `/metrics/resource` each `--metric-resolution` ([`scraper`]), keeps
//! the last two points per node and container ([`storage`]) and serves their usage as the `metrics.k8s.io/v1beta1`
//! API ([`api`]) on its secure port ([`server`]), behind the apiserver's aggregation layer (APIService
//! `v1beta1.metrics.k8s.io`) for `kubectl top` and the HorizontalPodAutoscaler. Upstream: kubernetes-sigs/metrics-server.

pub mod api;
pub mod metrics;
pub mod options;
pub mod scraper;
pub mod server;
pub mod storage;

use std::sync::Arc;

use api_types::selector::LabelSelector;
use runtime::informer::{InformerParams, SharedInformerFactory};

pub use options::Options;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs metrics-server until `stop`, on `--bind-address:--secure-port`.
pub async fn run(opts: Options, stop: tokio::sync::watch::Receiver<bool>) -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind((opts.bind_address, opts.secure_port)).await?;
    run_with_listener(opts, listener, stop).await
}

/// Runs metrics-server until `stop`, serving on `listener` (tests bind 127.0.0.1:0).
pub async fn run_with_listener(
    opts: Options,
    listener: tokio::net::TcpListener,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), BoxError> {
    let errors = opts.validate();
    if !errors.is_empty() {
        return Err(errors.join("; ").into());
    }
    let rest = match &opts.kubeconfig {
        Some(p) => client::Config::from_kubeconfig(p)?,
        None => client::Config::in_cluster()?,
    };
    let client = client::Client::new(&rest)?;
    let (cert, key) = server::serving_certificate(
        opts.tls_cert_file.as_deref(),
        opts.tls_private_key_file.as_deref(),
        &opts.cert_dir,
    )?;
    let tls = server::tls_config(&cert, &key)?;
    let auth =
        runtime::delegating_auth::DelegatingAuth::with_default_client(opts.delegating.clone(), Some(client.clone()))?;
    let node_selector = LabelSelector::parse(opts.node_selector.trim())?;

    let factory = SharedInformerFactory::new(client.clone());
    let find = |plural: &str| api_types::resources::find("", "v1", plural).ok_or("no such resource");
    let nodes = factory.informer(find("nodes")?, InformerParams::all())?;
    // Running pods only (upstream's metadata informer with `status.phase=Running`).
    let pods = factory.informer(find("pods")?, InformerParams::all().fields("status.phase=Running"))?;

    let metrics = Arc::new(metrics::Metrics::new(opts.metric_resolution.as_secs_f64()));
    let kubelets = scraper::client::KubeletClient::new(scraper::client::KubeletClientConfig {
        client: opts.kubelet_client_config(&rest)?,
        default_port: opts.kubelet_port,
        use_node_status_port: opts.kubelet_use_node_status_port,
        address_type_priority: opts.kubelet_preferred_address_types.clone(),
        timeout: opts.kubelet_request_timeout,
    })?;
    let scraper = scraper::Scraper::new(
        nodes.clone(),
        kubelets,
        opts.kubelet_request_timeout,
        node_selector.clone(),
        metrics.clone(),
    );
    let storage = Arc::new(storage::Storage::new(opts.metric_resolution));
    let api = api::Api { storage, nodes: nodes.clone(), pods: pods.clone(), node_selector, metrics };
    let server = server::Server::new(api, scraper, auth.clone(), opts.metric_resolution);

    tokio::spawn(auth.run(stop.clone()));
    let mut until = stop.clone();
    tokio::select! {
        _ = factory.wait_for_cache_sync() => {}
        _ = until.wait_for(|s| *s) => {
            factory.shutdown();
            return Ok(());
        }
    }
    tracing::info!(addr = %listener.local_addr()?, resolution = ?opts.metric_resolution, "metrics-server serving");
    tokio::spawn(server.clone().run_scrape(stop.clone()));
    server.serve(listener, tls, stop).await;
    factory.shutdown();
    tracing::info!("metrics-server stopped");
    Ok(())
}
