//! kube-proxy at scale, nftables and iptables, in a network namespace of its own: N Services x M endpoints
//! (default 10,000 x 10) in an in-process apiserver, kube-proxy in a child process (the library, as the binary
//! runs it, its tools run with `ip netns exec`). Reports the first full sync time, the network programming
//! latency of single endpoint changes (from the EndpointSlice write, stamped in the
//! `endpoints.kubernetes.io/last-change-trigger-time` annotation, to `nft`/`iptables-restore` returning, i.e.
//! the rule in the kernel), and the proxy's RSS. Needs root.
//!
//! `KPX_SERVICES`, `KPX_ENDPOINTS`, `KPX_CHANGES` and `KPX_MODES` (comma-separated) change the run.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::StreamExt;
use kube_apiserver::testing::TestApiserver;
use serde_json::{Value, json};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SVC_CIDR: &str = "10.254.0.0/16";
const POD_CIDR: &str = "10.249.0.0/16";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn sh(args: &[&str]) -> bool {
    Command::new(args[0]).args(&args[1..]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// The proxy role: kube-proxy against the driver's apiserver until stdin closes, then the latency samples.
fn proxy_role() {
    // The daemon's runtime (kube-proxy's main.rs), so its RSS is measured as deployed.
    runtime::allocator::block_on("kube-proxy", async {
        runtime::daemon::init_logging();
        let kubeconfig = std::env::var("KPX_KUBECONFIG").unwrap();
        let netns = std::env::var("KPX_NETNS").unwrap();
        let mode = kube_proxy::ProxyMode::parse(&std::env::var("KPX_MODE").unwrap()).unwrap();
        let client = client::Client::new(&client::Config::from_kubeconfig(&kubeconfig).unwrap()).unwrap();
        let config = kube_proxy::ProxyConfig {
            mode,
            cluster_cidr: vec![POD_CIDR.into()],
            bind_address: "10.249.255.1".into(),
            healthz_bind_address: String::new(),
            metrics_bind_address: std::env::var("KPX_METRICS").unwrap(),
            ..Default::default()
        };
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let ctx = kube_proxy::Context {
            config,
            client,
            hostname: "kpx-bench-node".into(),
            exec: Arc::new(kube_proxy::exec::RealExec::in_netns(&netns)),
            node_wait: Duration::ZERO,
        };
        let running = kube_proxy::server::start(ctx, stop).await.unwrap();
        let metrics = running.metrics.clone();
        println!("READY");
        // Wait for the driver to close stdin.
        let _ = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            while std::io::stdin().read_line(&mut s).is_ok_and(|n| n > 0) {}
        })
        .await;
        let samples: Vec<f64> = metrics.recent_network_programming().iter().map(Duration::as_secs_f64).collect();
        println!("SAMPLES {}", serde_json::to_string(&samples).unwrap());
        let _ = stop_tx.send(true);
        running.wait().await;
    });
}

fn kubeconfig(api: &TestApiserver, path: &std::path::Path) {
    let b64 = |v: &Option<Vec<u8>>| base64::engine::general_purpose::STANDARD.encode(v.as_deref().unwrap_or_default());
    let c = &api.config;
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
        c.server,
        b64(&c.ca_pem),
        b64(&c.client_cert_pem),
        b64(&c.client_key_pem)
    );
    std::fs::write(path, text).unwrap();
}

fn endpoint_ip(n: usize) -> String {
    let n = n % 65000 + 2;
    format!("10.249.{}.{}", n / 256, n % 256)
}

fn slice(i: usize, endpoints: usize, shift: usize, trigger: Option<String>) -> Value {
    let eps: Vec<Value> = (0..endpoints)
        .map(|j| json!({"addresses": [endpoint_ip(i * endpoints + j + shift)], "conditions": {"ready": true}}))
        .collect();
    let mut s = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("svc-{i}-abc"), "namespace": "default", "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4", "endpoints": eps, "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]});
    if let Some(t) = trigger {
        s["metadata"]["annotations"] = json!({"endpoints.kubernetes.io/last-change-trigger-time": t});
    }
    s
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

async fn scrape(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else { return String::new() };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

fn rss_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        sh(&["ip", "netns", "del", &self.0]);
    }
}

struct RouteGuard;

impl Drop for RouteGuard {
    fn drop(&mut self) {
        sh(&["ip", "route", "del", "blackhole", SVC_CIDR]);
        sh(&["ip", "route", "del", "blackhole", POD_CIDR]);
    }
}

