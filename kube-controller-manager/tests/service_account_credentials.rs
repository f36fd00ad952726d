//! `--use-service-account-credentials` against an in-process apiserver that issues bound service-account tokens
//! and authorizes with RBAC and nothing but its bootstrap policy: the manager itself is `system:kube-controller-manager`
//! (a static token), every controller its own service account in kube-system, whose token is renewed on time and
//! after the apiserver refused it.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use client::{Client, Config};
use kube_controller_manager::clientbuilder::DynamicClientBuilder;
use kube_controller_manager::{ClientBuilder, Context, Options, controllers};
use serde_json::{Value, json};
use support::{TestApiserver, within};
use tokio::sync::watch;

const KCM_TOKEN: &str = "kcm-token-0123456789";

/// An apiserver with service-account tokens (P-256), RBAC, and a static token for the controller manager.
async fn apiserver(dir: &std::path::Path) -> TestApiserver {
    let key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.join("sa.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("sa.pub"), key.public_key_pem()).unwrap();
    std::fs::write(dir.join("tokens.csv"), format!("{KCM_TOKEN},system:kube-controller-manager,kcm-uid\n")).unwrap();
    let flag = |name: &str, file: &str| format!("--{name}={}", dir.join(file).display());
    let flags = [
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
        flag("service-account-key-file", "sa.pub"),
        flag("service-account-signing-key-file", "sa.key"),
        flag("token-auth-file", "tokens.csv"),
        "--authorization-mode=RBAC".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    TestApiserver::start_with(&flags).await
}

/// The controller manager's own client: `system:kube-controller-manager`, no certificate.
fn manager_client(api: &TestApiserver) -> (Config, Client) {
    let cfg =
        Config { client_cert_pem: None, client_key_pem: None, token: Some(KCM_TOKEN.into()), ..api.config.clone() };
    let client = Client::new(&cfg).unwrap();
    (cfg, client)
}

/// `kubectl auth whoami`: the user a client is.
async fn whoami(c: &Client) -> client::Result<Value> {
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let body = Bytes::from(review.to_string());
    let r = c
        .request(
            http::Method::POST,
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            Some((body, "application/json")),
        )
        .await?;
    Ok(r["status"]["userInfo"].clone())
}

async fn poll<T>(secs: u64, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    within(secs, what, async {
        loop {
            if let Some(v) = f().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_run_as_their_service_accounts_under_rbac() {
    let dir = tempfile::tempdir().unwrap();
    let api = apiserver(dir.path()).await;
    let admin = api.new_client();
    let (cfg, manager) = manager_client(&api);
    assert_eq!(whoami(&manager).await.unwrap()["username"], "system:kube-controller-manager");

    // Upstream's names: every controller's account has the binding of the bootstrap policy (a ClusterRoleBinding
    // system:controller:<account>, or a RoleBinding in kube-system for the bootstrap-token controllers).
    let crbs = admin.api("rbac.authorization.k8s.io", "v1", "clusterrolebindings").unwrap();
    let rbs = admin.api("rbac.authorization.k8s.io", "v1", "rolebindings").unwrap().namespaced("kube-system");
    for account in controllers::ALL.iter().filter_map(|c| c.account) {
        let name = format!("system:controller:{account}");
        let binding = match crbs.get(&name).await {
            Ok(b) => b,
            Err(_) => rbs.get(&name).await.unwrap_or_else(|e| panic!("no binding {name}: {e}")),
        };
        let subject = json!({"kind": "ServiceAccount", "name": account, "namespace": "kube-system"});
        assert!(binding["subjects"].as_array().unwrap().contains(&subject), "{name}: {binding}");
    }
    // The manager itself may not create ReplicaSets (nor Pods): whatever does below is a controller's account.
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "x"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
        "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let denied = manager.api("apps", "v1", "replicasets").unwrap().namespaced("default").create(&rs).await;
    assert_eq!(denied.unwrap_err().code(), Some(403));

    // Tokens of ten minutes renewed when 99% of that is left: after six seconds.
    let builder =
        Arc::new(DynamicClientBuilder::new(&cfg, manager.clone(), "kube-system").with_token_lifetime(600, 99));
    let args = [
        "kube-controller-manager",
        "--controllers=deployment,replicaset,statefulset,daemonset",
        "--use-service-account-credentials",
    ];
    let options = <Options as clap::Parser>::parse_from(args);
    let root_ca = cfg.ca_pem.as_ref().map(|c| String::from_utf8_lossy(c).into_owned());
    let ctx = Context::with_clients(manager.clone(), ClientBuilder::Dynamic(builder.clone()), options, root_ca);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(kube_controller_manager::run_controllers(ctx.clone(), stop_rx));

    // (a) The accounts exist in kube-system, made by the manager.
    let accounts = admin.api("", "v1", "serviceaccounts").unwrap().namespaced("kube-system");
    let names = ["daemon-set-controller", "deployment-controller", "replicaset-controller", "statefulset-controller"];
    for name in names {
        poll(10, name, async || accounts.get(name).await.ok()).await;
    }
    poll(10, "the controllers' clients", async || (builder.accounts() == names).then_some(())).await;
    // The shared informers stay on the manager's identity, the controllers' clients are their accounts.
    let dc = ctx.client_for("deployment-controller").await.unwrap();
    let me = whoami(&dc).await.unwrap();
    assert_eq!(me["username"], "system:serviceaccount:kube-system:deployment-controller");
    let sa = accounts.get("deployment-controller").await.unwrap();
    assert_eq!(me["uid"], sa["metadata"]["uid"]);
    assert_eq!(
        me["groups"],
        json!(["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"])
    );
    // Under RBAC it has its role's rights only: it may not create pods, the ReplicaSet controller does.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i"}]}});
    let denied = dc.api("", "v1", "pods").unwrap().namespaced("default").create(&pod).await;
    assert_eq!(denied.unwrap_err().code(), Some(403));

    // (b) A Deployment: its ReplicaSet (deployment-controller) and the pods (replicaset-controller) appear, and the
    // Deployment's status is written (an update of the status subresource, which its role grants).
    let deployments = admin.api("apps", "v1", "deployments").unwrap().namespaced("default");
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
    let d = deployments.create(&d).await.unwrap();
    let pods = admin.api("", "v1", "pods").unwrap().namespaced("default");
    let replicasets = admin.api("apps", "v1", "replicasets").unwrap().namespaced("default");
    let count = async |n: usize| {
        let selector = client::ListParams { label_selector: Some("app=web".into()), ..Default::default() };
        let list = pods.list(&selector).await.unwrap();
        let live: Vec<Value> =
            items(&list).into_iter().filter(|p| p.pointer("/metadata/deletionTimestamp").is_none()).collect();
        (live.len() == n).then_some(())
    };
    poll(20, "two pods", async || count(2).await).await;
    let rs = items(&replicasets.list(&Default::default()).await.unwrap());
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0]["metadata"]["ownerReferences"][0]["uid"], d["metadata"]["uid"]);
    poll(20, "the deployment's status", async || {
        let d = deployments.get("web").await.ok()?;
        (d["status"]["replicas"] == 2 && d["status"]["observedGeneration"] == d["metadata"]["generation"]).then_some(d)
    })
    .await;
    let d = deployments.get("web").await.unwrap();
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1");

    // (c) The tokens are renewed after six seconds, under the running controllers: a scale-up after that is
    // carried out with new tokens.
    let first = builder.tokens_issued("deployment-controller");
    assert!(first >= 1);
    tokio::time::sleep(Duration::from_secs(7)).await;
    deployments.patch("web", api_types::patch::PatchType::Merge, &json!({"spec": {"replicas": 3}})).await.unwrap();
    poll(20, "three pods", async || count(3).await).await;
    assert!(builder.tokens_issued("deployment-controller") > first, "the deployment controller's token was renewed");
    assert!(builder.tokens_issued("replicaset-controller") >= 2, "the replicaset controller's token was renewed");

    // The StatefulSet and DaemonSet controllers too write their status as their roles allow (updates).
    let sets = admin.api("apps", "v1", "statefulsets").unwrap().namespaced("default");
    let template =
        json!({"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
    let set = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": template}});
    sets.create(&set).await.unwrap();
    poll(20, "the statefulset's status", async || {
        let s = sets.get("db").await.ok()?;
        (s["status"]["replicas"] == 1 && s["status"]["currentRevision"].is_string()).then_some(())
    })
    .await;
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    admin.api("", "v1", "nodes").unwrap().create(&node).await.unwrap();
    let daemonsets = admin.api("apps", "v1", "daemonsets").unwrap().namespaced("default");
    let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {"metadata": {"labels": {"app": "agent"}},
        "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    daemonsets.create(&ds).await.unwrap();
    poll(20, "the daemonset's status", async || {
        let d = daemonsets.get("agent").await.ok()?;
        (d["status"]["desiredNumberScheduled"] == 1 && d["status"]["currentNumberScheduled"] == 1).then_some(())
    })
    .await;

    let _ = stop.send(true);
    within(15, "controllers to stop", task).await.unwrap();
    api.stop().await;
}

/// As upstream's TestDynamicClientBuilder: deleting the account a client runs as makes its token die (401); the
/// client drops it, and its next request recreates the account and carries a new token. Default lifetime (one
/// hour, renewed at 80%), so only the 401 can renew it here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_replaced_and_the_account_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let api = apiserver(dir.path()).await;
    let admin = api.new_client();
    let (cfg, manager) = manager_client(&api);
    let builder = DynamicClientBuilder::new(&cfg, manager, "kube-system");
    let dt = builder.client("dt").await.unwrap();
    let accounts = admin.api("", "v1", "serviceaccounts").unwrap().namespaced("kube-system");
    let old_uid = accounts.get("dt").await.unwrap()["metadata"]["uid"].clone();
    let me = whoami(&dt).await.unwrap();
    assert_eq!((&me["username"], &me["uid"]), (&json!("system:serviceaccount:kube-system:dt"), &old_uid));
    assert_eq!(builder.tokens_issued("dt"), 1);
    assert_eq!(whoami(&dt).await.unwrap()["uid"], old_uid);
    assert_eq!(builder.tokens_issued("dt"), 1, "the token is cached");

    accounts.delete("dt", None).await.unwrap();
    let refused = poll(15, "the deleted account's token to be refused", async || whoami(&dt).await.err()).await;
    assert_eq!(refused.code(), Some(401), "{refused}");
    let me = poll(15, "a new token", async || whoami(&dt).await.ok()).await;
    let new_uid = accounts.get("dt").await.unwrap()["metadata"]["uid"].clone();
    assert_ne!(new_uid, old_uid, "the account was recreated");
    assert_eq!((&me["username"], &me["uid"]), (&json!("system:serviceaccount:kube-system:dt"), &new_uid));
    assert!(builder.tokens_issued("dt") >= 2);
    api.stop().await;
}
