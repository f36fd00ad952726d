//! kube-apiserver, kube-controller-manager and kube-scheduler static pods with upstream kubeadm's flags, probes
//! and mounts. Ours: with neither `etcd.local` nor `etcd.external` the apiserver keeps its data in its embedded
//! store, so `--etcd-*` flags are left out and its data directory is mounted from the host.

use serde_json::{Value, json};

use super::{Mount, arguments_to_command, component_pod, env, liveness, readiness, startup};
use crate::config::{ControlPlaneComponent, InitConfig};
use crate::constants as k;
use crate::fs::Fs;

fn pki(cfg: &InitConfig, f: &str) -> String {
    format!("{}/{f}", cfg.cert_dir())
}

fn kubeconfig(f: &str) -> String {
    format!("{}/{f}", k::KUBERNETES_DIR)
}

fn image(cfg: &InitConfig, name: &str) -> String {
    k::image(&cfg.cluster.image_repository, name, &cfg.cluster.kubernetes_version)
}

fn startup_timeout(cfg: &InitConfig) -> u64 {
    cfg.init
        .timeouts
        .as_ref()
        .and_then(|t| t.control_plane_component_health_check.as_deref())
        .and_then(|d| crate::config::duration::parse(d).ok())
        .map(|d| d.as_secs())
        .unwrap_or(240)
}

/// The CA-certificate directories upstream mounts when they exist on the host, and the PKI dir.
fn common_mounts(fs: &dyn Fs, cfg: &InitConfig) -> Vec<Mount> {
    let mut m = vec![
        Mount::new("ca-certs", "/etc/ssl/certs", true, "DirectoryOrCreate"),
        Mount::new("k8s-certs", cfg.cert_dir(), true, "DirectoryOrCreate"),
    ];
    for (name, path) in [
        ("etc-ca-certificates", "/etc/ca-certificates"),
        ("etc-pki", "/etc/pki"),
        ("usr-share-ca-certificates", "/usr/share/ca-certificates"),
        ("usr-local-share-ca-certificates", "/usr/local/share/ca-certificates"),
    ] {
        if fs.exists(std::path::Path::new(path)) {
            m.push(Mount::new(name, path, true, "DirectoryOrCreate"));
        }
    }
    m
}

fn extra_mounts(mut m: Vec<Mount>, c: &ControlPlaneComponent) -> Vec<Mount> {
    m.extend(c.extra_volumes.iter().map(Mount::from));
    m
}

fn container(
    cfg: &InitConfig,
    name: &str,
    command: Vec<String>,
    cpu: &str,
    probes: [Option<Value>; 3],
    c: &ControlPlaneComponent,
) -> Value {
    let mut v = json!({
        "command": command,
        "image": image(cfg, name),
        "imagePullPolicy": cfg.init.node_registration.image_pull_policy,
        "resources": {"requests": {"cpu": cpu}},
    });
    let [l, r, s] = probes;
    if let Some(l) = l {
        v["livenessProbe"] = l;
    }
    if let Some(r) = r {
        v["readinessProbe"] = r;
    }
    if let Some(s) = s {
        v["startupProbe"] = s;
    }
    if let Some(e) = env(&c.extra_envs) {
        v["env"] = e;
    }
    v
}

