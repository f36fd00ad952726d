//! Dynamic admission webhooks end to end, as upstream's `test/integration/apiserver/admissionwebhook` exercises
//! them: webhook HTTPS servers in-process on loopback behind a selector-less Service and its Endpoints, CA bundles
//! from a test CA; a mutating webhook adding a label on create and update, a validating webhook refusing, a webhook
//! down under failurePolicy Fail and Ignore, warnings, dry run against sideEffects, the configuration kinds exempt,
//! and the same through `kubectl`.

mod support;

use std::time::Duration;

use api_types::patch::PatchType;
use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use kube_apiserver::admission::webhook::testserver::WebhookServer;
use kube_apiserver::testing::TestApiserver;
use serde_json::{Value, json};

/// A webhook on the test Service `default/webhook`, for writes in namespaces labelled `webhooks: on`.
fn hook(server: &WebhookServer, name: &str, path: &str, operations: &[&str], resources: &[&str]) -> Value {
    json!({"name": name, "clientConfig": {"service": {"namespace": "default", "name": "webhook", "path": path, "port": 443},
           "caBundle": server.ca_bundle()},
           "rules": [{"operations": operations, "apiGroups": [""], "apiVersions": ["v1"], "resources": resources}],
           "namespaceSelector": {"matchLabels": {"webhooks": "on"}},
           "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 5})
}

async fn configuration(api: &TestApiserver, plural: &str, name: &str, webhooks: Vec<Value>) {
    let kind =
        if plural.starts_with("mutating") { "MutatingWebhookConfiguration" } else { "ValidatingWebhookConfiguration" };
    let configs = api.client.api("admissionregistration.k8s.io", "v1", plural).unwrap();
    let obj = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": name}, "webhooks": webhooks});
    match configs.get(name).await {
        Ok(cur) => {
            let mut obj = obj;
            obj["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
            configs.replace(name, &obj).await.unwrap();
        }
        Err(_) => {
            configs.create(&obj).await.unwrap();
        }
    }
}

/// Retries `probe` until it returns true: a new configuration takes effect once the watch brings it.
async fn until(what: &str, mut probe: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if probe().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never: {what}");
}

async fn send(
    c: &client::Client,
    method: Method,
    path: &str,
    body: Option<(Bytes, &str)>,
) -> client::Result<hyper::Response<hyper::body::Incoming>> {
    c.send_accepting(method, path, "application/json", body).await
}

fn cm(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_mutate_validate_fail_and_warn() {
    let server = WebhookServer::start(&["webhook.default.svc"]).await;
    let api = TestApiserver::start().await;
    let c = &api.client;
    c.api("", "v1", "namespaces")
        .unwrap()
        .create(&json!({"metadata": {"name": "wh", "labels": {"webhooks": "on"}}}))
        .await
        .unwrap();
    server.expose(c).await.unwrap();
    let cms = c.api("", "v1", "configmaps").unwrap().namespaced("wh");

    // A mutating webhook adds a label on create and on update (patch included).
    configuration(
        &api,
        "mutatingwebhookconfigurations",
        "label-adder",
        vec![hook(&server, "add-label.example.com", "/addLabel", &["CREATE", "UPDATE"], &["configmaps"])],
    )
    .await;
    let mut n = 0;
    until("the mutating webhook adds its label", async || {
        n += 1;
        let created = cms.create(&cm(&format!("probe-{n}"), json!({"a": "b"}))).await.unwrap();
        created["metadata"]["labels"]["added"] == "test"
    })
    .await;
    let calls = server.take_calls();
    let review = &calls.last().unwrap().review;
    assert_eq!(review["request"]["operation"], "CREATE");
    assert_eq!(review["request"]["namespace"], "wh");
    assert_eq!(review["request"]["userInfo"]["username"], "kubernetes-admin");
    assert_eq!(review["request"]["object"]["metadata"]["namespace"], "wh");
    let stored = cms.get(&format!("probe-{n}")).await.unwrap();
    assert_eq!(stored["metadata"]["labels"], json!({"a": "b", "added": "test"}));
    // The label removed by a patch comes back: the webhook runs inside the update.
    let patched = cms
        .patch(&format!("probe-{n}"), PatchType::Json, &json!([{"op": "remove", "path": "/metadata/labels/added"}]))
        .await
        .unwrap();
    assert_eq!(patched["metadata"]["labels"]["added"], "test");
    let calls = server.take_calls();
    assert_eq!(calls.last().unwrap().review["request"]["operation"], "UPDATE");
    assert_eq!(calls.last().unwrap().review["request"]["oldObject"]["metadata"]["labels"]["added"], "test");
    // Namespaces the selector leaves out are not sent to the webhook.
    let default_cms = c.api("", "v1", "configmaps").unwrap().namespaced("default");
    let plain = default_cms.create(&cm("untouched", json!({"a": "b"}))).await.unwrap();
    assert!(plain["metadata"]["labels"].get("added").is_none());
    assert!(server.take_calls().is_empty());

    // A validating webhook refuses objects labelled deny=yes, with the webhook's code and message.
    let mut deny = hook(&server, "deny.example.com", "/disallowReason", &["CREATE"], &["configmaps"]);
    deny["objectSelector"] = json!({"matchLabels": {"deny": "yes"}});
    configuration(&api, "validatingwebhookconfigurations", "deny", vec![deny]).await;
    let mut n = 0;
    until("the validating webhook refuses", async || {
        n += 1;
        cms.create(&cm(&format!("denied-{n}"), json!({"deny": "yes"}))).await.is_err()
    })
    .await;
    let err = cms.create(&cm("denied", json!({"deny": "yes"}))).await.unwrap_err();
    assert_eq!(err.code(), Some(403));
    assert!(
        err.to_string().contains("admission webhook \"deny.example.com\" denied the request: you shall not pass"),
        "{err}"
    );
    assert!(cms.get("denied").await.is_err());
    // The mutating webhook ran first (its label is on the object the validating webhook saw).
    let seen = server.take_calls().into_iter().rfind(|c| c.path == "/disallowReason").unwrap();
    assert_eq!(seen.review["request"]["object"]["metadata"]["labels"]["added"], "test");
    cms.create(&cm("allowed", json!({"deny": "no"}))).await.unwrap();

    // Warnings of a validating webhook come back as Warning headers.
    configuration(
        &api,
        "validatingwebhookconfigurations",
        "warn",
        vec![hook(&server, "warn.example.com", "/warn", &["UPDATE"], &["configmaps"])],
    )
    .await;
    let path = "/api/v1/namespaces/wh/configmaps/allowed";
    let mut warnings = Vec::new();
    until("the webhook's warnings come back", async || {
        let body = Bytes::from(json!([{"op": "add", "path": "/data/n", "value": "1"}]).to_string());
        let resp = send(c, Method::PATCH, path, Some((body, "application/json-patch+json"))).await.unwrap();
        assert!(resp.status().is_success());
        warnings = resp.headers().get_all("warning").iter().map(|v| v.to_str().unwrap().to_string()).collect();
        !warnings.is_empty()
    })
    .await;
    assert_eq!(warnings, ["299 - \"a warning from the webhook\"", "299 - \"another one\""]);

    // Dry run: a webhook with side effects refuses it (400), one without is called with dryRun: true.
    let mut some = hook(&server, "side-effects.example.com", "/allow", &["CREATE"], &["secrets"]);
    some["sideEffects"] = json!("Some");
    configuration(&api, "validatingwebhookconfigurations", "side-effects", vec![some]).await;
    let secret = |name: &str| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}});
    let body = |name: &str| Some((Bytes::from(secret(name).to_string()), "application/json"));
    until("the side-effects webhook refuses dry runs", async || {
        let r = send(c, Method::POST, "/api/v1/namespaces/wh/secrets?dryRun=All", body("dry")).await.unwrap();
        r.status() == 400
    })
    .await;
    let r = send(c, Method::POST, "/api/v1/namespaces/wh/secrets?dryRun=All", body("dry")).await.unwrap();
    let status: Value = serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(status["message"], "admission webhook \"side-effects.example.com\" does not support dry run");
    assert_eq!(status["reason"], "BadRequest");
    c.api("", "v1", "secrets").unwrap().namespaced("wh").create(&secret("real")).await.unwrap();
    let r = send(
        c,
        Method::POST,
        "/api/v1/namespaces/wh/configmaps?dryRun=All",
        Some((Bytes::from(cm("dry", json!({"x": "y"})).to_string()), "application/json")),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let dry = server.take_calls().into_iter().rfind(|c| c.path == "/addLabel").unwrap();
    assert_eq!(dry.review["request"]["dryRun"], true);
    assert_eq!(dry.review["request"]["options"]["dryRun"], json!(["All"]));

    // The webhook down: failurePolicy Fail refuses deletes with 500, Ignore lets them through.
    configuration(
        &api,
        "validatingwebhookconfigurations",
        "down",
        vec![hook(&server, "down.example.com", "/allow", &["DELETE"], &["configmaps"])],
    )
    .await;
    until("the delete webhook is called", async || {
        let _ = cms.create(&cm("victim", json!({}))).await;
        let _ = cms.delete("victim", None).await;
        server.take_calls().iter().any(|c| c.path == "/allow")
    })
    .await;
    cms.create(&cm("victim", json!({}))).await.unwrap();
    server.set_down(true);
    let err = cms.delete("victim", None).await.unwrap_err();
    assert_eq!(err.code(), Some(500), "{err}");
    assert!(err.to_string().contains("failed calling webhook \"down.example.com\": failed to call webhook: Post \"https://webhook.default.svc:443/allow?timeout=5s\""), "{err}");
    // The mutating webhook is down too, and Fail by default: creates in `wh` fail now.
    let err = cms.create(&cm("blocked", json!({"a": "b"}))).await.unwrap_err();
    assert_eq!(err.code(), Some(500), "{err}");
    let mut ignore = hook(&server, "down.example.com", "/allow", &["DELETE"], &["configmaps"]);
    ignore["failurePolicy"] = json!("Ignore");
    configuration(&api, "validatingwebhookconfigurations", "down", vec![ignore]).await;
    until("failurePolicy Ignore lets the delete through", async || cms.delete("victim", None).await.is_ok()).await;
    server.set_down(false);

    // The configuration kinds are exempt: a webhook refusing every cluster-scoped write cannot block its own removal.
    let mut all = hook(&server, "deny-all.example.com", "/disallow", &["*"], &["*"]);
    all["rules"] = json!([{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"], "scope": "Cluster"}]);
    configuration(&api, "validatingwebhookconfigurations", "deny-all", vec![all]).await;
    let roles = c.api("rbac.authorization.k8s.io", "v1", "clusterroles").unwrap();
    let mut n = 0;
    until("the deny-all webhook refuses cluster-scoped writes", async || {
        n += 1;
        roles.create(&json!({"metadata": {"name": format!("r{n}")}, "rules": []})).await.is_err()
    })
    .await;
    let vwc = c.api("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations").unwrap();
    vwc.delete("deny-all", None).await.unwrap();
    until("cluster-scoped writes work again", async || {
        n += 1;
        roles.create(&json!({"metadata": {"name": format!("r{n}")}, "rules": []})).await.is_ok()
    })
    .await;
}

#[test]
fn kubectl_shows_denials_and_warnings() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let server = rt.block_on(WebhookServer::start(&["webhook.default.svc"]));
    let s = support::Apiserver::start();
    let dir = s.dir.path();
    let manifest = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: wh\n  labels:\n    webhooks: enabled\n---\n\
         apiVersion: v1\nkind: Service\nmetadata:\n  name: webhook\n  namespace: default\nspec:\n  ports:\n  - port: 443\n---\n\
         apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: webhook\n  namespace: default\nsubsets:\n- addresses:\n  - ip: 127.0.0.1\n  ports:\n  - port: {}\n---\n\
         apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata:\n  name: deny\nwebhooks:\n{}",
        server.port,
        serde_yaml_ng::to_string(&json!([
            {"name": "deny.example.com", "clientConfig": {"service": {"namespace": "default", "name": "webhook", "path": "/disallowReason"}, "caBundle": server.ca_bundle()},
             "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
             "namespaceSelector": {"matchLabels": {"webhooks": "enabled"}}, "objectSelector": {"matchLabels": {"deny": "refuse"}},
             "sideEffects": "None", "admissionReviewVersions": ["v1"]},
            {"name": "warn.example.com", "clientConfig": {"service": {"namespace": "default", "name": "webhook", "path": "/warn"}, "caBundle": server.ca_bundle()},
             "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
             "namespaceSelector": {"matchLabels": {"webhooks": "enabled"}}, "objectSelector": {"matchLabels": {"deny": "accept"}},
             "sideEffects": "None", "admissionReviewVersions": ["v1"]}
        ]))
        .unwrap()
    );
    std::fs::write(dir.join("webhook.yaml"), manifest).unwrap();
    s.ok(&["apply", "-f", dir.join("webhook.yaml").to_str().unwrap()]);
    let cm = |name: &str, deny: &str| {
        let p = dir.join(format!("{name}.yaml"));
        std::fs::write(&p, format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: wh\n  labels:\n    deny: \"{deny}\"\n")).unwrap();
        p
    };
    let mut refused = String::new();
    for i in 0..200 {
        let p = cm(&format!("c{i}"), "refuse");
        let out = s.kubectl(&["create", "-f", p.to_str().unwrap()]);
        if !out.status.success() {
            refused = String::from_utf8_lossy(&out.stderr).to_string();
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(
        refused.contains("admission webhook \"deny.example.com\" denied the request: you shall not pass"),
        "{refused}"
    );
    let p = cm("fine", "accept");
    let out = s.kubectl(&["create", "-f", p.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Warning: a warning from the webhook"), "{stderr}");

    // `kubectl attach -i` to a pod whose attachment a CONNECT webhook refuses shows the webhook's message.
    let attach = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: to-be-attached-pod\n  namespace: wh\nspec:\n  containers:\n  - name: container1\n    image: busybox\n    stdin: true\n---\n\
         apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata:\n  name: deny-attaching-pod\nwebhooks:\n{}",
        serde_yaml_ng::to_string(&json!([
            {"name": "deny-attaching-pod.k8s.io", "clientConfig": {"service": {"namespace": "default", "name": "webhook", "path": "/denySpecificAttachment"}, "caBundle": server.ca_bundle()},
             "rules": [{"operations": ["CONNECT"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/attach"]}],
             "sideEffects": "None", "admissionReviewVersions": ["v1"]}
        ]))
        .unwrap()
    );
    std::fs::write(dir.join("attach.yaml"), attach).unwrap();
    s.ok(&["apply", "-f", dir.join("attach.yaml").to_str().unwrap()]);
    let mut refused = String::new();
    for _ in 0..200 {
        let out = s.kubectl(&["attach", "--namespace=wh", "to-be-attached-pod", "-i", "-c=container1"]);
        refused = String::from_utf8_lossy(&out.stderr).to_string();
        if refused.contains("attaching to pod 'to-be-attached-pod' is not allowed") {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(refused.contains("attaching to pod 'to-be-attached-pod' is not allowed"), "{refused}");
    drop(server);
}

/// Upstream's "should be able to deny attaching pod" (a webhook on CONNECT `pods/attach` refusing by the
/// attach options) and matchPolicy Equivalent on a custom resource with two versions: a mutating webhook whose
/// rule names `v1` is called for a create through `v2`, sees the object as `v1`, and its label is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_admission_and_equivalent_versions() {
    let server = WebhookServer::start(&["webhook.default.svc"]).await;
    let api = TestApiserver::start().await;
    let c = &api.client;
    c.api("", "v1", "namespaces")
        .unwrap()
        .create(&json!({"metadata": {"name": "wh", "labels": {"webhooks": "on"}}}))
        .await
        .unwrap();
    server.expose(c).await.unwrap();
    c.api("", "v1", "pods")
        .unwrap()
        .namespaced("wh")
        .create(&json!({"metadata": {"name": "to-be-attached-pod"},
            "spec": {"containers": [{"name": "container1", "image": "busybox", "stdin": true}]}}))
        .await
        .unwrap();
    configuration(
        &api,
        "validatingwebhookconfigurations",
        "deny-attaching-pod",
        vec![hook(&server, "deny-attaching-pod.k8s.io", "/denySpecificAttachment", &["CONNECT"], &["pods/attach"])],
    )
    .await;
    let attach = "/api/v1/namespaces/wh/pods/to-be-attached-pod/attach?container=container1&stdin=true&stdout=true";
    let mut status = Value::Null;
    // (Until the configuration takes effect, the attach is refused too, with 400 for the pod's missing node.)
    until("the webhook refuses the attach", async || {
        let resp = send(c, Method::POST, attach, None).await.unwrap();
        let code = resp.status();
        status = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap_or_default();
        code == 400 && status["message"].as_str().is_some_and(|m| m.starts_with("admission webhook"))
    })
    .await;
    assert_eq!(status["kind"], "Status");
    assert_eq!(
        status["message"],
        "admission webhook \"deny-attaching-pod.k8s.io\" denied the request: attaching to pod 'to-be-attached-pod' is not allowed"
    );
    let calls = server.take_calls();
    let req = &calls.last().unwrap().review["request"];
    assert_eq!(req["operation"], "CONNECT");
    assert_eq!(req["kind"]["kind"], "PodAttachOptions");
    assert_eq!(req["name"], "to-be-attached-pod");
    assert_eq!(req["userInfo"]["username"], "kubernetes-admin");
    assert_eq!(
        req["object"],
        json!({"kind": "PodAttachOptions", "apiVersion": "v1", "stdin": true, "stdout": true, "container": "container1"})
    );
    // Without stdin the webhook allows it: the request gets past admission (and fails for want of a node).
    let resp = send(
        c,
        Method::POST,
        "/api/v1/namespaces/wh/pods/to-be-attached-pod/attach?container=container1&stdout=true",
        None,
    )
    .await
    .unwrap();
    let status: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(!status["message"].as_str().unwrap().contains("admission webhook"), "{status}");
    assert_eq!(server.take_calls().len(), 1, "the webhook was asked");

    // A CRD served at v1 and v2 (conversion None); a mutating webhook on v1 only, matchPolicy left to its default.
    let crds = c.api("apiextensions.k8s.io", "v1", "customresourcedefinitions").unwrap();
    let version = |name: &str, storage: bool| {
        json!({"name": name, "served": true, "storage": storage, "schema": {"openAPIV3Schema": {"type": "object",
            "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}})
    };
    crds.create(&json!({"metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "widgets", "kind": "Widget"},
                 "versions": [version("v1", true), version("v2", false)]}}))
        .await
        .unwrap();
    let mut label = hook(&server, "label-widgets.example.com", "/addLabel", &["CREATE"], &["widgets"]);
    label["rules"][0]["apiGroups"] = json!(["example.com"]);
    configuration(&api, "mutatingwebhookconfigurations", "label-widgets", vec![label.clone()]).await;
    let widgets = c.api_dynamic("example.com", "v2", "widgets", "Widget", true).namespaced("wh");
    let mut n = 0;
    let mut created = Value::Null;
    until("a widget created through v2 is labelled by the v1 webhook", async || {
        n += 1;
        let w = json!({"apiVersion": "example.com/v2", "kind": "Widget", "metadata": {"name": format!("w{n}"), "labels": {"a": "b"}}, "spec": {"x": 1}});
        match widgets.create(&w).await {
            Ok(o) => {
                created = o;
                created["metadata"]["labels"]["added"] == "test"
            }
            Err(_) => false,
        }
    })
    .await;
    assert_eq!(created["apiVersion"], "example.com/v2");
    let calls = server.take_calls();
    let req = &calls.iter().rfind(|c| c.path == "/addLabel").unwrap().review["request"];
    assert_eq!(req["kind"], json!({"group": "example.com", "version": "v1", "kind": "Widget"}));
    assert_eq!(req["requestKind"], json!({"group": "example.com", "version": "v2", "kind": "Widget"}));
    assert_eq!(req["requestResource"]["version"], "v2");
    assert_eq!(req["object"]["apiVersion"], "example.com/v1");
    // matchPolicy Exact: a create through v2 is no longer sent to it.
    label["matchPolicy"] = json!("Exact");
    configuration(&api, "mutatingwebhookconfigurations", "label-widgets", vec![label]).await;
    until("the Exact webhook leaves v2 writes alone", async || {
        n += 1;
        let w = json!({"apiVersion": "example.com/v2", "kind": "Widget", "metadata": {"name": format!("w{n}")}, "spec": {}});
        let o = widgets.create(&w).await.unwrap();
        o["metadata"].get("labels").is_none()
    })
    .await;
}

/// Upstream's scale REST admits a scale request as an update of the `scale` subresource whose objects are
/// `autoscaling/v1` Scales: a webhook on `deployments/scale` sees `kubectl scale`, may refuse it, and a mutating
/// one's change of `spec.replicas` reaches the Deployment; a webhook on `deployments` alone is not called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_requests_are_admitted_as_scales() {
    let server = WebhookServer::start(&["webhook.default.svc"]).await;
    let api = TestApiserver::start().await;
    let c = &api.client;
    c.api("", "v1", "namespaces")
        .unwrap()
        .create(&json!({"metadata": {"name": "wh", "labels": {"webhooks": "on"}}}))
        .await
        .unwrap();
    server.expose(c).await.unwrap();
    let deployments = c.api("apps", "v1", "deployments").unwrap().namespaced("wh");
    deployments
        .create(&json!({"metadata": {"name": "web"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}))
        .await
        .unwrap();
    let apps_hook = |name: &str, path: &str, resources: &[&str]| {
        let mut h = hook(&server, name, path, &["UPDATE"], resources);
        h["rules"][0]["apiGroups"] = json!(["apps"]);
        h
    };
    configuration(
        &api,
        "validatingwebhookconfigurations",
        "scale",
        vec![
            apps_hook("scale.example.com", "/allow", &["deployments/scale"]),
            apps_hook("parent.example.com", "/disallowReason", &["deployments"]),
        ],
    )
    .await;
    let scale_path = "/apis/apps/v1/namespaces/wh/deployments/web/scale";
    let put = async |replicas: i64| {
        let body = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web", "namespace": "wh"}, "spec": {"replicas": replicas}});
        send(c, Method::PUT, scale_path, Some((Bytes::from(body.to_string()), "application/json"))).await.unwrap()
    };
    let mut replicas = 1;
    until("the scale webhook is called", async || {
        replicas += 1;
        let r = put(replicas).await;
        assert_eq!(r.status(), 200, "the webhook on deployments is not asked about a scale");
        server.take_calls().iter().any(|c| c.path == "/allow")
    })
    .await;
    let r = put(7).await;
    assert_eq!(r.status(), 200);
    let calls = server.take_calls();
    assert_eq!(calls.len(), 1, "only the deployments/scale webhook: {calls:?}");
    let req = &calls[0].review["request"];
    assert_eq!(req["kind"], json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}));
    assert_eq!(req["resource"], json!({"group": "apps", "version": "v1", "resource": "deployments"}));
    assert_eq!(req["subResource"], "scale");
    assert_eq!(req["operation"], "UPDATE");
    assert_eq!((req["object"]["kind"].as_str(), req["object"]["spec"]["replicas"].as_i64()), (Some("Scale"), Some(7)));
    assert_eq!(req["oldObject"]["spec"]["replicas"].as_i64(), Some(replicas));

    // A refusing webhook on the subresource refuses the scale and nothing changes.
    configuration(
        &api,
        "validatingwebhookconfigurations",
        "scale",
        vec![apps_hook("scale.example.com", "/disallowReason", &["deployments/scale"])],
    )
    .await;
    until("the scale is refused", async || put(9).await.status() == 403).await;
    assert_eq!(deployments.get("web").await.unwrap()["spec"]["replicas"], 7);

    // A mutating webhook on the subresource sets the replicas the Deployment gets.
    c.api("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations")
        .unwrap()
        .delete("scale", None)
        .await
        .unwrap();
    configuration(
        &api,
        "mutatingwebhookconfigurations",
        "scale-to-two",
        vec![apps_hook("two.example.com", "/scaleToTwo", &["deployments/scale"])],
    )
    .await;
    until("the mutating webhook sets 2 replicas", async || {
        let r = put(5).await;
        r.status() == 200 && deployments.get("web").await.unwrap()["spec"]["replicas"] == 2
    })
    .await;
}

/// A webhook sees the object as upstream decoded it into the Go types: quantities already canonical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_see_canonical_quantities() {
    let server = WebhookServer::start(&["webhook.default.svc"]).await;
    let api = TestApiserver::start().await;
    let c = &api.client;
    let ns = json!({"metadata": {"name": "wh", "labels": {"webhooks": "on"}}});
    c.api("", "v1", "namespaces").unwrap().create(&ns).await.unwrap();
    server.expose(c).await.unwrap();
    let hooks = vec![hook(&server, "noop.example.com", "/noop", &["CREATE"], &["pods"])];
    configuration(&api, "mutatingwebhookconfigurations", "noop", hooks).await;
    let pods = c.api("", "v1", "pods").unwrap().namespaced("wh");
    let mut n = 0;
    until("the webhook is called", async || {
        n += 1;
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("p{n}")},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "1000m", "memory": "0.5Gi"}}}]}});
        pods.create(&pod).await.unwrap();
        !server.take_calls().is_empty()
    })
    .await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "seen"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "1000m", "memory": "0.5Gi"}}}]}});
    pods.create(&pod).await.unwrap();
    let calls = server.take_calls();
    let object = &calls.last().unwrap().review["request"]["object"];
    assert_eq!(object["metadata"]["name"], "seen");
    assert_eq!(object["spec"]["containers"][0]["resources"]["requests"], json!({"cpu": "1", "memory": "512Mi"}));
    api.stop().await;
}
