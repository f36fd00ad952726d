//! Server-side field validation as upstream's conformance tests in `test/e2e/apimachinery/field_validation.go`
//! assert it: unknown and duplicate fields of a typed object, unknown metadata fields, and a custom resource's
//! duplicate fields in a YAML apply, each refused under `fieldValidation=Strict` with upstream's message; duplicates
//! reported as warnings under Warn.

use http::Method;
use kube_apiserver::testing::TestApiserver;
use serde_json::{Value, json};

/// A raw request with a body and content type; the status code and the body as JSON.
async fn send(api: &TestApiserver, method: Method, path: &str, body: &str, ct: &str) -> (u16, Value, Vec<String>) {
    use http_body_util::BodyExt;
    let body = Some((bytes::Bytes::from(body.to_string()), ct));
    let resp = api.client.send_accepting(method, path, "application/json", body).await.unwrap();
    let code = resp.status().as_u16();
    let warnings =
        resp.headers().get_all("warning").iter().map(|v| v.to_str().unwrap_or_default().to_string()).collect();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&body).unwrap_or(Value::Null), warnings)
}

const DEPLOYMENT: &str = r#"{
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "my-dep", "labels": {"app": "nginx"}},
    "spec": {
        "unknownField": "foo",
        "replicas": 2,
        "replicas": 3,
        "selector": {"matchLabels": {"app": "nginx"}},
        "template": {"metadata": {"labels": {"app": "nginx"}},
                     "spec": {"containers": [{"name": "nginx", "image": "nginx:latest"}]}}
    }
}"#;

/// Upstream's 400 for [`DEPLOYMENT`] under Strict, on a create and an update.
const STRICT_ERROR: &str = r#"Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.unknownField", duplicate field "spec.replicas""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_duplicate_fields_of_typed_objects() {
    let api = TestApiserver::start().await;
    let path = "/apis/apps/v1/namespaces/default/deployments?fieldManager=field_validation_mgr&fieldValidation=Strict";
    // Upstream's create handler names the body's kind and version, then the kind it decodes into.
    let (code, status, _) = send(&api, Method::POST, path, DEPLOYMENT, "application/json").await;
    assert_eq!((code, &status["message"], &status["reason"]), (400, &json!(STRICT_ERROR), &json!("BadRequest")));
    let meta = DEPLOYMENT
        .replace(r#""name": "my-dep","#, r#""name": "my-dep", "unknownMeta": "foo","#)
        .replace(r#""unknownField": "foo","#, "")
        .replace(r#""replicas": 2,"#, "");
    let (code, status, _) = send(&api, Method::POST, path, &meta, "application/json").await;
    assert_eq!(code, 400, "{status}");
    assert!(
        status["message"].as_str().unwrap().contains(r#"strict decoding error: unknown field "metadata.unknownMeta""#),
        "{status}"
    );
    // Warn (the default): created, both reported as warnings; the last duplicate wins.
    let warn = "/apis/apps/v1/namespaces/default/deployments?fieldValidation=Warn";
    let (code, created, warnings) = send(&api, Method::POST, warn, DEPLOYMENT, "application/json").await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["spec"]["replicas"], 3);
    let all = warnings.join("\n");
    assert!(
        all.contains(r#"unknown field \"spec.unknownField\""#) || all.contains(r#"unknown field "spec.unknownField""#),
        "{all}"
    );
    assert!(all.contains("duplicate field"), "{all}");
    // An update is refused the same way, with the same words.
    let put = "/apis/apps/v1/namespaces/default/deployments/my-dep?fieldValidation=Strict";
    let (code, status, _) = send(&api, Method::PUT, put, DEPLOYMENT, "application/json").await;
    assert_eq!((code, &status["message"]), (400, &json!(STRICT_ERROR)));
    // Ignore: nothing reported.
    let ignore = "/apis/apps/v1/namespaces/default/deployments?fieldValidation=Ignore";
    let body = DEPLOYMENT.replace("my-dep", "my-dep-2");
    let (code, _, warnings) = send(&api, Method::POST, ignore, &body, "application/json").await;
    assert_eq!((code, warnings.len()), (201, 0));
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_in_a_custom_resource_apply_when_preserving_unknown_fields() {
    let api = TestApiserver::start().await;
    let crds = api.client.api("apiextensions.k8s.io", "v1", "customresourcedefinitions").unwrap();
    crds.create(&json!({"metadata": {"name": "noxus.example.com"}, "spec": {"group": "example.com", "scope": "Cluster",
        "names": {"plural": "noxus", "kind": "Noxu"},
        "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "properties": {
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {
                "foo": {"type": "string"}, "cronSpec": {"type": "string"}}}}}}}]}}))
        .await
        .unwrap();
    let path = "/apis/example.com/v1/noxus/mytest?fieldManager=field_validation_mgr&fieldValidation=Strict";
    let body = "\napiVersion: example.com/v1\nkind: Noxu\nmetadata:\n  name: mytest\n  finalizers:\n  - test-finalizer\nspec:\n  unknown: uk1\n  foo: foo1\n  foo: foo2\n  cronSpec: \"* * * * */5\"\n";
    let mut last = (0, Value::Null, Vec::new());
    for _ in 0..100 {
        last = send(&api, Method::PATCH, path, body, "application/apply-patch+yaml").await;
        if last.0 != 404 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (code, status, _) = last;
    assert_eq!(code, 400, "{status}");
    assert!(status["message"].as_str().unwrap().contains(r#"line 11: key "foo" already set in map"#), "{status}");
    // Without the duplicate the same apply works (unknown fields preserved).
    let ok = body.replace("  foo: foo2\n", "");
    let (code, obj, _) = send(&api, Method::PATCH, path, &ok, "application/apply-patch+yaml").await;
    assert_eq!(code, 201, "{obj}");
    assert_eq!(obj["spec"]["unknown"], "uk1");
    api.stop().await;
}
