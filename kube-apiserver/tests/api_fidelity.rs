//! Behaviours where the API must answer exactly as upstream's: name lengths, Service defaulting for Go clients,
//! event field selectors in both event APIs.

use kube_apiserver::testing::TestApiserver;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subdomain_names_may_be_253_characters() {
    let api = TestApiserver::start().await;
    let cms = api.client.api("", "v1", "configmaps").unwrap().namespaced("default");
    // Helm-style generated names: longer than a 63-character label, valid DNS-1123 subdomains.
    let long = format!("{}-config", "release".repeat(9));
    assert!(long.len() > 63);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": long}});
    assert_eq!(cms.create(&cm).await.unwrap()["metadata"]["name"], json!(long));
    let dotted = format!("{}.{}", "a".repeat(120), "b".repeat(120));
    cms.create(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": dotted}})).await.unwrap();
    let pods = api.client.api("", "v1", "pods").unwrap().namespaced("default");
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p".repeat(65)},
                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    pods.create(&pod).await.unwrap();
    // Over 253 is refused; so is a 64-character namespace (a label).
    let too_long = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a".repeat(254)}});
    let err = cms.create(&too_long).await.unwrap_err();
    assert_eq!(err.code(), Some(422), "{err}");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n".repeat(64)}});
    let err = api.client.api("", "v1", "namespaces").unwrap().create(&ns).await.unwrap_err();
    assert_eq!(err.code(), Some(422), "{err}");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_target_port_defaults_to_the_port() {
    let api = TestApiserver::start().await;
    let svcs = api.client.api("", "v1", "services").unwrap().namespaced("default");
    // Go clients always send targetPort (0 when unset).
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                     "spec": {"selector": {"app": "s"}, "ports": [{"name": "a", "port": 80, "targetPort": 0},
                                                                   {"name": "b", "port": 81, "targetPort": ""},
                                                                   {"name": "c", "port": 82, "targetPort": "http"}]}});
    let out = svcs.create(&svc).await.unwrap();
    assert_eq!(out["spec"]["ports"][0]["targetPort"], 80);
    assert_eq!(out["spec"]["ports"][1]["targetPort"], 81);
    assert_eq!(out["spec"]["ports"][2]["targetPort"], "http");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_field_selectors_as_upstream() {
    let api = TestApiserver::start().await;
    let core = api.client.api("", "v1", "events").unwrap().namespaced("default");
    // Written by a new-style recorder: reportingComponent, no source.
    core.create(&json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1"},
                        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
                        "reason": "Started", "type": "Normal", "reportingComponent": "example.com/ctrl",
                        "reportingInstance": "i"}))
        .await
        .unwrap();
    core.create(&json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e2"},
                        "involvedObject": {"kind": "Pod", "name": "q", "namespace": "default"},
                        "reason": "Killing", "type": "Warning", "source": {"component": "kubelet"}}))
        .await
        .unwrap();
    let names = |list: serde_json::Value| -> Vec<String> {
        list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()).collect()
    };
    let path = |api: &str, fs: &str| format!("{api}?fieldSelector={}", fs.replace('/', "%2F"));
    let get = |p: String| {
        let client = api.client.clone();
        async move { client.request(http::Method::GET, &p, None).await }
    };
    let core_path = "/api/v1/namespaces/default/events";
    // core/v1 `source` falls back to the reporting controller.
    assert_eq!(names(get(path(core_path, "source=example.com/ctrl")).await.unwrap()), ["e1"]);
    assert_eq!(names(get(path(core_path, "source=kubelet")).await.unwrap()), ["e2"]);
    assert_eq!(names(get(path(core_path, "reportingComponent=example.com/ctrl")).await.unwrap()), ["e1"]);
    // events.k8s.io/v1 labels select the same stored fields.
    let v1_path = "/apis/events.k8s.io/v1/namespaces/default/events";
    assert_eq!(names(get(path(v1_path, "regarding.name=p")).await.unwrap()), ["e1"]);
    assert_eq!(names(get(path(v1_path, "reportingController=example.com/ctrl,type=Normal")).await.unwrap()), ["e1"]);
    assert_eq!(names(get(path(v1_path, "regarding.kind=Pod,reason=Killing")).await.unwrap()), ["e2"]);
    assert_eq!(names(get(path(v1_path, "type!=Normal")).await.unwrap()), ["e2"]);
    let err = get(path(v1_path, "involvedObject.name=p")).await.unwrap_err();
    assert_eq!(err.code(), Some(400));
    assert!(err.to_string().contains("field label not supported: involvedObject.name"), "{err}");
    api.stop().await;
}

