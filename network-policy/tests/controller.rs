//! The controller against a real apiserver with the recording runner: it applies after its first lists, again when
//! a change alters the script (policies, pod labels, namespace labels), and not for changes that alter nothing.

use std::time::Duration;

use api_types::patch::PatchType;
use kube_apiserver::testing::{TestApiserver, eventually};
use network_policy::nftables::Recording;
use runtime::SharedInformerFactory;
use serde_json::json;

#[tokio::test]
async fn applies_when_the_script_changes() {
    let api = TestApiserver::start().await;
    api.namespace("np").await;
    let pods = api.client.api("", "v1", "pods").unwrap().namespaced("np");
    for (name, node, ip, labels) in
        [("web", "n1", "10.248.1.10", json!({"app": "web"})), ("client", "n2", "10.248.2.20", json!({}))]
    {
        pods.create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
                            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}}))
            .await
            .unwrap();
        pods.patch_status(name, PatchType::Merge, &json!({"status": {"podIP": ip, "podIPs": [{"ip": ip}]}}))
            .await
            .unwrap();
    }
    let factory = SharedInformerFactory::new(api.new_client());
    let recording = Recording::default();
    let controller =
        network_policy::Controller::new(&factory, "n1", recording.clone(), Duration::from_secs(300)).unwrap();
    let metrics = controller.metrics();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(controller.run(stop));
    let count = || recording.scripts().len();
    eventually(10, "the first sync", || count() == 1).await;
    assert!(!recording.last().unwrap().contains("10.248.1.10"), "no policy, no isolation");

    let np = api.client.api("networking.k8s.io", "v1", "networkpolicies").unwrap().namespaced("np");
    np.create(&json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                      "metadata": {"name": "web", "namespace": "np"},
                      "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                               "ingress": [{"from": [{"podSelector": {"matchLabels": {"access": "true"}}},
                                                     {"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}]}}))
        .await
        .unwrap();
    eventually(10, "a sync for the policy", || count() == 2).await;
    let script = recording.last().unwrap();
    assert!(script.contains("set ingress_isolated {\n\t\ttype ipv4_addr\n\t\telements = { 10.248.1.10 }"), "{script}");
    assert!(script.contains("set policy_np_web_ingress_0 {\n\t\ttype ipv4_addr\n\t}"), "no peer yet: {script}");

    // The client gets the label: it becomes a peer.
    pods.patch("client", PatchType::Merge, &json!({"metadata": {"labels": {"access": "true"}}})).await.unwrap();
    eventually(10, "a sync for the label", || count() == 3).await;
    assert!(recording.last().unwrap().contains("elements = { 10.248.2.20 }"));

    // A change that alters nothing applies nothing; a namespace label that makes its pods peers does.
    pods.patch("client", PatchType::Merge, &json!({"metadata": {"annotations": {"x": "y"}}})).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(), 3, "nothing changed");
    let namespaces = api.client.api("", "v1", "namespaces").unwrap();
    pods.patch("client", PatchType::Merge, &json!({"metadata": {"labels": {"access": "false"}}})).await.unwrap();
    eventually(10, "the label gone", || count() == 4).await;
    namespaces.patch("np", PatchType::Merge, &json!({"metadata": {"labels": {"team": "blue"}}})).await.unwrap();
    eventually(10, "a sync for the namespace label", || count() == 5).await;
    assert!(recording.last().unwrap().contains("elements = { 10.248.1.10, 10.248.2.20 }"));
    assert_eq!(metrics.get("network_policy_syncs_total"), 5.0);
    assert_eq!(metrics.get("network_policy_policies"), 1.0);

    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await.expect("the controller stops");
}
