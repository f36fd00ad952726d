//! kube-proxy at scale, nftables and iptables, in a network namespace of its own: N Services x M endpoints
//! (default 10,000 x 10) in an in-process apiserver, the release `kube-proxy` binary (`KPX_BINARY`, built by
//! `bench/kube-proxy.sh`) started with `ip netns exec`, reaching the apiserver through a relay the bench listens
//! with inside the namespace. Reports the first full sync time, the network programming latency of single
//! endpoint changes (from the EndpointSlice write, stamped in the `endpoints.kubernetes.io/last-change-trigger-time`
//! annotation, to `nft`/`iptables-restore` returning, i.e. the rule in the kernel; read from the proxy's
//! "Network programming" debug lines, as upstream logs them), and the proxy's RSS. Needs root.
//!
//! `KPX_SERVICES`, `KPX_ENDPOINTS`, `KPX_CHANGES` and `KPX_MODES` (comma-separated) change the run;
//! `KPX_SAMPLES=1` also prints each change's latency in order.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::StreamExt;
use kube_apiserver::testing::{TestApiserver, in_netns};
use serde_json::{Value, json};

const SVC_CIDR: &str = "10.254.0.0/16";
const POD_CIDR: &str = "10.249.0.0/16";
const NODE: &str = "kpx-bench-node";
const METRICS: &str = "127.0.0.1:10249";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn sh(args: &[&str]) -> bool {
    Command::new(args[0]).args(&args[1..]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// The kube-proxy binary measured: `KPX_BINARY`, or the workspace's release build.
fn binary() -> std::path::PathBuf {
    let path = std::env::var_os("KPX_BINARY")
        .map(Into::into)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/kube-proxy"));
    assert!(path.exists(), "{}: build it first (bash bench/kube-proxy.sh does)", path.display());
    path
}

/// Listens on the apiserver's address inside `netns` and relays each connection to the apiserver (in this
/// namespace), so the proxy uses the kubeconfig and serving certificate as they are.
async fn relay_apiserver(netns: &str, api: std::net::SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = in_netns(netns, move || std::net::TcpListener::bind(api).expect("bind in netns"));
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    tokio::spawn(async move {
        while let Ok((mut inside, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outside) = tokio::net::TcpStream::connect(api).await {
                    let _ = tokio::io::copy_bidirectional(&mut inside, &mut outside).await;
                }
            });
        }
    })
}

/// The proxy's `/metrics`, fetched from inside its namespace.
async fn scrape(netns: &str) -> String {
    let netns = netns.to_string();
    tokio::task::spawn_blocking(move || {
        in_netns(&netns, || {
            let Ok(mut s) = std::net::TcpStream::connect(METRICS) else { return String::new() };
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        })
    })
    .await
    .unwrap_or_default()
}

