//! Kubelet benchmark: the release kube-apiserver and kubelet binaries with a private containerd (root), and the
//! kubelet's hollow-node mode. Run through `bench/kubelet.sh`; prints a Markdown table for the README.
//!
//! Figures: 30 pods created at once until all are Running (seen through a watch), p99 startup; kubelet RSS idle and
//! with 110 pods; idle CPU; churn: 300 pods with liveness and readiness probes (one passing, one failing) created
//! and deleted in waves of 100, then the kubelet's idle CPU and RSS again; 1,000 hollow nodes in one process (RSS
//! once all are Ready).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use client::{Client, ListParams, WatchEvent};
use kube_apiserver::testing::release::{Proc, cpu_secs, release, rss_mb, rss_parts, start_apiserver};
use serde_json::json;

async fn ready_nodes(client: &Client) -> usize {
    let Ok(list) = client.api("", "v1", "nodes").unwrap().list(&ListParams::default()).await else { return 0 };
    list["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|n| {
                    n["status"]["conditions"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
                })
                .count()
        })
        .unwrap_or(0)
}

fn pod(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"nodeName": "bench-node", "hostNetwork": true, "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "c", "image": "docker.io/library/busybox:1.36", "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]}})
}

/// A pod with a passing liveness probe (the kubelet's own port) and a failing readiness probe (a closed port), both
/// every second: cheap for the runtime, busy for the probers.
fn probed_pod(name: &str, kubelet_port: u16) -> serde_json::Value {
    let mut p = pod(name);
    p["spec"]["containers"][0]["livenessProbe"] =
        json!({"tcpSocket": {"host": "127.0.0.1", "port": kubelet_port}, "periodSeconds": 1});
    p["spec"]["containers"][0]["readinessProbe"] =
        json!({"tcpSocket": {"host": "127.0.0.1", "port": 1}, "periodSeconds": 1});
    p
}

