//! The protobuf encoder against serde_json on the same objects, without building the apiserver: a cold LIST of
//! 5,000 pods (every item encoded) and 10,000 pod watch events, as `kube-apiserver/benches/protobuf.rs` measures them.
//! `cargo bench -p api-types --bench encode`; `ENCODE_ONLY=protobuf ENCODE_ROUNDS=200` repeats only the protobuf
//! encodings (`ENCODE_ONLY=json` only serde_json's; `ENCODE_ONLY=dispatched` only the events encoded just
//! after their decoding, JSON and protobuf taking turns), for `perf record` and `perf stat`. `ENCODE_ONLY=typed`
//! compares with the same pods as typed structs (serde_json on k8s-openapi's, prost on k8s-pb's); `ENCODE_ONLY=walk`
//! times a walk of the LIST's pods that reads every key and string and writes nothing.

mod fixture;

use std::time::{Duration, Instant};

use api_types::protobuf::{encode_list_of, encode_watch_frame};
use serde_json::{Value, json};

// The apiserver's allocator, so both encodings allocate as they do in the daemon.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The best of `rounds` timings of `f`.
fn best(rounds: usize, f: impl FnMut() -> usize) -> Duration {
    fixture::best(rounds, f).0
}

fn json_list(meta: &Value, pods: &[&Value]) -> usize {
    let mut body = Vec::new();
    body.extend_from_slice(b"{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":");
    serde_json::to_writer(&mut body, meta).unwrap();
    body.extend_from_slice(b",\"items\":[");
    for (i, p) in pods.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        serde_json::to_writer(&mut body, p).unwrap();
    }
    body.extend_from_slice(b"]}\n");
    body.len()
}

fn json_events(events: &[&Value]) -> usize {
    events
        .iter()
        .map(|p| {
            let mut line = Vec::with_capacity(1024);
            line.extend_from_slice(b"{\"type\":\"MODIFIED\",\"object\":");
            serde_json::to_writer(&mut line, p).unwrap();
            line.extend_from_slice(b"}\n");
            line.len()
        })
        .sum()
}

