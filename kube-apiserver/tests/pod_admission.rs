//! The pod admission plugins through the API: LimitRanger and LimitRange defaulting, as upstream's e2e
//! `test/e2e/scheduling/limit_range.go` ("should create a LimitRange with defaults and ensure pod has those defaults
//! applied", "should list, patch and delete a LimitRange by collection") asserts them; RuntimeClass, as
//! `test/e2e/common/node/runtimeclass.go` ("should reject a Pod requesting a non-existent / deleted RuntimeClass",
//! "should schedule a Pod requesting a RuntimeClass and initialize its Overhead") does.

use api_types::patch::PatchType;
use kube_apiserver::testing::TestApiserver;
use serde_json::{Value, json};

fn forbidden(e: client::Error) -> String {
    match e {
        client::Error::Api(s) => {
            assert_eq!((s.code, s.reason), (403, "Forbidden"), "{}", s.message);
            s.message
        }
        e => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_range_defaults_and_bounds_pods() {
    let api = TestApiserver::start().await;
    api.namespace("lr").await;
    let ranges = api.client.api("", "v1", "limitranges").unwrap().namespaced("lr");
    let pods = api.client.api("", "v1", "pods").unwrap().namespaced("lr");
    let created = ranges
        .create(
            &json!({"metadata": {"name": "limits", "labels": {"time": "1"}}, "spec": {"limits": [{"type": "Container",
            "min": {"cpu": "50m", "memory": "100Mi", "ephemeral-storage": "100Gi"},
            "max": {"cpu": "500m", "memory": "500Mi", "ephemeral-storage": "500Gi"},
            "defaultRequest": {"cpu": "100m", "memory": "200Mi", "ephemeral-storage": "200Gi"}}]}}),
        )
        .await
        .unwrap();
    // Fetching the LimitRange: the default limit is the max where unset.
    assert_eq!(
        created["spec"]["limits"][0]["default"],
        json!({"cpu": "500m", "memory": "500Mi", "ephemeral-storage": "500Gi"})
    );
    assert_eq!(
        created["spec"]["limits"][0]["defaultRequest"],
        json!({"cpu": "100m", "memory": "200Mi", "ephemeral-storage": "200Gi"})
    );
    let pod = |name: &str, resources: Value| json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10", "resources": resources}]}});
    // The apiserver's cache sees the LimitRange a moment after it is written.
    let mut p = Value::Null;
    for _ in 0..50 {
        p = pods.create(&pod("no-resources", json!({}))).await.unwrap();
        if p["spec"]["containers"][0]["resources"]["limits"].is_object() {
            break;
        }
        pods.delete("no-resources", Some(&json!({"gracePeriodSeconds": 0}))).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        p["spec"]["containers"][0]["resources"],
        json!({"requests": {"cpu": "100m", "memory": "200Mi", "ephemeral-storage": "200Gi"},
               "limits": {"cpu": "500m", "memory": "500Mi", "ephemeral-storage": "500Gi"}})
    );
    assert!(
        p["metadata"]["annotations"]["kubernetes.io/limit-ranger"]
            .as_str()
            .unwrap()
            .starts_with("LimitRanger plugin set: ")
    );
    // Partial requirements: what the pod states stays; a limit without a request is the request (pod defaulting
    // comes first, as upstream decodes before admission).
    let p = pods
        .create(&pod(
            "partial",
            json!({"requests": {"cpu": "300m", "memory": "150Mi", "ephemeral-storage": "150Gi"},
                                        "limits": {"cpu": "300m"}}),
        ))
        .await
        .unwrap();
    assert_eq!(
        p["spec"]["containers"][0]["resources"],
        json!({"requests": {"cpu": "300m", "memory": "150Mi", "ephemeral-storage": "150Gi"},
               "limits": {"cpu": "300m", "memory": "500Mi", "ephemeral-storage": "500Gi"}})
    );
    let p = pods.create(&pod("limit-only", json!({"limits": {"cpu": "200m"}}))).await.unwrap();
    assert_eq!(p["spec"]["containers"][0]["resources"]["requests"]["cpu"], "200m");
    // Outside the range: refused.
    let e = pods
        .create(&pod("too-big", json!({"requests": {"cpu": "600m"}, "limits": {"cpu": "600m"}})))
        .await
        .unwrap_err();
    assert_eq!(
        forbidden(e),
        "pods \"too-big\" is forbidden: maximum cpu usage per Container is 500m, but limit is 600m"
    );
    let e = pods.create(&pod("too-small", json!({"requests": {"cpu": "10m"}}))).await.unwrap_err();
    assert_eq!(
        forbidden(e),
        "pods \"too-small\" is forbidden: minimum cpu usage per Container is 50m, but request is 10m"
    );

    // List, patch and delete by collection.
    let listed =
        ranges.list(&client::ListParams { label_selector: Some("time=1".into()), ..Default::default() }).await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let patched = ranges
        .patch(
            "limits",
            PatchType::StrategicMerge,
            &json!({"metadata": {"labels": {"patched": "true"}}, "spec": {"limits": [{"type": "Container", "default": {"cpu": "400m"}, "defaultRequest": {"cpu": "200m"}, "max": {"cpu": "500m"}, "min": {"cpu": "50m"}}]}}),
        )
        .await
        .unwrap();
    assert_eq!(patched["metadata"]["labels"]["patched"], "true");
    api.client
        .request(http::Method::DELETE, "/api/v1/namespaces/lr/limitranges?labelSelector=patched%3Dtrue", None)
        .await
        .unwrap();
    assert_eq!(ranges.list(&Default::default()).await.unwrap()["items"].as_array().unwrap().len(), 0);
    // Without a LimitRange the pod is stored as sent.
    let mut p = Value::Null;
    for _ in 0..50 {
        p = pods.create(&pod("after", json!({}))).await.unwrap();
        if p["spec"]["containers"][0]["resources"] == json!({}) {
            break;
        }
        pods.delete("after", Some(&json!({"gracePeriodSeconds": 0}))).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(p["spec"]["containers"][0]["resources"], json!({}));
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_class_sets_overhead_and_refuses_unknown_classes() {
    let api = TestApiserver::start().await;
    api.namespace("rc").await;
    let classes = api.client.api("node.k8s.io", "v1", "runtimeclasses").unwrap();
    let pods = api.client.api("", "v1", "pods").unwrap().namespaced("rc");
    let pod = |name: &str, class: &str| {
        json!({"metadata": {"name": name}, "spec": {"runtimeClassName": class,
            "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}]}})
    };
    let e = pods.create(&pod("p1", "missing")).await.unwrap_err();
    assert_eq!(forbidden(e), "pods \"p1\" is forbidden: pod rejected: RuntimeClass \"missing\" not found");
    classes
        .create(&json!({"metadata": {"name": "with-overhead"}, "handler": "runc",
            "overhead": {"podFixed": {"cpu": "10m", "memory": "1Mi"}}}))
        .await
        .unwrap();
    let p = pods.create(&pod("p2", "with-overhead")).await.unwrap();
    assert_eq!(p["spec"]["overhead"], json!({"cpu": "10m", "memory": "1Mi"}));
    // A deleted class refuses new pods.
    classes.create(&json!({"metadata": {"name": "gone"}, "handler": "runc"})).await.unwrap();
    pods.create(&pod("p3", "gone")).await.unwrap();
    classes.delete("gone", None).await.unwrap();
    let e = pods.create(&pod("p4", "gone")).await.unwrap_err();
    assert_eq!(forbidden(e), "pods \"p4\" is forbidden: pod rejected: RuntimeClass \"gone\" not found");
    api.stop().await;
}