/// The `elapsed` seconds of a "Network programming" log line (ANSI colours removed).
fn programming_latency(line: &str) -> Option<f64> {
    if !line.contains("Network programming") {
        return None;
    }
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            plain.push(c);
        }
    }
    let rest = &plain[plain.find("elapsed=")? + "elapsed=".len()..];
    rest.split_whitespace().next()?.parse().ok()
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
    let api_addr: std::net::SocketAddr =
        api.config.server.trim_start_matches("https://").trim_end_matches('/').parse().expect("apiserver address");
    let relay = relay_apiserver(&netns, api_addr).await;
    let start = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &netns])
        .arg(binary())
        .arg(format!("--kubeconfig={}", dir.join("kubeconfig").display()))
        .args([
            &format!("--proxy-mode={mode}"),
            &format!("--hostname-override={NODE}"),
            &format!("--cluster-cidr={POD_CIDR}"),
            &format!("--metrics-bind-address={METRICS}"),
            "--healthz-bind-address=127.0.0.1:10256",
            // The namespace's conntrack settings are not what is measured: leave them.
            "--conntrack-max-per-core=0",
            "--conntrack-tcp-timeout-established=0s",
            "--conntrack-tcp-timeout-close-wait=0s",
        ])
        .env(
            "RUST_LOG",
            std::env::var("KPX_LOG")
                .unwrap_or_else(|_| "warn,kube_proxy::provider=debug,kube_proxy::nftables=debug".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `ip netns exec` execs the proxy: same process.
    let pid = child.id();
    let samples: Arc<Mutex<Vec<f64>>> = Arc::default();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let reader = {
        let samples = samples.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                match programming_latency(&line) {
                    Some(s) => samples.lock().unwrap().push(s),
                    None if line.contains("WARN") || line.contains("ERROR") || line.contains("full sync") => {
                        eprintln!("kube-proxy: {line}")
                    }
                    None => {}
                }
            }
        })
    };
    // The first full sync.
    let full = loop {
        let m = scrape(&netns).await;
        if metric(&m, "kubeproxy_sync_full_proxy_rules_duration_seconds_count").unwrap_or(0.0) >= 1.0 {
            break metric(&m, "kubeproxy_sync_full_proxy_rules_duration_seconds_sum").unwrap_or(f64::NAN);
        }
        assert!(start.elapsed() < Duration::from_secs(600), "no full sync after 10 minutes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let to_first_sync = start.elapsed();
    let rss_after_sync = rss_mb(pid, "VmRSS:");
    // Single endpoint changes, spaced past minSyncPeriod (1 s) so each is programmed alone; the first one too,
    // after the full sync (otherwise its sample holds the runner's wait for the period to pass).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let slices = api.client.api("discovery.k8s.io", "v1", "endpointslices").unwrap().namespaced("default");
    let mut writes = Vec::new();
    for c in 0..changes {
        let i = (c * 7919) % services;
        let current = slices.get(&format!("svc-{i}-abc")).await.unwrap();
        let now = jiff::Timestamp::now().to_string();
        // A different shift per round and change, so every write changes the endpoints.
        let mut s = slice(i, endpoints, 1 + services * endpoints + round * changes + c, Some(now));
        s["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        let write = Instant::now();
        slices.replace(&format!("svc-{i}-abc"), &s).await.unwrap();
        writes.push(write.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let m = scrape(&netns).await;
    let syncs = metric(&m, "kubeproxy_sync_proxy_rules_duration_seconds_count").unwrap_or(0.0);
    let partial_sum = metric(&m, "kubeproxy_sync_partial_proxy_rules_duration_seconds_sum").unwrap_or(0.0);
    let partial_count = metric(&m, "kubeproxy_sync_partial_proxy_rules_duration_seconds_count").unwrap_or(0.0);
    let rss = rss_mb(pid, "VmRSS:");
    let hwm = rss_mb(pid, "VmHWM:");
    let (anon, file) = (rss_mb(pid, "RssAnon:"), rss_mb(pid, "RssFile:"));
    sh(&["kill", "-TERM", &pid.to_string()]);
    let _ = child.wait();
    let _ = reader.join();
    relay.abort();
    let mut samples = std::mem::take(&mut *samples.lock().unwrap());
    if std::env::var_os("KPX_SAMPLES").is_some() {
        let ms: Vec<String> = samples.iter().map(|s| format!("{:.1}", s * 1000.0)).collect();
        println!("{mode}: change latencies in order (ms): {}", ms.join(" "));
        let ms: Vec<String> = writes.iter().map(|w| format!("{w:.1}")).collect();
        println!("{mode}: EndpointSlice writes, in order (ms, part of the above): {}", ms.join(" "));
    }
    // Each sample less its EndpointSlice write's time in the apiserver (samples and writes pair up in order when
    // every change made exactly one sample): what kube-proxy itself took, from the stored write to the kernel.
    let mut proxy_only: Vec<f64> = match samples.len() == writes.len() {
        true => samples.iter().zip(&writes).map(|(s, w)| (s - w / 1000.0).max(0.0)).collect(),
        false => Vec::new(),
    };
    proxy_only.sort_by(f64::total_cmp);
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
    if !proxy_only.is_empty() {
        println!(
            "{mode:9} without the apiserver's write of the EndpointSlice: p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
            percentile(&proxy_only, 0.5) * 1000.0,
            percentile(&proxy_only, 0.99) * 1000.0,
            proxy_only.last().copied().unwrap_or(f64::NAN) * 1000.0,
        );
    }
    let _ = std::io::stdout().flush();
}

fn main() {
    // `cargo bench` passes --bench; a plain `cargo test --benches` run passes nothing and should not take minutes.
    if !std::env::args().any(|a| a == "--bench") {
        println!("kube-proxy bench: run with cargo bench -p kube-proxy --bench proxier (needs root)");
        return;
    }
    let binary = binary();
    println!(
        "kube-proxy binary: {} ({:.1} MB)",
        binary.display(),
        std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0) as f64 / 1e6
    );
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
        // The proxy's Node (its IP and labels), as a kubelet would have registered it.
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.249.255.1"}]}});
        api.client.api("", "v1", "nodes").unwrap().create(&node).await.unwrap();
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
