//! Shared informers against a real apiserver: one watch for many subscribers, notifications, resync, store.

mod support;

use std::sync::Arc;
use std::time::Duration;

use runtime::informer::{InformerParams, Notification, SharedInformerFactory};
use serde_json::{Value, json};
use support::{TestApiserver, configmap, eventually, within};
use tokio::sync::mpsc::UnboundedReceiver;

async fn recv(rx: &mut UnboundedReceiver<Notification>) -> Notification {
    within(10, "a notification", rx.recv()).await.expect("subscription open")
}

fn describe(n: &Notification) -> String {
    let name = runtime::name(n.object()).to_string();
    match n {
        Notification::Added(_) => format!("added {name}"),
        Notification::Updated { old, new } => {
            format!(
                "updated {name} {}->{}",
                old["data"]["v"].as_str().unwrap_or(""),
                new["data"]["v"].as_str().unwrap_or("")
            )
        }
        Notification::Deleted(_) => format!("deleted {name}"),
        Notification::Resync(_) => format!("resync {name}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_subscribers_share_one_watch() {
    let server = TestApiserver::start().await;
    server.namespace("inf").await;
    let cms = server.client.api("", "v1", "configmaps").unwrap().namespaced("inf");
    cms.create(&configmap("inf", "a", json!({}), json!({"v": "1"}))).await.unwrap();

    let factory = SharedInformerFactory::new(server.new_client());
    let res = api_types::resources::find("", "v1", "configmaps").unwrap();
    let params = InformerParams::all().namespace("inf");
    let first = factory.informer(res, params.clone()).unwrap();
    let mut rx1 = first.subscribe();
    // Asked for again (by another component of the process): the same informer.
    let second = factory.informer_for("", "v1", "configmaps", params.clone()).unwrap();
    let mut rx2 = second.subscribe();
    assert!(within(10, "the sync", second.wait_synced()).await);
    assert!(first.has_synced());
    assert_eq!(factory.informers().len(), 1);

    assert_eq!(describe(&recv(&mut rx1).await), "added a");
    assert_eq!(describe(&recv(&mut rx2).await), "added a");

    cms.create(&configmap("inf", "b", json!({}), json!({"v": "1"}))).await.unwrap();
    let mut b = cms.get("b").await.unwrap();
    b["data"]["v"] = json!("2");
    cms.replace("b", &b).await.unwrap();
    cms.delete("a", None).await.unwrap();
    for rx in [&mut rx1, &mut rx2] {
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(describe(&recv(rx).await));
        }
        assert_eq!(got, ["added b", "updated b 1->2", "deleted a"]);
    }

    // One list and one watch served both: two namespace-scoped GETs, one open watch.
    assert_eq!(server.requests("GET", "configmaps", "namespace").await, 2.0);
    assert_eq!(server.open_watches().await, 1.0);

    // The shared store has what the API has.
    let store = first.store();
    eventually(5, "the store to catch up", || store.len() == 1).await;
    assert_eq!(store.get("inf", "b").unwrap()["data"]["v"], "2");
    assert!(store.get("inf", "a").is_none());
    assert!(second.last_resource_version().is_some());

    // A late subscriber starts with the current objects.
    let mut late = second.subscribe();
    assert_eq!(describe(&recv(&mut late).await), "added b");

    // Other parameters are another informer, with its own watch.
    let labelled = factory.informer(res, params.clone().labels("app=x")).unwrap();
    assert!(within(10, "the second informer's sync", labelled.wait_synced()).await);
    assert!(labelled.store().is_empty());
    within(10, "the second watch", async {
        while server.open_watches().await < 2.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(server.open_watches().await, 2.0);

    // Shutting the factory down stops the watches (the stream ends at the next event the server sends).
    factory.shutdown();
    assert!(rx1.recv().await.is_none(), "subscriptions close on shutdown");
    cms.create(&configmap("inf", "c", json!({"app": "x"}), json!({}))).await.unwrap();
    within(10, "the watches to close", async {
        while server.open_watches().await > 0.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_and_indexes() {
    let server = TestApiserver::start().await;
    let pods_like = server.client.api("", "v1", "configmaps").unwrap().namespaced("default");
    for (name, node) in [("p1", "n1"), ("p2", "n1"), ("p3", "n2")] {
        pods_like.create(&configmap("default", name, json!({"node": node}), json!({}))).await.unwrap();
    }
    let factory = SharedInformerFactory::new(server.new_client());
    let informer = factory.informer_for("", "v1", "configmaps", InformerParams::all().namespace("default")).unwrap();
    let store = informer.store().clone();
    store.add_indexer("node", |o: &Value| {
        o.pointer("/metadata/labels/node").and_then(Value::as_str).map(|n| vec![n.to_string()]).unwrap_or_default()
    });
    let mut rx = informer.subscribe_with_resync(Duration::from_millis(300));
    assert!(within(10, "the sync", informer.wait_synced()).await);
    let mut added = Vec::new();
    for _ in 0..3 {
        added.push(describe(&recv(&mut rx).await));
    }
    added.sort();
    assert_eq!(added, ["added p1", "added p2", "added p3"]);
    // Nothing changes, yet every object comes again on each resync.
    let mut resynced = Vec::new();
    for _ in 0..6 {
        resynced.push(describe(&recv(&mut rx).await));
    }
    resynced.sort();
    assert_eq!(resynced, ["resync p1", "resync p1", "resync p2", "resync p2", "resync p3", "resync p3"]);

    let mut on_n1: Vec<String> = store.by_index("node", "n1").iter().map(|o| runtime::name(o).to_string()).collect();
    on_n1.sort();
    assert_eq!(on_n1, ["p1", "p2"]);
    let mut p2 = pods_like.get("p2").await.unwrap();
    p2["metadata"]["labels"]["node"] = json!("n2");
    pods_like.replace("p2", &p2).await.unwrap();
    eventually(5, "the index to follow the update", || store.by_index("node", "n2").len() == 2).await;
    assert_eq!(store.by_index("node", "n1").len(), 1);
    let held: Vec<Arc<Value>> = store.list_by(|o| runtime::name(o).starts_with('p'));
    assert_eq!(held.len(), 3);
    factory.shutdown();
    server.stop().await;
}

/// A factory's transform (client-go's `WithTransform(TransformStripManagedFields())`) applies to listed and watched
/// objects, in the store and in notifications.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transform_strips_managed_fields() {
    let server = TestApiserver::start().await;
    server.namespace("tr").await;
    let cms = server.client.api("", "v1", "configmaps").unwrap().namespaced("tr");
    cms.create(&configmap("tr", "listed", json!({}), json!({"v": "1"}))).await.unwrap();
    assert!(cms.get("listed").await.unwrap()["metadata"]["managedFields"].is_array(), "the server records managers");

    let factory = SharedInformerFactory::with_transform(
        server.new_client(),
        runtime::watcher::Config::default(),
        runtime::informer::strip_managed_fields,
    );
    let informer = factory.informer_for("", "v1", "configmaps", InformerParams::all().namespace("tr")).unwrap();
    let mut rx = informer.subscribe();
    assert!(within(10, "the sync", informer.wait_synced()).await);
    let listed = recv(&mut rx).await;
    assert_eq!(describe(&listed), "added listed");
    assert!(listed.object()["metadata"].get("managedFields").is_none());
    cms.create(&configmap("tr", "watched", json!({}), json!({"v": "1"}))).await.unwrap();
    let watched = recv(&mut rx).await;
    assert_eq!(describe(&watched), "added watched");
    assert!(watched.object()["metadata"].get("managedFields").is_none());
    assert_eq!(watched.object()["data"]["v"], "1", "the rest of the object is kept");
    let stored = informer.store().get("tr", "watched").unwrap();
    assert!(stored["metadata"].get("managedFields").is_none());
    assert!(stored["metadata"]["resourceVersion"].is_string());
    factory.shutdown();
    server.stop().await;
}
