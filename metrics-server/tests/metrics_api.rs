//! metrics-server end to end on loopback: a real apiserver (Node,RBAC, static tokens; the RBAC of
//! deploy/metrics-server.yaml applied, metrics-server authenticating as its service account), Nodes whose kubelet
//! endpoint (`status.daemonEndpoints`, InternalIP 127.0.0.1) is a small fake HTTPS kubelet serving
//! `/metrics/resource` as the kubelet writes it, and metrics-server in process: NodeMetrics and PodMetrics JSON over
//! HTTPS, selectors, Table output, upstream's 404s, delegated authorization (403 in upstream's words), health and
//! its own metrics.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kube_apiserver::testing::{TestApiserver, within};
use serde_json::{Value, json};

/// 2 MiB + 4 KiB: written `2052Ki`.
const APP_MEMORY: u64 = (2 << 20) + 4096;
const SIDECAR_MEMORY: u64 = 1 << 20;
const NODE_MEMORY: u64 = 1_616_273_408;

/// A fake kubelet: HTTPS on 127.0.0.1 with a self-signed certificate; `/metrics/resource` reports counters that
/// grow at a fixed rate (node 0.5 cores, app 0.25, sidecar 0.125 since `base`), stamped with the current time.
/// Records the Authorization header of each request.
async fn fake_kubelet(base_ms: i64) -> (u16, Arc<Mutex<Vec<String>>>) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
                    seen.lock().unwrap().push(format!("{} {auth}", req.uri().path()));
                    let body = if req.uri().path() == "/metrics/resource" {
                        resource_metrics(base_ms, jiff::Timestamp::now().as_millisecond())
                    } else {
                        String::new()
                    };
                    async move { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (port, recorded)
}

/// The kubelet's exposition at `now_ms` (HELP/TYPE lines, millisecond timestamps, Go's float forms).
fn resource_metrics(base_ms: i64, now_ms: i64) -> String {
    let elapsed = (now_ms - base_ms) as f64 / 1000.0;
    let start = (base_ms / 1000 - 3600) as f64;
    let c = |container: &str, pod: &str, ns: &str| {
        format!("{{container=\"{container}\",namespace=\"{ns}\",pod=\"{pod}\"}}")
    };
    format!(
        "# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{app} {} {now_ms}
container_cpu_usage_seconds_total{other} {} {now_ms}
container_cpu_usage_seconds_total{sidecar} {} {now_ms}
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{app} {APP_MEMORY} {now_ms}
container_memory_working_set_bytes{other} 4.194304e+06 {now_ms}
container_memory_working_set_bytes{sidecar} {SIDECAR_MEMORY} {now_ms}
# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{app} {start:e}
container_start_time_seconds{other} {start:e}
container_start_time_seconds{sidecar} {start:e}
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total {} {now_ms}
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1.616273408e+09 {now_ms}
# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE resource_scrape_error gauge
resource_scrape_error 0
",
        100.0 + elapsed * 0.25,
        5.0 + elapsed * 0.1,
        50.0 + elapsed * 0.125,
        1000.0 + elapsed * 0.5,
        app = c("app", "web-1", "default"),
        other = c("c", "other", "kube-system"),
        sidecar = c("sidecar", "web-1", "default"),
    )
}

/// Applies the RBAC objects of deploy/metrics-server.yaml.
async fn apply_rbac(api: &TestApiserver) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/metrics-server.yaml")).unwrap();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let obj: Value = serde::Deserialize::deserialize(doc).unwrap();
        let plural = match obj["kind"].as_str().unwrap() {
            "ClusterRole" => "clusterroles",
            "ClusterRoleBinding" => "clusterrolebindings",
            "RoleBinding" => "rolebindings",
            _ => continue,
        };
        let mut res = api.client.api("rbac.authorization.k8s.io", "v1", plural).unwrap();
        if let Some(ns) = obj.pointer("/metadata/namespace").and_then(Value::as_str) {
            res = res.namespaced(ns);
        }
        res.create(&obj).await.unwrap();
    }
}

