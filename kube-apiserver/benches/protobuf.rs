//! Protobuf versus JSON on the apiserver, in one run: encoding a LIST of 5,000 pods and 10,000 pod watch events
//! (the server's work per response, from the objects the watch cache holds), and pod creates per second with
//! protobuf bodies against JSON bodies on the release binary (32 clients). Run through `bench/protobuf.sh`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use api_types::protobuf::{CONTENT_TYPE, encode_list_of, encode_object};
use bytes::Bytes;
use http::{Method, StatusCode};
use kube_apiserver::registry::{Item, Shared, StorageMediaType};
use kube_apiserver::storage::KeyValue;
use kube_apiserver::testing::release::{cpu_secs, start_apiserver_with};
use serde_json::{Value, json};

// The pod `api-types/benches/encode.rs` encodes too (that benchmark needs no apiserver build: use it to profile).
#[path = "../../api-types/benches/fixture/mod.rs"]
mod fixture;
use fixture::{best_pair, pod};

// The apiserver's allocator, so both encodings allocate as they do in the daemon.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A pod as the server stores it: without resourceVersion, in `media` (`--storage-media-type`), at revision
/// 1000 + `i`.
fn stored_pod(i: usize, media: StorageMediaType) -> KeyValue {
    let value = kube_apiserver::registry::encode(&pod(i % 5000), media).unwrap();
    let rev = 1000 + i as i64;
    KeyValue { key: format!("/pods/bench/web-{i}"), value, create_revision: rev, mod_revision: rev, version: 1 }
}

/// The watch cache's objects for `stored`, as it decodes them from storage.
fn cached(stored: &[KeyValue]) -> Vec<Shared> {
    stored.iter().map(|kv| Shared::decode(kv).unwrap()).collect()
}

/// A LIST response from the watch cache's objects as the server writes it (`api.rs`): each item's encoding (made on
/// first use, and kept), into the list.
fn cache_list(objects: &[Shared], meta: &Value, protobuf: bool) -> usize {
    let items: Vec<Item> = objects.iter().cloned().map(Item::Cached).collect();
    if protobuf {
        let messages: Vec<_> = items.iter().map(|i| i.protobuf_message().unwrap()).collect();
        let slices: Vec<&[u8]> = messages.iter().map(|m| &m[..]).collect();
        return api_types::protobuf::encode_list("v1", "PodList", meta, &slices).unwrap().len();
    }
    let jsons: Vec<_> = items.iter().map(|i| i.json().unwrap()).collect();
    let mut body = Vec::with_capacity(jsons.iter().map(|j| j.len() + 1).sum::<usize>() + 256);
    body.extend_from_slice(b"{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":");
    serde_json::to_writer(&mut body, meta).unwrap();
    body.extend_from_slice(b",\"items\":[");
    for (i, json) in jsons.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(json);
    }
    body.extend_from_slice(b"]}\n");
    body.len()
}

fn encoding() -> Vec<(String, Duration, Duration)> {
    let pods: Vec<Value> = (0..5000).map(pod).collect();
    let meta = json!({"resourceVersion": "99999"});
    // As the server stores pods by default (protobuf) and its watch cache decodes them.
    let stored: Vec<KeyValue> = (0..10_000).map(|i| stored_pod(i, StorageMediaType::Protobuf)).collect();
    // The first LIST of objects the watch cache has just read: every item's encoding is made (JSON encoded from the
    // object, protobuf spliced from its stored bytes). Each round on objects decoded afresh (not timed).
    let (mut first_json, mut first_pb, mut bytes) = (Duration::MAX, Duration::MAX, (0, 0));
    for _ in 0..7 {
        for protobuf in [false, true] {
            let objects = cached(&stored[..5000]);
            let t = Instant::now();
            let n = std::hint::black_box(cache_list(&objects, &meta, protobuf));
            let elapsed = t.elapsed();
            if protobuf {
                (first_pb, bytes.1) = (first_pb.min(elapsed), n);
            } else {
                (first_json, bytes.0) = (first_json.min(elapsed), n);
            }
        }
    }
    // The same LIST again: every item's encoding kept (as served for resourceVersion=0 once listed or watched).
    let objects = cached(&stored[..5000]);
    let ((json_cached, _), (pb_cached, _)) =
        best_pair(7, || cache_list(&objects, &meta, false), || cache_list(&objects, &meta, true));
    // The encoders alone, every item encoded from its object: what protobuf costs for objects not stored as
    // protobuf (stored as JSON, or read through a conversion).
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
    let ((json_list, _), (pb_list, _)) = best_pair(7, json_list, pb_list);
    // Watch events as the server sends them: the watch cache decodes each from storage, and the first watcher of
    // the event encodes it (`Shared::watch_event`), mostly shortly after; an event replayed to a watcher that starts
    // later is encoded when its object has left the CPU's caches.
    let ((json_watch, json_wbytes), (pb_watch, pb_wbytes)) = (0..5)
        .map(|_| (replayed(&stored, false), replayed(&stored, true)))
        .fold(((Duration::MAX, 0), (Duration::MAX, 0)), |a, b| ((a.0.0.min(b.0.0), b.0.1), (a.1.0.min(b.1.0), b.1.1)));
    let (json_sent, pb_sent) =
        (0..7).map(|_| dispatched(&stored)).fold((Duration::MAX, Duration::MAX), |a, b| (a.0.min(b.0), a.1.min(b.1)));
    vec![
        (
            format!(
                "encode LIST of 5,000 pods from the watch cache, first served after their reading from storage ({} B JSON, \
                 {} B protobuf)",
                bytes.0, bytes.1
            ),
            first_json,
            first_pb,
        ),
        (
            "encode the same LIST again (item encodings kept, as served for resourceVersion=0)".into(),
            json_cached,
            pb_cached,
        ),
        (
            format!(
                "encode 10,000 pod watch events as the watch cache dispatches them (each encoded by the server's \
                 `Shared::watch_event` once the cache has decoded it; {json_wbytes} B JSON, {pb_wbytes} B protobuf)"
            ),
            json_sent,
            pb_sent,
        ),
        (
            "encode the same 10,000 watch events replayed after their objects left the caches".into(),
            json_watch,
            pb_watch,
        ),
        (
            "encoders alone: LIST of 5,000 pods, every item encoded from its object (objects not stored as protobuf)"
                .into(),
            json_list,
            pb_list,
        ),
    ]
}

