//! Field manager benchmark, run through `bench/fieldmanager.sh`: what recording managedFields costs a write, and
//! what server-side apply costs against a merge patch, in-process on a registry over the embedded store (no
//! HTTP), rounds alternating so both sides see the same machine.
//! - ConfigMap creates (20 data keys, 3 labels) by 16 concurrent writers, with the field manager in scope (every
//!   API write since managedFields) against without (the apiserver's own writes; before managedFields). Goal
//!   (issue 16 step 5): less than 10% slower.
//! - Updates of a 100-field ConfigMap: server-side apply (forced: the object was created by another manager)
//!   against a JSON merge patch of the same change. Goal
//!   (step 6): within 30%.
//!
//!   BENCH_OBJECTS (default 4000) per run, BENCH_ROUNDS (default 3).

use std::sync::Arc;
use std::time::Instant;

use api_types::patch::PatchType;
use kube_apiserver::fieldmanager::{self, Request};
use kube_apiserver::registry::Registry;
use kube_apiserver::storage::Backend;
use kube_apiserver::storage::sqlite::{SqliteConfig, SqliteStore};
use serde_json::{Value, json};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn manager(apply: bool) -> Request {
    Request {
        manager: if apply { "applier" } else { "bench" }.into(),
        api_version: "v1".into(),
        subresource: String::new(),
        apply,
    }
}

fn configmap(name: &str, keys: usize, round: usize) -> Value {
    let data: serde_json::Map<String, Value> =
        (0..keys).map(|i| (format!("key-{i:03}"), json!(format!("value-{i}-{round}")))).collect();
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "default", "labels": {"app": "bench", "tier": "x", "n": name}},
           "data": data})
}

async fn creates(reg: &Arc<Registry>, n: usize, tag: &str, tracked: bool) -> f64 {
    let cms = api_types::resources::find("", "v1", "configmaps").unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let reg = reg.clone();
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(16) {
                let obj = configmap(&format!("{tag}-{i}"), 20, 0);
                let create = reg.create(cms, Some("default"), obj, false);
                if tracked {
                    fieldmanager::scope(manager(false), create).await.unwrap();
                } else {
                    create.await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn updates(reg: &Arc<Registry>, n: usize, apply: bool) -> f64 {
    let cms = api_types::resources::find("", "v1", "configmaps").unwrap();
    let name = if apply { "big-apply" } else { "big-merge" };
    let start = Instant::now();
    for round in 0..n {
        let obj = configmap(name, 100, round);
        if apply {
            fieldmanager::scope(manager(true), reg.apply(cms, Some("default"), name, None, &obj, false, true, cms))
                .await
                .unwrap();
        } else {
            let body = serde_json::to_vec(&obj).unwrap();
            fieldmanager::scope(
                manager(false),
                reg.patch(cms, Some("default"), name, None, PatchType::Merge, &body, false),
            )
            .await
            .unwrap();
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_usize("BENCH_OBJECTS", 4000);
    let rounds = env_usize("BENCH_ROUNDS", 3);
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(SqliteConfig::in_dir(dir.path())).unwrap();
    let reg = Arc::new(Registry::new(Arc::new(Backend::Sqlite(store))));
    let ns = api_types::resources::find("", "v1", "namespaces").unwrap();
    reg.create(ns, None, json!({"metadata": {"name": "default"}}), false).await.unwrap();
    let cms = api_types::resources::find("", "v1", "configmaps").unwrap();
    for name in ["big-apply", "big-merge"] {
        fieldmanager::scope(manager(false), reg.create(cms, Some("default"), configmap(name, 100, 0), false))
            .await
            .unwrap();
    }
    let (mut plain, mut tracked, mut merge, mut apply) = (0f64, 0f64, 0f64, 0f64);
    for r in 0..rounds {
        plain = plain.max(creates(&reg, n, &format!("plain{r}"), false).await);
        tracked = tracked.max(creates(&reg, n, &format!("tracked{r}"), true).await);
        merge = merge.max(updates(&reg, n / 4, false).await);
        apply = apply.max(updates(&reg, n / 4, true).await);
    }
    println!("| Write | Without field manager (/s) | With (/s) | Ratio |");
    println!("|---|---|---|---|");
    println!("| ConfigMap create (20 keys, 16 writers) | {plain:.0} | {tracked:.0} | {:.2} |", tracked / plain);
    println!("| 100-key ConfigMap update: merge patch vs apply | {merge:.0} | {apply:.0} | {:.2} |", apply / merge);
}