async fn node(api: &TestApiserver, name: &str, labels: Value, port: u16) {
    let nodes = api.client.api("", "v1", "nodes").unwrap();
    let mut n = nodes
        .create(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}))
        .await
        .unwrap();
    n["status"] = json!({
        "addresses": [{"type": "Hostname", "address": "unresolvable.invalid"}, {"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "fake"}],
    });
    nodes.replace_status(name, &n).await.unwrap();
}

async fn pod(api: &TestApiserver, ns: &str, name: &str, labels: Value, containers: &[&str], phase: &str) {
    let pods = api.client.api("", "v1", "pods").unwrap().namespaced(ns);
    let containers: Vec<Value> = containers.iter().map(|c| json!({"name": c, "image": "busybox"})).collect();
    let mut p = pods
        .create(
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": "fake-node", "containers": containers}}),
        )
        .await
        .unwrap();
    p["status"] = json!({"phase": phase});
    pods.replace_status(name, &p).await.unwrap();
}

fn client_for(port: u16, token: Option<&str>) -> client::Client {
    client::Client::new(&client::Config {
        server: format!("https://127.0.0.1:{port}"),
        insecure_skip_tls_verify: true,
        token: token.map(String::from),
        ..Default::default()
    })
    .unwrap()
}

async fn get(c: &client::Client, path: &str) -> Result<Value, (u16, Value)> {
    match c.get_raw(path).await {
        Ok(b) => Ok(serde_json::from_slice(&b).unwrap()),
        Err(client::Error::Api(e)) => Err((e.code, e.to_status())),
        Err(e) => panic!("{path}: {e}"),
    }
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| match i["metadata"]["namespace"].as_str() {
            Some(ns) => format!("{ns}/{}", i["metadata"]["name"].as_str().unwrap()),
            None => i["metadata"]["name"].as_str().unwrap().to_string(),
        })
        .collect()
}

fn cores(q: &Value) -> f64 {
    api_types::quantity::parse(q.as_str().unwrap()).unwrap()
}

