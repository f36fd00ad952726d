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
