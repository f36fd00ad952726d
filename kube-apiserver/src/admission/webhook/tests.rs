//! Upstream's webhook test tables (`webhook/testing/testcase.go`: NewNonMutatingTestCases, run through both the
//! validating and the mutating dispatcher as upstream's `ConvertToMutatingTestCases` does, and
//! NewMutatingTestCases), against [`super::testserver`] over real HTTPS on loopback, plus warnings and timeouts.

use std::collections::BTreeMap;
use std::sync::Arc;

use api_types::ApiError;
use serde_json::{Value, json};

use super::testserver::WebhookServer;
use super::{BoxFuture, Cluster, client::Clients, mutating, source, validating};
use crate::admission::{Operation, Request};
use crate::auth::UserInfo;

/// Namespace `webhook-test` (`runlevel: 0`) and Service `default/webhook-test` in front of the test server.
struct FakeCluster {
    port: u16,
}

impl Cluster for FakeCluster {
    fn namespace<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            match name {
                "webhook-test" => Ok(json!({"metadata": {"name": name, "labels": {"runlevel": "0"}}})),
                _ => Err(ApiError::not_found("", "namespaces", name)),
            }
        })
    }
    fn service_endpoint<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<(String, u16), String>> {
        Box::pin(async move {
            if (namespace, name, port) == ("default", "webhook-test", 443) {
                Ok(("127.0.0.1".to_string(), self.port))
            } else {
                Err(format!("service/{name} in {namespace:?} is not present"))
            }
        })
    }
}

