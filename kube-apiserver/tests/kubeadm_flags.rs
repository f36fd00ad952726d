//! The kube-apiserver flags kubeadm's static pod passes, with upstream's behaviour: front-proxy (request-header)
//! authentication, the `extension-apiserver-authentication` ConfigMap, `--allow-privileged`, anonymous health
//! checks under `Node,RBAC` (kubeadm's probes), and the proxy-client pair checked at start.

use std::path::{Path, PathBuf};
use std::process::Command;

use kube_apiserver::pki::Ca;
use kube_apiserver::testing::TestApiserver;
use serde_json::{Value, json};

struct FrontProxy {
    dir: tempfile::TempDir,
}

impl FrontProxy {
    /// kubeadm's front-proxy CA and client, plus a certificate of that CA with another name.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("front-proxy-ca").unwrap();
        std::fs::write(dir.path().join("front-proxy-ca.crt"), &ca.cert_pem).unwrap();
        for (file, cn) in [("front-proxy-client", "front-proxy-client"), ("other", "someone-else")] {
            ca.issue(cn, &[], &[])
                .unwrap()
                .write(&dir.path().join(format!("{file}.crt")), &dir.path().join(format!("{file}.key")))
                .unwrap();
        }
        FrontProxy { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// kubeadm's flags for the front proxy.
    fn flags(&self) -> Vec<String> {
        vec![
            format!("--requestheader-client-ca-file={}", self.path("front-proxy-ca.crt")),
            "--requestheader-allowed-names=front-proxy-client".into(),
            "--requestheader-username-headers=X-Remote-User".into(),
            "--requestheader-group-headers=X-Remote-Group".into(),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
            format!("--proxy-client-cert-file={}", self.path("front-proxy-client.crt")),
            format!("--proxy-client-key-file={}", self.path("front-proxy-client.key")),
        ]
    }
}

/// `curl` against the apiserver: (status, body).
fn curl(
    api: &TestApiserver,
    cert: Option<(&Path, &Path)>,
    method: &str,
    path: &str,
    headers: &[&str],
    body: Option<&str>,
) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method, "--cacert"]).arg(api.dir.path().join("ca.crt"));
    if let Some((crt, key)) = cert {
        c.arg("--cert").arg(crt).arg("--key").arg(key);
    }
    for h in headers {
        c.args(["-H", h]);
    }
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "--data", b]);
    }
    let out = c.arg(format!("{}{path}", api.config.server)).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn admin_files(api: &TestApiserver) -> (PathBuf, PathBuf) {
    let (crt, key) = (api.dir.path().join("admin-test.crt"), api.dir.path().join("admin-test.key"));
    std::fs::write(&crt, api.config.client_cert_pem.as_ref().unwrap()).unwrap();
    std::fs::write(&key, api.config.client_key_pem.as_ref().unwrap()).unwrap();
    (crt, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_proxies_assert_users_only_with_an_allowed_certificate_of_the_requestheader_ca() {
    let fp = FrontProxy::new();
    let mut flags =
        vec!["--authorization-mode=Node,RBAC".to_string(), "--enable-admission-plugins=NodeRestriction".into()];
    flags.extend(fp.flags());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let api = TestApiserver::start_with(&flags).await;
    let proxy = (fp.dir.path().join("front-proxy-client.crt"), fp.dir.path().join("front-proxy-client.key"));
    let proxy = Some((proxy.0.as_path(), proxy.1.as_path()));
    let as_alice = ["X-Remote-User: alice", "X-Remote-Group: devs", "X-Remote-Extra-Scopes: s1"];

    // The allowed proxy's headers are the user: alice in devs is authenticated, and RBAC refuses her by name.
    let (code, body) = curl(&api, proxy, "GET", "/api/v1/secrets", &as_alice, None);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains(r#"User \"alice\" cannot list resource \"secrets\""#), "{body}");
    // The whole identity, groups and extra included, as the apiserver sees it.
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let (code, body) = curl(
        &api,
        proxy,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        &as_alice,
        Some(&review.to_string()),
    );
    assert_eq!(code, 201, "{body}");
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["status"]["userInfo"]["username"], "alice");
    assert_eq!(info["status"]["userInfo"]["groups"], json!(["devs", "system:authenticated"]));
    assert_eq!(info["status"]["userInfo"]["extra"]["scopes"], json!(["s1"]));
    // As system:masters through the proxy: allowed.
    let (code, body) =
        curl(&api, proxy, "GET", "/api/v1/secrets", &["X-Remote-User: root", "X-Remote-Group: system:masters"], None);
    assert_eq!(code, 200, "{body}");
    // A proxy certificate without a username header is nobody (it is not a client certificate of the client CA).
    let (code, body) = curl(&api, proxy, "GET", "/api/v1/secrets", &[], None);
    assert_eq!(code, 403);
    assert!(body.contains("system:anonymous"), "{body}");

    // The same CA but a name not in --requestheader-allowed-names: the headers are ignored.
    let other = (fp.dir.path().join("other.crt"), fp.dir.path().join("other.key"));
    let (code, body) = curl(
        &api,
        Some((&other.0, &other.1)),
        "GET",
        "/api/v1/secrets",
        &["X-Remote-User: root", "X-Remote-Group: system:masters"],
        None,
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("system:anonymous"), "{body}");

    // A client certificate of the cluster CA is its own subject; headers do not change it.
    let (crt, key) = admin_files(&api);
    let (code, body) = curl(
        &api,
        Some((&crt, &key)),
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        &["X-Remote-User: mallory"],
        Some(&review.to_string()),
    );
    assert_eq!(code, 201, "{body}");
    assert_ne!(serde_json::from_str::<Value>(&body).unwrap()["status"]["userInfo"]["username"], "mallory");

    // kubeadm's probes: anonymous /livez and /readyz under Node,RBAC (system:public-info-viewer).
    for path in ["/livez", "/readyz", "/healthz"] {
        let (code, body) = curl(&api, None, "GET", path, &[], None);
        assert_eq!((code, body.as_str()), (200, "ok"), "{path}");
    }

    // What delegating components (controller-manager, scheduler) read.
    let cm = api
        .client
        .api("", "v1", "configmaps")
        .unwrap()
        .namespaced("kube-system")
        .get("extension-apiserver-authentication")
        .await
        .unwrap();
    let data = &cm["data"];
    assert_eq!(data["client-ca-file"].as_str().unwrap(), api.ca.cert_pem);
    assert!(data["requestheader-client-ca-file"].as_str().unwrap().contains("BEGIN CERTIFICATE"));
    assert_eq!(data["requestheader-allowed-names"], r#"["front-proxy-client"]"#);
    assert_eq!(data["requestheader-username-headers"], r#"["X-Remote-User"]"#);
    assert_eq!(data["requestheader-group-headers"], r#"["X-Remote-Group"]"#);
    assert_eq!(data["requestheader-extra-headers-prefix"], r#"["X-Remote-Extra-"]"#);
}

fn privileged_pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": true}}]}})
}

#[tokio::test]
async fn privileged_containers_need_allow_privileged() {
    let api = TestApiserver::start().await;
    let pods = api.client.api("", "v1", "pods").unwrap().namespaced("default");
    let err = pods.create(&privileged_pod("p")).await.unwrap_err();
    assert_eq!(err.code(), Some(422));
    assert!(
        err.to_string().contains(r#"Pod "p" is invalid: spec.containers[0].securityContext.privileged: Forbidden: disallowed by cluster policy"#),
        "{err}"
    );
    let deployments = api.client.api("apps", "v1", "deployments").unwrap().namespaced("default");
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": privileged_pod("x")["spec"]}}});
    let err = deployments.create(&d).await.unwrap_err();
    assert!(
        err.to_string().contains("spec.template.spec.containers[0].securityContext.privileged: Forbidden"),
        "{err}"
    );
    drop(api);

    let api = TestApiserver::start_with(&["--allow-privileged=true"]).await;
    let pods = api.client.api("", "v1", "pods").unwrap().namespaced("default");
    pods.create(&privileged_pod("p")).await.expect("kubeadm's --allow-privileged=true");
}

#[tokio::test]
async fn the_proxy_client_pair_is_checked_at_start() {
    let fp = FrontProxy::new();
    let mut args = vec!["kube-apiserver".to_string()];
    args.push(format!("--proxy-client-cert-file={}", fp.path("front-proxy-client.crt")));
    let opts = <kube_apiserver::Options as clap::Parser>::try_parse_from(&args).unwrap();
    let err = kube_apiserver::server::Apiserver::new(opts).await.err().expect("a cert without its key is refused");
    assert!(err.to_string().contains("--proxy-client-cert-file and --proxy-client-key-file go together"), "{err}");
}
