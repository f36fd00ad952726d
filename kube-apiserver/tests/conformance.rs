//! The storage conformance suite: every test runs against the embedded store and against a real etcd.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::{PROGRESS, next_change, within};
use kube_apiserver::storage::{Event, KeyValue, ListOptions, Revision, Storage, StorageError};

conformance!(
    create_refuses_existing_key,
    update_is_compare_and_swap,
    delete_checks_existence_and_revision,
    prefixes_are_segment_bounded_and_keys_validated,
    pagination_stays_pinned_while_writes_continue,
    get_at_revision_reads_history,
    watch_replays_history_then_live_events_in_order,
    watch_and_reads_below_compaction_are_refused,
    ttl_expiry_is_seen_as_delete,
    idle_watch_reports_progress,
    random_operations_match_a_model,
);

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn create_refuses_existing_key(s: &impl Storage) {
    let before = s.current_revision().await.unwrap();
    let kv = s.create("/pods/default/a", b("one"), None).await.unwrap();
    assert_eq!(kv.mod_revision, before + 1);
    assert_eq!((kv.create_revision, kv.version), (kv.mod_revision, 1));
    let err = s.create("/pods/default/a", b("two"), None).await.unwrap_err();
    assert_eq!(err, StorageError::AlreadyExists { key: "/pods/default/a".into() });
    // The refused create changed nothing.
    assert_eq!(s.current_revision().await.unwrap(), kv.mod_revision);
    assert_eq!(s.get("/pods/default/a", None).await.unwrap(), kv);
}

async fn update_is_compare_and_swap(s: &impl Storage) {
    let v1 = s.create("/cm/ns/x", b("1"), None).await.unwrap();
    let v2 = s.update("/cm/ns/x", b("2"), v1.mod_revision, None).await.unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.create_revision, v1.create_revision);
    assert!(v2.mod_revision > v1.mod_revision);
    // A stale revision is a conflict carrying the value now stored, and writes nothing.
    let err = s.update("/cm/ns/x", b("3"), v1.mod_revision, None).await.unwrap_err();
    assert_eq!(err, StorageError::Conflict { current: Box::new(v2.clone()) });
    assert_eq!(s.get("/cm/ns/x", None).await.unwrap(), v2);
    assert_eq!(s.current_revision().await.unwrap(), v2.mod_revision);
    // Updating a key that does not exist is NotFound, whatever the revision.
    for rev in [0, v2.mod_revision] {
        let err = s.update("/cm/ns/missing", b("x"), rev, None).await.unwrap_err();
        assert_eq!(err, StorageError::NotFound { key: "/cm/ns/missing".into() });
    }
    assert!(matches!(s.get("/cm/ns/missing", None).await, Err(StorageError::NotFound { .. })));
}

async fn delete_checks_existence_and_revision(s: &impl Storage) {
    let err = s.delete("/secrets/ns/none", None).await.unwrap_err();
    assert_eq!(err, StorageError::NotFound { key: "/secrets/ns/none".into() });
    let kv = s.create("/secrets/ns/s", b("v"), None).await.unwrap();
    let err = s.delete("/secrets/ns/s", Some(kv.mod_revision - 1)).await.unwrap_err();
    assert_eq!(err, StorageError::Conflict { current: Box::new(kv.clone()) });
    let (rev, prev) = s.delete("/secrets/ns/s", Some(kv.mod_revision)).await.unwrap();
    assert_eq!(rev, kv.mod_revision + 1);
    assert_eq!(prev, kv);
    assert!(matches!(s.get("/secrets/ns/s", None).await, Err(StorageError::NotFound { .. })));
    assert!(matches!(s.delete("/secrets/ns/s", None).await, Err(StorageError::NotFound { .. })));
    // Re-creating starts a new life: version 1, a new create revision.
    let again = s.create("/secrets/ns/s", b("w"), None).await.unwrap();
    assert_eq!(again.version, 1);
    assert_eq!(again.create_revision, rev + 1);
}

async fn prefixes_are_segment_bounded_and_keys_validated(s: &impl Storage) {
    s.create("/pods/a/x", b("1"), None).await.unwrap();
    s.create("/pods/ab/y", b("2"), None).await.unwrap();
    s.create("/pods/a0/z", b("3"), None).await.unwrap();
    let list = s.list("/pods/a/", ListOptions::default()).await.unwrap();
    assert_eq!(list.items.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(), ["/pods/a/x"]);
    let all = s.list("/pods/", ListOptions::default()).await.unwrap();
    assert_eq!(all.items.len(), 3);
    let before = s.current_revision().await.unwrap();
    for bad in ["/pods/../x", "/pods/./x", "pods/a/x", "/pods//x", "/pods/a/"] {
        assert!(matches!(s.create(bad, b("v"), None).await, Err(StorageError::InvalidKey { .. })), "{bad}");
        assert!(matches!(s.get(bad, None).await, Err(StorageError::InvalidKey { .. })), "{bad}");
    }
    assert!(matches!(s.list("/pods", ListOptions::default()).await, Err(StorageError::InvalidKey { .. })));
    assert!(matches!(s.watch("/pods/../", 0).await, Err(StorageError::InvalidKey { .. })));
    assert_eq!(s.current_revision().await.unwrap(), before, "refused keys must not write");
}

