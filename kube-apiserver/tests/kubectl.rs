//! End-to-end: the real kube-apiserver binary over TLS with client certificates, driven by `/usr/bin/kubectl`.

mod support;

use std::time::Duration;

use support::Apiserver;

#[test]
fn version_and_discovery() {
    let s = Apiserver::start();
    let v = s.ok(&["version", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v["serverVersion"]["minor"], "33");
    let res = s.ok(&["api-resources"]);
    for line in ["pods  ", "deployments  ", "customresourcedefinitions"] {
        assert!(
            res.contains(line.trim_end()),
            "api-resources misses {line}:\n{res}"
        );
    }
    assert!(res.lines().any(|l| l.starts_with("deployments")
        && l.contains("deploy")
        && l.contains("apps/v1")
        && l.contains("true")
        && l.contains("Deployment")));
    let versions = s.ok(&["api-versions"]);
    assert!(
        versions.contains("autoscaling/v2") && versions.contains("rbac.authorization.k8s.io/v1")
    );
}

#[test]
fn bootstrap_objects_exist() {
    let s = Apiserver::start();
    let ns = s.ok(&["get", "namespaces"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            ns.lines().any(|l| l.starts_with(n) && l.contains("Active")),
            "{ns}"
        );
    }
    let svc = s.json(&["get", "service", "kubernetes"]);
    assert_eq!(svc["spec"]["clusterIP"], "10.0.0.1");
    let ep = s.json(&["get", "endpoints", "kubernetes"]);
    assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "127.0.0.1");
    let del = s.fails(&["delete", "namespace", "kube-system"]);
    assert!(
        del.contains("Forbidden") && del.contains("may not be deleted"),
        "{del}"
    );
}

#[test]
fn health_metrics_and_auth() {
    let s = Apiserver::start();
    let ready = s.ok(&["get", "--raw", "/readyz?verbose"]);
    assert!(
        ready.contains("[+]etcd ok") && ready.contains("readyz check passed"),
        "{ready}"
    );
    assert_eq!(s.ok(&["get", "--raw", "/livez"]), "ok");
    s.ok(&["get", "pods"]);
    let metrics = s.ok(&["get", "--raw", "/metrics"]);
    assert!(
        metrics.contains(
            "apiserver_request_total{verb=\"GET\",group=\"\",version=\"v1\",resource=\"pods\""
        ),
        "{metrics}"
    );
    assert!(metrics.contains("apiserver_request_duration_seconds_bucket"));
    let who = s.ok(&["auth", "whoami", "-o", "json"]);
    let who: serde_json::Value = serde_json::from_str(&who).unwrap();
    assert_eq!(who["status"]["userInfo"]["username"], "kubernetes-admin");
    assert_eq!(
        who["status"]["userInfo"]["groups"],
        serde_json::json!(["system:masters", "system:authenticated"])
    );
    assert_eq!(s.ok(&["auth", "can-i", "create", "pods"]).trim(), "yes");
    // A bearer token from the token file.
    let server = format!("https://127.0.0.1:{}", s.port);
    let ca = s.ca_file.display().to_string();
    let tok = s.kubectl(&[
        "--kubeconfig=/dev/null",
        "--server",
        &server,
        "--certificate-authority",
        &ca,
        "--token",
        &s.token,
        "auth",
        "whoami",
    ]);
    let out = String::from_utf8_lossy(&tok.stdout);
    assert!(
        out.contains("token-user"),
        "{out}{}",
        String::from_utf8_lossy(&tok.stderr)
    );
    let bad = s.kubectl(&[
        "--kubeconfig=/dev/null",
        "--server",
        &server,
        "--certificate-authority",
        &ca,
        "--token",
        "nope",
        "get",
        "pods",
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Unauthorized"));
}

#[test]
fn clean_shutdown_on_sigterm() {
    let mut s = Apiserver::start();
    assert!(
        s.terminate(Duration::from_secs(10)),
        "apiserver did not stop on SIGTERM"
    );
    assert!(
        s.log().contains("apiserver stopped")
            || s.log().is_empty()
            || !s.log().contains("panicked")
    );
}
