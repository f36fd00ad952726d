//! Server-side apply and managedFields end to end, as upstream's `test/integration/apiserver/apply/apply_test.go`
//! (TestApplyAlsoCreates, TestApplyUpdateApplyConflictForced, TestApplyRequiresFieldManager,
//! TestClearManagedFieldsWithMergePatch, TestUpgradeClientSideToServerSideApply, TestApplyManagedFields,
//! TestNoOpUpdateSameResourceVersion, status_test.go, apply_crd_test.go) and the real `/usr/bin/kubectl`
//! (`apply --server-side`, two managers conflicting, `--force-conflicts`, client-side then server-side apply,
//! `get --show-managed-fields`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use kube_apiserver::testing::TestApiserver;
use serde_json::{Value, json};

const APPLY: &str = "application/apply-patch+yaml";

/// A kubeconfig for the test apiserver's admin.
fn kubeconfig(api: &TestApiserver) -> PathBuf {
    let d = api.dir.path();
    let write = |name: &str, pem: &Option<Vec<u8>>| {
        let p = d.join(name);
        std::fs::write(&p, pem.as_ref().unwrap()).unwrap();
        p.display().to_string()
    };
    let ca = write("kc-ca.crt", &api.config.ca_pem);
    let cert = write("kc-admin.crt", &api.config.client_cert_pem);
    let key = write("kc-admin.key", &api.config.client_key_pem);
    let path = d.join("kubeconfig");
    let kc = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {}\n    certificate-authority: {ca}\nusers:\n- name: admin\n  user:\n    client-certificate: {cert}\n    client-key: {key}\ncontexts:\n- name: t\n  context:\n    cluster: t\n    user: admin\n    namespace: default\ncurrent-context: t\n",
        api.config.server
    );
    std::fs::write(&path, kc).unwrap();
    path
}

struct Kubectl {
    kubeconfig: PathBuf,
    dir: PathBuf,
}

impl Kubectl {
    fn new(api: &TestApiserver) -> Self {
        Kubectl { kubeconfig: kubeconfig(api), dir: api.dir.path().to_path_buf() }
    }

    /// Runs kubectl (off the async runtime's worker threads): (success, stdout, stderr).
    async fn run(&self, args: &[&str], stdin_file: Option<(&str, &str)>) -> (bool, String, String) {
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if let Some((name, content)) = stdin_file {
            let p = self.dir.join(name);
            std::fs::write(&p, content).unwrap();
            args.push("-f".into());
            args.push(p.display().to_string());
        }
        let kc = self.kubeconfig.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("/usr/bin/kubectl").arg("--kubeconfig").arg(kc).args(&args).output().unwrap()
        })
        .await
        .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str], file: Option<(&str, &str)>) -> String {
        let (ok, out, err) = self.run(args, file).await;
        assert!(ok, "kubectl {args:?} failed: {err}{out}");
        out
    }

    async fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args, None).await).unwrap()
    }
}

fn deployment_yaml(replicas: u32, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: nginx\n        image: {image}\n        ports:\n        - containerPort: 80\n"
    )
}

fn entry<'a>(obj: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    obj["metadata"]["managedFields"].as_array()?.iter().find(|e| e["manager"] == manager && e["operation"] == operation)
}