/// Upstream's `getAPIServerCommand`.
pub fn apiserver_command(cfg: &InitConfig) -> Vec<String> {
    let p = |f: &str| pki(cfg, f);
    let mut d: Vec<(String, String)> = [
        ("advertise-address", cfg.advertise_address().to_string()),
        ("enable-admission-plugins", "NodeRestriction".into()),
        ("service-cluster-ip-range", cfg.cluster.networking.service_subnet.clone()),
        ("service-account-key-file", p("sa.pub")),
        ("service-account-signing-key-file", p("sa.key")),
        ("service-account-issuer", format!("https://kubernetes.default.svc.{}", cfg.cluster.networking.dns_domain)),
        ("client-ca-file", p("ca.crt")),
        ("tls-cert-file", p("apiserver.crt")),
        ("tls-private-key-file", p("apiserver.key")),
        ("kubelet-client-certificate", p("apiserver-kubelet-client.crt")),
        ("kubelet-client-key", p("apiserver-kubelet-client.key")),
        ("enable-bootstrap-token-auth", "true".into()),
        ("secure-port", cfg.bind_port().to_string()),
        ("allow-privileged", "true".into()),
        ("kubelet-preferred-address-types", "InternalIP,ExternalIP,Hostname".into()),
        ("requestheader-client-ca-file", p("front-proxy-ca.crt")),
        ("proxy-client-cert-file", p("front-proxy-client.crt")),
        ("proxy-client-key-file", p("front-proxy-client.key")),
        ("requestheader-username-headers", "X-Remote-User".into()),
        ("requestheader-group-headers", "X-Remote-Group".into()),
        ("requestheader-extra-headers-prefix", "X-Remote-Extra-".into()),
        ("requestheader-allowed-names", "front-proxy-client".into()),
        ("authorization-mode", "Node,RBAC".into()),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b))
    .collect();
    if let Some(ext) = &cfg.cluster.etcd.external {
        d.push(("etcd-servers".into(), ext.endpoints.join(",")));
        for (flag, v) in
            [("etcd-cafile", &ext.ca_file), ("etcd-certfile", &ext.cert_file), ("etcd-keyfile", &ext.key_file)]
        {
            if !v.is_empty() {
                d.push((flag.into(), v.clone()));
            }
        }
    } else if cfg.cluster.etcd.local.is_some() {
        d.push(("etcd-servers".into(), format!("https://127.0.0.1:{}", k::ETCD_LISTEN_CLIENT_PORT)));
        d.push(("etcd-cafile".into(), p("etcd/ca.crt")));
        d.push(("etcd-certfile".into(), p("apiserver-etcd-client.crt")));
        d.push(("etcd-keyfile".into(), p("apiserver-etcd-client.key")));
    } else {
        d.push(("data-dir".into(), k::APISERVER_DATA_DIR.into()));
    }
    arguments_to_command(k::KUBE_APISERVER, &d, &cfg.cluster.api_server.component.extra_args)
}

/// The kube-apiserver static pod.
pub fn apiserver_pod(fs: &dyn Fs, cfg: &InitConfig) -> Value {
    let host = cfg.advertise_address();
    let port = cfg.bind_port();
    let mut mounts = common_mounts(fs, cfg);
    if let Some(ext) = &cfg.cluster.etcd.external {
        // External etcd files outside the mounted dirs get their own volumes (upstream's `etcd-certs-<n>`).
        let mut dirs: Vec<String> = [&ext.ca_file, &ext.cert_file, &ext.key_file]
            .iter()
            .filter(|f| !f.is_empty())
            .filter_map(|f| std::path::Path::new(f.as_str()).parent().map(|d| d.display().to_string()))
            .filter(|d| !d.starts_with(cfg.cert_dir()) && !d.starts_with("/etc/ssl/certs"))
            .collect();
        dirs.sort();
        dirs.dedup();
        for (i, d) in dirs.iter().enumerate() {
            mounts.push(Mount::new(&format!("etcd-certs-{i}"), d, true, "DirectoryOrCreate"));
        }
    } else if cfg.cluster.etcd.local.is_none() {
        mounts.push(Mount::new("kube-apiserver-data", k::APISERVER_DATA_DIR, false, "DirectoryOrCreate"));
    }
    let c = &cfg.cluster.api_server.component;
    let container = container(
        cfg,
        k::KUBE_APISERVER,
        apiserver_command(cfg),
        "250m",
        [
            Some(liveness(host, "/livez", port, "HTTPS")),
            Some(readiness(host, "/readyz", port, "HTTPS")),
            Some(startup(host, "/livez", port, "HTTPS", startup_timeout(cfg))),
        ],
        c,
    );
    let endpoint = crate::util::join_host_port(host, port);
    component_pod(
        k::KUBE_APISERVER,
        container,
        &extra_mounts(mounts, c),
        Some(json!({k::ANNOTATION_APISERVER_ENDPOINT: endpoint})),
    )
}

