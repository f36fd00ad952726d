//! The controller loop against a real apiserver: a level-triggered copy controller with failing first attempts,
//! per-key exclusivity, RequeueAfter and resync.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runtime::controller::{Action, Config, Controller};
use runtime::informer::{InformerParams, SharedInformerFactory};
use serde_json::json;
use support::{TestApiserver, configmap, eventually, within};

#[derive(Default)]
struct Tally {
    in_flight: HashSet<String>,
    attempts: HashMap<String, u32>,
    overlaps: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciles_to_the_desired_state_with_retries() {
    let server = TestApiserver::start().await;
    server.namespace("ctl").await;
    let cms = server.client.api("", "v1", "configmaps").unwrap().namespaced("ctl");
    for i in 0..5 {
        cms.create(&configmap("ctl", &format!("src{i}"), json!({"role": "source"}), json!({"v": "1"}))).await.unwrap();
    }
    let factory = SharedInformerFactory::new(server.new_client());
    let sources = factory
        .informer_for("", "v1", "configmaps", InformerParams::all().namespace("ctl").labels("role=source"))
        .unwrap();
    let copies = factory
        .informer_for("", "v1", "configmaps", InformerParams::all().namespace("ctl").labels("role=copy"))
        .unwrap();

    let controller = Controller::new(Config { workers: 3, resync: None, ..Config::default() })
        .watches(&sources, |n| vec![n.key()])
        // A changed or deleted copy means its source needs reconciling.
        .watches(&copies, |n| {
            let name = runtime::name(n.object());
            vec![runtime::key("ctl", name.trim_end_matches("-copy"))]
        });
    let tally = Arc::new(Mutex::new(Tally::default()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let reconcile = {
        let tally = tally.clone();
        let store = sources.store().clone();
        let api = cms.clone();
        move |key: String| {
            let (tally, store, api) = (tally.clone(), store.clone(), api.clone());
            async move {
                let first = {
                    let mut t = tally.lock().unwrap();
                    if !t.in_flight.insert(key.clone()) {
                        t.overlaps += 1;
                    }
                    let n = t.attempts.entry(key.clone()).or_default();
                    *n += 1;
                    *n == 1
                };
                tokio::time::sleep(Duration::from_millis(20)).await;
                let result = async {
                    if first {
                        return Err("first attempts fail".to_string());
                    }
                    let (_, name) = runtime::split_key(&key);
                    let copy_name = format!("{name}-copy");
                    let Some(src) = store.get_by_key(&key) else {
                        return match api.delete(&copy_name, None).await {
                            Ok(_) => Ok(Action::Done),
                            Err(e) if e.code() == Some(404) => Ok(Action::Done),
                            Err(e) => Err(e.to_string()),
                        };
                    };
                    let want = configmap("ctl", &copy_name, json!({"role": "copy"}), src["data"].clone());
                    match api.get(&copy_name).await {
                        Ok(mut existing) if existing["data"] != want["data"] => {
                            existing["data"] = want["data"].clone();
                            api.replace(&copy_name, &existing).await.map_err(|e| e.to_string())?;
                        }
                        Ok(_) => {}
                        Err(e) if e.code() == Some(404) => {
                            api.create(&want).await.map_err(|e| e.to_string())?;
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                    Ok(Action::Done)
                }
                .await;
                tally.lock().unwrap().in_flight.remove(&key);
                result
            }
        }
    };
    let run = tokio::spawn(controller.run(reconcile, async move {
        let _ = stopped.await;
    }));

    let copy_count = || copies.store().len();
    eventually(10, "five copies", || copy_count() == 5).await;
    // A change to a source reaches its copy; a deleted copy comes back; a deleted source takes its copy along.
    let mut src = cms.get("src1").await.unwrap();
    src["data"]["v"] = json!("2");
    cms.replace("src1", &src).await.unwrap();
    let copy_store = copies.store().clone();
    eventually(10, "the copy to follow", || copy_store.get("ctl", "src1-copy").is_some_and(|c| c["data"]["v"] == "2"))
        .await;
    cms.delete("src2-copy", None).await.unwrap();
    cms.delete("src3", None).await.unwrap();
    eventually(10, "src2-copy to return and src3-copy to go", || {
        copy_store.get("ctl", "src2-copy").is_some() && copy_store.get("ctl", "src3-copy").is_none()
    })
    .await;

    let _ = stop.send(());
    within(10, "the controller to stop", run).await.unwrap();
    {
        let t = tally.lock().unwrap();
        assert_eq!(t.overlaps, 0, "a key was reconciled by two workers at once");
        assert!(t.attempts.values().all(|n| *n >= 2), "every key failed once and was retried: {:?}", t.attempts);
    }
    factory.shutdown();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeue_after_and_resync() {
    let server = TestApiserver::start().await;
    let cms = server.client.api("", "v1", "configmaps").unwrap().namespaced("default");
    cms.create(&configmap("default", "ticker", json!({}), json!({}))).await.unwrap();
    cms.create(&configmap("default", "still", json!({}), json!({}))).await.unwrap();
    let factory = SharedInformerFactory::new(server.new_client());
    let informer = factory.informer_for("", "v1", "configmaps", InformerParams::all().namespace("default")).unwrap();
    let controller =
        Controller::new(Config { workers: 2, resync: Some(Duration::from_millis(300)), ..Config::default() })
            .watches(&informer, |n| vec![n.key()]);
    let counts: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let reconcile = {
        let counts = counts.clone();
        move |key: String| {
            let counts = counts.clone();
            async move {
                *counts.lock().unwrap().entry(key.clone()).or_default() += 1;
                Ok::<_, String>(if key == "default/ticker" {
                    Action::RequeueAfter(Duration::from_millis(50))
                } else {
                    Action::Done
                })
            }
        }
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(controller.run(reconcile, async move {
        let _ = stopped.await;
    }));
    let get = |k: &str| counts.lock().unwrap().get(k).copied().unwrap_or(0);
    // RequeueAfter(50ms) brings the ticker back again and again; resync (300 ms) brings the unchanged one back.
    eventually(10, "the ticker to be requeued", || get("default/ticker") >= 8).await;
    eventually(10, "resyncs of an unchanged object", || get("default/still") >= 3).await;
    let _ = stop.send(());
    within(10, "the controller to stop", run).await.unwrap();
    factory.shutdown();
    server.stop().await;
}

/// Runs a controller watching the configmaps of `default` (batched or not) whose reconcile of "slow" takes 30 ms;
/// updates "slow" 30 times, 15 ms apart; returns how many reconciles of it there were and the last value seen.
async fn reconciles_of_a_slow_key(server: &TestApiserver, batched: bool) -> (u32, String) {
    let cms = server.client.api("", "v1", "configmaps").unwrap().namespaced("default");
    let name = if batched { "slow-batched" } else { "slow-plain" };
    cms.create(&configmap("default", name, json!({}), json!({"v": "0"}))).await.unwrap();
    let factory = SharedInformerFactory::new(server.new_client());
    let informer = factory.informer_for("", "v1", "configmaps", InformerParams::all().namespace("default")).unwrap();
    let controller = Controller::new(Config { workers: 1, resync: None, ..Config::default() });
    let only = move |n: &runtime::informer::Notification| {
        if runtime::name(n.object()) == name { vec![n.key()] } else { vec![] }
    };
    let controller =
        if batched { controller.watches_batched(&informer, only) } else { controller.watches(&informer, only) };
    let seen: Arc<Mutex<(u32, String)>> = Arc::default();
    let reconcile = {
        let (seen, store) = (seen.clone(), informer.store().clone());
        move |key: String| {
            let (seen, store) = (seen.clone(), store.clone());
            async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                let v = store.get_by_key(&key).and_then(|c| c["data"]["v"].as_str().map(str::to_string));
                let mut s = seen.lock().unwrap();
                s.0 += 1;
                s.1 = v.unwrap_or_default();
                Ok::<_, String>(Action::Done)
            }
        }
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(controller.run(reconcile, async move {
        let _ = stopped.await;
    }));
    eventually(10, "the first reconcile", || seen.lock().unwrap().0 >= 1).await;
    for i in 1..=30 {
        cms.patch(name, api_types::patch::PatchType::Merge, &json!({"data": {"v": i.to_string()}})).await.unwrap();
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    eventually(10, "the last value to be reconciled", || seen.lock().unwrap().1 == "30").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop.send(());
    within(10, "the controller to stop", run).await.unwrap();
    factory.shutdown();
    seen.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_sources_coalesce_notifications_for_slow_keys() {
    let server = TestApiserver::start().await;
    let (plain, last_plain) = reconciles_of_a_slow_key(&server, false).await;
    let (batched, last_batched) = reconciles_of_a_slow_key(&server, true).await;
    assert_eq!((last_plain.as_str(), last_batched.as_str()), ("30", "30"), "both end on the last state");
    // Unbatched, a 30 ms reconcile runs back to back while updates keep coming (~15 of them); batched, each
    // waits 10 x 30 ms (capped at 100 ms) for more updates first.
    assert!(batched * 2 <= plain, "batched {batched} reconciles, unbatched {plain}");
    server.stop().await;
}
