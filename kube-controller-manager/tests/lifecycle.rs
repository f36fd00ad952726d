mod support;

use api_types::patch::PatchType;
use serde_json::{Value, json};
use support::Cluster;

const TRIGGER: &str = "endpoints.kubernetes.io/last-change-trigger-time";

fn owner_ref(owner: &Value, block: bool) -> Value {
    json!({"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "blockOwnerDeletion": block})
}

async fn configmap(c: &Cluster, name: &str, owners: &[Value], finalizers: &[&str]) -> Value {
    let api = c.api("", "v1", "configmaps", "default");
    api.create(&json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "ownerReferences": owners, "finalizers": finalizers}}))
        .await
        .unwrap()
}

async fn gone(c: &Cluster, api: &client::Api, name: &str, what: &str) {
    c.until(
        30,
        what,
        || async { api.get(name).await.err().filter(|e| e.code() == Some(404)).map(|_| json!({})) },
        |_| true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collector_background_foreground_and_orphan() {
    let c = Cluster::start(&["garbagecollector"], &[]).await;
    let cms = c.api("", "v1", "configmaps", "default");

    // Background: dependents of a deleted owner go; an object with another live owner only loses the reference.
    let owner = configmap(&c, "owner", &[], &[]).await;
    let other = configmap(&c, "other", &[], &[]).await;
    configmap(&c, "dep-1", &[owner_ref(&owner, false)], &[]).await;
    configmap(&c, "dep-2", &[owner_ref(&owner, true), owner_ref(&other, false)], &[]).await;
    let grandchild = cms.get("dep-1").await.unwrap();
    configmap(&c, "grandchild", &[owner_ref(&grandchild, false)], &[]).await;
    // A live owner keeps its dependents.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(cms.get("dep-1").await.is_ok());
    cms.delete("owner", None).await.unwrap();
    gone(&c, &cms, "dep-1", "dep-1 collected").await;
    gone(&c, &cms, "grandchild", "the grandchild collected").await;
    let dep2 = c
        .until(
            30,
            "dep-2 to keep only its live owner",
            || async { cms.get("dep-2").await.ok() },
            |d| d["metadata"]["ownerReferences"].as_array().is_some_and(|r| r.len() == 1),
        )
        .await;
    assert_eq!(dep2["metadata"]["ownerReferences"][0]["name"], "other");

    // Foreground: the owner stays (with the finalizer) until its blocking dependents are gone.
    let owner = configmap(&c, "fg-owner", &[], &[]).await;
    configmap(&c, "fg-dep", &[owner_ref(&owner, true)], &["test.k8s.io/hold"]).await;
    configmap(&c, "fg-free", &[owner_ref(&owner, false)], &[]).await;
    cms.delete("fg-owner", Some(&json!({"propagationPolicy": "Foreground"}))).await.unwrap();
    gone(&c, &cms, "fg-free", "the non-blocking dependent deleted").await;
    c.until(
        30,
        "the blocking dependent being deleted",
        || async { cms.get("fg-dep").await.ok() },
        |d| d["metadata"]["deletionTimestamp"].is_string(),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let o = cms.get("fg-owner").await.expect("the owner waits for its blocking dependent");
    assert_eq!(o["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    cms.patch("fg-dep", PatchType::Merge, &json!({"metadata": {"finalizers": []}})).await.unwrap();
    gone(&c, &cms, "fg-dep", "the blocking dependent gone").await;
    gone(&c, &cms, "fg-owner", "the owner gone after its dependents").await;

    // Orphan: dependents stay, without the reference; the owner goes.
    let owner = configmap(&c, "or-owner", &[], &[]).await;
    configmap(&c, "or-dep", &[owner_ref(&owner, true)], &[]).await;
    cms.delete("or-owner", Some(&json!({"propagationPolicy": "Orphan"}))).await.unwrap();
    gone(&c, &cms, "or-owner", "the orphaning owner gone").await;
    let dep = cms.get("or-dep").await.expect("the orphan stays");
    assert_eq!(dep["metadata"]["ownerReferences"].as_array().map_or(0, Vec::len), 0, "{dep:#}");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(cms.get("or-dep").await.is_ok());

    // Pods owned by a ReplicaSet object go with it.
    let rs = c
        .create(
            "apps",
            "v1",
            "replicasets",
            "metadata: {name: web}
spec:
  replicas: 0
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: nginx}]}",
        )
        .await;
    let pods = c.api("", "v1", "pods", "default");
    pods.create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "labels": {"app": "web"},
        "ownerReferences": [owner_ref(&rs, true)]}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}))
        .await
        .unwrap();
    c.api("apps", "v1", "replicasets", "default").delete("web", None).await.unwrap();
    gone(&c, &pods, "web-1", "the replica set's pod collected").await;
    c.stop().await;
}