/// What the storage media type changes besides the encodings: the watch cache's decoding of each event, and a JSON
/// LIST of objects read from storage that the watch cache does not serve (stored JSON is spliced, stored protobuf
/// decoded and encoded). (JSON storage, protobuf storage) for each.
fn storage() -> Vec<(&'static str, Duration, Duration)> {
    let of = |media| -> Vec<KeyValue> { (0..5000).map(|i| stored_pod(i, media)).collect() };
    let (json, pb) = (of(StorageMediaType::Json), of(StorageMediaType::Protobuf));
    let decode = |stored: &[KeyValue]| stored.iter().map(|kv| Shared::decode(kv).unwrap().is_object() as usize).sum();
    let ((json_decode, _), (pb_decode, _)) = best_pair(7, || decode(&json), || decode(&pb));
    let list = |stored: &[KeyValue]| {
        let items: Vec<Item> = stored
            .iter()
            .map(|kv| Item::Raw { stored: kv.value.clone(), key: kv.key.clone(), revision: kv.mod_revision })
            .collect();
        items.iter().map(|i| i.json().unwrap().len()).sum()
    };
    let ((json_list, _), (pb_list, _)) = best_pair(7, || list(&json), || list(&pb));
    vec![
        ("the watch cache decoding 5,000 stored pods", json_decode, pb_decode),
        ("JSON items of 5,000 pods read from storage, without the watch cache", json_list, pb_list),
    ]
}

/// Encodes watch events as the server does for a watcher that starts after them: the objects were decoded a while
/// before (not timed). Returns the time spent encoding and the bytes.
fn replayed(stored: &[KeyValue], protobuf: bool) -> (Duration, usize) {
    let objects = cached(stored);
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
fn dispatched(stored: &[KeyValue]) -> (Duration, Duration) {
    let mut encoding = [Duration::ZERO; 2];
    let mut bytes = 0;
    for (n, burst) in stored.chunks(100).enumerate() {
        for protobuf in [n % 2 == 0, n % 2 == 1] {
            let objects = cached(burst);
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

/// One table row: the two timings and their ratio, and the goal when there is one.
fn row(what: &str, json: Duration, protobuf: Duration, goal: &str) {
    let ratio = json.as_secs_f64() / protobuf.as_secs_f64();
    let (j, p) = (json.as_secs_f64() * 1e3, protobuf.as_secs_f64() * 1e3);
    println!("| {what} | {j:.1} ms | {p:.1} ms | {ratio:.2}x |{goal}");
}

fn main() {
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only != "creates" {
        encoding_tables();
    }
    if only == "encoding" {
        return;
    }
    println!("| figure | JSON | protobuf | protobuf speed-up | goal |");
    println!("|---|---|---|---|---|");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    // On the default storage (protobuf), then on JSON storage: what storing protobuf changes for writes.
    for (storage, media) in [("protobuf", api_types::protobuf::CONTENT_TYPE), ("JSON", "application/json")] {
        rt.block_on(creates_on(storage, media));
    }
}

/// The encoding and storage tables.
fn encoding_tables() {
    println!("| figure | JSON | protobuf | protobuf speed-up | goal |");
    println!("|---|---|---|---|---|");
    for (what, json, protobuf) in encoding() {
        // The encoders alone are not what the server serves stored objects with: no goal.
        let goal = if what.starts_with("encoders alone") { " - |" } else { " >= 2x |" };
        row(&what, json, protobuf, goal);
    }
    println!();
    println!("| storage (`--storage-media-type`) | JSON | protobuf | protobuf speed-up |");
    println!("|---|---|---|---|");
    for (what, json, protobuf) in storage() {
        row(what, json, protobuf, "");
    }
    println!();
}

/// Pod creates per second with JSON and protobuf bodies against a release apiserver storing objects as `media`.
async fn creates_on(storage: &str, media: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (proc_, client, _) = start_apiserver_with(dir.path(), &[format!("--storage-media-type={media}")]).await;
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
        "| pod creates per second, 32 clients ({total} pods each), {storage} storage | {j:.0}/s | {p:.0}/s | {:.2}x | \
         >= 1x |",
        p / j
    );
    println!("| apiserver CPU per pod create, {storage} storage | {jc:.3} ms | {pc:.3} ms | {:.2}x | - |", jc / pc);
}
