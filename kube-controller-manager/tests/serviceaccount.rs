mod support;

use serde_json::json;
use support::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_gets_a_default_service_account_and_the_root_ca() {
    let c = Cluster::start(&["serviceaccount", "root-ca-cert-publisher"], &[]).await;
    c.create("", "v1", "namespaces", "metadata: {name: team-a}").await;
    let sas = c.api("", "v1", "serviceaccounts", "team-a");
    c.until(20, "default service account", || async { sas.get("default").await.ok() }, |_| true).await;
    let cms = c.api("", "v1", "configmaps", "team-a");
    let cm = c.until(20, "kube-root-ca.crt", || async { cms.get("kube-root-ca.crt").await.ok() }, |_| true).await;
    let ca = String::from_utf8(c.api.config.ca_pem.clone().unwrap()).unwrap();
    assert_eq!(cm["data"]["ca.crt"], json!(ca));
    // Deleted or edited, they come back as they were.
    sas.delete("default", None).await.unwrap();
    cms.patch("kube-root-ca.crt", api_types::patch::PatchType::Merge, &json!({"data": {"ca.crt": "tampered"}}))
        .await
        .unwrap();
    c.until(20, "default service account again", || async { sas.get("default").await.ok() }, |_| true).await;
    c.until(
        20,
        "the CA restored",
        || async { cms.get("kube-root-ca.crt").await.ok() },
        |cm| cm["data"]["ca.crt"] == json!(ca),
    )
    .await;
    c.stop().await;
}
