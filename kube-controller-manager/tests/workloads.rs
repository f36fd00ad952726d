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

/// Plays the kubelet: the pod is Running and Ready.
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

const DEPLOYMENT: &str = r#"
metadata: {name: web, annotations: {kubernetes.io/change-cause: first}}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: "nginx:1"}]}
"#;

/// (fewest ready pods seen, most pods seen, recording).
type Seen = std::sync::Arc<std::sync::Mutex<(usize, usize, bool)>>;

/// Plays the kubelet for pods matching `selector` until the returned sender is dropped: every pending pod becomes
/// Ready (one per tick). Records the fewest ready pods and the most pods seen at once (from `watch_from` on).
fn kubelet(c: &Cluster, selector: &'static str) -> (tokio::sync::oneshot::Sender<()>, Seen) {
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    let seen = std::sync::Arc::new(std::sync::Mutex::new((usize::MAX, 0usize, false)));
    let (api, s) = (c.api("", "v1", "pods", "default"), seen.clone());
    tokio::spawn(async move {
        loop {
            if rx.try_recv().is_ok() {
                return;
            }
            let lp = client::ListParams { label_selector: Some(selector.into()), ..Default::default() };
            let pods = active(api.list(&lp).await.map(|l| items(&l)).unwrap_or_default());
            let ready = |p: &Value| {
                p["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
            };
            {
                let mut g = s.lock().unwrap();
                if g.2 {
                    g.0 = g.0.min(pods.iter().filter(|p| ready(p)).count());
                    g.1 = g.1.max(pods.len());
                }
            }
            if let Some(p) = pods.iter().find(|p| !ready(p)) {
                let now = jiff::Timestamp::now().to_string();
                let status = json!({"status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
                let _ = api.patch_status(p["metadata"]["name"].as_str().unwrap(), PatchType::Merge, &status).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        }
    });
    (tx, seen)
}

fn condition(d: &Value, type_: &str) -> Value {
    d["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
        .unwrap_or_default()
}

fn rolled_out(d: &Value) -> bool {
    let s = &d["status"];
    s["observedGeneration"] == d["metadata"]["generation"]
        && s["updatedReplicas"] == 3
        && s["replicas"] == 3
        && s["availableReplicas"] == 3
        && condition(d, "Progressing")["reason"] == "NewReplicaSetAvailable"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rolls_out_within_max_unavailable_and_rolls_back_to_the_old_replica_set() {
    let c = Cluster::start(&["deployment", "replicaset"], &[]).await;
    let (_stop_kubelet, seen) = kubelet(&c, "app=web");
    c.create("apps", "v1", "deployments", DEPLOYMENT).await;
    let deps = c.api("apps", "v1", "deployments", "default");
    let rss = c.api("apps", "v1", "replicasets", "default");
    let d = c.until(60, "first rollout", || async { deps.get("web").await.ok() }, rolled_out).await;
    assert_eq!(condition(&d, "Available")["reason"], "MinimumReplicasAvailable");
    assert_eq!(condition(&d, "Available")["status"], "True");
    // A zero count is absent (`omitempty`), as upstream stores it.
    assert_eq!(d["status"]["unavailableReplicas"].as_i64().unwrap_or(0), 0);
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1");
    let list = items(&rss.list(&Default::default()).await.unwrap());
    assert_eq!(list.len(), 1);
    let first = list[0].clone();
    let hash = first["metadata"]["labels"]["pod-template-hash"].as_str().unwrap().to_string();
    assert_eq!(first["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(first["spec"]["selector"]["matchLabels"]["pod-template-hash"], hash);
    assert_eq!(first["spec"]["template"]["metadata"]["labels"]["pod-template-hash"], hash);
    let ann = &first["metadata"]["annotations"];
    assert_eq!(ann["deployment.kubernetes.io/revision"], "1");
    assert_eq!(ann["deployment.kubernetes.io/desired-replicas"], "3");
    assert_eq!(ann["deployment.kubernetes.io/max-replicas"], "4");
    assert_eq!(ann["kubernetes.io/change-cause"], "first");
    assert_eq!(first["metadata"]["ownerReferences"][0]["kind"], "Deployment");

    // A template change rolls out: never fewer than 3 - 1 ready pods, never more than 3 + 1 pods.
    seen.lock().unwrap().2 = true;
    deps.patch(
        "web",
        PatchType::Merge,
        &json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}}),
    )
    .await
    .unwrap();
    let d = c
        .until(
            90,
            "second rollout",
            || async { deps.get("web").await.ok() },
            |d| rolled_out(d) && d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2",
        )
        .await;
    let (min_ready, max_pods, _) = *seen.lock().unwrap();
    assert!(min_ready >= 2, "ready pods fell to {min_ready}");
    assert!(max_pods <= 4, "pods rose to {max_pods}");
    seen.lock().unwrap().2 = false;
    let old = rss.get(first["metadata"]["name"].as_str().unwrap()).await.unwrap();
    assert_eq!(old["spec"]["replicas"], 0);
    let pods = pods_with(&c, "app=web").await;
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| p["metadata"]["labels"]["pod-template-hash"] != hash));
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "2");

    // kubectl rollout undo: the template of revision 1 comes back; its ReplicaSet is reused as revision 3.
    let mut template = first["spec"]["template"].clone();
    template["metadata"]["labels"].as_object_mut().unwrap().remove("pod-template-hash");
    deps.patch("web", PatchType::Merge, &json!({"spec": {"template": template}})).await.unwrap();
    c.until(
        90,
        "rollback",
        || async { deps.get("web").await.ok() },
        |d| rolled_out(d) && d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3",
    )
    .await;
    let list = items(&rss.list(&Default::default()).await.unwrap());
    assert_eq!(list.len(), 2, "no third replica set");
    let reused = rss.get(first["metadata"]["name"].as_str().unwrap()).await.unwrap();
    assert_eq!(reused["spec"]["replicas"], 3);
    assert_eq!(reused["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3");
    assert_eq!(reused["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"], "1");
    let events = c.api("", "v1", "events", "default");
    let ev = items(&events.list(&Default::default()).await.unwrap());
    assert!(ev.iter().any(|e| e["reason"] == "ScalingReplicaSet"
        && e["message"].as_str().unwrap().starts_with("Scaled down replica set web-")));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_without_ready_pods_exceeds_its_progress_deadline_and_recreate_waits_for_old_pods() {
    let c = Cluster::start(&["deployment", "replicaset"], &[]).await;
    c.create(
        "apps",
        "v1",
        "deployments",
        r#"
metadata: {name: stuck}
spec:
  replicas: 2
  progressDeadlineSeconds: 2
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec: {containers: [{name: c, image: nginx}]}
"#,
    )
    .await;
    let deps = c.api("apps", "v1", "deployments", "default");
    let d = c
        .until(
            30,
            "ProgressDeadlineExceeded",
            || async { deps.get("stuck").await.ok() },
            |d| condition(d, "Progressing")["reason"] == "ProgressDeadlineExceeded",
        )
        .await;
    assert_eq!(condition(&d, "Progressing")["status"], "False");
    assert_eq!(condition(&d, "Available")["reason"], "MinimumReplicasUnavailable");
    assert_eq!(d["status"]["unavailableReplicas"], 2);

    // Recreate: the new ReplicaSet only appears once the old one is scaled to zero and its pods are gone.
    let (_kubelet, _) = kubelet(&c, "app=rec");
    c.create(
        "apps",
        "v1",
        "deployments",
        r#"
metadata: {name: rec}
spec:
  replicas: 2
  revisionHistoryLimit: 0
  strategy: {type: Recreate}
  selector: {matchLabels: {app: rec}}
  template:
    metadata: {labels: {app: rec}}
    spec: {containers: [{name: c, image: "nginx:1"}]}
"#,
    )
    .await;
    c.until(
        30,
        "two pods",
        || async { Some(json!(pods_with(&c, "app=rec").await)) },
        |p| p.as_array().unwrap().len() == 2,
    )
    .await;
    let first_hash = pods_with(&c, "app=rec").await[0]["metadata"]["labels"]["pod-template-hash"].clone();
    deps.patch(
        "rec",
        PatchType::Merge,
        &json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}}),
    )
    .await
    .unwrap();
    c.until(
        30,
        "new pods only",
        || async { Some(json!(pods_with(&c, "app=rec").await)) },
        |p| {
            let p = p.as_array().unwrap();
            // Old and new pods never coexist.
            assert!(
                !(p.iter().any(|x| x["metadata"]["labels"]["pod-template-hash"] == first_hash)
                    && p.iter().any(|x| x["metadata"]["labels"]["pod-template-hash"] != first_hash)),
                "old and new pods at once: {p:#?}"
            );
            p.len() == 2 && p.iter().all(|x| x["metadata"]["labels"]["pod-template-hash"] != first_hash)
        },
    )
    .await;
    // revisionHistoryLimit 0: the old ReplicaSet is deleted once the rollout is complete.
    let rss = c.api("apps", "v1", "replicasets", "default");
    let rs_of = |app: &'static str| {
        let rss = rss.clone();
        async move {
            let lp = client::ListParams { label_selector: Some(format!("app={app}")), ..Default::default() };
            rss.list(&lp).await.ok().map(|l| json!(items(&l)))
        }
    };
    c.until(30, "one replica set left", || rs_of("rec"), |l| l.as_array().unwrap().len() == 1).await;

    // Paused at creation: no ReplicaSet until resumed.
    c.create(
        "apps",
        "v1",
        "deployments",
        r#"
metadata: {name: held}
spec:
  paused: true
  selector: {matchLabels: {app: held}}
  template:
    metadata: {labels: {app: held}}
    spec: {containers: [{name: c, image: nginx}]}
"#,
    )
    .await;
    let d = c
        .until(
            30,
            "DeploymentPaused",
            || async { deps.get("held").await.ok() },
            |d| condition(d, "Progressing")["reason"] == "DeploymentPaused",
        )
        .await;
    assert_eq!(condition(&d, "Progressing")["status"], "Unknown");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(rs_of("held").await.unwrap().as_array().unwrap().is_empty());
    deps.patch("held", PatchType::Merge, &json!({"spec": {"paused": false}})).await.unwrap();
    c.until(30, "a replica set after resume", || rs_of("held"), |l| l.as_array().unwrap().len() == 1).await;
    c.until(
        30,
        "NewReplicaSetCreated",
        || async { deps.get("held").await.ok() },
        |d| {
            condition(d, "Progressing")["reason"] == "NewReplicaSetCreated"
                || condition(d, "Progressing")["reason"] == "ReplicaSetUpdated"
        },
    )
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_creates_pods_in_order_with_claims_and_rolls_from_the_highest_ordinal() {
    let c = Cluster::start(&["statefulset"], &[]).await;
    c.create(
        "apps",
        "v1",
        "statefulsets",
        r#"
metadata: {name: db}
spec:
  replicas: 3
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: c, image: "db:1"}]}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
"#,
    )
    .await;
    let pods = c.api("", "v1", "pods", "default");
    // Ordered: db-0 alone until it is Running and Ready, then db-1, then db-2.
    for i in 0..3 {
        let name = format!("db-{i}");
        let p = c.until(30, &name, || async { pods.get(&name).await.ok() }, |_| true).await;
        assert_eq!(p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"], name);
        assert_eq!(p["metadata"]["labels"]["apps.kubernetes.io/pod-index"], i.to_string());
        assert!(p["metadata"]["labels"]["controller-revision-hash"].as_str().unwrap().starts_with("db-"));
        assert_eq!(p["spec"]["hostname"], name);
        assert_eq!(p["spec"]["subdomain"], "db");
        let claim = format!("data-db-{i}");
        assert!(
            p["spec"]["volumes"].as_array().unwrap().iter().any(|v| v["persistentVolumeClaim"]["claimName"] == claim)
        );
        c.api("", "v1", "persistentvolumeclaims", "default").get(&claim).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert_eq!(pods_with(&c, "app=db").await.len(), i + 1, "db-{} created before db-{i} was ready", i + 1);
        make_ready(&c, &p).await;
    }
    let sets = c.api("apps", "v1", "statefulsets", "default");
    let s = c
        .until(
            30,
            "status",
            || async { sets.get("db").await.ok() },
            |s| {
                s["status"]["readyReplicas"] == 3 && s["status"]["replicas"] == 3 && s["status"]["currentReplicas"] == 3
            },
        )
        .await;
    let rev1 = s["status"]["currentRevision"].as_str().unwrap().to_string();
    assert_eq!(s["status"]["updateRevision"], rev1);
    assert_eq!(s["status"]["updatedReplicas"], 3);
    assert_eq!(s["status"]["observedGeneration"], s["metadata"]["generation"]);
    c.api("apps", "v1", "controllerrevisions", "default").get(&rev1).await.unwrap();

    // A new template with partition 1: db-2 then db-1 are replaced, db-0 stays at the old revision.
    let (_k, _) = kubelet(&c, "app=db");
    sets.patch(
        "db",
        PatchType::Merge,
        &json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
            "template": {"spec": {"containers": [{"name": "c", "image": "db:2"}]}}}}),
    )
    .await
    .unwrap();
    let s = c
        .until(
            60,
            "partitioned rollout",
            || async { sets.get("db").await.ok() },
            |s| {
                s["status"]["updatedReplicas"] == 2
                    && s["status"]["readyReplicas"] == 3
                    && s["status"]["currentReplicas"] == 1
            },
        )
        .await;
    let rev2 = s["status"]["updateRevision"].as_str().unwrap().to_string();
    assert_ne!(rev1, rev2);
    assert_eq!(s["status"]["currentRevision"], rev1);
    let rev = |p: Value| p["metadata"]["labels"]["controller-revision-hash"].as_str().unwrap().to_string();
    assert_eq!(rev(pods.get("db-0").await.unwrap()), rev1);
    assert_eq!(rev(pods.get("db-1").await.unwrap()), rev2);
    assert_eq!(rev(pods.get("db-2").await.unwrap()), rev2);

    // A removed identity label comes back.
    pods.patch(
        "db-0",
        PatchType::Merge,
        &json!({"metadata": {"labels": {"statefulset.kubernetes.io/pod-name": null}}}),
    )
    .await
    .unwrap();
    c.until(
        30,
        "identity restored",
        || async { pods.get("db-0").await.ok() },
        |p| p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-0",
    )
    .await;

    // Scale down: the highest ordinal goes; its claim stays.
    sets.patch("db", PatchType::Merge, &json!({"spec": {"replicas": 2}})).await.unwrap();
    c.until(30, "db-2 gone", || async { Some(json!(pods.get("db-2").await.is_err())) }, |g| g == &json!(true)).await;
    c.api("", "v1", "persistentvolumeclaims", "default").get("data-db-2").await.unwrap();
    assert!(pods.get("db-1").await.is_ok());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_runs_one_pod_per_eligible_node_and_rolls_within_max_unavailable() {
    let c = Cluster::start(&["daemonset"], &[]).await;
    for n in ["n1", "n2"] {
        c.create("", "v1", "nodes", &format!("metadata: {{name: {n}, labels: {{role: worker}}}}")).await;
    }
    c.create(
        "",
        "v1",
        "nodes",
        "metadata: {name: tainted, labels: {role: worker}}\nspec: {taints: [{key: dedicated, value: db, effect: NoSchedule}]}",
    )
    .await;
    c.create("", "v1", "nodes", "metadata: {name: other, labels: {role: db}}").await;
    c.create(
        "apps",
        "v1",
        "daemonsets",
        r#"
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 1}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {role: worker}
      containers: [{name: c, image: "agent:1"}]
"#,
    )
    .await;
    let target = |p: &Value| {
        p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
            ["matchFields"][0]["values"][0]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let pods = c
        .until(
            30,
            "two daemon pods",
            || async { Some(json!(pods_with(&c, "app=agent").await)) },
            |p| p.as_array().unwrap().len() == 2,
        )
        .await;
    let mut on: Vec<String> = pods.as_array().unwrap().iter().map(target).collect();
    on.sort();
    assert_eq!(on, ["n1", "n2"], "one pod on each untainted worker");
    let tols = pods[0]["spec"]["tolerations"].as_array().unwrap();
    for (key, effect) in [
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ] {
        assert!(tols.iter().any(|t| t["key"] == key && t["effect"] == effect && t["operator"] == "Exists"), "{key}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(pods_with(&c, "app=agent").await.len(), 2, "no extra pods");
    let (_k, seen) = kubelet(&c, "app=agent");
    let dss = c.api("apps", "v1", "daemonsets", "default");
    c.until(
        30,
        "status",
        || async { dss.get("agent").await.ok() },
        |d| {
            let s = &d["status"];
            s["desiredNumberScheduled"] == 2
                && s["currentNumberScheduled"] == 2
                && s["numberReady"] == 2
                && s["numberAvailable"] == 2
                && s["updatedNumberScheduled"] == 2
                && s["numberMisscheduled"] == 0
                && s["observedGeneration"] == d["metadata"]["generation"]
        },
    )
    .await;
    // A new eligible node gets a pod.
    c.create("", "v1", "nodes", "metadata: {name: n3, labels: {role: worker}}").await;
    c.until(
        30,
        "a pod on n3",
        || async { Some(json!(pods_with(&c, "app=agent").await)) },
        |p| p.as_array().unwrap().iter().any(|p| target(p) == "n3"),
    )
    .await;
    c.until(30, "three ready", || async { dss.get("agent").await.ok() }, |d| d["status"]["numberReady"] == 3).await;

    // A template change replaces pods with at most one unavailable at a time.
    seen.lock().unwrap().2 = true;
    let old_hash = pods[0]["metadata"]["labels"]["controller-revision-hash"].clone();
    dss.patch(
        "agent",
        PatchType::Merge,
        &json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "agent:2"}]}}}}),
    )
    .await
    .unwrap();
    c.until(
        60,
        "updated",
        || async { dss.get("agent").await.ok() },
        |d| {
            d["status"]["observedGeneration"] == d["metadata"]["generation"]
                && d["status"]["updatedNumberScheduled"] == 3
                && d["status"]["numberAvailable"] == 3
        },
    )
    .await;
    let (min_ready, max_pods, _) = *seen.lock().unwrap();
    assert!(min_ready >= 2, "ready daemon pods fell to {min_ready}");
    assert!(max_pods <= 3, "pods rose to {max_pods}");
    let now = pods_with(&c, "app=agent").await;
    assert_eq!(now.len(), 3);
    assert!(
        now.iter().all(|p| p["metadata"]["labels"]["controller-revision-hash"] != old_hash),
        "old hash {old_hash}: {now:#?}"
    );
    // The history is in ControllerRevisions, as `kubectl rollout history` reads it.
    let crs = c.api("apps", "v1", "controllerrevisions", "default");
    let revs = items(&crs.list(&Default::default()).await.unwrap());
    let mut numbers: Vec<(i64, Value)> = revs
        .iter()
        .map(|r| (r["revision"].as_i64().unwrap(), r["metadata"]["labels"]["controller-revision-hash"].clone()))
        .collect();
    numbers.sort_by_key(|n| n.0);
    assert_eq!(numbers.len(), 2, "{revs:#?}");
    assert_eq!((numbers[0].0, numbers[0].1.clone()), (1, old_hash.clone()));
    assert_eq!(numbers[1].0, 2);
    assert_eq!(revs[0]["data"]["spec"]["template"]["$patch"], "replace");
    assert_eq!(revs[0]["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
    // Undo: the first template comes back, its revision is reused (now number 3) and so is its hash.
    dss.patch(
        "agent",
        PatchType::Merge,
        &json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "agent:1"}]}}}}),
    )
    .await
    .unwrap();
    c.until(
        60,
        "rolled back",
        || async { Some(json!(pods_with(&c, "app=agent").await)) },
        |p| {
            let p = p.as_array().unwrap();
            p.len() == 3 && p.iter().all(|p| p["metadata"]["labels"]["controller-revision-hash"] == old_hash)
        },
    )
    .await;
    let first = items(&crs.list(&Default::default()).await.unwrap())
        .into_iter()
        .find(|r| r["metadata"]["labels"]["controller-revision-hash"] == old_hash)
        .unwrap();
    assert_eq!(first["revision"], 3);

    // A NoExecute taint the pod does not tolerate evicts it; desiredNumberScheduled drops.
    seen.lock().unwrap().2 = false;
    let nodes = c.api("", "v1", "nodes", "");
    nodes
        .patch("n3", PatchType::Merge, &json!({"spec": {"taints": [{"key": "maintenance", "effect": "NoExecute"}]}}))
        .await
        .unwrap();
    c.until(
        30,
        "the n3 pod gone",
        || async { Some(json!(pods_with(&c, "app=agent").await)) },
        |p| {
            let p = p.as_array().unwrap();
            p.len() == 2 && p.iter().all(|p| target(p) != "n3")
        },
    )
    .await;
    c.until(30, "desired 2", || async { dss.get("agent").await.ok() }, |d| d["status"]["desiredNumberScheduled"] == 2)
        .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_statefulset_creates_and_removes_pods_at_once() {
    let c = Cluster::start(&["statefulset"], &[]).await;
    c.create(
        "apps",
        "v1",
        "statefulsets",
        r#"
metadata: {name: par}
spec:
  replicas: 3
  podManagementPolicy: Parallel
  serviceName: par
  selector: {matchLabels: {app: par}}
  template:
    metadata: {labels: {app: par}}
    spec: {containers: [{name: c, image: "db:1"}]}
"#,
    )
    .await;
    // No pod is ever Ready here, yet all three exist.
    let pods = c
        .until(
            30,
            "three pods",
            || async { Some(json!(pods_with(&c, "app=par").await)) },
            |p| p.as_array().unwrap().len() == 3,
        )
        .await;
    let mut names: Vec<&str> =
        pods.as_array().unwrap().iter().map(|p| p["metadata"]["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["par-0", "par-1", "par-2"]);
    let sets = c.api("apps", "v1", "statefulsets", "default");
    sets.patch("par", PatchType::Merge, &json!({"spec": {"replicas": 1}})).await.unwrap();
    let pods = c
        .until(
            30,
            "one pod",
            || async { Some(json!(pods_with(&c, "app=par").await)) },
            |p| p.as_array().unwrap().len() == 1,
        )
        .await;
    assert_eq!(pods[0]["metadata"]["name"], "par-0");
    c.until(
        30,
        "status",
        || async { sets.get("par").await.ok() },
        |s| s["status"]["replicas"] == 1 && s["status"]["readyReplicas"].as_i64().unwrap_or(0) == 0,
    )
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_surges_a_new_pod_before_removing_the_old_one() {
    let c = Cluster::start(&["daemonset"], &[]).await;
    for n in ["s1", "s2"] {
        c.create("", "v1", "nodes", &format!("metadata: {{name: {n}}}")).await;
    }
    c.create(
        "apps",
        "v1",
        "daemonsets",
        r#"
metadata: {name: surge}
spec:
  selector: {matchLabels: {app: surge}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}
  template:
    metadata: {labels: {app: surge}}
    spec: {containers: [{name: c, image: "agent:1"}]}
"#,
    )
    .await;
    let (_k, seen) = kubelet(&c, "app=surge");
    let dss = c.api("apps", "v1", "daemonsets", "default");
    c.until(30, "two available", || async { dss.get("surge").await.ok() }, |d| d["status"]["numberAvailable"] == 2)
        .await;
    seen.lock().unwrap().2 = true;
    dss.patch(
        "surge",
        PatchType::Merge,
        &json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "agent:2"}]}}}}),
    )
    .await
    .unwrap();
    c.until(
        60,
        "updated",
        || async { dss.get("surge").await.ok() },
        |d| {
            d["status"]["observedGeneration"] == d["metadata"]["generation"]
                && d["status"]["updatedNumberScheduled"] == 2
                && d["status"]["numberAvailable"] == 2
        },
    )
    .await;
    c.until(
        30,
        "old pods gone",
        || async { Some(json!(pods_with(&c, "app=surge").await)) },
        |p| p.as_array().unwrap().len() == 2,
    )
    .await;
    let (min_ready, max_pods, _) = *seen.lock().unwrap();
    // maxUnavailable 0: two pods ready throughout; maxSurge 1: never more than three pods.
    assert!(min_ready >= 2, "ready daemon pods fell to {min_ready}");
    assert_eq!(max_pods, 3, "one surge pod at a time");
    c.stop().await;
}

