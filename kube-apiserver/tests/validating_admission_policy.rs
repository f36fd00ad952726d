//! ValidatingAdmissionPolicy and webhook matchConditions end to end, as upstream's conformance tests
//! (`test/e2e/apimachinery/validatingadmissionpolicy.go`, `webhook.go`) exercise them: policies and bindings
//! applied with the real `kubectl`, a Deployment with one replica refused with upstream's message while
//! replicated Deployments and ReplicaSets pass, a Warn binding's `Warning:` in kubectl's stderr, params from a
//! ConfigMap, bindings narrowed by namespace labels, the policy status (observedGeneration, typeChecking); the API
//! operations of both kinds; and webhooks skipped or failed by their matchConditions, with the in-process webhook
//! server.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use api_types::patch::PatchType;
use http::Method;
use kube_apiserver::admission::webhook::testserver::WebhookServer;
use kube_apiserver::testing::TestApiserver;
use serde_json::{Value, json};

/// `/usr/bin/kubectl` with a kubeconfig for the test apiserver's admin.
struct Kubectl {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn new(api: &TestApiserver) -> Kubectl {
        use base64::Engine;
        let b64 =
            |b: &Option<Vec<u8>>| base64::engine::general_purpose::STANDARD.encode(b.as_deref().unwrap_or_default());
        let c = &api.config;
        let dir = api.dir.path().to_path_buf();
        let kubeconfig = dir.join("admin.conf");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\ncurrent-context: test\n",
                c.server,
                b64(&c.ca_pem),
                b64(&c.client_cert_pem),
                b64(&c.client_key_pem)
            ),
        )
        .unwrap();
        Kubectl { dir, kubeconfig }
    }

    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let stdin = stdin.map(str::to_string);
        let (dir, kubeconfig) = (self.dir.clone(), self.kubeconfig.clone());
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            use std::process::{Command, Stdio};
            let mut child = Command::new("/usr/bin/kubectl")
                .args(&args)
                .env("KUBECONFIG", &kubeconfig)
                .env("KUBECACHEDIR", dir.join("kcache"))
                .env("HOME", &dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run kubectl");
            let mut input = child.stdin.take().unwrap();
            input.write_all(stdin.unwrap_or_default().as_bytes()).unwrap();
            drop(input);
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap()
    }

    async fn apply(&self, yaml: &str) -> Output {
        self.run(&["apply", "-f", "-"], Some(yaml)).await
    }

    async fn apply_ok(&self, yaml: &str) -> Output {
        let out = self.apply(yaml).await;
        assert!(out.status.success(), "apply failed: {}", String::from_utf8_lossy(&out.stderr));
        out
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Retries `probe` until it returns Some: a new policy takes effect once the watch brings it.
async fn until<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

fn deployment(ns: &str, name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    app: nginx\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: nginx\n  template:\n    metadata:\n      labels:\n        app: nginx\n    spec:\n      containers:\n      - name: nginx\n        image: nginx:latest\n"
    )
}

fn replicaset(ns: &str, name: &str, replicas: u32) -> String {
    deployment(ns, name, replicas).replace("kind: Deployment", "kind: ReplicaSet")
}

/// A policy on Deployment creates and updates in namespaces labelled `<label>: "true"`.
fn policy_yaml(name: &str, label: &str, extra: &str) -> String {
    format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata:\n  name: {name}\nspec:\n  matchConstraints:\n    namespaceSelector:\n      matchLabels:\n        {label}: \"true\"\n    resourceRules:\n    - apiGroups: [apps]\n      apiVersions: [v1]\n      resources: [deployments]\n      operations: [CREATE, UPDATE]\n{extra}"
    )
}

