//! ValidatingAdmissionPolicy benchmark: ConfigMap create latency (p50, p99) from one client, one create at a time,
//! on an in-process apiserver (embedded store), with no policy, with a bound policy whose rules cover other
//! resources (the no-match path), with a bound policy of three validations and a variable on ConfigMap creates,
//! and with the same reading its limit from a ConfigMap param. Prints a Markdown table and the p99 each adds. Run
//! through `bench/validating-admission-policy.sh`; `BENCH_CREATES` (default 2000) sets the creates per case.

use std::time::{Duration, Instant};

use kube_apiserver::testing::TestApiserver;
use serde_json::{Value, json};

fn pct(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn policy(resource: &str, params: bool) -> Value {
    let mut spec = json!({
    "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": [resource], "operations": ["CREATE"]}]},
    "variables": [{"name": "keys", "expression": "object.data.size()"}],
    "validations": [
        {"expression": "variables.keys <= 20", "message": "too many keys"},
        {"expression": "object.metadata.labels.all(k, !k.startsWith('forbidden'))"},
        {"expression": "request.userInfo.username != '' && namespaceObject.metadata.name == 'bench'"},
    ]});
    if params {
        spec["paramKind"] = json!({"apiVersion": "v1", "kind": "ConfigMap"});
        spec["validations"][0] = json!({"expression": "variables.keys <= int(params.data.maxKeys)"});
    }
    json!({"metadata": {"name": "bench.example.com"}, "spec": spec})
}

fn binding(params: bool) -> Value {
    let mut b = json!({"metadata": {"name": "bench-binding.example.com"},
                       "spec": {"policyName": "bench.example.com", "validationActions": ["Deny"]}});
    if params {
        b["spec"]["paramRef"] = json!({"name": "limits", "namespace": "default", "parameterNotFoundAction": "Deny"});
    }
    b
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

/// Replaces the policy and binding, and waits until a ConfigMap with a forbidden label is refused (or, for
/// policies on other resources, a moment).
async fn install(api: &TestApiserver, resource: &str, params: bool) {
    let c = &api.client;
    let policies = c.api("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies").unwrap();
    let bindings = c.api("admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings").unwrap();
    let _ = bindings.delete("bench-binding.example.com", None).await;
    let _ = policies.delete("bench.example.com", None).await;
    policies.create(&policy(resource, params)).await.unwrap();
    bindings.create(&binding(params)).await.unwrap();
    if resource != "configmaps" {
        tokio::time::sleep(Duration::from_millis(500)).await;
        return;
    }
    let cms = c.api("", "v1", "configmaps").unwrap().namespaced("bench");
    for i in 0.. {
        let probe = json!({"metadata": {"name": format!("probe-{params}-{i}"), "labels": {"forbidden": "x"}}});
        if cms.create(&probe).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = std::env::var("BENCH_CREATES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let api = TestApiserver::start().await;
    let c = &api.client;
    c.api("", "v1", "namespaces").unwrap().create(&json!({"metadata": {"name": "bench"}})).await.unwrap();
    c.api("", "v1", "configmaps")
        .unwrap()
        .namespaced("default")
        .create(&json!({"metadata": {"name": "limits"}, "data": {"maxKeys": "20"}}))
        .await
        .unwrap();

    let mut none = creates(&api, "none", n).await;
    install(&api, "secrets", false).await;
    let mut unmatched = creates(&api, "unmatched", n).await;
    install(&api, "configmaps", false).await;
    let mut policy = creates(&api, "policy", n).await;
    install(&api, "configmaps", true).await;
    let mut params = creates(&api, "params", n).await;

    println!("ConfigMap creates, one at a time, {n} per case (in-process apiserver, embedded store):\n");
    println!("| case | p50 (ms) | p99 (ms) |");
    println!("|---|---|---|");
    let row = |name: &str, s: &mut Vec<Duration>| {
        let (p50, p99) = (pct(s, 0.50), pct(s, 0.99));
        println!("| {name} | {:.2} | {:.2} |", ms(p50), ms(p99));
        (p50, p99)
    };
    let (_, n99) = row("no policy", &mut none);
    let (_, u99) = row("a bound policy for other resources (no match)", &mut unmatched);
    let (_, p99) = row("a bound policy: 1 variable, 3 validations", &mut policy);
    let (_, q99) = row("the same with a ConfigMap param", &mut params);
    println!();
    println!(
        "added at p99: no match {:.2} ms, policy {:.2} ms, policy with param {:.2} ms",
        ms(u99) - ms(n99),
        ms(p99) - ms(n99),
        ms(q99) - ms(n99)
    );
}