fn main() {
    // ENCODE_DISTINCT=50 encodes 50 pods over and over (in cache): the encoders' own work, without memory stalls.
    let distinct = std::env::var("ENCODE_DISTINCT").ok().and_then(|v| v.parse().ok()).unwrap_or(usize::MAX);
    let objects: Vec<Value> = (0..5000.min(distinct)).map(fixture::pod).collect();
    let pods: Vec<&Value> = (0..5000).map(|i| &objects[i % objects.len()]).collect();
    let copies: Vec<Value> = (0..10_000.min(distinct)).map(|i| fixture::pod(i % 5000)).collect();
    let events: Vec<&Value> = (0..10_000).map(|i| &copies[i % copies.len()]).collect();
    let meta = json!({"resourceVersion": "99999"});
    let rounds = std::env::var("ENCODE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(7);
    let only_protobuf = std::env::var("ENCODE_ONLY").is_ok_and(|v| v == "protobuf");
    let pb_list = || encode_list_of("v1", "PodList", &meta, pods.iter().copied()).unwrap().len();
    // Objects that left the caches are read ahead of their encoding, as the server's `Shared::protobuf` does for
    // an event replayed well after its decoding.
    let pb_events = || events.iter().map(|p| encode_watch_frame("MODIFIED", p, true).unwrap().0.len()).sum();
    if only_protobuf {
        let (list, watch) = (best(rounds, pb_list), best(rounds, pb_events));
        println!("protobuf: LIST {:.1} ms, watch events {:.1} ms", ms(list), ms(watch));
        return;
    }
    if std::env::var("ENCODE_ONLY").is_ok_and(|v| v == "walk") {
        // What any encoder of these trees pays first: reading every key and string, writing nothing.
        println!("walk of the LIST's pods: {:.1} ms", ms(best(rounds, || pods.iter().map(|p| walk(p)).sum())));
        return;
    }
    if std::env::var("ENCODE_ONLY").is_ok_and(|v| v == "decode") {
        decode(&pods, rounds);
        return;
    }
    if std::env::var("ENCODE_ONLY").is_ok_and(|v| v == "typed") {
        typed(&pods, rounds);
        return;
    }
    if std::env::var("ENCODE_ONLY").is_ok_and(|v| v == "json") {
        let (list, watch) = (best(rounds, || json_list(&meta, &pods)), best(rounds, || json_events(&events)));
        println!("JSON: LIST {:.1} ms, watch events {:.1} ms", ms(list), ms(watch));
        return;
    }
    let stored: Vec<Vec<u8>> = (0..10_000).map(|i| serde_json::to_vec(&fixture::pod(i % 5000)).unwrap()).collect();
    let sent = (0..rounds)
        .map(|_| dispatched(&stored))
        .fold((Duration::MAX, Duration::MAX), |a, b| (a.0.min(b.0), a.1.min(b.1)));
    if std::env::var("ENCODE_ONLY").is_ok_and(|v| v == "dispatched") {
        println!(
            "dispatched events: JSON {:.1} ms, protobuf {:.1} ms, {:.2}x",
            ms(sent.0),
            ms(sent.1),
            sent.0.as_secs_f64() / sent.1.as_secs_f64()
        );
        return;
    }
    let rows = [
        ("LIST of 5,000 pods", times(fixture::best_pair(rounds, || json_list(&meta, &pods), pb_list))),
        ("10,000 pod watch events", times(fixture::best_pair(rounds, || json_events(&events), pb_events))),
        ("10,000 pod watch events, each encoded just after its decoding", sent),
    ];
    for (what, (json_t, pb_t)) in rows {
        println!(
            "{what}: JSON {:.1} ms, protobuf {:.1} ms, {:.2}x",
            ms(json_t),
            ms(pb_t),
            json_t.as_secs_f64() / pb_t.as_secs_f64()
        );
    }
}

/// The time spent encoding watch events whose objects were just decoded from their stored JSON, 100 at a time, as
/// the watch cache decodes events and their first watcher encodes them (`kube-apiserver`'s `Shared::watch_event`):
/// (JSON, protobuf). The two encodings take turns on each burst, each on its own fresh decoding, so a slower spell of
/// the shared machine falls on both.
fn dispatched(stored: &[Vec<u8>]) -> (Duration, Duration) {
    let mut encoding = [Duration::ZERO; 2];
    let mut bytes = 0;
    for (n, burst) in stored.chunks(100).enumerate() {
        for protobuf in [n % 2 == 0, n % 2 == 1] {
            let objects: Vec<Value> = burst.iter().map(|b| serde_json::from_slice(b).unwrap()).collect();
            let t = Instant::now();
            for o in &objects {
                // Each encoded into its event's bytes, as the server's first watcher of an event does.
                bytes += if protobuf {
                    encode_watch_frame("MODIFIED", o, false).unwrap().0.len()
                } else {
                    json_events(&[o])
                };
            }
            encoding[usize::from(protobuf)] += t.elapsed();
        }
    }
    std::hint::black_box(bytes);
    (encoding[0], encoding[1])
}

/// The bytes of every key and string of `v`, each read.
fn walk(v: &Value) -> usize {
    match v {
        Value::String(s) => s.bytes().fold(s.len(), |n, b| n ^ usize::from(b)),
        Value::Object(m) => m.iter().map(|(k, v)| k.len() + walk(v)).sum(),
        Value::Array(items) => items.iter().map(walk).sum(),
        _ => 1,
    }
}

/// The same pods held as typed structs, as upstream's (Go) apiserver holds them: serde_json on k8s-openapi's `Pod`
/// against prost on k8s-pb's `Pod`, beside the two encoders of the server on `serde_json::Value`s, each pod encoded
/// on its own (the four taking turns). What ratio typed objects would give, with Rust's encoders.
fn typed(pods: &[&Value], rounds: usize) {
    use prost::Message;
    let structs: Vec<k8s_openapi::api::core::v1::Pod> =
        pods.iter().map(|p| serde_json::from_value((*p).clone()).unwrap()).collect();
    let messages: Vec<k8s_pb::api::core::v1::Pod> = pods
        .iter()
        .map(|p| k8s_pb::api::core::v1::Pod::decode(&api_types::protobuf::encode_message_of(p).unwrap()[..]).unwrap())
        .collect();
    let (mut value, mut typed) = ((Duration::MAX, Duration::MAX), (Duration::MAX, Duration::MAX));
    for _ in 0..rounds {
        let json = best(1, || pods.iter().map(|p| serde_json::to_vec(p).unwrap().len()).sum());
        let pb = best(1, || pods.iter().map(|p| api_types::protobuf::encode_message_of(p).unwrap().len()).sum());
        value = (value.0.min(json), value.1.min(pb));
        let json = best(1, || structs.iter().map(|p| serde_json::to_vec(p).unwrap().len()).sum());
        let pb = best(1, || messages.iter().map(|p| p.encode_to_vec().len()).sum());
        typed = (typed.0.min(json), typed.1.min(pb));
    }
    for (what, (json, pb)) in [("serde_json::Value, this encoder", value), ("typed: serde_json, prost", typed)] {
        println!(
            "{what}: JSON {:.1} ms, protobuf {:.1} ms, {:.2}x",
            ms(json),
            ms(pb),
            json.as_secs_f64() / pb.as_secs_f64()
        );
    }
}

/// Decoding the LIST's pods from their stored bytes, as the watch cache and a read from storage do: JSON (serde_json)
/// against the protobuf body (`decode_k8s_protobuf`), taking turns.
fn decode(pods: &[&Value], rounds: usize) {
    let json: Vec<Vec<u8>> = pods.iter().map(|p| serde_json::to_vec(p).unwrap()).collect();
    let pb: Vec<Vec<u8>> = pods.iter().map(|p| api_types::protobuf::encode_object(p).unwrap()).collect();
    let (j, p) = times(fixture::best_pair(
        rounds,
        || {
            json.iter()
                .map(|b| std::hint::black_box(serde_json::from_slice::<Value>(b).unwrap()).is_object() as usize)
                .sum()
        },
        || {
            pb.iter()
                .map(|b| {
                    std::hint::black_box(api_types::protobuf::decode_k8s_protobuf(b).unwrap()).is_object() as usize
                })
                .sum()
        },
    ));
    println!(
        "decoding 5,000 stored pods: JSON {:.1} ms, protobuf {:.1} ms, {:.2}x",
        ms(j),
        ms(p),
        j.as_secs_f64() / p.as_secs_f64()
    );
}

/// The two timings of [`fixture::best_pair`].
fn times(((json, _), (protobuf, _)): ((Duration, usize), (Duration, usize))) -> (Duration, Duration) {
    (json, protobuf)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
