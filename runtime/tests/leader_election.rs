//! Leader election between candidates on a real apiserver's Lease.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use runtime::leader_election::{Config, LeaderElector, Outcome};
use support::{TestApiserver, within};

fn fast(lease_secs: u64, renew: Duration) -> Config {
    Config {
        lease_duration: Duration::from_secs(lease_secs),
        renew_deadline: renew,
        retry_period: Duration::from_millis(200),
        release_on_cancel: true,
    }
}

async fn wait_leader(e: &LeaderElector, secs: u64) {
    let mut rx = e.subscribe();
    within(secs, "leadership", rx.wait_for(|l| *l)).await.unwrap();
}

async fn lease(server: &TestApiserver, name: &str) -> serde_json::Value {
    let api = server.client.api("coordination.k8s.io", "v1", "leases").unwrap().namespaced("kube-system");
    api.get(name).await.unwrap()
}

/// Runs a candidate until `stop` fires; returns its outcome.
fn campaign(
    e: &Arc<LeaderElector>,
    led: Arc<AtomicBool>,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<Outcome>) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let e = e.clone();
    let task = tokio::spawn(async move {
        e.run(
            async move {
                led.store(true, Ordering::SeqCst);
                std::future::pending::<()>().await
            },
            async move {
                let _ = stopped.await;
            },
        )
        .await
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leads_and_another_takes_over_after_expiry() {
    let server = TestApiserver::start().await;
    let config = fast(2, Duration::from_secs(1));
    let a = Arc::new(LeaderElector::new(&server.new_client(), "kube-system", "ctl", "a", config.clone()).unwrap());
    let b = Arc::new(LeaderElector::new(&server.new_client(), "kube-system", "ctl", "b", config).unwrap());
    let a_led = Arc::new(AtomicBool::new(false));
    let (_stop_a, task_a) = campaign(&a, a_led.clone());
    wait_leader(&a, 10).await;
    support::eventually(5, "the lead future to run once leading", || a_led.load(Ordering::SeqCst)).await;
    let (stop_b, task_b) = campaign(&b, Arc::new(AtomicBool::new(false)));
    // a renews every 200 ms; b keeps trying but never gets it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(a.is_leader() && !b.is_leader());
    let l = lease(&server, "ctl").await;
    assert_eq!(l["spec"]["holderIdentity"], "a");
    assert_eq!(l["spec"]["leaseDurationSeconds"], 2);
    assert_eq!(l["spec"]["leaseTransitions"], 0);
    assert!(l["spec"]["renewTime"].as_str().unwrap().ends_with('Z'));

    // a dies without releasing: b takes over once renewTime + 2 s has passed.
    task_a.abort();
    let died = Instant::now();
    wait_leader(&b, 10).await;
    let took = died.elapsed();
    assert!(took >= Duration::from_millis(1500), "took over before the lease expired: {took:?}");
    assert!(took < Duration::from_secs(8), "took over too late: {took:?}");
    let l = lease(&server, "ctl").await;
    assert_eq!(l["spec"]["holderIdentity"], "b");
    assert_eq!(l["spec"]["leaseTransitions"], 1);
    let _ = stop_b.send(());
    assert_eq!(within(10, "b to stop", task_b).await.unwrap(), Outcome::Shutdown);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_hands_over_quickly() {
    let server = TestApiserver::start().await;
    // A long lease: without a release, b would wait about 10 s.
    let config = fast(10, Duration::from_secs(5));
    let a = Arc::new(LeaderElector::new(&server.new_client(), "kube-system", "sched", "a", config.clone()).unwrap());
    let b = Arc::new(LeaderElector::new(&server.new_client(), "kube-system", "sched", "b", config).unwrap());
    let (stop_a, task_a) = campaign(&a, Arc::new(AtomicBool::new(false)));
    wait_leader(&a, 10).await;
    let b_led = Arc::new(AtomicBool::new(false));
    let (stop_b, task_b) = campaign(&b, b_led.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!b.is_leader());

    let released = Instant::now();
    let _ = stop_a.send(());
    assert_eq!(within(10, "a to stop", task_a).await.unwrap(), Outcome::Shutdown);
    assert!(!a.is_leader());
    wait_leader(&b, 10).await;
    // Well under the 10 s lease (the test tolerates a loaded machine; an idle one hands over in about 1 s).
    assert!(released.elapsed() < Duration::from_secs(6), "handover took {:?}", released.elapsed());
    let l = lease(&server, "sched").await;
    assert_eq!(l["spec"]["holderIdentity"], "b");
    assert_eq!(l["spec"]["leaseTransitions"], 1);
    assert_eq!(l["spec"]["leaseDurationSeconds"], 10);

    // b's release on shutdown leaves the lease without a holder.
    let _ = stop_b.send(());
    assert_eq!(within(10, "b to stop", task_b).await.unwrap(), Outcome::Shutdown);
    assert!(b_led.load(Ordering::SeqCst));
    let l = lease(&server, "sched").await;
    assert_eq!(l["spec"]["holderIdentity"], "");
    assert_eq!(l["spec"]["leaseDurationSeconds"], 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loses_leadership_when_it_cannot_renew() {
    let server = TestApiserver::start().await;
    let a =
        LeaderElector::new(&server.new_client(), "kube-system", "cm", "a", fast(2, Duration::from_secs(1))).unwrap();
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    struct DropGuard(Option<tokio::sync::oneshot::Sender<()>>);
    impl Drop for DropGuard {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(());
            }
        }
    }
    let guard = DropGuard(Some(lost_tx));
    let run = a.run(
        async move {
            let _guard = guard;
            std::future::pending::<()>().await
        },
        std::future::pending::<()>(),
    );
    let thief = async {
        wait_leader(&a, 10).await;
        // Someone else writes the lease (as if a's writes no longer got through and another took over).
        let api = server.client.api("coordination.k8s.io", "v1", "leases").unwrap().namespaced("kube-system");
        let mut l = api.get("cm").await.unwrap();
        l["spec"]["holderIdentity"] = "intruder".into();
        l["spec"]["leaseDurationSeconds"] = 60.into();
        l["spec"]["renewTime"] = runtime::leader_election::micro_time(jiff::Timestamp::now()).into();
        api.replace("cm", &l).await.unwrap();
        Instant::now()
    };
    let (outcome, stolen_at) = within(15, "a to lose leadership", async { tokio::join!(run, thief) }).await;
    assert_eq!(outcome, Outcome::LostLeadership);
    let took = stolen_at.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(8), "gave up after {took:?}");
    assert!(!a.is_leader());
    within(1, "the lead future to be dropped", lost_rx).await.unwrap();
    // Lost leadership is not a release: the intruder keeps the lease.
    assert_eq!(lease(&server, "cm").await["spec"]["holderIdentity"], "intruder");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_one_leader_among_many() {
    let server = TestApiserver::start().await;
    let client = server.new_client();
    let electors: Vec<Arc<LeaderElector>> = (0..4)
        .map(|i| {
            Arc::new(
                LeaderElector::new(&client, "kube-system", "many", &format!("c{i}"), fast(2, Duration::from_secs(1)))
                    .unwrap(),
            )
        })
        .collect();
    let mut stops = Vec::new();
    for e in &electors {
        stops.push(campaign(e, Arc::new(AtomicBool::new(false))));
    }
    within(10, "a leader", async {
        while !electors.iter().any(|e| e.is_leader()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    for _ in 0..50 {
        let leaders = electors.iter().filter(|e| e.is_leader()).count();
        assert_eq!(leaders, 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let holder = lease(&server, "many").await["spec"]["holderIdentity"].as_str().unwrap().to_string();
    let leader = electors.iter().find(|e| e.is_leader()).unwrap();
    assert_eq!(leader.identity(), holder);
    assert!(electors.iter().all(|e| e.observed_leader() == holder));
    for (stop, task) in stops {
        let _ = stop.send(());
        within(10, "candidates to stop", task).await.unwrap();
    }
    server.stop().await;
}
