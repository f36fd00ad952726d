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
        assert!(res.contains(line.trim_end()), "api-resources misses {line}:\n{res}");
    }
    assert!(res.lines().any(|l| l.starts_with("deployments")
        && l.contains("deploy")
        && l.contains("apps/v1")
        && l.contains("true")
        && l.contains("Deployment")));
    let versions = s.ok(&["api-versions"]);
    assert!(versions.contains("autoscaling/v2") && versions.contains("rbac.authorization.k8s.io/v1"));
}

#[test]
fn bootstrap_objects_exist() {
    let s = Apiserver::start();
    let ns = s.ok(&["get", "namespaces"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.lines().any(|l| l.starts_with(n) && l.contains("Active")), "{ns}");
    }
    let svc = s.json(&["get", "service", "kubernetes"]);
    assert_eq!(svc["spec"]["clusterIP"], "10.0.0.1");
    let ep = s.json(&["get", "endpoints", "kubernetes"]);
    assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "127.0.0.1");
    let del = s.fails(&["delete", "namespace", "kube-system"]);
    assert!(del.contains("Forbidden") && del.contains("may not be deleted"), "{del}");
}

#[test]
fn health_metrics_and_auth() {
    let s = Apiserver::start();
    let ready = s.ok(&["get", "--raw", "/readyz?verbose"]);
    assert!(ready.contains("[+]etcd ok") && ready.contains("readyz check passed"), "{ready}");
    assert_eq!(s.ok(&["get", "--raw", "/livez"]), "ok");
    s.ok(&["get", "pods"]);
    let metrics = s.ok(&["get", "--raw", "/metrics"]);
    assert!(
        metrics.contains("apiserver_request_total{verb=\"GET\",group=\"\",version=\"v1\",resource=\"pods\""),
        "{metrics}"
    );
    assert!(metrics.contains("apiserver_request_duration_seconds_bucket"));
    let who = s.ok(&["auth", "whoami", "-o", "json"]);
    let who: serde_json::Value = serde_json::from_str(&who).unwrap();
    assert_eq!(who["status"]["userInfo"]["username"], "kubernetes-admin");
    assert_eq!(who["status"]["userInfo"]["groups"], serde_json::json!(["system:masters", "system:authenticated"]));
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
    assert!(out.contains("token-user"), "{out}{}", String::from_utf8_lossy(&tok.stderr));
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
    assert!(s.terminate(Duration::from_secs(10)), "apiserver did not stop on SIGTERM");
    assert!(s.log().contains("apiserver stopped") || s.log().is_empty() || !s.log().contains("panicked"));
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
        env:
        - {name: A, value: '1'}
";

#[test]
fn apply_creates_configures_and_leaves_unchanged() {
    let s = Apiserver::start();
    assert!(s.apply(DEPLOYMENT).contains("deployment.apps/web created"));
    assert!(s.apply(DEPLOYMENT).contains("deployment.apps/web unchanged"));
    let changed = DEPLOYMENT.replace("replicas: 2", "replicas: 3").replace("nginx:1.25", "nginx:1.26");
    assert!(s.apply(&changed).contains("deployment.apps/web configured"));
    let d = s.json(&["get", "deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 3);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx:1.26");
    assert_eq!(c["env"][0]["name"], "A", "strategic merge keeps fields the patch does not touch");
    assert_eq!(d["metadata"]["generation"], 2);
    assert!(
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .unwrap()
            .contains("nginx:1.26")
    );
    // Defaults as upstream.
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    // Tables.
    let table = s.ok(&["get", "deployments"]);
    assert!(table.starts_with("NAME") && table.contains("READY") && table.contains("UP-TO-DATE"), "{table}");
    assert!(table.lines().nth(1).unwrap().starts_with("web "), "{table}");
    let wide = s.ok(&["get", "deployment", "web", "-o", "wide"]);
    assert!(wide.contains("nginx:1.26") && wide.contains("app=web"), "{wide}");
}

#[test]
fn get_selectors_all_namespaces_and_output_formats() {
    let s = Apiserver::start();
    s.ok(&["create", "namespace", "other"]);
    for (ns, name, app) in [("default", "a", "x"), ("default", "b", "y"), ("other", "c", "x")] {
        s.ok(&["create", "configmap", name, "-n", ns, "--from-literal=k=v"]);
        s.ok(&["label", "configmap", name, "-n", ns, &format!("app={app}")]);
    }
    let out = s.ok(&["get", "configmaps", "-l", "app=x", "-A"]);
    assert!(out.contains("NAMESPACE") && out.contains("default") && out.contains("other"), "{out}");
    assert!(!out.contains(" b "), "{out}");
    let out = s.ok(&["get", "cm", "-l", "app in (x,y)", "-o", "name"]);
    assert_eq!(out.lines().filter(|l| l.starts_with("configmap/")).count(), 2, "{out}");
    let out = s.ok(&["get", "cm", "--field-selector", "metadata.name!=a", "-o", "name"]);
    assert!(out.contains("configmap/b") && !out.contains("configmap/a"), "{out}");
    let err = s.fails(&["get", "cm", "--field-selector", "spec.nope=1"]);
    assert!(err.contains("field label not supported"), "{err}");
    let yaml = s.ok(&["get", "cm", "a", "-o", "yaml"]);
    assert!(yaml.contains("kind: ConfigMap") && yaml.contains("k: v") && yaml.contains("resourceVersion:"), "{yaml}");
    let out = s.ok(&["get", "cm", "--chunk-size=1", "-o", "name"]);
    assert!(out.lines().filter(|l| l.starts_with("configmap/")).count() >= 2, "{out}");
    let labels = s.ok(&["get", "cm", "a", "--show-labels"]);
    assert!(labels.contains("app=x"), "{labels}");
}

#[test]
fn error_paths_have_upstream_status() {
    let s = Apiserver::start();
    let err = s.fails(&["get", "pod", "nosuch"]);
    assert!(err.contains("Error from server (NotFound): pods \"nosuch\" not found"), "{err}");
    s.ok(&["create", "configmap", "dup"]);
    let err = s.fails(&["create", "configmap", "dup"]);
    assert!(err.contains("configmaps \"dup\" already exists"), "{err}");
    let out = s.kubectl_stdin(&["create", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dup}\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Error from server (AlreadyExists)"), "{err}");
    let bad = "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  containers:\n  - name: Bad_Name\n";
    let out = s.kubectl_stdin(&["create", "-f", "-"], bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("The Pod \"bad\" is invalid")
            && err.contains("spec.containers[0].name")
            && err.contains("spec.containers[0].image: Required value"),
        "{err}"
    );
    // A stale resourceVersion on update is a conflict.
    let cm = s.json(&["get", "cm", "dup"]);
    s.ok(&["label", "cm", "dup", "x=1"]);
    let stale = serde_json::to_string(&cm).unwrap();
    let out = s.kubectl_stdin(&["replace", "-f", "-"], &stale);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("(Conflict)") && err.contains("the object has been modified"), "{err}");
    let err = s.fails(&["get", "--raw", "/api/v1/namespaces/default/pods?resourceVersion=abc"]);
    assert!(err.contains("invalid resource version"), "{err}");
    // A continue token from a compacted revision is 410 Gone.
    let page: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "--raw", "/api/v1/namespaces/default/configmaps?limit=1"])).unwrap();
    let token = page["metadata"]["continue"].as_str().map(str::to_string);
    assert!(token.is_none(), "one configmap fits in one page");
    let err = s.fails(&["get", "--raw", "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=99999999"]);
    assert!(err.contains("Timeout") || err.contains("Too large resource version"), "{err}");
}

