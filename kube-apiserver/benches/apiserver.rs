//! Apiserver benchmark: the release kube-apiserver binary over HTTPS with a client certificate, driven by the
//! `client` crate, on the embedded store and on etcd in the same run. Run through `bench/apiserver.sh`.
//!
//! Figures: idle RSS, pod creates per second with 32 clients, p99 of single GETs paced at 1,000/s, LIST of 5,000
//! pods, and how long an event takes to reach each of 1,000 watchers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{Client, ListParams, WatchEvent};
use kube_apiserver::storage::testing::EtcdServer;
use kube_apiserver::testing::release::{Proc, rss_mb, start_apiserver_with};
use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pct(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Server {
    proc: Proc,
    client: Client,
    /// Separate connections for the watchers (HTTP/2 allows 1,000 streams per connection, as upstream).
    watch_clients: Vec<Client>,
    _dir: tempfile::TempDir,
}

async fn start(extra: &[String]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (proc, client, kubeconfig) = start_apiserver_with(dir.path(), extra).await;
    let cfg = client::Config::from_kubeconfig(&kubeconfig).unwrap();
    let watch_clients = (0..4).map(|_| Client::new(&cfg).unwrap()).collect();
    Server { proc, client, watch_clients, _dir: dir }
}

fn pod(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bench"}},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}})
}

#[derive(Default, Clone, Copy)]
struct Figures {
    idle_rss: f64,
    creates_per_sec: f64,
    create_p99: Duration,
    get_p99: Duration,
    get_rate: f64,
    list_p50: Duration,
    list_p99: Duration,
    watch_p99: Duration,
    rss_after: f64,
}

async fn bench(name: &str, server: &Server) -> Figures {
    let mut f = Figures::default();
    tokio::time::sleep(Duration::from_secs(2)).await;
    f.idle_rss = rss_mb(server.proc.0.id());
    let c = &server.client;
    let ns = c.api("", "v1", "namespaces").unwrap();
    ns.create(&json!({"metadata": {"name": "bench"}})).await.unwrap();
    let pods = Arc::new(c.api("", "v1", "pods").unwrap().namespaced("bench"));

    // 1. Pod creates with 32 clients.
    let total = env_usize("BENCH_PODS", 10_000);
    let clients = 32;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..clients {
        let pods = pods.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in (w..total).step_by(clients) {
                let t = Instant::now();
                pods.create(&pod(&format!("p{i:05}"))).await.expect("create");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    f.creates_per_sec = lat.len() as f64 / started.elapsed().as_secs_f64();
    f.create_p99 = pct(&mut lat, 0.99);
    eprintln!("[{name}] {} creates: {:.0}/s", lat.len(), f.creates_per_sec);

    // 2. Single GETs paced at 1,000 per second for 3 seconds.
    let rate = 1000;
    let secs = 3;
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    for i in 0..rate * secs {
        ticker.tick().await;
        let pods = pods.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            pods.get(&format!("p{:05}", (i * 7) % 5000)).await.expect("get");
            t.elapsed()
        }));
    }
    let mut gets = Vec::new();
    for t in tasks {
        gets.push(t.await.unwrap());
    }
    f.get_rate = gets.len() as f64 / started.elapsed().as_secs_f64();
    f.get_p99 = pct(&mut gets, 0.99);

    // 3. LIST of 5,000 pods (a namespace holding exactly that many).
    ns.create(&json!({"metadata": {"name": "list5k"}})).await.unwrap();
    let list_pods = Arc::new(c.api("", "v1", "pods").unwrap().namespaced("list5k"));
    let mut tasks = Vec::new();
    for w in 0..clients {
        let p = list_pods.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..5000).step_by(clients) {
                p.create(&pod(&format!("l{i:05}"))).await.expect("create");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut lists = Vec::new();
    for i in 0..21 {
        let t = Instant::now();
        let l = list_pods.list(&ListParams::default()).await.unwrap();
        if i > 0 {
            lists.push(t.elapsed());
        }
        assert_eq!(l["items"].as_array().unwrap().len(), 5000);
    }
    f.list_p50 = pct(&mut lists, 0.5);
    f.list_p99 = pct(&mut lists, 0.99);
    eprintln!("[{name}] list 5000: p50 {:.1} ms", ms(f.list_p50));

    // 4. 1,000 watchers, one event each round.
    let watchers = env_usize("BENCH_WATCHERS", 1000);
    ns.create(&json!({"metadata": {"name": "watch"}})).await.unwrap();
    let cms = c.api("", "v1", "configmaps").unwrap().namespaced("watch");
    let rv =
        cms.list(&ListParams::default()).await.unwrap()["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let mut handles = Vec::new();
    for i in 0..watchers {
        let p = ListParams { resource_version: Some(rv.clone()), ..Default::default() };
        let wc = &server.watch_clients[i % server.watch_clients.len()];
        let mut events = wc.api("", "v1", "configmaps").unwrap().namespaced("watch").watch(&p).await.unwrap();
        let tx = tx.clone();
        handles.push(tokio::spawn(async move {
            while let Some(Ok(ev)) = events.recv().await {
                if let WatchEvent::Added(o) = ev
                    && tx
                        .send((o["metadata"]["name"].as_str().unwrap_or_default().to_string(), Instant::now()))
                        .is_err()
                {
                    return;
                }
            }
        }));
    }
    drop(tx);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut deliveries = Vec::new();
    for round in 0..10 {
        let name = format!("r{round}");
        let t = Instant::now();
        cms.create(&json!({"metadata": {"name": name}})).await.unwrap();
        let mut got = 0;
        while got < watchers {
            let (n, at) =
                tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("watch timed out").unwrap();
            assert_eq!(n, name);
            deliveries.push(at - t);
            got += 1;
        }
    }
    for h in handles {
        h.abort();
    }
    f.watch_p99 = pct(&mut deliveries, 0.99);
    f.rss_after = rss_mb(server.proc.0.id());
    eprintln!("[{name}] watch p99 {:.1} ms, rss {:.0} MB", ms(f.watch_p99), f.rss_after);
    f
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let s = {
            let server = start(&[]).await;
            bench("embedded", &server).await
        };
        let etcd = EtcdServer::start().expect("etcd (apt-get install etcd-server)");
        let e = {
            let server = start(&[format!("--etcd-servers={}", etcd.endpoint)]).await;
            bench("etcd", &server).await
        };
        println!("| figure | goal (embedded) | embedded (SQLite) | etcd 3.4 | embedded vs etcd |");
        println!("|---|---|---|---|---|");
        let lower = |a: Duration, b: Duration| ms(b) / ms(a).max(0.001);
        println!(
            "| idle RSS | < 40 MB | {:.1} MB | {:.1} MB | {:.1}x |",
            s.idle_rss,
            e.idle_rss,
            e.idle_rss / s.idle_rss.max(0.1)
        );
        println!(
            "| pod creates/s, 32 clients over HTTPS | >= 2,000 | {:.0} | {:.0} | {:.1}x |",
            s.creates_per_sec,
            e.creates_per_sec,
            s.creates_per_sec / e.creates_per_sec.max(1.0)
        );
        println!(
            "| create latency p99 | - | {:.1} ms | {:.1} ms | {:.1}x |",
            ms(s.create_p99),
            ms(e.create_p99),
            lower(s.create_p99, e.create_p99)
        );
        println!(
            "| single GET p99 at 1,000/s (achieved rate) | < 5 ms | {:.1} ms ({:.0}/s) | {:.1} ms ({:.0}/s) | {:.1}x |",
            ms(s.get_p99),
            s.get_rate,
            ms(e.get_p99),
            e.get_rate,
            lower(s.get_p99, e.get_p99)
        );
        println!(
            "| LIST 5,000 pods (p50 / p99) | < 100 ms | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.1}x |",
            ms(s.list_p50),
            ms(s.list_p99),
            ms(e.list_p50),
            ms(e.list_p99),
            lower(s.list_p99, e.list_p99)
        );
        println!(
            "| event to 1,000 watchers p99 | < 100 ms | {:.1} ms | {:.1} ms | {:.1}x |",
            ms(s.watch_p99),
            ms(e.watch_p99),
            lower(s.watch_p99, e.watch_p99)
        );
        println!("| RSS after the run (15,000 pods) | - | {:.0} MB | {:.0} MB | - |", s.rss_after, e.rss_after);
    });
}
