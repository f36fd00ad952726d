//! For tests of the components built on the apiserver (runtime, controllers, scheduler, kubelet): starts a real
//! kube-apiserver in-process (its `serve` on a listener on 127.0.0.1:0) with TLS, a client CA and an admin client
//! certificate in a temp dir, and hands out clients for it. Stopped when dropped.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use crate::Options;
use crate::pki::Ca;
use client::{Client, Config};
use serde_json::{Value, json};

/// Waits for `f` to finish, failing the test after `secs` seconds instead of hanging.
pub async fn within<T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs}s waiting for {what}"),
    }
}

/// Polls `cond` every 20 ms until it holds, failing after `secs` seconds.
pub async fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    within(secs, what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

pub struct TestApiserver {
    pub config: Config,
    pub client: Client,
    /// The cluster CA (its files are `ca.crt` and `ca.key` in `dir`), to issue more certificates.
    pub ca: Ca,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub dir: tempfile::TempDir,
    data_dir: PathBuf,
}

/// Certificates, a port and a client configuration for an apiserver that is not running yet.
pub struct Prepared {
    pub config: Config,
    pub ca: Ca,
    dir: tempfile::TempDir,
    port: u16,
    /// Held until the server starts (None: the port is free, so connections to it are refused meanwhile).
    listener: Option<tokio::net::TcpListener>,
    /// `--data-dir` (default: `data` in the temp dir).
    data_dir: Option<PathBuf>,
}

impl Prepared {
    /// Certificates in a temp dir and a listener on 127.0.0.1:0.
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let ca = Ca::new("kubernetes").expect("CA");
        std::fs::write(d.join("ca.crt"), &ca.cert_pem).expect("write CA");
        std::fs::write(d.join("ca.key"), ca.key_pem()).expect("write CA key");
        let serving = ca.issue("kube-apiserver", &[], &["127.0.0.1", "localhost"]).expect("serving cert");
        serving.write(&d.join("apiserver.crt"), &d.join("apiserver.key")).expect("write serving cert");
        let admin = ca.issue("kubernetes-admin", &["system:masters"], &[]).expect("admin cert");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let config = Config {
            server: format!("https://127.0.0.1:{port}"),
            ca_pem: Some(ca.cert_pem.clone().into_bytes()),
            client_cert_pem: Some(admin.cert_pem.clone().into_bytes()),
            client_key_pem: Some(admin.key_pem.clone().into_bytes()),
            namespace: "default".into(),
            ..Default::default()
        };
        Prepared { config, ca, dir, port, listener: Some(listener), data_dir: None }
    }

    /// Runs on this `--data-dir` (e.g. a restored snapshot) instead of a new one.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Frees the port until [`Prepared::start`]: clients get "connection refused".
    pub fn refuse_connections(mut self) -> Self {
        self.listener = None;
        self
    }

    /// Starts the apiserver with extra kube-apiserver flags and waits until it is ready.
    pub async fn start(self, extra: &[&str]) -> TestApiserver {
        let Prepared { config, ca, dir, port, listener, data_dir } = self;
        let listener = match listener {
            Some(l) => l,
            None => tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind again"),
        };
        let d = dir.path();
        let data_dir = data_dir.unwrap_or_else(|| d.join("data"));
        let path = |f: &str| d.join(f).display().to_string();
        let mut args = vec![
            "kube-apiserver".to_string(),
            format!("--secure-port={port}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--data-dir={}", data_dir.display()),
            format!("--cert-dir={}", path("certs")),
            format!("--tls-cert-file={}", path("apiserver.crt")),
            format!("--tls-private-key-file={}", path("apiserver.key")),
            format!("--client-ca-file={}", path("ca.crt")),
        ];
        // As upstream's integration tests: no ServiceAccount admission (no controller-manager makes `default`
        // accounts here) unless the test chooses its plugins.
        if !extra.iter().any(|a| a.contains("admission-plugins")) {
            args.push("--disable-admission-plugins=ServiceAccount".into());
        }
        // kubeadm's order: test nodes' names do not resolve.
        if !extra.iter().any(|a| a.contains("kubelet-preferred-address-types")) {
            args.push("--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let opts = <Options as clap::Parser>::try_parse_from(args).expect("apiserver flags");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = crate::server::serve(opts, listener, shutdown).await {
                panic!("apiserver failed: {e}");
            }
        });
        let client = Client::new(&config).expect("client");
        let server = TestApiserver { config, client, ca, stop: Some(stop), task: Some(task), dir, data_dir };
        server.wait_ready().await;
        server
    }
}

