//! The watcher against a real apiserver: paged list, watch, bookmark resume, relist after 410 Expired.

mod support;

use std::time::Duration;

use runtime::watcher::{Config, Event, Watcher};
use serde_json::{Value, json};
use support::{Prepared, TestApiserver, configmap, within};

fn names(objs: &[Value]) -> Vec<String> {
    let mut n: Vec<String> = objs.iter().map(|o| runtime::name(o).to_string()).collect();
    n.sort();
    n
}

fn rv_num(rv: &str) -> u64 {
    rv.parse().unwrap_or_else(|_| panic!("numeric resourceVersion, got {rv:?}"))
}

async fn next(w: &mut Watcher) -> Event {
    within(10, "a watcher event", w.next()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_in_pages_watches_and_resumes_from_bookmarks() {
    let server = TestApiserver::start().await;
    server.namespace("w").await;
    server.namespace("other").await;
    let cms = server.client.api("", "v1", "configmaps").unwrap().namespaced("w");
    for i in 0..5 {
        cms.create(&configmap("w", &format!("cm{i}"), json!({"app": "x"}), json!({"i": i.to_string()}))).await.unwrap();
    }
    // Lists and watches are both namespace-scoped GETs on configmaps; nothing else makes them here.
    let gets = || server.requests("GET", "configmaps", "namespace");
    let gets_before = gets().await;
    let config = Config {
        page_size: 2,
        initial_list_from_cache: false,
        watch_timeout: Duration::from_secs(6),
        watch_timeout_jitter: 0.0,
        ..Config::default()
    };
    let mut w = Watcher::new(cms.clone(), &client::ListParams::default(), config);

    // A consistent list in pages of 2: three LIST requests, one Restarted with everything.
    let Event::Restarted(objs) = next(&mut w).await else { panic!("expected Restarted first") };
    assert_eq!(names(&objs), ["cm0", "cm1", "cm2", "cm3", "cm4"]);
    assert!(objs.iter().all(|o| o["kind"] == "ConfigMap" && o["apiVersion"] == "v1"));
    assert_eq!(gets().await - gets_before, 3.0);
    let list_rv = rv_num(w.resource_version().unwrap());

    // Changes arrive as Applied / Deleted.
    let watch_started = tokio::time::Instant::now();
    cms.create(&configmap("w", "cm5", json!({}), json!({}))).await.unwrap();
    let mut cm1 = cms.get("cm1").await.unwrap();
    cm1["data"]["i"] = json!("changed");
    cms.replace("cm1", &cm1).await.unwrap();
    cms.delete("cm2", None).await.unwrap();
    let e = next(&mut w).await;
    assert!(matches!(&e, Event::Applied(o) if runtime::name(o) == "cm5" && o["kind"] == "ConfigMap"), "{e:?}");
    let e = next(&mut w).await;
    assert!(matches!(&e, Event::Applied(o) if runtime::name(o) == "cm1" && o["data"]["i"] == "changed"), "{e:?}");
    let e = next(&mut w).await;
    assert!(matches!(&e, Event::Deleted(o) if runtime::name(o) == "cm2"), "{e:?}");
    let seen_rv = rv_num(w.resource_version().unwrap());
    assert!(seen_rv > list_rv);

    // Writes elsewhere move the global revision; the watch's bookmark (every 5 s) carries it to the watcher
    // although no event of its own matched.
    let other = server.client.api("", "v1", "configmaps").unwrap().namespaced("other");
    let last = other.create(&configmap("other", "noise", json!({}), json!({}))).await.unwrap();
    let noise_rv = rv_num(runtime::resource_version(&last));
    within(10, "a bookmark", async {
        while w.resource_version().map(rv_num).unwrap_or(0) < noise_rv {
            // `next` is cancel-safe: poll it briefly so bookmarks get processed.
            if let Ok(e) = tokio::time::timeout(Duration::from_millis(100), w.next()).await {
                panic!("unexpected event {e:?}");
            }
        }
    })
    .await;

    // The watch ends after its 6 s timeout. A change made while the watcher is between watches is not lost: it
    // resumes from the bookmark's resourceVersion, without relisting.
    assert_eq!(gets().await - gets_before, 4.0, "three pages and one watch");
    tokio::time::sleep_until(watch_started + Duration::from_millis(6500)).await;
    assert_eq!(server.open_watches().await, 0.0, "the server ended the watch");
    cms.create(&configmap("w", "cm6", json!({}), json!({}))).await.unwrap();
    let e = next(&mut w).await;
    assert!(matches!(&e, Event::Applied(o) if runtime::name(o) == "cm6"), "{e:?}");
    assert_eq!(gets().await - gets_before, 5.0, "a re-watch and no relist after a watch timeout");
    assert_eq!(server.open_watches().await, 1.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_list_is_served_from_the_cache() {
    let server = TestApiserver::start().await;
    let cms = server.client.api("", "v1", "configmaps").unwrap().namespaced("default");
    cms.create(&configmap("default", "a", json!({"sel": "yes"}), json!({}))).await.unwrap();
    cms.create(&configmap("default", "b", json!({"sel": "no"}), json!({}))).await.unwrap();
    let params = client::ListParams { label_selector: Some("sel=yes".into()), ..Default::default() };
    let mut w = Watcher::new(cms.clone(), &params, Config::default());
    let Event::Restarted(objs) = next(&mut w).await else { panic!("expected Restarted first") };
    assert_eq!(names(&objs), ["a"]);
    // Selectors apply to the watch too: a change to b is not seen, one to a is.
    let mut b = cms.get("b").await.unwrap();
    b["data"] = json!({"x": "1"});
    cms.replace("b", &b).await.unwrap();
    let mut a = cms.get("a").await.unwrap();
    a["data"] = json!({"x": "1"});
    cms.replace("a", &a).await.unwrap();
    let e = next(&mut w).await;
    assert!(matches!(&e, Event::Applied(o) if runtime::name(o) == "a"), "{e:?}");
    // Leaving the selection is a deletion.
    a["metadata"]["labels"] = json!({"sel": "no"});
    a["metadata"]["resourceVersion"] = json!(null);
    cms.replace("a", &a).await.unwrap();
    let e = next(&mut w).await;
    assert!(matches!(&e, Event::Deleted(o) if runtime::name(o) == "a"), "{e:?}");
    server.stop().await;
}

/// Forces a 410: the watcher follows a selection nothing writes to while thousands of other writes push the
/// watch cache's history past its resourceVersion and the compactor compacts storage past it. Its next watch
/// (every second) gets 410 Expired and it relists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relists_after_410_expired() {
    let server = TestApiserver::start_with(&["--etcd-compaction-interval=1s"]).await;
    server.namespace("w").await;
    server.namespace("noise").await;
    let cms = server.client.api("", "v1", "configmaps").unwrap();
    let watched = cms.clone().namespaced("w");
    watched.create(&configmap("w", "keep", json!({"app": "watched"}), json!({}))).await.unwrap();
    let config = Config {
        watch_timeout: Duration::from_secs(1),
        watch_timeout_jitter: 0.0,
        initial_list_from_cache: false,
        ..Config::default()
    };
    let params = client::ListParams { label_selector: Some("app=watched".into()), ..Default::default() };
    let mut w = Watcher::new(watched.clone(), &params, config);
    let Event::Restarted(objs) = next(&mut w).await else { panic!("expected Restarted first") };
    assert_eq!(names(&objs), ["keep"]);
    let rv = w.resource_version().unwrap().to_string();

    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            let e = w.next().await;
            if tx.send(e).is_err() {
                return;
            }
        }
    });

    // 4200 writes: more than the watch cache's ring (4096) and far more than the 1000 revisions compaction keeps.
    let noise = cms.clone().namespaced("noise");
    noise.create(&configmap("noise", "n", json!({}), json!({"v": "0"}))).await.unwrap();
    let started = std::time::Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for t in 0..32 {
        let api = noise.clone();
        writers.spawn(async move {
            api.create(&configmap("noise", &format!("n{t}"), json!({}), json!({}))).await.unwrap();
            for i in 0..140 {
                let patch = json!({"data": {"v": i.to_string()}});
                api.patch(&format!("n{t}"), api_types::patch::PatchType::Merge, &patch).await.unwrap();
            }
        });
    }
    within(60, "the noise writes", async {
        while let Some(r) = writers.join_next().await {
            r.unwrap();
        }
    })
    .await;
    eprintln!("4200 writes took {:?}", started.elapsed());

    // Our own watch from the old resourceVersion proves history is gone (410) before we expect the watcher to see it.
    within(15, "storage compaction past the watcher's resourceVersion", async {
        loop {
            let p = client::ListParams { resource_version: Some(rv.clone()), ..Default::default() };
            match watched.watch(&p).await {
                Err(e) if e.code() == Some(410) => return,
                Err(e) => panic!("watch failed: {e}"),
                Ok(mut rx) => {
                    if let Ok(Some(Ok(client::WatchEvent::Error(e)))) =
                        tokio::time::timeout(Duration::from_millis(300), rx.recv()).await
                        && e.code == 410
                    {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;

    let e = within(10, "the relist", events.recv()).await.unwrap();
    let Event::Restarted(objs) = e else { panic!("expected a relist, got {e:?}") };
    assert_eq!(names(&objs), ["keep"]);
    // And it watches on from the new list.
    watched.create(&configmap("w", "after", json!({"app": "watched"}), json!({}))).await.unwrap();
    let e = within(10, "an event after the relist", events.recv()).await.unwrap();
    assert!(matches!(&e, Event::Applied(o) if runtime::name(o) == "after"), "{e:?}");
    driver.abort();
    server.stop().await;
}

/// Errors (here: connection refused while the apiserver is down) are retried with backoff until it comes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_until_the_apiserver_is_up() {
    let prepared = Prepared::new().await.refuse_connections();
    let client = client::Client::new(&prepared.config).unwrap();
    let api = client.api("", "v1", "configmaps").unwrap().namespaced("default");
    let mut w = Watcher::new(api, &client::ListParams::default(), Config::default());
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            if tx.send(w.next().await).is_err() {
                return;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(events.try_recv().is_err(), "nothing to report while the apiserver is down");
    let server = prepared.start(&[]).await;
    let cms = server.client.api("", "v1", "configmaps").unwrap().namespaced("default");
    cms.create(&configmap("default", "late", json!({}), json!({}))).await.unwrap();
    // The backoff is at most 1.6 s by now (100 ms doubling); the first list may or may not include "late".
    let e = within(10, "the first list", events.recv()).await.unwrap();
    let Event::Restarted(objs) = e else { panic!("expected Restarted first, got {e:?}") };
    if objs.is_empty() {
        let e = within(10, "the create", events.recv()).await.unwrap();
        assert!(matches!(&e, Event::Applied(o) if runtime::name(o) == "late"), "{e:?}");
    } else {
        assert_eq!(names(&objs), ["late"]);
    }
    driver.abort();
    server.stop().await;
}
