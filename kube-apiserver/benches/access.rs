//! Access-control benchmark, run through `bench/access.sh`: what RBAC and service-account tokens cost.
//!
//! Figures, each beside its baseline from the same run:
//! - pod creates per second (32 clients over HTTPS, the release binary) by a user whose rights come from a
//!   RoleBinding, with `--authorization-mode=Node,RBAC` and 5,000 RoleBindings + 1,000 ClusterRoles loaded, against
//!   `--authorization-mode=AlwaysAllow`;
//! - service-account token authentication (verified signature cached, bound pod and service account checked in the
//!   watch cache) per request, p50/p99, against a static token-file lookup.

use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{Client, Config};
use kube_apiserver::auth::Authenticator;
use kube_apiserver::auth::keys::{load_public_keys, load_signing_key};
use kube_apiserver::auth::serviceaccount::{BoundObject, TokenAuthority, TokenSpec};
use kube_apiserver::testing::release::start_apiserver_with;
use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pct(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

const TOKEN: &str = "bench-token-0123456789";

/// Pod creates per second by the `bencher` user (a RoleBinding in `bench`), with the RBAC objects loaded.
async fn creates(mode: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokens.csv"), format!("{TOKEN},bencher,1000\n")).unwrap();
    let extra = vec![
        format!("--authorization-mode={mode}"),
        format!("--token-auth-file={}", dir.path().join("tokens.csv").display()),
    ];
    let (_proc, admin, _) = start_apiserver_with(dir.path(), &extra).await;
    let ns = admin.api("", "v1", "namespaces").unwrap();
    for n in ["bench", "others"] {
        ns.create(&json!({"metadata": {"name": n}})).await.unwrap();
    }
    // 1,000 ClusterRoles and 5,000 RoleBindings of other users, as a big cluster has.
    let croles = Arc::new(admin.api("rbac.authorization.k8s.io", "v1", "clusterroles").unwrap());
    let rbs = Arc::new(admin.api("rbac.authorization.k8s.io", "v1", "rolebindings").unwrap().namespaced("others"));
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (croles, rbs) = (croles.clone(), rbs.clone());
        tasks.push(tokio::spawn(async move {
            for i in (w..1000).step_by(16) {
                croles.create(&json!({"metadata": {"name": format!("bench-role-{i}")}, "rules": [
                    {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get", "list"]},
                    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"], "resourceNames": [format!("d{i}")]}
                ]})).await.unwrap();
            }
            for i in (w..5000).step_by(16) {
                rbs.create(&json!({"metadata": {"name": format!("bench-rb-{i}")},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("bench-role-{}", i % 1000)},
                    "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": format!("user-{i}")}]})).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // (`edit` is filled by the controller-manager's aggregation, which does not run here.)
    croles
        .create(&json!({"metadata": {"name": "bench-pod-writer"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list"]}]}))
        .await
        .unwrap();
    admin
        .api("rbac.authorization.k8s.io", "v1", "rolebindings")
        .unwrap()
        .namespaced("bench")
        .create(&json!({"metadata": {"name": "bencher-edit"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "bench-pod-writer"},
            "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "bencher"}]}))
        .await
        .unwrap();
    let cfg = Config {
        server: admin_server(&dir),
        ca_pem: Some(std::fs::read(dir.path().join("ca.crt")).unwrap()),
        token: Some(TOKEN.into()),
        namespace: "bench".into(),
        ..Default::default()
    };
    let user = Client::new(&cfg).unwrap();
    let pods = Arc::new(user.api("", "v1", "pods").unwrap().namespaced("bench"));
    // The binding reaches the authorizer through its watch.
    let probe = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let deadline = Instant::now() + Duration::from_secs(10);
    while pods.create(&probe).await.is_err() {
        assert!(Instant::now() < deadline, "bencher never got the right to create pods");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = env_usize("BENCH_PODS", 5000);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..32 {
        let pods = pods.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..total).step_by(32) {
                let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("p{i:05}")},
                    "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
                pods.create(&pod).await.expect("create");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    eprintln!("[{mode}] {total} creates: {rate:.0}/s");
    rate
}

/// The server address the admin kubeconfig in `dir` names.
fn admin_server(dir: &tempfile::TempDir) -> String {
    let kc = std::fs::read_to_string(dir.path().join("admin.conf")).unwrap();
    kc.lines().find_map(|l| l.trim().strip_prefix("server: ")).unwrap().to_string()
}

/// Per-request authentication cost of a bound service-account token and of a static token.
async fn token_auth() -> ((Duration, Duration), (Duration, Duration)) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("sa.key");
    let pair = rcgen::KeyPair::generate().unwrap();
    std::fs::write(&key, pair.serialize_pem()).unwrap();
    // The registry answers the bound-object checks from its watch cache, as in the server.
    let store = kube_apiserver::storage::sqlite::SqliteStore::open(
        kube_apiserver::storage::sqlite::SqliteConfig::in_dir(dir.path().join("data")),
    )
    .unwrap();
    let registry = kube_apiserver::registry::Registry::new(Arc::new(kube_apiserver::storage::Backend::Sqlite(store)));
    let res = |plural| api_types::resources::find("", "v1", plural).unwrap();
    registry.create(res("namespaces"), None, json!({"metadata": {"name": "default"}}), false).await.unwrap();
    let sa = registry
        .create(res("serviceaccounts"), Some("default"), json!({"metadata": {"name": "robot"}}), false)
        .await
        .unwrap();
    let pod = registry
        .create(
            res("pods"),
            Some("default"),
            json!({"metadata": {"name": "p"}, "spec": {"serviceAccountName": "robot", "containers": [{"name": "c", "image": "x"}]}}),
            false,
        )
        .await
        .unwrap();
    let issuer = "https://kubernetes.default.svc.cluster.local".to_string();
    let authority = TokenAuthority::new(
        vec![issuer],
        vec![],
        Some(load_signing_key(&key).unwrap()),
        load_public_keys(&key).unwrap(),
    );
    let spec = TokenSpec {
        namespace: "default".into(),
        service_account: "robot".into(),
        service_account_uid: sa["metadata"]["uid"].as_str().unwrap().into(),
        audiences: authority.api_audiences.clone(),
        expiration_seconds: 3600,
        pod: Some(BoundObject {
            kind: "Pod".into(),
            name: "p".into(),
            uid: pod["metadata"]["uid"].as_str().unwrap().into(),
        }),
        secret: None,
        node: None,
    };
    let (token, _) = authority.issue(&spec).unwrap();
    let mut auth = Authenticator::new(false);
    auth.service_accounts = Some(authority);
    auth.tokens
        .insert("static".into(), kube_apiserver::auth::UserInfo::authenticated("s".into(), String::new(), vec![]));
    let mut sa_lat = Vec::new();
    let mut static_lat = Vec::new();
    for _ in 0..2000 {
        auth.authenticate_token(&registry, &token, None).await.expect("token authenticates");
    }
    for _ in 0..50_000 {
        let t = Instant::now();
        auth.authenticate_token(&registry, &token, None).await.unwrap();
        sa_lat.push(t.elapsed());
        let t = Instant::now();
        auth.authenticate_token(&registry, "static", None).await.unwrap();
        static_lat.push(t.elapsed());
    }
    ((pct(&mut sa_lat, 0.5), pct(&mut sa_lat, 0.99)), (pct(&mut static_lat, 0.5), pct(&mut static_lat, 0.99)))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let allow = creates("AlwaysAllow").await;
        let rbac = creates("Node,RBAC").await;
        let ((sa50, sa99), (st50, st99)) = token_auth().await;
        println!("| figure | goal | measured | baseline (same run) | ratio |");
        println!("|---|---|---|---|---|");
        println!(
            "| pod creates/s by a RoleBinding user, Node,RBAC with 5,000 RoleBindings + 1,000 ClusterRoles | within 10% of AlwaysAllow | {rbac:.0} | {allow:.0} (AlwaysAllow) | {:.2}x |",
            rbac / allow
        );
        println!(
            "| service-account token authentication p99 (cached signature, bound pod checked) | < 20 µs | {:.1} µs (p50 {:.1}) | {:.1} µs (static token p99) | {:.1}x |",
            us(sa99),
            us(sa50),
            us(st99),
            us(sa99) / us(st99).max(0.001)
        );
        let _ = st50;
    });
}