fn binding_yaml(name: &str, policy: &str, label: &str, actions: &str, extra: &str) -> String {
    format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata:\n  name: {name}\nspec:\n  policyName: {policy}\n  validationActions: {actions}\n  matchResources:\n    namespaceSelector:\n      matchLabels:\n        {label}: \"true\"\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_policies_deny_warn_and_read_params() {
    let api = TestApiserver::start().await;
    let k = Kubectl::new(&api);
    k.apply_ok(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: vap-e2e\n  labels:\n    vap-e2e: \"true\"\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata:\n  name: other\n",
    )
    .await;

    // upstream's "should validate against a Deployment": its messageExpression adds an int to a string, which
    // fails at run time, so the message falls back to the failed expression.
    let policy = policy_yaml(
        "replicas.example.com",
        "vap-e2e",
        "  validations:\n  - expression: object.spec.replicas > 1\n    messageExpression: \"'wants replicas > 1, got ' + object.spec.replicas\"\n  - expression: namespaceObject.metadata.name == 'vap-e2e'\n    message: Internal error! Other namespace should not be allowed.\n",
    );
    let binding = binding_yaml("replicas-binding.example.com", "replicas.example.com", "vap-e2e", "[Deny]", "");
    k.apply_ok(&format!("{policy}---\n{binding}")).await;
    let refused = until("the marker deployment is refused", async || {
        let out = k.apply(&deployment("vap-e2e", "marker", 1)).await;
        if out.status.success() {
            k.run(&["delete", "deployment", "-n", "vap-e2e", "marker"], None).await;
            return None;
        }
        Some(stderr(&out))
    })
    .await;
    assert!(
        refused.contains("The deployments \"marker\" is invalid: : ValidatingAdmissionPolicy 'replicas.example.com' with binding 'replicas-binding.example.com' denied request: failed expression: object.spec.replicas > 1"),
        "{refused}"
    );
    let deployments = api.client.api("apps", "v1", "deployments").unwrap().namespaced("vap-e2e");
    let e = deployments
        .create(&serde_yaml_ng::from_str::<Value>(&deployment("vap-e2e", "marker", 1)).unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(422), "{e}");
    k.apply_ok(&deployment("vap-e2e", "replicated", 2)).await;
    k.apply_ok(&replicaset("vap-e2e", "non-replicated", 1)).await;
    k.apply_ok(&deployment("other", "marker", 1)).await;
    // An update is checked too.
    let out =
        k.run(&["patch", "deployment", "-n", "vap-e2e", "replicated", "-p", r#"{"spec":{"replicas":1}}"#], None).await;
    assert!(!out.status.success() && stderr(&out).contains("denied request: failed expression"), "{}", stderr(&out));
    // `kubectl scale` writes the scale subresource, which a rule naming `deployments` alone does not cover (as
    // upstream: the policy would name `deployments/scale`).
    let out = k.run(&["scale", "deployment", "-n", "vap-e2e", "replicated", "--replicas=1"], None).await;
    assert!(out.status.success(), "{}", stderr(&out));

    // A Warn binding: the write passes, kubectl shows the warning.
    let warn_policy = policy_yaml(
        "warn.example.com",
        "vap-e2e",
        "  validations:\n  - expression: object.spec.replicas <= 3\n    message: at most 3 replicas\n",
    );
    let warn_binding = binding_yaml("warn-binding.example.com", "warn.example.com", "vap-e2e", "[Warn, Audit]", "");
    k.apply_ok(&format!("{warn_policy}---\n{warn_binding}")).await;
    let warned = until("the warn binding warns", async || {
        let out = k.apply_ok(&deployment("vap-e2e", "big", 5)).await;
        let err = stderr(&out);
        err.contains("Warning:").then_some(err)
    })
    .await;
    assert!(
        warned.contains("Warning: Validation failed for ValidatingAdmissionPolicy 'warn.example.com' with binding 'warn-binding.example.com': at most 3 replicas"),
        "{warned}"
    );

    // Params from a ConfigMap in the request's namespace.
    k.apply_ok("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: limited\n  labels:\n    limits: \"true\"\n").await;
    let params_policy = policy_yaml(
        "max-replicas.example.com",
        "limits",
        "  paramKind:\n    apiVersion: v1\n    kind: ConfigMap\n  validations:\n  - expression: object.spec.replicas <= int(params.data.maxReplicas)\n    messageExpression: \"'at most ' + params.data.maxReplicas + ' replicas'\"\n    reason: Forbidden\n",
    );
    let params_binding = binding_yaml(
        "max-replicas-binding.example.com",
        "max-replicas.example.com",
        "limits",
        "[Deny]",
        "  paramRef:\n    name: replica-limit\n    parameterNotFoundAction: Deny\n",
    );
    k.apply_ok(&format!("{params_policy}---\n{params_binding}")).await;
    let missing = until("a missing param is refused", async || {
        let out = k.apply(&deployment("limited", "web", 5)).await;
        (!out.status.success()).then(|| stderr(&out))
    })
    .await;
    assert!(
        missing.contains("ValidatingAdmissionPolicy 'max-replicas.example.com' with binding 'max-replicas-binding.example.com' denied request: failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"),
        "{missing}"
    );
    k.apply_ok("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: replica-limit\n  namespace: limited\ndata:\n  maxReplicas: \"4\"\n")
        .await;
    let limited = until("the param limits replicas", async || {
        let out = k.apply(&deployment("limited", "web", 5)).await;
        let err = stderr(&out);
        (!out.status.success() && err.contains("at most 4")).then_some(err)
    })
    .await;
    // reason Forbidden: 403, which kubectl prints as a server error.
    assert!(
        limited.contains("Error from server (Forbidden)")
            && limited.contains("deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'max-replicas.example.com' with binding 'max-replicas-binding.example.com' denied request: at most 4 replicas"),
        "{limited}"
    );
    k.apply_ok(&deployment("limited", "small", 3)).await;
    k.apply_ok("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: replica-limit\n  namespace: limited\ndata:\n  maxReplicas: \"10\"\n")
        .await;
    until("the new param value admits", async || {
        k.apply(&deployment("limited", "web", 5)).await.status.success().then_some(())
    })
    .await;

    // The status controller records the generation and the type checking.
    let status = until("the policy status is written", async || {
        let out = k.run(&["get", "validatingadmissionpolicy", "replicas.example.com", "-o", "json"], None).await;
        let p: Value = serde_json::from_slice(&out.stdout).ok()?;
        p["status"].get("typeChecking").is_some().then(|| p["status"].clone())
    })
    .await;
    assert_eq!(status["observedGeneration"], 1, "{status}");
    // The messageExpression adds an int to a string: the type checker says so, as upstream's.
    let warnings = status["typeChecking"]["expressionWarnings"].as_array().cloned().unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{status}");
    assert_eq!(warnings[0]["fieldRef"], "spec.validations[0].messageExpression");
    assert!(
        warnings[0]["warning"]
            .as_str()
            .unwrap()
            .contains("found no matching overload for '_+_' applied to '(string, int)'"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_checking_and_variables() {
    let api = TestApiserver::start().await;
    let c = &api.client;
    let policies = c.api("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies").unwrap();
    let bindings = c.api("admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings").unwrap();
    c.api("", "v1", "namespaces")
        .unwrap()
        .create(&json!({"metadata": {"name": "vars", "labels": {"vars": "true"}}}))
        .await
        .unwrap();
    let policy = |name: &str, variables: Value, validations: Value| {
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy", "metadata": {"name": name},
               "spec": {"matchConstraints": {"namespaceSelector": {"matchLabels": {"vars": "true"}},
                            "resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"], "operations": ["CREATE", "UPDATE"]}]},
                        "variables": variables, "validations": validations}})
    };
    // upstream's "should type check validation expressions".
    policies
        .create(&policy("correct.example.com", json!([]), json!([{"expression": "object.spec.replicas > 1"}])))
        .await
        .unwrap();
    policies
        .create(&policy(
            "confused.example.com",
            json!([]),
            json!([{"expression": "object.spec.replicas > '1'", "messageExpression": "'wants replicas > 1, got ' + object.spec.replicas"}]),
        ))
        .await
        .unwrap();
    let checked = |name: &'static str| {
        let policies = policies.clone();
        async move {
            until("type checking", async || {
                let p = policies.get(name).await.ok()?;
                p["status"].get("typeChecking").is_some().then_some(p)
            })
            .await
        }
    };
    let correct = checked("correct.example.com").await;
    assert_eq!(correct["status"], json!({"observedGeneration": 1, "typeChecking": {}}));
    let confused = checked("confused.example.com").await;
    let warnings = confused["status"]["typeChecking"]["expressionWarnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2);
    assert_eq!(warnings[0]["fieldRef"], "spec.validations[0].expression");
    assert!(
        warnings[0]["warning"]
            .as_str()
            .unwrap()
            .contains("found no matching overload for '_>_' applied to '(int, string)'")
    );
    assert_eq!(warnings[1]["fieldRef"], "spec.validations[0].messageExpression");
    assert!(
        warnings[1]["warning"]
            .as_str()
            .unwrap()
            .contains("found no matching overload for '_+_' applied to '(string, int)'")
    );
    // A spec change is checked again, for the new generation.
    let patched = policies
        .patch(
            "confused.example.com",
            PatchType::Merge,
            &json!({"spec": {"validations": [{"expression": "object.spec.replicas > 1"}]}}),
        )
        .await
        .unwrap();
    assert_eq!(patched["metadata"]["generation"], 2);
    until("the new generation is checked", async || {
        let p = policies.get("confused.example.com").await.ok()?;
        (p["status"] == json!({"observedGeneration": 2, "typeChecking": {}})).then_some(())
    })
    .await;

    // upstream's "should type check a CRD": against the CRD's schema, with ObjectMeta.
    c.api("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .unwrap()
        .create(&json!({"metadata": {"name": "crontabs.stable.example.com"},
            "spec": {"group": "stable.example.com", "scope": "Namespaced",
                     "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab"},
                     "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                         "type": "object", "properties": {"spec": {"type": "object", "properties": {
                             "cronSpec": {"type": "string"}, "image": {"type": "string"}, "replicas": {"type": "integer"}}}}}}}]}}))
        .await
        .unwrap();
    until("the CRD is served", async || c.request(Method::GET, "/apis/stable.example.com/v1", None).await.ok()).await;
    let crd_policy = |name: &str, validations: Value| {
        let mut p = policy(name, json!([]), validations);
        p["spec"]["matchConstraints"]["resourceRules"] = json!([{"apiGroups": ["stable.example.com"], "apiVersions": ["v1"], "resources": ["crontabs"], "operations": ["CREATE"]}]);
        p
    };
    policies
        .create(&crd_policy(
            "correct-crd.example.com",
            json!([{"expression": "object.spec.replicas > 1 && object.metadata.name != ''"}]),
        ))
        .await
        .unwrap();
    policies
        .create(&crd_policy(
            "confused-crd.example.com",
            json!([{"expression": "object.spec.replicas > '1'"}, {"expression": "object.spec.maxRetries < 10"}]),
        ))
        .await
        .unwrap();
    let correct = checked("correct-crd.example.com").await;
    assert_eq!(correct["status"]["typeChecking"], json!({}));
    let confused = checked("confused-crd.example.com").await;
    let warnings = confused["status"]["typeChecking"]["expressionWarnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2, "{confused}");
    assert_eq!(warnings[0]["fieldRef"], "spec.validations[0].expression");
    assert!(
        warnings[0]["warning"]
            .as_str()
            .unwrap()
            .contains("found no matching overload for '_>_' applied to '(int, string)'")
    );
    assert_eq!(warnings[1]["fieldRef"], "spec.validations[1].expression");
    assert!(warnings[1]["warning"].as_str().unwrap().contains("undefined field 'maxRetries'"));

    // upstream's "should allow expressions to refer variables".
    policies
        .create(&policy(
            "vars.example.com",
            json!([{"name": "replicas", "expression": "object.spec.replicas"},
                   {"name": "oddReplicas", "expression": "variables.replicas % 2 == 1"}]),
            json!([{"expression": "variables.replicas > 1"}, {"expression": "variables.oddReplicas"}]),
        ))
        .await
        .unwrap();
    bindings
        .create(&json!({"metadata": {"name": "vars-binding.example.com"},
                        "spec": {"policyName": "vars.example.com", "validationActions": ["Deny"],
                                 "matchResources": {"namespaceSelector": {"matchLabels": {"vars": "true"}}}}}))
        .await
        .unwrap();
    let deployments = c.api("apps", "v1", "deployments").unwrap().namespaced("vars");
    let d =
        |name: &str, replicas: u32| -> Value { serde_yaml_ng::from_str(&deployment("vars", name, replicas)).unwrap() };
    let e = until("the marker is refused", async || match deployments.create(&d("marker", 1)).await {
        Ok(_) => {
            deployments.delete("marker", None).await.unwrap();
            None
        }
        Err(e) => Some(e),
    })
    .await;
    assert_eq!(e.code(), Some(422));
    assert!(e.to_string().contains("ValidatingAdmissionPolicy 'vars.example.com' with binding 'vars-binding.example.com' denied request: failed expression: variables.replicas > 1"), "{e}");
    let e = deployments.create(&d("even", 2)).await.unwrap_err();
    assert!(e.to_string().contains("failed expression: variables.oddReplicas"), "{e}");
    deployments.create(&d("replicated", 3)).await.unwrap();
    let rs = c.api("apps", "v1", "replicasets").unwrap().namespaced("vars");
    rs.create(&serde_yaml_ng::from_str(&replicaset("vars", "non-replicated", 1)).unwrap()).await.unwrap();

    // Invalid objects are refused with upstream's messages.
    let e = policies
        .create(&policy("bad.example.com", json!([]), json!([{"expression": "object.spec.replicas >"}])))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(422));
    assert!(e.to_string().contains("spec.validations[0].expression: Invalid value: \"object.spec.replicas >\": compilation failed: ERROR: <input>:1:23: Syntax error"), "{e}");
    let e = bindings
        .create(
            &json!({"metadata": {"name": "bad"}, "spec": {"policyName": "p", "validationActions": ["Deny", "Warn"]}}),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(
            "spec.validationActions: Invalid value: [\"Deny\",\"Warn\"]: must not contain both Deny and Warn"
        ),
        "{e}"
    );
}

