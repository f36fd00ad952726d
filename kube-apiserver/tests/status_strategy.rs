//! Writes to `/status`, `/approval` and `/scale` keep what upstream's per-kind strategies keep
//! (`pkg/registry/**/strategy.go`): the spec never changes through `/status`, metadata does except where a kind
//! resets it, and `/approval` changes only the CSR's conditions.

use api_types::patch::PatchType;
use kube_apiserver::testing::TestApiserver;
use serde_json::{Value, json};

fn deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"app": "d"}},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
                    "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_writes_keep_metadata_changes_but_not_the_spec() {
    let api = TestApiserver::start().await;
    let deploys = api.client.api("apps", "v1", "deployments").unwrap().namespaced("default");
    deploys.create(&deployment()).await.unwrap();
    // A status patch that also changes an annotation, a label and the spec.
    let patch = json!({"metadata": {"annotations": {"note": "from-status"}, "labels": {"app": "changed"}},
                       "spec": {"replicas": 5}, "status": {"observedGeneration": 1, "replicas": 1}});
    let out = deploys.patch_status("d", PatchType::Merge, &patch).await.unwrap();
    assert_eq!(out["metadata"]["annotations"]["note"], "from-status", "annotations are written through /status");
    assert_eq!(out["metadata"]["labels"]["app"], "d", "a Deployment's status strategy keeps its labels");
    assert_eq!(out["spec"]["replicas"], 1, "the spec never changes through /status");
    assert_eq!(out["status"]["replicas"], 1);
    assert_eq!(out["metadata"]["generation"], 1);

    // A Pod keeps its ownerReferences but takes labels; a ReplicaSet takes labels.
    let pods = api.client.api("", "v1", "pods").unwrap().namespaced("default");
    pods.create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
        .await
        .unwrap();
    let owner = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "1234"}]);
    let patch = json!({"metadata": {"labels": {"l": "v"}, "ownerReferences": owner}, "status": {"phase": "Running"}});
    let out = pods.patch_status("p", PatchType::Merge, &patch).await.unwrap();
    assert_eq!(out["metadata"]["labels"]["l"], "v");
    assert!(out["metadata"].get("ownerReferences").is_none(), "pods/status may not touch ownerReferences: {out}");
    assert_eq!(out["status"]["phase"], "Running");

    // A VolumeAttachment resets all of its metadata (ResetObjectMetaForStatus).
    let vas = api.client.api("storage.k8s.io", "v1", "volumeattachments").unwrap();
    vas.create(&json!({"apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment", "metadata": {"name": "va"},
                       "spec": {"attacher": "example.com/csi", "nodeName": "n1", "source": {"persistentVolumeName": "pv"}}}))
        .await
        .unwrap();
    let patch = json!({"metadata": {"labels": {"l": "v"}, "annotations": {"a": "b"}}, "status": {"attached": true}});
    let out = vas.patch_status("va", PatchType::Merge, &patch).await.unwrap();
    assert!(out["metadata"].get("labels").is_none() && out["metadata"].get("annotations").is_none(), "{out}");
    assert_eq!(out["status"]["attached"], true);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csr_approval_changes_only_conditions_and_status_cannot_decide() {
    let api = TestApiserver::start().await;
    let csrs = api.client.api("certificates.k8s.io", "v1", "certificatesigningrequests").unwrap();
    let csr = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "c"},
                     "spec": {"request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K", "signerName": "example.com/s", "usages": ["digital signature"]}});
    csrs.create(&csr).await.unwrap();
    let mut body = csrs.get("c").await.unwrap();
    body["metadata"]["labels"] = json!({"l": "v"});
    body["spec"]["signerName"] = json!("example.com/other");
    body["status"] = json!({"conditions": [{"type": "Approved", "status": "True", "reason": "R", "message": "ok"}]});
    let out = api
        .client
        .request(
            http::Method::PUT,
            "/apis/certificates.k8s.io/v1/certificatesigningrequests/c/approval",
            Some((bytes::Bytes::from(body.to_string()), "application/json")),
        )
        .await
        .unwrap();
    assert_eq!(out["status"]["conditions"][0]["type"], "Approved");
    assert!(out["metadata"].get("labels").is_none(), "approval changes only status.conditions: {out}");
    assert_eq!(out["spec"]["signerName"], "example.com/s");

    // Through /status, the Approved condition can be neither removed nor rewritten; a certificate can be set.
    let patch = json!({"status": {"conditions": [], "certificate": "Y2VydA=="}});
    let err = csrs.patch_status("c", PatchType::Merge, &patch).await.unwrap_err();
    assert_eq!(err.code(), Some(422), "{err}");
    let mut current = csrs.get("c").await.unwrap();
    current["status"]["conditions"][0]["reason"] = json!("Rewritten");
    current["status"]["certificate"] = json!("Y2VydA==");
    let out = csrs.replace_status("c", &current).await.unwrap();
    assert_eq!(out["status"]["conditions"][0]["reason"], "R");
    assert_eq!(out["status"]["certificate"], "Y2VydA==");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_with_another_uid_is_a_conflict() {
    let api = TestApiserver::start().await;
    let deploys = api.client.api("apps", "v1", "deployments").unwrap().namespaced("default");
    deploys.create(&deployment()).await.unwrap();
    let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                       "metadata": {"name": "d", "namespace": "default", "uid": "not-the-uid"}, "spec": {"replicas": 3}});
    let err = api
        .client
        .request(
            http::Method::PUT,
            "/apis/apps/v1/namespaces/default/deployments/d/scale",
            Some((bytes::Bytes::from(scale.to_string()), "application/json")),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(409), "{err}");
    assert!(err.to_string().contains("Precondition failed: UID in precondition: not-the-uid"), "{err}");
    assert_eq!(deploys.get("d").await.unwrap()["spec"]["replicas"], 1);
    api.stop().await;
}