/// Plays the kubelet: the pod runs but its readiness probe fails.
async fn make_unready(c: &Cluster, name: &str) {
    let now = jiff::Timestamp::now().to_string();
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "False", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": "False", "lastTransitionTime": now}]}});
    c.api("", "v1", "pods", "default").patch_status(name, PatchType::Merge, &status).await.unwrap();
}

/// Upstream's `processCondemned` (and the e2e "Scaling should happen in predictable order and halt if any stateful
/// pod is unhealthy"): an OrderedReady scale-down removes the highest ordinal first and waits while the next pod to
/// remove is unhealthy, unless it is the first (lowest-ordinal) unhealthy pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_statefulset_scale_down_waits_for_unhealthy_pods() {
    let c = Cluster::start(&["statefulset"], &[]).await;
    c.create(
        "apps",
        "v1",
        "statefulsets",
        r#"
metadata: {name: sd}
spec:
  replicas: 4
  serviceName: sd
  selector: {matchLabels: {app: sd}}
  template:
    metadata: {labels: {app: sd}}
    spec: {containers: [{name: c, image: "db:1"}]}
"#,
    )
    .await;
    let pods = c.api("", "v1", "pods", "default");
    for i in 0..4 {
        let name = format!("sd-{i}");
        let p = c.until(30, &name, || async { pods.get(&name).await.ok() }, |_| true).await;
        make_ready(&c, &p).await;
    }
    let sets = c.api("apps", "v1", "statefulsets", "default");
    c.until(30, "four ready", || async { sets.get("sd").await.ok() }, |s| s["status"]["readyReplicas"] == 4).await;
    let names = || async {
        let mut n: Vec<String> =
            pods_with(&c, "app=sd").await.iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
        n.sort();
        n
    };

    // sd-1 and sd-3 turn unhealthy; scaled to 1, sd-3 (unhealthy, not the first unhealthy pod) blocks the way.
    make_unready(&c, "sd-1").await;
    make_unready(&c, "sd-3").await;
    c.until(30, "two unready", || async { sets.get("sd").await.ok() }, |s| s["status"]["readyReplicas"] == 2).await;
    sets.patch("sd", PatchType::Merge, &json!({"spec": {"replicas": 1}})).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(names().await, ["sd-0", "sd-1", "sd-2", "sd-3"], "scale-down went past the unhealthy sd-3");

    // sd-3 healthy again: it goes, then sd-2, then sd-1 (unhealthy, but the first unhealthy pod), highest first.
    make_ready(&c, &pods.get("sd-3").await.unwrap()).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let now = names().await;
        let expected: Vec<String> = (0..now.len()).map(|i| format!("sd-{i}")).collect();
        assert_eq!(now, expected, "pods removed out of order");
        if now.len() == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "scale-down stuck at {now:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    c.until(30, "status", || async { sets.get("sd").await.ok() }, |s| s["status"]["replicas"] == 1).await;
    c.stop().await;
}