/// client-go's `retry.RetryOnConflict`.
async fn retry_on_conflict(mut write: impl AsyncFnMut() -> client::Result<Value>) -> Value {
    for _ in 0..10 {
        match write().await {
            Ok(v) => return v,
            Err(e) if e.code() == Some(409) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("conflicts did not stop");
}

/// upstream's "should support ValidatingAdmissionPolicy API operations" and the binding's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_and_binding_api_operations() {
    let api = TestApiserver::start().await;
    let c = &api.client;
    let discovery = c.request(Method::GET, "/apis/admissionregistration.k8s.io/v1", None).await.unwrap();
    let names: Vec<&str> =
        discovery["resources"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
    for n in ["validatingadmissionpolicies", "validatingadmissionpolicies/status", "validatingadmissionpolicybindings"]
    {
        assert!(names.contains(&n), "{names:?}");
    }
    let policy = json!({"metadata": {"generateName": "e2e-example-vap-", "labels": {"example-e2e-vap-label": "x1"}},
        "spec": {"validations": [{"expression": "object.spec.replicas <= 100"}],
                 "matchConstraints": {"resourceRules": [{"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"]}]}}});
    let binding = json!({"metadata": {"generateName": "e2e-example-vapb-", "labels": {"example-e2e-vap-label": "x1"}},
        "spec": {"policyName": "replicalimit-policy.example.com", "validationActions": ["Deny"]}});
    for (plural, template, patch, spec_check) in [
        (
            "validatingadmissionpolicies",
            policy,
            json!({"metadata": {"annotations": {"patched": "true"}}, "spec": {"failurePolicy": "Ignore"}}),
            ("/spec/failurePolicy", json!("Ignore")),
        ),
        (
            "validatingadmissionpolicybindings",
            binding,
            json!({"metadata": {"annotations": {"patched": "true"}}, "spec": {"validationActions": ["Warn"]}}),
            ("/spec/validationActions", json!(["Warn"])),
        ),
    ] {
        let objects = c.api("admissionregistration.k8s.io", "v1", plural).unwrap();
        objects.create(&template).await.unwrap();
        objects.create(&template).await.unwrap();
        let created = objects.create(&template).await.unwrap();
        let name = created["metadata"]["name"].as_str().unwrap().to_string();
        if plural == "validatingadmissionpolicies" {
            // Defaults, as v1's.
            assert_eq!(created["spec"]["failurePolicy"], "Fail");
            assert_eq!(
                created["spec"]["matchConstraints"],
                json!({"matchPolicy": "Equivalent", "namespaceSelector": {}, "objectSelector": {},
                       "resourceRules": [{"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"], "scope": "*"}]})
            );
        }
        assert_eq!(objects.get(&name).await.unwrap()["metadata"]["uid"], created["metadata"]["uid"]);
        let lp = client::ListParams { label_selector: Some("example-e2e-vap-label=x1".into()), ..Default::default() };
        let list = objects.list(&lp).await.unwrap();
        assert_eq!(list["items"].as_array().unwrap().len(), 3);
        let watch_from = client::ListParams {
            resource_version: list["metadata"]["resourceVersion"].as_str().map(str::to_string),
            ..lp.clone()
        };
        let mut watch = objects.watch(&watch_from).await.unwrap();
        let patched = objects.patch(&name, PatchType::Merge, &patch).await.unwrap();
        assert_eq!(patched["metadata"]["annotations"]["patched"], "true");
        assert_eq!(patched.pointer(spec_check.0), Some(&spec_check.1));
        // The status controller writes too: updates retry on conflict, as upstream's test does.
        let updated = retry_on_conflict(async || {
            let mut current = objects.get(&name).await.unwrap();
            current["metadata"]["annotations"]["updated"] = json!("true");
            objects.replace(&name, &current).await
        })
        .await;
        assert_eq!(updated["metadata"]["annotations"]["updated"], "true");
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), watch.recv()).await.unwrap().unwrap().unwrap();
            match event {
                client::WatchEvent::Modified(o) if o["metadata"]["annotations"]["patched"] == "true" => break,
                client::WatchEvent::Modified(_) => continue,
                other => panic!("expected a modification, got {other:?}"),
            }
        }
        if plural == "validatingadmissionpolicies" {
            let path = format!("/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/{name}/status");
            let status = c.request(Method::GET, &path, None).await.unwrap();
            assert_eq!(status["kind"], "ValidatingAdmissionPolicy");
            assert_eq!(status["metadata"]["uid"], created["metadata"]["uid"]);
            let cond = json!({"status": {"conditions": [{"type": "PatchStatusFailed", "status": "False", "reason": "e2e",
                "message": "Set from an e2e test", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}});
            let patched = objects.patch_status(&name, PatchType::Merge, &cond).await.unwrap();
            assert_eq!(patched["status"]["conditions"][0]["type"], "PatchStatusFailed");
            let updated = retry_on_conflict(async || {
                let mut current = objects.get(&name).await.unwrap();
                let conditions = current["status"]["conditions"].as_array_mut().unwrap();
                conditions.push(json!({"type": "StatusUpdateFailed", "status": "False", "reason": "E2E",
                    "message": "Set from an e2e test", "lastTransitionTime": "2024-01-02T00:00:00Z"}));
                objects.replace_status(&name, &current).await
            })
            .await;
            let types: Vec<&str> =
                updated["status"]["conditions"].as_array().unwrap().iter().filter_map(|c| c["type"].as_str()).collect();
            assert!(types.contains(&"StatusUpdateFailed"), "{types:?}");
            // The status subresource leaves the spec alone.
            assert_eq!(updated["spec"]["failurePolicy"], "Ignore");
        }
        objects.delete(&name, None).await.unwrap();
        assert_eq!(objects.get(&name).await.unwrap_err().code(), Some(404));
        assert_eq!(objects.list(&lp).await.unwrap()["items"].as_array().unwrap().len(), 2);
        let path = format!("/apis/admissionregistration.k8s.io/v1/{plural}?labelSelector=example-e2e-vap-label%3Dx1");
        c.request(Method::DELETE, &path, None).await.unwrap();
        assert!(objects.list(&lp).await.unwrap()["items"].as_array().unwrap().is_empty());
    }
}