/// Upstream's `getControllerManagerCommand`. Without the CA key (external CA) the signing flags are left out.
pub fn controller_manager_command(fs: &dyn Fs, cfg: &InitConfig) -> Vec<String> {
    let kc = kubeconfig(k::CONTROLLER_MANAGER_KUBECONFIG);
    let p = |f: &str| pki(cfg, f);
    let mut d: Vec<(String, String)> = [
        ("bind-address", "127.0.0.1".to_string()),
        ("leader-elect", "true".into()),
        ("kubeconfig", kc.clone()),
        ("authentication-kubeconfig", kc.clone()),
        ("authorization-kubeconfig", kc),
        ("client-ca-file", p("ca.crt")),
        ("requestheader-client-ca-file", p("front-proxy-ca.crt")),
        ("root-ca-file", p("ca.crt")),
        ("service-account-private-key-file", p("sa.key")),
        ("use-service-account-credentials", "true".into()),
        ("controllers", "*,bootstrapsigner,tokencleaner".into()),
        ("cluster-name", cfg.cluster.cluster_name.clone()),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b))
    .collect();
    if fs.exists(std::path::Path::new(&p("ca.key"))) {
        d.push(("cluster-signing-cert-file".into(), p("ca.crt")));
        d.push(("cluster-signing-key-file".into(), p("ca.key")));
    }
    if !cfg.cluster.networking.pod_subnet.is_empty() {
        d.push(("allocate-node-cidrs".into(), "true".into()));
        d.push(("cluster-cidr".into(), cfg.cluster.networking.pod_subnet.clone()));
        if !cfg.cluster.networking.service_subnet.is_empty() {
            d.push(("service-cluster-ip-range".into(), cfg.cluster.networking.service_subnet.clone()));
        }
    }
    arguments_to_command(k::KUBE_CONTROLLER_MANAGER, &d, &cfg.cluster.controller_manager.extra_args)
}

pub fn controller_manager_pod(fs: &dyn Fs, cfg: &InitConfig) -> Value {
    let mut mounts = common_mounts(fs, cfg);
    mounts.push(Mount::new(
        "flexvolume-dir",
        "/usr/libexec/kubernetes/kubelet-plugins/volume/exec",
        false,
        "DirectoryOrCreate",
    ));
    mounts.push(Mount {
        name: "kubeconfig".into(),
        host_path: kubeconfig(k::CONTROLLER_MANAGER_KUBECONFIG),
        mount_path: kubeconfig(k::CONTROLLER_MANAGER_KUBECONFIG),
        read_only: true,
        path_type: "FileOrCreate".into(),
    });
    let c = &cfg.cluster.controller_manager;
    let port = k::KUBE_CONTROLLER_MANAGER_PORT;
    let container = container(
        cfg,
        k::KUBE_CONTROLLER_MANAGER,
        controller_manager_command(fs, cfg),
        "200m",
        [
            Some(liveness("127.0.0.1", "/healthz", port, "HTTPS")),
            None,
            Some(startup("127.0.0.1", "/healthz", port, "HTTPS", startup_timeout(cfg))),
        ],
        c,
    );
    component_pod(k::KUBE_CONTROLLER_MANAGER, container, &extra_mounts(mounts, c), None)
}

/// Upstream's `getSchedulerCommand`.
pub fn scheduler_command(cfg: &InitConfig) -> Vec<String> {
    let kc = kubeconfig(k::SCHEDULER_KUBECONFIG);
    let d: Vec<(String, String)> = [
        ("bind-address", "127.0.0.1".to_string()),
        ("leader-elect", "true".into()),
        ("kubeconfig", kc.clone()),
        ("authentication-kubeconfig", kc.clone()),
        ("authorization-kubeconfig", kc),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b))
    .collect();
    arguments_to_command(k::KUBE_SCHEDULER, &d, &cfg.cluster.scheduler.extra_args)
}

pub fn scheduler_pod(cfg: &InitConfig) -> Value {
    let mounts = vec![Mount {
        name: "kubeconfig".into(),
        host_path: kubeconfig(k::SCHEDULER_KUBECONFIG),
        mount_path: kubeconfig(k::SCHEDULER_KUBECONFIG),
        read_only: true,
        path_type: "FileOrCreate".into(),
    }];
    let c = &cfg.cluster.scheduler;
    let port = k::KUBE_SCHEDULER_PORT;
    let container = container(
        cfg,
        k::KUBE_SCHEDULER,
        scheduler_command(cfg),
        "100m",
        [
            Some(liveness("127.0.0.1", "/livez", port, "HTTPS")),
            Some(readiness("127.0.0.1", "/readyz", port, "HTTPS")),
            Some(startup("127.0.0.1", "/livez", port, "HTTPS", startup_timeout(cfg))),
        ],
        c,
    );
    component_pod(k::KUBE_SCHEDULER, container, &extra_mounts(mounts, c), None)
}
