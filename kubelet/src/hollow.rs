//! Hollow nodes (upstream's kubemark): many kubelets in one process, each the real kubelet code path (registration,
//! heartbeats, its own pod informer, pod workers, PLEG, static pods off; the Service and Node informers shared) with
//! its own node name, against its own fake CRI runtime, called in process through the CRI's generated clients and
//! servers (protobuf encoded, no socket). For scale tests and benchmarks of the scheduler and controllers.

use std::path::Path;
use std::time::Duration;

use proto::fake::FakeCri;

use crate::options::{Config, Flags};

/// The images every hollow node starts with.
pub const PRELOADED: &[&str] = &["registry.k8s.io/pause:3.10", "docker.io/library/busybox:1.36"];

/// Nodes sharing one API client (one HTTP/2 connection): each node keeps a pod watch open, and an HTTP/2
/// connection carries at most the server's stream limit (1,000 on kube-apiserver), so heartbeats of a large
/// process must not queue behind the watches of a single connection.
const NODES_PER_CLIENT: usize = 100;

/// Starts `count` hollow nodes named `<prefix>-<i>` under `dir`; they run until `stop` turns true.
pub async fn start(
    config: &client::Config,
    count: usize,
    prefix: &str,
    dir: &Path,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, crate::BoxError> {
    std::fs::create_dir_all(dir)?;
    let mut handles = Vec::with_capacity(count);
    let mut client = client::Client::new(config)?;
    // One Service and one Node informer for all the nodes of the process (a pair per node would be a thousand
    // watches more): the service variables and admission read them.
    let factory = runtime::informer::SharedInformerFactory::new(client.clone());
    let find = |plural: &str| api_types::resources::find("", "v1", plural).ok_or("no such resource");
    let shared = crate::SharedInformers {
        services: factory.informer(find("services")?, runtime::informer::InformerParams::all())?,
        nodes: factory.informer(find("nodes")?, runtime::informer::InformerParams::all())?,
    };
    let mut until_stop = stop.clone();
    tokio::spawn(async move {
        let _ = until_stop.wait_for(|s| *s).await;
        factory.shutdown();
    });
    for i in 0..count {
        if i > 0 && i % NODES_PER_CLIENT == 0 {
            client = client::Client::new(config)?;
        }
        let name = format!("{prefix}-{i}");
        let cri = proto::Cri::local(FakeCri::with_images(PRELOADED));
        let flags = Flags {
            hostname_override: Some(name.clone()),
            node_ip: Some(format!("10.{}.{}.{}", 64 + (i >> 16) % 64, (i >> 8) & 255, i & 255)),
            root_dir: Some(dir.join(&name)),
            ..Default::default()
        };
        let mut cfg = Config::resolve(flags)?;
        cfg.pod_logs_dir = dir.join(&name).join("logs");
        cfg.cni_conf_dir = None;
        cfg.serve_api = false;
        // Hollow nodes share this host: no health port each.
        cfg.healthz_port = 0;
        // No Events: a write per container start would triple the API writes of a large Deployment.
        cfg.record_events = false;
        let (client, stop, shared) = (client.clone(), stop.clone(), shared.clone());
        handles.push(tokio::spawn(async move {
            // Spread the starts a little, as real nodes would.
            tokio::time::sleep(Duration::from_millis((i % 50) as u64 * 10)).await;
            if let Err(e) = crate::run_node(client, cfg, Some(cri), Some(shared), stop).await {
                tracing::warn!(node = %name, error = %e, "hollow node stopped");
            }
        }));
    }
    Ok(handles)
}
