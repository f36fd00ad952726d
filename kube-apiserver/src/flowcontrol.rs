//! API Priority and Fairness configuration (`flowcontrol.apiserver.k8s.io/v1`): the FlowSchemas and
//! PriorityLevelConfigurations every apiserver makes sure exist at start, as upstream's
//! `apiserver/pkg/apis/flowcontrol/bootstrap` defines them (the mandatory `exempt` and `catch-all`, and the
//! suggested ones), each with the `apf.kubernetes.io/autoupdate-spec: "true"` annotation. Objects already there are
//! left as they are. Requests are not classified or queued by them (see the README's differences).

use serde_json::{Value, json};

use crate::server::Apiserver;

const AUTOUPDATE: &str = "apf.kubernetes.io/autoupdate-spec";

/// A Limited priority level: (name, nominal concurrency shares, lendable percent, queuing as (queues, hand size)
/// with a queue length limit of 50, or None to reject).
type Limited = (&'static str, i64, i64, Option<(i64, i64)>);

const LIMITED: &[Limited] = &[
    ("catch-all", 5, 0, None),
    ("system", 30, 33, Some((64, 6))),
    ("node-high", 40, 25, Some((64, 6))),
    ("leader-election", 10, 0, Some((16, 4))),
    ("workload-high", 40, 50, Some((128, 6))),
    ("workload-low", 100, 90, Some((128, 6))),
    ("global-default", 20, 50, Some((128, 6))),
];

fn meta(name: &str) -> Value {
    json!({"name": name, "annotations": {AUTOUPDATE: "true"}})
}

/// The bootstrap PriorityLevelConfigurations.
pub fn priority_levels() -> Vec<Value> {
    let mut out = vec![json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
        "metadata": meta("exempt"),
        "spec": {"type": "Exempt", "exempt": {"nominalConcurrencyShares": 0, "lendablePercent": 0}}})];
    for (name, shares, lendable, queuing) in LIMITED {
        let limit_response = match queuing {
            Some((queues, hand)) => {
                json!({"type": "Queue", "queuing": {"queues": queues, "handSize": hand, "queueLengthLimit": 50}})
            }
            None => json!({"type": "Reject"}),
        };
        out.push(json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
            "metadata": meta(name),
            "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": shares, "lendablePercent": lendable,
                "limitResponse": limit_response}}}));
    }
    out
}

fn groups(names: &[&str]) -> Value {
    names.iter().map(|n| json!({"kind": "Group", "group": {"name": n}})).collect()
}

fn users(names: &[&str]) -> Value {
    names.iter().map(|n| json!({"kind": "User", "user": {"name": n}})).collect()
}

fn kube_system_service_accounts() -> Value {
    json!([{"kind": "ServiceAccount", "serviceAccount": {"name": "*", "namespace": "kube-system"}}])
}

/// Every verb on every resource, namespaced or not, and every non-resource URL.
fn everything() -> (Value, Value) {
    (
        json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "namespaces": ["*"], "clusterScope": true}]),
        json!([{"verbs": ["*"], "nonResourceURLs": ["*"]}]),
    )
}

fn flow_schema(name: &str, level: &str, precedence: i64, distinguisher: Option<&str>, rules: Value) -> Value {
    let mut spec = json!({"priorityLevelConfiguration": {"name": level}, "matchingPrecedence": precedence,
        "rules": [rules]});
    if let Some(d) = distinguisher {
        spec["distinguisherMethod"] = json!({"type": d});
    }
    json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema", "metadata": meta(name), "spec": spec})
}

