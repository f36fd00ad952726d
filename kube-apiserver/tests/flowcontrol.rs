//! `flowcontrol.apiserver.k8s.io/v1` as upstream's conformance tests in `test/e2e/apimachinery/flowcontrol.go`
//! ("should support FlowSchema API operations", "should support PriorityLevelConfiguration API operations") use it:
//! discovery, create, get, list, watch, patch, update, the status subresource (get, patch, update), delete and
//! deletecollection; plus the bootstrap objects every apiserver makes, as `kubectl get` prints them.

use api_types::patch::PatchType;
use kube_apiserver::testing::TestApiserver;
use serde_json::{Value, json};

fn names(list: &Value) -> Vec<String> {
    let mut out: Vec<String> =
        list["items"].as_array().unwrap().iter().map(|o| o["metadata"]["name"].as_str().unwrap().to_string()).collect();
    out.sort();
    out
}

async fn api_operations(api: &TestApiserver, plural: &str, spec: Value) {
    let objects = api.client.api("flowcontrol.apiserver.k8s.io", "v1", plural).unwrap();
    let label = format!("e2e-{plural}");
    let by_label = client::ListParams { label_selector: Some(format!("{label}=true")), ..Default::default() };
    let mut watch = objects.watch(&by_label).await.unwrap();
    for i in 1..=3 {
        let obj =
            json!({"metadata": {"name": format!("{plural}-{i}"), "labels": {label.as_str(): "true"}}, "spec": spec});
        objects.create(&obj).await.unwrap();
    }
    let got = objects.get(&format!("{plural}-1")).await.unwrap();
    assert_eq!(got["metadata"]["labels"][label.as_str()], "true");
    assert_eq!(names(&objects.list(&by_label).await.unwrap()), [1, 2, 3].map(|i| format!("{plural}-{i}")));
    for _ in 0..3 {
        match watch.recv().await.unwrap().unwrap() {
            client::WatchEvent::Added(o) => assert!(o["metadata"]["name"].as_str().unwrap().starts_with(plural)),
            e => panic!("{e:?}"),
        }
    }
    let patched = objects
        .patch(&format!("{plural}-1"), PatchType::Merge, &json!({"metadata": {"annotations": {"patched": "true"}}}))
        .await
        .unwrap();
    assert_eq!(patched["metadata"]["annotations"]["patched"], "true");
    let mut update = patched.clone();
    update["metadata"]["annotations"]["updated"] = json!("true");
    let updated = objects.replace(&format!("{plural}-1"), &update).await.unwrap();
    assert_eq!(updated["metadata"]["annotations"]["updated"], "true");
    // The status subresource.
    let status_path = format!("/apis/flowcontrol.apiserver.k8s.io/v1/{plural}/{plural}-1/status");
    let got = api.client.request(http::Method::GET, &status_path, None).await.unwrap();
    assert_eq!(got["metadata"]["name"], format!("{plural}-1"));
    let condition = |t: &str| json!({"type": t, "status": "True", "reason": "E2E", "message": "Set from an e2e test"});
    let patched = objects
        .patch_status(
            &format!("{plural}-1"),
            PatchType::Merge,
            &json!({"status": {"conditions": [condition("StatusPatched")]}}),
        )
        .await
        .unwrap();
    assert!(patched["status"]["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "StatusPatched"));
    let mut status = patched.clone();
    status["status"]["conditions"].as_array_mut().unwrap().push(condition("StatusUpdated"));
    let updated = objects.replace_status(&format!("{plural}-1"), &status).await.unwrap();
    assert!(updated["status"]["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "StatusUpdated"));
    // Delete one, then the collection.
    objects.delete(&format!("{plural}-1"), None).await.unwrap();
    assert_eq!(objects.get(&format!("{plural}-1")).await.unwrap_err().code(), Some(404));
    let path = format!("/apis/flowcontrol.apiserver.k8s.io/v1/{plural}?labelSelector={label}%3Dtrue");
    api.client.request(http::Method::DELETE, &path, None).await.unwrap();
    assert!(names(&objects.list(&by_label).await.unwrap()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_schema_and_priority_level_api_operations() {
    let api = TestApiserver::start().await;
    // Discovery lists both resources and their status.
    let group = api.client.request(http::Method::GET, "/apis/flowcontrol.apiserver.k8s.io/v1", None).await.unwrap();
    let served: Vec<&str> =
        group["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    for r in ["flowschemas", "flowschemas/status", "prioritylevelconfigurations", "prioritylevelconfigurations/status"]
    {
        assert!(served.contains(&r), "{r} not in {served:?}");
    }
    api_operations(
        &api,
        "flowschemas",
        json!({"matchingPrecedence": 10000, "priorityLevelConfiguration": {"name": "global-default"},
               "rules": [{"subjects": [{"kind": "Group", "group": {"name": "system:unauthenticated"}}],
                          "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/e2e"]}]}]}),
    )
    .await;
    api_operations(
        &api,
        "prioritylevelconfigurations",
        json!({"type": "Limited", "limited": {"nominalConcurrencyShares": 2, "limitResponse": {"type": "Reject"}}}),
    )
    .await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_configuration_defaults_and_validation() {
    let api = TestApiserver::start().await;
    let schemas = api.client.api("flowcontrol.apiserver.k8s.io", "v1", "flowschemas").unwrap();
    let levels = api.client.api("flowcontrol.apiserver.k8s.io", "v1", "prioritylevelconfigurations").unwrap();
    let all = names(&schemas.list(&Default::default()).await.unwrap());
    for n in [
        "catch-all",
        "exempt",
        "global-default",
        "kube-controller-manager",
        "kube-scheduler",
        "probes",
        "service-accounts",
        "system-leader-election",
        "system-node-high",
        "system-nodes",
        "kube-system-service-accounts",
    ] {
        assert!(all.contains(&n.to_string()), "{n} not in {all:?}");
    }
    let exempt = schemas.get("exempt").await.unwrap();
    assert_eq!(exempt["metadata"]["annotations"]["apf.kubernetes.io/autoupdate-spec"], "true");
    assert_eq!(exempt["spec"]["matchingPrecedence"], 1);
    assert_eq!(exempt["spec"]["rules"][0]["subjects"][0]["group"]["name"], "system:masters");
    // kubectl prints upstream's columns.
    let out = api.kubectl(&["get", "prioritylevelconfigurations", "exempt", "workload-low"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "TYPE", "NOMINALCONCURRENCYSHARES", "QUEUES", "HANDSIZE", "QUEUELENGTHLIMIT", "AGE"]);
    assert_eq!(lines[1][..6], ["exempt", "Exempt", "<none>", "<none>", "<none>", "<none>"]);
    assert_eq!(lines[2][..6], ["workload-low", "Limited", "100", "128", "6", "50"]);
    let out = api.kubectl(&["get", "flowschemas", "catch-all"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "PRIORITYLEVEL", "MATCHINGPRECEDENCE", "DISTINGUISHERMETHOD", "AGE", "MISSINGPL"]);
    assert_eq!(lines[1][..4], ["catch-all", "catch-all", "10000", "ByUser"]);
    // Defaults: a FlowSchema's precedence, a limited level's shares, lendable percent and queuing.
    let fs = schemas
        .create(&json!({"metadata": {"name": "d"}, "spec": {"priorityLevelConfiguration": {"name": "global-default"}}}))
        .await
        .unwrap();
    assert_eq!(fs["spec"]["matchingPrecedence"], 1000);
    let pl = levels
        .create(&json!({"metadata": {"name": "d"}, "spec": {"type": "Limited", "limited": {"limitResponse": {"type": "Queue", "queuing": {}}}}}))
        .await
        .unwrap();
    assert_eq!(
        pl["spec"]["limited"],
        json!({"nominalConcurrencyShares": 30, "lendablePercent": 0,
               "limitResponse": {"type": "Queue", "queuing": {"queues": 64, "handSize": 8, "queueLengthLimit": 50}}})
    );
    // Validation: 422 with upstream's field paths.
    let e = schemas
        .create(&json!({"metadata": {"name": "bad"}, "spec": {"matchingPrecedence": 20000, "priorityLevelConfiguration": {"name": ""}}}))
        .await
        .unwrap_err();
    let client::Error::Api(e) = e else { panic!("{e}") };
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains("spec.priorityLevelConfiguration.name: Required value: must reference a priority level"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("spec.matchingPrecedence: Invalid value: 20000: must be between 1 and 10000 inclusive"),
        "{}",
        e.message
    );
    let e = levels.create(&json!({"metadata": {"name": "bad"}, "spec": {"type": "Limited"}})).await.unwrap_err();
    assert_eq!(e.code(), Some(422));
    api.stop().await;
}