async fn pagination_stays_pinned_while_writes_continue(s: &impl Storage) {
    let mut revs = BTreeMap::new();
    for i in 0..25 {
        let key = format!("/pods/ns/p{i:02}");
        let kv = s.create(&key, b(&format!("v{i}")), None).await.unwrap();
        revs.insert(key, kv);
    }
    let first = s.list("/pods/ns/", ListOptions { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(first.items.len(), 10);
    assert!(first.more);
    assert_eq!(first.remaining, 15);
    let pinned = first.revision;
    // Writes continue: change, delete and add keys after the first page.
    let p15 = &revs["/pods/ns/p15"];
    s.update("/pods/ns/p15", b("changed"), p15.mod_revision, None).await.unwrap();
    s.delete("/pods/ns/p20", None).await.unwrap();
    s.create("/pods/ns/p99", b("new"), None).await.unwrap();
    s.delete("/pods/ns/p03", None).await.unwrap();

    let mut pages = first.items.clone();
    let mut last = first;
    while last.more {
        let after = last.items.last().unwrap().key.clone();
        let opts = ListOptions { start_after: Some(after), at_revision: Some(pinned), limit: 10 };
        last = s.list("/pods/ns/", opts).await.unwrap();
        assert_eq!(last.revision, pinned);
        pages.extend(last.items.iter().cloned());
    }
    // The pages together are exactly the state at the pinned revision.
    assert_eq!(pages, revs.values().cloned().collect::<Vec<_>>());
    // A fresh list sees the writes.
    let now = s.list("/pods/ns/", ListOptions::default()).await.unwrap();
    assert!(now.revision > pinned);
    assert_eq!(now.items.len(), 24);
    assert!(now.items.iter().any(|kv| kv.key == "/pods/ns/p99"));
    assert_eq!(now.items.iter().find(|kv| kv.key == "/pods/ns/p15").unwrap().value, b("changed"));
    assert!(!now.more);
    assert_eq!(now.remaining, 0);
}

async fn get_at_revision_reads_history(s: &impl Storage) {
    let v1 = s.create("/nodes/n1", b("a"), None).await.unwrap();
    let v2 = s.update("/nodes/n1", b("b"), v1.mod_revision, None).await.unwrap();
    let (gone, _) = s.delete("/nodes/n1", None).await.unwrap();
    assert_eq!(s.get("/nodes/n1", Some(v1.mod_revision)).await.unwrap(), v1);
    assert_eq!(s.get("/nodes/n1", Some(v2.mod_revision)).await.unwrap(), v2);
    assert!(matches!(s.get("/nodes/n1", Some(gone)).await, Err(StorageError::NotFound { .. })));
    assert!(matches!(s.get("/nodes/n1", Some(v1.mod_revision - 1)).await, Err(StorageError::NotFound { .. })));
    let err = s.get("/nodes/n1", Some(gone + 100)).await.unwrap_err();
    assert!(matches!(err, StorageError::FutureRevision { requested, .. } if requested == gone + 100), "{err:?}");
    let err = s.list("/nodes/", ListOptions { at_revision: Some(gone + 100), ..Default::default() }).await;
    assert!(matches!(err, Err(StorageError::FutureRevision { .. })));
}

fn expect_put(ev: Event, key: &str, value: &str, prev: Option<&str>) -> KeyValue {
    match ev {
        Event::Put { kv, prev: p } => {
            assert_eq!((kv.key.as_str(), kv.value.clone()), (key, b(value)));
            assert_eq!(p.map(|p| p.value), prev.map(b), "prev value of {key}");
            kv
        }
        other => panic!("expected PUT {key}={value}, got {other:?}"),
    }
}

async fn watch_replays_history_then_live_events_in_order(s: &impl Storage) {
    let start = s.current_revision().await.unwrap();
    // Enough history to run past the embedded store's (test-sized) in-memory ring.
    let mut expected = Vec::new();
    let mut rev = s.create("/w/ns/k", b("0"), None).await.unwrap().mod_revision;
    expected.push(("/w/ns/k".to_string(), "0".to_string(), None));
    for i in 1..40 {
        s.create(&format!("/other/ns/o{i}"), b("noise"), None).await.unwrap();
        rev = s.update("/w/ns/k", b(&i.to_string()), rev, None).await.unwrap().mod_revision;
        expected.push(("/w/ns/k".to_string(), i.to_string(), Some((i - 1).to_string())));
    }
    let mut w = s.watch("/w/", start).await.unwrap();
    let mut last = start;
    for (key, value, prev) in &expected {
        let kv = expect_put(next_change(&mut w).await.unwrap(), key, value, prev.as_deref());
        assert!(kv.mod_revision > last, "events must come in revision order");
        last = kv.mod_revision;
    }
    // Live events follow, including a delete carrying the last value.
    let created = s.create("/w/ns/live", b("L"), None).await.unwrap();
    expect_put(next_change(&mut w).await.unwrap(), "/w/ns/live", "L", None);
    let (del_rev, _) = s.delete("/w/ns/k", None).await.unwrap();
    match next_change(&mut w).await.unwrap() {
        Event::Delete { key, revision, prev } => {
            assert_eq!((key.as_str(), revision), ("/w/ns/k", del_rev));
            assert_eq!(prev.unwrap().value, b("39"));
        }
        other => panic!("expected DELETE, got {other:?}"),
    }
    // A second watcher from the middle of history sees only what came after.
    let mut w2 = s.watch("/w/ns/", created.mod_revision - 1).await.unwrap();
    expect_put(next_change(&mut w2).await.unwrap(), "/w/ns/live", "L", None);
    assert!(matches!(next_change(&mut w2).await.unwrap(), Event::Delete { revision, .. } if revision == del_rev));
}

async fn watch_and_reads_below_compaction_are_refused(s: &impl Storage) {
    let first = s.create("/c/ns/keep", b("old"), None).await.unwrap();
    let mut rev = s.create("/c/ns/churn", b("0"), None).await.unwrap().mod_revision;
    for i in 1..30 {
        rev = s.update("/c/ns/churn", b(&i.to_string()), rev, None).await.unwrap().mod_revision;
    }
    s.create("/c/ns/gone", b("g"), None).await.unwrap();
    s.delete("/c/ns/gone", None).await.unwrap();
    let at = s.current_revision().await.unwrap();
    s.update("/c/ns/churn", b("after"), rev, None).await.unwrap();
    s.compact(at).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), at);

    let mut w = s.watch("/c/", at - 2).await.unwrap();
    match within(15, w.next()).await.expect("an item") {
        Err(StorageError::Compacted { compact_revision, .. }) => assert_eq!(compact_revision, at),
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(matches!(s.get("/c/ns/keep", Some(at - 1)).await, Err(StorageError::Compacted { .. })));
    let below = ListOptions { at_revision: Some(at - 1), ..Default::default() };
    assert!(matches!(s.list("/c/", below).await, Err(StorageError::Compacted { .. })));
    assert!(matches!(s.compact(at).await, Err(StorageError::Compacted { .. })));
    // Give the embedded store's background removal time to run; the state at the compacted revision stays.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let at_compaction = s.list("/c/", ListOptions { at_revision: Some(at), ..Default::default() }).await.unwrap();
    let got: Vec<_> = at_compaction.items.iter().map(|kv| (kv.key.as_str(), kv.value.clone())).collect();
    assert_eq!(got, [("/c/ns/churn", b("29")), ("/c/ns/keep", b("old"))]);
    assert_eq!(s.get("/c/ns/keep", Some(at)).await.unwrap(), first);
    // Watching from the compacted revision itself works and sees later events, with their previous values.
    let mut w = s.watch("/c/", at).await.unwrap();
    expect_put(next_change(&mut w).await.unwrap(), "/c/ns/churn", "after", Some("29"));
}

async fn ttl_expiry_is_seen_as_delete(s: &impl Storage) {
    let start = s.current_revision().await.unwrap();
    let mut w = s.watch("/events/", start).await.unwrap();
    s.create("/events/ns/short", b("e"), Some(Duration::from_secs(2))).await.unwrap();
    s.create("/events/ns/plain", b("p"), None).await.unwrap();
    let v = s.create("/events/ns/renewed", b("r"), Some(Duration::from_secs(2))).await.unwrap();
    // An update without a TTL makes the key permanent.
    s.update("/events/ns/renewed", b("r2"), v.mod_revision, None).await.unwrap();
    for _ in 0..4 {
        next_change(&mut w).await.unwrap();
    }
    let started = std::time::Instant::now();
    match within(20, next_change(&mut w)).await.unwrap() {
        Event::Delete { key, prev, .. } => {
            assert_eq!(key, "/events/ns/short");
            assert_eq!(prev.unwrap().value, b("e"));
        }
        other => panic!("expected the TTL delete, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(matches!(s.get("/events/ns/short", None).await, Err(StorageError::NotFound { .. })));
    assert!(s.get("/events/ns/plain", None).await.is_ok());
    assert!(s.get("/events/ns/renewed", None).await.is_ok());
}

async fn idle_watch_reports_progress(s: &impl Storage) {
    s.create("/busy/ns/a", b("1"), None).await.unwrap();
    let now = s.current_revision().await.unwrap();
    let mut w = s.watch("/quiet/", now).await.unwrap();
    // Writes elsewhere move the revision on; the quiet watcher learns about it through progress.
    s.create("/busy/ns/b", b("2"), None).await.unwrap();
    let target = s.current_revision().await.unwrap();
    within(20, async {
        loop {
            match w.next().await.expect("watch ended").unwrap() {
                Event::Progress { revision } if revision >= target => break,
                Event::Progress { .. } => continue,
                other => panic!("unexpected event {other:?}"),
            }
        }
    })
    .await;
    let _ = PROGRESS;
}

/// A small deterministic generator (xorshift), so failures replay.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

async fn random_operations_match_a_model(s: &impl Storage) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let base = s.current_revision().await.unwrap();
    let mut model: BTreeMap<String, KeyValue> = BTreeMap::new();
    let mut rev = base;
    let mut snapshots: Vec<(Revision, BTreeMap<String, KeyValue>)> = Vec::new();
    let mut history: Vec<Event> = Vec::new();
    for step in 0..400 {
        let key = format!("/m/ns/k{}", rng.next(8));
        let value = b(&format!("v{step}"));
        match rng.next(6) {
            0 | 1 => match (s.create(&key, value.clone(), None).await, model.get(&key)) {
                (Ok(kv), None) => {
                    rev += 1;
                    assert_eq!(
                        kv,
                        KeyValue { key: key.clone(), value, create_revision: rev, mod_revision: rev, version: 1 }
                    );
                    history.push(Event::Put { kv: kv.clone(), prev: None });
                    model.insert(key, kv);
                }
                (Err(StorageError::AlreadyExists { .. }), Some(_)) => {}
                other => panic!("step {step}: create {key}: {other:?}"),
            },
            2 | 3 => {
                let current = model.get(&key).cloned();
                // Half the time a stale revision.
                let expected = match (&current, rng.next(2)) {
                    (Some(c), 0) => c.mod_revision,
                    (Some(c), _) => c.mod_revision - 1,
                    (None, _) => rev,
                };
                match (s.update(&key, value.clone(), expected, None).await, current) {
                    (Ok(kv), Some(cur)) if cur.mod_revision == expected => {
                        rev += 1;
                        let want = KeyValue {
                            key: key.clone(),
                            value,
                            create_revision: cur.create_revision,
                            mod_revision: rev,
                            version: cur.version + 1,
                        };
                        assert_eq!(kv, want, "step {step}");
                        history.push(Event::Put { kv: kv.clone(), prev: Some(cur) });
                        model.insert(key, kv);
                    }
                    (Err(StorageError::Conflict { current }), Some(cur)) => {
                        assert_eq!(*current, cur)
                    }
                    (Err(StorageError::NotFound { .. }), None) => {}
                    other => panic!("step {step}: update {key}: {other:?}"),
                }
            }
            4 => match (s.delete(&key, None).await, model.remove(&key)) {
                (Ok((r, prev)), Some(cur)) => {
                    rev += 1;
                    assert_eq!((r, &prev), (rev, &cur));
                    history.push(Event::Delete { key, revision: r, prev: Some(cur) });
                }
                (Err(StorageError::NotFound { .. }), None) => {}
                other => panic!("step {step}: delete {key}: {other:?}"),
            },
            _ => {
                let got = s.get(&key, None).await;
                match (got, model.get(&key)) {
                    (Ok(kv), Some(want)) => assert_eq!(&kv, want),
                    (Err(StorageError::NotFound { .. }), None) => {}
                    other => panic!("step {step}: get {key}: {other:?}"),
                }
            }
        }
        if step % 50 == 0 {
            snapshots.push((rev, model.clone()));
        }
    }
    assert_eq!(s.current_revision().await.unwrap(), rev);
    // Lists now and at every snapshot agree with the model.
    let now = s.list("/m/", ListOptions::default()).await.unwrap();
    assert_eq!(now.items, model.values().cloned().collect::<Vec<_>>());
    for (at, snap) in &snapshots {
        let then = s.list("/m/", ListOptions { at_revision: Some(*at), ..Default::default() }).await.unwrap();
        assert_eq!(then.items, snap.values().cloned().collect::<Vec<_>>(), "list at {at}");
    }
    // A watch from the start replays exactly the accepted writes.
    let mut w = s.watch("/m/", base).await.unwrap();
    for want in &history {
        assert_eq!(&next_change(&mut w).await.unwrap(), want);
    }
}
