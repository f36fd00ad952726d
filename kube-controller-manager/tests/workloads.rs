//! The workload controllers against an in-process apiserver. There is no kubelet: tests play it by patching pod
//! status (Running and Ready) through the status subresource.

mod support;

use api_types::patch::PatchType;
use serde_json::{Value, json};
use support::Cluster;

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn active(pods: Vec<Value>) -> Vec<Value> {
    pods.into_iter().filter(|p| p.pointer("/metadata/deletionTimestamp").is_none()).collect()
}

async fn pods_with(c: &Cluster, selector: &str) -> Vec<Value> {
    let api = c.api("", "v1", "pods", "default");
    let list = api.list(&client::ListParams { label_selector: Some(selector.into()), ..Default::default() }).await;
    active(list.map(|l| items(&l)).unwrap_or_default())
}

/// Plays the kubelet: the pod runs on `node` and is Ready.
async fn make_ready(c: &Cluster, pod: &Value) {
    let api = c.api("", "v1", "pods", "default");
    let now = jiff::Timestamp::now().to_string();
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}]}});
    let name = pod["metadata"]["name"].as_str().unwrap();
    let _ = api.patch_status(name, PatchType::Merge, &status).await;
}

fn controller_uid(pod: &Value) -> Option<String> {
    pod["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == json!(true))
        .map(|r| r["uid"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_scales_up_and_down_and_adopts_an_orphan() {
    let c = Cluster::start(&["replicaset"], &[]).await;
    // An orphan pod that matches the selector, created first: it is adopted, so only two more are created.
    c.create(
        "",
        "v1",
        "pods",
        "metadata: {name: orphan, labels: {app: web}}\nspec: {containers: [{name: c, image: nginx}]}",
    )
    .await;
    let rs = c
        .create(
            "apps",
            "v1",
            "replicasets",
            r#"
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: nginx}]}
"#,
        )
        .await;
    let uid = rs["metadata"]["uid"].as_str().unwrap().to_string();
    let pods = c
        .until(
            30,
            "three pods",
            || async { Some(json!(pods_with(&c, "app=web").await)) },
            |p| p.as_array().unwrap().len() == 3,
        )
        .await;
    for p in pods.as_array().unwrap() {
        assert_eq!(controller_uid(p).as_deref(), Some(uid.as_str()), "{p:#}");
        let r = &p["metadata"]["ownerReferences"][0];
        assert_eq!((r["kind"].clone(), r["blockOwnerDeletion"].clone()), (json!("ReplicaSet"), json!(true)));
        if p["metadata"]["name"] != "orphan" {
            assert!(p["metadata"]["name"].as_str().unwrap().starts_with("web-"));
        }
    }
    // No more than three are ever made (expectations), and status follows the kubelet's readiness.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(pods_with(&c, "app=web").await.len(), 3);
    for p in pods.as_array().unwrap() {
        make_ready(&c, p).await;
    }
    let rss = c.api("apps", "v1", "replicasets", "default");
    c.until(
        30,
        "status",
        || async { rss.get("web").await.ok() },
        |rs| {
            rs["status"]["replicas"] == 3
                && rs["status"]["readyReplicas"] == 3
                && rs["status"]["availableReplicas"] == 3
                && rs["status"]["fullyLabeledReplicas"] == 3
                && rs["status"]["observedGeneration"] == rs["metadata"]["generation"]
        },
    )
    .await;
    // Scale down to one: the ready orphan is kept over nothing in particular, but exactly one stays.
    rss.patch("web", PatchType::Merge, &json!({"spec": {"replicas": 1}})).await.unwrap();
    c.until(
        30,
        "one pod",
        || async { Some(json!(pods_with(&c, "app=web").await)) },
        |p| p.as_array().unwrap().len() == 1,
    )
    .await;
    c.until(30, "status replicas 1", || async { rss.get("web").await.ok() }, |rs| rs["status"]["replicas"] == 1).await;
    // A pod deleted behind its back is replaced.
    let left = pods_with(&c, "app=web").await;
    c.api("", "v1", "pods", "default").delete(left[0]["metadata"]["name"].as_str().unwrap(), None).await.unwrap();
    c.until(
        30,
        "a replacement",
        || async { Some(json!(pods_with(&c, "app=web").await)) },
        |p| p.as_array().unwrap().len() == 1 && p[0]["metadata"]["name"] != left[0]["metadata"]["name"],
    )
    .await;
    // A pod relabelled out of the selector is released (its controllerRef removed) and replaced.
    let cur = pods_with(&c, "app=web").await;
    let released = cur[0]["metadata"]["name"].as_str().unwrap().to_string();
    let pods = c.api("", "v1", "pods", "default");
    pods.patch(&released, PatchType::Merge, &json!({"metadata": {"labels": {"app": "other"}}})).await.unwrap();
    c.until(
        30,
        "the released pod orphaned",
        || async { pods.get(&released).await.ok() },
        |p| controller_uid(p).is_none(),
    )
    .await;
    c.until(
        30,
        "a pod again",
        || async { Some(json!(pods_with(&c, "app=web").await)) },
        |p| p.as_array().unwrap().len() == 1,
    )
    .await;
    // Events were recorded.
    let events = c.api("", "v1", "events", "default");
    c.until(
        20,
        "SuccessfulCreate and SuccessfulDelete events",
        || async { events.list(&Default::default()).await.ok() },
        |l| {
            let reasons: Vec<Value> = items(l).iter().map(|e| e["reason"].clone()).collect();
            reasons.contains(&json!("SuccessfulCreate")) && reasons.contains(&json!("SuccessfulDelete"))
        },
    )
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_controller_keeps_its_replicas() {
    let c = Cluster::start(&["replicationcontroller"], &[]).await;
    c.create(
        "",
        "v1",
        "replicationcontrollers",
        r#"
metadata: {name: rc}
spec:
  replicas: 2
  selector: {app: rc}
  template:
    metadata: {labels: {app: rc}}
    spec: {containers: [{name: c, image: nginx}]}
"#,
    )
    .await;
    c.until(
        30,
        "two pods",
        || async { Some(json!(pods_with(&c, "app=rc").await)) },
        |p| {
            p.as_array().unwrap().len() == 2
                && p.as_array()
                    .unwrap()
                    .iter()
                    .all(|p| p["metadata"]["ownerReferences"][0]["kind"] == "ReplicationController")
        },
    )
    .await;
    let rcs = c.api("", "v1", "replicationcontrollers", "default");
    c.until(30, "rc status", || async { rcs.get("rc").await.ok() }, |rc| rc["status"]["replicas"] == 2).await;
    c.stop().await;
}
