//! `kubeadm join --control-plane` (upstream's join phases control-plane-prepare and control-plane-join): before
//! the kubelet starts, the shared certificates from the `kubeadm-certs` Secret (decrypted with
//! `--certificate-key`), this node's own certificates, kubeconfigs and control-plane static pods; after its TLS
//! bootstrap, a new member in the stacked etcd cluster (etcd's member API, then the etcd static pod listing every
//! member with `initial-cluster-state=existing`) and the control-plane label and taint.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::{Context, Error, Result, io};
use crate::config::{self, ClusterConfiguration, InitConfig, JoinConfiguration, JoinControlPlane};
use crate::constants as k;

/// This node's configuration as a control plane: the cluster's ClusterConfiguration, the join's node
/// registration and local API endpoint (upstream's `JoinConfigurationToInitConfiguration`).
pub fn node_config(
    j: &JoinConfiguration,
    cp: &JoinControlPlane,
    cluster: &ClusterConfiguration,
    kubelet: &Value,
) -> Result<InitConfig> {
    let init = config::InitConfiguration {
        node_registration: j.node_registration.clone(),
        local_api_endpoint: cp.local_api_endpoint.clone(),
        certificate_key: cp.certificate_key.clone(),
        ..Default::default()
    };
    let docs = config::Documents {
        init: Some(init),
        cluster: Some(cluster.clone()),
        kubelet: Some(kubelet.clone()),
        ..Default::default()
    };
    Ok(InitConfig::from_documents(docs)?)
}

/// Upstream's control-plane preflight: a stable endpoint, and (ours) a store several apiservers can share.
pub fn check(cfg: &InitConfig) -> Result<()> {
    if cfg.cluster.control_plane_endpoint.is_empty() {
        return Err(Error::Other(
            "unable to add a new control plane instance to a cluster that doesn't have a stable controlPlaneEndpoint address\n\nPlease ensure that:\n* The cluster has a stable controlPlaneEndpoint address.\n* The certificates that must be shared among control plane instances are provided.\n"
                .into(),
        ));
    }
    if !cfg.uses_etcd() {
        return Err(Error::Other(
            "unable to add a new control plane instance to a cluster on the embedded store: it serves a single kube-apiserver; initialize the cluster with etcd (etcd.local or etcd.external) for more control-plane nodes".into(),
        ));
    }
    Ok(())
}

/// control-plane-prepare: download-certs, certs, kubeconfig, control-plane.
pub async fn prepare(ctx: &Context, cfg: &InitConfig, token_client: &client::Client) -> Result<()> {
    ctx.out.line("[preflight] Running pre-flight checks before initializing the new control plane instance");
    check(cfg)?;
    if cfg.init.certificate_key.is_empty() {
        let ca = PathBuf::from(cfg.cert_dir()).join("ca.key");
        if !ctx.fs.exists(&ca) {
            return Err(Error::Other(format!(
                "the certificates shared among control-plane nodes are missing ({} does not exist): pass --certificate-key (from 'kubeadm init --upload-certs') or copy them",
                ca.display()
            )));
        }
    } else {
        super::uploadcerts::download(ctx, token_client, cfg.cert_dir(), &cfg.init.certificate_key).await?;
    }
    super::certs::run_all(ctx, cfg)?;
    ctx.out.line(format!("[kubeconfig] Using kubeconfig folder {:?}", k::KUBERNETES_DIR));
    for name in ["admin", "controller-manager", "scheduler"] {
        super::kubeconfig::run_one(ctx, cfg, name)?;
    }
    super::controlplane::run(ctx, cfg, None)
}

/// The client URLs of the etcd members, from the etcd static pods' annotation (upstream's `getEtcdEndpoints`).
/// While no pod carries it, polled every 500 ms for up to a minute (upstream's `KubernetesAPICallRetryInterval` and
/// `KubernetesAPICall` timeout): a control plane just started may not have its etcd mirror pod in the API yet.
/// An API error ends it at once (a `reset` with the API gone does not wait).
pub async fn etcd_endpoints(c: &client::Client) -> Result<Vec<String>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let urls = etcd_endpoints_once(c).await?;
        if !urls.is_empty() {
            return Ok(urls);
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Other("could not find any etcd endpoint: no etcd static pod carries the annotation kubeadm.kubernetes.io/etcd.advertise-client-urls".into()));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

async fn etcd_endpoints_once(c: &client::Client) -> Result<Vec<String>> {
    let pods = c
        .api("", "v1", "pods")?
        .namespaced(k::KUBE_SYSTEM)
        .list(&client::ListParams {
            label_selector: Some("component=etcd,tier=control-plane".into()),
            ..Default::default()
        })
        .await?;
    let mut urls: Vec<String> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.pointer("/metadata/annotations").and_then(|a| a.get(k::ANNOTATION_ETCD_CLIENT_URLS)))
        .filter_map(Value::as_str)
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    urls.sort();
    urls.dedup();
    Ok(urls)
}

/// An etcd client with this node's healthcheck-client certificate (upstream's `etcdutil.NewFromCluster`).
pub async fn etcd_client(ctx: &Context, cfg: &InitConfig, endpoints: &[String]) -> Result<etcd_client::Client> {
    etcd_client_in(ctx, cfg.cert_dir(), endpoints).await
}

