//! Protobuf versus JSON on the apiserver, in one run: encoding a LIST of 5,000 pods and 10,000 pod watch events
//! (the server's work per response, from the objects the watch cache holds), and pod creates per second with
//! protobuf bodies against JSON bodies on the release binary (32 clients). Run through `bench/protobuf.sh`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use api_types::protobuf::{CONTENT_TYPE, encode_list_of, encode_object};
use bytes::Bytes;
use http::{Method, StatusCode};
use kube_apiserver::registry::Shared;
use kube_apiserver::testing::release::{cpu_secs, start_apiserver};
use serde_json::{Value, json};

// The pod `api-types/benches/encode.rs` encodes too (that benchmark needs no apiserver build: use it to profile).
#[path = "../../api-types/benches/fixture/mod.rs"]
mod fixture;
use fixture::{best_pair, pod};

// The apiserver's allocator, so both encodings allocate as they do in the daemon.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn encoding() -> [(String, Duration, Duration, usize, usize); 4] {
    let pods: Vec<Value> = (0..5000).map(pod).collect();
    let meta = json!({"resourceVersion": "99999"});
    let json_list = || {
        let mut body = Vec::new();
        body.extend_from_slice(b"{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":");
        serde_json::to_writer(&mut body, &meta).unwrap();
        body.extend_from_slice(b",\"items\":[");
        for (i, p) in pods.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            serde_json::to_writer(&mut body, p).unwrap();
        }
        body.extend_from_slice(b"]}\n");
        body.len()
    };
    let pb_list = || encode_list_of("v1", "PodList", &meta, &pods).unwrap().len();
    let ((json_list, json_bytes), (pb_list, pb_bytes)) = best_pair(7, json_list, pb_list);
    // Served from the watch cache, where each object's encodings are made once and shared by every list.
    let json_items: Vec<Vec<u8>> = pods.iter().map(|p| serde_json::to_vec(p).unwrap()).collect();
    let pb_items: Vec<Vec<u8>> = pods.iter().map(|p| api_types::protobuf::encode_message_of(p).unwrap()).collect();
    let json_cached = || {
        // As the server writes it: a buffer of the items' size.
        let mut body = Vec::with_capacity(json_items.iter().map(|i| i.len() + 1).sum::<usize>() + 256);
        body.extend_from_slice(b"{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":");
        serde_json::to_writer(&mut body, &meta).unwrap();
        body.extend_from_slice(b",\"items\":[");
        for (i, p) in json_items.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(p);
        }
        body.extend_from_slice(b"]}\n");
        body.len()
    };
    let pb_cached = || {
        let items: Vec<&[u8]> = pb_items.iter().map(Vec::as_slice).collect();
        api_types::protobuf::encode_list("v1", "PodList", &meta, &items).unwrap().len()
    };
    let ((json_cached, _), (pb_cached, _)) = best_pair(7, json_cached, pb_cached);
    // Watch events as the server sends them: the watch cache decodes each from its stored JSON, and the first
    // watcher of the event encodes it (`Shared::watch_event`), mostly shortly after; an event replayed to a watcher
    // that starts later is encoded when its object has left the CPU's caches.
    let stored: Vec<Vec<u8>> = (0..10_000).map(|i| serde_json::to_vec(&pod(i % 5000)).unwrap()).collect();
    let ((json_watch, json_wbytes), (pb_watch, pb_wbytes)) = (0..5)
        .map(|_| (replayed(&stored, false), replayed(&stored, true)))
        .fold(((Duration::MAX, 0), (Duration::MAX, 0)), |a, b| ((a.0.0.min(b.0.0), b.0.1), (a.1.0.min(b.1.0), b.1.1)));
    let (json_sent, pb_sent) =
        (0..7).map(|_| dispatched(&stored)).fold((Duration::MAX, Duration::MAX), |a, b| (a.0.min(b.0), a.1.min(b.1)));
    [
        (
            format!("LIST of 5,000 pods ({json_bytes} B JSON, {pb_bytes} B protobuf)"),
            json_list,
            pb_list,
            json_bytes,
            pb_bytes,
        ),
        (
            "LIST of 5,000 pods from the watch cache (item encodings cached, as served for resourceVersion=0)".into(),
            json_cached,
            pb_cached,
            json_bytes,
            pb_bytes,
        ),
        (
            format!(
                "10,000 pod watch events replayed after their objects left the caches ({json_wbytes} B JSON, \
                 {pb_wbytes} B protobuf)"
            ),
            json_watch,
            pb_watch,
            json_wbytes,
            pb_wbytes,
        ),
        (
            "the same 10,000 watch events as the watch cache dispatches them (each encoded once the cache has decoded \
             it, by the server's `Shared::watch_event`)"
                .into(),
            json_sent,
            pb_sent,
            json_wbytes,
            pb_wbytes,
        ),
    ]
}