/// The window of a metric, in seconds.
fn window(m: &Value) -> f64 {
    api_types::duration::parse(m["window"].as_str().unwrap()).unwrap().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_api_over_https_from_fake_kubelets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("tokens.csv"),
        "ms-token,system:serviceaccount:kube-system:metrics-server,ms-uid,\"system:serviceaccounts,system:serviceaccounts:kube-system\"\nviewer-token,viewer,2,\"\"\nnobody-token,nobody,3,\"\"\n",
    )
    .unwrap();
    let api = TestApiserver::start_with(&[
        "--authorization-mode=Node,RBAC",
        &format!("--token-auth-file={}", d.join("tokens.csv").display()),
    ])
    .await;
    apply_rbac(&api).await;
    // viewer reads metrics as the aggregated reader role allows (view/edit/admin aggregate it).
    api.client
        .api("rbac.authorization.k8s.io", "v1", "clusterrolebindings")
        .unwrap()
        .create(&json!({"metadata": {"name": "viewer-metrics"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:aggregated-metrics-reader"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "viewer"}]}))
        .await
        .unwrap();

    let base_ms = jiff::Timestamp::now().as_millisecond();
    let (kubelet_port, seen) = fake_kubelet(base_ms).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    node(&api, "fake-node", json!({"tier": "gold", "kubernetes.io/hostname": "fake-node"}), kubelet_port).await;
    // A node whose kubelet does not answer: never served.
    node(&api, "other-node", json!({"tier": "silver"}), closed).await;
    pod(&api, "default", "web-1", json!({"app": "web"}), &["app", "sidecar"], "Running").await;
    pod(&api, "kube-system", "other", json!({"app": "other"}), &["c"], "Running").await;
    // Running without metrics, and not running.
    pod(&api, "default", "idle", json!({"app": "web"}), &["c"], "Running").await;
    pod(&api, "default", "pending", json!({"app": "web"}), &["c"], "Pending").await;

    let kubeconfig = d.join("metrics-server.conf");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    token: ms-token\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
            api.config.server,
            api.dir.path().join("ca.crt").display()
        ),
    )
    .unwrap();
    let opts = <metrics_server::Options as clap::Parser>::try_parse_from([
        "metrics-server".to_string(),
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--cert-dir={}", d.join("certs").display()),
        "--metric-resolution=10s".into(),
        "--kubelet-request-timeout=2s".into(),
        "--kubelet-use-node-status-port".into(),
        "--kubelet-insecure-tls".into(),
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname".into(),
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(metrics_server::run_with_listener(opts, listener, stop));

    let anonymous = client_for(port, None);
    let viewer = client_for(port, Some("viewer-token"));
    let nobody = client_for(port, Some("nobody-token"));
    // Not ready until two scrapes stored points for nodes and pods (one resolution apart).
    within(60, "metrics-server ready", async {
        loop {
            if anonymous.get_raw("/readyz").await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert_eq!(anonymous.get_raw("/livez").await.unwrap(), "ok");
    assert_eq!(anonymous.get_raw("/healthz").await.unwrap(), "ok");
    // The kubelet was asked with metrics-server's own credentials.
    assert!(
        seen.lock().unwrap().iter().all(|s| s == "/metrics/resource Bearer ms-token"),
        "{:?}",
        seen.lock().unwrap()
    );

    // Discovery.
    let group = get(&viewer, "/apis/metrics.k8s.io").await.unwrap();
    assert_eq!(group["preferredVersion"], json!({"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}));
    let resources = get(&viewer, "/apis/metrics.k8s.io/v1beta1").await.unwrap();
    assert_eq!(
        resources["resources"][0],
        json!({"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]})
    );
    assert_eq!(resources["resources"][1]["kind"], "PodMetrics");
    assert_eq!(get(&viewer, "/apis").await.unwrap()["groups"][0]["name"], "metrics.k8s.io");

    // Nodes: the one whose kubelet answers, with its labels, CPU as the counter's rate, memory as reported.
    let nodes = get(&viewer, "/apis/metrics.k8s.io/v1beta1/nodes").await.unwrap();
    assert_eq!(
        (nodes["kind"].as_str(), nodes["apiVersion"].as_str()),
        (Some("NodeMetricsList"), Some("metrics.k8s.io/v1beta1"))
    );
    assert_eq!(names(&nodes), ["fake-node"]);
    let n = &nodes["items"][0];
    assert_eq!(n["metadata"]["labels"], json!({"kubernetes.io/hostname": "fake-node", "tier": "gold"}));
    assert_eq!(n["usage"]["memory"], format!("{}Ki", NODE_MEMORY / 1024));
    assert!((cores(&n["usage"]["cpu"]) - 0.5).abs() < 0.01, "{n}");
    assert!(
        n["usage"]["cpu"].as_str().unwrap().ends_with('n') || n["usage"]["cpu"].as_str().unwrap().ends_with('m'),
        "{n}"
    );
    assert!((9.0..=11.5).contains(&window(n)), "{n}");
    let ts: jiff::Timestamp = n["timestamp"].as_str().unwrap().parse().unwrap();
    assert!((jiff::Timestamp::now() - ts).get_seconds().abs() < 30, "{n}");
    let one = get(&viewer, "/apis/metrics.k8s.io/v1beta1/nodes/fake-node").await.unwrap();
    assert_eq!((one["kind"].as_str(), one["metadata"]["name"].as_str()), (Some("NodeMetrics"), Some("fake-node")));
    for (q, want) in [
        ("labelSelector=tier%3Dgold", vec!["fake-node"]),
        ("labelSelector=tier%3Dsilver", vec![]),
        ("labelSelector=tier", vec!["fake-node"]),
        ("fieldSelector=metadata.name%3Dfake-node", vec!["fake-node"]),
        ("fieldSelector=metadata.name%3Dother-node", vec![]),
    ] {
        let list = get(&viewer, &format!("/apis/metrics.k8s.io/v1beta1/nodes?{q}")).await.unwrap();
        assert_eq!(names(&list), want, "{q}");
    }
    // Upstream's 404s: a node without metrics, an unknown node (the node lister's words).
    let (code, status) = get(&viewer, "/apis/metrics.k8s.io/v1beta1/nodes/other-node").await.unwrap_err();
    assert_eq!(code, 404);
    assert_eq!(status["message"], "nodemetrics.metrics.k8s.io \"other-node\" not found");
    assert_eq!(status["details"], json!({"name": "other-node", "group": "metrics.k8s.io", "kind": "nodemetrics"}));
    let (code, status) = get(&viewer, "/apis/metrics.k8s.io/v1beta1/nodes/nope").await.unwrap_err();
    assert_eq!((code, status["message"].as_str()), (404, Some("node \"nope\" not found")));
    assert_eq!(status["reason"], "NotFound");

    // Pods: running pods whose containers all have two points, sorted by namespace and name.
    let pods = get(&viewer, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods").await.unwrap();
    assert_eq!(pods["kind"], "PodMetricsList");
    assert_eq!(names(&pods), ["default/web-1"]);
    let web = &pods["items"][0];
    assert_eq!(web["metadata"]["labels"], json!({"app": "web"}));
    let containers = web["containers"].as_array().unwrap();
    assert_eq!(containers.iter().map(|c| c["name"].as_str().unwrap()).collect::<Vec<_>>(), ["app", "sidecar"]);
    assert_eq!(containers[0]["usage"]["memory"], "2052Ki");
    assert_eq!(containers[1]["usage"]["memory"], "1Mi");
    assert!((cores(&containers[0]["usage"]["cpu"]) - 0.25).abs() < 0.01, "{web}");
    assert!((cores(&containers[1]["usage"]["cpu"]) - 0.125).abs() < 0.01, "{web}");
    assert!((9.0..=11.5).contains(&window(web)), "{web}");
    let all = get(&viewer, "/apis/metrics.k8s.io/v1beta1/pods").await.unwrap();
    assert_eq!(names(&all), ["default/web-1", "kube-system/other"]);
    let by_label = get(&viewer, "/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app%3Dweb").await.unwrap();
    assert_eq!(names(&by_label), ["default/web-1"]);
    let one = get(&viewer, "/apis/metrics.k8s.io/v1beta1/namespaces/kube-system/pods/other").await.unwrap();
    assert_eq!(
        (one["kind"].as_str(), one["metadata"]["namespace"].as_str()),
        (Some("PodMetrics"), Some("kube-system"))
    );
    assert_eq!(one["containers"][0]["usage"]["memory"], "4Mi");
    let (code, status) = get(&viewer, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/idle").await.unwrap_err();
    assert_eq!((code, status["message"].as_str()), (404, Some("podmetrics.metrics.k8s.io \"default/idle\" not found")));
    let (code, status) =
        get(&viewer, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/pending").await.unwrap_err();
    assert_eq!((code, status["message"].as_str()), (404, Some("pods \"pending\" not found")));
    let (code, _) = get(&viewer, "/apis/metrics.k8s.io/v1beta1/namespaces/default/widgets").await.unwrap_err();
    assert_eq!(code, 404);

    // Table output, as kubectl get asks for it.
    let resp = viewer
        .send_accepting(
            Method::GET,
            "/apis/metrics.k8s.io/v1beta1/nodes",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            None,
        )
        .await
        .unwrap();
    let table: Value =
        serde_json::from_slice(&http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes()).unwrap();
    assert_eq!(table["kind"], "Table");
    let columns: Vec<&str> =
        table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(columns, ["Name", "cpu", "memory", "Window"]);
    assert_eq!(table["rows"][0]["cells"][0], "fake-node");
    assert_eq!(table["rows"][0]["cells"][2], "1578392Ki");

    // Authorization by delegation: resource attributes, upstream's 403 words; anonymous users are refused too.
    let (code, status) = get(&nobody, "/apis/metrics.k8s.io/v1beta1/nodes").await.unwrap_err();
    assert_eq!(code, 403);
    assert_eq!(status["message"].as_str().unwrap().split(": ").next(), Some("nodes.metrics.k8s.io is forbidden"));
    assert!(
        status["message"].as_str().unwrap().contains(
            "User \"nobody\" cannot list resource \"nodes\" in API group \"metrics.k8s.io\" at the cluster scope"
        ),
        "{status}"
    );
    let (code, status) =
        get(&anonymous, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web-1").await.unwrap_err();
    assert_eq!(code, 403);
    assert!(status["message"].as_str().unwrap().starts_with("pods.metrics.k8s.io \"web-1\" is forbidden: User \"system:anonymous\" cannot get resource \"pods\" in API group \"metrics.k8s.io\" in the namespace \"default\""), "{status}");
    let (code, _) = get(&client_for(port, Some("wrong")), "/apis/metrics.k8s.io/v1beta1/nodes").await.unwrap_err();
    assert_eq!(code, 401);
    // Read-only: writes are 405 (for those allowed to ask).
    let admin = client::Client::new(&client::Config {
        server: format!("https://127.0.0.1:{port}"),
        insecure_skip_tls_verify: true,
        ..api.config.clone()
    })
    .unwrap();
    let err = admin.request(Method::DELETE, "/apis/metrics.k8s.io/v1beta1/nodes/fake-node", None).await.unwrap_err();
    assert_eq!(err.code(), Some(405));
    let (code, _) = get(&admin, "/apis/metrics.k8s.io/v1beta1/nodes?watch=true").await.unwrap_err();
    assert_eq!(code, 405);

    // Its own metrics, for those allowed /metrics (system:masters here).
    let metrics = String::from_utf8(admin.get_raw("/metrics").await.unwrap().to_vec()).unwrap();
    assert!(metrics.contains("metrics_server_kubelet_request_total{success=\"true\"}"), "{metrics}");
    assert!(metrics.contains("metrics_server_kubelet_request_total{success=\"false\"}"), "{metrics}");
    assert!(metrics.contains("metrics_server_storage_points{type=\"node\"} 1"), "{metrics}");
    assert!(metrics.contains("metrics_server_storage_points{type=\"container\"} 3"), "{metrics}");
    let (code, _) = get(&viewer, "/metrics").await.unwrap_err();
    assert_eq!(code, 403);

    stop_tx.send(true).unwrap();
    within(10, "metrics-server shutdown", server).await.unwrap().unwrap();
    api.stop().await;
}

/// What the kubelet writes on `/metrics/resource` is what the scraper reads: node and container points with the
/// kubelet's millisecond timestamps and start times, pod totals ignored.
#[test]
fn the_kubelets_exposition_decodes() {
    use kubelet::stats::{ContainerStats, CpuStats, MemoryStats, PodStats, Summary};
    let t = 1624396278302091597i64;
    let cpu = |v| Some(CpuStats { time: t, usage_core_nano_seconds: Some(v), usage_nano_cores: None });
    let mem = |v| Some(MemoryStats { time: t, working_set_bytes: Some(v), ..Default::default() });
    let summary = Summary {
        node_cpu: cpu(357_354_910_000),
        node_memory: mem(NODE_MEMORY),
        pods: vec![PodStats {
            name: "web-1".into(),
            namespace: "default".into(),
            cpu: cpu(4_710_169_000),
            memory: mem(APP_MEMORY),
            containers: vec![ContainerStats {
                name: "app".into(),
                start_time: t - 3_600_000_000_000,
                cpu: cpu(4_710_169_000),
                memory: mem(APP_MEMORY),
                rootfs: None,
            }],
            ..Default::default()
        }],
    };
    let text = kubelet::resource_metrics::render(Ok(&summary));
    let batch = metrics_server::scraper::decode::decode_batch(&text, 0, "n1").unwrap();
    let ms = t / 1_000_000 * 1_000_000;
    assert_eq!(
        batch.nodes["n1"],
        metrics_server::storage::MetricsPoint {
            start_time: metrics_server::storage::ZERO_TIME,
            timestamp: ms,
            cumulative_cpu_used: 357_354_910_000,
            memory_usage: NODE_MEMORY,
        }
    );
    let app = batch.pods[&("default".to_string(), "web-1".to_string())].containers["app"];
    assert_eq!((app.timestamp, app.cumulative_cpu_used, app.memory_usage), (ms, 4_710_169_000, APP_MEMORY));
    assert!((app.start_time - (t - 3_600_000_000_000)).abs() < 1_000, "{app:?}");
}

/// `kubectl top` as a user runs it: the apiserver aggregates `v1beta1.metrics.k8s.io` (the APIService of
/// deploy/metrics-server.yaml) to metrics-server through a Service, with the front-proxy client certificate and
/// request headers, and metrics-server authenticates the proxied user from `extension-apiserver-authentication`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_top_through_the_aggregation_layer() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let front = kube_apiserver::pki::Ca::new("front-proxy-ca").unwrap();
    std::fs::write(d.join("front-proxy-ca.crt"), &front.cert_pem).unwrap();
    front.issue("front-proxy-client", &[], &[]).unwrap().write(&d.join("fp.crt"), &d.join("fp.key")).unwrap();
    std::fs::write(
        d.join("tokens.csv"),
        "ms-token,system:serviceaccount:kube-system:metrics-server,ms-uid,\"system:serviceaccounts,system:serviceaccounts:kube-system\"\n",
    )
    .unwrap();
    let f = |n: &str| d.join(n).display().to_string();
    let api = TestApiserver::start_with(&[
        "--authorization-mode=Node,RBAC",
        &format!("--token-auth-file={}", f("tokens.csv")),
        &format!("--requestheader-client-ca-file={}", f("front-proxy-ca.crt")),
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        &format!("--proxy-client-cert-file={}", f("fp.crt")),
        &format!("--proxy-client-key-file={}", f("fp.key")),
    ])
    .await;
    apply_rbac(&api).await;
    let base_ms = jiff::Timestamp::now().as_millisecond();
    let (kubelet_port, _) = fake_kubelet(base_ms).await;
    node(&api, "fake-node", json!({"kubernetes.io/hostname": "fake-node"}), kubelet_port).await;
    pod(&api, "default", "web-1", json!({"app": "web"}), &["app", "sidecar"], "Running").await;

    let kubeconfig = d.join("metrics-server.conf");
    let cluster = format!(
        "clusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\n",
        api.config.server,
        api.dir.path().join("ca.crt").display()
    );
    let context = "contexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n";
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\n{cluster}users:\n- name: u\n  user:\n    token: ms-token\n{context}"),
    )
    .unwrap();
    let opts = <metrics_server::Options as clap::Parser>::try_parse_from([
        "metrics-server".to_string(),
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--cert-dir={}", d.join("certs").display()),
        "--metric-resolution=10s".into(),
        "--kubelet-request-timeout=2s".into(),
        "--kubelet-use-node-status-port".into(),
        "--kubelet-insecure-tls".into(),
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname".into(),
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(metrics_server::run_with_listener(opts, listener, stop));
    tokio::time::sleep(Duration::from_secs(2)).await;
    if server.is_finished() {
        panic!("metrics-server ended: {:?}", server.await);
    }

    // The manifest's Service and APIService; the Endpoints a controller would write for the pod.
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/metrics-server.yaml")).unwrap();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let obj: Value = serde::Deserialize::deserialize(doc).unwrap();
        match obj["kind"].as_str().unwrap() {
            "Service" => {
                let mut svc = obj.clone();
                svc["spec"].as_object_mut().unwrap().remove("selector");
                let svcs = api.client.api("", "v1", "services").unwrap().namespaced("kube-system");
                svcs.create(&svc).await.unwrap();
            }
            "APIService" => {
                api.client.api("apiregistration.k8s.io", "v1", "apiservices").unwrap().create(&obj).await.unwrap();
            }
            _ => {}
        }
    }
    let eps = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "metrics-server"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port}]}]});
    api.client.api("", "v1", "endpoints").unwrap().namespaced("kube-system").create(&eps).await.unwrap();

    // Through the apiserver, as the admin.
    let nodes = within(90, "node metrics through the aggregator", async {
        loop {
            if let Ok(v) = api.client.request(Method::GET, "/apis/metrics.k8s.io/v1beta1/nodes", None).await
                && v["items"].as_array().is_some_and(|i| !i.is_empty())
            {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    assert_eq!(nodes["kind"], "NodeMetricsList");
    assert_eq!(nodes["items"][0]["metadata"]["name"], "fake-node");

    // The real kubectl.
    let cfg = &api.config;
    std::fs::write(d.join("admin.crt"), cfg.client_cert_pem.as_ref().unwrap()).unwrap();
    std::fs::write(d.join("admin.key"), cfg.client_key_pem.as_ref().unwrap()).unwrap();
    let admin = d.join("admin.conf");
    std::fs::write(&admin, format!("apiVersion: v1\nkind: Config\n{cluster}users:\n- name: u\n  user:\n    client-certificate: {}\n    client-key: {}\n{context}", f("admin.crt"), f("admin.key"))).unwrap();
    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .arg(format!("--kubeconfig={}", admin.display()))
            .arg(format!("--cache-dir={}", f("kube-cache")))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = kubectl(&["top", "nodes"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("NAME") && out.contains("CPU(cores)") && out.contains("MEMORY(bytes)"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("fake-node ")), "{out}");
    let pods = within(60, "pod metrics", async {
        loop {
            let (ok, out, _) = kubectl(&["top", "pods", "-n", "default"]);
            if ok && out.contains("web-1") {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    assert!(pods.starts_with("NAME") && pods.contains("CPU(cores)"), "{pods}");
    let (ok, apiservices, err) = kubectl(&["get", "apiservice", "v1beta1.metrics.k8s.io"]);
    assert!(
        ok && apiservices.contains("kube-system/metrics-server") && apiservices.contains("True"),
        "{apiservices}{err}"
    );
    // `kubectl explain` reads the group's OpenAPI v3 document, which the apiserver merged from metrics-server's.
    let explained = within(60, "kubectl explain of NodeMetrics", async {
        loop {
            let (ok, out, err) = kubectl(&["explain", "nodes", "--api-version=metrics.k8s.io/v1beta1"]);
            if ok && out.contains("NodeMetrics") {
                return out;
            }
            eprintln!("kubectl explain: {err}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    assert!(explained.contains("KIND:") && explained.contains("usage") && explained.contains("window"), "{explained}");

    // metrics-server gone: its group answers 503, kubectl says so, everything else works.
    stop_tx.send(true).unwrap();
    let _ = server.await;
    api.client
        .api("apiregistration.k8s.io", "v1", "apiservices")
        .unwrap()
        .patch(
            "v1beta1.metrics.k8s.io",
            api_types::patch::PatchType::Merge,
            &json!({"metadata": {"labels": {"poke": "1"}}}),
        )
        .await
        .unwrap();
    let err = within(30, "metrics unavailable", async {
        loop {
            let (ok, _, err) = kubectl(&["top", "nodes"]);
            // With aggregated discovery kubectl sees the stale group and says the API is not available; with a
            // cached discovery it gets the 503.
            if !ok && (err.contains("Metrics API not available") || err.contains("ServiceUnavailable")) {
                return err;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    assert!(
        err.contains("Metrics API not available")
            || err.contains("the server is currently unable to handle the request"),
        "{err}"
    );
    let (ok, _, err) = kubectl(&["get", "pods"]);
    assert!(ok, "{err}");
    api.stop().await;
}
