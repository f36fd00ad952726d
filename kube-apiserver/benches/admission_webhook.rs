//! Admission webhook benchmark: ConfigMap create latency (p50, p99) from one client, one create at a time, on an
//! in-process apiserver (embedded store), with no webhook configuration, with a configuration whose rules do not
//! cover ConfigMaps (the no-match fast path), and with one validating webhook on ConfigMap creates (an in-process
//! HTTPS webhook on loopback behind a Service and its Endpoints). Prints a Markdown table and the p99 the webhook
//! adds. Run through `bench/admission-webhook.sh`; `BENCH_CREATES` (default 2000) sets the creates per case.

use std::time::{Duration, Instant};

use kube_apiserver::admission::webhook::testserver::WebhookServer;
use kube_apiserver::testing::TestApiserver;
use serde_json::{Value, json};

fn pct(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn config(server: &WebhookServer, resource: &str) -> Value {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
           "metadata": {"name": "bench"},
           "webhooks": [{"name": "allow.bench.example.com",
             "clientConfig": {"service": {"namespace": "default", "name": "webhook", "path": "/noop"}, "caBundle": server.ca_bundle()},
             "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": [resource]}],
             "sideEffects": "None", "admissionReviewVersions": ["v1"]}]})
}

/// `n` sequential creates after 100 unmeasured ones; the latencies.
async fn creates(api: &TestApiserver, prefix: &str, n: usize) -> Vec<Duration> {
    let cms = api.client.api("", "v1", "configmaps").unwrap().namespaced("bench");
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 100 {
        let obj =
            json!({"metadata": {"name": format!("{prefix}-{i}"), "labels": {"app": "bench"}}, "data": {"k": "v"}});
        let t = Instant::now();
        cms.create(&obj).await.unwrap();
        if i >= 100 {
            out.push(t.elapsed());
        }
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = std::env::var("BENCH_CREATES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let server = WebhookServer::start(&["webhook.default.svc"]).await;
    let api = TestApiserver::start().await;
    let c = &api.client;
    c.api("", "v1", "namespaces").unwrap().create(&json!({"metadata": {"name": "bench"}})).await.unwrap();
    server.expose(c).await.unwrap();
    let configs = c.api("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations").unwrap();

    let mut none = creates(&api, "none", n).await;
    configs.create(&config(&server, "secrets")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut unmatched = creates(&api, "unmatched", n).await;
    assert!(server.take_calls().is_empty(), "the secrets webhook was called for ConfigMaps");
    configs.delete("bench", None).await.unwrap();
    configs.create(&config(&server, "configmaps")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut webhook = creates(&api, "webhook", n).await;
    let calls = server.take_calls().len();
    assert!(calls >= n, "the webhook was called {calls} times for {n} creates");

    println!("ConfigMap creates, one at a time, {n} per case (in-process apiserver, embedded store, loopback):\n");
    println!("| case | p50 (ms) | p99 (ms) |");
    println!("|---|---|---|");
    let row = |name: &str, s: &mut Vec<Duration>| {
        let (p50, p99) = (pct(s, 0.50), pct(s, 0.99));
        println!("| {name} | {:.2} | {:.2} |", ms(p50), ms(p99));
        (p50, p99)
    };
    let (n50, n99) = row("no webhook configuration", &mut none);
    let (u50, u99) = row("a configuration for other resources (no match)", &mut unmatched);
    let (w50, w99) = row("one validating webhook", &mut webhook);
    println!();
    println!("no-match / none: p50 x{:.2}, p99 x{:.2}", ms(u50) / ms(n50), ms(u99) / ms(n99));
    println!(
        "webhook / none: p50 x{:.2}, p99 x{:.2}; added at p99: {:.2} ms (target < 3 ms)",
        ms(w50) / ms(n50),
        ms(w99) / ms(n99),
        ms(w99) - ms(n99)
    );
}