/// As [`etcd_client`], with the certificates under `cert_dir`.
pub async fn etcd_client_in(ctx: &Context, cert_dir: &str, endpoints: &[String]) -> Result<etcd_client::Client> {
    let dir = PathBuf::from(cert_dir);
    let read = |f: &str| -> Result<Vec<u8>> {
        let p = dir.join(f);
        ctx.fs.read(&p).map_err(io(&p))
    };
    let tls = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(read("etcd/ca.crt")?))
        .identity(etcd_client::Identity::from_pem(
            read("etcd/healthcheck-client.crt")?,
            read("etcd/healthcheck-client.key")?,
        ));
    let opts = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(30))
        .with_tls(tls);
    etcd_client::Client::connect(endpoints, Some(opts))
        .await
        .map_err(|e| Error::Other(format!("failed to connect to etcd at {endpoints:?}: {e}")))
}

/// Adds this node as a member and returns the initial cluster (name, peer URL) for its manifest; the new member
/// has no name until it starts, so it gets this node's (upstream's `AddMember`). As upstream, a refused add is
/// retried with an exponential backoff (about a minute here): etcd refuses one ("unhealthy cluster") until the
/// member added by the previous join has started, and each attempt first looks whether an earlier one went through.
pub async fn add_member(etcd: &mut etcd_client::Client, name: &str, peer_url: &str) -> Result<Vec<(String, String)>> {
    let mut delay = Duration::from_millis(100);
    let mut attempts = 0;
    let members = loop {
        attempts += 1;
        let added = async {
            let existing = etcd.member_list().await.map_err(|e| format!("etcd member list: {e}"))?;
            if existing.members().iter().any(|m| m.peer_urls().iter().any(|u| u == peer_url)) {
                return Ok(existing.members().to_vec());
            }
            etcd.member_add(vec![peer_url.to_string()], None)
                .await
                .map(|r| r.member_list().to_vec())
                .map_err(|e| format!("etcd member add {peer_url}: {e}"))
        }
        .await;
        match added {
            Ok(members) => break members,
            Err(e) if attempts >= 16 => return Err(Error::Other(e)),
            Err(e) => {
                tracing::debug!(error = %e, "adding the etcd member; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 3 / 2).min(Duration::from_secs(8));
            }
        }
    };
    Ok(members
        .iter()
        .filter_map(|m| {
            let url = m.peer_urls().first()?.clone();
            let n = if m.name().is_empty() || url == peer_url { name.to_string() } else { m.name().to_string() };
            Some((n, url))
        })
        .collect())
}

/// control-plane-join: the stacked etcd member and its static pod, then mark-control-plane.
pub async fn join(ctx: &Context, cfg: &InitConfig) -> Result<()> {
    let admin = ctx.admin_client()?;
    if cfg.cluster.etcd.local.is_some() {
        let endpoints = etcd_endpoints(&admin).await?;
        let mut etcd = etcd_client(ctx, cfg, &endpoints).await?;
        let peer =
            format!("https://{}", crate::util::join_host_port(cfg.advertise_address(), k::ETCD_LISTEN_PEER_PORT));
        let members = add_member(&mut etcd, cfg.node_name(), &peer).await?;
        ctx.out.line("[etcd] Announced new etcd member joining to the existing etcd cluster");
        let path = crate::manifests::manifest_path(k::ETCD);
        ctx.out.line(format!("[etcd] Creating static Pod manifest for {:?}", k::ETCD));
        let pod = crate::manifests::etcd::etcd_pod_joining(cfg, &members);
        ctx.fs.write(&path, crate::manifests::to_yaml(&pod).as_bytes(), 0o600).map_err(io(&path))?;
        if ctx.host {
            // Upstream's WaitForClusterAvailable over the endpoints including the new member's: this member answers.
            ctx.out.line("[etcd] Waiting for the new etcd member to join the cluster. This can take up to 40s");
            let own =
                format!("https://{}", crate::util::join_host_port(cfg.advertise_address(), k::ETCD_LISTEN_CLIENT_PORT));
            super::retry(Duration::from_secs(40), || {
                let own = std::slice::from_ref(&own);
                async move {
                    let mut c = etcd_client(ctx, cfg, own).await?;
                    c.status().await.map(|_| ()).map_err(|e| Error::Other(format!("etcd status of {own:?}: {e}")))
                }
            })
            .await?;
        }
    }
    super::markcontrolplane::run(ctx, cfg).await
}

/// The closing text of a control-plane join.
pub fn print_joined(ctx: &Context, stacked_etcd: bool) {
    let o = &ctx.out;
    o.line("");
    o.line("This node has joined the cluster and a new control plane instance was created:");
    o.line("");
    o.line("* Certificate signing request was sent to apiserver and approval was received.");
    o.line("* The Kubelet was informed of the new secure connection details.");
    o.line("* Control plane label and taint were applied to the new node.");
    o.line("* The Kubernetes control plane instances scaled up.");
    if stacked_etcd {
        o.line("* A new etcd member was added to the local/stacked etcd cluster.");
    }
    o.line("");
    o.line("To start administering your cluster from this node, you need to run the following as a regular user:");
    o.line("");
    o.line("\tmkdir -p $HOME/.kube");
    o.line("\tsudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config");
    o.line("\tsudo chown $(id -u):$(id -g) $HOME/.kube/config");
    o.line("");
    o.line("Run 'kubectl get nodes' to see this node join the cluster.");
    o.line("");
}