/// Upstream's conformance test "should not be blocked by dependency circle": three objects owning each other in a
/// circle, every reference with `blockOwnerDeletion`; deleting one in the foreground deletes all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collector_follows_custom_resources() {
    let c = Cluster::start(&["garbagecollector"], &[]).await;
    // Let the garbage collector's first discovery pass run before the CRD exists, as in a real cluster.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    c.create(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "metadata: {name: widgets.example.com}\nspec: {group: example.com, scope: Namespaced, names: {plural: widgets, kind: Widget},\n  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}]}",
    )
    .await;
    let widgets = c.client().api_dynamic("example.com", "v1", "widgets", "Widget", true).namespaced("default");
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "owner"}});
    let owner = c.until(20, "the CRD served", || async { widgets.create(&w).await.ok() }, |_| true).await;
    // A ConfigMap owned by the custom resource, and a custom resource owned by a ConfigMap.
    let cms = c.api("", "v1", "configmaps", "default");
    configmap(&c, "child", &[owner_ref(&owner, false)], &[]).await;
    let parent = configmap(&c, "parent", &[], &[]).await;
    let mut dependent = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "dependent"}});
    dependent["metadata"]["ownerReferences"] = json!([owner_ref(&parent, false)]);
    widgets.create(&dependent).await.unwrap();
    // The garbage collector finds the new resource through discovery (an owner of an unknown kind makes it look
    // again at once; otherwise its 30 s resync), then reconciles the objects that name owners of that kind.
    widgets.delete("owner", None).await.unwrap();
    c.until(
        60,
        "the ConfigMap of a deleted custom resource collected",
        || async { cms.get("child").await.err().filter(|e| e.code() == Some(404)).map(|_| json!({})) },
        |_| true,
    )
    .await;
    cms.delete("parent", None).await.unwrap();
    gone(&c, &widgets, "dependent", "the custom resource of a deleted ConfigMap collected").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collector_is_not_blocked_by_a_dependency_circle() {
    let c = Cluster::start(&["garbagecollector"], &[]).await;
    let cms = c.api("", "v1", "configmaps", "default");
    let mut created = Vec::new();
    for name in ["cm1", "cm2", "cm3"] {
        created.push(configmap(&c, name, &[], &[]).await);
    }
    // cm1 is owned by cm3, cm2 by cm1, cm3 by cm2.
    for (dependent, owner) in [(0, 2), (1, 0), (2, 1)] {
        let name = created[dependent]["metadata"]["name"].as_str().unwrap().to_string();
        let mut r = owner_ref(&created[owner], true);
        r["controller"] = json!(true);
        let patched = cms.patch(&name, PatchType::Merge, &json!({"metadata": {"ownerReferences": [r]}})).await.unwrap();
        assert_eq!(patched["metadata"]["ownerReferences"][0]["blockOwnerDeletion"], true);
    }
    let uid = created[0]["metadata"]["uid"].clone();
    cms.delete("cm1", Some(&json!({"propagationPolicy": "Foreground", "preconditions": {"uid": uid}}))).await.unwrap();
    for name in ["cm1", "cm2", "cm3"] {
        gone(&c, &cms, name, &format!("{name} deleted despite the circle")).await;
    }
    let left = cms.list(&Default::default()).await.unwrap();
    let names: Vec<&str> =
        left["items"].as_array().unwrap().iter().filter_map(|i| i["metadata"]["name"].as_str()).collect();
    assert!(!names.iter().any(|n| n.starts_with("cm")), "{names:?}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_empties_it_then_removes_it() {
    let c = Cluster::start(&["namespace"], &[]).await;
    c.create("", "v1", "namespaces", "metadata: {name: doomed}").await;
    c.create("", "v1", "configmaps", "metadata: {name: a, namespace: doomed}").await;
    c.create("", "v1", "secrets", "metadata: {name: s, namespace: doomed}").await;
    c.create("", "v1", "configmaps", "metadata: {name: held, namespace: doomed, finalizers: [test.k8s.io/hold]}").await;
    c.create("", "v1", "pods", "metadata: {name: p, namespace: doomed}\nspec: {containers: [{name: c, image: nginx}]}")
        .await;
    // A custom resource, found through discovery.
    c.create(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "metadata: {name: widgets.example.com}\nspec: {group: example.com, scope: Namespaced, names: {plural: widgets, kind: Widget},\n  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}]}",
    )
    .await;
    let widgets = c.client().api_dynamic("example.com", "v1", "widgets", "Widget", true).namespaced("doomed");
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
    c.until(20, "the CRD served", || async { widgets.create(&widget).await.ok() }, |_| true).await;
    let nss = c.api("", "v1", "namespaces", "");
    nss.delete("doomed", None).await.unwrap();
    // The content goes; the object with a finalizer stays and the namespace says why it waits.
    let ns = c
        .until(
            30,
            "the finalizers-remaining condition",
            || async { nss.get("doomed").await.ok() },
            |ns| {
                ns["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter().any(|c| c["type"] == "NamespaceFinalizersRemaining" && c["status"] == "True")
                })
            },
        )
        .await;
    assert_eq!(ns["status"]["phase"], "Terminating");
    let conds = ns["status"]["conditions"].as_array().unwrap();
    let get = |ty: &str| conds.iter().find(|c| c["type"] == ty).unwrap().clone();
    assert_eq!(
        get("NamespaceFinalizersRemaining")["message"],
        "Some finalizers are remaining: test.k8s.io/hold in 1 resource instances"
    );
    assert_eq!(
        get("NamespaceContentRemaining")["message"],
        "Some resources are remaining: configmaps. has 1 resource instances"
    );
    assert_eq!(get("NamespaceDeletionContentFailure")["status"], "False");
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    let cms = c.api("", "v1", "configmaps", "doomed");
    assert_eq!(cms.get("a").await.err().and_then(|e| e.code()), Some(404));
    assert_eq!(c.api("", "v1", "pods", "doomed").get("p").await.err().and_then(|e| e.code()), Some(404));
    assert_eq!(c.api("", "v1", "secrets", "doomed").get("s").await.err().and_then(|e| e.code()), Some(404));
    assert_eq!(widgets.get("w").await.err().and_then(|e| e.code()), Some(404), "custom resources are emptied too");
    assert_eq!(get("NamespaceDeletionDiscoveryFailure")["reason"], "ResourcesDiscovered");
    // Once the last object goes, the namespace is finalized and disappears.
    cms.patch("held", PatchType::Merge, &json!({"metadata": {"finalizers": []}})).await.unwrap();
    gone(&c, &nss, "doomed", "the namespace gone").await;
    c.stop().await;
}