/// A webhook on the test Service `default/webhook`.
fn hook(server: &WebhookServer, name: &str, path: &str, conditions: Value, failure: &str) -> Value {
    json!({"name": name, "clientConfig": {"service": {"namespace": "default", "name": "webhook", "path": path, "port": 443},
           "caBundle": server.ca_bundle()},
           "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
           "namespaceSelector": {"matchLabels": {"webhooks": "on"}}, "matchConditions": conditions, "failurePolicy": failure,
           "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 5})
}

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_match_conditions() {
    let server = WebhookServer::start(&["webhook.default.svc"]).await;
    let api = TestApiserver::start().await;
    let c = &api.client;
    c.api("", "v1", "namespaces")
        .unwrap()
        .create(&json!({"metadata": {"name": "wh", "labels": {"webhooks": "on"}}}))
        .await
        .unwrap();
    server.expose(c).await.unwrap();
    let mutating = c.api("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations").unwrap();
    let validating = c.api("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations").unwrap();
    let cms = c.api("", "v1", "configmaps").unwrap().namespaced("wh");

    // upstream's "should reject ... webhook configurations with invalid match conditions", both kinds.
    let invalid = json!([{"name": "invalid-expression-1", "expression": "... [] bad expression"}]);
    for (configs, kind) in
        [(&mutating, "MutatingWebhookConfiguration"), (&validating, "ValidatingWebhookConfiguration")]
    {
        let obj = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": "invalid"},
                         "webhooks": [hook(&server, "invalid.example.com", "/allow", invalid.clone(), "Fail")]});
        let e = configs.create(&obj).await.unwrap_err();
        assert_eq!(e.code(), Some(422));
        assert!(e.to_string().contains("webhooks[0].matchConditions[0].expression: Invalid value: \"... [] bad expression\": compilation failed"), "{e}");
    }

    // upstream's "should mutate everything except 'skip-me' configmaps".
    let skip = json!([{"name": "skip-me", "expression": "object.metadata.name != 'skip-me'"}]);
    mutating
        .create(&json!({"metadata": {"name": "label-adder"}, "webhooks": [hook(&server, "add-label.example.com", "/addLabel", skip, "Fail")]}))
        .await
        .unwrap();
    let mut n = 0;
    until("the mutating webhook adds its label", async || {
        n += 1;
        let mut o = cm(&format!("probe-{n}"));
        o["metadata"]["labels"] = json!({"a": "b"});
        let created = cms.create(&o).await.unwrap();
        (created["metadata"]["labels"]["added"] == "test").then_some(())
    })
    .await;
    let mut o = cm("skip-me");
    o["metadata"]["labels"] = json!({"a": "b"});
    let skipped = cms.create(&o).await.unwrap();
    assert_eq!(skipped["metadata"]["labels"], json!({"a": "b"}), "a false condition skips the webhook");
    assert!(server.take_calls().iter().all(|call| call.review["request"]["name"] != "skip-me"));
    mutating.delete("label-adder", None).await.unwrap();

    // A condition that fails: Fail refuses the request (403), Ignore skips the webhook.
    let broken = json!([{"name": "broken", "expression": "object.metadata.labels.nope == 'x'"}]);
    validating
        .create(&json!({"metadata": {"name": "broken"}, "webhooks": [hook(&server, "broken.example.com", "/disallowReason", broken.clone(), "Fail")]}))
        .await
        .unwrap();
    let e = until("the failing condition refuses", async || {
        n += 1;
        let mut o = cm(&format!("c{n}"));
        o["metadata"]["labels"] = json!({"a": "b"});
        cms.create(&o).await.err()
    })
    .await;
    assert_eq!(e.code(), Some(403), "{e}");
    assert!(
        e.to_string().contains(&format!("configmaps \"c{n}\" is forbidden: expression 'object.metadata.labels.nope == 'x'' resulted in error: no such key: nope")),
        "{e}"
    );
    let mut ignore = validating.get("broken").await.unwrap();
    ignore["webhooks"][0]["failurePolicy"] = json!("Ignore");
    validating.replace("broken", &ignore).await.unwrap();
    server.take_calls();
    until("the failing condition is ignored", async || {
        n += 1;
        let mut o = cm(&format!("c{n}"));
        o["metadata"]["labels"] = json!({"a": "b"});
        cms.create(&o).await.ok()
    })
    .await;
    assert!(
        server.take_calls().iter().all(|call| call.path != "/disallowReason"),
        "an ignored condition skips the call"
    );
    // Conditions that hold call the webhook (which refuses), and the configuration's conditions can be updated.
    let mut holds = validating.get("broken").await.unwrap();
    holds["webhooks"][0]["matchConditions"] = json!([{"name": "labelled", "expression": "has(object.metadata.labels) && object.metadata.labels.a == 'b'"},
                                                     {"name": "creating", "expression": "request.operation == 'CREATE' && oldObject == null"}]);
    let updated = validating.replace("broken", &holds).await.unwrap();
    assert_eq!(updated["webhooks"][0]["matchConditions"][1]["name"], "creating");
    let e = until("matching conditions call the webhook", async || {
        n += 1;
        let mut o = cm(&format!("c{n}"));
        o["metadata"]["labels"] = json!({"a": "b"});
        cms.create(&o).await.err()
    })
    .await;
    assert!(
        e.to_string().contains("admission webhook \"broken.example.com\" denied the request: you shall not pass"),
        "{e}"
    );
    cms.create(&cm("unlabelled")).await.unwrap();
}