/// curl over HTTP/1.1 with the test client's certificate: (HTTP status, body).
fn curl(api: &TestApiserver, args: &[&str]) -> (u16, String) {
    let d = write_certs(api);
    let out = std::process::Command::new("curl")
        .args(["-sS", "--http1.1", "-o", "-", "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(d.join("curl-ca.crt"))
        .arg("--cert")
        .arg(d.join("curl.crt"))
        .arg("--key")
        .arg(d.join("curl.key"))
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "curl failed (a reset instead of an answer?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

/// The test client's CA, certificate and key as files (`curl-ca.crt`, `curl.crt`, `curl.key`) in the test's dir.
fn write_certs(api: &TestApiserver) -> &std::path::Path {
    let d = api.dir.path();
    std::fs::write(d.join("curl-ca.crt"), api.config.ca_pem.as_ref().unwrap()).unwrap();
    std::fs::write(d.join("curl.crt"), api.config.client_cert_pem.as_ref().unwrap()).unwrap();
    std::fs::write(d.join("curl.key"), api.config.client_key_pem.as_ref().unwrap()).unwrap();
    d
}

/// A GET over HTTP/1.1 from Python's http.client, with a URL and headers built by Python expressions.
fn python_get(api: &TestApiserver, url_expr: &str, headers_expr: &str) -> (u16, String) {
    let d = write_certs(api);
    let port = api.config.server.rsplit(':').next().unwrap();
    let script = format!(
        "import http.client, ssl\nctx = ssl.create_default_context(cafile='{d}/curl-ca.crt')\nctx.load_cert_chain('{d}/curl.crt', '{d}/curl.key')\nc = http.client.HTTPSConnection('127.0.0.1', {port}, context=ctx)\npath = '/api/v1/namespaces/default/configmaps'\nc.request('GET', {url_expr}, headers={headers_expr})\nr = c.getresponse()\nprint(r.status)\nprint(r.read().decode())\n",
        d = d.display()
    );
    let out = std::process::Command::new("python3").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (code, body) = text.split_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_get_a_status_not_a_reset() {
    let api = TestApiserver::start().await;
    let url = format!("{}/api/v1/namespaces/default/configmaps", api.config.server);
    // A 4 MiB body: the 413 Status arrives after the server has read it, over HTTP/1.1 as curl sends it.
    let big = api.dir.path().join("big.json");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"a": "x".repeat(4 << 20)}});
    std::fs::write(&big, cm.to_string()).unwrap();
    let data = format!("@{}", big.display());
    let (code, body) =
        curl(&api, &["-X", "POST", "-H", "Content-Type: application/json", "--data-binary", &data, &url]);
    assert_eq!(code, 413, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["reason"], "RequestEntityTooLarge");
    assert_eq!(status["message"], "Request entity too large: limit is 3145728");
    // Nothing was written.
    let err = api.client.api("", "v1", "configmaps").unwrap().namespaced("default").get("big").await.unwrap_err();
    assert_eq!(err.code(), Some(404));

    // A request line over 64 KiB is 414 (the longest URI the `http` crate represents; hyper answers it, and the
    // connection's writer gives the answer a Status body); headers over 1 MiB are 431 with a Status body.
    // (From Python's http.client: arguments of a megabyte are too long for exec.)
    let (code, body) = python_get(&api, "path + '?pad=' + 'a' * (70 * 1024)", "{}");
    assert_eq!(code, 414, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status["kind"].as_str(), status["code"].as_u64()), (Some("Status"), Some(414)), "{body}");
    assert_eq!(status["reason"], "RequestURITooLong");
    let (code, _) = python_get(&api, "path + '?pad=' + 'a' * (60 * 1024)", "{}");
    assert_eq!(code, 200, "a 60 KiB request line is served");
    let (code, body) = python_get(&api, "path", "{'X-Big': 'b' * (1100 * 1024)}");
    assert_eq!(code, 431, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["code"], 431);
    api.stop().await;
}

/// Upstream decodes every quantity into a `resource.Quantity` and writes it back in canonical form
/// (`TestQuantityString` in apimachinery): what a client reads back is `1`, not the `1000m` it sent, on creates,
/// updates and patches alike, and a JSON number becomes its string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quantities_are_written_back_in_canonical_form() {
    let api = TestApiserver::start().await;
    let pods = api.client.api("", "v1", "pods").unwrap().namespaced("default");
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q"},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": "1000m", "memory": "0.5Gi"}, "limits": {"cpu": 2, "memory": "1024Mi"}}}]}});
    let created = pods.create(&pod).await.unwrap();
    let want = json!({"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}});
    assert_eq!(created["spec"]["containers"][0]["resources"], want);
    assert_eq!(pods.get("q").await.unwrap()["spec"]["containers"][0]["resources"], want);

    let quotas = api.client.api("", "v1", "resourcequotas").unwrap().namespaced("default");
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "rq"},
                       "spec": {"hard": {"requests.cpu": "2000m", "pods": "10"}}});
    quotas.create(&quota).await.unwrap();
    // An update and a merge patch are canonical too.
    let mut current = quotas.get("rq").await.unwrap();
    current["spec"]["hard"]["requests.memory"] = json!("2048Mi");
    let updated = quotas.replace("rq", &current).await.unwrap();
    assert_eq!(updated["spec"]["hard"]["requests.memory"], "2Gi");
    let patch = json!({"spec": {"hard": {"limits.cpu": 1.5}}});
    let patched = quotas.patch("rq", api_types::patch::PatchType::Merge, &patch).await.unwrap();
    assert_eq!(
        patched["spec"]["hard"],
        json!({"requests.cpu": "2", "pods": "10", "requests.memory": "2Gi", "limits.cpu": "1500m"})
    );
    api.stop().await;
}