async fn bench_mode(
    round: usize,
    mode: &str,
    api: &TestApiserver,
    dir: &std::path::Path,
    services: usize,
    endpoints: usize,
    changes: usize,
) {
    let netns = format!("kpx-bench-{mode}-{}", std::process::id());
    assert!(sh(&["ip", "netns", "add", &netns]), "ip netns add");
    let _ns = NetnsGuard(netns.clone());
    sh(&["ip", "-n", &netns, "link", "set", "lo", "up"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let start = Instant::now();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("KPX_BENCH_ROLE", "proxy")
        .env("KPX_KUBECONFIG", dir.join("kubeconfig"))
        .env("KPX_NETNS", &netns)
        .env("KPX_MODE", mode)
        .env("KPX_METRICS", &metrics_addr)
        .env("RUST_LOG", std::env::var("KPX_LOG").unwrap_or_else(|_| "warn".into()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "READY");
    // The first full sync.
    let full = loop {
        let m = scrape(&metrics_addr).await;
        if metric(&m, "kubeproxy_sync_full_proxy_rules_duration_seconds_count").unwrap_or(0.0) >= 1.0 {
            break metric(&m, "kubeproxy_sync_full_proxy_rules_duration_seconds_sum").unwrap_or(f64::NAN);
        }
        assert!(start.elapsed() < Duration::from_secs(600), "no full sync after 10 minutes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let to_first_sync = start.elapsed();
    let rss_after_sync = rss_mb(pid, "VmRSS:");
    // Single endpoint changes, spaced past minSyncPeriod (1 s) so each is programmed alone.
    let slices = api.client.api("discovery.k8s.io", "v1", "endpointslices").unwrap().namespaced("default");
    for c in 0..changes {
        let i = (c * 7919) % services;
        let current = slices.get(&format!("svc-{i}-abc")).await.unwrap();
        let now = jiff::Timestamp::now().to_string();
        // A different shift per round and change, so every write changes the endpoints.
        let mut s = slice(i, endpoints, 1 + services * endpoints + round * changes + c, Some(now));
        s["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        slices.replace(&format!("svc-{i}-abc"), &s).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let m = scrape(&metrics_addr).await;
    let syncs = metric(&m, "kubeproxy_sync_proxy_rules_duration_seconds_count").unwrap_or(0.0);
    let partial_sum = metric(&m, "kubeproxy_sync_partial_proxy_rules_duration_seconds_sum").unwrap_or(0.0);
    let partial_count = metric(&m, "kubeproxy_sync_partial_proxy_rules_duration_seconds_count").unwrap_or(0.0);
    let rss = rss_mb(pid, "VmRSS:");
    let hwm = rss_mb(pid, "VmHWM:");
    let (anon, file) = (rss_mb(pid, "RssAnon:"), rss_mb(pid, "RssFile:"));
    drop(child.stdin.take());
    let mut samples: Vec<f64> = Vec::new();
    for l in stdout.lines().map_while(Result::ok) {
        if let Some(j) = l.strip_prefix("SAMPLES ") {
            samples = serde_json::from_str(j).unwrap_or_default();
        }
    }
    let _ = child.wait();
    samples.sort_by(f64::total_cmp);
    println!(
        "{mode:9} services={services} endpoints/service={endpoints}: first full sync {:.3} s (ready {:.1} s after start); \
         endpoint change programmed p50 {:.1} ms p99 {:.1} ms max {:.1} ms ({} samples, partial sync mean {:.1} ms); \
         RSS {:.1} MB after the full sync, {:.1} MB at the end (anonymous {:.1} MB, file-backed {:.1} MB; peak {:.1} MB); \
         {} syncs",
        full,
        to_first_sync.as_secs_f64(),
        percentile(&samples, 0.5) * 1000.0,
        percentile(&samples, 0.99) * 1000.0,
        samples.last().copied().unwrap_or(f64::NAN) * 1000.0,
        samples.len(),
        if partial_count > 0.0 { partial_sum / partial_count * 1000.0 } else { f64::NAN },
        rss_after_sync,
        rss,
        anon,
        file,
        hwm,
        syncs
    );
    let _ = std::io::stdout().flush();
}

fn main() {
    if std::env::var("KPX_BENCH_ROLE").as_deref() == Ok("proxy") {
        return proxy_role();
    }
    // `cargo bench` passes --bench; a plain `cargo test --benches` run passes nothing and should not take minutes.
    if !std::env::args().any(|a| a == "--bench") {
        println!("kube-proxy bench: run with cargo bench -p kube-proxy --bench proxier (needs root)");
        return;
    }
    let services = env_num("KPX_SERVICES", 10_000);
    let endpoints = env_num("KPX_ENDPOINTS", 10);
    let changes = env_num("KPX_CHANGES", 40);
    let modes = std::env::var("KPX_MODES").unwrap_or_else(|_| "nftables,iptables".into());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        assert!(sh(&["ip", "route", "replace", "blackhole", SVC_CIDR]));
        assert!(sh(&["ip", "route", "replace", "blackhole", POD_CIDR]));
        let _routes = RouteGuard;
        let api = TestApiserver::start_with(&[&format!("--service-cluster-ip-range={SVC_CIDR}")]).await;
        let dir = tempfile::tempdir().unwrap();
        kubeconfig(&api, &dir.path().join("kubeconfig"));
        let t = Instant::now();
        let svcs = api.client.api("", "v1", "services").unwrap().namespaced("default");
        let slices = api.client.api("discovery.k8s.io", "v1", "endpointslices").unwrap().namespaced("default");
        futures_util::stream::iter(0..services)
            .map(|i| {
                let (svcs, slices) = (svcs.clone(), slices.clone());
                async move {
                    let ip = format!("10.254.{}.{}", (i + 2) / 256, (i + 2) % 256);
                    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i}"), "namespace": "default"},
                        "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}});
                    svcs.create(&svc).await.unwrap();
                    slices.create(&slice(i, endpoints, 0, None)).await.unwrap();
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
        println!("created {services} Services and EndpointSlices in {:.1} s", t.elapsed().as_secs_f64());
        for (round, mode) in modes.split(',').map(str::trim).filter(|m| !m.is_empty()).enumerate() {
            bench_mode(round, mode, &api, dir.path(), services, endpoints, changes).await;
        }
    });
}
