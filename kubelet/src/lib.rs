//! kubelet: the node agent. It registers its Node, keeps its status and Lease fresh, and runs the pods bound to it
//! through the container runtime (CRI): one worker per pod ([`pods`]), woken by the pod informer and the PLEG.

pub mod admission;
pub mod auth;
pub mod certificate;
pub mod cm;
pub mod cni;
pub mod dns;
pub mod envvars;
pub mod events;
pub mod expansion;
#[cfg(test)]
pub(crate) mod fake_apiserver;
pub mod hollow;
pub mod hosts;
pub mod node;
pub mod options;
pub mod pods;
pub mod prober;
pub mod resource_metrics;
pub mod resources;
pub mod routes;
pub mod security;
pub mod server;
pub mod static_pods;
pub mod stats;
pub mod status;
pub mod streaming;
pub mod sysctl;
pub mod token;
pub mod volumes;

use std::sync::Arc;
use std::time::Duration;

use proto::Cri;
use proto::cri::{StatusRequest, VersionRequest};
use runtime::informer::{InformerParams, Notification, SharedInformerFactory};

pub use options::{Config, Flags};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connects to the runtime, retrying while it starts.
async fn connect_runtime(endpoint: &str) -> Result<(Cri, String), BoxError> {
    let mut delay = Duration::from_millis(100);
    for _ in 0..40 {
        if let Ok(cri) = Cri::connect(endpoint).await
            && let Ok(v) = cri.runtime.clone().version(VersionRequest::default()).await
        {
            let v = v.into_inner();
            return Ok((cri, format!("{}://{}", v.runtime_name, v.runtime_version)));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
    Err(format!("container runtime at {endpoint} is not answering").into())
}

/// Runs the kubelet with an API client until `stop` turns true.
pub async fn run_with_client(
    client: client::Client,
    cfg: Config,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), BoxError> {
    run_with_runtime(client, cfg, None, stop).await
}

/// As [`run_with_client`], with the runtime given (hollow nodes) instead of dialled at `--container-runtime-endpoint`.
pub async fn run_with_runtime(
    client: client::Client,
    cfg: Config,
    runtime: Option<Cri>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), BoxError> {
    run_node(client, cfg, runtime, None, stop).await
}

/// Informers the kubelets of one process can share (hollow nodes): all Services, all Nodes.
#[derive(Clone)]
pub(crate) struct SharedInformers {
    pub services: runtime::informer::Informer,
    pub nodes: runtime::informer::Informer,
}

/// Runs one kubelet; `shared` replaces its own Service and Node informers.
pub(crate) async fn run_node(
    client: client::Client,
    cfg: Config,
    runtime: Option<Cri>,
    shared: Option<SharedInformers>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), BoxError> {
    // Only a real runtime's pods get cgroups from this kubelet (hollow nodes run fake ones).
    let real_runtime = runtime.is_none();
    let (cri, runtime_version) = match runtime {
        Some(cri) => {
            let v = cri.runtime.clone().version(VersionRequest::default()).await?.into_inner();
            (cri, format!("{}://{}", v.runtime_name, v.runtime_version))
        }
        None => connect_runtime(&cfg.runtime_endpoint).await?,
    };
    tracing::info!(node = %cfg.node_name, runtime = %runtime_version, "kubelet starting");
    // The runtime's features (CRI Status), for the Node's status.features and admission.
    let features =
        cri.runtime.clone().status(StatusRequest { verbose: false }).await.ok().and_then(|r| r.into_inner().features);
    // Registration is retried until it succeeds, as upstream's kubelet does, in the background: static pods
    // (kubeadm's control plane, the apiserver among them) start from their files before there is an API.
    {
        let (client, cfg, cri, stop, features) = (client.clone(), cfg.clone(), cri.clone(), stop.clone(), features);
        tokio::spawn(async move {
            tokio::select! {
                r = register_node(&client, &cfg, &runtime_version, features.as_ref()) => if let Err(e) = r {
                    tracing::error!(error = %e, "registering the node");
                    return;
                },
                _ = runtime::daemon::stopped(stop.clone()) => return,
            }
            tokio::spawn(node::heartbeat(client.clone(), cfg.clone(), Some(cri), stop.clone()));
            tokio::select! {
                r = write_pod_network_config(&client, &cfg) => if let Err(e) = r {
                    tracing::error!(error = %e, "writing the pod network config");
                },
                _ = runtime::daemon::stopped(stop) => {}
            }
        });
    }
    let manager = pods::PodManager::new(cri, client.clone(), cfg.clone())?;
    manager.use_runtime_features(features);
    if real_runtime && let Some(cm) = cm::ContainerManager::new(&cfg) {
        start_container_manager(&manager, cm, &cfg);
    }
    let factory = SharedInformerFactory::new(client.clone());
    let pods_res = api_types::resources::find("", "v1", "pods").ok_or("no pods resource")?;
    let informer =
        factory.informer(pods_res, InformerParams::all().fields(&format!("spec.nodeName={}", cfg.node_name)))?;
    let mut events = informer.subscribe();
    // Orphaned pods are cleaned up once the API (and the manifest directory) delivered their pods.
    manager.source_pending("api");
    if cfg.pod_manifest_path.is_some() {
        manager.source_pending("file");
    }
    {
        let (informer, manager) = (informer.clone(), manager.clone());
        tokio::spawn(async move {
            informer.wait_synced().await;
            manager.source_ready("api");
        });
    }
    if cfg.pod_network_routes {
        // Every Node, for the routes to their pod CIDRs (the shared Node informer already watches them all).
        let nodes = match &shared {
            Some(shared) => shared.nodes.clone(),
            None => factory.informer(
                api_types::resources::find("", "v1", "nodes").ok_or("no nodes resource")?,
                InformerParams::all(),
            )?,
        };
        tokio::spawn(routes::run(routes::Netlink::new()?, nodes, cfg.node_name.clone(), stop.clone()));
    }
    match shared {
        Some(shared) => {
            manager.use_services(shared.services);
            manager.use_node(shared.nodes);
        }
        None => {
            // Services for the containers' service variables (upstream's kubelet service lister).
            let services_res = api_types::resources::find("", "v1", "services").ok_or("no services resource")?;
            manager.use_services(factory.informer(services_res, InformerParams::all())?);
            // This node's Node object, for admission (upstream's node lister, by name).
            let nodes_res = api_types::resources::find("", "v1", "nodes").ok_or("no nodes resource")?;
            let by_name = InformerParams::all().fields(&format!("metadata.name={}", cfg.node_name));
            manager.use_node(factory.informer(nodes_res, by_name)?);
        }
    }
    tokio::spawn(manager.clone().pleg(stop.clone()));
    tokio::spawn(static_pods::run(manager.clone(), client.clone(), cfg.clone(), stop.clone()));
    if cfg.serve_api {
        let auth = Arc::new(auth::KubeletAuth::new(&cfg.auth, &cfg.node_name, Some(client.clone()))?);
        let (serving, rotation) = certificate::serving(&cfg, Some(&client))?;
        if let Some(m) = rotation {
            tokio::spawn(m.run(stop.clone()));
        }
        let tls = server::tls_config(cfg.auth.client_ca_file.as_deref(), serving)?;
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", cfg.port)).await?;
        tokio::spawn(server::serve(cfg.clone(), manager.clone(), listener, tls, auth, stop.clone()));
        if cfg.healthz_port > 0 {
            tokio::spawn(server::healthz(cfg.healthz_bind_address.clone(), cfg.healthz_port, stop.clone()));
        }
    }
    let mut stop = stop;
    loop {
        tokio::select! {
            n = events.recv() => {
                let Some(n) = n else { break };
                // Mirror pods only report static pods, which run from their files.
                if static_pods::is_mirror(n.object()) {
                    continue;
                }
                let uid = n.object().pointer("/metadata/uid").and_then(|u| u.as_str()).unwrap_or_default().to_string();
                match n {
                    Notification::Deleted(_) => manager.update(&uid, None),
                    other => manager.update(&uid, Some(Arc::clone(other.object()))),
                }
            }
            _ = stop.changed() => break,
        }
    }
    factory.shutdown();
    tracing::info!("kubelet stopped");
    Ok(())
}

/// Creates the pods' cgroup tree (the node allocatable cgroup and the QoS cgroups) and announces it with the
/// node event `NodeAllocatableEnforced`, as upstream's container manager. If the cgroups cannot be written (a
/// read-only cgroupfs), the failure is a Warning event and pods run without a cgroup parent.
fn start_container_manager(manager: &pods::PodManager, cm: cm::ContainerManager, cfg: &Config) {
    let root = format!("{}/{}", cfg.cgroup_root.trim_end_matches('/'), cm::NODE_ALLOCATABLE_CGROUP);
    match cm.start() {
        Ok(()) => {
            tracing::info!(cgroup = %root, "node allocatable cgroup set up");
            manager.events.node(
                events::Normal,
                "NodeAllocatableEnforced",
                "Updated Node Allocatable limit across pods",
            );
            manager.use_cgroups(Arc::new(cm));
        }
        Err(e) => {
            tracing::error!(cgroup = %root, error = %e, "setting up the pods' cgroups; pods run without them");
            let message = format!("Failed to update Node Allocatable Limits {root:?}: {e}");
            manager.events.node(events::Warning, "FailedNodeAllocatableEnforcement", message);
        }
    }
}

/// Registers the Node (retrying until the apiserver answers) and records the `Starting` event.
async fn register_node(
    client: &client::Client,
    cfg: &Config,
    runtime_version: &str,
    features: Option<&proto::cri::RuntimeFeatures>,
) -> Result<(), BoxError> {
    let mut delay = Duration::from_millis(200);
    while let Err(e) = node::register(client, cfg, runtime_version, features).await {
        tracing::warn!(error = %e, "registering the node; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(7));
    }
    tracing::info!(node = %cfg.node_name, "node registered");
    if cfg.record_events {
        events::Events::new(client, &cfg.node_name)?.node(events::Normal, "Starting", "Starting kubelet.");
    }
    Ok(())
}

/// Writes the CNI configuration for the node's pod CIDR: the configured one, or the one the node IPAM controller
/// assigns, which may come after registration (a kubeadm node registers before kube-controller-manager runs):
/// upstream's kubelet updates the runtime's network config when the Node's podCIDR appears.
async fn write_pod_network_config(client: &client::Client, cfg: &Config) -> Result<(), BoxError> {
    let Some(dir) = &cfg.cni_conf_dir else { return Ok(()) };
    let pod_cidr = match &cfg.pod_cidr {
        Some(c) => c.clone(),
        None => loop {
            match client.api("", "v1", "nodes")?.get(&cfg.node_name).await {
                Ok(n) => {
                    if let Some(c) = n.pointer("/spec/podCIDR").and_then(|c| c.as_str()) {
                        break c.to_string();
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading the node's pod CIDR; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        },
    };
    cni::write(dir, &cfg.cni_bridge, &pod_cidr, &cfg.root_dir.join("cni-ipam"))?;
    Ok(())
}

/// Runs the kubelet from its resolved configuration: TLS bootstrap with `--bootstrap-kubeconfig`, the kubeconfig
/// from `--kubeconfig` (or inferred), the client certificate rotated with `rotateCertificates`.
pub async fn run(cfg: Config, stop: tokio::sync::watch::Receiver<bool>) -> Result<(), BoxError> {
    let (client_cfg, rotating) = certificate::client_config(&cfg).await?;
    let client = client::Client::new(&client_cfg)?;
    if let Some(r) = rotating {
        tokio::spawn(r.manager(client.clone())?.run(stop.clone()));
    }
    run_with_client(client, cfg, stop).await
}
