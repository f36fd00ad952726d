//! A whole cluster in one test process, as the real binaries run it: kube-apiserver (TLS, embedded store), the
//! controller-manager with every controller, the scheduler, and kubelets — one on a private containerd with bridge
//! networking (behind a blackhole route for the cluster CIDR, removed afterwards) and any number of hollow ones.
//! Tests drive it with the real kubectl through an admin kubeconfig. With `Spec::services`, kube-proxy (nftables
//! mode) and cluster DNS run too: the DNS server listens on the node's bridge address behind the `kube-dns`
//! Service (a selector-less Service whose EndpointSlice points at it), as pods reach CoreDNS through kube-proxy.
//! [`agnhost`] is the webhook half of upstream's e2e test image, built as the `agnhost` binary.

pub mod agnhost;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube_apiserver::testing::TestApiserver;
use serde_json::Value;
use tokio::sync::watch;

/// The cluster CIDR of the e2e cluster; blackholed while a containerd node runs.
pub const CLUSTER_CIDR: &str = "10.251.0.0/16";
pub const POD_CIDR: &str = "10.251.1.0/24";
const BRIDGE: &str = "kbe0";
/// The e2e apiserver's service CIDR (its default `--service-cluster-ip-range`), blackholed with `Spec::services`.
pub const SERVICE_CIDR: &str = "10.0.0.0/24";
/// The `kube-dns` Service's ClusterIP with `Spec::services` (the kubelet's `clusterDNS`).
pub const DNS_SERVICE_IP: &str = "10.0.0.10";
/// The node's address on the pod bridge (the first address of the pod CIDR), where cluster DNS listens.
const BRIDGE_IP: &str = "10.251.1.1";
/// cluster DNS's port on the node (the kube-dns Service's endpoints).
const DNS_PORT: u16 = 5353;

/// Removes what kube-proxy programmed and the service CIDR's blackhole route.
struct ServicesGuard;

impl Drop for ServicesGuard {
    fn drop(&mut self) {
        kube_proxy::cleanup(&kube_proxy::exec::RealExec::new());
        let _ = std::process::Command::new("ip").args(["route", "del", "blackhole", SERVICE_CIDR]).status();
    }
}

struct NetworkGuard;

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["route", "del", "blackhole", CLUSTER_CIDR]).status();
        let _ = std::process::Command::new("ip").args(["link", "del", BRIDGE]).status();
    }
}

pub struct Cluster {
    pub api: TestApiserver,
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    hollow: Vec<(String, watch::Sender<bool>)>,
    containerd: Option<proto::testing::Containerd>,
    // Dropped in this order: kube-proxy's rules, then the pod network.
    _services: Option<ServicesGuard>,
    _net: Option<NetworkGuard>,
}

/// What to run besides the control plane.
#[derive(Default)]
pub struct Spec {
    /// A kubelet on a private containerd, named `e2e-node`.
    pub containerd_node: bool,
    /// Hollow kubelets, named `<prefix>-0` each (one prefix per node so each can be stopped alone).
    pub hollow: Vec<String>,
    /// Extra kube-controller-manager flags.
    pub kcm_flags: Vec<String>,
    /// As a kubeadm cluster: Node,RBAC with NodeRestriction and ServiceAccount admission, service-account tokens,
    /// CSR signing and approval; the containerd node joins with a bootstrap token (TLS bootstrap) and its API
    /// authenticates and authorizes callers.
    pub secure: bool,
    /// kube-proxy (nftables mode) and cluster DNS for the containerd node: Services answer on their ClusterIPs
    /// and pods resolve `<svc>.<ns>.svc.cluster.local` through `kube-dns` at [`DNS_SERVICE_IP`].
    pub services: bool,
}

/// The bootstrap token the secure cluster's containerd node joins with.
pub const BOOTSTRAP_TOKEN: &str = "abcdef.0123456789abcdef";

