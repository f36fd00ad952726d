//! Scheduler benchmark: the release kube-apiserver, kube-scheduler and kube-controller-manager binaries. Node
//! objects stand in for nodes (the scheduler only reads them; upstream's scheduler_perf does the same). Run through
//! `bench/scheduler.sh`; prints a Markdown table for the README.
//!
//! Figures: control-plane idle RSS; pods bound per second with 1,000 and with 5,000 nodes (create to bound, seen
//! through a watch).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use client::{Client, ListParams, WatchEvent};
use kube_apiserver::testing::release::{Proc, cpu_secs, release, rss_mb, start_apiserver};
use serde_json::{Value, json};

fn node(i: usize) -> Value {
    let name = format!("node-{i}");
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}},
        "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                   "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]}})
}

async fn create_all(client: &Client, plural: &str, objs: Vec<Value>) {
    let api = client.api("", "v1", plural).unwrap();
    let api = if plural == "pods" { api.namespaced("default") } else { api };
    let objs = std::sync::Arc::new(std::sync::Mutex::new(objs));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (api, objs) = (api.clone(), objs.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(o) = objs.lock().unwrap().pop() else { return };
                api.create(&o).await.expect("create");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Creates `n` pods named `<prefix>-<i>` and returns pods bound per second (first create to last binding).
async fn schedule(client: &Client, prefix: &str, n: usize) -> f64 {
    let pods = client.api("", "v1", "pods").unwrap().namespaced("default");
    let rv =
        pods.list(&ListParams { limit: Some(1), ..Default::default() }).await.unwrap()["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
    let mut events = pods.watch(&ListParams { resource_version: Some(rv), ..Default::default() }).await.unwrap();
    let objs: Vec<Value> = (0..n)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("{prefix}-{i}"), "labels": {"app": prefix}},
                "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}}]}})
        })
        .collect();
    let started = Instant::now();
    let creating = {
        let client = client.clone();
        tokio::spawn(async move { create_all(&client, "pods", objs).await })
    };
    let mut bound = std::collections::HashSet::new();
    let deadline = started + Duration::from_secs(300);
    while bound.len() < n {
        let ev = tokio::time::timeout_at(deadline.into(), events.recv())
            .await
            .expect("pods were not all bound")
            .unwrap()
            .unwrap();
        if let WatchEvent::Modified(p) | WatchEvent::Added(p) = ev
            && p["spec"]["nodeName"].is_string()
            && let Some(name) = p["metadata"]["name"].as_str()
            && name.starts_with(prefix)
        {
            bound.insert(name.to_string());
        }
    }
    let elapsed = started.elapsed();
    creating.await.unwrap();
    n as f64 / elapsed.as_secs_f64()
}

