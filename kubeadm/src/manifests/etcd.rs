//! The local etcd static pod (upstream's `phases/etcd/local.go`): a single-member cluster on the advertise
//! address with TLS for clients and peers, metrics and health on 127.0.0.1:2381. Every flag and probe is one
//! etcd 3.4 (Debian's `etcd-server`, what our etcd image runs) accepts.

use serde_json::{Value, json};

use super::{Mount, arguments_to_command, component_pod, env, liveness, startup};
use crate::config::InitConfig;
use crate::constants as k;

/// The probes' paths on the metrics listener. The etcd in our image is Debian's 3.4, which serves `/health` but
/// not the `/livez` and `/readyz` upstream's 1.33 probes use (etcd >= 3.5.11), so the manifest carries the probes
/// upstream kubeadm wrote before them: a serializable liveness check that tolerates a NOSPACE alarm, a
/// linearizable startup check, and no readiness probe.
pub const LIVENESS_PATH: &str = "/health?exclude=NOSPACE&serializable=true";
pub const STARTUP_PATH: &str = "/health?serializable=false";

/// Upstream's `getEtcdCommand` for the first member (`initial-cluster` is this node alone).
pub fn etcd_command(cfg: &InitConfig) -> Vec<String> {
    command(cfg, None)
}

/// A member joining an existing cluster: `initial-cluster` lists every member (name, peer URL) and
/// `initial-cluster-state` is `existing` (upstream's `CreateStackedEtcdStaticPodManifestFile`).
pub fn etcd_command_joining(cfg: &InitConfig, members: &[(String, String)]) -> Vec<String> {
    command(cfg, Some(members))
}

fn command(cfg: &InitConfig, members: Option<&[(String, String)]>) -> Vec<String> {
    let local = cfg.cluster.etcd.local.clone().unwrap_or_default();
    let adv = crate::util::join_host_port(cfg.advertise_address(), k::ETCD_LISTEN_CLIENT_PORT);
    let peer = crate::util::join_host_port(cfg.advertise_address(), k::ETCD_LISTEN_PEER_PORT);
    let p = |f: &str| format!("{}/{f}", cfg.cert_dir());
    let d: Vec<(String, String)> = [
        ("name", cfg.node_name().to_string()),
        ("listen-client-urls", format!("https://127.0.0.1:{},https://{adv}", k::ETCD_LISTEN_CLIENT_PORT)),
        ("advertise-client-urls", format!("https://{adv}")),
        ("listen-peer-urls", format!("https://{peer}")),
        ("initial-advertise-peer-urls", format!("https://{peer}")),
        ("data-dir", local.data_dir.clone()),
        ("cert-file", p("etcd/server.crt")),
        ("key-file", p("etcd/server.key")),
        ("trusted-ca-file", p("etcd/ca.crt")),
        ("client-cert-auth", "true".into()),
        ("peer-cert-file", p("etcd/peer.crt")),
        ("peer-key-file", p("etcd/peer.key")),
        ("peer-trusted-ca-file", p("etcd/ca.crt")),
        ("peer-client-cert-auth", "true".into()),
        ("snapshot-count", "10000".into()),
        ("listen-metrics-urls", format!("http://127.0.0.1:{}", k::ETCD_METRICS_PORT)),
        ("experimental-initial-corrupt-check", "true".into()),
        ("experimental-watch-progress-notify-interval", "5s".into()),
        ("initial-cluster", format!("{}=https://{peer}", cfg.node_name())),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b))
    .collect();
    let mut d = d;
    if let Some(members) = members {
        let list: Vec<String> = members.iter().map(|(n, u)| format!("{n}={u}")).collect();
        d.retain(|(n, _)| n != "initial-cluster");
        d.push(("initial-cluster".into(), list.join(",")));
        d.push(("initial-cluster-state".into(), "existing".into()));
    }
    arguments_to_command(k::ETCD, &d, &local.extra_args)
}

/// The etcd static pod.
pub fn etcd_pod(cfg: &InitConfig) -> Value {
    pod(cfg, etcd_command(cfg))
}

/// The static pod of a member joining an existing cluster.
pub fn etcd_pod_joining(cfg: &InitConfig, members: &[(String, String)]) -> Value {
    pod(cfg, etcd_command_joining(cfg, members))
}

fn pod(cfg: &InitConfig, command: Vec<String>) -> Value {
    let local = cfg.cluster.etcd.local.clone().unwrap_or_default();
    let repo = if local.image.image_repository.is_empty() {
        &cfg.cluster.image_repository
    } else {
        &local.image.image_repository
    };
    let tag = if local.image.image_tag.is_empty() { k::ETCD_VERSION } else { &local.image.image_tag };
    let mounts = vec![
        Mount::new("etcd-data", &local.data_dir, false, "DirectoryOrCreate"),
        Mount::new("etcd-certs", &format!("{}/etcd", cfg.cert_dir()), false, "DirectoryOrCreate"),
    ];
    let timeout = cfg
        .init
        .timeouts
        .as_ref()
        .and_then(|t| t.control_plane_component_health_check.as_deref())
        .and_then(|d| crate::config::duration::parse(d).ok())
        .map(|d| d.as_secs())
        .unwrap_or(240);
    let port = k::ETCD_METRICS_PORT;
    let mut container = json!({
        "command": command,
        "image": k::image(repo, k::ETCD, tag),
        "imagePullPolicy": cfg.init.node_registration.image_pull_policy,
        "livenessProbe": liveness("127.0.0.1", LIVENESS_PATH, port, "HTTP"),
        "startupProbe": startup("127.0.0.1", STARTUP_PATH, port, "HTTP", timeout),
        "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}},
    });
    if let Some(e) = env(&local.extra_envs) {
        container["env"] = e;
    }
    let adv = crate::util::join_host_port(cfg.advertise_address(), k::ETCD_LISTEN_CLIENT_PORT);
    component_pod(k::ETCD, container, &mounts, Some(json!({k::ANNOTATION_ETCD_CLIENT_URLS: format!("https://{adv}")})))
}
