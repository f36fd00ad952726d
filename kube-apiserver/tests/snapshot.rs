//! Backup and restore of the embedded store (`kube-apiserver snapshot save|restore|status`): objects written
//! through a running apiserver, a snapshot taken while it runs (and while a writer keeps writing), more writes,
//! then the snapshot restored into a new data directory and an apiserver started on it: exactly the objects of the
//! snapshot are there, at their values then, and the store goes on from the snapshot's revision.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kube_apiserver::storage::snapshot;
use kube_apiserver::testing::{Prepared, TestApiserver, configmap, within};
use serde_json::{Value, json};

async fn configmaps(c: &client::Client, ns: &str) -> BTreeMap<String, Value> {
    let list = c.api("", "v1", "configmaps").unwrap().namespaced(ns).list(&Default::default()).await.unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["metadata"]["name"].as_str().unwrap().to_string(), i["data"].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_of_a_running_store_restores_exactly_what_it_held() {
    let api = TestApiserver::start().await;
    api.namespace("snap").await;
    let cms = api.client.api("", "v1", "configmaps").unwrap().namespaced("snap");
    for i in 0..20 {
        cms.create(&configmap("snap", &format!("first-{i}"), json!({}), json!({"v": "1"}))).await.unwrap();
    }
    // A writer keeps the store busy in another namespace while the snapshot is taken.
    api.namespace("busy").await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (c, stop) = (api.new_client(), stop.clone());
        tokio::spawn(async move {
            let cms = c.api("", "v1", "configmaps").unwrap().namespaced("busy");
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                cms.create(&configmap("busy", &format!("w-{n}"), json!({}), json!({}))).await.unwrap();
                n += 1;
            }
            n
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let snap_dir = tempfile::tempdir().unwrap();
    let file = snap_dir.path().join("snapshot.db");
    let data_dir = api.data_dir();
    let (f2, d2) = (file.clone(), data_dir.clone());
    let saved = tokio::task::spawn_blocking(move || snapshot::save(&d2, &f2)).await.unwrap().unwrap();
    stop.store(true, Ordering::SeqCst);
    let written = writer.await.unwrap();
    assert!(written > 0);
    assert!(saved.revision > 0 && saved.total_keys >= 20, "{saved:?}");
    assert!(!snap_dir.path().join("snapshot.db.part").exists());
    assert_eq!(snapshot::status(&file).unwrap(), saved, "status reads what save reported");

    // More writes after the snapshot: a change, a deletion, a new object.
    let mut cm = cms.get("first-3").await.unwrap();
    cm["data"]["v"] = json!("2");
    cms.replace("first-3", &cm).await.unwrap();
    cms.delete("first-4", None).await.unwrap();
    cms.create(&configmap("snap", "second-0", json!({}), json!({"v": "1"}))).await.unwrap();
    let busy_before = configmaps(&api.client, "busy").await;
    api.stop().await;

    // Restore into a new directory and start on it.
    let restored = tempfile::tempdir().unwrap();
    let restored_data = restored.path().join("data");
    let st = snapshot::restore(&file, &restored_data).unwrap();
    assert_eq!((st.revision, st.total_keys, st.hash.as_str()), (saved.revision, saved.total_keys, saved.hash.as_str()));
    let e = snapshot::restore(&file, &restored_data).unwrap_err();
    assert!(e.contains("exists"), "restoring over a store is refused: {e}");
    let api = Prepared::new().await.data_dir(&restored_data).start(&[]).await;
    let got = configmaps(&api.client, "snap").await;
    let want: BTreeMap<String, Value> = (0..20).map(|i| (format!("first-{i}"), json!({"v": "1"}))).collect();
    assert_eq!(got, want, "exactly the snapshot's objects, at their values then");
    // The busy writer's objects: those committed before the snapshot's revision, a consistent prefix.
    let busy = configmaps(&api.client, "busy").await;
    assert!(busy.len() < busy_before.len(), "later writes are not in the snapshot");
    for n in 0..busy.len() {
        assert!(busy.contains_key(&format!("w-{n}")), "w-{n} missing from a prefix of {} writes", busy.len());
    }
    // The store goes on from the snapshot's revision.
    let cms = api.client.api("", "v1", "configmaps").unwrap().namespaced("snap");
    let created = cms.create(&configmap("snap", "after-restore", json!({}), json!({}))).await.unwrap();
    let rv: i64 = created["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(rv > saved.revision, "{rv} after {}", saved.revision);
    within(15, "stop", api.stop()).await;
}

#[test]
fn cli_save_status_and_restore_print_as_etcdctl_and_refuse_what_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let args =
        |a: &[&str]| std::iter::once("snapshot".to_string()).chain(a.iter().map(|s| s.to_string())).collect::<Vec<_>>();
    let missing = dir.path().join("none");
    assert_eq!(snapshot::run_cli(args(&["save", "x.db", &format!("--data-dir={}", missing.display())])), 1);
    assert!(snapshot::save(&missing, &dir.path().join("x.db")).unwrap_err().contains("no embedded store"));
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"not sqlite at all, not at all").unwrap();
    assert!(snapshot::status(&junk).is_err());
    assert!(snapshot::restore(&junk, &dir.path().join("r")).is_err());
    assert!(!dir.path().join("r/state.db").exists());
    let st = snapshot::Status { hash: "0a1b2c3d".into(), revision: 42, total_keys: 7, total_size: 2_100_000 };
    assert_eq!(snapshot::format_status(&st, "simple").unwrap(), "0a1b2c3d, 42, 7, 2.1 MB");
    assert_eq!(
        snapshot::format_status(&st, "table").unwrap(),
        "+----------+----------+------------+------------+\n\
         |   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |\n\
         +----------+----------+------------+------------+\n\
         | 0a1b2c3d |       42 |          7 | 2.1 MB     |\n\
         +----------+----------+------------+------------+"
    );
    assert_eq!(
        snapshot::format_status(&st, "json").unwrap(),
        r#"{"hash":169552957,"revision":42,"totalKey":7,"totalSize":2100000}"#
    );
}
