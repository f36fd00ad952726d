//! Starts the real kube-apiserver binary with TLS, a client CA and an admin kubeconfig in a temp dir, and drives
//! it with `/usr/bin/kubectl`, as a user would. Stopped (SIGTERM) and cleaned up on drop.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kube_apiserver::pki::Ca;

pub struct Apiserver {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub kubeconfig: PathBuf,
    pub token: String,
    pub ca_file: PathBuf,
    /// The cluster CA, to issue certificates for more users.
    pub ca: Ca,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Apiserver {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with extra flags (e.g. `--etcd-servers=...`), or against etcd when `KUBE_TEST_ETCD` names one.
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = Ca::new("kubernetes").unwrap();
        std::fs::write(d.join("ca.crt"), &ca.cert_pem).unwrap();
        let serving = ca.issue("kube-apiserver", &[], &["127.0.0.1", "localhost"]).unwrap();
        serving.write(&d.join("apiserver.crt"), &d.join("apiserver.key")).unwrap();
        let admin = ca.issue("kubernetes-admin", &["system:masters"], &[]).unwrap();
        let token = "test-token-0123456789".to_string();
        std::fs::write(d.join("tokens.csv"), format!("{token},token-user,1000,\"dev,ops\"\n")).unwrap();
        // Service-account tokens (ECDSA P-256, PKCS#8) and bootstrap tokens, as a kubeadm cluster has them.
        let sa = rcgen::KeyPair::generate().unwrap();
        std::fs::write(d.join("sa.key"), sa.serialize_pem()).unwrap();
        std::fs::write(d.join("sa.pub"), sa.public_key_pem()).unwrap();
        let port = free_port();
        let b64 = |s: &str| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(s)
        };
        let kubeconfig = d.join("admin.conf");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\ncurrent-context: test\n",
                b64(&ca.cert_pem),
                b64(&admin.cert_pem),
                b64(&admin.key_pem)
            ),
        )
        .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kube-apiserver"));
        // No controller-manager makes `default` service accounts here: ServiceAccount admission stays off unless the
        // test chooses its plugins (as upstream's integration tests).
        if !extra.iter().any(|a| a.contains("admission-plugins")) {
            cmd.arg("--disable-admission-plugins=ServiceAccount");
        }
        // kubeadm's order: test nodes' names do not resolve.
        cmd.arg("--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname");
        cmd.arg(format!("--secure-port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--data-dir={}", d.join("data").display()))
            .arg(format!("--cert-dir={}", d.join("certs").display()))
            .arg(format!("--tls-cert-file={}", d.join("apiserver.crt").display()))
            .arg(format!("--tls-private-key-file={}", d.join("apiserver.key").display()))
            .arg(format!("--client-ca-file={}", d.join("ca.crt").display()))
            .arg(format!("--token-auth-file={}", d.join("tokens.csv").display()))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!("--service-account-key-file={}", d.join("sa.pub").display()))
            .arg(format!("--service-account-signing-key-file={}", d.join("sa.key").display()))
            .arg("--enable-bootstrap-token-auth")
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(d.join("apiserver.log")).unwrap()));
        if let Ok(etcd) = std::env::var("KUBE_TEST_ETCD") {
            cmd.arg(format!("--etcd-servers={etcd}")).arg(format!("--etcd-prefix=/test-{port}"));
        }
        let child = cmd.spawn().expect("start kube-apiserver");
        let server = Apiserver { child: Some(child), ca_file: d.join("ca.crt"), dir, port, kubeconfig, token, ca };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.kubectl(&["get", "--raw", "/readyz"]);
            if out.status.success() {
                return;
            }
            if Instant::now() > deadline {
                panic!("apiserver not ready: {}\n{}", String::from_utf8_lossy(&out.stderr), self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default()
    }

    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.dir.path().join("kcache"))
            .env("HOME", self.dir.path());
        c
    }

    /// Runs kubectl with the admin kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args).output().expect("run kubectl")
    }

    /// Runs kubectl with stdin.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child =
            self.kubectl_cmd(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs kubectl and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A kubeconfig for a user with a client certificate (CN `user`, O `groups`).
    pub fn user_kubeconfig(&self, user: &str, groups: &[&str]) -> PathBuf {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let cert = self.ca.issue(user, groups, &[]).unwrap();
        let path = self.dir.path().join(format!("{}.conf", user.replace(':', "_")));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: u\ncurrent-context: test\n",
                self.port,
                b64(&self.ca.cert_pem),
                b64(&cert.cert_pem),
                b64(&cert.key_pem)
            ),
        )
        .unwrap();
        path
    }

    /// Runs kubectl with another kubeconfig (see [`Apiserver::user_kubeconfig`]).
    pub fn kubectl_as(&self, kubeconfig: &std::path::Path, args: &[&str]) -> Output {
        let mut c = self.kubectl_cmd(args);
        c.env("KUBECONFIG", kubeconfig);
        c.output().expect("run kubectl")
    }

    /// As [`Apiserver::kubectl_as`], with stdin.
    pub fn kubectl_as_stdin(&self, kubeconfig: &std::path::Path, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut c = self.kubectl_cmd(args);
        c.env("KUBECONFIG", kubeconfig).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs kubectl as someone else: a bearer token, no client certificate.
    pub fn kubectl_token(&self, token: &str, args: &[&str]) -> Output {
        let server = format!("https://127.0.0.1:{}", self.port);
        let ca = self.ca_file.display().to_string();
        let mut a =
            vec!["--kubeconfig=/dev/null", "--server", &server, "--certificate-authority", &ca, "--token", token];
        a.extend(args);
        self.kubectl(&a)
    }

    /// Runs kubectl and expects failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(!out.status.success(), "kubectl {args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs kubectl with stdin and expects success.
    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl_stdin(args, stdin);
        assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn apply(&self, yaml: &str) -> String {
        let out = self.kubectl_stdin(&["apply", "-f", "-"], yaml);
        assert!(out.status.success(), "apply failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    /// Sends SIGTERM and waits; returns whether it exited within the timeout.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for Apiserver {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