/// Plays the kubelet: the pod runs with an IP, Ready or not.
async fn set_pod_status(c: &Cluster, name: &str, ip: &str, ready: bool) {
    let status = if ready { "True" } else { "False" };
    let now = "2026-01-01T00:00:00Z";
    c.api("", "v1", "pods", "default")
        .patch_status(
            name,
            PatchType::Merge,
            &json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": status, "lastTransitionTime": now}]}}),
        )
        .await
        .unwrap();
}

const WEB_POD: &str = "metadata: {name: NAME, labels: {app: web}}
spec:
  nodeName: node-1
  containers: [{name: c, image: nginx, ports: [{name: http, containerPort: 8080}]}]";

const WEB_SERVICE: &str = "metadata: {name: web, labels: {tier: front}}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_pod_readiness() {
    let c = Cluster::start(&["endpoint"], &[]).await;
    c.create("", "v1", "services", WEB_SERVICE).await;
    // A service without a selector: its Endpoints are the user's.
    c.create("", "v1", "services", "metadata: {name: manual}\nspec: {ports: [{port: 80}]}").await;
    let eps = c.api("", "v1", "endpoints", "default");
    let manual = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "manual"},
        "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80, "protocol": "TCP"}]}]});
    eps.create(&manual).await.unwrap();
    c.create("", "v1", "pods", &WEB_POD.replace("NAME", "web-1")).await;
    c.create("", "v1", "pods", &WEB_POD.replace("NAME", "web-2")).await;
    c.create(
        "",
        "v1",
        "pods",
        "metadata: {name: other, labels: {app: other}}\nspec: {containers: [{name: c, image: x}]}",
    )
    .await;
    let ep = c.until(20, "the endpoints", || async { eps.get("web").await.ok() }, |_| true).await;
    assert_eq!(ep["metadata"]["labels"]["tier"], "front");
    assert!(ep["metadata"]["annotations"][TRIGGER].is_string(), "{ep:#}");
    set_pod_status(&c, "web-1", "10.244.0.11", false).await;
    set_pod_status(&c, "web-2", "10.244.0.12", true).await;
    let ep = c
        .until(
            20,
            "one ready and one not-ready address",
            || async { eps.get("web").await.ok() },
            |e| e["subsets"][0]["notReadyAddresses"].is_array() && e["subsets"][0]["addresses"].is_array(),
        )
        .await;
    let subset = &ep["subsets"][0];
    assert_eq!(subset["addresses"][0]["ip"], "10.244.0.12");
    assert_eq!(subset["addresses"][0]["nodeName"], "node-1");
    assert_eq!(subset["addresses"][0]["targetRef"]["kind"], "Pod");
    assert_eq!(subset["addresses"][0]["targetRef"]["name"], "web-2");
    assert_eq!(subset["notReadyAddresses"][0]["ip"], "10.244.0.11");
    assert_eq!(subset["ports"], json!([{"name": "http", "port": 8080, "protocol": "TCP"}]));
    set_pod_status(&c, "web-1", "10.244.0.11", true).await;
    c.until(
        20,
        "both addresses ready",
        || async { eps.get("web").await.ok() },
        |e| {
            e["subsets"][0]["addresses"].as_array().is_some_and(|a| a.len() == 2)
                && e["subsets"][0]["notReadyAddresses"].is_null()
        },
    )
    .await;
    // Settled: no further writes.
    let settled = eps.get("web").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(eps.get("web").await.unwrap()["metadata"]["resourceVersion"], settled["metadata"]["resourceVersion"]);
    // Deleted Endpoints come back; a deleted service takes its Endpoints along.
    eps.delete("web", None).await.unwrap();
    c.until(20, "the endpoints recreated", || async { eps.get("web").await.ok() }, |e| e["subsets"].is_array()).await;
    assert_eq!(eps.get("manual").await.unwrap()["subsets"], manual["subsets"]);
    c.api("", "v1", "services", "default").delete("web", None).await.unwrap();
    gone(&c, &eps, "web", "the endpoints of the deleted service").await;
    c.stop().await;
}

