//! `deploy/network-policy.yaml` is accepted by the apiserver as written (strict field validation), and its
//! ClusterRole grants what the controller reads.

use kube_apiserver::testing::TestApiserver;
use serde_json::Value;

#[tokio::test]
async fn the_daemonset_manifest_is_valid() {
    // Privileged pods, as a cluster that runs this DaemonSet allows (kubeadm's and the quick start's apiserver).
    let api = TestApiserver::start_with(&["--allow-privileged=true"]).await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/network-policy.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut kinds = Vec::new();
    for doc in text.split("\n---\n") {
        let obj: Value = serde_yaml_ng::from_str(doc).unwrap();
        let kind = obj["kind"].as_str().unwrap().to_string();
        let (group, version, plural) = match kind.as_str() {
            "ServiceAccount" => ("", "v1", "serviceaccounts"),
            "ClusterRole" => ("rbac.authorization.k8s.io", "v1", "clusterroles"),
            "ClusterRoleBinding" => ("rbac.authorization.k8s.io", "v1", "clusterrolebindings"),
            "DaemonSet" => ("apps", "v1", "daemonsets"),
            other => panic!("unexpected kind {other}"),
        };
        let base = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
        let path = match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
            Some(ns) => format!("{base}/namespaces/{ns}/{plural}?fieldValidation=Strict"),
            None => format!("{base}/{plural}?fieldValidation=Strict"),
        };
        let body = serde_json::to_vec(&obj).unwrap();
        api.client
            .request(http::Method::POST, &path, Some((body.into(), "application/json")))
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        if kind == "ClusterRole" {
            let rules = obj["rules"].to_string();
            for r in ["pods", "namespaces", "nodes", "networkpolicies", "list", "watch"] {
                assert!(rules.contains(r), "the ClusterRole lacks {r}");
            }
        }
        kinds.push(kind);
    }
    assert_eq!(kinds, ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"]);
}
