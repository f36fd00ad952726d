//! CustomResourceDefinitions served as first-class resources, as upstream's apiextensions-apiserver integration
//! tests check them (`test/integration/basic_test.go`, `registration_test.go`, `subresources_test.go`,
//! `finalization_test.go`, `naming_controller_test.go`): names accepted and Established, CRUD, list and watch of
//! namespaced and cluster-scoped custom resources, discovery, the status subresource, name conflicts, and deletion
//! of a CRD removing its instances first.

use std::time::Duration;

use api_types::patch::PatchType;
use client::{Api, Client, ListParams};
use http::Method;
use kube_apiserver::testing::TestApiserver;
use serde_json::{Value, json};

fn crd(plural: &str, kind: &str, scope: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.example.com")},
        "spec": {
            "group": "example.com", "scope": scope,
            "names": {"plural": plural, "kind": kind, "shortNames": [format!("{}x", &plural[..2])], "categories": ["all"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}}}]
        }
    })
}

/// Creates a CRD and waits until it is Established and its resource answers.
async fn establish(client: &Client, crd: &Value) -> Value {
    let crds = client.api("apiextensions.k8s.io", "v1", "customresourcedefinitions").unwrap();
    crds.create(crd).await.unwrap();
    let name = crd["metadata"]["name"].as_str().unwrap();
    let plural = crd["spec"]["names"]["plural"].as_str().unwrap();
    for _ in 0..100 {
        let got = crds.get(name).await.unwrap();
        let established = got["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Established" && c["status"] == "True"));
        let listed = client.request(Method::GET, &format!("/apis/example.com/v1/{plural}"), None).await.is_ok();
        if established && listed {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("CRD {name} never became Established");
}

/// A GET with the given Accept: the status code and the body as JSON.
async fn get_as(client: &Client, path: &str, accept: &str) -> (u16, Value) {
    use http_body_util::BodyExt;
    let resp = client.send_accepting(Method::GET, path, accept, None).await.unwrap();
    let code = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn widgets(client: &Client, ns: &str) -> Api {
    client.api_dynamic("example.com", "v1", "widgets", "Widget", true).namespaced(ns)
}

fn widget(name: &str) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name, "labels": {"app": name}},
           "spec": {"size": 1, "nested": {"a": "b"}}, "status": {"phase": "ignored-on-create"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_is_established_with_upstream_status() {
    let api = TestApiserver::start().await;
    let got = establish(&api.client, &crd("widgets", "Widget", "Namespaced")).await;
    assert_eq!(got["spec"]["names"]["singular"], "widget", "defaulted from the kind");
    assert_eq!(got["spec"]["names"]["listKind"], "WidgetList");
    assert_eq!(got["spec"]["conversion"]["strategy"], "None");
    assert_eq!(got["status"]["storedVersions"], json!(["v1"]));
    let accepted = &got["status"]["acceptedNames"];
    assert_eq!((accepted["plural"].clone(), accepted["kind"].clone()), (json!("widgets"), json!("Widget")));
    assert_eq!(accepted["shortNames"], json!(["wix"]));
    let conds = got["status"]["conditions"].as_array().unwrap();
    let names = conds.iter().find(|c| c["type"] == "NamesAccepted").unwrap();
    assert_eq!((names["status"].clone(), names["reason"].clone()), (json!("True"), json!("NoConflicts")));
    let est = conds.iter().find(|c| c["type"] == "Established").unwrap();
    assert_eq!(est["reason"], "InitialNamesAccepted");
    assert_eq!(est["message"], "the initial names have been accepted");
    assert!(est["lastTransitionTime"].is_string());

    // Invalid definitions are 422s naming the field.
    let crds = api.client.api("apiextensions.k8s.io", "v1", "customresourcedefinitions").unwrap();
    let mut bad = crd("gadgets", "Gadget", "Namespaced");
    bad["metadata"]["name"] = json!("gadget.example.com");
    let err = crds.create(&bad).await.unwrap_err();
    assert_eq!(err.code(), Some(422), "{err}");
    assert!(
        err.to_string().contains(
            "metadata.name: Invalid value: \"gadget.example.com\": must be spec.names.plural+\".\"+spec.group"
        ),
        "{err}"
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_custom_resources_crud_list_watch() {
    let api = TestApiserver::start().await;
    establish(&api.client, &crd("widgets", "Widget", "Namespaced")).await;
    api.namespace("other").await;
    let w = widgets(&api.client, "default");
    let created = w.create(&widget("w1")).await.unwrap();
    assert_eq!(created["apiVersion"], "example.com/v1");
    assert_eq!(created["metadata"]["namespace"], "default");
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(created["metadata"]["uid"].is_string() && created["metadata"]["resourceVersion"].is_string());
    assert!(created.get("status").is_none(), "status is dropped on create when /status is a subresource");
    assert_eq!(created["spec"]["nested"]["a"], "b", "unknown fields are preserved");
    // The same name in another namespace is another object.
    widgets(&api.client, "other").create(&widget("w1")).await.unwrap();
    let err = w.create(&widget("w1")).await.unwrap_err();
    assert_eq!(err.code(), Some(409), "{err}");
    assert!(err.to_string().contains("widgets.example.com \"w1\" already exists"), "{err}");
    w.create(&widget("w2")).await.unwrap();

    // Lists: per namespace, across namespaces, by label.
    let list = w.list(&ListParams::default()).await.unwrap();
    assert_eq!(list["kind"], "WidgetList");
    assert_eq!(list["apiVersion"], "example.com/v1");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let all = api.client.api_dynamic("example.com", "v1", "widgets", "Widget", true);
    assert_eq!(all.list(&ListParams::default()).await.unwrap()["items"].as_array().unwrap().len(), 3);
    let sel = ListParams { label_selector: Some("app=w2".into()), ..Default::default() };
    let picked = w.list(&sel).await.unwrap();
    assert_eq!(
        picked["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].clone()).collect::<Vec<_>>(),
        [json!("w2")]
    );
    let by_name = ListParams { field_selector: Some("metadata.name=w1".into()), ..Default::default() };
    assert_eq!(all.list(&by_name).await.unwrap()["items"].as_array().unwrap().len(), 2);
    let page = ListParams { limit: Some(1), ..Default::default() };
    let first = all.list(&page).await.unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    assert!(first["metadata"]["continue"].is_string(), "paging works on custom resources");

    // Watch from the list's resourceVersion: MODIFIED and DELETED arrive.
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let mut events = w.watch(&ListParams { resource_version: Some(rv), ..Default::default() }).await.unwrap();

    // Update, merge patch and JSON patch; spec changes bump the generation.
    let mut cur = w.get("w1").await.unwrap();
    cur["spec"]["size"] = json!(2);
    let updated = w.replace("w1", &cur).await.unwrap();
    assert_eq!(updated["metadata"]["generation"], 2);
    let patched = w.patch("w1", PatchType::Merge, &json!({"metadata": {"labels": {"extra": "yes"}}})).await.unwrap();
    assert_eq!(patched["metadata"]["generation"], 2, "metadata changes keep the generation");
    assert_eq!(patched["metadata"]["labels"]["extra"], "yes");
    let patched =
        w.patch("w1", PatchType::Json, &json!([{"op": "replace", "path": "/spec/size", "value": 3}])).await.unwrap();
    assert_eq!(patched["spec"]["size"], 3);
    // Strategic merge patch has no meaning without Go types: 415 as upstream.
    let err = w.patch("w1", PatchType::StrategicMerge, &json!({"spec": {"size": 4}})).await.unwrap_err();
    assert_eq!(err.code(), Some(415), "{err}");
    assert!(err.to_string().contains("application/merge-patch+json"), "{err}");

    w.delete("w2", None).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.unwrap().unwrap().unwrap();
        let (ty, obj) = match ev {
            client::WatchEvent::Added(o) => ("ADDED", o),
            client::WatchEvent::Modified(o) => ("MODIFIED", o),
            client::WatchEvent::Deleted(o) => ("DELETED", o),
            other => panic!("unexpected event {other:?}"),
        };
        seen.push((ty.to_string(), obj["metadata"]["name"].as_str().unwrap().to_string()));
    }
    assert_eq!(
        seen,
        [
            ("MODIFIED".to_string(), "w1".to_string()),
            ("MODIFIED".into(), "w1".into()),
            ("MODIFIED".into(), "w1".into()),
            ("DELETED".into(), "w2".into())
        ]
    );
    let err = w.get("w2").await.unwrap_err();
    assert_eq!(err.code(), Some(404));
    assert!(err.to_string().contains("widgets.example.com \"w2\" not found"), "{err}");

    // A namespaced resource has no cluster-level item paths; an unserved version is 404.
    let err = api
        .client
        .request(
            Method::POST,
            "/apis/example.com/v1/widgets",
            Some((serde_json::to_vec(&widget("x")).unwrap().into(), "application/json")),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(404), "{err}");
    let err =
        api.client.request(Method::GET, "/apis/example.com/v2/namespaces/default/widgets", None).await.unwrap_err();
    assert_eq!(err.code(), Some(404), "{err}");
    // A kind that is not the resource's is refused.
    let mut wrong = widget("w9");
    wrong["kind"] = json!("Gadget");
    assert_eq!(w.create(&wrong).await.unwrap_err().code(), Some(400));
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_scoped_custom_resources() {
    let api = TestApiserver::start().await;
    establish(&api.client, &crd("clusterwidgets", "ClusterWidget", "Cluster")).await;
    let cw = api.client.api_dynamic("example.com", "v1", "clusterwidgets", "ClusterWidget", false);
    let obj =
        json!({"apiVersion": "example.com/v1", "kind": "ClusterWidget", "metadata": {"name": "c1"}, "spec": {"x": 1}});
    let created = cw.create(&obj).await.unwrap();
    assert!(created["metadata"].get("namespace").is_none());
    assert_eq!(cw.get("c1").await.unwrap()["spec"]["x"], 1);
    // Under a namespace the resource is not found.
    let err = api
        .client
        .request(Method::GET, "/apis/example.com/v1/namespaces/default/clusterwidgets/c1", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(404), "{err}");
    cw.delete("c1", None).await.unwrap();
    assert_eq!(cw.get("c1").await.unwrap_err().code(), Some(404));
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_lists_custom_resources() {
    let api = TestApiserver::start().await;
    establish(&api.client, &crd("widgets", "Widget", "Namespaced")).await;
    let groups = api.client.request(Method::GET, "/apis", None).await.unwrap();
    let g = groups["groups"].as_array().unwrap().iter().find(|g| g["name"] == "example.com").unwrap().clone();
    assert_eq!(g["preferredVersion"], json!({"groupVersion": "example.com/v1", "version": "v1"}));
    let group = api.client.request(Method::GET, "/apis/example.com", None).await.unwrap();
    assert_eq!(group["kind"], "APIGroup");
    let list = api.client.request(Method::GET, "/apis/example.com/v1", None).await.unwrap();
    assert_eq!(list["groupVersion"], "example.com/v1");
    let rs = list["resources"].as_array().unwrap();
    let w = rs.iter().find(|r| r["name"] == "widgets").unwrap();
    assert_eq!(w["singularName"], "widget");
    assert_eq!(w["namespaced"], true);
    assert_eq!(w["kind"], "Widget");
    assert_eq!(w["shortNames"], json!(["wix"]));
    assert_eq!(w["categories"], json!(["all"]));
    assert_eq!(w["verbs"], json!(["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"]));
    let status = rs.iter().find(|r| r["name"] == "widgets/status").unwrap();
    assert_eq!(status["verbs"], json!(["get", "patch", "update"]));
    // Aggregated discovery (kubectl 1.30+).
    let (_, body) =
        get_as(&api.client, "/apis", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList").await;
    let g = body["items"].as_array().unwrap().iter().find(|g| g["metadata"]["name"] == "example.com").unwrap().clone();
    assert_eq!(g["versions"][0]["resources"][0]["resource"], "widgets");
    assert_eq!(g["versions"][0]["resources"][0]["subresources"][0]["subresource"], "status");
    // OpenAPI v3 lists the group-version with the CRD's schema.
    let index = api.client.request(Method::GET, "/openapi/v3", None).await.unwrap();
    let url = index["paths"]["apis/example.com/v1"]["serverRelativeURL"].as_str().unwrap().to_string();
    let doc = api.client.request(Method::GET, &url, None).await.unwrap();
    assert!(doc["components"]["schemas"]["com.example.v1.Widget"].is_object(), "{doc}");
    // Tables: Name and Age.
    widgets(&api.client, "default").create(&widget("w1")).await.unwrap();
    let (_, table) = get_as(
        &api.client,
        "/apis/example.com/v1/namespaces/default/widgets",
        "application/json;as=Table;v=v1;g=meta.k8s.io",
    )
    .await;
    let cols: Vec<&str> =
        table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(cols, ["Name", "Age"]);
    assert_eq!(table["rows"][0]["cells"][0], "w1");
    // No protobuf for custom objects: a protobuf-only Accept is 406.
    let (code, status) = get_as(
        &api.client,
        "/apis/example.com/v1/namespaces/default/widgets/w1",
        "application/vnd.kubernetes.protobuf",
    )
    .await;
    assert_eq!(code, 406, "{status}");
    // client-go's default Accept falls back to JSON.
    let (code, obj) = get_as(
        &api.client,
        "/apis/example.com/v1/namespaces/default/widgets/w1",
        "application/vnd.kubernetes.protobuf, application/json",
    )
    .await;
    assert_eq!((code, obj["kind"].clone()), (200, json!("Widget")));
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_subresource_of_custom_resources() {
    let api = TestApiserver::start().await;
    establish(&api.client, &crd("widgets", "Widget", "Namespaced")).await;
    let w = widgets(&api.client, "default");
    w.create(&widget("w1")).await.unwrap();
    // /status takes only the status: spec and metadata changes sent with it are dropped (upstream's CR status strategy).
    let patch = json!({"metadata": {"labels": {"from": "status"}}, "spec": {"size": 9}, "status": {"phase": "Ready"}});
    let out = w.patch_status("w1", PatchType::Merge, &patch).await.unwrap();
    assert_eq!(out["status"]["phase"], "Ready");
    assert_eq!(out["spec"]["size"], 1);
    assert!(out["metadata"]["labels"].get("from").is_none(), "{out}");
    assert_eq!(out["metadata"]["generation"], 1, "status writes keep the generation");
    // The main resource keeps the stored status.
    let mut cur = w.get("w1").await.unwrap();
    cur["status"] = json!({"phase": "Hacked"});
    cur["spec"]["size"] = json!(5);
    let out = w.replace("w1", &cur).await.unwrap();
    assert_eq!(out["status"]["phase"], "Ready");
    assert_eq!(out["spec"]["size"], 5);
    assert_eq!(out["metadata"]["generation"], 2);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_names_are_not_accepted() {
    let api = TestApiserver::start().await;
    establish(&api.client, &crd("widgets", "Widget", "Namespaced")).await;
    let crds = api.client.api("apiextensions.k8s.io", "v1", "customresourcedefinitions").unwrap();
    // Same kind, another plural.
    crds.create(&crd("gizmos", "Widget", "Namespaced")).await.unwrap();
    let mut cond = Value::Null;
    for _ in 0..100 {
        let got = crds.get("gizmos.example.com").await.unwrap();
        if let Some(c) =
            got["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "NamesAccepted"))
        {
            cond = c.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cond["status"], "False", "{cond}");
    // Kind and listKind both conflict; as upstream, the last check's reason is the one recorded.
    assert_eq!(cond["reason"], "ListKindConflict");
    assert_eq!(cond["message"], "\"WidgetList\" is already in use");
    let got = crds.get("gizmos.example.com").await.unwrap();
    let est =
        got["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Established").unwrap().clone();
    assert_eq!((est["status"].clone(), est["reason"].clone()), (json!("False"), json!("NotAccepted")));
    // Not served.
    let err = api.client.request(Method::GET, "/apis/example.com/v1/gizmos", None).await.unwrap_err();
    assert_eq!(err.code(), Some(404), "{err}");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_crd_deletes_its_instances_first() {
    let api = TestApiserver::start().await;
    establish(&api.client, &crd("widgets", "Widget", "Namespaced")).await;
    let w = widgets(&api.client, "default");
    w.create(&widget("plain")).await.unwrap();
    let mut held = widget("held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    w.create(&held).await.unwrap();
    let crds = api.client.api("apiextensions.k8s.io", "v1", "customresourcedefinitions").unwrap();
    let pending = crds.delete("widgets.example.com", None).await.unwrap();
    assert!(pending["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(pending["metadata"]["finalizers"], json!(["customresourcecleanup.apiextensions.k8s.io"]));
    // The finalizer deletes the instances; the held one waits for its own finalizer, and so does the CRD.
    let mut terminating = Value::Null;
    for _ in 0..100 {
        let got = crds.get("widgets.example.com").await.unwrap();
        let plain_gone = w.get("plain").await.is_err();
        let held_deleting =
            w.get("held").await.map(|h| h["metadata"]["deletionTimestamp"].is_string()).unwrap_or(false);
        let cond = got["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Terminating"))
            .cloned();
        if plain_gone && held_deleting && cond.as_ref().is_some_and(|c| c["reason"] == "InstanceDeletionInProgress") {
            terminating = cond.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(terminating["status"], "True", "{terminating}");
    assert_eq!(terminating["message"], "CustomResource deletion is in progress");
    // No new instances while the CRD terminates.
    let err = w.create(&widget("late")).await.unwrap_err();
    assert_eq!(err.code(), Some(405), "{err}");
    assert!(err.to_string().contains("create not allowed while custom resource definition is terminating"), "{err}");
    // Releasing the last instance lets the CRD go, and its resource with it.
    w.patch("held", PatchType::Merge, &json!({"metadata": {"finalizers": null}})).await.unwrap();
    let mut gone = false;
    for _ in 0..300 {
        if crds.get("widgets.example.com").await.is_err_and(|e| e.code() == Some(404)) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the CRD is deleted once its instances are");
    let mut unserved = false;
    for _ in 0..100 {
        if api
            .client
            .request(Method::GET, "/apis/example.com/v1/widgets", None)
            .await
            .is_err_and(|e| e.code() == Some(404))
        {
            unserved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(unserved);
    // Re-created, it starts empty.
    establish(&api.client, &crd("widgets", "Widget", "Namespaced")).await;
    assert!(w.list(&ListParams::default()).await.unwrap()["items"].as_array().unwrap().is_empty());
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_subresource_follows_the_crd_paths() {
    let api = TestApiserver::start().await;
    let mut def = crd("widgets", "Widget", "Namespaced");
    def["spec"]["versions"][0]["subresources"]["scale"] = json!({
        "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.labelSelector"});
    establish(&api.client, &def).await;
    let list = api.client.request(Method::GET, "/apis/example.com/v1", None).await.unwrap();
    let scale = list["resources"].as_array().unwrap().iter().find(|r| r["name"] == "widgets/scale").unwrap().clone();
    assert_eq!(
        (scale["group"].clone(), scale["version"].clone(), scale["kind"].clone()),
        (json!("autoscaling"), json!("v1"), json!("Scale"))
    );
    let w = widgets(&api.client, "default");
    let mut obj = widget("w1");
    obj["spec"]["replicas"] = json!(2);
    w.create(&obj).await.unwrap();
    w.patch_status("w1", PatchType::Merge, &json!({"status": {"replicas": 1, "labelSelector": "app=w1"}}))
        .await
        .unwrap();
    let path = "/apis/example.com/v1/namespaces/default/widgets/w1/scale";
    let got = api.client.request(Method::GET, path, None).await.unwrap();
    assert_eq!((got["kind"].clone(), got["apiVersion"].clone()), (json!("Scale"), json!("autoscaling/v1")));
    assert_eq!(got["spec"]["replicas"], 2);
    assert_eq!(got["status"], json!({"replicas": 1, "selector": "app=w1"}));
    let mut wanted = got.clone();
    wanted["spec"]["replicas"] = json!(5);
    let body = serde_json::to_vec(&wanted).unwrap();
    let put = api.client.request(Method::PUT, path, Some((body.into(), "application/json"))).await.unwrap();
    assert_eq!(put["spec"]["replicas"], 5);
    let cur = w.get("w1").await.unwrap();
    assert_eq!(cur["spec"]["replicas"], 5);
    assert_eq!(cur["spec"]["size"], 1, "the rest of the spec is kept");
    assert_eq!(cur["metadata"]["generation"], 2);
    // A negative count is a 422 from the Scale.
    wanted["spec"]["replicas"] = json!(-1);
    wanted["metadata"].as_object_mut().unwrap().remove("resourceVersion");
    let body = serde_json::to_vec(&wanted).unwrap();
    let err = api.client.request(Method::PUT, path, Some((body.into(), "application/json"))).await.unwrap_err();
    assert_eq!(err.code(), Some(422), "{err}");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_without_conversion_share_objects() {
    let api = TestApiserver::start().await;
    let mut def = crd("widgets", "Widget", "Namespaced");
    let v1 = def["spec"]["versions"][0].clone();
    let mut beta = v1.clone();
    beta["name"] = json!("v1beta1");
    beta["storage"] = json!(false);
    let mut alpha = beta.clone();
    alpha["name"] = json!("v1alpha1");
    alpha["served"] = json!(false);
    def["spec"]["versions"] = json!([beta, v1, alpha]);
    establish(&api.client, &def).await;
    let groups = api.client.request(Method::GET, "/apis/example.com", None).await.unwrap();
    assert_eq!(
        groups["versions"],
        json!([{"groupVersion": "example.com/v1", "version": "v1"}, {"groupVersion": "example.com/v1beta1", "version": "v1beta1"}]),
        "served versions only, kube-aware order"
    );
    let beta_api = api.client.api_dynamic("example.com", "v1beta1", "widgets", "Widget", true).namespaced("default");
    let mut obj = widget("w1");
    obj["apiVersion"] = json!("example.com/v1beta1");
    assert_eq!(beta_api.create(&obj).await.unwrap()["apiVersion"], "example.com/v1beta1");
    let w = widgets(&api.client, "default");
    assert_eq!(w.get("w1").await.unwrap()["apiVersion"], "example.com/v1");
    let list = w.list(&ListParams::default()).await.unwrap();
    assert_eq!(list["items"][0]["apiVersion"], "example.com/v1");
    w.patch("w1", PatchType::Merge, &json!({"spec": {"size": 7}})).await.unwrap();
    let back = beta_api.get("w1").await.unwrap();
    assert_eq!((back["apiVersion"].clone(), back["spec"]["size"].clone()), (json!("example.com/v1beta1"), json!(7)));
    let err = api
        .client
        .request(Method::GET, "/apis/example.com/v1alpha1/namespaces/default/widgets", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(404), "an unserved version is not routed");
    api.stop().await;
}

fn structural_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "gadgets", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["image"], "properties": {
                        "replicas": {"type": "integer", "minimum": 1},
                        "image": {"type": "string", "pattern": "^[a-z]+$"},
                        "mode": {"type": "string", "enum": ["fast", "slow"]},
                        "size": {"type": "integer", "default": 3},
                        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                    "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}}}},
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                    {"name": "Mode", "type": "string", "jsonPath": ".spec.mode", "priority": 1},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]}]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structural_schemas_prune_default_and_validate() {
    let api = TestApiserver::start().await;
    establish(&api.client, &structural_crd()).await;
    let gadgets = api.client.api_dynamic("example.com", "v1", "gadgets", "Gadget", true).namespaced("default");
    let gadget = |name: &str, spec: Value| json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": name}, "spec": spec});

    // Unknown fields are pruned (kept under x-kubernetes-preserve-unknown-fields); defaults are applied.
    let created = gadgets
        .create(&gadget("g1", json!({"image": "nginx", "replicas": 2, "extra": 1, "free": {"anything": [1]}})))
        .await
        .unwrap();
    assert!(created["spec"].get("extra").is_none(), "{created}");
    assert_eq!(created["spec"]["free"]["anything"], json!([1]));
    assert_eq!(created["spec"]["size"], 3, "defaulted");
    // fieldValidation=Strict refuses unknown fields instead.
    let body = serde_json::to_vec(&gadget("g2", json!({"image": "nginx", "extra": 1}))).unwrap();
    let err = api
        .client
        .request(
            Method::POST,
            "/apis/example.com/v1/namespaces/default/gadgets?fieldValidation=Strict",
            Some((body.into(), "application/json")),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(400), "{err}");
    assert!(err.to_string().contains("strict decoding error: unknown field \"spec.extra\""), "{err}");

    // Schema violations are 422s with upstream's messages.
    let err = gadgets.create(&gadget("bad", json!({"image": "nginx", "replicas": "two"}))).await.unwrap_err();
    assert_eq!(err.code(), Some(422), "{err}");
    assert!(
        err.to_string().contains(
            "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""
        ),
        "{err}"
    );
    let err =
        gadgets.create(&gadget("bad", json!({"image": "nginx", "replicas": 0, "mode": "warp"}))).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"),
        "{msg}"
    );
    assert!(msg.contains("spec.mode: Unsupported value: \"warp\": supported values: \"fast\", \"slow\""), "{msg}");
    let err = gadgets.create(&gadget("bad", json!({"replicas": 1}))).await.unwrap_err();
    assert!(err.to_string().contains("spec.image: Required value"), "{err}");
    let err = gadgets.create(&gadget("bad", json!({"image": "Nginx"}))).await.unwrap_err();
    assert!(err.to_string().contains("spec.image in body should match '^[a-z]+$'"), "{err}");
    let err = gadgets.create(&gadget("bad", json!({"image": "x", "tags": ["a", "a"]}))).await.unwrap_err();
    assert!(err.to_string().contains("spec.tags[1]: Duplicate value: \"a\""), "{err}");
    // A patch that breaks the schema changes nothing.
    let err = gadgets.patch("g1", PatchType::Merge, &json!({"spec": {"replicas": -1}})).await.unwrap_err();
    assert_eq!(err.code(), Some(422), "{err}");
    assert_eq!(gadgets.get("g1").await.unwrap()["spec"]["replicas"], 2);
    // Status writes are pruned too.
    let out =
        gadgets.patch_status("g1", PatchType::Merge, &json!({"status": {"ready": true, "bogus": 1}})).await.unwrap();
    assert_eq!(out["status"], json!({"ready": true}));

    // Tables use the printer columns.
    let (_, table) = get_as(
        &api.client,
        "/apis/example.com/v1/namespaces/default/gadgets",
        "application/json;as=Table;v=v1;g=meta.k8s.io",
    )
    .await;
    let cols: Vec<(String, i64)> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["priority"].as_i64().unwrap()))
        .collect();
    assert_eq!(cols, [("Name".into(), 0), ("Replicas".into(), 0), ("Mode".into(), 1), ("Age".into(), 0)]);
    let cells = &table["rows"][0]["cells"];
    assert_eq!((cells[0].clone(), cells[1].clone(), cells[2].clone()), (json!("g1"), json!(2), Value::Null));
    assert!(cells[3].as_str().unwrap().ends_with('s'), "an age: {cells}");

    // /openapi/v2 (client-go's OpenAPISchema, Helm) carries the kind too.
    let v2 = api.client.request(Method::GET, "/openapi/v2", None).await.unwrap();
    let def = &v2["definitions"]["com.example.v1.Gadget"];
    assert_eq!(def["properties"]["spec"]["properties"]["replicas"]["type"], "integer", "{def}");
    assert_eq!(def["x-kubernetes-group-version-kind"][0]["kind"], "Gadget");
    assert!(v2["paths"]["/apis/example.com/v1/namespaces/{namespace}/gadgets/{name}"].is_object());
    assert!(v2["definitions"]["io.k8s.api.core.v1.Pod"].is_object(), "the built-in kinds stay");

    // A schema that is not structural is refused.
    let crds = api.client.api("apiextensions.k8s.io", "v1", "customresourcedefinitions").unwrap();
    let mut bad = structural_crd();
    bad["metadata"]["name"] = json!("things.example.com");
    bad["spec"]["names"] = json!({"plural": "things", "kind": "Thing"});
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["untyped"] =
        json!({"description": "no type"});
    let err = crds.create(&bad).await.unwrap_err();
    assert_eq!(err.code(), Some(422), "{err}");
    assert!(
        err.to_string().contains("spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[untyped].type: Required value: must not be empty for specified object fields"),
        "{err}"
    );
    api.stop().await;
}

/// Upstream's `selectableFieldFixture` (test/integration/fieldselector_test.go): cluster-scoped shirts with four
/// selectable fields of each allowed type.
fn shirts_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "shirts.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster",
            "names": {"plural": "shirts", "singular": "shirt", "kind": "Shirt", "listKind": "ShirtList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
                    "color": {"type": "string"}, "quantity": {"type": "integer"},
                    "size": {"type": "string", "enum": ["S", "M", "L", "XL"]}, "branded": {"type": "boolean"}}}}}},
                "selectableFields": [{"jsonPath": ".spec.color"}, {"jsonPath": ".spec.quantity"},
                    {"jsonPath": ".spec.size"}, {"jsonPath": ".spec.branded"}]}]}
    })
}

fn shirt(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Shirt", "metadata": {"name": name}, "spec": spec})
}

/// Upstream's TestSelectableFields (list, watch, deletecollection) and TestFieldSelectorOpenAPI, one version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectable_fields_select_custom_resources() {
    let api = TestApiserver::start().await;
    establish(&api.client, &shirts_crd()).await;
    let shirts = api.client.api_dynamic("example.com", "v1", "shirts", "Shirt", false);
    let instances = [
        ("shirt1", json!({"color": "blue", "quantity": 2, "size": "S", "branded": true})),
        ("shirt2", json!({"color": "blue", "quantity": 3, "size": "M", "branded": false})),
        ("shirt3", json!({"color": "green", "quantity": 2, "branded": false})),
    ];
    for (name, spec) in &instances {
        shirts.create(&shirt(name, spec.clone())).await.unwrap();
    }
    let names = |list: &Value| -> Vec<String> {
        let mut n: Vec<String> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    let by = |selector: &str| ListParams { field_selector: Some(selector.to_string()), ..Default::default() };
    for (selector, want) in [
        ("spec.color=blue", vec!["shirt1", "shirt2"]),
        ("spec.quantity=2", vec!["shirt1", "shirt3"]),
        ("spec.size=M", vec!["shirt2"]),
        ("spec.branded=false", vec!["shirt2", "shirt3"]),
        ("spec.color=blue,spec.quantity=2", vec!["shirt1"]),
        ("spec.color=blue,spec.branded=false", vec!["shirt2"]),
        ("spec.size=", vec!["shirt3"]),
        ("spec.color!=blue", vec!["shirt3"]),
        ("metadata.name=shirt2", vec!["shirt2"]),
    ] {
        assert_eq!(names(&shirts.list(&by(selector)).await.unwrap()), want, "{selector}");
    }
    let err = shirts.list(&by("spec.nosuchfield=xyz")).await.unwrap_err();
    assert_eq!(err.code(), Some(400), "{err}");
    assert!(err.to_string().contains("field label not supported: spec.nosuchfield"), "{err}");

    // A watch sees objects leave the selection: shirt2 updated to another color, shirt1 deleted.
    let rv =
        shirts.list(&ListParams::default()).await.unwrap()["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let mut events = shirts.watch(&ListParams { resource_version: Some(rv), ..by("spec.color=blue") }).await.unwrap();
    let mut s2 = shirts.get("shirt2").await.unwrap();
    s2["spec"]["color"] = json!("red");
    shirts.replace("shirt2", &s2).await.unwrap();
    shirts.delete("shirt1", None).await.unwrap();
    shirts.create(&shirt("shirt4", json!({"color": "green"}))).await.unwrap();
    let mut removed = Vec::new();
    while removed.len() < 2 {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.expect("watch event").unwrap();
        match ev.unwrap() {
            client::WatchEvent::Deleted(o) => removed.push(o["metadata"]["name"].as_str().unwrap().to_string()),
            other => panic!("only removals from the selection: {other:?}"),
        }
    }
    assert_eq!(removed, ["shirt2", "shirt1"]);

    // deletecollection with a field selector removes only the selected ones.
    let path = "/apis/example.com/v1/shirts?fieldSelector=spec.quantity%3D2";
    api.client.request(Method::DELETE, path, None).await.unwrap();
    assert_eq!(names(&shirts.list(&ListParams::default()).await.unwrap()), ["shirt2", "shirt4"]);

    // OpenAPI v3 and v2 carry the fields (upstream's x-kubernetes-selectable-fields).
    let (code, v3) = get_as(&api.client, "/openapi/v3/apis/example.com/v1", "application/json").await;
    assert_eq!(code, 200);
    let want = json!([{"fieldPath": "spec.color"}, {"fieldPath": "spec.quantity"}, {"fieldPath": "spec.size"}, {"fieldPath": "spec.branded"}]);
    assert_eq!(v3["components"]["schemas"]["com.example.v1.Shirt"]["x-kubernetes-selectable-fields"], want);
    let (code, v2) = get_as(&api.client, "/openapi/v2", "application/json").await;
    assert_eq!(code, 200);
    assert_eq!(v2["definitions"]["com.example.v1.Shirt"]["x-kubernetes-selectable-fields"], want);

    // A CRD naming a field the schema lacks is refused with upstream's message.
    let mut bad = shirts_crd();
    bad["metadata"]["name"] = json!("coats.example.com");
    bad["spec"]["names"] = json!({"plural": "coats", "kind": "Coat"});
    bad["spec"]["versions"][0]["selectableFields"] = json!([{"jsonPath": ".spec.nosuch"}]);
    let crds = api.client.api("apiextensions.k8s.io", "v1", "customresourcedefinitions").unwrap();
    let err = crds.create(&bad).await.unwrap_err();
    assert_eq!(err.code(), Some(422), "{err}");
    assert!(
        err.to_string().contains(
            "spec.versions[0].selectableFields[0].jsonPath: Invalid value: \".spec.nosuch\": is an invalid path: does not refer to a valid field"
        ),
        "{err}"
    );
}

/// A two-version CRD (v1 stored) whose versions convert through `server`'s `path`, as upstream's conversion e2e
/// test sets it up.
fn converted_crd(
    plural: &str,
    kind: &str,
    server: &kube_apiserver::admission::webhook::testserver::WebhookServer,
    path: &str,
) -> Value {
    let schema = json!({"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}});
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.example.com")},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": plural, "kind": kind},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": schema},
                         {"name": "v2", "served": true, "storage": false, "schema": schema}],
            "conversion": {"strategy": "Webhook", "webhook": {
                "clientConfig": {"url": server.url(path), "caBundle": server.ca_bundle()},
                "conversionReviewVersions": ["v1", "v1beta1"]}}}
    })
}

/// Upstream's CustomResourceConversionWebhook e2e tests ("should be able to convert from CR v1 to CR v2", "should be
/// able to convert a non homogeneous list of CRs") and the webhook converter's checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversion_webhooks_convert_between_versions() {
    use kube_apiserver::admission::webhook::testserver::WebhookServer;
    let api = TestApiserver::start().await;
    api.namespace("conv").await;
    let hook = WebhookServer::start(&["127.0.0.1"]).await;
    establish(&api.client, &converted_crd("hostports", "HostPort", &hook, "/convert")).await;
    let v1 = api.client.api_dynamic("example.com", "v1", "hostports", "HostPort", true).namespaced("conv");
    let v2 = api.client.api_dynamic("example.com", "v2", "hostports", "HostPort", true).namespaced("conv");
    let created = v1
        .create(&json!({"apiVersion": "example.com/v1", "kind": "HostPort", "metadata": {"name": "cr1"},
            "spec": {"hostPort": "localhost:8080"}}))
        .await
        .unwrap();

    // v1 -> v2 on a get.
    let got = v2.get("cr1").await.unwrap();
    assert_eq!(got["apiVersion"], "example.com/v2");
    assert_eq!(got["spec"], json!({"host": "localhost", "port": "8080"}));
    assert_eq!(got["metadata"]["uid"], created["metadata"]["uid"]);
    let calls = hook.take_calls();
    assert_eq!(calls.len(), 1, "one review per read");
    assert_eq!(calls[0].review["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(calls[0].review["request"]["desiredAPIVersion"], "example.com/v2");
    // The stored version itself needs no call.
    assert_eq!(v1.get("cr1").await.unwrap()["spec"]["hostPort"], "localhost:8080");
    assert!(hook.take_calls().is_empty());

    // A list holding both versions, read as each (one review for the objects of the other version).
    v2.create(&json!({"apiVersion": "example.com/v2", "kind": "HostPort", "metadata": {"name": "cr2"},
        "spec": {"host": "example", "port": "9090"}}))
        .await
        .unwrap();
    let as_v1 = v1.list(&ListParams::default()).await.unwrap();
    let ports: Vec<&Value> = as_v1["items"].as_array().unwrap().iter().map(|i| &i["spec"]["hostPort"]).collect();
    assert_eq!(ports, [&json!("localhost:8080"), &json!("example:9090")]);
    assert!(as_v1["items"].as_array().unwrap().iter().all(|i| i["apiVersion"] == "example.com/v1"));
    let as_v2 = v2.list(&ListParams::default()).await.unwrap();
    let hosts: Vec<&Value> = as_v2["items"].as_array().unwrap().iter().map(|i| &i["spec"]["host"]).collect();
    assert_eq!(hosts, [&json!("localhost"), &json!("example")]);
    assert_eq!(hook.take_calls().len(), 2);

    // A watch in v2 sees a change made through v1 in its own version.
    let rv = as_v2["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let mut events = v2.watch(&ListParams { resource_version: Some(rv), ..Default::default() }).await.unwrap();
    v1.patch("cr1", PatchType::Merge, &json!({"spec": {"hostPort": "localhost:8081"}})).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.unwrap().unwrap().unwrap();
    match ev {
        client::WatchEvent::Modified(o) => {
            assert_eq!(o["apiVersion"], "example.com/v2");
            assert_eq!(o["spec"], json!({"host": "localhost", "port": "8081"}));
        }
        other => panic!("expected MODIFIED: {other:?}"),
    }

    // A patch through v2 applies to the object as v2 shows it.
    let patched = v2.patch("cr1", PatchType::Merge, &json!({"spec": {"port": "9999"}})).await.unwrap();
    assert_eq!(patched["spec"], json!({"host": "localhost", "port": "9999"}));
    assert_eq!(v1.get("cr1").await.unwrap()["spec"]["hostPort"], "localhost:9999");

    // A failing converter: the read fails with upstream's message, the stored object is untouched.
    establish(&api.client, &converted_crd("refusals", "Refusal", &hook, "/convertFail")).await;
    let r1 = api.client.api_dynamic("example.com", "v1", "refusals", "Refusal", true).namespaced("conv");
    let r2 = api.client.api_dynamic("example.com", "v2", "refusals", "Refusal", true).namespaced("conv");
    r1.create(&json!({"apiVersion": "example.com/v1", "kind": "Refusal", "metadata": {"name": "r"}, "spec": {}}))
        .await
        .unwrap();
    let err = r2.get("r").await.unwrap_err();
    assert_eq!(err.code(), Some(500), "{err}");
    assert!(
        err.to_string().contains("conversion webhook for example.com/v1, Kind=Refusal failed: the converter refuses"),
        "{err}"
    );
    assert!(r1.get("r").await.is_ok());

    // Webhook conversion needs the review versions.
    let mut bad = converted_crd("badconvs", "BadConv", &hook, "/convert");
    bad["spec"]["conversion"]["webhook"]["conversionReviewVersions"] = json!(["v3"]);
    let crds = api.client.api("apiextensions.k8s.io", "v1", "customresourcedefinitions").unwrap();
    let err = crds.create(&bad).await.unwrap_err();
    assert_eq!(err.code(), Some(422), "{err}");
    assert!(
        err.to_string().contains(
            "spec.conversion.webhook.conversionReviewVersions: Invalid value: [\"v3\"]: must include at least one of v1, v1beta1"
        ),
        "{err}"
    );
}

/// Upstream's TestCustomResourceDefaulting (defaulting on read): a default added to the schema shows on objects
/// stored before it, in gets, lists and watch events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_apply_when_reading() {
    let api = TestApiserver::start().await;
    api.namespace("defaults").await;
    let mut crd = crd("gadgets", "Gadget", "Namespaced");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}}});
    establish(&api.client, &crd).await;
    let gadgets = api.client.api_dynamic("example.com", "v1", "gadgets", "Gadget", true).namespaced("defaults");
    gadgets
        .create(
            &json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g1"}, "spec": {"a": "x"}}),
        )
        .await
        .unwrap();
    assert!(gadgets.get("g1").await.unwrap()["spec"].get("b").is_none());

    let crds = api.client.api("apiextensions.k8s.io", "v1", "customresourcedefinitions").unwrap();
    let mut cur = crds.get("gadgets.example.com").await.unwrap();
    cur["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["b"]["default"] =
        json!("B");
    crds.replace("gadgets.example.com", &cur).await.unwrap();
    let mut got = Value::Null;
    for _ in 0..100 {
        got = gadgets.get("g1").await.unwrap();
        if got["spec"]["b"] == "B" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got["spec"], json!({"a": "x", "b": "B"}), "the new default on read");
    let list = gadgets.list(&ListParams::default()).await.unwrap();
    assert_eq!(list["items"][0]["spec"]["b"], "B");
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let mut events = gadgets.watch(&ListParams { resource_version: Some(rv), ..Default::default() }).await.unwrap();
    gadgets.delete("g1", None).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.unwrap().unwrap().unwrap();
    match ev {
        client::WatchEvent::Deleted(o) => assert_eq!(o["spec"]["b"], "B"),
        other => panic!("expected DELETED: {other:?}"),
    }
}