/// Endpoints the controller does not manage (of a service without a selector, or of no service at all) are the
/// user's: created, updated and patched as upstream's conformance test "should test the lifecycle of an Endpoint"
/// does, they stay as written; the Endpoints of a selector-less service go with the service (upstream's
/// `syncService` deletes the Endpoints of a service that is gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_without_a_selector_or_a_service_are_left_as_written() {
    let c = Cluster::start(&["endpoint"], &[]).await;
    let eps = c.api("", "v1", "endpoints", "default");
    // The controller is up once it wrote a selected service's Endpoints.
    c.create("", "v1", "services", WEB_SERVICE).await;
    c.until(20, "the controller running", || async { eps.get("web").await.ok() }, |_| true).await;
    c.create("", "v1", "services", "metadata: {name: manual}\nspec: {ports: [{name: http, port: 80}]}").await;

    let mut written = Vec::new();
    for name in ["manual", "testservice"] {
        let ep = json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "labels": {"test-endpoint-static": "true"}},
            "subsets": [{"addresses": [{"ip": "10.0.0.24"}], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}]});
        let created = eps.create(&ep).await.unwrap();
        // Updated with a new label...
        let mut update = created.clone();
        update["metadata"]["labels"]["test-service"] = json!("updated");
        let updated = eps.replace(name, &update).await.unwrap();
        assert_eq!(updated["metadata"]["labels"]["test-service"], "updated");
        // ... then patched with a new address and port.
        let patch = json!({"metadata": {"labels": {"test-service": "patched"}},
            "subsets": [{"addresses": [{"ip": "10.0.0.25"}], "ports": [{"name": "http-test", "port": 8080}]}]});
        let patched = eps.patch(name, PatchType::StrategicMerge, &patch).await.unwrap();
        assert_eq!(patched["subsets"][0]["addresses"][0]["ip"], "10.0.0.25");
        written.push(patched);
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    for w in &written {
        let name = w["metadata"]["name"].as_str().unwrap();
        let now = eps.get(name).await.unwrap_or_else(|e| panic!("{name} deleted by the controller: {e}"));
        assert_eq!(now["metadata"]["resourceVersion"], w["metadata"]["resourceVersion"], "{name} rewritten: {now:#}");
        assert_eq!(now["metadata"]["labels"]["test-service"], "patched");
        assert_eq!(now["subsets"][0]["addresses"][0]["ip"], "10.0.0.25");
        assert_eq!(now["subsets"][0]["ports"][0]["name"], "http-test");
        assert_eq!(now["subsets"][0]["ports"][0]["port"], 8080);
    }
    // The user deletes the service-less ones by label (the conformance test's deletecollection).
    let params = client::ListParams { label_selector: Some("test-endpoint-static=true".into()), ..Default::default() };
    assert_eq!(eps.list(&params).await.unwrap()["items"].as_array().map_or(0, Vec::len), 2);
    eps.delete("testservice", None).await.unwrap();
    gone(&c, &eps, "testservice", "the user's deletion").await;
    // The selector-less service's Endpoints go with the service.
    c.api("", "v1", "services", "default").delete("manual", None).await.unwrap();
    gone(&c, &eps, "manual", "the Endpoints of the deleted selector-less service").await;
    c.stop().await;
}