/// The bootstrap FlowSchemas.
pub fn flow_schemas() -> Vec<Value> {
    let (all_resources, all_urls) = everything();
    let all =
        |subjects: Value| json!({"subjects": subjects, "resourceRules": all_resources, "nonResourceRules": all_urls});
    let everyone = || groups(&["system:unauthenticated", "system:authenticated"]);
    let mut leader_election = users(&["system:kube-controller-manager", "system:kube-scheduler"]);
    if let (Some(l), Some(sa)) = (leader_election.as_array_mut(), kube_system_service_accounts().as_array()) {
        l.extend(sa.iter().cloned());
    }
    vec![
        flow_schema("exempt", "exempt", 1, None, all(groups(&["system:masters"]))),
        flow_schema(
            "probes",
            "exempt",
            2,
            None,
            json!({"subjects": everyone(),
                "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/readyz", "/livez"]}]}),
        ),
        flow_schema(
            "system-leader-election",
            "leader-election",
            100,
            Some("ByUser"),
            json!({"subjects": leader_election, "resourceRules": [{"verbs": ["get", "create", "update"],
                "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "namespaces": ["*"]}]}),
        ),
        flow_schema(
            "system-node-high",
            "node-high",
            400,
            Some("ByUser"),
            json!({"subjects": groups(&["system:nodes"]), "resourceRules": [
                {"verbs": ["*"], "apiGroups": [""], "resources": ["nodes", "nodes/status"], "namespaces": ["*"], "clusterScope": true},
                {"verbs": ["*"], "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "namespaces": ["*"]}]}),
        ),
        flow_schema("system-nodes", "system", 500, Some("ByUser"), all(groups(&["system:nodes"]))),
        flow_schema(
            "kube-controller-manager",
            "workload-high",
            800,
            Some("ByNamespace"),
            all(users(&["system:kube-controller-manager"])),
        ),
        flow_schema(
            "kube-scheduler",
            "workload-high",
            800,
            Some("ByNamespace"),
            all(users(&["system:kube-scheduler"])),
        ),
        flow_schema(
            "kube-system-service-accounts",
            "workload-high",
            900,
            Some("ByNamespace"),
            all(kube_system_service_accounts()),
        ),
        flow_schema("service-accounts", "workload-low", 9000, Some("ByUser"), all(groups(&["system:serviceaccounts"]))),
        flow_schema("global-default", "global-default", 9900, Some("ByUser"), all(everyone())),
        flow_schema("catch-all", "catch-all", 10000, Some("ByUser"), all(everyone())),
    ]
}

/// Creates the bootstrap objects that are missing (upstream's `priority-and-fairness-config-producer`).
pub async fn ensure(server: &Apiserver) {
    for (plural, objects) in [("prioritylevelconfigurations", priority_levels()), ("flowschemas", flow_schemas())] {
        let Some(res) = api_types::resources::find("flowcontrol.apiserver.k8s.io", "v1", plural) else { continue };
        for obj in objects {
            let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
            match server.registry.create(res, None, obj, false).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => tracing::warn!(%plural, %name, error = %e, "creating the bootstrap flow control object"),
            }
        }
    }
}

/// Upstream's defaults: a FlowSchema's matching precedence, and the concurrency shares, lendable percent and
/// queuing of a priority level.
pub fn default(kind: &str, obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else { return };
    match kind {
        "FlowSchema" if spec.get("matchingPrecedence").and_then(Value::as_i64).unwrap_or(0) == 0 => {
            spec.insert("matchingPrecedence".into(), json!(1000));
        }
        "PriorityLevelConfiguration" => {
            if let Some(exempt) = spec.get_mut("exempt").and_then(Value::as_object_mut) {
                exempt.entry("nominalConcurrencyShares").or_insert(json!(0));
                exempt.entry("lendablePercent").or_insert(json!(0));
            }
            if let Some(limited) = spec.get_mut("limited").and_then(Value::as_object_mut) {
                limited.entry("nominalConcurrencyShares").or_insert(json!(30));
                limited.entry("lendablePercent").or_insert(json!(0));
                if let Some(q) =
                    limited.get_mut("limitResponse").and_then(|r| r.get_mut("queuing")).and_then(Value::as_object_mut)
                {
                    for (k, v) in [("queues", 64), ("handSize", 8), ("queueLengthLimit", 50)] {
                        if q.get(k).and_then(Value::as_i64).unwrap_or(0) == 0 {
                            q.insert(k.into(), json!(v));
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// Upstream's validation of the fields a client must get right (`pkg/apis/flowcontrol/validation`): the priority
/// level reference and precedence of a FlowSchema, the type and its matching settings of a priority level.
pub fn validate(kind: &str, obj: &Value) -> Vec<api_types::status::Cause> {
    use api_types::status::Cause;
    let required = |field: &str, detail: &str| Cause {
        reason: "FieldValueRequired",
        field: field.into(),
        message: format!("Required value: {detail}"),
    };
    let mut causes = Vec::new();
    match kind {
        "FlowSchema" => {
            if obj.pointer("/spec/priorityLevelConfiguration/name").and_then(Value::as_str).is_none_or(str::is_empty) {
                causes.push(required("spec.priorityLevelConfiguration.name", "must reference a priority level"));
            }
            let p = obj.pointer("/spec/matchingPrecedence").and_then(Value::as_i64).unwrap_or(1000);
            if !(1..=10000).contains(&p) {
                causes.push(Cause::invalid(
                    "spec.matchingPrecedence",
                    &json!(p),
                    "must be between 1 and 10000 inclusive",
                ));
            }
            if let Some(d) = obj.pointer("/spec/distinguisherMethod/type").and_then(Value::as_str)
                && !matches!(d, "ByUser" | "ByNamespace")
            {
                causes.push(Cause::not_supported(
                    "spec.distinguisherMethod.type",
                    &json!(d),
                    &["ByUser", "ByNamespace"],
                ));
            }
        }
        "PriorityLevelConfiguration" => match obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or_default() {
            "Limited" => {
                if obj.pointer("/spec/limited").is_none_or(Value::is_null) {
                    causes.push(required("spec.limited", "must not be empty when type is Limited"));
                }
            }
            "Exempt" => {
                if obj.pointer("/spec/limited").is_some_and(|l| !l.is_null()) {
                    causes.push(Cause::forbidden("spec.limited", "must be nil if the type is not Limited"));
                }
            }
            "" => causes.push(required("spec.type", "must not be empty")),
            t => causes.push(Cause::not_supported("spec.type", &json!(t), &["Exempt", "Limited"])),
        },
        _ => {}
    }
    causes
}