impl TestApiserver {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts with extra kube-apiserver flags.
    pub async fn start_with(extra: &[&str]) -> Self {
        Prepared::new().await.start(extra).await
    }

    /// Starts as a kubeadm cluster's apiserver runs: Node,RBAC, NodeRestriction and ServiceAccount admission,
    /// privileged containers allowed, service-account tokens (`sa.key`/`sa.pub` in `dir`), bootstrap tokens, and a
    /// client certificate towards kubelets (`apiserver-kubelet-client.{crt,key}`).
    pub async fn start_secure() -> Self {
        let p = Prepared::new().await;
        let d = p.dir.path().to_path_buf();
        let sa = rcgen::KeyPair::generate().expect("service-account key");
        std::fs::write(d.join("sa.key"), sa.serialize_pem()).expect("write sa.key");
        std::fs::write(d.join("sa.pub"), sa.public_key_pem()).expect("write sa.pub");
        let kc = p.ca.issue("kube-apiserver-kubelet-client", &["system:masters"], &[]).expect("kubelet client cert");
        kc.write(&d.join("apiserver-kubelet-client.crt"), &d.join("apiserver-kubelet-client.key")).expect("write");
        let f = |n: &str| d.join(n).display().to_string();
        let flags = [
            "--authorization-mode=Node,RBAC".to_string(),
            "--enable-admission-plugins=NodeRestriction,ServiceAccount".into(),
            "--enable-bootstrap-token-auth".into(),
            // kubeadm's: its kube-proxy DaemonSet is privileged.
            "--allow-privileged=true".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", f("sa.pub")),
            format!("--service-account-signing-key-file={}", f("sa.key")),
            format!("--kubelet-client-certificate={}", f("apiserver-kubelet-client.crt")),
            format!("--kubelet-client-key={}", f("apiserver-kubelet-client.key")),
        ];
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        p.start(&flags).await
    }

    async fn wait_ready(&self) {
        within(30, "apiserver /readyz", async {
            loop {
                if self.client.get_raw("/readyz").await.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
    }

    /// The embedded store's `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    /// A kubeconfig for the admin client (`<dir>/admin.conf`), written once.
    pub fn kubeconfig(&self) -> PathBuf {
        use base64::Engine;
        let path = self.dir.path().join("admin.conf");
        if !path.exists() {
            let b64 = |b: &Option<Vec<u8>>| {
                base64::engine::general_purpose::STANDARD.encode(b.as_deref().unwrap_or_default())
            };
            let c = &self.config;
            let text = format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\ncurrent-context: test\n",
                c.server,
                b64(&c.ca_pem),
                b64(&c.client_cert_pem),
                b64(&c.client_key_pem)
            );
            std::fs::write(&path, text).expect("writing the kubeconfig");
        }
        path
    }

    /// Runs the real `/usr/bin/kubectl` against this apiserver as its admin (off the async runtime).
    pub async fn kubectl(&self, args: &[&str]) -> std::process::Output {
        let kubeconfig = self.kubeconfig();
        let dir = self.dir.path().to_path_buf();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("/usr/bin/kubectl")
                .args(&args)
                .env("KUBECONFIG", &kubeconfig)
                .env("KUBECACHEDIR", dir.join("kcache"))
                .env("HOME", &dir)
                .output()
                .expect("running kubectl")
        })
        .await
        .expect("kubectl task")
    }

    /// A new client (its own connection pool).
    pub fn new_client(&self) -> Client {
        Client::new(&self.config).expect("client")
    }