impl Cluster {
    pub async fn start(spec: Spec) -> Self {
        let api = if spec.secure { TestApiserver::start_secure().await } else { TestApiserver::start().await };
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("admin.conf");
        write_kubeconfig(&api.config, &kubeconfig);
        let (stop, rx) = watch::channel(false);
        let mut tasks = Vec::new();
        // Controller manager, every controller.
        let mut args = vec!["kube-controller-manager".to_string(), "--controllers=*".into()];
        if spec.secure {
            let f = |n: &str| api.dir.path().join(n).display().to_string();
            args = vec![
                "kube-controller-manager".to_string(),
                "--controllers=*,bootstrapsigner,tokencleaner".into(),
                format!("--cluster-signing-cert-file={}", f("ca.crt")),
                format!("--cluster-signing-key-file={}", f("ca.key")),
                format!("--service-account-private-key-file={}", f("sa.key")),
            ];
            secure_bootstrap(&api).await;
        }
        args.extend(spec.kcm_flags.iter().cloned());
        let options = <kube_controller_manager::Options as clap::Parser>::parse_from(args);
        let root_ca = api.config.ca_pem.as_ref().map(|c| String::from_utf8_lossy(c).into_owned());
        let ctx = kube_controller_manager::Context::new(api.new_client(), options, root_ca);
        tasks.push(tokio::spawn(kube_controller_manager::run_controllers(ctx, rx.clone())));
        // Scheduler.
        let mut cfg = kube_scheduler::SchedulerConfig::default();
        cfg.leader_election.leader_elect = false;
        let scheduler = kube_scheduler::Scheduler::new(api.new_client(), cfg).unwrap();
        let factory = runtime::SharedInformerFactory::new(api.new_client());
        tasks.push(tokio::spawn(scheduler.run(factory, rx.clone())));
        let mut cluster = Cluster {
            api,
            kubeconfig,
            dir,
            stop,
            tasks,
            hollow: Vec::new(),
            containerd: None,
            _services: None,
            _net: None,
        };
        if spec.containerd_node {
            cluster.start_containerd_node(rx.clone(), spec.secure, spec.services).await;
        }
        if spec.services {
            cluster.start_services(rx.clone()).await;
        }
        for prefix in &spec.hollow {
            cluster.start_hollow(prefix).await;
        }
        cluster
    }