/// Deletes every pod in `default` and waits until they are gone.
async fn delete_all(client: &Client) {
    let pods = client.api("", "v1", "pods").unwrap().namespaced("default");
    let list = pods.list(&ListParams::default()).await.unwrap();
    for p in list["items"].as_array().into_iter().flatten() {
        let _ = pods.delete(p["metadata"]["name"].as_str().unwrap_or_default(), None).await;
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    while !pods.list(&ListParams::default()).await.unwrap()["items"].as_array().is_none_or(|a| a.is_empty()) {
        assert!(Instant::now() < deadline, "pods were not all deleted");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Creates pods `names` at once and returns each one's time from create to Running (seen through a watch).
async fn start_pods(client: &Client, names: &[String]) -> Vec<Duration> {
    start_pods_as(client, names, pod).await
}

async fn start_pods_as(client: &Client, names: &[String], make: impl Fn(&str) -> serde_json::Value) -> Vec<Duration> {
    let pods = client.api("", "v1", "pods").unwrap().namespaced("default");
    let rv =
        pods.list(&ListParams::default()).await.unwrap()["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let mut events = pods.watch(&ListParams { resource_version: Some(rv), ..Default::default() }).await.unwrap();
    let started = Instant::now();
    let mut created = std::collections::HashMap::new();
    let mut tasks = Vec::new();
    for n in names {
        let (pods, n, body) = (pods.clone(), n.clone(), make(n));
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            pods.create(&body).await.expect("create pod");
            (n, t)
        }));
    }
    for t in tasks {
        let (n, at) = t.await.unwrap();
        created.insert(n, at);
    }
    let mut out = Vec::new();
    let deadline = started + Duration::from_secs(120);
    while out.len() < names.len() {
        let ev = tokio::time::timeout_at(deadline.into(), events.recv())
            .await
            .expect("pods did not all start")
            .unwrap()
            .unwrap();
        if let WatchEvent::Modified(p) = ev
            && p["status"]["phase"] == "Running"
            && let Some(at) = created.remove(p["metadata"]["name"].as_str().unwrap_or_default())
        {
            out.push(at.elapsed());
        }
    }
    out
}

/// The runtime's floor: the same 30 pods (a host-network sandbox and one busybox container each) started straight
/// through CRI, all at once, with no kubelet or apiserver; each one's time to its container started. Removed after.
async fn cri_floor(endpoint: &str, dir: &std::path::Path) -> Vec<Duration> {
    use proto::cri::*;
    let cri = proto::Cri::connect(endpoint).await.unwrap();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..30 {
        let mut rt = cri.runtime.clone();
        let logs = dir.join(format!("floor-{i}"));
        std::fs::create_dir_all(&logs).unwrap();
        tasks.push(tokio::spawn(async move {
            let sandbox = PodSandboxConfig {
                metadata: Some(PodSandboxMetadata {
                    name: format!("floor-{i}"),
                    uid: format!("floor-uid-{i}"),
                    namespace: "bench".into(),
                    attempt: 0,
                }),
                log_directory: logs.display().to_string(),
                linux: Some(LinuxPodSandboxConfig {
                    security_context: Some(LinuxSandboxSecurityContext {
                        namespace_options: Some(NamespaceOption {
                            network: NamespaceMode::Node as i32,
                            pid: NamespaceMode::Container as i32,
                            ipc: NamespaceMode::Pod as i32,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let id = rt
                .run_pod_sandbox(RunPodSandboxRequest { config: Some(sandbox.clone()), runtime_handler: String::new() })
                .await
                .unwrap()
                .into_inner()
                .pod_sandbox_id;
            let container = ContainerConfig {
                metadata: Some(ContainerMetadata { name: "c".into(), attempt: 0 }),
                image: Some(ImageSpec { image: "docker.io/library/busybox:1.36".into(), ..Default::default() }),
                command: vec!["sleep".into(), "3600".into()],
                log_path: "c/0.log".into(),
                linux: Some(LinuxContainerConfig::default()),
                ..Default::default()
            };
            let cid = rt
                .create_container(CreateContainerRequest {
                    pod_sandbox_id: id.clone(),
                    config: Some(container),
                    sandbox_config: Some(sandbox),
                })
                .await
                .unwrap()
                .into_inner()
                .container_id;
            rt.start_container(StartContainerRequest { container_id: cid }).await.unwrap();
            (started.elapsed(), id)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        let (d, id) = t.await.unwrap();
        out.push(d);
        let mut rt = cri.runtime.clone();
        let _ = rt.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id.clone() }).await;
        let _ = rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id }).await;
    }
    out.sort();
    out
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[((sorted.len() as f64 * 0.99).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (_api, client, kubeconfig) = start_apiserver(dir.path()).await;
        let ctd = tokio::task::spawn_blocking({
            let base = dir.path().to_path_buf();
            move || proto::testing::Containerd::start(&base)
        })
        .await
        .unwrap()
        .expect("containerd (apt-get install containerd runc)");
        let floor = cri_floor(&ctd.endpoint(), dir.path()).await;
        let kport = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let kubelet = Proc(
            Command::new(release("kubelet"))
                .args([
                    format!("--kubeconfig={}", kubeconfig.display()),
                    format!("--container-runtime-endpoint={}", ctd.endpoint()),
                    "--hostname-override=bench-node".into(),
                    "--node-ip=127.0.0.1".into(),
                    format!("--root-dir={}", dir.path().join("kubelet").display()),
                    format!("--cgroup-root={}", ctd.cgroup_root),
                    format!("--port={kport}"),
                ])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .expect("release kubelet"),
        );
        let pid = kubelet.0.id();
        let deadline = Instant::now() + Duration::from_secs(30);
        while ready_nodes(&client).await < 1 {
            assert!(Instant::now() < deadline, "the kubelet did not register");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle_rss = rss_mb(pid);
        let cpu0 = cpu_secs(pid);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let idle_cpu = (cpu_secs(pid) - cpu0) / 10.0 * 100.0;

        eprintln!("idle: {}", rss_parts(pid));
        let names: Vec<String> = (0..30).map(|i| format!("burst-{i}")).collect();
        let mut startup = start_pods(&client, &names).await;
        startup.sort();
        let p50 = startup[startup.len() / 2];
        let p99 = p99(&startup);
        let more: Vec<String> = (0..80).map(|i| format!("fill-{i}")).collect();
        start_pods(&client, &more).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss_110 = rss_mb(pid);
        delete_all(&client).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let rss_deleted = rss_mb(pid);

        // Churn: 300 probed pods in waves of 100, each wave started and deleted; then idle again. Twice: the second
        // round shows whether memory grows with the pods seen or stays at what the busiest moment needed.
        let mut churn_rss = Vec::new();
        let mut churn_cpu = 0.0;
        for round in 0..2 {
            for wave in 0..3 {
                let names: Vec<String> = (0..100).map(|i| format!("churn-{round}-{wave}-{i}")).collect();
                start_pods_as(&client, &names, |n| probed_pod(n, kport)).await;
                tokio::time::sleep(Duration::from_secs(3)).await;
                delete_all(&client).await;
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            let cpu0 = cpu_secs(pid);
            tokio::time::sleep(Duration::from_secs(30)).await;
            churn_cpu = (cpu_secs(pid) - cpu0) / 30.0 * 100.0;
            churn_rss.push(rss_mb(pid));
            eprintln!("after churn round {}: {}", round + 1, rss_parts(pid));
        }
        drop(kubelet);
        drop(ctd);

        // Hollow nodes in their own process.
        let hollow_count: usize = std::env::var("BENCH_HOLLOW").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
        let hollow = Proc(
            Command::new(release("kubelet"))
                .args([
                    format!("--kubeconfig={}", kubeconfig.display()),
                    format!("--hollow-nodes={hollow_count}"),
                    format!("--root-dir={}", dir.path().join("hollow").display()),
                ])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .expect("release kubelet (hollow)"),
        );
        let started = Instant::now();
        let deadline = started + Duration::from_secs(300);
        while ready_nodes(&client).await < hollow_count + 1 {
            assert!(Instant::now() < deadline, "hollow nodes did not all become Ready");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let all_ready = started.elapsed();
        tokio::time::sleep(Duration::from_secs(15)).await;
        let hollow_rss = rss_mb(hollow.0.id());
        let still_ready = ready_nodes(&client).await;
        drop(hollow);

        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!("| figure | goal | measured | measured / goal |");
        println!("|---|---|---|---|");
        println!("| 30 pods at once: startup p50 / p99 (create to Running, real containerd) | p99 < 1 s | {:.0} / {:.0} ms | {:.2} |", ms(p50), ms(p99), ms(p99) / 1000.0);
        let (f50, f99) = (floor[floor.len() / 2], self::p99(&floor));
        println!("| the same 30 pods straight through CRI, no kubelet (the runtime's floor) | - | {:.0} / {:.0} ms | kubelet p99 / floor p99: {:.2} |", ms(f50), ms(f99), ms(p99) / ms(f99));
        println!("| kubelet RSS idle | < 30 MB | {idle_rss:.1} MB | {:.2} |", idle_rss / 30.0);
        println!("| kubelet RSS with 110 pods | < 80 MB | {rss_110:.1} MB | {:.2} |", rss_110 / 80.0);
        println!("| kubelet idle CPU | < 1% of a core | {idle_cpu:.2}% | {:.2} |", idle_cpu / 1.0);
        println!("| kubelet RSS once those 110 pods are deleted | - | {rss_deleted:.1} MB | - |");
        println!("| after 300 probed pods created and deleted in waves: idle CPU (over 30 s) | < 1% of a core | {churn_cpu:.2}% | {:.2} |", churn_cpu / 1.0);
        println!("| after the churn: RSS (idle figure + 5 MB at most), after one round / two | < {:.1} MB | {:.1} / {:.1} MB | {:.2} |", idle_rss + 5.0, churn_rss[0], churn_rss[1], churn_rss[1] / (idle_rss + 5.0));
        println!("| {hollow_count} hollow nodes: RSS once Ready (time to all Ready) | < 1 GB | {hollow_rss:.0} MB ({:.1} s) | {:.2} |", all_ready.as_secs_f64(), hollow_rss / 1024.0);
        println!("| hollow nodes still Ready 15 s later (heartbeating) | all | {} of {hollow_count} | - |", still_ready.saturating_sub(1));
    });
}
