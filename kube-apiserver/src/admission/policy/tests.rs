//! The plugin end to end on a fake cluster: the cases of upstream's `validating/admission_test.go` and
//! `validator_test.go` (denials and their messages and codes, validation actions, failure policies, match
//! conditions, variables, params by name and selector with their not-found actions, bindings' match resources,
//! audit annotations) and of `validation_test.go` for the objects.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use api_types::selector::LabelSelector;
use api_types::{ApiError, Resource};
use serde_json::{Value, json};

use super::dispatcher;
use super::source::Source;
use crate::admission::webhook::{BoxFuture, Cluster};
use crate::admission::{Operation, Request, WARNINGS};
use crate::apiextensions::cel::authz::AuthorizeFn;
use crate::auth::UserInfo;

/// Namespaces `prod` (`env: prod`) and `dev`, ConfigMaps as params, an authorizer that lets `admin` do anything.
struct FakeCluster {
    configmaps: Vec<Value>,
}

impl Cluster for FakeCluster {
    fn namespace<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            match name {
                "prod" => Ok(json!({"metadata": {"name": "prod", "labels": {"env": "prod"}}})),
                "dev" => Ok(json!({"metadata": {"name": "dev", "labels": {"env": "dev"}}})),
                _ => Err(ApiError::not_found("", "namespaces", name)),
            }
        })
    }

    fn service_endpoint<'a>(&'a self, _: &'a str, _: &'a str, _: u16) -> BoxFuture<'a, Result<(String, u16), String>> {
        Box::pin(async { Err("no services".to_string()) })
    }

    fn authorizer(&self) -> Option<AuthorizeFn> {
        Some(Arc::new(|a: &crate::authorization::Attributes| {
            if a.user.username == "admin" {
                (crate::authorization::Decision::Allow, String::new())
            } else {
                (crate::authorization::Decision::NoOpinion, "no RBAC policy matched".into())
            }
        }))
    }
}

impl dispatcher::Cluster for FakeCluster {
    fn served(&self) -> Arc<crate::apiextensions::served::Snapshot> {
        Arc::new(Default::default())
    }

    fn param<'a>(
        &'a self,
        _res: &'static Resource,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        Box::pin(async move {
            Ok(self
                .configmaps
                .iter()
                .find(|c| c["metadata"]["name"] == name && c["metadata"]["namespace"].as_str() == namespace)
                .cloned())
        })
    }

    fn params<'a>(
        &'a self,
        _res: &'static Resource,
        namespace: Option<&'a str>,
        selector: &'a LabelSelector,
    ) -> BoxFuture<'a, Result<Vec<Value>, ApiError>> {
        Box::pin(async move {
            Ok(self
                .configmaps
                .iter()
                .filter(|c| c["metadata"]["namespace"].as_str() == namespace)
                .filter(|c| selector.matches_value(c.pointer("/metadata/labels")))
                .cloned()
                .collect())
        })
    }
}

fn policy(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    let deployments = json!({"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
        "resources": ["deployments"], "operations": ["CREATE", "UPDATE", "DELETE"]}]});
    if spec.get("matchConstraints").is_none() {
        spec["matchConstraints"] = deployments;
    }
    let mut p = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name, "resourceVersion": "1"}, "spec": spec});
    let res = api_types::resources::find("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies").unwrap();
    crate::defaults::apply(res, &mut p, true);
    p
}

fn binding(name: &str, policy: &str, extra: Value) -> Value {
    let mut spec = json!({"policyName": policy, "validationActions": ["Deny"]});
    for (k, v) in extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    let mut b = json!({"metadata": {"name": name}, "spec": spec});
    let res =
        api_types::resources::find("admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings").unwrap();
    crate::defaults::apply(res, &mut b, true);
    b
}

fn deployment(name: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": "web"}},
           "spec": {"replicas": replicas}})
}

struct Run {
    result: Result<(), ApiError>,
    warnings: Vec<String>,
}

/// One write of a Deployment.
struct Write<'a> {
    op: Operation,
    ns: &'a str,
    user: &'a str,
    object: Option<&'a Value>,
    old: Option<&'a Value>,
}

