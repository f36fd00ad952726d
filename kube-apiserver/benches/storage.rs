//! Storage benchmark: the embedded store and etcd side by side, measured in the same run.
//! Run through `bench/storage.sh` (which builds in release mode); prints a Markdown table for the README.
//!
//! Figures: acknowledged writes per second with 64 concurrent writers and their p99 latency, the time to list
//! 5,000 keys, how long a write takes to reach each of 1,000 watchers (p99), and the longest any write waits while
//! a compaction pass runs over a long history.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kube_apiserver::storage::etcd::{EtcdConfig, EtcdStore};
use kube_apiserver::storage::sqlite::{SqliteConfig, SqliteStore};
use kube_apiserver::storage::testing::EtcdServer;
use kube_apiserver::storage::{Event, ListOptions, Storage};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[idx]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A Kubernetes-object-sized value (about 1.5 KiB).
fn value(i: usize) -> Bytes {
    let mut v = format!("{{\"kind\":\"Pod\",\"metadata\":{{\"name\":\"p{i}\"}},\"spec\":\"").into_bytes();
    v.resize(1500, b'x');
    v.extend_from_slice(b"\"}");
    Bytes::from(v)
}

#[derive(Default, Clone, Copy)]
struct Figures {
    writes_per_sec: f64,
    write_p99: Duration,
    list_p50: Duration,
    list_p99: Duration,
    watch_p99: Duration,
    watch_max: Duration,
    compaction_stall: Duration,
    baseline_stall: Duration,
    compaction_pass: Duration,
}