    /// The value of a metric line starting with `prefix` (e.g. `apiserver_longrunning_requests{verb="WATCH"}`),
    /// summed over matching lines.
    pub async fn metric(&self, prefix: &str) -> f64 {
        let text = self.client.get_raw("/metrics").await.expect("metrics");
        String::from_utf8_lossy(&text)
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// How many requests the apiserver served for a core resource with this HTTP method and scope (`cluster`,
    /// `namespace` or `resource`), all codes. Lists and watches are both GETs on the collection.
    pub async fn requests(&self, method: &str, resource: &str, scope: &str) -> f64 {
        let text = self.client.get_raw("/metrics").await.expect("metrics");
        let want = [
            format!("verb=\"{method}\""),
            "group=\"\"".to_string(),
            format!("resource=\"{resource}\""),
            format!("scope=\"{scope}\""),
        ];
        String::from_utf8_lossy(&text)
            .lines()
            .filter(|l| l.starts_with("apiserver_request_total{") && want.iter().all(|w| l.contains(w.as_str())))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Open watches (`apiserver_longrunning_requests{verb="WATCH"}`).
    pub async fn open_watches(&self) -> f64 {
        self.metric("apiserver_longrunning_requests{verb=\"WATCH\"}").await
    }

    /// Creates a namespace.
    pub async fn namespace(&self, name: &str) {
        let api = self.client.api("", "v1", "namespaces").expect("namespaces");
        api.create(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
            .await
            .expect("create namespace");
    }

    /// Stops the apiserver and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = within(15, "apiserver shutdown", t).await;
        }
    }
}

impl Drop for TestApiserver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A ConfigMap body.
/// Runs `f` on a thread that entered the network namespace `netns` (`ip netns add` made it): sockets it opens stay
/// in that namespace, whichever thread uses them afterwards.
pub fn in_netns<T: Send + 'static>(netns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    use std::os::fd::AsFd;
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        rustix::thread::move_into_link_name_space(file.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .expect("setns");
        f()
    })
    .join()
    .expect("thread in netns")
}

pub fn configmap(ns: &str, name: &str, labels: Value, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns, "labels": labels}, "data": data})
}

/// For benchmarks: the release binaries next to the bench executable, run as real processes.
pub mod release {
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use client::{Client, Config};

    use crate::pki::Ca;

    /// The path of a release binary of this workspace.
    pub fn release(bin: &str) -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        exe.parent().unwrap().parent().unwrap().join(bin)
    }

    /// A field of `/proc/<pid>/status` in MB (its value is in kB).
    fn status_mb(pid: u32, field: &str) -> f64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    }

    pub fn rss_mb(pid: u32) -> f64 {
        status_mb(pid, "VmRSS")
    }

    /// The RSS's parts: anonymous memory, and file pages (mostly the binary's code).
    pub fn rss_parts(pid: u32) -> String {
        format!("anonymous {:.1} MB, file-backed {:.1} MB", status_mb(pid, "RssAnon"), status_mb(pid, "RssFile"))
    }

    /// CPU seconds (user + system) a process has used.
    pub fn cpu_secs(pid: u32) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / 100.0
    }

    pub struct Proc(pub Child);
    impl Drop for Proc {
        fn drop(&mut self) {
            let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
            std::thread::sleep(Duration::from_millis(500));
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    pub async fn start_apiserver(dir: &Path) -> (Proc, Client, PathBuf) {
        start_apiserver_with(dir, &[]).await
    }

    /// As [`start_apiserver`], with more flags (e.g. `--etcd-servers`).
    pub async fn start_apiserver_with(dir: &Path, extra: &[String]) -> (Proc, Client, PathBuf) {
        let ca = Ca::new("kubernetes").unwrap();
        std::fs::write(dir.join("ca.crt"), &ca.cert_pem).unwrap();
        ca.issue("kube-apiserver", &[], &["127.0.0.1"]).unwrap().write(&dir.join("s.crt"), &dir.join("s.key")).unwrap();
        let admin = ca.issue("admin", &["system:masters"], &[]).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(release("kube-apiserver"))
            .args([
                format!("--secure-port={port}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--data-dir={}", dir.join("data").display()),
                format!("--tls-cert-file={}", dir.join("s.crt").display()),
                format!("--tls-private-key-file={}", dir.join("s.key").display()),
                format!("--client-ca-file={}", dir.join("ca.crt").display()),
                "--max-requests-inflight=4000".into(),
                "--max-mutating-requests-inflight=2000".into(),
            ])
            // No controller-manager makes `default` service accounts for the benchmarks' pods.
            .args(
                (!extra.iter().any(|a| a.contains("admission-plugins")))
                    .then_some("--disable-admission-plugins=ServiceAccount"),
            )
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("release kube-apiserver");
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let kubeconfig = dir.join("admin.conf");
        std::fs::write(&kubeconfig, format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
            b64(&ca.cert_pem), b64(&admin.cert_pem), b64(&admin.key_pem))).unwrap();
        let client = Client::new(&Config::from_kubeconfig(&kubeconfig).unwrap()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.get_raw("/readyz").await.is_err() {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (Proc(child), client, kubeconfig)
    }
}