/// Runs the plugin on one request.
fn run(policies: &[&Value], bindings: &[&Value], configmaps: &[Value], w: Write<'_>) -> Run {
    let Write { op, ns, user, object, old } = w;
    let source = Source::default();
    let by_name = |v: &[&Value]| -> BTreeMap<String, Value> {
        v.iter().map(|o| (o["metadata"]["name"].as_str().unwrap().to_string(), (*o).clone())).collect()
    };
    source.set(true, &by_name(policies));
    source.set(false, &by_name(bindings));
    let cluster = FakeCluster { configmaps: configmaps.to_vec() };
    let deployments = api_types::resources::find("apps", "v1", "deployments").unwrap();
    let user = UserInfo { username: user.into(), ..Default::default() };
    let name = object.or(old).and_then(|o| o["metadata"]["name"].as_str()).unwrap_or_default().to_string();
    let r = Request {
        operation: op,
        resource: deployments,
        subresource: "",
        namespace: ns,
        name: &name,
        object,
        old,
        user: &user,
        dry_run: false,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(WARNINGS.scope(RefCell::new(Vec::new()), async {
        let snap = source.load();
        let result = dispatcher::dispatch(&cluster, &snap.hooks, &r).await;
        Run { result, warnings: WARNINGS.with(|w| w.borrow().clone()) }
    }))
}

fn create(policies: &[&Value], bindings: &[&Value], object: &Value) -> Run {
    run(
        policies,
        bindings,
        &[],
        Write { op: Operation::Create, ns: "prod", user: "alice", object: Some(object), old: None },
    )
}

#[test]
fn a_failed_validation_denies_with_upstream_message_and_code() {
    let p = policy("replicas.example.com", json!({"validations": [{"expression": "object.spec.replicas > 1"}]}));
    let b = binding("replicas-binding.example.com", "replicas.example.com", json!({}));
    let e = create(&[&p], &[&b], &deployment("marker", 1)).result.unwrap_err();
    assert_eq!(e.code, 422);
    assert_eq!(e.reason, "Invalid");
    let message = "ValidatingAdmissionPolicy 'replicas.example.com' with binding 'replicas-binding.example.com' denied request: failed expression: object.spec.replicas > 1";
    assert_eq!(e.message, format!("deployments.apps \"marker\" is forbidden: {message}"));
    assert_eq!(
        e.details.as_deref(),
        Some(&json!({"name": "marker", "group": "apps", "kind": "deployments", "causes": [{"message": message}]}))
    );
    // A passing object, and a policy without bindings, are admitted.
    assert!(create(&[&p], &[&b], &deployment("replicated", 2)).result.is_ok());
    assert!(create(&[&p], &[], &deployment("marker", 1)).result.is_ok());
}

#[test]
fn messages_message_expressions_and_reasons() {
    let cases = [
        (json!({"expression": "false", "message": "  fixed  "}), "fixed", 422),
        (
            json!({"expression": "false", "messageExpression": "'wants replicas > 1, got ' + string(object.spec.replicas)"}),
            "wants replicas > 1, got 1",
            422,
        ),
        // A messageExpression that fails or is not a single line falls back to the message, then the expression.
        (json!({"expression": "false", "message": "fallback", "messageExpression": "object.nope"}), "fallback", 422),
        (json!({"expression": "false", "messageExpression": "'two\\nlines'"}), "failed expression: false", 422),
        (json!({"expression": "false", "reason": "Forbidden"}), "failed expression: false", 403),
        (json!({"expression": "false", "reason": "Unauthorized"}), "failed expression: false", 401),
        (json!({"expression": "false", "reason": "RequestEntityTooLarge"}), "failed expression: false", 413),
    ];
    for (validation, message, code) in cases {
        let p = policy("p", json!({"validations": [validation]}));
        let e = create(&[&p], &[&binding("b", "p", json!({}))], &deployment("d", 1)).result.unwrap_err();
        assert_eq!(e.code, code, "{validation}");
        assert!(e.message.ends_with(&format!("denied request: {message}")), "{}", e.message);
    }
}

#[test]
fn validation_actions_warn_audit_and_deny() {
    let p = policy(
        "denypolicy.example.com",
        json!({"validations": [{"expression": "false", "message": "I'm sorry Dave"}]}),
    );
    let warn = binding("denybinding.example.com", "denypolicy.example.com", json!({"validationActions": ["Warn"]}));
    let run = create(&[&p], &[&warn], &deployment("d", 1));
    assert!(run.result.is_ok());
    assert_eq!(
        run.warnings,
        [
            "Validation failed for ValidatingAdmissionPolicy 'denypolicy.example.com' with binding 'denybinding.example.com': I'm sorry Dave"
        ]
    );
    let audit = binding("denybinding.example.com", "denypolicy.example.com", json!({"validationActions": ["Audit"]}));
    let run = create(&[&p], &[&audit], &deployment("d", 1));
    assert!(run.result.is_ok() && run.warnings.is_empty());
    let all =
        binding("denybinding.example.com", "denypolicy.example.com", json!({"validationActions": ["Deny", "Audit"]}));
    let run = create(&[&p], &[&all], &deployment("d", 1));
    assert!(run.result.unwrap_err().message.contains("I'm sorry Dave"));
}

#[test]
fn failure_policies_decide_evaluation_errors() {
    let failing = json!({"validations": [{"expression": "object.spec.nope == 1"}]});
    let e = create(&[&policy("p", failing.clone())], &[&binding("b", "p", json!({}))], &deployment("d", 1))
        .result
        .unwrap_err();
    assert!(
        e.message.ends_with("denied request: expression 'object.spec.nope == 1' resulted in error: no such key: nope"),
        "{}",
        e.message
    );
    let mut ignore = failing;
    ignore["failurePolicy"] = json!("Ignore");
    assert!(create(&[&policy("p", ignore)], &[&binding("b", "p", json!({}))], &deployment("d", 1)).result.is_ok());
}

#[test]
fn match_conditions_and_variables() {
    let spec = json!({
        "variables": [{"name": "replicas", "expression": "object.spec.replicas"},
                      {"name": "isProd", "expression": "namespaceObject.metadata.labels.env == 'prod'"}],
        "matchConditions": [{"name": "not-admin", "expression": "!authorizer.group('').resource('pods').check('create').allowed()"}],
        "validations": [{"expression": "!variables.isProd || variables.replicas >= 3",
                         "messageExpression": "'prod needs 3 replicas, got ' + string(variables.replicas)"}],
    });
    let p = policy("p", spec);
    let b = binding("b", "p", json!({}));
    let d = deployment("d", 1);
    let e = create(&[&p], &[&b], &d).result.unwrap_err();
    assert!(e.message.ends_with("denied request: prod needs 3 replicas, got 1"), "{}", e.message);
    // Another namespace, or a user the match condition exempts.
    assert!(
        run(&[&p], &[&b], &[], Write { op: Operation::Create, ns: "dev", user: "alice", object: Some(&d), old: None })
            .result
            .is_ok()
    );
    assert!(
        run(&[&p], &[&b], &[], Write { op: Operation::Create, ns: "prod", user: "admin", object: Some(&d), old: None })
            .result
            .is_ok()
    );
    // A match condition that fails follows the failurePolicy.
    let bad = policy(
        "p",
        json!({"matchConditions": [{"name": "bad", "expression": "object.nope"}],
                                  "validations": [{"expression": "true"}]}),
    );
    let e = create(&[&bad], &[&b], &d).result.unwrap_err();
    assert!(
        e.message.ends_with("denied request: expression 'object.nope' resulted in error: no such key: nope"),
        "{}",
        e.message
    );
}

#[test]
fn deletes_see_the_old_object() {
    let p = policy(
        "p",
        json!({"validations": [{"expression": "object == null && oldObject.spec.replicas < 5",
                                                "message": "big deployments stay"}]}),
    );
    let b = binding("b", "p", json!({}));
    let big = deployment("d", 10);
    let e = run(
        &[&p],
        &[&b],
        &[],
        Write { op: Operation::Delete, ns: "prod", user: "alice", object: None, old: Some(&big) },
    )
    .result
    .unwrap_err();
    assert!(e.message.ends_with("denied request: big deployments stay"));
    let small = deployment("d", 1);
    assert!(
        run(
            &[&p],
            &[&b],
            &[],
            Write { op: Operation::Delete, ns: "prod", user: "alice", object: None, old: Some(&small) }
        )
        .result
        .is_ok()
    );
}

#[test]
fn bindings_narrow_with_match_resources() {
    let p = policy("p", json!({"validations": [{"expression": "false"}]}));
    let prod_only =
        binding("b", "p", json!({"matchResources": {"namespaceSelector": {"matchLabels": {"env": "prod"}}}}));
    let d = deployment("d", 1);
    assert!(
        run(
            &[&p],
            &[&prod_only],
            &[],
            Write { op: Operation::Create, ns: "prod", user: "u", object: Some(&d), old: None }
        )
        .result
        .is_err()
    );
    assert!(
        run(
            &[&p],
            &[&prod_only],
            &[],
            Write { op: Operation::Create, ns: "dev", user: "u", object: Some(&d), old: None }
        )
        .result
        .is_ok()
    );
    // Resource names and exclusions.
    let named = json!({"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"],
                                          "operations": ["*"], "resourceNames": ["other"]}]});
    let b = binding("b", "p", json!({}));
    let p2 = policy("p", json!({"matchConstraints": named, "validations": [{"expression": "false"}]}));
    assert!(create(&[&p2], &[&b], &d).result.is_ok());
    let excluded = json!({"resourceRules": [{"apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"], "operations": ["*"]}],
                          "excludeResourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"], "operations": ["CREATE"]}]});
    let p3 = policy("p", json!({"matchConstraints": excluded, "validations": [{"expression": "false"}]}));
    assert!(create(&[&p3], &[&b], &d).result.is_ok());
    // A policy that does not match, and one with an object selector.
    let pods = json!({"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "operations": ["*"]}]});
    assert!(
        create(&[&policy("p", json!({"matchConstraints": pods, "validations": [{"expression": "false"}]}))], &[&b], &d)
            .result
            .is_ok()
    );
    let selected = binding("b", "p", json!({"matchResources": {"objectSelector": {"matchLabels": {"app": "db"}}}}));
    assert!(create(&[&p], &[&selected], &d).result.is_ok());
}

#[test]
fn params_by_name_and_selector() {
    let spec = json!({"paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
                      "validations": [{"expression": "object.spec.replicas <= int(params.data.max)",
                                       "messageExpression": "'at most ' + params.data.max + ' replicas (' + params.metadata.name + ')'"}]});
    let p = policy("p", spec);
    let cm = |name: &str, ns: &str, max: &str, tier: &str| json!({"metadata": {"name": name, "namespace": ns, "labels": {"tier": tier}}, "data": {"max": max}});
    let cms = [cm("limits", "prod", "3", "a"), cm("strict", "prod", "1", "b"), cm("loose", "prod", "10", "b")];
    let by_name = binding("b", "p", json!({"paramRef": {"name": "limits", "parameterNotFoundAction": "Deny"}}));
    let d = deployment("d", 5);
    let e = run(
        &[&p],
        &[&by_name],
        &cms,
        Write { op: Operation::Create, ns: "prod", user: "u", object: Some(&d), old: None },
    )
    .result
    .unwrap_err();
    assert!(e.message.ends_with("denied request: at most 3 replicas (limits)"), "{}", e.message);
    assert!(
        run(
            &[&p],
            &[&by_name],
            &cms,
            Write { op: Operation::Create, ns: "prod", user: "u", object: Some(&deployment("d", 2)), old: None }
        )
        .result
        .is_ok()
    );
    // Missing params: Deny is a configuration error, Allow admits.
    let e = run(
        &[&p],
        &[&by_name],
        &[],
        Write { op: Operation::Create, ns: "prod", user: "u", object: Some(&d), old: None },
    )
    .result
    .unwrap_err();
    assert!(e.message.ends_with("with binding 'b' denied request: failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"), "{}", e.message);
    let allow = binding("b", "p", json!({"paramRef": {"name": "limits", "parameterNotFoundAction": "Allow"}}));
    assert!(
        run(&[&p], &[&allow], &[], Write { op: Operation::Create, ns: "prod", user: "u", object: Some(&d), old: None })
            .result
            .is_ok()
    );
    // A selector evaluates the policy once per param: the first denial wins.
    let selector = binding(
        "b",
        "p",
        json!({"paramRef": {"selector": {"matchLabels": {"tier": "b"}}, "parameterNotFoundAction": "Deny"}}),
    );
    let e = run(
        &[&p],
        &[&selector],
        &cms,
        Write { op: Operation::Create, ns: "prod", user: "u", object: Some(&deployment("d", 2)), old: None },
    )
    .result
    .unwrap_err();
    assert!(e.message.ends_with("at most 1 replicas (strict)"), "{}", e.message);
    // An explicit namespace, and a paramKind that is not served.
    let elsewhere = binding(
        "b",
        "p",
        json!({"paramRef": {"name": "limits", "namespace": "prod", "parameterNotFoundAction": "Deny"}}),
    );
    assert!(
        run(
            &[&p],
            &[&elsewhere],
            &cms,
            Write { op: Operation::Create, ns: "dev", user: "u", object: Some(&deployment("d", 2)), old: None }
        )
        .result
        .is_ok()
    );
    let bad = policy(
        "p",
        json!({"paramKind": {"apiVersion": "example.com/v1", "kind": "BadParamKind"},
                                 "validations": [{"expression": "true"}]}),
    );
    let b = binding("b", "p", json!({"paramRef": {"name": "x", "parameterNotFoundAction": "Deny"}}));
    let e = create(&[&bad], &[&b], &d).result.unwrap_err();
    assert!(e.message.ends_with("ValidatingAdmissionPolicy 'p' denied request: failed to configure policy: failed to find resource referenced by paramKind: 'example.com/v1, Kind=BadParamKind'"), "{}", e.message);
}

#[test]
fn audit_annotations_are_evaluated() {
    let spec = json!({"auditAnnotations": [{"key": "replicas", "valueExpression": "string(object.spec.replicas)"},
                                           {"key": "broken", "valueExpression": "object.nope"}]});
    let e = create(&[&policy("p", spec.clone())], &[&binding("b", "p", json!({}))], &deployment("d", 1))
        .result
        .unwrap_err();
    assert!(
        e.message.ends_with("denied request: expression 'object.nope' resulted in error: no such key: nope"),
        "{}",
        e.message
    );
    let mut ignore = spec;
    ignore["failurePolicy"] = json!("Ignore");
    assert!(create(&[&policy("p", ignore)], &[&binding("b", "p", json!({}))], &deployment("d", 1)).result.is_ok());
}

#[test]
fn equivalent_resources_match_other_versions() {
    let events_v1 = json!({"resourceRules": [{"apiGroups": ["events.k8s.io"], "apiVersions": ["v1"], "resources": ["events"], "operations": ["CREATE"]}]});
    let p = policy(
        "p",
        json!({"matchConstraints": events_v1.clone(),
        "validations": [{"expression": "false", "messageExpression": "request.kind.group + ' as ' + request.requestKind.version + ': ' + object.note"}]}),
    );
    let source = Source::default();
    source.set(true, &[("p".to_string(), p)].into_iter().collect());
    source.set(false, &[("b".to_string(), binding("b", "p", json!({})))].into_iter().collect());
    let core_events = api_types::resources::find("", "v1", "events").unwrap();
    let user = UserInfo::default();
    // The policy sees the object converted to events.k8s.io/v1 (`message` is `note` there).
    let ev = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}, "message": "hi"});
    let r = Request {
        operation: Operation::Create,
        resource: core_events,
        subresource: "",
        namespace: "prod",
        name: "e",
        object: Some(&ev),
        old: None,
        user: &user,
        dry_run: false,
    };
    let cluster = FakeCluster { configmaps: vec![] };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let snap = source.load();
    let e = rt.block_on(dispatcher::dispatch(&cluster, &snap.hooks, &r)).unwrap_err();
    assert!(e.message.ends_with("denied request: events.k8s.io as v1: hi"), "{}", e.message);
    // Exact does not match the other version.
    let mut exact = events_v1;
    exact["matchPolicy"] = json!("Exact");
    let mut p = policy("p", json!({"matchConstraints": exact, "validations": [{"expression": "false"}]}));
    p["metadata"]["resourceVersion"] = json!("2"); // a new version of the policy is compiled again
    source.set(true, &[("p".to_string(), p)].into_iter().collect());
    let snap = source.load();
    assert!(rt.block_on(dispatcher::dispatch(&cluster, &snap.hooks, &r)).is_ok());
}