async fn managed_slices(c: &Cluster, svc: &str) -> Option<Vec<Value>> {
    let list = c
        .api("discovery.k8s.io", "v1", "endpointslices", "default")
        .list(&client::ListParams {
            label_selector: Some(format!(
                "kubernetes.io/service-name={svc},endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io"
            )),
            ..Default::default()
        })
        .await
        .ok()?;
    list["items"].as_array().cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_slices_follow_pod_readiness_and_update_in_place() {
    let c = Cluster::start(&["endpointslice"], &["--max-endpoints-per-slice=2"]).await;
    let svc = c.create("", "v1", "services", WEB_SERVICE).await;
    // No pods yet: one placeholder slice.
    let slices = c
        .until(
            20,
            "a placeholder slice",
            || async { managed_slices(&c, "web").await.map(Value::from) },
            |s| s.as_array().is_some_and(|a| a.len() == 1),
        )
        .await;
    let placeholder = &slices[0];
    assert_eq!(placeholder["metadata"]["generateName"], "web-");
    assert_eq!(placeholder["metadata"]["ownerReferences"][0]["uid"], svc["metadata"]["uid"]);
    assert_eq!(placeholder["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(placeholder["metadata"]["labels"]["tier"], "front");
    assert_eq!(placeholder["endpoints"].as_array().map_or(0, Vec::len), 0);
    for i in 1..=3 {
        c.create("", "v1", "pods", &WEB_POD.replace("NAME", &format!("web-{i}"))).await;
    }
    set_pod_status(&c, "web-1", "10.244.0.11", true).await;
    set_pod_status(&c, "web-2", "10.244.0.12", false).await;
    set_pod_status(&c, "web-3", "10.244.0.13", true).await;
    let all_endpoints = |slices: &Value| -> Vec<Value> {
        slices
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    let slices = c
        .until(
            20,
            "three endpoints in slices of at most two",
            || async { managed_slices(&c, "web").await.map(Value::from) },
            |s| {
                all_endpoints(s).len() == 3
                    && s.as_array()
                        .is_some_and(|a| a.iter().all(|s| s["endpoints"].as_array().is_some_and(|e| !e.is_empty())))
            },
        )
        .await;
    let slices = slices.as_array().unwrap();
    assert_eq!(slices.len(), 2, "{slices:#?}");
    for s in slices {
        assert_eq!(s["addressType"], "IPv4");
        assert_eq!(s["ports"], json!([{"name": "http", "port": 8080, "protocol": "TCP"}]));
        assert!(s["endpoints"].as_array().unwrap().len() <= 2);
    }
    let by_ip = |slices: &Value, ip: &str| {
        all_endpoints(slices)
            .into_iter()
            .find(|e| e["addresses"][0] == ip)
            .unwrap_or_else(|| panic!("{ip} in {slices:#}"))
    };
    let slices = Value::from(slices.clone());
    let web2 = by_ip(&slices, "10.244.0.12");
    assert_eq!(web2["conditions"], json!({"ready": false, "serving": false, "terminating": false}));
    assert_eq!(web2["nodeName"], "node-1");
    assert_eq!(web2["targetRef"]["name"], "web-2");
    assert_eq!(by_ip(&slices, "10.244.0.11")["conditions"]["ready"], true);
    // web-2 turns ready: its slice is updated in place (same name), nothing is recreated.
    let names = |s: &Value| {
        let mut n: Vec<String> =
            s.as_array().into_iter().flatten().map(|s| s["metadata"]["name"].as_str().unwrap().to_string()).collect();
        n.sort();
        n
    };
    let before = names(&slices);
    set_pod_status(&c, "web-2", "10.244.0.12", true).await;
    let after = c
        .until(
            20,
            "web-2 ready in its slice",
            || async { managed_slices(&c, "web").await.map(Value::from) },
            |s| all_endpoints(s).iter().any(|e| e["addresses"][0] == "10.244.0.12" && e["conditions"]["ready"] == true),
        )
        .await;
    assert_eq!(names(&after), before);
    // Settled: no further writes.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let settled = Value::from(managed_slices(&c, "web").await.unwrap());
    let rvs =
        |s: &Value| s.as_array().unwrap().iter().map(|s| s["metadata"]["resourceVersion"].clone()).collect::<Vec<_>>();
    assert_eq!(rvs(&settled), rvs(&after));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podgc_keeps_at_most_the_threshold_of_terminated_pods() {
    let c = Cluster::start(&["podgc"], &["--terminated-pod-gc-threshold=3"]).await;
    let pods = c.api("", "v1", "pods", "default");
    for i in 1..=5 {
        let name = format!("done-{i}");
        c.create(
            "",
            "v1",
            "pods",
            &format!("metadata: {{name: {name}}}\nspec: {{containers: [{{name: c, image: x}}]}}"),
        )
        .await;
        let phase = if i % 2 == 0 { "Failed" } else { "Succeeded" };
        pods.patch_status(&name, PatchType::Merge, &json!({"status": {"phase": phase}})).await.unwrap();
    }
    c.create("", "v1", "pods", "metadata: {name: running}\nspec: {containers: [{name: c, image: x}]}").await;
    pods.patch_status("running", PatchType::Merge, &json!({"status": {"phase": "Running"}})).await.unwrap();
    let names = || async {
        let list = pods.list(&Default::default()).await.ok()?;
        let mut n: Vec<String> = list["items"]
            .as_array()?
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect();
        n.sort();
        Some(json!(n))
    };
    // The two oldest terminated pods go (the check runs every 20 s); the running pod stays.
    c.until(45, "three terminated pods left", names, |n| n.as_array().is_some_and(|a| a.len() == 4)).await;
    assert_eq!(names().await.unwrap(), json!(["done-3", "done-4", "done-5", "running"]));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_after_finished_deletes_a_finished_job_and_its_pods() {
    let c = Cluster::start(&["ttl-after-finished", "garbagecollector"], &[]).await;
    let spec = "
  template:
    spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}";
    let job = c
        .create("batch", "v1", "jobs", &format!("metadata: {{name: short}}\nspec:\n  ttlSecondsAfterFinished: 3{spec}"))
        .await;
    c.create("batch", "v1", "jobs", &format!("metadata: {{name: no-ttl}}\nspec:{spec}")).await;
    c.create("batch", "v1", "jobs", &format!("metadata: {{name: running}}\nspec:\n  ttlSecondsAfterFinished: 0{spec}"))
        .await;
    let pods = c.api("", "v1", "pods", "default");
    pods.create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "short-pod",
        "ownerReferences": [owner_ref(&job, true)]}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}))
        .await
        .unwrap();
    let jobs = c.api("batch", "v1", "jobs", "default");
    let now = jiff::Timestamp::now().round(jiff::Unit::Second).unwrap().to_string();
    let complete = json!({"status": {"conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": now}],
        "completionTime": now, "startTime": now, "succeeded": 1}});
    jobs.patch_status("short", PatchType::Merge, &complete).await.unwrap();
    jobs.patch_status("no-ttl", PatchType::Merge, &complete).await.unwrap();
    // Not before its TTL.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(jobs.get("short").await.is_ok(), "deleted before its TTL");
    gone(&c, &jobs, "short", "the finished job deleted after its TTL").await;
    gone(&c, &pods, "short-pod", "the job's pod deleted with it").await;
    assert!(jobs.get("no-ttl").await.is_ok());
    assert!(jobs.get("running").await.is_ok());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podgc_deletes_pods_of_nodes_that_are_gone_after_the_quarantine() {
    let c = Cluster::start(&["podgc"], &[]).await;
    c.create("", "v1", "nodes", "metadata: {name: here}").await;
    let pods = c.api("", "v1", "pods", "default");
    for (name, node) in [("on-gone", "gone"), ("on-here", "here")] {
        c.create(
            "",
            "v1",
            "pods",
            &format!("metadata: {{name: {name}}}\nspec: {{nodeName: {node}, containers: [{{name: c, image: x}}]}}"),
        )
        .await;
        pods.patch_status(name, PatchType::Merge, &json!({"status": {"phase": "Running"}})).await.unwrap();
    }
    // Not before the 40 s quarantine.
    tokio::time::sleep(std::time::Duration::from_secs(25)).await;
    assert!(pods.get("on-gone").await.is_ok(), "deleted before the quarantine ended");
    c.until(
        60,
        "the pod of the missing node deleted",
        || async { pods.get("on-gone").await.err().filter(|e| e.code() == Some(404)).map(|_| json!({})) },
        |_| true,
    )
    .await;
    assert!(pods.get("on-here").await.is_ok());
    c.stop().await;
}
