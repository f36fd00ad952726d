//! The secure port of kube-controller-manager and kube-scheduler ([`runtime::daemon::serve_health`]) with delegated
//! authentication and authorization against a real apiserver under `Node,RBAC`: health paths for anyone (kubeadm's
//! probes), `/metrics` only for users the apiserver allows (TokenReview, SubjectAccessReview), client certificates
//! of the client CA published in `extension-apiserver-authentication`, and front proxies.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kube_apiserver::pki::Ca;
use kube_apiserver::testing::TestApiserver;
use runtime::delegating_auth::{DelegatingAuth, Flags};
use serde_json::json;

fn curl(port: u16, cert: Option<(&Path, &Path)>, path: &str, headers: &[&str]) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-sS", "-k", "-o", "-", "-w", "\n%{http_code}"]);
    if let Some((crt, key)) = cert {
        c.arg("--cert").arg(crt).arg("--key").arg(key);
    }
    for h in headers {
        c.args(["-H", h]);
    }
    let out = c.arg(format!("https://127.0.0.1:{port}{path}")).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn write_pair(dir: &Path, name: &str, ca: &Ca, cn: &str, orgs: &[&str]) -> (PathBuf, PathBuf) {
    let (crt, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    ca.issue(cn, orgs, &[]).unwrap().write(&crt, &key).unwrap();
    (crt, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_for_all_metrics_for_the_authorized() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let front_ca = Ca::new("front-proxy-ca").unwrap();
    std::fs::write(d.join("front-proxy-ca.crt"), &front_ca.cert_pem).unwrap();
    std::fs::write(d.join("tokens.csv"), "reader-token,metrics-reader,100,\"\"\nnobody-token,nobody,101,\"\"\n")
        .unwrap();
    let flags = [
        "--authorization-mode=Node,RBAC".to_string(),
        format!("--token-auth-file={}", d.join("tokens.csv").display()),
        format!("--requestheader-client-ca-file={}", d.join("front-proxy-ca.crt").display()),
        "--requestheader-allowed-names=front-proxy-client".into(),
        "--requestheader-username-headers=X-Remote-User".into(),
        "--requestheader-group-headers=X-Remote-Group".into(),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
    ];
    let api = TestApiserver::start_with(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await;
    // The component's kubeconfig (kubeadm passes the same file to --kubeconfig and both delegating flags).
    let kubeconfig = d.join("component.conf");
    e2e_kubeconfig(&api, &kubeconfig);
    // metrics-reader may get /metrics (as upstream's system:monitoring would allow).
    let rbac = |plural: &str| api.client.api("rbac.authorization.k8s.io", "v1", plural).unwrap();
    rbac("clusterroles")
        .create(
            &json!({"metadata": {"name": "metrics"}, "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]}),
        )
        .await
        .unwrap();
    rbac("clusterrolebindings")
        .create(&json!({"metadata": {"name": "metrics"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "metrics"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "metrics-reader"}]}))
        .await
        .unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let auth = DelegatingAuth::new(Flags {
        authentication_kubeconfig: Some(kubeconfig.clone()),
        authorization_kubeconfig: Some(kubeconfig.clone()),
        ..Flags::default()
    })
    .unwrap();
    let metrics = runtime::daemon::Metrics::default();
    metrics.set("component_up", 1.0);
    let (_ready_tx, ready) = tokio::sync::watch::channel(true);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let server = tokio::spawn(runtime::daemon::serve_health(addr, "test-component", metrics, ready, auth, stop));
    let deadline = Instant::now() + Duration::from_secs(10);
    while curl(port, None, "/healthz", &[]).0 != 200 {
        assert!(Instant::now() < deadline, "the secure port did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // kubeadm's probes: anonymous health checks.
    for p in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(curl(port, None, p, &[]), (200, "ok".to_string()), "{p}");
    }
    // /metrics: anonymous refused in upstream's words, a reviewed token by what RBAC says.
    let (code, body) = curl(port, None, "/metrics", &[]);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains(r#"forbidden: User \"system:anonymous\" cannot get path \"/metrics\""#), "{body}");
    let (code, body) = curl(port, None, "/metrics", &["Authorization: Bearer reader-token"]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("component_up 1"), "{body}");
    let (code, body) = curl(port, None, "/metrics", &["Authorization: Bearer nobody-token"]);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains(r#"User \"nobody\" cannot get path"#), "{body}");
    let (code, body) = curl(port, None, "/metrics", &["Authorization: Bearer made-up"]);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains(r#""reason":"Unauthorized""#), "{body}");

    // Client certificates of the client CA the apiserver publishes (no --client-ca-file here).
    let admin = write_pair(d, "admin", &api.ca, "kubernetes-admin", &["system:masters"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while curl(port, Some((&admin.0, &admin.1)), "/metrics", &[]).0 != 200 {
        assert!(Instant::now() < deadline, "the client CA of extension-apiserver-authentication was not loaded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stranger = write_pair(d, "stranger", &Ca::new("elsewhere").unwrap(), "kubernetes-admin", &["system:masters"]);
    assert_eq!(curl(port, Some((&stranger.0, &stranger.1)), "/metrics", &[]).0, 403, "another CA's certificate");

    // Front proxies: the allowed name of the requestheader CA asserts the user; another name does not.
    let proxy = write_pair(d, "proxy", &front_ca, "front-proxy-client", &[]);
    let other = write_pair(d, "other", &front_ca, "someone-else", &[]);
    let as_reader = ["X-Remote-User: metrics-reader"];
    assert_eq!(curl(port, Some((&proxy.0, &proxy.1)), "/metrics", &as_reader).0, 200);
    let (code, body) = curl(port, Some((&other.0, &other.1)), "/metrics", &as_reader);
    assert_eq!(code, 403);
    assert!(body.contains("system:anonymous"), "{body}");

    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}

fn e2e_kubeconfig(api: &TestApiserver, path: &Path) {
    use base64::Engine;
    let b64 = |b: &Option<Vec<u8>>| base64::engine::general_purpose::STANDARD.encode(b.as_deref().unwrap_or_default());
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
            api.config.server,
            b64(&api.config.ca_pem),
            b64(&api.config.client_cert_pem),
            b64(&api.config.client_key_pem)
        ),
    )
    .unwrap();
}