mod validation {
    //! upstream `validation_test.go` cases for the two kinds.
    use super::super::validation::{binding, match_conditions, policy};
    use serde_json::json;

    fn texts(causes: Vec<api_types::Cause>) -> Vec<String> {
        causes.into_iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    fn valid_spec() -> serde_json::Value {
        json!({"failurePolicy": "Fail",
               "matchConstraints": {"matchPolicy": "Equivalent", "namespaceSelector": {}, "objectSelector": {},
                   "resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"],
                                      "operations": ["CREATE"], "scope": "*"}]},
               "validations": [{"expression": "object.spec.replicas > 1"}]})
    }

    #[test]
    fn policies() {
        let ok = json!({"metadata": {"name": "p"}, "spec": valid_spec()});
        assert!(policy(&ok, None).is_empty(), "{:?}", policy(&ok, None));
        let mut bad = ok.clone();
        bad["spec"]["validations"] = json!([{"expression": "object.x >", "reason": "Bogus", "message": "a\nb"},
                                             {"expression": "'a'", "messageExpression": "1 < 2"}]);
        bad["spec"]["failurePolicy"] = json!("Sometimes");
        bad["spec"]["matchConstraints"]["resourceRules"][0]["operations"] = json!(["CREATE", "*"]);
        bad["spec"]["variables"] =
            json!([{"name": "1x", "expression": "variables.later"}, {"name": "later", "expression": "1"}]);
        let got = texts(policy(&bad, None));
        for want in [
            "spec.failurePolicy: Unsupported value: \"Sometimes\": supported values: \"Fail\", \"Ignore\"",
            "spec.matchConstraints.resourceRules[0].operations: Invalid value: [\"CREATE\",\"*\"]: if '*' is present, must not specify other operations",
            "spec.variables[0].name: Invalid value: \"1x\": name is not a valid CEL identifier",
            "spec.variables[0].expression: Invalid value: \"variables.later\": compilation failed: ERROR: <input>:1:10: undefined field 'later'\n | variables.later\n | .........^",
            "spec.validations[0].message: Invalid value: \"a\\nb\": message must not contain line breaks",
            "spec.validations[0].reason: Unsupported value: \"Bogus\": supported values: \"Forbidden\", \"Invalid\", \"RequestEntityTooLarge\"",
            "spec.validations[1].expression: Invalid value: \"'a'\": must evaluate to bool but got string",
            "spec.validations[1].messageExpression: Invalid value: \"1 < 2\": must evaluate to string but got bool",
        ] {
            assert!(got.iter().any(|g| g == want), "missing {want:?} in {got:#?}");
        }
        assert!(got.iter().any(|g| g.starts_with("spec.validations[0].expression: Invalid value: \"object.x >\": compilation failed: ERROR: <input>:1:11: Syntax error")));
        let empty = json!({"metadata": {"name": "p"}, "spec": {"failurePolicy": "Fail"}});
        let got = texts(policy(&empty, None));
        assert_eq!(
            got,
            [
                "spec.matchConstraints: Required value",
                "spec.validations: Required value: validations or auditAnnotations must contain at least one item",
                "spec.auditAnnotations: Required value: validations or auditAnnotations must contain at least one item",
            ]
        );
        let mut params = ok.clone();
        params["spec"]["paramKind"] = json!({"apiVersion": "a/b/c", "kind": "Foo_Bar"});
        params["spec"]["validations"] = json!([{"expression": "params.x == 1"}]);
        let got = texts(policy(&params, None));
        assert!(
            got.iter()
                .any(|g| g
                    == "spec.paramKind.apiVersion: Invalid value: \"a/b/c\": unexpected GroupVersion string: a/b/c"),
            "{got:?}"
        );
        assert!(
            got.iter().any(|g| g.starts_with("spec.paramKind.kind: Invalid value: \"Foo_Bar\": may have mixed case")),
            "{got:?}"
        );
        assert!(!got.iter().any(|g| g.contains("params")), "params are declared with a paramKind: {got:?}");
        let mut audit = ok;
        audit["spec"]["auditAnnotations"] =
            json!([{"key": "k", "valueExpression": "1"}, {"key": "k", "valueExpression": "'x'"}]);
        let got = texts(policy(&audit, None));
        assert_eq!(
            got,
            [
                "spec.auditAnnotations[0].valueExpression: Invalid value: \"1\": must evaluate to one of [string null_type] but got int",
                "spec.auditAnnotations[1].key: Duplicate value: \"k\"",
            ]
        );
    }

    #[test]
    fn bindings() {
        let ok = json!({"metadata": {"name": "b"}, "spec": {"policyName": "p", "validationActions": ["Deny"],
            "paramRef": {"name": "x", "parameterNotFoundAction": "Deny"}}});
        assert!(binding(&ok).is_empty(), "{:?}", binding(&ok));
        let bad = json!({"metadata": {"name": "b"}, "spec": {"validationActions": ["Deny", "Warn", "Deny", "Nope"],
            "paramRef": {"name": "x", "selector": {}, "parameterNotFoundAction": "Maybe"}}});
        let got = texts(binding(&bad));
        for want in [
            "spec.policyName: Required value",
            "spec.paramRef.name: Forbidden: name and selector are mutually exclusive",
            "spec.paramRef.selector: Forbidden: name and selector are mutually exclusive",
            "spec.paramRef.parameterNotFoundAction: Unsupported value: \"Maybe\": supported values: \"Deny\", \"Allow\"",
            "spec.validationActions[2]: Duplicate value: \"Deny\"",
            "spec.validationActions[3]: Unsupported value: \"Nope\": supported values: \"Audit\", \"Deny\", \"Warn\"",
            "spec.validationActions: Invalid value: [\"Deny\",\"Warn\",\"Deny\",\"Nope\"]: must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
        ] {
            assert!(got.iter().any(|g| g == want), "missing {want:?} in {got:#?}");
        }
        let none = json!({"metadata": {"name": "b"}, "spec": {"policyName": "p", "paramRef": {"parameterNotFoundAction": "Deny"}}});
        assert_eq!(
            texts(binding(&none)),
            [
                "spec.paramRef: Required value: one of name or selector must be specified",
                "spec.validationActions: Required value: at least one validation action is required",
            ]
        );
    }

    #[test]
    fn webhook_match_conditions() {
        let mut causes = Vec::new();
        let many: Vec<_> = (0..65).map(|i| json!({"name": format!("c{i}"), "expression": "true"})).collect();
        match_conditions(&json!(many), false, "webhooks[0].matchConditions", &mut causes);
        assert_eq!(texts(causes), ["webhooks[0].matchConditions: Too many: 65: must have at most 64 items"]);
        let mut causes = Vec::new();
        let conds = json!([{"name": "a", "expression": "true"}, {"name": "a", "expression": "params.x"},
                           {"name": "", "expression": " "}, {"name": "b", "expression": "variables.x"}]);
        match_conditions(&conds, false, "webhooks[0].matchConditions", &mut causes);
        let got = texts(causes);
        assert_eq!(
            got[0],
            "webhooks[0].matchConditions[1].expression: Invalid value: \"params.x\": compilation failed: ERROR: <input>:1:1: undeclared reference to 'params' (in container '')\n | params.x\n | ^"
        );
        assert_eq!(got[1], "webhooks[0].matchConditions[1].name: Duplicate value: \"a\"");
        assert_eq!(got[2], "webhooks[0].matchConditions[2].expression: Required value");
        assert_eq!(got[3], "webhooks[0].matchConditions[2].name: Required value");
        assert!(got[4].starts_with(
            "webhooks[0].matchConditions[3].expression: Invalid value: \"variables.x\": compilation failed"
        ));
    }
}
