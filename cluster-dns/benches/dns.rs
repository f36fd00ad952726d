//! cluster-dns benchmark: the release kube-apiserver with 10,000 Services (each with an EndpointSlice of two
//! ready endpoints), the release cluster-dns on one core (`taskset -c 0`), and Debian's `dnsperf` on the other
//! asking for every service's A record over UDP on 127.0.0.1. Run through `bench/cluster-dns.sh`; prints a
//! Markdown table for the README.
//!
//! Figures per Corefile (kubeadm's, with `cache 30`, and the kubernetes plugin alone): time to serve after start
//! (the lists of 20,000 objects), queries per second at saturation, p50/p99 latency at a fixed 20,000 qps, RSS.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use client::Client;
use kube_apiserver::testing::release::{Proc, release, rss_mb, rss_parts, start_apiserver_with};
use serde_json::{Value, json};

const SERVICES: usize = 10_000;

async fn create_all(client: &Client, group: &str, plural: &str, objs: Vec<Value>) {
    let version = "v1";
    let api = client.api(group, version, plural).unwrap().namespaced("bench");
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

fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET /ready HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200")
}

/// dnsperf's figure on the line starting with `label`.
fn figure(out: &str, label: &str) -> f64 {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn dnsperf(port: u16, queries: &Path, args: &[&str]) -> String {
    let out = Command::new("taskset")
        .args(["-c", "1", "dnsperf", "-s", "127.0.0.1", "-p", &port.to_string(), "-d"])
        .arg(queries)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("dnsperf (Debian's dnsperf; deploy/install-deps.sh installs it)");
    String::from_utf8_lossy(&out.stdout).to_string()
}

struct Row {
    name: &'static str,
    sync: Duration,
    qps: f64,
    p50_ms: f64,
    p99_ms: f64,
    lost: f64,
    rss: f64,
}

async fn run(name: &'static str, corefile: &str, dir: &Path, kubeconfig: &Path, queries: &Path) -> Row {
    let (port, rp) = (free_port(), free_port());
    let conf = dir.join(format!("Corefile-{}", name.replace(' ', "-")));
    std::fs::write(&conf, corefile.replace("PORT", &port.to_string()).replace("READY", &rp.to_string())).unwrap();
    let started = Instant::now();
    let child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(release("cluster-dns"))
        .arg("-conf")
        .arg(&conf)
        .arg("-kubeconfig")
        .arg(kubeconfig)
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("release cluster-dns");
    let proc = Proc(child);
    let pid = proc.0.id();
    while !ready(rp) {
        assert!(started.elapsed() < Duration::from_secs(120), "cluster-dns did not become ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sync = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!("{name}: RSS once synced: {}", rss_parts(pid));
    // Warm-up, then saturation.
    dnsperf(port, queries, &["-l", "2", "-q", "500"]);
    let out = dnsperf(port, queries, &["-l", "10", "-q", "500"]);
    let qps = figure(&out, "Queries per second:");
    let lost = figure(&out, "Queries lost:");
    // Latency at a fixed rate well under saturation, every response's latency printed (-v).
    let out = dnsperf(port, queries, &["-l", "5", "-Q", "20000", "-q", "500", "-v"]);
    let mut lat: Vec<f64> = out
        .lines()
        .filter(|l| l.starts_with("> "))
        .filter_map(|l| l.split_whitespace().last().and_then(|v| v.parse::<f64>().ok()))
        .collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0.0) * 1e3
    };
    let (p50_ms, p99_ms) = (pct(0.50), pct(0.99));
    let rss = rss_mb(pid);
    eprintln!("{name}: RSS {rss:.1} MB: {}", rss_parts(pid));
    drop(proc);
    Row { name, sync, qps, p50_ms, p99_ms, lost, rss }
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (_api, client, kubeconfig) =
        start_apiserver_with(dir.path(), &["--service-cluster-ip-range=10.96.0.0/16".to_string()]).await;
    client
        .api("", "v1", "namespaces")
        .unwrap()
        .create(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}))
        .await
        .unwrap();
    let t = Instant::now();
    let services = (0..SERVICES)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
                "spec": {"selector": {"app": format!("svc-{i}")}, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        })
        .collect();
    create_all(&client, "", "services", services).await;
    let slices = (0..SERVICES)
        .map(|i| {
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": format!("svc-{i}-x"), "namespace": "bench", "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
                "addressType": "IPv4",
                "endpoints": [
                    {"addresses": [format!("10.253.{}.{}", i / 250, i % 250 + 1)], "conditions": {"ready": true}},
                    {"addresses": [format!("10.252.{}.{}", i / 250, i % 250 + 1)], "conditions": {"ready": true}}
                ],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
        })
        .collect();
    create_all(&client, "discovery.k8s.io", "endpointslices", slices).await;
    eprintln!("created {SERVICES} services and endpointslices in {:.1}s", t.elapsed().as_secs_f64());

    let queries = dir.path().join("queries");
    let text: String = (0..SERVICES).map(|i| format!("svc-{i}.bench.svc.cluster.local A\n")).collect();
    std::fs::write(&queries, text).unwrap();

    let kubeadm = ".:PORT {\n bind 127.0.0.1\n errors\n health 127.0.0.1:0\n ready 127.0.0.1:READY\n kubernetes cluster.local in-addr.arpa ip6.arpa {\n  pods insecure\n  fallthrough in-addr.arpa ip6.arpa\n  ttl 30\n }\n prometheus 127.0.0.1:0\n cache 30\n loadbalance\n}\n";
    let plain = ".:PORT {\n bind 127.0.0.1\n ready 127.0.0.1:READY\n kubernetes cluster.local {\n  ttl 30\n }\n}\n";
    let rows = [
        run("kubeadm Corefile (cache 30)", kubeadm, dir.path(), &kubeconfig, &queries).await,
        run("kubernetes plugin only", plain, dir.path(), &kubeconfig, &queries).await,
    ];
    println!(
        "\n| cluster-dns, 10,000 Services + EndpointSlices, 1 core | ready after start | qps (saturated) | lost | p50 at 20k qps | p99 at 20k qps | RSS |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.2} s | {:.0} | {:.0} | {:.3} ms | {:.3} ms | {:.1} MB |",
            r.name,
            r.sync.as_secs_f64(),
            r.qps,
            r.lost,
            r.p50_ms,
            r.p99_ms,
            r.rss
        );
    }
}