/// 1,000 hollow nodes (one kubelet process), the controller-manager and the scheduler: a Deployment of
/// `replicas` pods, timed from create until the Deployment reports them all available.
async fn deployment_on_hollow_nodes(replicas: usize) -> (Option<f64>, u64, f64) {
    let dir = tempfile::tempdir().unwrap();
    // The hollow kubelets' pod directories on tmpfs, as kubemark's hollow nodes keep them in memory: they stand
    // for 1,000 machines' disks, not this one's.
    let hollow_root = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap();
    let (api, client, kubeconfig) = start_apiserver(dir.path()).await;
    let run = |bin: &str, extra: &[String]| {
        let mut args = vec![format!("--kubeconfig={}", kubeconfig.display())];
        args.extend(extra.iter().cloned());
        Proc(
            Command::new(release(bin))
                .args(args)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                // Pod workers cut off at the end warn by the thousand.
                .stderr(if bin == "kubelet" { Stdio::null() } else { Stdio::inherit() })
                .spawn()
                .unwrap_or_else(|e| panic!("release {bin}: {e}")),
        )
    };
    let hollow =
        run("kubelet", &["--hollow-nodes=1000".into(), format!("--root-dir={}", hollow_root.path().display())]);
    let off = ["--leader-elect=false".to_string(), "--secure-port=0".to_string()];
    let scheduler = run("kube-scheduler", &off);
    let kcm = run("kube-controller-manager", &off);
    let nodes = client.api("", "v1", "nodes").unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = nodes
            .list(&ListParams::default())
            .await
            .map(|l| l["items"].as_array().map(Vec::len).unwrap_or(0))
            .unwrap_or(0);
        if n >= 1000 {
            break;
        }
        assert!(Instant::now() < deadline, "hollow nodes did not register");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let procs =
        [("apiserver", api.0.id()), ("hollow", hollow.0.id()), ("scheduler", scheduler.0.id()), ("kcm", kcm.0.id())];
    let cpu_idle: Vec<f64> = procs.iter().map(|p| cpu_secs(p.1)).collect();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle: Vec<String> =
        procs.iter().zip(&cpu_idle).map(|(p, c0)| format!("{} {:.1}%", p.0, (cpu_secs(p.1) - c0) * 10.0)).collect();
    eprintln!("idle with 1,000 hollow nodes: CPU {}", idle.join(", "));
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "big", "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "big"}},
                 "template": {"metadata": {"labels": {"app": "big"}},
                              "spec": {"containers": [{"name": "c", "image": "docker.io/library/busybox:1.36", "command": ["sleep", "3600"],
                                                       "resources": {"requests": {"cpu": "10m", "memory": "10Mi"}}}]}}}});
    let deployments = client.api("apps", "v1", "deployments").unwrap().namespaced("default");
    let started = Instant::now();
    deployments.create(&deploy).await.expect("create deployment");
    // Given up after 120 s: the figure is then how many were available by then.
    let deadline = started + Duration::from_secs(120);
    let mut available = 0;
    let cpu0: Vec<f64> = procs.iter().map(|p| cpu_secs(p.1)).collect();
    let mut next_report = started + Duration::from_secs(5);
    loop {
        let d = deployments.get("big").await.unwrap();
        available = d["status"]["availableReplicas"].as_u64().unwrap_or(available);
        if Instant::now() >= next_report {
            // Progress on stderr: available pods and each process's CPU seconds since the create.
            let cpu: Vec<String> =
                procs.iter().zip(&cpu0).map(|(p, c0)| format!("{} {:.1}s", p.0, cpu_secs(p.1) - c0)).collect();
            eprintln!("{:>5.1}s: {available} available; CPU {}", started.elapsed().as_secs_f64(), cpu.join(", "));
            next_report += Duration::from_secs(5);
        }
        if available == replicas as u64 {
            return (Some(started.elapsed().as_secs_f64()), available, rss_mb(hollow.0.id()));
        }
        if Instant::now() > deadline {
            return (None, available, rss_mb(hollow.0.id()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let pods: usize = std::env::var("BENCH_PODS").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // BENCH_ONLY=deployment runs the hollow-node Deployment figure alone, BENCH_ONLY=scheduling all but it.
    let only_deployment = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "deployment");
    rt.block_on(async {
        if only_deployment {
            deployment_figure().await;
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (api, client, kubeconfig) = start_apiserver(dir.path()).await;
        let run = |bin: &str| {
            Proc(
                Command::new(release(bin))
                    .args([format!("--kubeconfig={}", kubeconfig.display()), "--leader-elect=false".into(), "--secure-port=0".into()])
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("release {bin}: {e}")),
            )
        };
        let scheduler = run("kube-scheduler");
        let kcm = run("kube-controller-manager");
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (api_rss, sched_rss, kcm_rss) = (rss_mb(api.0.id()), rss_mb(scheduler.0.id()), rss_mb(kcm.0.id()));

        create_all(&client, "nodes", (0..1000).map(node).collect()).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (c_api, c_sched) = (cpu_secs(api.0.id()), cpu_secs(scheduler.0.id()));
        let rate_1k = schedule(&client, "a", pods).await;
        let (cpu_api, cpu_sched) = (cpu_secs(api.0.id()) - c_api, cpu_secs(scheduler.0.id()) - c_sched);
        create_all(&client, "nodes", (1000..5000).map(node).collect()).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rate_5k = schedule(&client, "b", pods).await;
        let sched_busy_rss = rss_mb(scheduler.0.id());
        drop((scheduler, kcm, api));

        let idle = api_rss + sched_rss + kcm_rss;
        println!("| figure | goal | measured | measured / goal |");
        println!("|---|---|---|---|");
        println!("| control plane idle RSS (apiserver {api_rss:.1} + scheduler {sched_rss:.1} + controller-manager {kcm_rss:.1} MB) | < 100 MB | {idle:.1} MB | {:.2} |", idle / 100.0);
        println!("| pods bound per second, 1,000 nodes ({pods} pods, create to bound) | > 1,000 /s | {rate_1k:.0} /s | {:.2} |", rate_1k / 1000.0);
        println!("| CPU per pod in that run: apiserver / scheduler | - | {:.2} / {:.2} ms | - |", cpu_api * 1000.0 / pods as f64, cpu_sched * 1000.0 / pods as f64);
        println!("| pods bound per second, 5,000 nodes ({pods} pods) | > 500 /s | {rate_5k:.0} /s | {:.2} |", rate_5k / 500.0);
        println!("| scheduler RSS after 5,000 nodes and {} pods | - | {sched_busy_rss:.1} MB | - |", 2 * pods);
        if std::env::var("BENCH_ONLY").is_err() {
            deployment_figure().await;
        }
    });
}

async fn deployment_figure() {
    let replicas: usize = std::env::var("BENCH_REPLICAS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let (deploy_secs, available, hollow_rss) = deployment_on_hollow_nodes(replicas).await;
    match deploy_secs {
        Some(secs) => println!(
            "| Deployment of {replicas} pods on 1,000 hollow nodes: create to all available (hollow kubelets {hollow_rss:.0} MB) | < 30 s | {secs:.1} s | {:.2} |",
            secs / 30.0
        ),
        None => println!(
            "| Deployment of {replicas} pods on 1,000 hollow nodes: create to all available (hollow kubelets {hollow_rss:.0} MB) | < 30 s | not reached: {available} available after 120 s | - |"
        ),
    }
}
