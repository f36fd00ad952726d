//! The event recorder against a real apiserver: Event contents and upstream's de-duplication.

mod support;

use std::time::Duration;

use runtime::events::{Config, EventType, Recorder};
use serde_json::{Value, json};
use support::{TestApiserver, configmap};

async fn events_in(server: &TestApiserver, ns: &str) -> Vec<Value> {
    let api = server.client.api("", "v1", "events").unwrap().namespaced(ns);
    let list = api.list(&client::ListParams::default()).await.unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_and_aggregates_repeats() {
    let server = TestApiserver::start().await;
    server.namespace("ev").await;
    let cms = server.client.api("", "v1", "configmaps").unwrap().namespaced("ev");
    let obj = cms.create(&configmap("ev", "target", json!({}), json!({}))).await.unwrap();
    let recorder = Recorder::new(&server.new_client(), "test-controller", "node-1").unwrap();

    let first = recorder.event(&obj, EventType::Normal, "Synced", "synced ok").await.unwrap().unwrap();
    let name = runtime::name(&first).to_string();
    let suffix = name.strip_prefix("target.").expect("named <object>.<hex nanos>");
    assert!(!suffix.is_empty() && suffix.chars().all(|c| c.is_ascii_hexdigit()), "{name}");
    assert_eq!(first["count"], 1);
    assert_eq!(
        first["involvedObject"],
        json!({
            "kind": "ConfigMap",
            "namespace": "ev",
            "name": "target",
            "uid": obj["metadata"]["uid"],
            "apiVersion": "v1",
            "resourceVersion": obj["metadata"]["resourceVersion"],
        })
    );
    assert_eq!(first["source"], json!({"component": "test-controller", "host": "node-1"}));
    assert_eq!(
        (first["reportingComponent"].as_str(), first["reportingInstance"].as_str()),
        (Some("test-controller"), Some("node-1"))
    );
    assert_eq!((first["type"].as_str(), first["reason"].as_str()), (Some("Normal"), Some("Synced")));

    // The same event again (a second later, so lastTimestamp moves): one Event, count 2.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = recorder.event(&obj, EventType::Normal, "Synced", "synced ok").await.unwrap().unwrap();
    assert_eq!(runtime::name(&second), name);
    let events = events_in(&server, "ev").await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["count"], 2);
    assert_eq!(events[0]["firstTimestamp"], first["firstTimestamp"]);
    assert!(events[0]["lastTimestamp"].as_str().unwrap() > first["lastTimestamp"].as_str().unwrap());
    recorder.event(&obj, EventType::Normal, "Synced", "synced ok").await.unwrap().unwrap();
    assert_eq!(events_in(&server, "ev").await[0]["count"], 3);

    // A different message, type or reason is another Event.
    recorder.event(&obj, EventType::Normal, "Synced", "synced again").await.unwrap().unwrap();
    recorder.event(&obj, EventType::Warning, "Synced", "synced ok").await.unwrap().unwrap();
    recorder.event(&obj, EventType::Warning, "Failed", "synced ok").await.unwrap().unwrap();
    assert_eq!(events_in(&server, "ev").await.len(), 4);

    // Another recorder (another source) does not aggregate into ours.
    let other = Recorder::new(&server.new_client(), "other-controller", "").unwrap();
    let e = other.event(&obj, EventType::Normal, "Synced", "synced ok").await.unwrap().unwrap();
    assert_eq!(e["source"], json!({"component": "other-controller"}));
    assert_eq!(events_in(&server, "ev").await.len(), 5);

    // If the aggregated Event is gone (TTL, deletion), a repeat starts a new one.
    let api = server.client.api("", "v1", "events").unwrap().namespaced("ev");
    api.delete(&name, None).await.unwrap();
    let again = recorder.event(&obj, EventType::Normal, "Synced", "synced ok").await.unwrap().unwrap();
    assert_ne!(runtime::name(&again), name);
    assert_eq!(again["count"], 1);

    // Concurrent repeats of one event wait for each other's write: one Event, counting all of them.
    let burst = (0..6).map(|_| recorder.event(&obj, EventType::Normal, "Burst", "all at once"));
    for e in futures_util::future::join_all(burst).await {
        e.unwrap().unwrap();
    }
    let burst: Vec<Value> = events_in(&server, "ev").await.into_iter().filter(|e| e["reason"] == "Burst").collect();
    assert_eq!(burst.len(), 1, "{burst:#?}");
    assert_eq!(burst[0]["count"], 6);

    // Once the object is gone for good, the recorder forgets it: the same event would start a new Event.
    recorder.forget(obj["metadata"]["uid"].as_str().unwrap());
    let after = recorder.event(&obj, EventType::Normal, "Burst", "all at once").await.unwrap().unwrap();
    assert_eq!(after["count"], 1);
    assert_ne!(runtime::name(&after), runtime::name(&burst[0]));
    // Other objects' entries stay.
    let other_obj = cms.create(&configmap("ev", "other", json!({}), json!({}))).await.unwrap();
    let o1 = recorder.event(&other_obj, EventType::Normal, "Synced", "x").await.unwrap().unwrap();
    recorder.forget(obj["metadata"]["uid"].as_str().unwrap());
    let o2 = recorder.event(&other_obj, EventType::Normal, "Synced", "x").await.unwrap().unwrap();
    assert_eq!((runtime::name(&o2), &o2["count"]), (runtime::name(&o1), &json!(2)));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_scoped_objects_and_the_window() {
    let server = TestApiserver::start().await;
    let nodes = server.client.api("", "v1", "nodes").unwrap();
    let node = nodes.create(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})).await.unwrap();
    let config = Config { window: Duration::from_millis(300), ..Config::default() };
    let recorder = Recorder::with_config(&server.new_client(), "kubelet", "n1", config).unwrap();
    let e = recorder.event(&node, EventType::Normal, "Starting", "Starting kubelet.").await.unwrap().unwrap();
    // Events about cluster-scoped objects live in "default".
    assert_eq!(runtime::namespace(&e), "default");
    assert_eq!(e["involvedObject"]["kind"], "Node");
    assert!(e["involvedObject"].get("namespace").is_none());
    // Past the window, a repeat is a new Event.
    tokio::time::sleep(Duration::from_millis(400)).await;
    recorder.event(&node, EventType::Normal, "Starting", "Starting kubelet.").await.unwrap().unwrap();
    let events = events_in(&server, "default").await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e["count"] == 1));

    // Fire-and-forget recording aggregates the same way.
    recorder.record(&node, EventType::Warning, "Rebooted", "Node rebooted.");
    recorder.record(&node, EventType::Warning, "Rebooted", "Node rebooted.");
    support::within(10, "the background events", async {
        loop {
            let events = events_in(&server, "default").await;
            if events.iter().any(|e| e["reason"] == "Rebooted" && e["count"] == 2) {
                assert_eq!(events.iter().filter(|e| e["reason"] == "Rebooted").count(), 1);
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn similar_events_aggregate_and_the_spam_filter_caps_an_object() {
    let server = TestApiserver::start().await;
    server.namespace("agg").await;
    let cms = server.client.api("", "v1", "configmaps").unwrap().namespaced("agg");
    let rs = cms.create(&configmap("agg", "owner", json!({}), json!({}))).await.unwrap();
    let other = cms.create(&configmap("agg", "other", json!({}), json!({}))).await.unwrap();
    let config =
        Config { aggregate_max_events: 3, spam_burst: 5, spam_refill: Duration::from_secs(3600), ..Config::default() };
    let recorder = Recorder::with_config(&server.new_client(), "replicaset-controller", "", config).unwrap();
    let created = |i: usize| format!("Created pod: p{i}");
    // Below the threshold, each message is its own Event.
    for i in 0..2 {
        let e = recorder.event(&rs, EventType::Normal, "SuccessfulCreate", &created(i)).await.unwrap().unwrap();
        assert_eq!(e["message"], created(i));
    }
    // The third distinct message starts the aggregate Event; the fourth counts on it.
    let agg = recorder.event(&rs, EventType::Normal, "SuccessfulCreate", &created(2)).await.unwrap().unwrap();
    assert_eq!(agg["message"], "(combined from similar events): Created pod: p2");
    assert_eq!(agg["count"], 1);
    let again = recorder.event(&rs, EventType::Normal, "SuccessfulCreate", &created(3)).await.unwrap().unwrap();
    assert_eq!(runtime::name(&again), runtime::name(&agg));
    assert_eq!(again["message"], "(combined from similar events): Created pod: p3");
    assert_eq!(again["count"], 2);
    assert_eq!(events_in(&server, "agg").await.len(), 3);
    // The object's budget is 5 events: the fifth is written, the sixth dropped.
    let fifth = recorder.event(&rs, EventType::Normal, "SuccessfulCreate", &created(4)).await.unwrap().unwrap();
    assert_eq!(fifth["count"], 3);
    let dropped = recorder.event(&rs, EventType::Warning, "FailedCreate", "quota exceeded").await.unwrap();
    assert!(dropped.is_none(), "{dropped:?}");
    let events = events_in(&server, "agg").await;
    assert_eq!(events.len(), 3, "{events:#?}");
    assert!(events.iter().all(|e| e["reason"] == "SuccessfulCreate"));
    // Another object has its own budget.
    let e = recorder.event(&other, EventType::Normal, "SuccessfulCreate", "Created pod: q").await.unwrap();
    assert_eq!(e.unwrap()["involvedObject"]["name"], "other");
    server.stop().await;
}
