//! Custom resource benchmark, run through `bench/crd.sh`: creates per second of a custom resource whose CRD has a
//! 20-field structural schema and one CEL validation rule, against ConfigMap creates (20 data keys) on the same
//! release apiserver, 32 clients over HTTPS (issue 16: at least 80% of the ConfigMap rate). A CRD with the same
//! schema and no rule is measured too, so the rule's own cost shows. Rounds alternate and the best of each is kept.
//!   BENCH_OBJECTS (default 5000) per run, BENCH_ROUNDS (default 2).

use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{Api, Client};
use http::Method;
use kube_apiserver::testing::release::start_apiserver;
use serde_json::{Value, json};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A CRD of 20 spec fields (strings, integers, booleans), with the rule when given.
fn crd(plural: &str, kind: &str, rule: Option<&str>) -> Value {
    let mut props = serde_json::Map::new();
    for i in 0..20 {
        let ty = match i % 4 {
            0 | 1 => json!({"type": "string", "maxLength": 64}),
            2 => json!({"type": "integer", "minimum": 0}),
            _ => json!({"type": "boolean"}),
        };
        props.insert(format!("f{i:02}"), ty);
    }
    let mut spec = json!({"type": "object", "properties": props});
    if let Some(rule) = rule {
        spec["x-kubernetes-validations"] = json!([{"rule": rule, "message": "f02 must not exceed f06"}]);
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.bench.example.com")},
        "spec": {"group": "bench.example.com", "scope": "Namespaced", "names": {"plural": plural, "kind": kind},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec}}}}]}
    })
}

fn spec(i: usize) -> Value {
    let mut s = serde_json::Map::new();
    for f in 0..20 {
        let v = match f % 4 {
            0 | 1 => json!(format!("value-{f}-{i}")),
            2 => json!(f + i % 7),
            _ => json!(i.is_multiple_of(2)),
        };
        s.insert(format!("f{f:02}"), v);
    }
    // f02 <= f06 holds for every object (the rule passes, as on a healthy cluster).
    s.insert("f06".into(), json!(1000));
    Value::Object(s)
}

async fn establish(client: &Client, crd: &Value) {
    client.api("apiextensions.k8s.io", "v1", "customresourcedefinitions").unwrap().create(crd).await.unwrap();
    let plural = crd["spec"]["names"]["plural"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.request(Method::GET, &format!("/apis/bench.example.com/v1/{plural}"), None).await.is_err() {
        assert!(Instant::now() < deadline, "{plural} never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates `total` objects with 32 clients; objects per second.
async fn run(api: Arc<Api>, total: usize, body: impl Fn(usize) -> Value + Send + Sync + 'static) -> f64 {
    let body = Arc::new(body);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..32 {
        let (api, body) = (api.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            for i in (w..total).step_by(32) {
                api.create(&body(i)).await.expect("create");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let total = env_usize("BENCH_OBJECTS", 5000);
        let rounds = env_usize("BENCH_ROUNDS", 2);
        let dir = tempfile::tempdir().unwrap();
        let (proc, client, _) = start_apiserver(dir.path()).await;
        establish(&client, &crd("plains", "Plain", None)).await;
        establish(&client, &crd("ruled", "Ruled", Some("self.f02 <= self.f06"))).await;
        let namespaces = client.api("", "v1", "namespaces").unwrap();
        let mut best = [0f64; 3];
        for round in 0..rounds {
            let ns = format!("bench-{round}");
            namespaces.create(&json!({"metadata": {"name": ns}})).await.unwrap();
            let cms = Arc::new(client.api("", "v1", "configmaps").unwrap().namespaced(&ns));
            let plains =
                Arc::new(client.api_dynamic("bench.example.com", "v1", "plains", "Plain", true).namespaced(&ns));
            let ruled = Arc::new(client.api_dynamic("bench.example.com", "v1", "ruled", "Ruled", true).namespaced(&ns));
            let cm = run(cms, total, |i| {
                let data: serde_json::Map<String, Value> =
                    (0..20).map(|f| (format!("f{f:02}"), json!(format!("value-{f}-{i}")))).collect();
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("c{i:05}")}, "data": data})
            })
            .await;
            let plain = run(plains, total, |i| {
                json!({"apiVersion": "bench.example.com/v1", "kind": "Plain", "metadata": {"name": format!("p{i:05}")}, "spec": spec(i)})
            })
            .await;
            let rule = run(ruled, total, |i| {
                json!({"apiVersion": "bench.example.com/v1", "kind": "Ruled", "metadata": {"name": format!("r{i:05}")}, "spec": spec(i)})
            })
            .await;
            eprintln!("round {round}: ConfigMap {cm:.0}/s, CR {plain:.0}/s, CR + CEL rule {rule:.0}/s");
            for (b, v) in best.iter_mut().zip([cm, plain, rule]) {
                *b = b.max(v);
            }
        }
        // A refused object proves the rule runs on this path.
        let ruled = client.api_dynamic("bench.example.com", "v1", "ruled", "Ruled", true).namespaced("bench-0");
        let mut bad = spec(0);
        bad["f06"] = json!(0);
        bad["f02"] = json!(5);
        let err = ruled
            .create(&json!({"apiVersion": "bench.example.com/v1", "kind": "Ruled", "metadata": {"name": "bad"}, "spec": bad}))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("f02 must not exceed f06"), "{err}");
        drop(proc);
        let [cm, plain, rule] = best;
        println!("| objects ({total} per run, 32 clients, best of {rounds}) | creates/s | vs ConfigMap |");
        println!("|---|---|---|");
        println!("| ConfigMap (20 data keys) | {cm:.0} | 100% |");
        println!("| custom resource, 20-field schema | {plain:.0} | {:.0}% |", 100.0 * plain / cm);
        println!("| custom resource, 20-field schema + 1 CEL rule | {rule:.0} | {:.0}% |", 100.0 * rule / cm);
        println!("\nCR + CEL rule / ConfigMap = {:.2} (issue 16 target >= 0.80)", rule / cm);
    });
}
