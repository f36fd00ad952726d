//! CEL validation rules of CustomResourceDefinitions end to end, as upstream's
//! `test/integration/apiserver/crd_validation_expressions_test.go` (TestCustomResourceValidators) checks them: a
//! custom resource breaking a rule is a 422 with upstream's cause, a transition rule keeps a field immutable on
//! update but not on create, messageExpression and fieldPath shape the cause, and a CRD whose rule does not compile
//! is refused at create.

use std::time::Duration;

use api_types::patch::PatchType;
use client::{Api, Client};
use http::Method;
use kube_apiserver::testing::TestApiserver;
use serde_json::{Value, json};

fn crd(name: &str, spec_rules: Value) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{name}s.cel.example.com")},
        "spec": {
            "group": "cel.example.com", "scope": "Namespaced",
            "names": {"plural": format!("{name}s"), "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "x-kubernetes-validations": [
                            {"rule": "self == oldSelf", "message": "name is immutable"}]},
                        "replicas": {"type": "integer"},
                        "minReplicas": {"type": "integer"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                    "x-kubernetes-validations": spec_rules,
                }},
            }}}]
        }
    })
}

/// Creates a CRD and waits until its resource answers.
async fn establish(client: &Client, crd: &Value) {
    let crds = client.api("apiextensions.k8s.io", "v1", "customresourcedefinitions").unwrap();
    crds.create(crd).await.unwrap();
    let plural = crd["spec"]["names"]["plural"].as_str().unwrap();
    for _ in 0..100 {
        if client.request(Method::GET, &format!("/apis/cel.example.com/v1/{plural}"), None).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("CRD {plural} never served");
}

fn widget(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "cel.example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec})
}

fn widgets(client: &Client) -> Api {
    client.api_dynamic("cel.example.com", "v1", "widgets", "Widget", true).namespaced("default")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_refuse_invalid_custom_resources_with_upstream_causes() {
    let api = TestApiserver::start().await;
    establish(
        &api.client,
        &crd(
            "widget",
            json!([
                {"rule": "self.replicas >= self.minReplicas", "message": "replicas must be at least minReplicas"},
                {"rule": "self.replicas <= 10", "messageExpression": "'replicas ' + string(self.replicas) + ' is more than 10'"},
                {"rule": "!has(self.labels) || self.labels.all(k, k.startsWith('app'))", "fieldPath": ".labels", "reason": "FieldValueForbidden"},
            ]),
        ),
    )
    .await;
    let w = widgets(&api.client);

    let err = w.create(&widget("w1", json!({"name": "a", "replicas": 1, "minReplicas": 2}))).await.unwrap_err();
    assert_eq!(err.code(), Some(422), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(r#""w1" is invalid: spec: Invalid value: "object": replicas must be at least minReplicas"#),
        "{text}"
    );

    let err = w.create(&widget("w1", json!({"name": "a", "replicas": 11, "minReplicas": 2}))).await.unwrap_err();
    assert!(err.to_string().contains(r#"spec: Invalid value: "object": replicas 11 is more than 10"#), "{err}");

    let err = w
        .create(&widget("w1", json!({"name": "a", "replicas": 3, "minReplicas": 2, "labels": {"team": "x"}})))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "spec.labels: Forbidden: failed rule: !has(self.labels) || self.labels.all(k, k.startsWith('app'))"
        ),
        "{err}"
    );
    // The cause carries upstream's reason and field.
    let (code, status) =
        raw_create(&api.client, &widget("w1", json!({"name": "a", "replicas": 1, "minReplicas": 2}))).await;
    assert_eq!(code, 422);
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["details"]["causes"][0]["reason"], "FieldValueInvalid");
    assert_eq!(status["details"]["causes"][0]["field"], "spec");

    // A valid object is created; the transition rule did not run on create.
    let created = w.create(&widget("w1", json!({"name": "a", "replicas": 3, "minReplicas": 2}))).await.unwrap();
    assert_eq!(created["spec"]["name"], "a");

    // On update the immutable field is refused, by update and by patch; other changes pass.
    let mut changed = created.clone();
    changed["spec"]["name"] = json!("b");
    let err = w.replace("w1", &changed).await.unwrap_err();
    assert_eq!(err.code(), Some(422), "{err}");
    assert!(err.to_string().contains(r#"spec.name: Invalid value: "string": name is immutable"#), "{err}");
    let err = w.patch("w1", PatchType::Merge, &json!({"spec": {"name": "c"}})).await.unwrap_err();
    assert!(err.to_string().contains("name is immutable"), "{err}");
    let patched = w.patch("w1", PatchType::Merge, &json!({"spec": {"replicas": 4}})).await.unwrap();
    assert_eq!(patched["spec"]["replicas"], 4);
    // Rules see the whole new object on update too.
    let err = w.patch("w1", PatchType::Merge, &json!({"spec": {"replicas": 1}})).await.unwrap_err();
    assert!(err.to_string().contains("replicas must be at least minReplicas"), "{err}");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_with_rules_that_do_not_compile_are_refused() {
    let api = TestApiserver::start().await;
    let crds = api.client.api("apiextensions.k8s.io", "v1", "customresourcedefinitions").unwrap();
    let err = crds.create(&crd("gadget", json!([{"rule": "self.replicas >"}]))).await.unwrap_err();
    assert_eq!(err.code(), Some(422), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(r#"spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: Invalid value: apiextensions.ValidationRule{Rule:"self.replicas >", Message:"", MessageExpression:"", Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:"", OptionalOldSelf:(*bool)(nil)}: compilation failed: ERROR: <input>:1:16: Syntax error: mismatched input '<EOF>'"#),
        "{text}"
    );
    let err = crds.create(&crd("gadget", json!([{"rule": "self.nope > 1"}]))).await.unwrap_err();
    assert!(err.to_string().contains("compilation failed: ERROR: <input>:1:5: undefined field 'nope'"), "{err}");
    let err = crds.create(&crd("gadget", json!([{"rule": "self.replicas > 1", "reason": "Nope"}]))).await.unwrap_err();
    assert!(err.to_string().contains(r#"x-kubernetes-validations[0].reason: Unsupported value: "Nope""#), "{err}");
    // An update bringing a broken rule is refused as well.
    establish(&api.client, &crd("gadget", json!([{"rule": "self.replicas > 0"}]))).await;
    let mut cur = crds.get("gadgets.cel.example.com").await.unwrap();
    cur["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"] =
        json!([{"rule": "self.replicas >>"}]);
    let err = crds.replace("gadgets.cel.example.com", &cur).await.unwrap_err();
    assert_eq!(err.code(), Some(422), "{err}");
    assert!(err.to_string().contains("compilation failed"), "{err}");
    api.stop().await;
}

/// A create whose 422 Status is returned as JSON.
async fn raw_create(client: &Client, obj: &Value) -> (u16, Value) {
    use http_body_util::BodyExt;
    let body = serde_json::to_vec(obj).unwrap();
    let resp = client
        .send_accepting(
            Method::POST,
            "/apis/cel.example.com/v1/namespaces/default/widgets",
            "application/json",
            Some((body.into(), "application/json")),
        )
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&body).unwrap_or(Value::Null))
}
