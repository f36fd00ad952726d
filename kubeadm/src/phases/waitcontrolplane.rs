//! `kubeadm init phase wait-control-plane`: waits for the kubelet's healthz, then for each control-plane
//! component's health endpoint, with upstream's `[kubelet-check]` and `[control-plane-check]` lines.

use std::time::{Duration, Instant};

use super::{Context, Error, Result};
use crate::config::InitConfig;
use crate::constants as k;

/// GET `url` (http or https, certificate not verified: this is a liveness check on a local address) → status OK.
pub async fn healthy(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else { return false };
    let (hostport, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    if scheme == "http" {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(hostport)).await
        else {
            return false;
        };
        let req = format!("GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n");
        if s.write_all(req.as_bytes()).await.is_err() {
            return false;
        }
        let mut buf = vec![0u8; 64];
        let n =
            tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.ok().and_then(Result::ok).unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]);
        return head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200");
    }
    let cfg = client::Config {
        server: format!("https://{hostport}"),
        insecure_skip_tls_verify: true,
        namespace: "default".into(),
        ..Default::default()
    };
    let Ok(c) = client::Client::new(&cfg) else { return false };
    matches!(tokio::time::timeout(Duration::from_secs(5), c.get_raw(&path)).await, Ok(Ok(_)))
}

async fn wait(url: &str, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if healthy(url).await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

fn timeout_of(v: Option<&str>, default: u64) -> Duration {
    v.and_then(|d| crate::config::duration::parse(d).ok()).unwrap_or(Duration::from_secs(default))
}

/// Waits for the kubelet's `/healthz` on 127.0.0.1:10248.
pub async fn wait_kubelet(ctx: &Context, timeout: Duration) -> Result<()> {
    let url = format!("http://127.0.0.1:{}/healthz", k::KUBELET_HEALTHZ_PORT);
    ctx.out.line(format!(
        "[kubelet-check] Waiting for a healthy kubelet at {url}. This can take up to {}",
        crate::config::duration::format(timeout)
    ));
    match wait(&url, timeout).await {
        Some(d) => {
            ctx.out.line(format!("[kubelet-check] The kubelet is healthy after {d:?}"));
            Ok(())
        }
        None => Err(Error::Other(format!(
            "The HTTP call equal to 'curl -sSL {url}' failed: the kubelet is not healthy after {}\n\nUnfortunately, an error has occurred, likely caused by:\n\t- The kubelet is not running\n\t- The kubelet is unhealthy due to a misconfiguration of the node in some way (required cgroups disabled)",
            crate::config::duration::format(timeout)
        ))),
    }
}

pub async fn run(ctx: &Context, cfg: &InitConfig) -> Result<()> {
    let t = cfg.init.timeouts.clone().unwrap_or_default();
    ctx.out.line(format!(
        "[wait-control-plane] Waiting for the kubelet to boot up the control plane as static Pods from directory {:?}",
        format!("{}/{}", k::KUBERNETES_DIR, k::MANIFESTS_SUBDIR)
    ));
    wait_kubelet(ctx, timeout_of(t.kubelet_health_check.as_deref(), 240)).await?;
    let timeout = timeout_of(t.control_plane_component_health_check.as_deref(), 240);
    ctx.out.line(format!(
        "[control-plane-check] Waiting for healthy control plane components. This can take up to {}",
        crate::config::duration::format(timeout)
    ));
    let components = [
        (
            k::KUBE_APISERVER,
            format!("https://{}/livez", crate::util::join_host_port(cfg.advertise_address(), cfg.bind_port())),
        ),
        (k::KUBE_CONTROLLER_MANAGER, format!("https://127.0.0.1:{}/healthz", k::KUBE_CONTROLLER_MANAGER_PORT)),
        (k::KUBE_SCHEDULER, format!("https://127.0.0.1:{}/livez", k::KUBE_SCHEDULER_PORT)),
    ];
    for (name, url) in &components {
        ctx.out.line(format!("[control-plane-check] Checking {name} at {url}"));
    }
    let results = futures_join(
        components
            .iter()
            .map(|(_, url)| {
                let url = url.clone();
                async move { wait(&url, timeout).await }
            })
            .collect(),
    )
    .await;
    let mut failed = Vec::new();
    for ((name, _), r) in components.iter().zip(results) {
        match r {
            Some(d) => ctx.out.line(format!("[control-plane-check] {name} is healthy after {d:?}")),
            None => failed
                .push(format!("{name} check failed: not healthy after {}", crate::config::duration::format(timeout))),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "{}\n\nA control plane component may have crashed or exited when started by the container runtime.",
            failed.join("\n")
        )))
    }
}

/// Runs the futures concurrently and returns their results in order.
async fn futures_join<F: std::future::Future<Output = Option<Duration>> + Send + 'static>(
    fs: Vec<F>,
) -> Vec<Option<Duration>> {
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap_or(None));
    }
    out
}