#[test]
fn patch_label_annotate_scale_and_delete() {
    let s = Apiserver::start();
    s.apply(DEPLOYMENT);
    s.ok(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:2"}]}}}}"#,
    ]);
    s.ok(&["patch", "deployment", "web", "--type=merge", "-p", r#"{"metadata":{"labels":{"tier":"front"}}}"#]);
    s.ok(&[
        "patch",
        "deployment",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
    ]);
    let d = s.json(&["get", "deploy", "web"]);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:2");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"], 80);
    assert_eq!(d["metadata"]["labels"]["tier"], "front");
    assert_eq!(d["spec"]["replicas"], 4);
    let err = s.fails(&[
        "patch",
        "deployment",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/spec/replicas","value":9}]"#,
    ]);
    assert!(err.contains("value did not match"), "{err}");
    s.ok(&["label", "deploy", "web", "env=prod"]);
    s.ok(&["label", "deploy", "web", "tier-"]);
    s.ok(&["annotate", "deploy", "web", "note=hello"]);
    s.ok(&["scale", "deploy", "web", "--replicas=1"]);
    s.ok(&["scale", "deploy", "web", "--current-replicas=1", "--replicas=2"]);
    s.ok(&["set", "image", "deployment/web", "nginx=nginx:3"]);
    s.ok(&["rollout", "restart", "deployment/web"]);
    let d = s.json(&["get", "deploy", "web"]);
    assert_eq!(d["metadata"]["labels"]["env"], "prod");
    assert!(d["metadata"]["labels"].get("tier").is_none());
    assert_eq!(d["metadata"]["annotations"]["note"], "hello");
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:3");
    assert!(d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string());
    let scale = s.ok(&["get", "--raw", "/apis/apps/v1/namespaces/default/deployments/web/scale"]);
    assert!(scale.contains("\"kind\":\"Scale\"") && scale.contains("\"selector\":\"app=web\""), "{scale}");
    // Foreground deletion keeps the object (with its finalizer) until the garbage collector acts.
    let out = s.ok(&["delete", "deploy", "web", "--cascade=foreground", "--wait=false"]);
    assert!(out.contains("deleted"), "{out}");
    let d = s.json(&["get", "deploy", "web"]);
    assert!(d["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(d["metadata"]["finalizers"], serde_json::json!(["foregroundDeletion"]));
    s.ok(&["patch", "deploy", "web", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
    s.fails(&["get", "deploy", "web"]);
    s.ok(&["create", "configmap", "gone"]);
    let out = s.ok(&["delete", "configmap", "gone"]);
    assert!(out.contains("configmap \"gone\" deleted"), "{out}");
}

#[test]
fn field_validation_strict_warn_ignore() {
    let s = Apiserver::start();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: a\n    image: busybox\n    notAField: 1\n";
    // kubectl's default is --validate=strict: the server refuses unknown fields with 400.
    let out = s.kubectl_stdin(&["create", "-f", "-"], pod);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("BadRequest")
            && err.contains("unknown field \"spec.containers[0].notAField\""),
        "{err}"
    );
    s.fails(&["get", "pod", "p"]);
    // Warn: created, the field dropped, a warning printed.
    let out = s.kubectl_stdin(&["create", "--validate=warn", "-f", "-"], pod);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Warning: unknown field \"spec.containers[0].notAField\""), "{err}");
    let got = s.json(&["get", "pod", "p"]);
    assert!(got["spec"]["containers"][0].get("notAField").is_none());
    // Ignore: silently dropped.
    let out = s.kubectl_stdin(&["apply", "--validate=false", "-f", "-"], &pod.replace("name: p}", "name: q}"));
    assert!(out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("Warning"));
}

