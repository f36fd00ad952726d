//! Fixtures shared by the storage tests: a fresh embedded store in a temp dir, or a fresh etcd.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use kube_apiserver::storage::etcd::{EtcdConfig, EtcdStore};
use kube_apiserver::storage::sqlite::{SqliteConfig, SqliteStore};
use kube_apiserver::storage::testing::EtcdServer;
use kube_apiserver::storage::{Event, Result, WatchStream};

pub const PROGRESS: Duration = Duration::from_millis(300);

/// A small ring, so that watch tests also go through the path that reads history back from the log.
pub fn sqlite_config(dir: &tempfile::TempDir) -> SqliteConfig {
    let mut config = SqliteConfig::in_dir(dir.path());
    config.ring_capacity = 16;
    config.progress_interval = PROGRESS;
    config.compaction_step = 7;
    config
}

pub fn sqlite() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(sqlite_config(&dir)).expect("open sqlite store");
    (store, dir)
}

/// A fresh etcd and a store on it. Tests start their etcds in parallel on ports found free a moment before, so
/// one may lose its port to another's listener (its first request then meets the wrong server): such a start is
/// retried on new ports.
pub async fn etcd() -> (EtcdStore, EtcdServer) {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let server = tokio::task::spawn_blocking(EtcdServer::start)
            .await
            .expect("join")
            .expect("etcd must be installed to run the etcd conformance tests (apt-get install etcd-server)");
        let mut config = EtcdConfig::new(vec![server.endpoint.clone()]);
        config.progress_interval = PROGRESS;
        match EtcdStore::connect(config).await {
            Ok(store) => return (store, server),
            Err(e) if attempt < 3 => eprintln!("etcd on {} not usable ({e:?}); starting another", server.endpoint),
            Err(e) => panic!("connect to etcd: {e:?}"),
        }
    }
}

/// Fails the test instead of hanging.
pub async fn within<T>(secs: u64, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f).await.expect("timed out")
}

/// The next watch item that is not a progress event.
pub async fn next_change(w: &mut WatchStream) -> Result<Event> {
    within(15, async {
        loop {
            match w.next().await.expect("watch ended") {
                Ok(Event::Progress { .. }) => continue,
                other => return other,
            }
        }
    })
    .await
}

/// Runs each named generic test against both backends: `sqlite::name` and `etcd::name`.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _dir) = $crate::common::sqlite();
                    $crate::common::within(120, super::$name(&store)).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _server) = $crate::common::etcd().await;
                    $crate::common::within(120, super::$name(&store)).await;
                }
            )*
        }
    };
}
