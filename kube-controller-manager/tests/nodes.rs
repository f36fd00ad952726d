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