#[test]
fn edit_describe_diff_and_wait() {
    let s = Apiserver::start();
    s.apply(DEPLOYMENT);
    // A scripted editor: change the image in place.
    let editor = s.dir.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/nginx:1.25/nginx:edited/' \"$1\"\n").unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = s.kubectl_cmd(&["edit", "deployment", "web"]).env("KUBE_EDITOR", &editor).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("deployment.apps/web edited"));
    assert_eq!(s.json(&["get", "deploy", "web"])["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:edited");
    let desc = s.ok(&["describe", "deployment", "web"]);
    assert!(
        desc.contains("Name:")
            && desc.contains("web")
            && desc.contains("nginx:edited")
            && desc.contains("RollingUpdate"),
        "{desc}"
    );
    // diff: exit 1 with a difference, 0 without.
    let changed = DEPLOYMENT.replace("replicas: 2", "replicas: 5");
    let out = s.kubectl_stdin(&["diff", "-f", "-"], &changed);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("+  replicas: 5"));
    // The diff was a dry run.
    assert_eq!(s.json(&["get", "deploy", "web"])["spec"]["replicas"], 2);
    // Server-side dry run of a create persists nothing.
    let out =
        s.kubectl_stdin(&["create", "--dry-run=server", "-f", "-"], &DEPLOYMENT.replace("name: web\n", "name: dry\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    s.fails(&["get", "deploy", "dry"]);
    // delete --wait returns once the object is gone.
    let out = s.ok(&["delete", "deployment", "web", "--wait=true", "--timeout=20s"]);
    assert!(out.contains("deleted"), "{out}");
    s.fails(&["get", "deploy", "web"]);
}

#[test]
fn watch_streams_changes() {
    let s = Apiserver::start();
    s.ok(&["create", "namespace", "w"]);
    let mut child = s
        .kubectl_cmd(&["get", "configmaps", "-n", "w", "-w", "-o", "name", "--request-timeout=0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c1, namespace: w}\ndata: {a: b}\n";
    s.apply(cm);
    s.ok(&["label", "cm", "c1", "-n", "w", "x=y"]);
    s.ok(&["delete", "cm", "c1", "-n", "w"]);
    std::thread::sleep(Duration::from_millis(800));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.matches("configmap/c1").count() >= 3, "watch saw: {text}");
    // Raw watch from a resourceVersion, with bookmarks requested.
    let list: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "--raw", "/api/v1/namespaces/w/configmaps"])).unwrap();
    let rv: i64 = list["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(rv > 0);
    let raw = s.ok(&["get", "--raw", "/api/v1/namespaces/w/configmaps?watch=true&resourceVersion=1&timeoutSeconds=1"]);
    let types: Vec<String> = raw
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "DELETED"], "{raw}");
}
