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
fn streaming_requests_need_a_node_with_a_kubelet() {
    let s = Apiserver::start();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: lonely}\nspec:\n  containers:\n  - {name: a, image: busybox}\n  - {name: b, image: busybox}\n";
    s.ok_stdin(&["create", "-f", "-"], pod);
    // Both the WebSocket attempt and kubectl's SPDY fallback get upstream's 400.
    let err = s.fails(&["exec", "lonely", "-c", "a", "--", "true"]);
    assert!(err.contains("(BadRequest)") && err.contains("pod lonely does not have a host assigned"), "{err}");
    let err = s.fails(&["get", "--raw", "/api/v1/namespaces/default/pods/lonely/log"]);
    assert!(err.contains("a container name must be specified for pod lonely, choose one of: [a b]"), "{err}");
    s.ok(&[
        "patch",
        "pod",
        "lonely",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running"}}"#,
    ]);
    let bound = "apiVersion: v1\nkind: Pod\nmetadata: {name: placed}\nspec:\n  nodeName: ghost\n  containers:\n  - {name: a, image: busybox}\n";
    s.ok_stdin(&["create", "-f", "-"], bound);
    let err = s.fails(&["exec", "placed", "--", "true"]);
    assert!(err.contains("node \"ghost\" is not registered"), "{err}");
    let err = s.fails(&["get", "--raw", "/api/v1/nodes/ghost/proxy/healthz"]);
    assert!(err.contains("ServiceUnavailable") || err.contains("not registered"), "{err}");
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

const NODE_AND_PODS: &str = "apiVersion: v1
kind: Node
metadata:
  name: node1
  labels: {kubernetes.io/hostname: node1}
---
apiVersion: v1
kind: Pod
metadata: {name: evict-me, labels: {app: d}}
spec:
  nodeName: node1
  terminationGracePeriodSeconds: 0
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: graceful}
spec:
  nodeName: node1
  containers: [{name: c, image: busybox}]
";