/// `compacting` tells whether a compaction pass is still removing history (etcd's compact call returns when done).
async fn bench<S: Storage>(name: &str, store: Arc<S>, compacting: impl Fn() -> bool) -> Figures {
    let mut f = Figures::default();
    let writers = 64;
    let total = env_usize("BENCH_WRITES", 40_000);

    // 1. Throughput and latency of acknowledged writes with 64 concurrent writers.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(total / writers);
            for i in 0..total / writers {
                let t = Instant::now();
                store.create(&format!("/bench/writes/w{w}-{i}"), value(i), None).await.expect("write");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    f.writes_per_sec = lat.len() as f64 / elapsed.as_secs_f64();
    f.write_p99 = percentile(&mut lat, 0.99);
    eprintln!("[{name}] {} writes in {:.2}s", lat.len(), elapsed.as_secs_f64());

    // 2. A list of 5,000 keys.
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..5000).step_by(writers) {
                store.create(&format!("/bench/list/ns/p{i:05}"), value(i), None).await.expect("write");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut lists = Vec::new();
    for i in 0..51 {
        let t = Instant::now();
        let l = store.list("/bench/list/", ListOptions::default()).await.expect("list");
        if i > 0 {
            lists.push(t.elapsed()); // the first list only warms caches
        }
        assert_eq!(l.items.len(), 5000);
    }
    f.list_p50 = percentile(&mut lists, 0.5);
    f.list_p99 = percentile(&mut lists, 0.99);
    eprintln!("[{name}] list of 5000: p50 {:.1} ms, p99 {:.1} ms", ms(f.list_p50), ms(f.list_p99));

    // 3. One write reaching 1,000 watchers.
    let watchers = env_usize("BENCH_WATCHERS", 1000);
    let rounds = 20;
    let from = store.current_revision().await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let mut handles = Vec::new();
    for _ in 0..watchers {
        let mut w = store.watch("/bench/watch/", from).await.expect("watch");
        let tx = tx.clone();
        handles.push(tokio::spawn(async move {
            while let Some(Ok(ev)) = w.next().await {
                if let Event::Put { kv, .. } = ev {
                    let round: usize = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                    if tx.send((round, Instant::now())).is_err() {
                        return;
                    }
                }
            }
        }));
    }
    drop(tx);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut deliveries = Vec::new();
    for round in 0..rounds {
        let t = Instant::now();
        store.create(&format!("/bench/watch/r{round}"), Bytes::from(round.to_string()), None).await.unwrap();
        let mut got = 0;
        while got < watchers {
            let (r, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("watch delivery timed out")
                .expect("watchers ended");
            assert_eq!(r, round);
            deliveries.push(at - t);
            got += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for h in handles {
        h.abort();
    }
    f.watch_p99 = percentile(&mut deliveries, 0.99);
    f.watch_max = percentile(&mut deliveries, 1.0);
    eprintln!("[{name}] watch fan-out p99 {:.1} ms", ms(f.watch_p99));

    // 4. The longest a write waits while a compaction pass removes superseded history: first write some
    //    (64 writers updating their own key), then compact while a probe keeps writing.
    let churn = env_usize("BENCH_CHURN", 30_000);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("/bench/churn/k{w}");
            let mut rev = store.create(&key, value(w), None).await.expect("write").mod_revision;
            for i in 0..churn / writers {
                rev = store.update(&key, value(i), rev, None).await.expect("write").mod_revision;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let probe = |store: Arc<S>, stop: Arc<std::sync::atomic::AtomicBool>| async move {
        let mut worst = Duration::ZERO;
        let kv = store.create(&format!("/bench/probe/{}", rand_suffix()), Bytes::from_static(b"0"), None).await;
        let mut rev = kv.unwrap().mod_revision;
        let key = format!("/bench/probe/{}", rand_suffix());
        store.create(&key, Bytes::from_static(b"0"), None).await.unwrap();
        let mut kv = store.get(&key, None).await.unwrap();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let t = Instant::now();
            kv = store.update(&key, Bytes::from(rev.to_string()), kv.mod_revision, None).await.unwrap();
            worst = worst.max(t.elapsed());
            rev += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        worst
    };
    // Baseline: the same probe with no compaction running.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = tokio::spawn(probe(store.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    f.baseline_stall = h.await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = tokio::spawn(probe(store.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let target = store.current_revision().await.unwrap() - 1000;
    let t = Instant::now();
    store.compact(target).await.expect("compact");
    while compacting() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    f.compaction_pass = t.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    f.compaction_stall = h.await.unwrap();
    eprintln!("[{name}] compaction pass {:.0} ms, worst write {:.1} ms", ms(f.compaction_pass), ms(f.compaction_stall));
    f
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

fn row(label: &str, target: &str, s: String, e: String, ratio: f64) {
    println!("| {label} | {target} | {s} | {e} | {ratio:.1}x |");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probes for test names; this bench has none.
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Arc::new(SqliteStore::open(SqliteConfig::in_dir(dir.path())).unwrap());
        let probe = sqlite.clone();
        let s = bench("sqlite", sqlite, move || probe.compaction_pending()).await;

        let server = EtcdServer::start().expect("etcd (apt-get install etcd-server)");
        let etcd = Arc::new(EtcdStore::connect(EtcdConfig::new(vec![server.endpoint.clone()])).await.unwrap());
        let e = bench("etcd", etcd, || false).await;

        println!("| figure | goal (embedded) | embedded (SQLite) | etcd 3.4 | embedded vs etcd |");
        println!("|---|---|---|---|---|");
        row(
            "acknowledged writes/s, 64 writers",
            ">= 10,000",
            format!("{:.0}", s.writes_per_sec),
            format!("{:.0}", e.writes_per_sec),
            s.writes_per_sec / e.writes_per_sec,
        );
        let lower = |a: Duration, b: Duration| ms(b) / ms(a).max(0.001);
        row(
            "write latency p99",
            "< 20 ms",
            format!("{:.1} ms", ms(s.write_p99)),
            format!("{:.1} ms", ms(e.write_p99)),
            lower(s.write_p99, e.write_p99),
        );
        row(
            "list 5,000 keys (p50 / p99)",
            "< 50 ms",
            format!("{:.1} / {:.1} ms", ms(s.list_p50), ms(s.list_p99)),
            format!("{:.1} / {:.1} ms", ms(e.list_p50), ms(e.list_p99)),
            lower(s.list_p99, e.list_p99),
        );
        row(
            "event to 1,000 watchers (p99 / max)",
            "< 50 ms p99",
            format!("{:.1} / {:.1} ms", ms(s.watch_p99), ms(s.watch_max)),
            format!("{:.1} / {:.1} ms", ms(e.watch_p99), ms(e.watch_max)),
            lower(s.watch_p99, e.watch_p99),
        );
        row(
            "longest write during a compaction pass (no compaction)",
            "< 50 ms",
            format!("{:.1} ms ({:.1} ms)", ms(s.compaction_stall), ms(s.baseline_stall)),
            format!("{:.1} ms ({:.1} ms)", ms(e.compaction_stall), ms(e.baseline_stall)),
            lower(s.compaction_stall, e.compaction_stall),
        );
        row(
            "compaction pass (30,000 superseded revisions)",
            "-",
            format!("{:.0} ms", ms(s.compaction_pass)),
            format!("{:.0} ms", ms(e.compaction_pass)),
            lower(s.compaction_pass, e.compaction_pass),
        );
    });
}
