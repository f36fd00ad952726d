//! `kubeadm join` for worker nodes: bootstrap-token discovery (the `kube-public/cluster-info` ConfigMap fetched
//! without trusting the server, its JWS signature checked with the token, the CA pinned by
//! `--discovery-token-ca-cert-hash`, then fetched again over verified TLS) or file discovery; then
//! `bootstrap-kubelet.conf`, the kubelet's configuration from the `kubelet-config` ConfigMap, and the kubelet
//! started to do its TLS bootstrap.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::{Context, Error, Result, io, retry};
use crate::config::{ClusterConfiguration, JoinConfiguration};
use crate::constants as k;

/// What discovery yields: the cluster's CA and API server address.
#[derive(Clone, Debug)]
pub struct Discovered {
    pub server: String,
    pub ca_pem: String,
}

fn anon_client(server: &str, ca: Option<&[u8]>) -> Result<client::Client> {
    let cfg = client::Config {
        server: server.to_string(),
        ca_pem: ca.map(<[u8]>::to_vec),
        insecure_skip_tls_verify: ca.is_none(),
        namespace: "default".into(),
        ..Default::default()
    };
    Ok(client::Client::new(&cfg)?)
}

async fn get_cluster_info(c: &client::Client) -> Result<Value> {
    Ok(c.api("", "v1", "configmaps")?.namespaced(k::KUBE_PUBLIC).get(k::CLUSTER_INFO).await?)
}

/// Upstream's `token.RetrieveValidatedConfigInfo`.
pub async fn discover_token(
    endpoint: &str,
    token: &str,
    ca_hashes: &[String],
    unsafe_skip: bool,
    timeout: Duration,
) -> Result<Discovered> {
    let (id, secret) = crate::token::parse(token).ok_or_else(|| {
        Error::Other(format!("the bootstrap token {token:?} was not of the form \"[a-z0-9]{{6}}.[a-z0-9]{{16}}\""))
    })?;
    if ca_hashes.is_empty() && !unsafe_skip {
        return Err(Error::Other("discovery.bootstrapToken: Invalid value: \"\": using token-based discovery without caCertHashes can be unsafe. Set unsafeSkipCAVerification as true in your kubeadm config file or pass --discovery-token-unsafe-skip-ca-verification flag to continue".into()));
    }
    let server = format!("https://{endpoint}");
    let insecure = anon_client(&server, None)?;
    let sig_key = format!("jws-kubeconfig-{id}");
    let (kubeconfig_text, sig) = retry(timeout, || async {
        let cm = get_cluster_info(&insecure).await?;
        let kc = cm.pointer("/data/kubeconfig").and_then(Value::as_str).unwrap_or_default().to_string();
        match cm.pointer("/data").and_then(|d| d.get(&sig_key)).and_then(Value::as_str) {
            Some(s) => Ok((kc, s.to_string())),
            None => Err(Error::Other(format!(
                "token id {id:?} is invalid for this cluster or it has expired. Use \"kubeadm token create\" on the control-plane node to create a new valid token"
            ))),
        }
    })
    .await?;
    if !crate::token::detached_signature_valid(&sig, &kubeconfig_text, id, secret) {
        return Err(Error::Other(
            "failed to verify JWS signature of received cluster info object, can't trust this API Server".into(),
        ));
    }
    let parsed = crate::kubeconfig::parse(&kubeconfig_text)?;
    let ca_pem = String::from_utf8_lossy(&parsed.ca_pem).into_owned();
    if !ca_hashes.is_empty() {
        let got = crate::token::ca_cert_hash(ca_pem.as_bytes()).map_err(Error::Other)?;
        if !ca_hashes.iter().any(|h| h.eq_ignore_ascii_case(&got)) {
            return Err(Error::Other(format!(
                "cluster CA found in cluster-info ConfigMap is invalid: none of the public keys \"{got}\" are pinned"
            )));
        }
    }
    // Fetch again over TLS verified with the CA, to be sure the server holds its key (upstream does the same).
    let secure = anon_client(&server, Some(ca_pem.as_bytes()))?;
    let again = get_cluster_info(&secure).await?;
    if again.pointer("/data/kubeconfig").and_then(Value::as_str) != Some(kubeconfig_text.as_str()) {
        return Err(Error::Other(
            "the second kubeconfig from the cluster-info ConfigMap did not match the first".into(),
        ));
    }
    Ok(Discovered { server: if parsed.server.is_empty() { server } else { parsed.server }, ca_pem })
}

