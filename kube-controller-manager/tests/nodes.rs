mod support;

use api_types::patch::PatchType;
use serde_json::{Value, json};
use support::Cluster;

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn cond<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)
}

fn has_taint(node: &Value, key: &str, effect: &str) -> bool {
    node["spec"]["taints"].as_array().is_some_and(|ts| ts.iter().any(|t| t["key"] == key && t["effect"] == effect))
}

fn deleting(pod: &Value) -> bool {
    pod["metadata"].get("deletionTimestamp").is_some_and(|t| !t.is_null())
}

/// A node as a kubelet registers it, Ready now, with a Lease renewed now.
async fn node(c: &Cluster, name: &str) {
    c.create("", "v1", "nodes", &format!("metadata: {{name: {name}}}")).await;
    let nodes = c.api("", "v1", "nodes", "");
    let status = json!({"status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now(), "lastTransitionTime": now()},
        {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": now(), "lastTransitionTime": now()}]}});
    nodes.patch_status(name, PatchType::Merge, &status).await.unwrap();
    c.create(
        "coordination.k8s.io",
        "v1",
        "leases",
        &format!(
            "metadata: {{name: {name}, namespace: kube-node-lease}}\nspec: {{holderIdentity: {name}, leaseDurationSeconds: 40, renewTime: '{}'}}",
            jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        ),
    )
    .await;
}

/// A running, ready pod on a node (the test plays the scheduler and the kubelet).
async fn pod(c: &Cluster, name: &str, node: &str, tolerations: &str) {
    c.create(
        "",
        "v1",
        "pods",
        &format!(
            "metadata: {{name: {name}}}\nspec:\n  nodeName: {node}\n  tolerations: {tolerations}\n  containers: [{{name: c, image: busybox}}]"
        ),
    )
    .await;
    let pods = c.api("", "v1", "pods", "default");
    let status = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status(name, PatchType::Merge, &status).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_turns_unknown_is_tainted_and_its_pods_evicted_by_their_tolerations() {
    let c = Cluster::start(&["nodelifecycle"], &["--node-monitor-grace-period=3s", "--node-monitor-period=1s"]).await;
    node(&c, "n1").await;
    pod(&c, "plain", "n1", "[]").await;
    pod(
        &c,
        "short",
        "n1",
        "[{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 4}]",
    )
    .await;
    let pods = c.api("", "v1", "pods", "default");
    // The apiserver defaulted the 300 s tolerations on the plain pod.
    let plain = pods.get("plain").await.unwrap();
    assert!(
        plain["spec"]["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["tolerationSeconds"] == 300)
    );
    let nodes = c.api("", "v1", "nodes", "");
    // Healthy while the heartbeat is fresh.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(cond(&nodes.get("n1").await.unwrap(), "Ready").unwrap()["status"], "True");
    // No heartbeat for the grace period: Unknown, tainted.
    let n = c
        .until(
            15,
            "n1 Unknown and tainted",
            || async { nodes.get("n1").await.ok() },
            |n| has_taint(n, "node.kubernetes.io/unreachable", "NoExecute"),
        )
        .await;
    let ready = cond(&n, "Ready").unwrap();
    assert_eq!(ready["status"], "Unknown");
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    assert_eq!(cond(&n, "MemoryPressure").unwrap()["status"], "Unknown");
    assert!(has_taint(&n, "node.kubernetes.io/unreachable", "NoSchedule"));
    // Pods on it are marked not ready; the short-tolerating one waits out its 4 s, then is evicted.
    c.until(
        10,
        "plain not ready",
        || async { pods.get("plain").await.ok() },
        |p| cond(p, "Ready").is_some_and(|r| r["status"] == "False"),
    )
    .await;
    assert!(!deleting(&pods.get("short").await.unwrap()), "evicted before its tolerationSeconds");
    let short = c.until(15, "short evicted", || async { pods.get("short").await.ok() }, deleting).await;
    assert_eq!(cond(&short, "DisruptionTarget").unwrap()["reason"], "DeletionByTaintManager");
    assert!(!deleting(&pods.get("plain").await.unwrap()), "the 300 s toleration still holds");
    // The kubelet comes back: the taints go.
    let status = json!({"status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now(), "lastTransitionTime": now()}]}});
    nodes.patch_status("n1", PatchType::Merge, &status).await.unwrap();
    c.until(
        10,
        "taints removed",
        || async { nodes.get("n1").await.ok() },
        |n| {
            !has_taint(n, "node.kubernetes.io/unreachable", "NoExecute")
                && !has_taint(n, "node.kubernetes.io/unreachable", "NoSchedule")
        },
    )
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_and_no_execute_taints_on_a_healthy_node() {
    let c = Cluster::start(&["nodelifecycle"], &[]).await;
    node(&c, "n2").await;
    pod(&c, "intolerant", "n2", "[]").await;
    pod(&c, "tolerant", "n2", "[{key: dedicated, operator: Exists, effect: NoExecute}]").await;
    let nodes = c.api("", "v1", "nodes", "");
    nodes.patch("n2", PatchType::Merge, &json!({"spec": {"unschedulable": true}})).await.unwrap();
    c.until(
        10,
        "unschedulable taint",
        || async { nodes.get("n2").await.ok() },
        |n| has_taint(n, "node.kubernetes.io/unschedulable", "NoSchedule"),
    )
    .await;
    let n = nodes.get("n2").await.unwrap();
    let mut taints = n["spec"]["taints"].as_array().cloned().unwrap();
    taints.push(json!({"key": "dedicated", "value": "x", "effect": "NoExecute"}));
    nodes.patch("n2", PatchType::Merge, &json!({"spec": {"taints": taints}})).await.unwrap();
    let pods = c.api("", "v1", "pods", "default");
    c.until(10, "intolerant evicted", || async { pods.get("intolerant").await.ok() }, deleting).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(!deleting(&pods.get("tolerant").await.unwrap()));
    nodes.patch("n2", PatchType::Merge, &json!({"spec": {"unschedulable": false}})).await.unwrap();
    let n = c
        .until(
            10,
            "unschedulable taint removed",
            || async { nodes.get("n2").await.ok() },
            |n| !has_taint(n, "node.kubernetes.io/unschedulable", "NoSchedule"),
        )
        .await;
    assert!(has_taint(&n, "dedicated", "NoExecute"), "other taints are left alone");
    c.stop().await;
}

/// POST pods/<name>/eviction (a 429 is returned, not retried).
async fn evict(c: &Cluster, name: &str) -> Result<Value, client::Error> {
    let body =
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}});
    let mut client = c.client().clone();
    client.retry_429 = false;
    client
        .request(
            http::Method::POST,
            &format!("/api/v1/namespaces/default/pods/{name}/eviction"),
            Some((bytes::Bytes::from(body.to_string()), "application/json")),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disruption_budget_status_and_eviction_429() {
    let c = Cluster::start(&["disruption"], &[]).await;
    for p in ["web-a", "web-b", "web-c"] {
        c.create("", "v1", "pods", &format!("metadata: {{name: {p}, labels: {{app: web}}}}\nspec:\n  nodeName: n\n  containers: [{{name: c, image: nginx}}]")).await;
        let status = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        c.api("", "v1", "pods", "default").patch_status(p, PatchType::Merge, &status).await.unwrap();
    }
    // Not ready, so not healthy.
    c.create(
        "",
        "v1",
        "pods",
        "metadata: {name: web-d, labels: {app: web}}\nspec:\n  nodeName: n\n  containers: [{name: c, image: nginx}]",
    )
    .await;
    c.create(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "metadata: {name: web}\nspec:\n  minAvailable: 2\n  selector: {matchLabels: {app: web}}",
    )
    .await;
    let pdbs = c.api("policy", "v1", "poddisruptionbudgets", "default");
    let pdb = c
        .until(15, "pdb status", || async { pdbs.get("web").await.ok() }, |p| p["status"]["disruptionsAllowed"] == 1)
        .await;
    let s = &pdb["status"];
    assert_eq!(
        (s["currentHealthy"].as_i64(), s["desiredHealthy"].as_i64(), s["expectedPods"].as_i64()),
        (Some(3), Some(2), Some(4))
    );
    assert_eq!(s["observedGeneration"], 1);
    let allowed = cond(&pdb, "DisruptionAllowed").unwrap();
    assert_eq!((allowed["status"].as_str(), allowed["reason"].as_str()), (Some("True"), Some("SufficientPods")));
    // One eviction is allowed: the budget is spent and the pod recorded as disrupted.
    evict(&c, "web-a").await.unwrap();
    let pods = c.api("", "v1", "pods", "default");
    let evicted = pods.get("web-a").await.unwrap();
    assert!(deleting(&evicted));
    // Marked before its deletion, as upstream's eviction does.
    let target = cond(&evicted, "DisruptionTarget").expect("no DisruptionTarget condition");
    assert_eq!(
        (target["status"].as_str(), target["reason"].as_str(), target["message"].as_str()),
        (Some("True"), Some("EvictionByEvictionAPI"), Some("Eviction API: evicting"))
    );
    let pdb = c
        .until(
            15,
            "no more disruptions",
            || async { pdbs.get("web").await.ok() },
            |p| p["status"]["disruptionsAllowed"] == 0 && p["status"]["currentHealthy"] == 2,
        )
        .await;
    let allowed = cond(&pdb, "DisruptionAllowed").unwrap();
    assert_eq!((allowed["status"].as_str(), allowed["reason"].as_str()), (Some("False"), Some("InsufficientPods")));
    // The next one would violate the budget: 429 with upstream's message and cause.
    let err = evict(&c, "web-b").await.unwrap_err();
    let client::Error::Api(e) = err else { panic!("{err}") };
    assert_eq!(e.code, 429);
    assert_eq!(e.message, "Cannot evict pod as it would violate the pod's disruption budget.");
    let details = e.details.expect("details");
    assert_eq!(details["causes"][0]["reason"], "DisruptionBudget");
    assert_eq!(details["causes"][0]["message"], "The disruption budget web needs 2 healthy pods and has 2 currently");
    assert!(!deleting(&pods.get("web-b").await.unwrap()));
    // A pod that is not ready may go while the budget is met (IfHealthyBudget).
    evict(&c, "web-d").await.unwrap();
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_spends_the_budget_in_the_apiserver() {
    // No controller: the budget's status is what the test writes.
    let c = Cluster::start(&[], &[]).await;
    for p in ["db-a", "db-b"] {
        c.create("", "v1", "pods", &format!("metadata: {{name: {p}, labels: {{app: db}}}}\nspec:\n  nodeName: n\n  containers: [{{name: c, image: pg}}]")).await;
        let status = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        c.api("", "v1", "pods", "default").patch_status(p, PatchType::Merge, &status).await.unwrap();
    }
    c.create(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "metadata: {name: db}\nspec:\n  maxUnavailable: 1\n  selector: {matchLabels: {app: db}}",
    )
    .await;
    let pdbs = c.api("policy", "v1", "poddisruptionbudgets", "default");
    // Not yet observed by the controller: 429, still being processed.
    let err = evict(&c, "db-a").await.unwrap_err();
    assert_eq!(err.code(), Some(429));
    assert!(err.to_string().contains("is still being processed by the server"), "{err}");
    let status = json!({"status": {"observedGeneration": 1, "disruptionsAllowed": 1, "currentHealthy": 2, "desiredHealthy": 1, "expectedPods": 2,
        "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods", "message": "", "lastTransitionTime": now()}]}});
    pdbs.patch_status("db", PatchType::Merge, &status).await.unwrap();
    evict(&c, "db-a").await.unwrap();
    let pdb = pdbs.get("db").await.unwrap();
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
    assert!(pdb["status"]["disruptedPods"]["db-a"].is_string(), "{pdb:#}");
    assert_eq!(cond(&pdb, "DisruptionAllowed").unwrap()["reason"], "InsufficientPods");
    assert_eq!(evict(&c, "db-b").await.unwrap_err().code(), Some(429));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodeipam_hands_out_node_cidrs_and_reuses_freed_ones() {
    let c = Cluster::start(
        &["nodeipam"],
        &["--allocate-node-cidrs", "--cluster-cidr=10.244.0.0/23", "--node-cidr-mask-size=24"],
    )
    .await;
    let nodes = c.api("", "v1", "nodes", "");
    let cidr_of = |name: &'static str| {
        let nodes = nodes.clone();
        async move { nodes.get(name).await.ok().and_then(|n| n["spec"]["podCIDR"].as_str().map(str::to_string)) }
    };
    c.create("", "v1", "nodes", "metadata: {name: a}").await;
    let a = c.until(10, "a's CIDR", || async { nodes.get("a").await.ok() }, |n| n["spec"]["podCIDR"].is_string()).await;
    assert_eq!(a["spec"]["podCIDR"], "10.244.0.0/24");
    assert_eq!(a["spec"]["podCIDRs"], json!(["10.244.0.0/24"]));
    c.create("", "v1", "nodes", "metadata: {name: b}").await;
    let b = c.until(10, "b's CIDR", || async { nodes.get("b").await.ok() }, |n| n["spec"]["podCIDR"].is_string()).await;
    assert_eq!(b["spec"]["podCIDR"], "10.244.1.0/24");
    // Exhausted: the third node waits, with a CIDRNotAvailable event.
    c.create("", "v1", "nodes", "metadata: {name: c}").await;
    let events = c.api("", "v1", "events", "default");
    c.until(
        10,
        "CIDRNotAvailable event",
        || async { events.list(&Default::default()).await.ok() },
        |l| {
            l["items"].as_array().is_some_and(|es| {
                es.iter().any(|e| e["reason"] == "CIDRNotAvailable" && e["involvedObject"]["name"] == "c")
            })
        },
    )
    .await;
    assert_eq!(cidr_of("c").await, None);
    // a goes away: its CIDR goes to c.
    nodes.delete("a", None).await.unwrap();
    let n = c.until(10, "c's CIDR", || async { nodes.get("c").await.ok() }, |n| n["spec"]["podCIDR"].is_string()).await;
    assert_eq!(n["spec"]["podCIDR"], "10.244.0.0/24");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_quota_usage_follows_the_namespace() {
    let c = Cluster::start(&["resourcequota"], &[]).await;
    // A custom resource counted as `count/<plural>.<group>`.
    c.create(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "metadata: {name: widgets.example.com}\nspec: {group: example.com, scope: Namespaced, names: {plural: widgets, kind: Widget},\n  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}]}",
    )
    .await;
    let widgets = c.client().api_dynamic("example.com", "v1", "widgets", "Widget", true).namespaced("default");
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
    c.until(20, "the CRD served", || async { widgets.create(&w).await.ok() }, |_| true).await;
    c.create(
        "",
        "v1",
        "resourcequotas",
        "metadata: {name: q}\nspec:\n  hard: {pods: '10', requests.cpu: '2', requests.memory: 1Gi, limits.memory: 2Gi, configmaps: '5', services: '2', count/deployments.apps: '3', count/widgets.example.com: '5'}",
    )
    .await;
    // As upstream's e2e tests: objects are created once the quota's usage is known (then admission charges them).
    let quotas = c.api("", "v1", "resourcequotas", "default");
    c.until(15, "usage known", || async { quotas.get("q").await.ok() }, |q| q["status"]["used"].is_object()).await;
    for (name, cpu) in [("p1", "250m"), ("p2", "1")] {
        c.create(
            "",
            "v1",
            "pods",
            &format!("metadata: {{name: {name}}}\nspec:\n  containers: [{{name: c, image: busybox, resources: {{requests: {{cpu: '{cpu}', memory: 256Mi}}, limits: {{memory: 512Mi}}}}}}]"),
        )
        .await;
    }
    c.create("", "v1", "configmaps", "metadata: {name: cm}\ndata: {a: b}").await;
    let q = c
        .until(
            15,
            "usage",
            || async { quotas.get("q").await.ok() },
            |q| q["status"]["used"]["pods"] == "2" && q["status"]["used"]["configmaps"] == "1",
        )
        .await;
    assert_eq!(q["status"]["hard"], q["spec"]["hard"]);
    assert_eq!(
        q["status"]["used"],
        json!({"pods": "2", "requests.cpu": "1250m", "requests.memory": "512Mi", "limits.memory": "1Gi", "configmaps": "1",
            // The apiserver's own `kubernetes` service is in default.
            "services": "1", "count/deployments.apps": "0", "count/widgets.example.com": "1"})
    );
    // A finished pod no longer counts.
    c.api("", "v1", "pods", "default")
        .patch_status("p2", PatchType::Merge, &json!({"status": {"phase": "Succeeded"}}))
        .await
        .unwrap();
    let q = c
        .until(
            15,
            "usage after p2 finished",
            || async { quotas.get("q").await.ok() },
            |q| q["status"]["used"]["pods"] == "1",
        )
        .await;
    assert_eq!(q["status"]["used"]["requests.cpu"], "250m");
    assert_eq!(q["status"]["used"]["requests.memory"], "256Mi");
    c.stop().await;
}

/// Quotas with scopes count only the pods in their scope (upstream's pod evaluator and `CalculateUsageStats`; the
/// cases of upstream's quota e2e tests "should verify ResourceQuota with best effort scope / terminating scopes /
/// priority class scope ... using scope-selectors" and "cross namespace pod affinity scope"), and nothing but pods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_quota_scopes_select_the_pods_they_count() {
    let c = Cluster::start(&["resourcequota"], &[]).await;
    c.create("scheduling.k8s.io", "v1", "priorityclasses", "metadata: {name: high}\nvalue: 1000").await;
    let quotas: &[(&str, &str)] = &[
        // (No cpu here: the apiserver's quota admission would refuse the BestEffort pods, which state none.)
        ("all", "hard: {pods: '10', count/pods: '10', count/configmaps: '10'}"),
        ("best-effort", "scopes: [BestEffort]\n  hard: {pods: '10'}"),
        ("not-best-effort", "scopes: [NotBestEffort]\n  hard: {pods: '10', count/pods: '10', requests.cpu: '10'}"),
        ("terminating", "scopes: [Terminating]\n  hard: {pods: '10', requests.cpu: '10'}"),
        (
            "not-terminating",
            "scopeSelector: {matchExpressions: [{scopeName: NotTerminating, operator: Exists}]}\n  hard: {pods: '10'}",
        ),
        (
            "high",
            "scopeSelector: {matchExpressions: [{scopeName: PriorityClass, operator: In, values: [high]}]}\n  hard: {pods: '10', requests.cpu: '10'}",
        ),
        (
            "not-high",
            "scopeSelector: {matchExpressions: [{scopeName: PriorityClass, operator: NotIn, values: [high]}]}\n  hard: {pods: '10'}",
        ),
        (
            "any-class",
            "scopeSelector: {matchExpressions: [{scopeName: PriorityClass, operator: Exists}]}\n  hard: {pods: '10'}",
        ),
        (
            "no-class",
            "scopeSelector: {matchExpressions: [{scopeName: PriorityClass, operator: DoesNotExist}]}\n  hard: {pods: '10'}",
        ),
        (
            "cross-ns",
            "scopeSelector: {matchExpressions: [{scopeName: CrossNamespacePodAffinity, operator: Exists}]}\n  hard: {pods: '10'}",
        ),
        // Two scopes at once: both must match.
        (
            "high-not-terminating",
            "scopes: [NotTerminating]\n  scopeSelector: {matchExpressions: [{scopeName: PriorityClass, operator: In, values: [high]}]}\n  hard: {pods: '10'}",
        ),
        // A scoped quota counts nothing but pods.
        ("scoped-objects", "scopes: [NotTerminating]\n  hard: {pods: '10', count/configmaps: '10'}"),
    ];
    for (name, spec) in quotas {
        c.create("", "v1", "resourcequotas", &format!("metadata: {{name: {name}}}\nspec:\n  {spec}")).await;
    }
    // Objects are created once every quota's usage is known, as upstream's e2e tests wait for it.
    let api = c.api("", "v1", "resourcequotas", "default");
    for (name, _) in quotas {
        c.until(15, "usage known", || async { api.get(name).await.ok() }, |q| q["status"]["used"].is_object()).await;
    }
    let pod = |name: &str, spec: &str| {
        format!("metadata: {{name: {name}}}\nspec:\n  containers: [{{name: c, image: busybox{spec}}}]")
    };
    // BestEffort, no deadline, no class.
    c.create("", "v1", "pods", &pod("be", "")).await;
    // Burstable, terminating (a deadline), class high.
    c.create(
        "",
        "v1",
        "pods",
        &(pod("burst", ", resources: {requests: {cpu: 100m}}")
            + "\n  activeDeadlineSeconds: 60\n  priorityClassName: high"),
    )
    .await;
    // Guaranteed, not terminating, class high.
    c.create(
        "",
        "v1",
        "pods",
        &(pod("guaranteed", ", resources: {requests: {cpu: 200m, memory: 64Mi}, limits: {cpu: 200m, memory: 64Mi}}")
            + "\n  priorityClassName: high"),
    )
    .await;
    // BestEffort with a cross-namespace affinity term.
    c.create(
        "",
        "v1",
        "pods",
        &(pod("cross", "")
            + "\n  affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: zone, namespaces: [other], labelSelector: {matchLabels: {app: x}}}]}}"),
    )
    .await;
    // Not BestEffort, finished: only count/pods counts it.
    c.create("", "v1", "pods", &pod("done", ", resources: {requests: {cpu: '1'}}")).await;
    c.api("", "v1", "pods", "default")
        .patch_status("done", PatchType::Merge, &json!({"status": {"phase": "Succeeded"}}))
        .await
        .unwrap();
    c.create("", "v1", "configmaps", "metadata: {name: cm}").await;

    let expect = [
        ("all", json!({"pods": "4", "count/pods": "5", "count/configmaps": "1"})),
        ("best-effort", json!({"pods": "2"})),
        ("not-best-effort", json!({"pods": "2", "count/pods": "3", "requests.cpu": "300m"})),
        ("terminating", json!({"pods": "1", "requests.cpu": "100m"})),
        ("not-terminating", json!({"pods": "3"})),
        ("high", json!({"pods": "2", "requests.cpu": "300m"})),
        ("not-high", json!({"pods": "2"})),
        ("any-class", json!({"pods": "2"})),
        ("no-class", json!({"pods": "2"})),
        ("cross-ns", json!({"pods": "1"})),
        ("high-not-terminating", json!({"pods": "1"})),
        ("scoped-objects", json!({"pods": "3", "count/configmaps": "0"})),
    ];
    for (name, used) in expect {
        c.until(
            15,
            &format!("the usage of {name}: {used}"),
            || async { api.get(name).await.ok() },
            |q| q["status"]["used"] == used,
        )
        .await;
    }
    c.stop().await;
}

/// ResourceQuota admission with the controller computing usage, after upstream's quota e2e tests ("should create a
/// ResourceQuota and capture the life of a pod / configMap / service", "should verify ResourceQuota with extended
/// resources"...): what fits is charged at once, what does not is refused with upstream's messages, a dry run is
/// not charged, a deleted pod's share comes back, and concurrent creates never pass the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_quota_admission_charges_and_refuses() {
    let c = Cluster::start(&["resourcequota"], &[]).await;
    c.api.namespace("quota").await;
    c.create(
        "",
        "v1",
        "resourcequotas",
        "metadata: {name: test-quota, namespace: quota}\nspec:\n  hard: {pods: '2', requests.cpu: '1', requests.memory: 500Mi, requests.example.com/dongle: '3', configmaps: '1', services: '2', services.nodeports: '1', resourcequotas: '1'}",
    )
    .await;
    let quotas = c.api("", "v1", "resourcequotas", "quota");
    c.until(
        15,
        "usage computed",
        || async { quotas.get("test-quota").await.ok() },
        |q| q["status"]["used"]["resourcequotas"] == "1" && q["status"]["used"]["pods"] == "0",
    )
    .await;
    let pods = c.api("", "v1", "pods", "quota");
    let pod = |name: &str, resources: &str| -> Value {
        serde_yaml_ng::from_str(&format!(
            "metadata: {{name: {name}}}\nspec:\n  containers: [{{name: c, image: busybox, resources: {resources}}}]"
        ))
        .unwrap()
    };
    let refused = |e: client::Error| match e {
        client::Error::Api(s) => {
            assert_eq!((s.code, s.reason), (403, "Forbidden"), "{}", s.message);
            s.message
        }
        e => panic!("{e}"),
    };
    let fits = "{requests: {cpu: 500m, memory: 252Mi, example.com/dongle: '2'}, limits: {example.com/dongle: '2'}}";
    pods.create(&pod("p1", fits)).await.unwrap();
    // Charged by the admission itself, before the controller sees the pod.
    let q = quotas.get("test-quota").await.unwrap();
    assert_eq!(q["status"]["used"]["pods"], "1");
    assert_eq!(q["status"]["used"]["requests.cpu"], "500m");
    assert_eq!(q["status"]["used"]["requests.memory"], "252Mi");
    assert_eq!(q["status"]["used"]["requests.example.com/dongle"], "2");

    let e = pods.create(&pod("p2", "{requests: {cpu: 600m, memory: 100Mi}}")).await.unwrap_err();
    assert_eq!(
        refused(e),
        "pods \"p2\" is forbidden: exceeded quota: test-quota, requested: requests.cpu=600m, used: requests.cpu=500m, limited: requests.cpu=1"
    );
    let e = pods
        .create(&pod(
            "p3",
            "{requests: {cpu: 100m, memory: 100Mi, example.com/dongle: '2'}, limits: {example.com/dongle: '2'}}",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        refused(e),
        "pods \"p3\" is forbidden: exceeded quota: test-quota, requested: requests.example.com/dongle=2, used: requests.example.com/dongle=2, limited: requests.example.com/dongle=3"
    );
    let e = pods.create(&pod("p4", "{}")).await.unwrap_err();
    assert_eq!(
        refused(e),
        "pods \"p4\" is forbidden: failed quota: test-quota: must specify requests.cpu for: c; requests.memory for: c"
    );
    // A dry run is checked but not charged.
    let small = pod("p5", "{requests: {cpu: 100m, memory: 10Mi}}");
    let body = bytes::Bytes::from(small.to_string());
    c.client()
        .request(http::Method::POST, "/api/v1/namespaces/quota/pods?dryRun=All", Some((body, "application/json")))
        .await
        .unwrap();
    assert_eq!(quotas.get("test-quota").await.unwrap()["status"]["used"]["pods"], "1");

    let cms = c.api("", "v1", "configmaps", "quota");
    cms.create(&json!({"metadata": {"name": "a"}})).await.unwrap();
    let e = cms.create(&json!({"metadata": {"name": "b"}})).await.unwrap_err();
    assert_eq!(
        refused(e),
        "configmaps \"b\" is forbidden: exceeded quota: test-quota, requested: configmaps=1, used: configmaps=1, limited: configmaps=1"
    );
    let svcs = c.api("", "v1", "services", "quota");
    let e = svcs
        .create(&json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]}}))
        .await
        .unwrap_err();
    assert!(
        refused(e)
            .ends_with("requested: services.nodeports=2, used: services.nodeports=0, limited: services.nodeports=1")
    );
    svcs.create(&json!({"metadata": {"name": "ok"}, "spec": {"ports": [{"port": 80}]}})).await.unwrap();
    let e = quotas.create(&json!({"metadata": {"name": "second"}, "spec": {"hard": {"pods": "1"}}})).await.unwrap_err();
    assert!(refused(e).contains("exceeded quota: test-quota, requested: resourcequotas=1"));

    // The deleted pod's share comes back (the controller recounts), and a pod that did not fit now does.
    pods.delete("p1", None).await.unwrap();
    c.until(
        20,
        "p1 released",
        || async { quotas.get("test-quota").await.ok() },
        |q| q["status"]["used"]["pods"] == "0" && q["status"]["used"]["requests.cpu"] == "0",
    )
    .await;
    pods.create(&pod("p2", "{requests: {cpu: 600m, memory: 100Mi}}")).await.unwrap();

    // Concurrent creates are charged one at a time: exactly the limit passes.
    c.api.namespace("race").await;
    c.create(
        "",
        "v1",
        "resourcequotas",
        "metadata: {name: cms, namespace: race}\nspec:\n  hard: {count/configmaps: '3'}",
    )
    .await;
    let race_quotas = c.api("", "v1", "resourcequotas", "race");
    c.until(
        15,
        "race usage",
        || async { race_quotas.get("cms").await.ok() },
        |q| q["status"]["used"]["count/configmaps"].is_string(),
    )
    .await;
    let race = c.api("", "v1", "configmaps", "race");
    let already = race.list(&Default::default()).await.unwrap()["items"].as_array().unwrap().len();
    let tries = (0..8).map(|i| {
        let race = race.clone();
        async move { race.create(&json!({"metadata": {"name": format!("c{i}")}})).await.is_ok() }
    });
    let ok = futures_util::future::join_all(tries).await.into_iter().filter(|ok| *ok).count();
    assert_eq!(ok + already, 3, "{already} already there");
    c.stop().await;
}
