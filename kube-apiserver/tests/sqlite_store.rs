//! Behaviour particular to the embedded store: durability across reopen and `kill -9`, physical compaction.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{sqlite_config, within};
use kube_apiserver::storage::sqlite::SqliteStore;
use kube_apiserver::storage::{Event, ListOptions, Storage, StorageError};

#[tokio::test]
async fn reopening_continues_revisions_and_keeps_history() {
    let dir = tempfile::tempdir().unwrap();
    let (last, compacted) = {
        let s = SqliteStore::open(sqlite_config(&dir)).unwrap();
        let mut rev = s.create("/a/ns/x", Bytes::from_static(b"1"), None).await.unwrap().mod_revision;
        for i in 2..=20 {
            rev = s.update("/a/ns/x", Bytes::from(i.to_string()), rev, None).await.unwrap().mod_revision;
        }
        s.compact(5).await.unwrap();
        (rev, s.compacted_revision().await.unwrap())
    };
    assert_eq!((last, compacted), (20, 5));
    let s = SqliteStore::open(sqlite_config(&dir)).unwrap();
    assert_eq!(s.current_revision().await.unwrap(), 20);
    assert_eq!(s.compacted_revision().await.unwrap(), 5);
    assert!(matches!(s.get("/a/ns/x", Some(4)).await, Err(StorageError::Compacted { .. })));
    assert_eq!(s.get("/a/ns/x", Some(10)).await.unwrap().value, Bytes::from("10"));
    let next = s.create("/a/ns/y", Bytes::from_static(b"y"), None).await.unwrap();
    assert_eq!(next.mod_revision, 21);
    // History from before the restart is still watchable.
    let mut w = s.watch("/a/", 18).await.unwrap();
    let revs: Vec<_> = [
        common::next_change(&mut w).await.unwrap(),
        common::next_change(&mut w).await.unwrap(),
        common::next_change(&mut w).await.unwrap(),
    ]
    .iter()
    .map(Event::revision)
    .collect();
    assert_eq!(revs, [19, 20, 21]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_removes_superseded_history_in_steps() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(sqlite_config(&dir)).unwrap();
    let mut rev = s.create("/h/ns/k", Bytes::from_static(b"0"), None).await.unwrap().mod_revision;
    for i in 1..200 {
        rev = s.update("/h/ns/k", Bytes::from(i.to_string()), rev, None).await.unwrap().mod_revision;
    }
    s.create("/h/ns/dead", Bytes::from_static(b"d"), None).await.unwrap();
    s.delete("/h/ns/dead", None).await.unwrap();
    let at = s.current_revision().await.unwrap();
    let rows = |path: std::path::PathBuf| {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.query_row("SELECT COUNT(*) FROM log", [], |r| r.get::<_, i64>(0)).unwrap()
    };
    let db = dir.path().join("state.db");
    assert_eq!(rows(db.clone()), 202);
    s.compact(at).await.unwrap();
    // Steps of 7 revisions run between write batches until everything superseded is gone.
    within(20, async {
        while rows(db.clone()) != 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(s.get("/h/ns/k", None).await.unwrap().value, Bytes::from("199"));
    assert_eq!(
        s.list("/h/", ListOptions { at_revision: Some(at), ..Default::default() }).await.unwrap().items.len(),
        1
    );
}

/// The child half of the crash test: writes as fast as it can and prints every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by acknowledged_writes_survive_sigkill as a child process"]
async fn crash_child() {
    let Ok(dir) = std::env::var("KUBE_CRASH_DIR") else {
        return;
    };
    let store = Arc::new(SqliteStore::open(kube_apiserver::storage::sqlite::SqliteConfig::in_dir(dir)).unwrap());
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (store, out) = (store.clone(), out.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("/crash/w{w}/k{i}");
                let kv = store.create(&key, Bytes::from(vec![b'x'; 200]), None).await.unwrap();
                let mut out = out.lock().unwrap();
                writeln!(out, "ACK {key} {}", kv.mod_revision).unwrap();
                out.flush().unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("KUBE_CRASH_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (key, rev) = rest.split_once(' ').unwrap();
                acks.push((key.to_string(), rev.parse::<i64>().unwrap()));
            }
        }
        acks
    });
    // Let it write for a while, then kill it mid-flight.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let acks = reader.join().unwrap();
    assert!(acks.len() > 100, "the child acknowledged only {} writes", acks.len());

    let store = SqliteStore::open(kube_apiserver::storage::sqlite::SqliteConfig::in_dir(dir.path())).unwrap();
    for (key, rev) in &acks {
        let kv = store.get(key, None).await.unwrap_or_else(|e| panic!("acknowledged {key}@{rev} lost: {e}"));
        assert_eq!(kv.mod_revision, *rev);
    }
    // Every revision up to the current one is one of the stored creates: no gaps, no duplicates.
    let current = store.current_revision().await.unwrap();
    assert!(current >= acks.iter().map(|a| a.1).max().unwrap());
    let mut revs: Vec<_> =
        store.list("/crash/", ListOptions::default()).await.unwrap().items.iter().map(|kv| kv.mod_revision).collect();
    revs.sort();
    assert_eq!(revs, (1..=current).collect::<Vec<_>>());
    // And it keeps counting from there.
    assert_eq!(store.create("/crash/after/x", Bytes::new(), None).await.unwrap().mod_revision, current + 1);
}

/// Another connection holding the write lock (an operator's `sqlite3` session, a backup) makes a write batch wait
/// for it (busy_timeout), not fail: the batch takes the write lock before it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waits_for_another_connections_write_lock() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(sqlite_config(&dir)).unwrap();
    let rev = s.create("/l/ns/k", Bytes::from_static(b"0"), None).await.unwrap().mod_revision;
    let path = dir.path().join("state.db");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let mut conn = rusqlite::Connection::open(path).unwrap();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        tx.commit().unwrap();
    });
    locked_rx.recv().unwrap();
    let started = Instant::now();
    let updated = within(10, s.update("/l/ns/k", Bytes::from_static(b"1"), rev, None)).await;
    assert!(updated.is_ok(), "{updated:?}");
    assert!(started.elapsed() >= Duration::from_millis(200), "the update did not wait for the lock");
    assert_eq!(s.get("/l/ns/k", None).await.unwrap().value, Bytes::from_static(b"1"));
    holder.join().unwrap();
}