/// Encodes watch events as the server does for a watcher that starts after them: the objects were decoded a while
/// before (not timed). Returns the time spent encoding and the bytes.
fn replayed(stored: &[Vec<u8>], protobuf: bool) -> (Duration, usize) {
    let objects: Vec<Shared> = stored.iter().map(|b| Shared::new(serde_json::from_slice(b).unwrap())).collect();
    std::thread::sleep(Duration::from_millis(20));
    let t = Instant::now();
    let bytes = objects.iter().map(|o| o.watch_event("MODIFIED", protobuf).len()).sum();
    (t.elapsed(), std::hint::black_box(bytes))
}

/// Encodes watch events as the server does, in JSON and in protobuf: each object is decoded from its stored bytes, as
/// the watch cache does with each event from storage (not timed), and encoded for its watchers shortly after; the
/// cache decodes a burst of events before their watchers run, so they are decoded 100 at a time. The two encodings
/// take turns on each burst, each on its own fresh decoding, so a slower spell of the shared machine falls on both.
/// Returns the time spent encoding (JSON, protobuf).
fn dispatched(stored: &[Vec<u8>]) -> (Duration, Duration) {
    let mut encoding = [Duration::ZERO; 2];
    let mut bytes = 0;
    for (n, burst) in stored.chunks(100).enumerate() {
        for protobuf in [n % 2 == 0, n % 2 == 1] {
            let objects: Vec<Shared> = burst.iter().map(|b| Shared::new(serde_json::from_slice(b).unwrap())).collect();
            let t = Instant::now();
            bytes += objects.iter().map(|o| o.watch_event("MODIFIED", protobuf).len()).sum::<usize>();
            encoding[usize::from(protobuf)] += t.elapsed();
        }
    }
    std::hint::black_box(bytes);
    (encoding[0], encoding[1])
}

/// Pod creates per second with `clients` concurrent clients, bodies in JSON or protobuf.
async fn creates(client: &client::Client, prefix: &str, protobuf: bool, total: usize, clients: usize) -> f64 {
    let client = Arc::new(client.clone());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..clients {
        let client = client.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            for i in (w..total).step_by(clients) {
                let mut p = pod(i);
                p["metadata"] = json!({"name": format!("{prefix}-{i:05}"), "labels": {"app": "bench"}});
                p.as_object_mut().unwrap().remove("status");
                p["spec"].as_object_mut().unwrap().remove("nodeName");
                let (body, ct, accept) = if protobuf {
                    (encode_object(&p).unwrap(), CONTENT_TYPE, "application/vnd.kubernetes.protobuf, */*")
                } else {
                    (serde_json::to_vec(&p).unwrap(), "application/json", "application/json")
                };
                let resp = client
                    .send_accepting(
                        Method::POST,
                        "/api/v1/namespaces/bench/pods",
                        accept,
                        Some((Bytes::from(body), ct)),
                    )
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::CREATED);
                let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    println!("| figure | JSON | protobuf | protobuf speed-up | goal |");
    println!("|---|---|---|---|---|");
    for (what, json_t, pb_t, _, _) in encoding() {
        let ratio = json_t.as_secs_f64() / pb_t.as_secs_f64();
        println!(
            "| encode {what} | {:.1} ms | {:.1} ms | {ratio:.2}x | >= 2x |",
            json_t.as_secs_f64() * 1e3,
            pb_t.as_secs_f64() * 1e3
        );
    }
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "encoding") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (proc_, client, _) = start_apiserver(dir.path()).await;
        let pid = proc_.0.id();
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}});
        client.api("", "v1", "namespaces").unwrap().create(&ns).await.unwrap();
        let total = std::env::var("BENCH_PODS").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
        // Warm up, then JSON, protobuf, protobuf, JSON: neither encoding gets a colder server or, on average, a
        // fuller store.
        creates(&client, "warm", false, 500, 32).await;
        let (mut rate, mut cpu) = ([0.0f64; 2], [0.0f64; 2]);
        for (round, protobuf) in [false, true, true, false].into_iter().enumerate() {
            let cpu0 = cpu_secs(pid);
            rate[protobuf as usize] += creates(&client, &format!("r{round}"), protobuf, total / 2, 32).await / 2.0;
            cpu[protobuf as usize] += (cpu_secs(pid) - cpu0) * 1e3 / total as f64;
        }
        let ([j, p], [jc, pc]) = (rate, cpu);
        println!(
            "| pod creates per second, 32 clients ({total} pods each) | {j:.0}/s | {p:.0}/s | {:.2}x | >= 1x |",
            p / j
        );
        println!("| apiserver CPU per pod create | {jc:.3} ms | {pc:.3} ms | {:.2}x | - |", jc / pc);
    });
}
