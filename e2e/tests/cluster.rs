//! The whole cluster with kubectl, as an operator uses it.

use std::time::{Duration, Instant};

use e2e::{Cluster, Spec, eventually};
use serde_json::Value;

const BUSYBOX: &str = "docker.io/library/busybox:1.36";

fn web(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  strategy: {{type: RollingUpdate, rollingUpdate: {{maxUnavailable: 1, maxSurge: 1}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: httpd\n        image: {BUSYBOX}\n        command: [sh, -c, 'mkdir -p /www && echo v1 > /www/index.html && exec httpd -f -p 8080 -h /www']\n        readinessProbe: {{httpGet: {{path: /index.html, port: 8080}}, periodSeconds: 1}}\n"
    )
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

fn ready(p: &Value) -> bool {
    p["metadata"]["deletionTimestamp"].is_null()
        && p["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Ready pods with `app=<app>`, sampled every 300 ms until `done` flips; returns the smallest count seen.
fn min_ready_while(c: &Cluster, app: &str, done: std::sync::Arc<std::sync::atomic::AtomicBool>) -> usize {
    let mut min = usize::MAX;
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        let pods = c.json(&["get", "pods", "-l", &format!("app={app}")]);
        min = min.min(items(&pods).iter().filter(|p| ready(p)).count());
        std::thread::sleep(Duration::from_millis(300));
    }
    min
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_on_a_containerd_node() {
    let c = Cluster::start(Spec { containerd_node: true, ..Default::default() }).await;
    eventually(60, "the node Ready", || c.kubectl(&["get", "nodes"]).contains(" Ready ").then_some(())).await;
    // A CronJob firing every minute; checked at the end.
    let started = Instant::now();
    c.kubectl(&[
        "create",
        "cronjob",
        "tick",
        &format!("--image={BUSYBOX}"),
        "--schedule=* * * * *",
        "--",
        "echo",
        "tick",
    ]);

    // A Deployment of busybox httpd: scheduled, running, ready.
    c.kubectl_stdin(&["apply", "-f", "-"], &web("web", 3));
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert_eq!(c.kubectl(&["exec", "deploy/web", "--", "cat", "/www/index.html"]), "v1\n");
    c.kubectl(&["scale", "deployment/web", "--replicas=4"]);
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert_eq!(items(&c.json(&["get", "pods", "-l", "app=web"])).iter().filter(|p| ready(p)).count(), 4);

    // A new image (the same busybox under another tag), rolled out with maxUnavailable 1: never fewer than 3 ready.
    let sock = c.containerd_socket().unwrap().display().to_string();
    let tagged = std::process::Command::new("ctr")
        .args(["--address", &sock, "-n", "k8s.io", "images", "tag", BUSYBOX, "docker.io/library/busybox:e2e"])
        .status()
        .unwrap();
    assert!(tagged.success());
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let min = std::thread::scope(|s| {
        let watcher = s.spawn(|| min_ready_while(&c, "web", done.clone()));
        c.kubectl(&["set", "image", "deployment/web", "httpd=docker.io/library/busybox:e2e"]);
        c.kubectl(&["rollout", "status", "deployment/web", "--timeout=180s"]);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        watcher.join().unwrap()
    });
    assert!(min >= 3, "maxUnavailable 1 of 4: at least 3 ready pods throughout, saw {min}");
    let images = |c: &Cluster| -> Vec<String> {
        items(&c.json(&["get", "pods", "-l", "app=web"]))
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .map(|p| p["spec"]["containers"][0]["image"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert!(images(&c).iter().all(|i| i.ends_with(":e2e")), "{:?}", images(&c));
    // Rollback.
    c.kubectl(&["rollout", "undo", "deployment/web"]);
    c.kubectl(&["rollout", "status", "deployment/web", "--timeout=180s"]);
    eventually(60, "old pods gone after the rollback", || images(&c).iter().all(|i| i == BUSYBOX).then_some(())).await;
    let history = c.kubectl(&["rollout", "history", "deployment/web"]);
    assert!(history.contains("2 ") && history.contains("3 "), "{history}");
    assert_eq!(items(&c.json(&["get", "replicasets", "-l", "app=web"])).len(), 2);

    // A Job runs to completion.
    c.kubectl(&["create", "job", "hello", &format!("--image={BUSYBOX}"), "--", "sh", "-c", "echo hi from job"]);
    c.kubectl(&["wait", "--for=condition=complete", "job/hello", "--timeout=90s"]);
    assert_eq!(c.kubectl(&["logs", "job/hello"]), "hi from job\n");

    // Deleting a Deployment removes its ReplicaSets and pods; --cascade=orphan keeps them.
    c.kubectl(&["delete", "deployment", "web"]);
    eventually(60, "web's ReplicaSets and pods collected", || {
        let rs = items(&c.json(&["get", "replicasets", "-l", "app=web"])).len();
        let pods = items(&c.json(&["get", "pods", "-l", "app=web"])).len();
        (rs == 0 && pods == 0).then_some(())
    })
    .await;
    c.kubectl_stdin(&["apply", "-f", "-"], &web("keep", 1));
    c.kubectl(&["rollout", "status", "deployment/keep", "--timeout=120s"]);
    c.kubectl(&["delete", "deployment", "keep", "--cascade=orphan"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rs = items(&c.json(&["get", "replicasets", "-l", "app=keep"]));
    assert_eq!(rs.len(), 1, "the orphaned ReplicaSet stays");
    assert!(rs[0]["metadata"]["ownerReferences"].as_array().is_none_or(|o| o.is_empty()), "{:#}", rs[0]);
    assert_eq!(items(&c.json(&["get", "pods", "-l", "app=keep"])).len(), 1);

    // Deleting a namespace empties it, then it goes.
    c.kubectl(&["create", "namespace", "scratch"]);
    c.kubectl(&["-n", "scratch", "create", "configmap", "junk", "--from-literal=a=b"]);
    c.kubectl(&["-n", "scratch", "create", "deployment", "idle", &format!("--image={BUSYBOX}"), "--", "sleep", "3600"]);
    c.kubectl(&["delete", "namespace", "scratch", "--wait=true", "--timeout=90s"]);
    let out = c.kubectl_output(&["get", "namespace", "scratch"], None);
    assert!(!out.status.success(), "the namespace is gone");

    // drain respects a PodDisruptionBudget: refused while it would break the budget, done once it is gone.
    c.kubectl_stdin(&["apply", "-f", "-"], &web("guarded", 2));
    c.kubectl(&["rollout", "status", "deployment/guarded", "--timeout=120s"]);
    c.kubectl(&["create", "poddisruptionbudget", "guarded", "--selector=app=guarded", "--min-available=2"]);
    eventually(30, "the budget observed", || {
        let pdb = c.json(&["get", "pdb", "guarded"]);
        (pdb["status"]["currentHealthy"] == 2).then_some(())
    })
    .await;
    let out = c.kubectl_output(
        &["drain", "e2e-node", "--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout=8s"],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("disruption budget"), "{err}");
    c.kubectl(&["delete", "pdb", "guarded"]);
    c.kubectl(&["drain", "e2e-node", "--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout=90s"]);
    assert!(items(&c.json(&["get", "pods", "-l", "app=guarded"])).iter().all(|p| p["spec"]["nodeName"].is_null()));
    c.kubectl(&["uncordon", "e2e-node"]);

    // The CronJob has fired by now (or does within its minute).
    let left = 75u64.saturating_sub(started.elapsed().as_secs()).max(5);
    eventually(left, "a Job from the CronJob", || {
        items(&c.json(&["get", "jobs"]))
            .iter()
            .any(|j| j["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("tick-")))
            .then_some(())
    })
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_nodes_with_hollow_kubelets() {
    let mut c = Cluster::start(Spec {
        hollow: vec!["ha".into(), "hb".into(), "hc".into()],
        // Longer than the 10 s between Lease renewals, so healthy nodes never look stale.
        kcm_flags: vec!["--node-monitor-grace-period=15s".into(), "--node-monitor-period=1s".into()],
        ..Default::default()
    })
    .await;
    eventually(60, "three Ready nodes", || {
        (c.kubectl(&["get", "nodes"]).matches(" Ready ").count() == 3).then_some(())
    })
    .await;
    let on_node = |c: &Cluster, sel: &str, node: &str| {
        items(&c.json(&["get", "pods", "-l", sel]))
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && p["spec"]["nodeName"] == node)
            .count()
    };
    // A DaemonSet lands on every node.
    let ds = format!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: agent}}\nspec:\n  selector: {{matchLabels: {{app: agent}}}}\n  template:\n    metadata: {{labels: {{app: agent}}}}\n    spec:\n      containers: [{{name: a, image: {BUSYBOX}, command: [sleep, '3600']}}]\n"
    );
    c.kubectl_stdin(&["apply", "-f", "-"], &ds);
    c.kubectl(&["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    for n in ["ha-0", "hb-0", "hc-0"] {
        assert_eq!(on_node(&c, "app=agent", n), 1, "one agent on {n}");
    }
    // A Deployment spreads over the nodes.
    let spread = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: spread}}\nspec:\n  replicas: 6\n  selector: {{matchLabels: {{app: spread}}}}\n  template:\n    metadata: {{labels: {{app: spread}}}}\n    spec:\n      tolerations: [{{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}}]\n      containers: [{{name: a, image: {BUSYBOX}, command: [sleep, '3600'], resources: {{requests: {{cpu: 100m, memory: 64Mi}}}}}}]\n"
    );
    c.kubectl_stdin(&["apply", "-f", "-"], &spread);
    c.kubectl(&["rollout", "status", "deployment/spread", "--timeout=60s"]);
    for n in ["ha-0", "hb-0", "hc-0"] {
        assert_eq!(on_node(&c, "app=spread", n), 2, "two spread pods on {n}");
    }
    // Required anti-affinity by hostname: one pod per node, and a fourth fits nowhere (and says why: as upstream,
    // the existing pods' anti-affinity is checked first).
    let solo = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: solo}}\nspec:\n  replicas: 3\n  selector: {{matchLabels: {{app: solo}}}}\n  template:\n    metadata: {{labels: {{app: solo}}}}\n    spec:\n      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution: [{{labelSelector: {{matchLabels: {{app: solo}}}}, topologyKey: kubernetes.io/hostname}}]\n      containers: [{{name: a, image: {BUSYBOX}, command: [sleep, '3600']}}]\n"
    );
    c.kubectl_stdin(&["apply", "-f", "-"], &solo);
    c.kubectl(&["rollout", "status", "deployment/solo", "--timeout=60s"]);
    for n in ["ha-0", "hb-0", "hc-0"] {
        assert_eq!(on_node(&c, "app=solo", n), 1, "one solo pod on {n}");
    }
    c.kubectl(&["scale", "deployment/solo", "--replicas=4"]);
    eventually(30, "the fourth solo pod unschedulable", || {
        let pending = items(&c.json(&["get", "pods", "-l", "app=solo", "--field-selector=status.phase=Pending"]));
        let cond =
            pending.first()?["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "PodScheduled")?.clone();
        let msg = cond["message"].as_str()?.to_string();
        (cond["reason"] == "Unschedulable"
            && msg.contains("3 node(s) didn't satisfy existing pods anti-affinity rules"))
        .then_some(())
    })
    .await;
    // Required node affinity picks the node by its hostname label.
    let pinned = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: pinned}}\nspec:\n  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms: [{{matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [hb-0]}}]}}]\n  containers: [{{name: a, image: {BUSYBOX}, command: [sleep, '3600']}}]\n"
    );
    c.kubectl_stdin(&["apply", "-f", "-"], &pinned);
    c.kubectl(&["wait", "--for=condition=Ready", "pod/pinned", "--timeout=60s"]);
    assert_eq!(c.json(&["get", "pod", "pinned"])["spec"]["nodeName"], "hb-0");
    c.kubectl(&["delete", "deployment", "solo", "--wait=false"]);
    c.kubectl(&["delete", "pod", "pinned", "--wait=false"]);
    // A tainted node gets no new pods.
    c.kubectl(&["taint", "nodes", "hc-0", "dedicated=infra:NoSchedule"]);
    c.kubectl(&["scale", "deployment/spread", "--replicas=9"]);
    c.kubectl(&["rollout", "status", "deployment/spread", "--timeout=60s"]);
    assert_eq!(on_node(&c, "app=spread", "hc-0"), 2);
    // A StatefulSet creates its pods in order, with their claims.
    let sts = format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: db}}\nspec:\n  replicas: 2\n  serviceName: db\n  selector: {{matchLabels: {{app: db}}}}\n  template:\n    metadata: {{labels: {{app: db}}}}\n    spec:\n      containers: [{{name: a, image: {BUSYBOX}, command: [sleep, '3600']}}]\n  volumeClaimTemplates:\n  - metadata: {{name: data}}\n    spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}\n"
    );
    c.kubectl_stdin(&["apply", "-f", "-"], &sts);
    c.kubectl(&["rollout", "status", "statefulset/db", "--timeout=60s"]);
    let claims = c.kubectl(&["get", "pvc", "-o", "name"]);
    assert!(claims.contains("data-db-0") && claims.contains("data-db-1"), "{claims}");
    let p0 = c.json(&["get", "pod", "db-0"]);
    let p1 = c.json(&["get", "pod", "db-1"]);
    assert!(p0["metadata"]["creationTimestamp"].as_str() <= p1["metadata"]["creationTimestamp"].as_str());

    // A node stops heartbeating: it turns Unknown and is tainted, its pods are evicted after their toleration,
    // and the Deployment replaces them elsewhere.
    c.stop_hollow("hb");
    eventually(45, "hb-0 unreachable", || {
        let n = c.json(&["get", "node", "hb-0"]);
        let unknown = n["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|x| x["type"] == "Ready" && x["status"] == "Unknown"));
        let tainted = n["spec"]["taints"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["key"] == "node.kubernetes.io/unreachable"));
        (unknown && tainted).then_some(())
    })
    .await;
    eventually(60, "spread pods moved off hb-0", || {
        let pods = items(&c.json(&["get", "pods", "-l", "app=spread"]));
        let live: Vec<&Value> = pods.iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect();
        let on_hb = live.iter().filter(|p| p["spec"]["nodeName"] == "hb-0").count();
        let ready = live.iter().filter(|p| ready(p)).count();
        (on_hb == 0 && ready == 9).then_some(())
    })
    .await;
    assert_eq!(on_node(&c, "app=spread", "hc-0"), 2, "the tainted node still gets nothing new");
    c.stop().await;
}