    async fn start_containerd_node(&mut self, stop: watch::Receiver<bool>, secure: bool, services: bool) {
        let ok = std::process::Command::new("ip").args(["route", "replace", "blackhole", CLUSTER_CIDR]).status();
        assert!(ok.is_ok_and(|s| s.success()), "adding the blackhole route needs root");
        self._net = Some(NetworkGuard);
        let base = self.dir.path().to_path_buf();
        let ctd = tokio::task::spawn_blocking(move || proto::testing::Containerd::start(&base))
            .await
            .unwrap()
            .expect("containerd must be installed (apt-get install containerd runc containernetworking-plugins)");
        let mut flags = kubelet::Flags {
            container_runtime_endpoint: Some(ctd.endpoint()),
            hostname_override: Some("e2e-node".into()),
            node_ip: Some("127.0.0.1".into()),
            root_dir: Some(self.dir.path().join("kubelet")),
            ..Default::default()
        };
        if secure {
            // TLS bootstrap from a bootstrap token; the API takes certificates of the cluster CA and bearer tokens
            // (TokenReview) and asks the apiserver what each caller may do (SubjectAccessReview).
            let d = self.dir.path();
            let bootstrap = d.join("bootstrap-kubelet.conf");
            let cfg = client::Config {
                client_cert_pem: None,
                client_key_pem: None,
                token: Some(BOOTSTRAP_TOKEN.into()),
                ..self.api.config.clone()
            };
            write_kubeconfig(&cfg, &bootstrap);
            std::fs::write(d.join("ca.crt"), &self.api.ca.cert_pem).unwrap();
            flags.bootstrap_kubeconfig = Some(bootstrap);
            flags.kubeconfig = Some(d.join("kubelet.conf"));
            flags.cert_dir = Some(d.join("kubelet-pki"));
            flags.client_ca_file = Some(d.join("ca.crt"));
            flags.anonymous_auth = Some(false);
            flags.authentication_token_webhook = Some(true);
            flags.authorization_mode = Some("Webhook".into());
        }
        let mut cfg = kubelet::Config::resolve(flags).unwrap();
        cfg.pod_logs_dir = self.dir.path().join("pod-logs");
        // The plain-HTTP health port would collide with a real kubelet on this host.
        cfg.healthz_port = 0;
        cfg.cni_conf_dir = Some(ctd.cni_conf_dir.clone());
        cfg.cgroup_root = ctd.cgroup_root.clone();
        cfg.pod_cidr = Some(POD_CIDR.into());
        cfg.cni_bridge = BRIDGE.into();
        if services {
            cfg.cluster_dns = vec![DNS_SERVICE_IP.into()];
            cfg.cluster_domain = "cluster.local".into();
        }
        // The test must not depend on how full this machine's disk is: pressure only at the very end.
        cfg.eviction_hard = [("nodefs.available", "1%"), ("nodefs.inodesFree", "1%"), ("memory.available", "100Mi")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        cfg.port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = self.api.new_client();
        self.tasks.push(tokio::spawn(async move {
            let out =
                if secure { kubelet::run(cfg, stop).await } else { kubelet::run_with_client(client, cfg, stop).await };
            if let Err(e) = out {
                panic!("kubelet: {e}");
            }
        }));
        self.containerd = Some(ctd);
    }

    /// kube-proxy for the containerd node (nftables mode, its rules removed when the cluster is dropped) and cluster
    /// DNS on the node's bridge address behind the `kube-dns` Service.
    async fn start_services(&mut self, stop: watch::Receiver<bool>) {
        let ok = std::process::Command::new("ip").args(["route", "replace", "blackhole", SERVICE_CIDR]).status();
        assert!(ok.is_ok_and(|s| s.success()), "adding the blackhole route needs root");
        self._services = Some(ServicesGuard);
        // Replies between two pods of one bridge must pass the host's conntrack to be un-DNATed (kubeadm's
        // preflight requires this switch too).
        let _ = std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1");
        let kc = self.kubeconfig.display().to_string();
        let args = [
            "kube-proxy",
            "--kubeconfig",
            &kc,
            "--proxy-mode",
            "nftables",
            "--hostname-override",
            "e2e-node",
            "--cluster-cidr",
            CLUSTER_CIDR,
            "--healthz-bind-address",
            "127.0.0.1:0",
            "--metrics-bind-address",
            "127.0.0.1:0",
        ];
        let opts = <kube_proxy::Options as clap::Parser>::parse_from(args);
        let proxy_stop = stop.clone();
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = kube_proxy::run(opts, proxy_stop).await {
                panic!("kube-proxy: {e}");
            }
        }));
        // Cluster DNS with kubeadm's Corefile, minus `forward` (test traffic stays on this machine).
        let corefile = self.dir.path().join("Corefile");
        std::fs::write(
            &corefile,
            "cluster.local:5353 in-addr.arpa:5353 ip6.arpa:5353 {\n    errors\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }\n    cache 30\n    loadbalance\n}\n",
        )
        .unwrap();
        let dns = cluster_dns::Options {
            conf: Some(corefile.display().to_string()),
            dns_port: DNS_PORT,
            configmap: "kube-system/coredns".into(),
            configmap_key: "Corefile".into(),
            kubeconfig: Some(kc),
            pidfile: None,
        };
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = cluster_dns::run(dns, stop).await {
                panic!("cluster-dns: {e}");
            }
        }));
        self.kubectl_stdin(
            &["apply", "-f", "-"],
            &format!(
                r#"{{"apiVersion": "v1", "kind": "List", "items": [
  {{"apiVersion": "v1", "kind": "Service", "metadata": {{"name": "kube-dns", "namespace": "kube-system", "labels": {{"k8s-app": "kube-dns"}}}},
   "spec": {{"clusterIP": "{DNS_SERVICE_IP}", "ports": [{{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": {DNS_PORT}}},
                                                   {{"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": {DNS_PORT}}}]}}}},
  {{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
   "metadata": {{"name": "kube-dns-node", "namespace": "kube-system",
                "labels": {{"kubernetes.io/service-name": "kube-dns", "endpointslice.kubernetes.io/managed-by": "e2e"}}}},
   "addressType": "IPv4", "endpoints": [{{"addresses": ["{BRIDGE_IP}"], "conditions": {{"ready": true}}}}],
   "ports": [{{"name": "dns", "port": {DNS_PORT}, "protocol": "UDP"}}, {{"name": "dns-tcp", "port": {DNS_PORT}, "protocol": "TCP"}}]}}
]}}"#
            ),
        );
    }

    /// Starts a hollow kubelet named `<prefix>-0`.
    pub async fn start_hollow(&mut self, prefix: &str) {
        let (tx, rx) = watch::channel(false);
        let dir = self.dir.path().join("hollow").join(prefix);
        kubelet::hollow::start(&self.api.config, 1, prefix, &dir, rx).await.unwrap();
        self.hollow.push((prefix.to_string(), tx));
    }

    /// Stops a hollow kubelet: its node stops heartbeating.
    pub fn stop_hollow(&mut self, prefix: &str) {
        for (p, tx) in &self.hollow {
            if p == prefix {
                let _ = tx.send(true);
            }
        }
    }

    /// The private containerd's socket (for `ctr`).
    pub fn containerd_socket(&self) -> Option<&Path> {
        self.containerd.as_ref().map(|c| c.socket.as_path())
    }

    /// Runs kubectl; panics with its stderr unless it succeeds.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_output(args, None);
        if !out.status.success() {
            panic!("kubectl {args:?}: {}\n{}", String::from_utf8_lossy(&out.stderr), self.state());
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Pods, nodes and recent events, for failure messages.
    pub fn state(&self) -> String {
        let show = |args: &[&str]| String::from_utf8_lossy(&self.kubectl_output(args, None).stdout).into_owned();
        format!(
            "--- nodes\n{}--- pods\n{}--- events\n{}",
            show(&["get", "nodes", "-o", "wide"]),
            show(&["get", "pods", "-A", "-o", "wide"]),
            show(&["get", "events", "-A", "--sort-by=.lastTimestamp"])
                .lines()
                .rev()
                .take(25)
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl_output(args, Some(stdin));
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn kubectl_output(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use std::io::Write;
        let mut child = std::process::Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl");
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    /// `kubectl get -o json` parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&a)).unwrap()
    }

    /// Stops everything (kubelets first, so pods are torn down through CRI).
    pub async fn stop(mut self) {
        for (_, tx) in &self.hollow {
            let _ = tx.send(true);
        }
        let _ = self
            .kubectl_output(&["delete", "pods", "--all", "-A", "--grace-period=0", "--force", "--wait=false"], None);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
        if let Some(ctd) = self.containerd.take() {
            tokio::task::spawn_blocking(move || drop(ctd)).await.unwrap();
        }
    }
}

/// Writes an admin kubeconfig (CA, client certificate and key inline) for a client configuration.
/// What kubeadm sets up for joining nodes: the bootstrap token's Secret and the bindings that let bootstrappers
/// create CSRs that are approved automatically, and nodes renew theirs.
async fn secure_bootstrap(api: &TestApiserver) {
    use serde_json::json;
    let (id, secret) = BOOTSTRAP_TOKEN.split_once('.').unwrap();
    let secrets = api.client.api("", "v1", "secrets").unwrap().namespaced("kube-system");
    secrets
        .create(&json!({"metadata": {"name": format!("bootstrap-token-{id}")}, "type": "bootstrap.kubernetes.io/token",
            "stringData": {"token-id": id, "token-secret": secret, "usage-bootstrap-authentication": "true",
                           "usage-bootstrap-signing": "true", "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token"}}))
        .await
        .unwrap();
    let crbs = api.client.api("rbac.authorization.k8s.io", "v1", "clusterrolebindings").unwrap();
    for (name, role, group) in [
        ("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", "system:bootstrappers:kubeadm:default-node-token"),
        (
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            "system:bootstrappers:kubeadm:default-node-token",
        ),
        (
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "system:nodes",
        ),
    ] {
        crbs.create(&json!({"metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}]}))
            .await
            .unwrap();
    }
}

pub fn write_kubeconfig(cfg: &client::Config, path: &Path) {
    use base64::Engine;
    let b64 = |b: &Option<Vec<u8>>| base64::engine::general_purpose::STANDARD.encode(b.as_deref().unwrap_or_default());
    let user = match &cfg.token {
        Some(t) => format!("    token: {t}\n"),
        None => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&cfg.client_cert_pem),
            b64(&cfg.client_key_pem)
        ),
    };
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n{user}contexts:\n- name: e2e\n  context: {{cluster: e2e, user: admin}}\ncurrent-context: e2e\n",
            cfg.server,
            b64(&cfg.ca_pem),
        ),
    )
    .unwrap();
}

/// Polls `f` every 200 ms until it returns Some, failing after `secs` with `what`.
pub async fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