#[test]
fn graceful_deletion_and_drain() {
    let s = Apiserver::start();
    s.apply(NODE_AND_PODS);
    // A scheduled pod is deleted gracefully: it stays with a deletionTimestamp until its kubelet confirms.
    s.ok(&["delete", "pod", "graceful", "--wait=false"]);
    let p = s.json(&["get", "pod", "graceful"]);
    assert!(p["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30);
    let table = s.ok(&["get", "pod", "graceful"]);
    assert!(table.contains("Terminating"), "{table}");
    // A zero grace period (what the kubelet sends when the containers are gone) removes it.
    s.ok(&["delete", "pod", "graceful", "--grace-period=0", "--force"]);
    s.fails(&["get", "pod", "graceful"]);
    // drain: cordon, then evict the node's pods through pods/eviction.
    let out =
        s.kubectl(&["drain", "node1", "--ignore-daemonsets", "--force", "--delete-emptydir-data", "--timeout=30s"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("evicting pod default/evict-me") && text.contains("node/node1 drained"), "{text}");
    s.fails(&["get", "pod", "evict-me"]);
    assert_eq!(s.json(&["get", "node", "node1"])["spec"]["unschedulable"], true);
    assert!(s.ok(&["get", "nodes"]).contains("SchedulingDisabled"));
    s.ok(&["uncordon", "node1"]);
    assert!(s.json(&["get", "node", "node1"])["spec"].get("unschedulable").is_none());
    // taint and remove it again.
    s.ok(&["taint", "nodes", "node1", "key=value:NoSchedule"]);
    assert_eq!(s.json(&["get", "node", "node1"])["spec"]["taints"][0]["effect"], "NoSchedule");
    s.ok(&["taint", "nodes", "node1", "key=value:NoSchedule-"]);
    assert!(s.json(&["get", "node", "node1"])["spec"].get("taints").is_none());
}

#[test]
fn binding_status_split_and_generation() {
    let s = Apiserver::start();
    s.apply("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: busybox}]\n");
    let p = s.json(&["get", "pod", "p"]);
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(p["status"]["qosClass"], "BestEffort");
    let binding = r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p"},"target":{"apiVersion":"v1","kind":"Node","name":"n1"}}"#;
    let out = s.kubectl_stdin(&["create", "--raw", "/api/v1/namespaces/default/pods/p/binding", "-f", "-"], binding);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(s.json(&["get", "pod", "p"])["spec"]["nodeName"], "n1");
    let out = s.kubectl_stdin(&["create", "--raw", "/api/v1/namespaces/default/pods/p/binding", "-f", "-"], binding);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already assigned"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The main resource ignores status; the status subresource changes only status.
    s.ok(&["patch", "pod", "p", "--type=merge", "-p", r#"{"status":{"phase":"Running"}}"#]);
    assert_eq!(s.json(&["get", "pod", "p"])["status"]["phase"], "Pending");
    s.ok(&[
        "patch",
        "pod",
        "p",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running"},"metadata":{"labels":{"x":"y"}}}"#,
    ]);
    let p = s.json(&["get", "pod", "p"]);
    assert_eq!(p["status"]["phase"], "Running");
    // As upstream's pod status strategy: labels are written through /status (ownerReferences are not).
    assert_eq!(p["metadata"]["labels"]["x"], "y", "pods/status writes labels");
    // Pod specs are immutable but for images.
    let err = s.fails(&["patch", "pod", "p", "--type=merge", "-p", r#"{"spec":{"restartPolicy":"Never"}}"#]);
    assert!(err.contains("pod updates may not change fields other than"), "{err}");
    s.ok(&["set", "image", "pod/p", "c=busybox:2"]);
    // Generation moves with spec changes only.
    s.apply(DEPLOYMENT);
    s.ok(&["label", "deploy", "web", "a=b"]);
    assert_eq!(s.json(&["get", "deploy", "web"])["metadata"]["generation"], 1);
    s.ok(&["scale", "deploy", "web", "--replicas=7"]);
    assert_eq!(s.json(&["get", "deploy", "web"])["metadata"]["generation"], 2);
}

#[test]
fn services_get_cluster_ips_and_node_ports() {
    let s = Apiserver::start();
    s.apply(DEPLOYMENT);
    s.ok(&["expose", "deployment", "web", "--port=80", "--target-port=8080"]);
    let svc = s.json(&["get", "svc", "web"]);
    let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.0.0.") && ip != "10.0.0.1", "{ip}");
    assert_eq!(svc["spec"]["selector"]["app"], "web");
    s.ok(&["create", "service", "nodeport", "np", "--tcp=80:80"]);
    let np = s.json(&["get", "svc", "np"]);
    let port = np["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&port));
    let table = s.ok(&["get", "svc"]);
    assert!(table.contains(&format!("80:{port}/TCP")) && table.contains("NodePort"), "{table}");
    // The same IP cannot be taken twice; deleting frees it.
    let dup = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: dup}}\nspec:\n  clusterIP: {ip}\n  ports: [{{port: 80}}]\n"
    );
    let out = s.kubectl_stdin(&["create", "-f", "-"], &dup);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("provided IP is already allocated"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.ok(&["delete", "svc", "web"]);
    s.ok_stdin(&["create", "-f", "-"], &dup);
    assert_eq!(s.json(&["get", "svc", "dup"])["spec"]["clusterIP"], ip.as_str());
}

#[test]
fn explain_cluster_info_and_can_i_list() {
    let s = Apiserver::start();
    let out = s.ok(&["explain", "pods.spec.containers"]);
    assert!(out.contains("KIND:") && out.contains("Pod") && out.contains("FIELD: containers"), "{out}");
    assert!(out.contains("image"), "{out}");
    let out = s.ok(&["explain", "deployment.spec.replicas"]);
    assert!(out.contains("replicas") && out.contains("integer"), "{out}");
    let out = s.ok(&["auth", "can-i", "--list"]);
    assert!(out.contains("*.*") || out.contains("[*]"), "{out}");
    let out = s.ok(&["cluster-info"]);
    assert!(out.contains("Kubernetes control plane is running at"), "{out}");
}

#[test]
fn oversized_bodies_are_refused() {
    let s = Apiserver::start();
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata:\n  k: \"{}\"\n",
        "x".repeat(4 * 1024 * 1024)
    );
    let out = s.kubectl_stdin(&["create", "-f", "-"], &big);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && (err.contains("too large") || err.contains("Too large")), "{err}");
    s.fails(&["get", "cm", "big"]);
}

/// A client from the test kubeconfig (the `client` crate does not retry 429s, unlike kubectl).
fn client_for(s: &Apiserver) -> client::Client {
    let mut c = client::Client::new(&client::Config::from_kubeconfig(&s.kubeconfig).unwrap()).unwrap();
    c.retry_429 = false;
    c
}

#[test]
fn max_in_flight_answers_429_with_retry_after() {
    let s = Apiserver::start_with(&["--max-requests-inflight=1"]);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let c = client_for(&s);
        let pods = c.api("", "v1", "pods").unwrap().namespaced("default");
        // A list at a revision the store has not reached holds its slot for 3 s, then 504.
        let slow = {
            let pods = pods.clone();
            tokio::spawn(async move {
                let p = client::ListParams { resource_version: Some("999999999".into()), ..Default::default() };
                pods.list(&p).await
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let err = pods.list(&client::ListParams::default()).await.unwrap_err();
        match err {
            client::Error::Api(e) => {
                assert_eq!((e.code, e.reason), (429, "TooManyRequests"));
                assert_eq!(e.retry_after, Some(1));
            }
            other => panic!("expected 429, got {other:?}"),
        }
        let slow = slow.await.unwrap().unwrap_err();
        assert_eq!(slow.code(), Some(504), "{slow}");
        // Mutating requests have their own budget.
        let cms = c.api("", "v1", "configmaps").unwrap().namespaced("default");
        cms.create(&serde_json::json!({"metadata": {"name": "ok"}})).await.unwrap();
    });
}

#[test]
fn client_crate_watch_and_errors() {
    let s = Apiserver::start_with(&["--etcd-compaction-interval=0"]);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let c = client_for(&s);
        let cms = c.api("", "v1", "configmaps").unwrap().namespaced("default");
        let list = cms.list(&client::ListParams::default()).await.unwrap();
        let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
        let p = client::ListParams { resource_version: Some(rv), bookmarks: true, ..Default::default() };
        let mut events = cms.watch(&p).await.unwrap();
        cms.create(&serde_json::json!({"metadata": {"name": "a"}})).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.unwrap().unwrap().unwrap();
        assert!(matches!(first, client::WatchEvent::Added(ref o) if o["metadata"]["name"] == "a"), "{first:?}");
        let err = cms.create(&serde_json::json!({"metadata": {"name": "a"}})).await.unwrap_err();
        assert_eq!(err.code(), Some(409));
    });
}

#[test]
fn events_and_hpas_are_served_in_both_versions() {
    let s = Apiserver::start();
    let ev = "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {name: e1}\neventTime: \"2024-01-01T00:00:00.000000Z\"\nreportingController: test\nreportingInstance: test-1\naction: Started\nreason: Started\nnote: hello\ntype: Normal\nregarding: {kind: Pod, name: p, namespace: default}\n";
    s.ok_stdin(&["create", "-f", "-"], ev);
    let core = s.json(&["get", "events.v1.", "e1"]);
    assert_eq!((core["message"].as_str(), core["involvedObject"]["name"].as_str()), (Some("hello"), Some("p")));
    let new = s.json(&["get", "events.v1.events.k8s.io", "e1"]);
    assert_eq!((new["note"].as_str(), new["regarding"]["name"].as_str()), (Some("hello"), Some("p")));
    s.ok(&["patch", "events.v1.events.k8s.io", "e1", "--type=merge", "-p", r#"{"note":"patched"}"#]);
    assert_eq!(s.json(&["get", "events.v1.", "e1"])["message"], "patched");
    let table = s.ok(&["get", "events"]);
    assert!(table.contains("Started") && table.contains("pod/p") && table.contains("patched"), "{table}");
    s.apply(DEPLOYMENT);
    s.ok(&["autoscale", "deployment", "web", "--min=1", "--max=5", "--cpu-percent=70"]);
    let v2 = s.json(&["get", "hpa.v2.autoscaling", "web"]);
    assert_eq!(v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 70, "{v2}");
    let v1: serde_json::Value = serde_json::from_str(&s.ok(&[
        "get",
        "--raw",
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/web",
    ]))
    .unwrap();
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 70, "{v1}");
}

#[test]
fn priority_classes_set_pod_priority() {
    let s = Apiserver::start();
    let classes = s.ok(&["get", "priorityclasses", "-o", "name"]);
    assert!(classes.contains("system-node-critical") && classes.contains("system-cluster-critical"), "{classes}");
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: crit}\nspec:\n  priorityClassName: system-node-critical\n  containers:\n  - {name: a, image: busybox}\n";
    s.ok_stdin(&["create", "-f", "-"], pod);
    let p = s.json(&["get", "pod", "crit"]);
    assert_eq!(p["spec"]["priority"], 2000001000);
    assert_eq!(p["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    let plain = s.json(&["run", "plain", "--image=busybox", "-o", "json", "--dry-run=server"]);
    assert_eq!(plain["spec"]["priority"], 0);
    let bad = "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  priorityClassName: nope\n  containers:\n  - {name: a, image: busybox}\n";
    let out = s.kubectl_stdin(&["create", "-f", "-"], bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Forbidden") && err.contains("no PriorityClass with name nope was found"), "{err}");
}

/// The CronTab example of upstream's "Extend the Kubernetes API with CustomResourceDefinitions" task page.
const CRONTAB_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                cronSpec:
                  type: string
                image:
                  type: string
                replicas:
                  type: integer
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames:
    - ct
    categories:
    - all
"#;

const CRONTAB: &str = r#"apiVersion: "stable.example.com/v1"
kind: CronTab
metadata:
  name: my-new-cron-object
spec:
  cronSpec: "* * * * */5"
  image: my-awesome-cron-image
"#;

#[test]
fn custom_resources_as_the_task_page_shows() {
    let s = Apiserver::start();
    let out = s.apply(CRONTAB_CRD);
    assert!(out.contains("customresourcedefinition.apiextensions.k8s.io/crontabs.stable.example.com created"), "{out}");
    s.ok(&["wait", "--for", "condition=established", "--timeout=30s", "crd/crontabs.stable.example.com"]);
    let out = s.apply(CRONTAB);
    assert!(out.contains("crontab.stable.example.com/my-new-cron-object created"), "{out}");
    assert!(s.apply(CRONTAB).contains("crontab.stable.example.com/my-new-cron-object unchanged"));
    let changed = CRONTAB.replace("my-awesome-cron-image", "my-other-image");
    assert!(s.apply(&changed).contains("crontab.stable.example.com/my-new-cron-object configured"));
    let table = s.ok(&["get", "crontab"]);
    assert!(table.starts_with("NAME") && table.contains("AGE"), "{table}");
    assert!(table.lines().nth(1).unwrap().starts_with("my-new-cron-object "), "{table}");
    let obj = s.json(&["get", "ct", "my-new-cron-object"]);
    assert_eq!(obj["spec"]["image"], "my-other-image");
    assert_eq!(obj["spec"]["cronSpec"], "* * * * */5");
    let all = s.ok(&["get", "all"]);
    assert!(all.contains("crontab.stable.example.com/my-new-cron-object"), "{all}");
    // The schema is enforced: strict validation refuses unknown fields, wrong types are 422s.
    let out = s.kubectl_stdin(
        &["apply", "-f", "-"],
        &CRONTAB.replace("image: my-awesome-cron-image", "image: x\n  notAField: 1"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("unknown field \"spec.notAField\""), "{err}");
    let out = s.kubectl_stdin(
        &["apply", "-f", "-"],
        &CRONTAB.replace("image: my-awesome-cron-image", "image: x\n  replicas: many"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("spec.replicas"), "{err}");
    let explain = s.ok(&["explain", "crontab.spec"]);
    assert!(explain.contains("KIND:       CronTab") && explain.contains("cronSpec\t<string>"), "{explain}");
    assert!(explain.contains("replicas\t<integer>"), "{explain}");
    let res = s.ok(&["api-resources", "--api-group", "stable.example.com"]);
    assert!(res.lines().any(|l| l.starts_with("crontabs") && l.contains("ct") && l.contains("CronTab")), "{res}");
    s.ok(&["label", "crontab", "my-new-cron-object", "tier=batch"]);
    assert!(
        s.ok(&["get", "ct", "-l", "tier=batch", "-o", "name"])
            .contains("crontab.stable.example.com/my-new-cron-object")
    );
    s.ok(&["patch", "crontab", "my-new-cron-object", "--type", "merge", "-p", r#"{"spec":{"replicas":3}}"#]);
    assert_eq!(s.json(&["get", "ct", "my-new-cron-object"])["spec"]["replicas"], 3);
    // Deleting the CRD deletes its objects, then the resource is gone from discovery.
    let out = s.ok(&["delete", "crd", "crontabs.stable.example.com"]);
    assert!(
        out.contains("customresourcedefinition.apiextensions.k8s.io \"crontabs.stable.example.com\" deleted"),
        "{out}"
    );
    // kubectl's discovery cache may still know the type (then the list is the server's 404), or not.
    let gone_messages =
        ["the server doesn't have a resource type \"crontabs\"", "the server could not find the requested resource"];
    let mut gone = String::new();
    for _ in 0..50 {
        gone = String::from_utf8_lossy(&s.kubectl(&["get", "crontabs"]).stderr).into_owned();
        if gone_messages.iter().any(|m| gone.contains(m)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(gone_messages.iter().any(|m| gone.contains(m)), "{gone}");
    let groups = s.ok(&["api-versions"]);
    assert!(!groups.contains("stable.example.com"), "{groups}");
}