/// A raw request: (status code, body as JSON).
async fn raw(api: &TestApiserver, method: Method, path: &str, body: Option<(Value, &str)>) -> (u16, Value) {
    let body = body.map(|(v, ct)| (Bytes::from(v.to_string()), ct));
    let resp = api.client.send_accepting(method, path, "application/json", body).await.unwrap();
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply_conflicts_and_force() {
    let api = TestApiserver::start().await;
    let k = Kubectl::new(&api);
    let out = k.ok(&["apply", "--server-side"], Some(("d1.yaml", &deployment_yaml(3, "nginx:1")))).await;
    assert!(out.contains("deployment.apps/web serverside-applied"), "{out}");
    let d = k.json(&["get", "deployment", "web", "-o", "json", "--show-managed-fields"]).await;
    let applied = entry(&d, "kubectl", "Apply").expect("kubectl's Apply entry");
    assert_eq!(applied["apiVersion"], "apps/v1");
    assert_eq!(applied["fieldsType"], "FieldsV1");
    assert_eq!(applied["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
    assert_eq!(
        applied["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"]["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"],
        json!({".": {}, "f:containerPort": {}})
    );
    // Without --show-managed-fields kubectl hides them.
    let yaml = k.ok(&["get", "deployment", "web", "-o", "yaml"], None).await;
    assert!(!yaml.contains("managedFields"), "{yaml}");
    let yaml = k.ok(&["get", "deployment", "web", "-o", "yaml", "--show-managed-fields"], None).await;
    assert!(yaml.contains("manager: kubectl") && yaml.contains("operation: Apply"), "{yaml}");

    // `kubectl scale` takes spec.replicas through the scale subresource.
    k.ok(&["scale", "deployment", "web", "--replicas=5"], None).await;
    let d = k.json(&["get", "deployment", "web", "-o", "json", "--show-managed-fields"]).await;
    let scaler = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["subresource"] == "scale")
        .unwrap_or_else(|| panic!("no scale entry: {d}"));
    assert_eq!((scaler["manager"].as_str(), scaler["operation"].as_str()), (Some("kubectl"), Some("Update")));
    assert_eq!(scaler["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    assert!(entry(&d, "kubectl", "Apply").unwrap()["fieldsV1"]["f:spec"].get("f:replicas").is_none());

    // Applying replicas again conflicts with the scaler.
    let (ok, _, err) = k.run(&["apply", "--server-side"], Some(("d2.yaml", &deployment_yaml(3, "nginx:2")))).await;
    assert!(!ok);
    assert!(
        err.contains(
            "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"
        ),
        "{err}"
    );
    assert_eq!(k.json(&["get", "deployment", "web", "-o", "json"]).await["spec"]["replicas"], 5);

    // --force-conflicts takes it back.
    k.ok(&["apply", "--server-side", "--force-conflicts"], Some(("d2.yaml", &deployment_yaml(3, "nginx:2")))).await;
    let d = k.json(&["get", "deployment", "web", "-o", "json", "--show-managed-fields"]).await;
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:2");
    assert!(d["metadata"]["managedFields"].as_array().unwrap().iter().all(|e| e["subresource"] != "scale"), "{d}");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_managers_conflict_and_share() {
    let api = TestApiserver::start().await;
    let k = Kubectl::new(&api);
    let cm = |data: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\ndata:\n{data}");
    k.ok(&["apply", "--server-side", "--field-manager=alice"], Some(("a.yaml", &cm("  a: \"1\"\n  s: x\n")))).await;
    // The same value for a field is shared ownership, not a conflict.
    k.ok(&["apply", "--server-side", "--field-manager=bob"], Some(("b.yaml", &cm("  b: \"2\"\n  s: x\n")))).await;
    let (ok, _, err) =
        k.run(&["apply", "--server-side", "--field-manager=bob"], Some(("b2.yaml", &cm("  a: \"9\"\n  s: x\n")))).await;
    assert!(!ok);
    assert!(err.contains("Apply failed with 1 conflict: conflict with \"alice\": .data.a"), "{err}");

    // The 409 as upstream: reason Conflict, one FieldManagerConflict cause per path.
    let body =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"a": "9", "s": "y"}});
    let (code, status) = raw(
        &api,
        Method::PATCH,
        "/api/v1/namespaces/default/configmaps/shared?fieldManager=bob",
        Some((body.clone(), APPLY)),
    )
    .await;
    assert_eq!(code, 409, "{status}");
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(status["message"], "Apply failed with 2 conflicts: conflicts with \"alice\":\n- .data.a\n- .data.s");
    assert_eq!(
        status["details"]["causes"],
        json!([
            {"type": "FieldManagerConflict", "message": "conflict with \"alice\"", "field": ".data.a"},
            {"type": "FieldManagerConflict", "message": "conflict with \"alice\"", "field": ".data.s"}
        ])
    );
    let (code, forced) = raw(
        &api,
        Method::PATCH,
        "/api/v1/namespaces/default/configmaps/shared?fieldManager=bob&force=true",
        Some((body, APPLY)),
    )
    .await;
    assert_eq!(code, 200, "{forced}");
    // bob dropped `b`, which nobody else owns: it is gone; alice keeps nothing she set.
    assert_eq!(forced["data"], json!({"a": "9", "s": "y"}));
    assert!(entry(&forced, "alice", "Apply").is_none(), "{forced}");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_apply_then_server_side() {
    let api = TestApiserver::start().await;
    let k = Kubectl::new(&api);
    k.ok(&["apply"], Some(("csa.yaml", &deployment_yaml(2, "nginx:1")))).await;
    let d = k.json(&["get", "deployment", "web", "-o", "json", "--show-managed-fields"]).await;
    assert!(entry(&d, "kubectl-client-side-apply", "Update").is_some(), "{d}");
    // The upgrade: fields of the last-applied configuration do not conflict for the `kubectl` manager.
    k.ok(&["apply", "--server-side"], Some(("ssa.yaml", &deployment_yaml(4, "nginx:2")))).await;
    let d = k.json(&["get", "deployment", "web", "-o", "json", "--show-managed-fields"]).await;
    assert_eq!(d["spec"]["replicas"], 4);
    assert!(entry(&d, "kubectl", "Apply").is_some(), "{d}");
    let last: Value = serde_json::from_str(
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(last["spec"]["replicas"], 4, "the annotation follows the server-side apply");
    // Another manager is not upgraded.
    let (ok, _, err) = k
        .run(&["apply", "--server-side", "--field-manager=other"], Some(("o.yaml", &deployment_yaml(6, "nginx:2"))))
        .await;
    assert!(!ok && err.contains("conflict"), "{err}");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_record_managers() {
    let api = TestApiserver::start().await;
    let k = Kubectl::new(&api);
    k.ok(&["create", "configmap", "c", "--from-literal=a=1"], None).await;
    k.ok(&["label", "configmap", "c", "team=x"], None).await;
    let c = k.json(&["get", "configmap", "c", "-o", "json", "--show-managed-fields"]).await;
    let created = entry(&c, "kubectl-create", "Update").unwrap_or_else(|| panic!("{c}"));
    assert_eq!(created["apiVersion"], "v1");
    assert_eq!(created["fieldsV1"], json!({"f:data": {".": {}, "f:a": {}}}));
    assert!(created["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    let labeled = entry(&c, "kubectl-label", "Update").unwrap();
    assert_eq!(labeled["fieldsV1"], json!({"f:metadata": {"f:labels": {".": {}, "f:team": {}}}}));

    // fieldManager names the manager; a no-op update keeps the resourceVersion (TestNoOpUpdateSameResourceVersion).
    let cms = "/api/v1/namespaces/default/configmaps";
    let (code, obj) = raw(
        &api,
        Method::POST,
        &format!("{cms}?fieldManager=tool"),
        Some((json!({"metadata": {"name": "d"}, "data": {"x": "1"}}), "application/json")),
    )
    .await;
    assert_eq!(code, 201, "{obj}");
    assert!(entry(&obj, "tool", "Update").is_some(), "{obj}");
    let (_, same) =
        raw(&api, Method::PUT, &format!("{cms}/d?fieldManager=tool"), Some((obj.clone(), "application/json"))).await;
    assert_eq!(same["metadata"]["resourceVersion"], obj["metadata"]["resourceVersion"]);

    // TestClearManagedFieldsWithMergePatch / WithUpdate.
    let (code, cleared) = raw(
        &api,
        Method::PATCH,
        &format!("{cms}/d"),
        Some((json!({"metadata": {"managedFields": [{}]}}), "application/merge-patch+json")),
    )
    .await;
    assert_eq!(code, 200, "{cleared}");
    assert!(cleared["metadata"].get("managedFields").is_none(), "{cleared}");
    let mut upd = cleared.clone();
    upd["data"]["y"] = json!("2");
    let (_, updated) =
        raw(&api, Method::PUT, &format!("{cms}/d?fieldManager=editor"), Some((upd, "application/json"))).await;
    assert_eq!(entry(&updated, "editor", "Update").unwrap()["fieldsV1"], json!({"f:data": {"f:y": {}}}));
    let mut reset = updated.clone();
    reset["metadata"]["managedFields"] = json!([]);
    let (_, reset) = raw(&api, Method::PUT, &format!("{cms}/d"), Some((reset, "application/json"))).await;
    assert!(reset["metadata"].get("managedFields").is_none(), "{reset}");

    // Invalid managedFields in an update are ignored: the live ones stay.
    let mut bad = updated.clone();
    bad["metadata"]["resourceVersion"] = reset["metadata"]["resourceVersion"].clone();
    bad["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Bogus", "fieldsType": "FieldsV1"}]);
    bad["data"]["z"] = json!("3");
    let (code, kept) =
        raw(&api, Method::PUT, &format!("{cms}/d?fieldManager=editor"), Some((bad, "application/json"))).await;
    assert_eq!(code, 200, "{kept}");
    assert_eq!(entry(&kept, "editor", "Update").unwrap()["fieldsV1"], json!({"f:data": {"f:z": {}}}));
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_options_creation_dry_run_and_status() {
    let api = TestApiserver::start().await;
    let deps = "/apis/apps/v1/namespaces/default/deployments";
    let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"}, "spec": {
        "replicas": 1, "selector": {"matchLabels": {"app": "a"}},
        "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});

    // TestApplyRequiresFieldManager.
    let (code, st) = raw(&api, Method::PATCH, &format!("{deps}/app"), Some((dep.clone(), APPLY))).await;
    assert_eq!(code, 422, "{st}");
    assert_eq!(
        st["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    let (code, st) =
        raw(&api, Method::PATCH, &format!("{deps}/app?force=true"), Some((json!({}), "application/merge-patch+json")))
            .await;
    assert_eq!(code, 422, "{st}");
    // managedFields in an apply body.
    let mut with_mf = dep.clone();
    with_mf["metadata"]["managedFields"] =
        json!([{"manager": "x", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {}}]);
    let (code, st) = raw(&api, Method::PATCH, &format!("{deps}/app?fieldManager=m"), Some((with_mf, APPLY))).await;
    assert_eq!((code, st["message"].as_str()), (400, Some("metadata.managedFields must be nil")), "{st}");

    // Unknown fields: Strict refuses them, Warn drops them with a warning (never owned).
    let mut bogus = dep.clone();
    bogus["spec"]["bogus"] = json!(1);
    let (code, st) = raw(
        &api,
        Method::PATCH,
        &format!("{deps}/app?fieldManager=m&fieldValidation=Strict"),
        Some((bogus.clone(), APPLY)),
    )
    .await;
    assert_eq!(code, 400, "{st}");
    assert_eq!(st["message"], "strict decoding error: unknown field \"spec.bogus\"");

    // Dry run: nothing stored.
    let (code, _) =
        raw(&api, Method::PATCH, &format!("{deps}/app?fieldManager=m&dryRun=All"), Some((dep.clone(), APPLY))).await;
    assert_eq!(code, 201);
    assert_eq!(raw(&api, Method::GET, &format!("{deps}/app"), None).await.0, 404);

    // TestApplyAlsoCreates: 201, then 200; a YAML body works too.
    let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: a}\n  template:\n    metadata:\n      labels: {app: a}\n    spec:\n      containers:\n      - {name: c, image: i}\n";
    let resp = api
        .client
        .send_accepting(
            Method::PATCH,
            &format!("{deps}/app?fieldManager=m"),
            "application/json",
            Some((Bytes::from(yaml), APPLY)),
        )
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let (code, again) =
        raw(&api, Method::PATCH, &format!("{deps}/app?fieldManager=m"), Some((dep.clone(), APPLY))).await;
    assert_eq!(code, 200);
    let rv = again["metadata"]["resourceVersion"].clone();
    let (_, same) = raw(&api, Method::PATCH, &format!("{deps}/app?fieldManager=m"), Some((dep.clone(), APPLY))).await;
    assert_eq!(same["metadata"]["resourceVersion"], rv, "an identical apply is a no-op");

    // Apply to /status: its own entry with subresource status; spec untouched.
    let status = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"}, "status": {"observedGeneration": 7}});
    let (code, st) =
        raw(&api, Method::PATCH, &format!("{deps}/app/status?fieldManager=ctrl"), Some((status, APPLY))).await;
    assert_eq!(code, 200, "{st}");
    assert_eq!(st["status"]["observedGeneration"], 7);
    let e = entry(&st, "ctrl", "Apply").unwrap_or_else(|| panic!("{st}"));
    assert_eq!(e["subresource"], "status");
    assert_eq!(e["fieldsV1"], json!({"f:status": {"f:observedGeneration": {}}}));
    // The main endpoint's apply leaves status out of its ownership.
    let mut with_status = dep.clone();
    with_status["status"] = json!({"replicas": 9});
    let (_, d) = raw(&api, Method::PATCH, &format!("{deps}/app?fieldManager=m"), Some((with_status, APPLY))).await;
    assert!(entry(&d, "m", "Apply").unwrap()["fieldsV1"].get("f:status").is_none(), "{d}");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_merge_by_their_schema() {
    let api = TestApiserver::start().await;
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gizmos.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "gizmos", "kind": "Gizmo"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object", "properties": {
                    "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}},
                    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "selector": {"type": "object", "x-kubernetes-map-type": "atomic", "additionalProperties": {"type": "string"}}
                }}}}}}]
        }
    });
    raw(&api, Method::POST, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", Some((crd, "application/json")))
        .await;
    let path = "/apis/example.com/v1/namespaces/default/gizmos/g";
    for _ in 0..100 {
        if raw(&api, Method::GET, "/apis/example.com/v1/namespaces/default/gizmos", None).await.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gizmo =
        |spec: Value| json!({"apiVersion": "example.com/v1", "kind": "Gizmo", "metadata": {"name": "g"}, "spec": spec});
    let (code, g) = raw(
        &api,
        Method::PATCH,
        &format!("{path}?fieldManager=a"),
        Some((gizmo(json!({"ports": [{"name": "http", "port": 80}], "tags": ["x"], "selector": {"k": "v"}})), APPLY)),
    )
    .await;
    assert_eq!(code, 201, "{g}");
    assert_eq!(
        entry(&g, "a", "Apply").unwrap()["fieldsV1"]["f:spec"],
        json!({"f:ports": {"k:{\"name\":\"http\"}": {".": {}, "f:name": {}, "f:port": {}}}, "f:selector": {}, "f:tags": {"v:\"x\"": {}}})
    );
    // A second applier adds its own port and tag: merged by key and value, not replaced.
    let (code, g) = raw(
        &api,
        Method::PATCH,
        &format!("{path}?fieldManager=b"),
        Some((gizmo(json!({"ports": [{"name": "https", "port": 443}], "tags": ["y"]})), APPLY)),
    )
    .await;
    assert_eq!(code, 200, "{g}");
    assert_eq!(g["spec"]["ports"], json!([{"name": "http", "port": 80}, {"name": "https", "port": 443}]));
    assert_eq!(g["spec"]["tags"], json!(["x", "y"]));
    // The atomic map belongs to `a` as a whole.
    let (code, st) = raw(
        &api,
        Method::PATCH,
        &format!("{path}?fieldManager=b"),
        Some((gizmo(json!({"selector": {"other": "1"}})), APPLY)),
    )
    .await;
    assert_eq!(code, 409, "{st}");
    assert_eq!(st["message"], "Apply failed with 1 conflict: conflict with \"a\": .spec.selector");
    let (code, st) = raw(
        &api,
        Method::PATCH,
        &format!("{path}?fieldManager=b"),
        Some((gizmo(json!({"ports": [{"name": "http", "port": 8080}]})), APPLY)),
    )
    .await;
    assert_eq!(code, 409, "{st}");
    assert_eq!(st["message"], "Apply failed with 1 conflict: conflict with \"a\": .spec.ports[name=\"http\"].port");
    api.stop().await;
}

// TestErrorsDontFail, TestApplyGroupsManySeparateUpdates and TestRenamingAppliedFieldManagers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_entries_capping_and_renaming() {
    let api = TestApiserver::start().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    // A create with invalid managedFields succeeds; they are ignored.
    let bad = json!({"metadata": {"name": "e", "managedFields": [{"manager": "x", "operation": "Bogus", "fieldsType": "FieldsV1"}]}, "data": {"a": "1"}});
    let (code, obj) =
        raw(&api, Method::POST, &format!("{cms}?fieldManager=creator"), Some((bad, "application/json"))).await;
    assert_eq!(code, 201, "{obj}");
    assert_eq!(obj["metadata"]["managedFields"].as_array().unwrap().len(), 1, "{obj}");
    assert!(entry(&obj, "creator", "Update").is_some());

    // Twenty updaters: ten entries stay, the oldest merged into ancient-changes.
    let mut last = obj;
    for i in 0..20 {
        let patch = json!({"data": {format!("k{i}"): "v"}});
        let (code, o) = raw(
            &api,
            Method::PATCH,
            &format!("{cms}/e?fieldManager=m{i}"),
            Some((patch, "application/merge-patch+json")),
        )
        .await;
        assert_eq!(code, 200, "{o}");
        last = o;
    }
    let entries = last["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 10, "{last}");
    let ancient = entry(&last, "ancient-changes", "Update").unwrap_or_else(|| panic!("{last}"));
    assert!(ancient["fieldsV1"]["f:data"].get("f:a").is_some(), "the creator's fields went to ancient-changes");

    // Renaming an applier by rewriting managedFields: the new name owns the fields.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "r"}, "data": {"x": "1"}});
    let (_, applied) = raw(&api, Method::PATCH, &format!("{cms}/r?fieldManager=old"), Some((cm.clone(), APPLY))).await;
    let mut renamed = applied.clone();
    renamed["metadata"]["managedFields"][0]["manager"] = json!("new");
    let (code, renamed) = raw(&api, Method::PUT, &format!("{cms}/r"), Some((renamed, "application/json"))).await;
    assert_eq!(code, 200, "{renamed}");
    assert!(entry(&renamed, "new", "Apply").is_some() && entry(&renamed, "old", "Apply").is_none(), "{renamed}");
    let mut change = cm.clone();
    change["data"]["x"] = json!("2");
    let (code, st) =
        raw(&api, Method::PATCH, &format!("{cms}/r?fieldManager=new"), Some((change.clone(), APPLY))).await;
    assert_eq!(code, 200, "{st}");
    let (code, st) = raw(&api, Method::PATCH, &format!("{cms}/r?fieldManager=old"), Some((cm, APPLY))).await;
    assert_eq!(code, 409, "{st}");
    assert_eq!(st["message"], "Apply failed with 1 conflict: conflict with \"new\": .data.x");
    api.stop().await;
}

// scale_test.go (TestScaleAllResources essence): an apply to /scale owns the parent's replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_to_the_scale_subresource() {
    let api = TestApiserver::start().await;
    let deps = "/apis/apps/v1/namespaces/default/deployments";
    let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "s"}, "spec": {
        "replicas": 1, "selector": {"matchLabels": {"app": "s"}},
        "template": {"metadata": {"labels": {"app": "s"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let (code, _) = raw(&api, Method::PATCH, &format!("{deps}/s?fieldManager=owner"), Some((dep.clone(), APPLY))).await;
    assert_eq!(code, 201);
    let scale =
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "s"}, "spec": {"replicas": 4}});
    let (code, st) =
        raw(&api, Method::PATCH, &format!("{deps}/s/scale?fieldManager=scaler"), Some((scale.clone(), APPLY))).await;
    assert_eq!(code, 409, "{st}");
    assert_eq!(st["message"], "Apply failed with 1 conflict: conflict with \"owner\": .spec.replicas");
    let (code, sc) =
        raw(&api, Method::PATCH, &format!("{deps}/s/scale?fieldManager=scaler&force=true"), Some((scale, APPLY))).await;
    assert_eq!(code, 200, "{sc}");
    assert_eq!((sc["kind"].as_str(), sc["spec"]["replicas"].as_i64()), (Some("Scale"), Some(4)));
    let (_, d) = raw(&api, Method::GET, &format!("{deps}/s"), None).await;
    assert_eq!(d["spec"]["replicas"], 4);
    let scaler = entry(&d, "scaler", "Apply").unwrap_or_else(|| panic!("{d}"));
    assert_eq!((scaler["subresource"].as_str(), scaler["apiVersion"].as_str()), (Some("scale"), Some("apps/v1")));
    assert_eq!(scaler["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    assert!(entry(&d, "owner", "Apply").unwrap()["fieldsV1"]["f:spec"].get("f:replicas").is_none(), "{d}");
    // The owner's next apply of replicas conflicts with the scaler.
    let (code, st) = raw(&api, Method::PATCH, &format!("{deps}/s?fieldManager=owner"), Some((dep, APPLY))).await;
    assert_eq!(code, 409, "{st}");
    assert_eq!(
        st["message"],
        "Apply failed with 1 conflict: conflict with \"scaler\" with subresource \"scale\": .spec.replicas"
    );
    api.stop().await;
}