fn match_everything() -> Value {
    json!([{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"]}])
}

/// One case of the tables.
#[derive(Default, Clone)]
struct Case {
    name: &'static str,
    webhooks: Vec<Value>,
    dry_run: bool,
    additional_labels: Vec<(&'static str, &'static str)>,
    expect_allow: bool,
    error_contains: &'static str,
    expect_status: u16,
    /// Labels the object has afterwards (mutating cases).
    expect_labels: Option<Vec<(&'static str, &'static str)>>,
    /// Webhook (path) -> whether it was called in the second round.
    expect_reinvoke: Vec<(&'static str, bool)>,
    /// Paths that must never be called.
    never_called: Vec<&'static str>,
}

struct Fixture {
    server: WebhookServer,
    clients: Clients,
}

impl Fixture {
    async fn new() -> Fixture {
        Fixture {
            server: WebhookServer::start(&["webhook-test.default.svc", "127.0.0.1"]).await,
            clients: Clients::default(),
        }
    }

    /// A webhook calling the service at `path`.
    fn svc(&self, name: &str, path: &str) -> Value {
        json!({"name": name, "clientConfig": {"service": {"namespace": "default", "name": "webhook-test", "path": format!("/{path}")},
               "caBundle": self.server.ca_bundle()},
               "rules": match_everything(), "namespaceSelector": {}, "objectSelector": {},
               "sideEffects": "None", "admissionReviewVersions": ["v1beta1"]})
    }

    /// A webhook calling `https://127.0.0.1:<port>/<path>`.
    fn url(&self, name: &str, path: &str) -> Value {
        let mut w = self.svc(name, path);
        w["clientConfig"] = json!({"url": self.server.url(&format!("/{path}")), "caBundle": self.server.ca_bundle()});
        w
    }

    fn hooks(&self, webhooks: &[Value]) -> Vec<Arc<source::Hook>> {
        let mut configs = BTreeMap::new();
        configs.insert("test-webhooks".to_string(), json!({"webhooks": webhooks}));
        source::compile(&configs)
    }
}

fn with(mut w: Value, patch: Value) -> Value {
    if let (Some(w), Some(p)) = (w.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            w.insert(k.clone(), v.clone());
        }
    }
    w
}

/// NewNonMutatingTestCases.
fn non_mutating(f: &Fixture) -> Vec<Case> {
    let svc = |n: &str, p: &str| f.svc(n, p);
    let internal = |n: &str, policy: Option<&str>| match policy {
        Some(p) => with(svc(n, "internalErr"), json!({"failurePolicy": p})),
        None => svc(n, "internalErr"),
    };
    vec![
        Case {
            name: "no match",
            webhooks: vec![with(svc("nomatch", "disallow"), json!({"rules": [{"operations": ["CREATE"]}]}))],
            expect_allow: true,
            never_called: vec!["/disallow"],
            ..Default::default()
        },
        Case {
            name: "match & allow",
            webhooks: vec![svc("allow.example.com", "allow")],
            expect_allow: true,
            ..Default::default()
        },
        Case {
            name: "match & disallow",
            webhooks: vec![svc("disallow", "disallow")],
            expect_status: 403,
            error_contains: "admission webhook \"disallow\" denied the request without explanation",
            ..Default::default()
        },
        Case {
            name: "match & disallow ii",
            webhooks: vec![svc("disallowReason", "disallowReason")],
            expect_status: 403,
            error_contains: "admission webhook \"disallowReason\" denied the request: you shall not pass",
            ..Default::default()
        },
        Case {
            name: "match & disallow & but allowed because namespaceSelector exempt the ns",
            webhooks: vec![with(
                svc("disallow", "disallow"),
                json!({"namespaceSelector": {"matchExpressions": [{"key": "runlevel", "values": ["1"], "operator": "In"}]}}),
            )],
            expect_allow: true,
            never_called: vec!["/disallow"],
            ..Default::default()
        },
        Case {
            name: "match & disallow & but allowed because namespaceSelector exempt the ns ii",
            webhooks: vec![with(
                svc("disallow", "disallow"),
                json!({"namespaceSelector": {"matchExpressions": [{"key": "runlevel", "values": ["0"], "operator": "NotIn"}]}}),
            )],
            expect_allow: true,
            never_called: vec!["/disallow"],
            ..Default::default()
        },
        Case {
            name: "match & fail (but allow because fail open)",
            webhooks: vec![
                internal("internalErr A", Some("Ignore")),
                internal("internalErr B", Some("Ignore")),
                internal("internalErr C", Some("Ignore")),
            ],
            expect_allow: true,
            ..Default::default()
        },
        Case {
            name: "match & fail (but disallow because fail close on nil FailurePolicy)",
            webhooks: vec![
                internal("internalErr A", None),
                internal("internalErr B", None),
                internal("internalErr C", None),
            ],
            expect_status: 500,
            error_contains: "failed calling webhook \"internalErr A\": failed to call webhook: an error on the server (\"webhook internal server error\") has prevented the request from succeeding",
            ..Default::default()
        },
        Case {
            name: "match & fail (but fail because fail closed)",
            webhooks: vec![
                internal("internalErr A", Some("Fail")),
                internal("internalErr B", Some("Fail")),
                internal("internalErr C", Some("Fail")),
            ],
            expect_status: 500,
            error_contains: "failed calling webhook \"internalErr A\"",
            ..Default::default()
        },
        Case {
            name: "match & allow (url)",
            webhooks: vec![f.url("allow.example.com", "allow")],
            expect_allow: true,
            ..Default::default()
        },
        Case {
            name: "match & disallow (url)",
            webhooks: vec![f.url("disallow", "disallow")],
            expect_status: 403,
            error_contains: "without explanation",
            ..Default::default()
        },
        Case {
            name: "absent response and fail open",
            webhooks: vec![with(f.url("nilResponse", "nilResponse"), json!({"failurePolicy": "Ignore"}))],
            expect_allow: true,
            ..Default::default()
        },
        Case {
            name: "absent response and fail closed",
            webhooks: vec![with(f.url("nilResponse", "nilResponse"), json!({"failurePolicy": "Fail"}))],
            expect_status: 500,
            error_contains: "webhook response was absent",
            ..Default::default()
        },
        Case {
            name: "no match dry run",
            webhooks: vec![with(
                svc("nomatch", "allow"),
                json!({"rules": [{"operations": ["CREATE"]}], "sideEffects": "Some"}),
            )],
            dry_run: true,
            expect_allow: true,
            ..Default::default()
        },
        Case {
            name: "match dry run side effects Unknown",
            webhooks: vec![with(svc("allow", "allow"), json!({"sideEffects": "Unknown"}))],
            dry_run: true,
            expect_status: 400,
            error_contains: "admission webhook \"allow\" does not support dry run",
            never_called: vec!["/allow"],
            ..Default::default()
        },
        Case {
            name: "match dry run side effects None",
            webhooks: vec![with(svc("allow", "allow"), json!({"sideEffects": "None"}))],
            dry_run: true,
            expect_allow: true,
            ..Default::default()
        },
        Case {
            name: "match dry run side effects Some",
            webhooks: vec![with(svc("allow", "allow"), json!({"sideEffects": "Some"}))],
            dry_run: true,
            expect_status: 400,
            error_contains: "does not support dry run",
            ..Default::default()
        },
        Case {
            name: "match dry run side effects NoneOnDryRun",
            webhooks: vec![with(svc("allow", "allow"), json!({"sideEffects": "NoneOnDryRun"}))],
            dry_run: true,
            expect_allow: true,
            ..Default::default()
        },
        Case {
            name: "skip webhook whose objectSelector does not match",
            webhooks: vec![
                svc("allow.example.com", "allow"),
                with(
                    svc("shouldNotBeCalled", "shouldNotBeCalled"),
                    json!({"objectSelector": {"matchLabels": {"label": "nonexistent"}}}),
                ),
            ],
            expect_allow: true,
            never_called: vec!["/shouldNotBeCalled"],
            ..Default::default()
        },
    ]
}

/// NewMutatingTestCases.
fn mutating_cases(f: &Fixture) -> Vec<Case> {
    let svc = |n: &str, p: &str| f.svc(n, p);
    let if_needed = |w: Value| with(w, json!({"reinvocationPolicy": "IfNeeded"}));
    vec![
        Case {
            name: "match & remove label",
            webhooks: vec![svc("removelabel.example.com", "removeLabel")],
            expect_allow: true,
            additional_labels: vec![("remove", "me")],
            expect_labels: Some(vec![("pod.name", "my-pod")]),
            ..Default::default()
        },
        Case {
            name: "match & add label",
            webhooks: vec![svc("addLabel", "addLabel")],
            expect_allow: true,
            expect_labels: Some(vec![("pod.name", "my-pod"), ("added", "test")]),
            ..Default::default()
        },
        Case {
            name: "match & invalid mutation",
            webhooks: vec![svc("invalidMutation", "invalidMutation")],
            expect_status: 500,
            error_contains: "failed calling webhook \"invalidMutation\": received undecodable patch in webhook response",
            ..Default::default()
        },
        Case {
            name: "match & invalid mutation (fail open)",
            webhooks: vec![with(svc("invalidMutation", "invalidMutation"), json!({"failurePolicy": "Ignore"}))],
            expect_allow: true,
            expect_labels: Some(vec![("pod.name", "my-pod")]),
            ..Default::default()
        },
        Case {
            name: "match & remove label dry run unsupported",
            webhooks: vec![with(svc("removeLabel", "removeLabel"), json!({"sideEffects": "Unknown"}))],
            dry_run: true,
            expect_status: 400,
            error_contains: "does not support dry run",
            ..Default::default()
        },
        Case {
            name: "first webhook remove labels, second webhook shouldn't be called",
            webhooks: vec![
                with(
                    svc("removelabel.example.com", "removeLabel"),
                    json!({"objectSelector": {"matchLabels": {"remove": "me"}}}),
                ),
                with(
                    svc("shouldNotBeCalled", "shouldNotBeCalled"),
                    json!({"objectSelector": {"matchLabels": {"remove": "me"}}}),
                ),
            ],
            expect_allow: true,
            additional_labels: vec![("remove", "me")],
            expect_labels: Some(vec![("pod.name", "my-pod")]),
            never_called: vec!["/shouldNotBeCalled"],
            ..Default::default()
        },
        Case {
            name: "match & reinvoke if needed policy",
            webhooks: vec![if_needed(svc("addLabel", "addLabel")), if_needed(svc("removeLabel", "removeLabel"))],
            additional_labels: vec![("remove", "me")],
            expect_allow: true,
            expect_reinvoke: vec![("/addLabel", true), ("/removeLabel", false)],
            expect_labels: Some(vec![("pod.name", "my-pod"), ("added", "test")]),
            ..Default::default()
        },
        Case {
            name: "match & never reinvoke policy",
            webhooks: vec![with(svc("addLabel", "addLabel"), json!({"reinvocationPolicy": "Never"}))],
            expect_allow: true,
            expect_reinvoke: vec![("/addLabel", false)],
            ..Default::default()
        },
        Case {
            name: "match & never reinvoke policy (by default)",
            webhooks: vec![svc("addLabel", "addLabel")],
            expect_allow: true,
            expect_reinvoke: vec![("/addLabel", false)],
            ..Default::default()
        },
        Case {
            name: "match & no reinvoke",
            webhooks: vec![if_needed(svc("noop", "noop"))],
            expect_allow: true,
            expect_reinvoke: vec![("/noop", false)],
            ..Default::default()
        },
    ]
}

/// The test object: pod `my-pod` in `webhook-test`, labelled `pod.name: my-pod` and the case's labels.
fn pod(extra: &[(&str, &str)]) -> Value {
    let mut labels = serde_json::Map::new();
    labels.insert("pod.name".into(), json!("my-pod"));
    for (k, v) in extra {
        labels.insert(k.to_string(), json!(v));
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "my-pod", "namespace": "webhook-test", "labels": labels}})
}

async fn run(f: &Fixture, case: &Case, as_mutating: bool) {
    let cluster = FakeCluster { port: f.server.port };
    let user = UserInfo { username: "webhook-test".into(), uid: "webhook-test".into(), ..Default::default() };
    let pods = api_types::resources::find("", "v1", "pods").unwrap();
    let old = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "my-pod", "namespace": "webhook-test"}});
    let mut object = pod(&case.additional_labels);
    let hooks = f.hooks(&case.webhooks);
    f.server.take_calls();
    let mut r = Request {
        operation: Operation::Update,
        resource: pods,
        subresource: "",
        namespace: "webhook-test",
        name: "my-pod",
        object: None,
        old: Some(&old),
        user: &user,
        dry_run: case.dry_run,
    };
    let out = if as_mutating {
        mutating::dispatch(&cluster, &f.clients, &hooks, &r, Some(&mut object)).await
    } else {
        let snapshot = object.clone();
        r.object = Some(&snapshot);
        validating::dispatch(&cluster, &f.clients, &hooks, &r).await
    };
    let what = format!("{} ({})", case.name, if as_mutating { "mutating" } else { "validating" });
    match &out {
        Ok(()) => assert!(case.expect_allow, "{what}: allowed, expected an error"),
        Err(e) => {
            assert!(!case.expect_allow, "{what}: unexpected error {e}");
            assert!(e.message.contains(case.error_contains), "{what}: {:?} lacks {:?}", e.message, case.error_contains);
            if case.expect_status != 0 {
                assert_eq!(e.code, case.expect_status, "{what}: {e}");
            }
        }
    }
    if let Some(labels) = &case.expect_labels {
        let want: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        assert_eq!(object["metadata"]["labels"], Value::Object(want), "{what}");
    }
    let calls: Vec<String> = f.server.take_calls().into_iter().map(|c| c.path).collect();
    for never in &case.never_called {
        assert!(!calls.iter().any(|c| c == never), "{what}: {never} was called: {calls:?}");
    }
    for (path, reinvoked) in &case.expect_reinvoke {
        let n = calls.iter().filter(|c| c == path).count();
        assert_eq!(n, if *reinvoked { 2 } else { 1 }, "{what}: {path} called {n} times: {calls:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_mutating_cases_through_both_dispatchers() {
    let f = Fixture::new().await;
    for case in non_mutating(&f) {
        run(&f, &case, false).await;
        run(&f, &case, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_cases_with_patches_and_reinvocation() {
    let f = Fixture::new().await;
    for case in mutating_cases(&f) {
        run(&f, &case, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_carry_the_request_and_warnings_reach_the_response() {
    let f = Fixture::new().await;
    let cluster = FakeCluster { port: f.server.port };
    let user =
        UserInfo { username: "alice".into(), uid: "u-1".into(), groups: vec!["devs".into()], ..Default::default() };
    let pods = api_types::resources::find("", "v1", "pods").unwrap();
    let old = pod(&[]);
    let new = pod(&[("x", "y")]);
    let hooks = f.hooks(&[with(f.svc("warn.example.com", "warn"), json!({"admissionReviewVersions": ["v1"]}))]);
    let r = Request {
        operation: Operation::Update,
        resource: pods,
        subresource: "status",
        namespace: "webhook-test",
        name: "my-pod",
        object: Some(&new),
        old: Some(&old),
        user: &user,
        dry_run: true,
    };
    let warnings = crate::admission::WARNINGS
        .scope(Default::default(), async {
            validating::dispatch(&cluster, &f.clients, &hooks, &r).await.unwrap();
            crate::admission::WARNINGS.with(|w| w.borrow().clone())
        })
        .await;
    assert_eq!(warnings, ["a warning from the webhook", "another one"]);
    let calls = f.server.take_calls();
    let review = &calls[0].review;
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    let req = &review["request"];
    assert_eq!(req["kind"], json!({"group": "", "version": "v1", "kind": "Pod"}));
    assert_eq!(req["resource"], json!({"group": "", "version": "v1", "resource": "pods"}));
    assert_eq!(req["requestResource"], req["resource"]);
    assert_eq!((req["subResource"].as_str(), req["requestSubResource"].as_str()), (Some("status"), Some("status")));
    assert_eq!((req["name"].as_str(), req["namespace"].as_str()), (Some("my-pod"), Some("webhook-test")));
    assert_eq!(req["operation"], "UPDATE");
    assert_eq!(req["userInfo"], json!({"username": "alice", "uid": "u-1", "groups": ["devs"]}));
    assert_eq!((&req["object"], &req["oldObject"]), (&new, &old));
    assert_eq!(req["dryRun"], true);
    assert_eq!(req["options"], json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "dryRun": ["All"]}));
    assert_eq!(req["uid"].as_str().map(str::len), Some(36));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_unreachable_services_follow_the_failure_policy() {
    let f = Fixture::new().await;
    let cluster = FakeCluster { port: f.server.port };
    let user = UserInfo::default();
    let pods = api_types::resources::find("", "v1", "pods").unwrap();
    let obj = pod(&[]);
    let r = Request {
        operation: Operation::Create,
        resource: pods,
        subresource: "",
        namespace: "webhook-test",
        name: "my-pod",
        object: Some(&obj),
        old: None,
        user: &user,
        dry_run: false,
    };
    let slow = with(f.svc("slow.example.com", "slow"), json!({"timeoutSeconds": 1}));
    let started = std::time::Instant::now();
    let err = validating::dispatch(&cluster, &f.clients, &f.hooks(std::slice::from_ref(&slow)), &r).await.unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_millis(2500), "{:?}", started.elapsed());
    assert_eq!(err.code, 500);
    assert!(
        err.message
            .contains("Post \"https://webhook-test.default.svc:443/slow?timeout=1s\": context deadline exceeded"),
        "{err}"
    );
    let ignored = with(slow, json!({"failurePolicy": "Ignore"}));
    validating::dispatch(&cluster, &f.clients, &f.hooks(&[ignored]), &r).await.unwrap();
    // A Service without endpoints is a failed call too.
    let mut nowhere = f.svc("nowhere.example.com", "allow");
    nowhere["clientConfig"]["service"]["name"] = json!("missing");
    let err = validating::dispatch(&cluster, &f.clients, &f.hooks(&[nowhere]), &r).await.unwrap_err();
    assert!(err.message.contains("failed calling webhook \"nowhere.example.com\": failed to call webhook: Post \"https://missing.default.svc:443/allow?timeout=10s\": service/missing"), "{err}");
    // A certificate that is not for the webhook's name fails the call.
    let mut wrong = f.svc("wrongname.example.com", "allow");
    wrong["clientConfig"] =
        json!({"url": format!("https://localhost:{}/allow", f.server.port), "caBundle": f.server.ca_bundle()});
    let err = validating::dispatch(&cluster, &f.clients, &f.hooks(&[wrong]), &r).await.unwrap_err();
    assert_eq!(err.code, 500, "{err}");
    // A delete is never patched: a webhook that tries fails the request.
    let add = f.svc("addLabel", "addLabel");
    let del = Request { operation: Operation::Delete, object: None, old: Some(&obj), ..r };
    let err = mutating::dispatch(&cluster, &f.clients, &f.hooks(&[add]), &del, None).await.unwrap_err();
    assert!(err.message.contains("attempted to modify the object, which is not supported for this operation"), "{err}");
}

/// Upstream's matchPolicy tests (`TestWebhookAdmissionWithWatchCache`'s converted reviews, the dispatchers'
/// `ShouldCallHook` cases): a rule naming another version of the request's resource matches under Equivalent
/// (the v1 default) and not under Exact; the webhook sees `kind`/`resource` and the objects in its version, with
/// `requestKind`/`requestResource` as requested, and a mutating webhook's patch comes back converted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equivalent_versions_see_the_objects_converted() {
    let f = Fixture::new().await;
    let cluster = FakeCluster { port: f.server.port };
    let user = UserInfo { username: "alice".into(), ..Default::default() };
    let events = api_types::resources::find("", "v1", "events").unwrap();
    let rule = |group: &str| json!([{"operations": ["CREATE"], "apiGroups": [group], "apiVersions": ["v1"], "resources": ["events"]}]);
    let hook = |path: &str, policy: &str| {
        with(
            f.svc(path, path),
            json!({"rules": rule("events.k8s.io"), "matchPolicy": policy, "admissionReviewVersions": ["v1"]}),
        )
    };
    let mut event = json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "e1", "namespace": "webhook-test", "labels": {"a": "b"}},
        "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Started", "message": "hello", "type": "Normal"});
    let r = Request {
        operation: Operation::Create,
        resource: events,
        subresource: "",
        namespace: "webhook-test",
        name: "e1",
        object: None,
        old: None,
        user: &user,
        dry_run: false,
    };
    f.server.take_calls();
    mutating::dispatch(&cluster, &f.clients, &f.hooks(&[hook("addLabel", "Equivalent")]), &r, Some(&mut event))
        .await
        .unwrap();
    let calls = f.server.take_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let req = &calls[0].review["request"];
    assert_eq!(req["kind"], json!({"group": "events.k8s.io", "version": "v1", "kind": "Event"}));
    assert_eq!(req["resource"], json!({"group": "events.k8s.io", "version": "v1", "resource": "events"}));
    assert_eq!(req["requestKind"], json!({"group": "", "version": "v1", "kind": "Event"}));
    assert_eq!(req["requestResource"], json!({"group": "", "version": "v1", "resource": "events"}));
    assert_eq!(req["object"]["apiVersion"], "events.k8s.io/v1");
    assert_eq!((&req["object"]["note"], &req["object"]["regarding"]["name"]), (&json!("hello"), &json!("p")));
    assert!(req["object"].get("message").is_none(), "{}", req["object"]);
    // The patch was made to the events.k8s.io/v1 object and comes back as a core/v1 Event.
    assert_eq!(event["apiVersion"], "v1");
    assert_eq!(event["message"], "hello");
    assert!(event.get("note").is_none(), "{event}");
    assert_eq!(event["metadata"]["labels"], json!({"a": "b", "added": "test"}));

    // Exact: the rule names another version, so the webhook is not called.
    let exact = f.hooks(&[hook("disallow", "Exact")]);
    let r = Request { object: Some(&event), ..r };
    validating::dispatch(&cluster, &f.clients, &exact, &r).await.unwrap();
    assert!(f.server.take_calls().is_empty());
    // Equivalent, validating: denied through the other version.
    let err =
        validating::dispatch(&cluster, &f.clients, &f.hooks(&[hook("disallow", "Equivalent")]), &r).await.unwrap_err();
    assert_eq!(err.code, 403, "{err}");
    assert_eq!(f.server.take_calls()[0].review["request"]["object"]["apiVersion"], "events.k8s.io/v1");
    // A rule naming the request's own version still sees the request's own objects.
    let own = with(hook("allow", "Equivalent"), json!({"rules": rule("")}));
    validating::dispatch(&cluster, &f.clients, &f.hooks(&[own]), &r).await.unwrap();
    let calls = f.server.take_calls();
    assert_eq!(calls[0].review["request"]["kind"], json!({"group": "", "version": "v1", "kind": "Event"}));
    assert_eq!(calls[0].review["request"]["object"], event);

    // HorizontalPodAutoscalers: written as autoscaling/v2, seen by an autoscaling/v1 webhook with the CPU target.
    let hpas = api_types::resources::find("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
    let hpa = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "h", "namespace": "webhook-test"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"}, "minReplicas": 1, "maxReplicas": 3,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}});
    let v1 = with(
        f.svc("allow", "allow"),
        json!({"rules": [{"operations": ["UPDATE"], "apiGroups": ["autoscaling"], "apiVersions": ["v1"], "resources": ["horizontalpodautoscalers"]}],
               "admissionReviewVersions": ["v1"]}),
    );
    let r =
        Request { operation: Operation::Update, resource: hpas, name: "h", object: Some(&hpa), old: Some(&hpa), ..r };
    validating::dispatch(&cluster, &f.clients, &f.hooks(&[v1]), &r).await.unwrap();
    let calls = f.server.take_calls();
    let req = &calls[0].review["request"];
    assert_eq!(req["kind"], json!({"group": "autoscaling", "version": "v1", "kind": "HorizontalPodAutoscaler"}));
    assert_eq!(req["requestKind"]["version"], "v2");
    assert_eq!(req["object"]["spec"]["targetCPUUtilizationPercentage"], 50);
    assert_eq!(req["oldObject"]["apiVersion"], "autoscaling/v1");
}

/// Upstream's CONNECT admission (`admission_webhook.go` "should be able to deny attaching pod"): the options are
/// the object, `kind` is the options kind, `options` is null, and the webhook's denial refuses the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_requests_carry_their_options() {
    let f = Fixture::new().await;
    let cluster = FakeCluster { port: f.server.port };
    let user = UserInfo { username: "alice".into(), ..Default::default() };
    let pods = api_types::resources::find("", "v1", "pods").unwrap();
    let hook = with(
        f.svc("deny-attaching-pod.k8s.io", "denySpecificAttachment"),
        json!({"rules": [{"operations": ["CONNECT"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/attach"]}],
               "admissionReviewVersions": ["v1"]}),
    );
    let hooks = f.hooks(&[hook]);
    let attach = |q: &str| crate::admission::connect::options("PodAttachOptions", Some(q), &[], false);
    let denied = attach("stdin=true&stdout=true&container=container1");
    let r = Request {
        operation: Operation::Connect,
        resource: pods,
        subresource: "attach",
        namespace: "webhook-test",
        name: "to-be-attached-pod",
        object: Some(&denied),
        old: None,
        user: &user,
        dry_run: false,
    };
    let err = validating::dispatch(&cluster, &f.clients, &hooks, &r).await.unwrap_err();
    // A denial without a code is a 400, as upstream's ToStatusErr makes it.
    assert_eq!(err.code, 400);
    assert_eq!(
        err.message,
        "admission webhook \"deny-attaching-pod.k8s.io\" denied the request: attaching to pod 'to-be-attached-pod' is not allowed"
    );
    let calls = f.server.take_calls();
    let req = &calls[0].review["request"];
    assert_eq!(req["operation"], "CONNECT");
    assert_eq!(req["kind"], json!({"group": "", "version": "v1", "kind": "PodAttachOptions"}));
    assert_eq!(req["requestKind"], req["kind"]);
    assert_eq!(req["resource"], json!({"group": "", "version": "v1", "resource": "pods"}));
    assert_eq!(req["subResource"], "attach");
    assert_eq!(req["options"], Value::Null);
    assert_eq!(req["oldObject"], Value::Null);
    // Another container, or no stdin: allowed.
    let other = attach("stdin=true&container=container2");
    validating::dispatch(&cluster, &f.clients, &hooks, &Request { object: Some(&other), ..r }).await.unwrap();
    // The rule names attach only: an exec is not sent to the webhook.
    let exec =
        crate::admission::connect::options("PodExecOptions", Some("stdin=true&container=container1"), &[], false);
    f.server.take_calls();
    validating::dispatch(&cluster, &f.clients, &hooks, &Request { subresource: "exec", object: Some(&exec), ..r })
        .await
        .unwrap();
    assert!(f.server.take_calls().is_empty());
    // Mutating webhooks are called on CONNECT too; their denial refuses it.
    let mut opts = denied.clone();
    let err = mutating::dispatch(&cluster, &f.clients, &hooks, &Request { object: None, ..r }, Some(&mut opts))
        .await
        .unwrap_err();
    assert_eq!(err.code, 400);
}