/// File discovery: a kubeconfig on disk (only its cluster is used).
pub fn discover_file(ctx: &Context, path: &str) -> Result<Discovered> {
    let p = PathBuf::from(path);
    let text = ctx.fs.read_string(&p).map_err(io(&p))?;
    let parsed = crate::kubeconfig::parse(&text)?;
    Ok(Discovered { server: parsed.server, ca_pem: String::from_utf8_lossy(&parsed.ca_pem).into_owned() })
}

fn timeout(j: &JoinConfiguration, f: impl Fn(&crate::config::Timeouts) -> Option<&String>, default: u64) -> Duration {
    j.timeouts
        .as_ref()
        .and_then(f)
        .and_then(|d| crate::config::duration::parse(d).ok())
        .unwrap_or(Duration::from_secs(default))
}

/// The whole worker join.
pub async fn run(ctx: &Context, j: &JoinConfiguration, ignore: &[String]) -> Result<()> {
    ctx.out.line("[preflight] Running pre-flight checks");
    let mut findings = Vec::new();
    for f in [k::KUBELET_KUBECONFIG, k::KUBELET_BOOTSTRAP_KUBECONFIG] {
        let p = PathBuf::from(k::KUBERNETES_DIR).join(f);
        if ctx.fs.exists(&p) {
            findings.push(super::preflight::Finding {
                name: format!("FileAvailable-{}", p.display().to_string().replace('/', "-")),
                message: format!("{} already exists", p.display()),
                warning: false,
            });
        }
    }
    let manual_certs = j.control_plane.as_ref().is_some_and(|cp| cp.certificate_key.is_empty());
    if !manual_certs && ctx.fs.exists(&PathBuf::from(&j.ca_cert_path)) {
        findings.push(super::preflight::Finding {
            name: format!("FileAvailable-{}", j.ca_cert_path.replace('/', "-")),
            message: format!("{} already exists", j.ca_cert_path),
            warning: false,
        });
    }
    findings.extend(super::preflight::host_checks(ctx, &j.node_registration.cri_socket, ctx_is_host(ctx)));
    super::preflight::report(ctx, &findings, ignore)?;

    let disc_timeout = timeout(j, |t| t.discovery.as_ref(), 300);
    let discovered = match (&j.discovery.bootstrap_token, &j.discovery.file) {
        (_, Some(f)) => discover_file(ctx, &f.kube_config_path)?,
        (Some(bt), None) => {
            discover_token(
                &bt.api_server_endpoint,
                &bt.token,
                &bt.ca_cert_hashes,
                bt.unsafe_skip_ca_verification,
                disc_timeout,
            )
            .await?
        }
        (None, None) => {
            return Err(Error::Other("discovery: Invalid value: \"\": bootstrapToken or file must be set".into()));
        }
    };
    let tls_token = if j.discovery.tls_bootstrap_token.is_empty() {
        j.discovery.bootstrap_token.as_ref().map(|b| b.token.clone()).unwrap_or_default()
    } else {
        j.discovery.tls_bootstrap_token.clone()
    };
    let bootstrap_kc = crate::kubeconfig::with_token(
        k::DEFAULT_CLUSTER_NAME,
        &discovered.server,
        &discovered.ca_pem,
        "tls-bootstrap-token-user",
        &tls_token,
    );
    let token_client = client::Client::new(&client::Config {
        server: discovered.server.clone(),
        ca_pem: Some(discovered.ca_pem.clone().into_bytes()),
        token: Some(tls_token.clone()),
        namespace: "default".into(),
        ..Default::default()
    })?;
    ctx.out.line(format!(
        "[preflight] Reading configuration from the {:?} ConfigMap in namespace {:?}...",
        k::KUBEADM_CONFIG_CONFIGMAP,
        k::KUBE_SYSTEM
    ));
    ctx.out.line("[preflight] Use 'kubeadm init phase upload-config --config your-config-file' to re-upload it.");
    let cms = token_client.api("", "v1", "configmaps")?.namespaced(k::KUBE_SYSTEM);
    let cluster: ClusterConfiguration = {
        let cm = cms.get(k::KUBEADM_CONFIG_CONFIGMAP).await?;
        let text = cm.pointer("/data/ClusterConfiguration").and_then(Value::as_str).unwrap_or_default();
        let docs = crate::config::parse_documents(text)?;
        let mut c = docs.cluster.unwrap_or_default();
        crate::config::default_cluster(&mut c);
        c
    };
    let kubelet: Value = {
        let cm = cms.get(k::KUBELET_CONFIG_CONFIGMAP).await?;
        let text = cm.pointer("/data/kubelet").and_then(Value::as_str).unwrap_or_default();
        serde_yaml_ng::from_str(text).map_err(|e| Error::Other(format!("kubelet-config: {e}")))?
    };
    let control_plane = match &j.control_plane {
        Some(cp) => Some(super::joincontrolplane::node_config(j, cp, &cluster, &kubelet)?),
        None => None,
    };

    let ca_path = PathBuf::from(&j.ca_cert_path);
    ctx.fs.write(&ca_path, discovered.ca_pem.as_bytes(), 0o644).map_err(io(&ca_path))?;
    if let Some(cfg) = &control_plane {
        super::joincontrolplane::prepare(ctx, cfg, &token_client).await?;
    }
    let bk = PathBuf::from(k::KUBERNETES_DIR).join(k::KUBELET_BOOTSTRAP_KUBECONFIG);
    ctx.fs.write(&bk, bootstrap_kc.as_bytes(), 0o600).map_err(io(&bk))?;
    super::kubeletstart::write_config(ctx, &kubelet)?;
    super::kubeletstart::write_flags(ctx, &j.node_registration)?;
    super::kubeletstart::start(ctx);
    if ctx_is_host(ctx) {
        super::waitcontrolplane::wait_kubelet(ctx, timeout(j, |t| t.kubelet_health_check.as_ref(), 240)).await?;
    }
    ctx.out.line("[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap");
    let kc = PathBuf::from(k::KUBERNETES_DIR).join(k::KUBELET_KUBECONFIG);
    let tls_timeout = timeout(j, |t| t.tls_bootstrap.as_ref(), 300);
    let fs = ctx.fs.clone();
    retry(tls_timeout, || {
        let fs = fs.clone();
        let kc = kc.clone();
        async move {
            if fs.exists(&kc) {
                Ok(())
            } else {
                Err(Error::Other(format!("the kubelet did not write {} (TLS bootstrap) in time", kc.display())))
            }
        }
    })
    .await?;
    // The bootstrap credentials are no longer needed.
    ctx.fs.remove(&bk).map_err(io(&bk))?;
    if let Some(cfg) = &control_plane {
        super::joincontrolplane::join(ctx, cfg).await?;
        if ctx_is_host(ctx) {
            super::waitcontrolplane::run(ctx, cfg).await?;
        }
        super::joincontrolplane::print_joined(ctx, cfg.cluster.etcd.local.is_some());
        return Ok(());
    }
    ctx.out.line("");
    ctx.out.line("This node has joined the cluster:");
    ctx.out.line("* Certificate signing request was sent to apiserver and a response was received.");
    ctx.out.line("* The Kubelet was informed of the new secure connection details.");
    ctx.out.line("");
    ctx.out.line("Run 'kubectl get nodes' on the control-plane to see this node join the cluster.");
    ctx.out.line("");
    Ok(())
}

/// Whether the context works on this machine's root filesystem (host checks and waits apply).
pub fn ctx_is_host(ctx: &Context) -> bool {
    ctx.host
}
