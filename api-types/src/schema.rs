//! Field validation against the built-in kinds' schemas (k8s-openapi's typed structs for v1.33): which fields of
//! an object the kind does not have, for `fieldValidation=Strict` (400) and `Warn` (a warning per field), and
//! dropping them otherwise, as upstream's decoder does.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use k8s_openapi::api;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;

/// Decodes into the typed struct and encodes again: what the kind keeps of the object. None when the object
/// does not decode (a type mismatch somewhere); callers then leave it as it is.
fn roundtrip<T: DeserializeOwned + Serialize>(obj: &Value) -> Option<Value> {
    let typed: T = serde_json::from_value(obj.clone()).ok()?;
    serde_json::to_value(typed).ok()
}

/// Every built-in kind with a schema here: (group, version, kind) => k8s-openapi type. Expands `$m!` over the table.
macro_rules! kind_table {
    ($m:ident, $($arg:expr),*) => {
        $m!($($arg),* ; {
        ("", "v1", "Binding") => api::core::v1::Binding,
        ("", "v1", "ConfigMap") => api::core::v1::ConfigMap,
        ("", "v1", "Endpoints") => api::core::v1::Endpoints,
        ("", "v1", "Event") => api::core::v1::Event,
        ("", "v1", "LimitRange") => api::core::v1::LimitRange,
        ("", "v1", "Namespace") => api::core::v1::Namespace,
        ("", "v1", "Node") => api::core::v1::Node,
        ("", "v1", "PersistentVolumeClaim") => api::core::v1::PersistentVolumeClaim,
        ("", "v1", "PersistentVolume") => api::core::v1::PersistentVolume,
        ("", "v1", "Pod") => api::core::v1::Pod,
        ("", "v1", "PodTemplate") => api::core::v1::PodTemplate,
        ("", "v1", "ReplicationController") => api::core::v1::ReplicationController,
        ("", "v1", "ResourceQuota") => api::core::v1::ResourceQuota,
        ("", "v1", "Secret") => api::core::v1::Secret,
        ("", "v1", "ServiceAccount") => api::core::v1::ServiceAccount,
        ("", "v1", "Service") => api::core::v1::Service,
        ("apps", "v1", "ControllerRevision") => api::apps::v1::ControllerRevision,
        ("apps", "v1", "DaemonSet") => api::apps::v1::DaemonSet,
        ("apps", "v1", "Deployment") => api::apps::v1::Deployment,
        ("apps", "v1", "ReplicaSet") => api::apps::v1::ReplicaSet,
        ("apps", "v1", "StatefulSet") => api::apps::v1::StatefulSet,
        ("events.k8s.io", "v1", "Event") => api::events::v1::Event,
        ("autoscaling", "v2", "HorizontalPodAutoscaler") => api::autoscaling::v2::HorizontalPodAutoscaler,
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => api::autoscaling::v1::HorizontalPodAutoscaler,
        ("batch", "v1", "CronJob") => api::batch::v1::CronJob,
        ("batch", "v1", "Job") => api::batch::v1::Job,
        ("certificates.k8s.io", "v1", "CertificateSigningRequest") => api::certificates::v1::CertificateSigningRequest,
        ("networking.k8s.io", "v1", "IngressClass") => api::networking::v1::IngressClass,
        ("networking.k8s.io", "v1", "Ingress") => api::networking::v1::Ingress,
        ("networking.k8s.io", "v1", "NetworkPolicy") => api::networking::v1::NetworkPolicy,
        ("policy", "v1", "PodDisruptionBudget") => api::policy::v1::PodDisruptionBudget,
        ("policy", "v1", "Eviction") => api::policy::v1::Eviction,
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => api::rbac::v1::ClusterRoleBinding,
        ("rbac.authorization.k8s.io", "v1", "ClusterRole") => api::rbac::v1::ClusterRole,
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => api::rbac::v1::RoleBinding,
        ("rbac.authorization.k8s.io", "v1", "Role") => api::rbac::v1::Role,
        ("storage.k8s.io", "v1", "CSIDriver") => api::storage::v1::CSIDriver,
        ("storage.k8s.io", "v1", "CSINode") => api::storage::v1::CSINode,
        ("storage.k8s.io", "v1", "CSIStorageCapacity") => api::storage::v1::CSIStorageCapacity,
        ("storage.k8s.io", "v1", "StorageClass") => api::storage::v1::StorageClass,
        ("storage.k8s.io", "v1", "VolumeAttachment") => api::storage::v1::VolumeAttachment,
        ("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration") => api::admissionregistration::v1::MutatingWebhookConfiguration,
        ("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration") => api::admissionregistration::v1::ValidatingWebhookConfiguration,
        ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy") => api::admissionregistration::v1::ValidatingAdmissionPolicy,
        ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding") => api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") => apiextensions::CustomResourceDefinition,
        ("apiregistration.k8s.io", "v1", "APIService") => k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService,
        ("coordination.k8s.io", "v1", "Lease") => api::coordination::v1::Lease,
        ("discovery.k8s.io", "v1", "EndpointSlice") => api::discovery::v1::EndpointSlice,
        ("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema") => api::flowcontrol::v1::FlowSchema,
        ("flowcontrol.apiserver.k8s.io", "v1", "PriorityLevelConfiguration") => api::flowcontrol::v1::PriorityLevelConfiguration,
        ("node.k8s.io", "v1", "RuntimeClass") => api::node::v1::RuntimeClass,
        ("scheduling.k8s.io", "v1", "PriorityClass") => api::scheduling::v1::PriorityClass,
        ("authentication.k8s.io", "v1", "SelfSubjectReview") => api::authentication::v1::SelfSubjectReview,
        ("authentication.k8s.io", "v1", "TokenReview") => api::authentication::v1::TokenReview,
        ("authorization.k8s.io", "v1", "SelfSubjectAccessReview") => api::authorization::v1::SelfSubjectAccessReview,
        ("authorization.k8s.io", "v1", "SelfSubjectRulesReview") => api::authorization::v1::SelfSubjectRulesReview,
        ("authorization.k8s.io", "v1", "SubjectAccessReview") => api::authorization::v1::SubjectAccessReview,
        ("authorization.k8s.io", "v1", "LocalSubjectAccessReview") => api::authorization::v1::LocalSubjectAccessReview,
        })
    };
}

macro_rules! roundtrip_kind {
    ($group:expr, $version:expr, $kind:expr, $obj:expr ; { $( ($g:literal, $v:literal, $k:literal) => $t:ty, )* }) => {
        match ($group, $version, $kind) {
            $( ($g, $v, $k) => roundtrip::<$t>($obj), )*
            _ => None,
        }
    };
}

macro_rules! schemas_of {
    ($group:expr, $version:expr, $generator:expr, $roots:expr ; { $( ($g:literal, $v:literal, $k:literal) => $t:ty, )* }) => {
        $(
            if ($g, $v) == ($group, $version) {
                $generator.subschema_for::<$t>();
                $roots.push((<$t as schemars::JsonSchema>::schema_name().to_string(), $k));
            }
        )*
    };
}

/// The object as the kind's schema keeps it (None for kinds without a schema here, or undecodable objects).
fn known(group: &str, version: &str, kind: &str, obj: &Value) -> Option<Value> {
    kind_table!(roundtrip_kind, group, version, kind, obj)
}

/// OpenAPI v3 `components.schemas` for the kinds of one group-version, with upstream's schema names
/// (`io.k8s.api.core.v1.Pod`), field descriptions and `x-kubernetes-group-version-kind` on each kind: what
/// `kubectl explain` reads. Returns the map and the schema name of each kind.
pub fn openapi_definitions(
    group: &str,
    version: &str,
) -> (serde_json::Map<String, Value>, Vec<(String, &'static str)>) {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut roots: Vec<(String, &'static str)> = Vec::new();
    kind_table!(schemas_of, group, version, generator, roots);
    let mut defs = generator.take_definitions(true);
    for (name, kind) in &roots {
        if let Some(obj) = defs.get_mut(name).and_then(Value::as_object_mut) {
            obj.insert(
                "x-kubernetes-group-version-kind".into(),
                serde_json::json!([{"group": group, "version": version, "kind": kind}]),
            );
        }
    }
    // Upstream wraps a described reference as allOf: [{$ref}] (siblings of $ref are ignored in OpenAPI 3.0).
    for v in defs.values_mut() {
        wrap_refs(v);
    }
    (defs, roots)
}

/// OpenAPI v3 `components.schemas` of the object and list metadata (`ObjectMeta`, `ListMeta` and what they
/// reference) and `Quantity`, with upstream's schema names: what an extension apiserver's document refers to.
pub fn openapi_meta_definitions() -> serde_json::Map<String, Value> {
    use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, apis::meta::v1};
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    generator.subschema_for::<v1::ObjectMeta>();
    generator.subschema_for::<v1::ListMeta>();
    generator.subschema_for::<Quantity>();
    let mut defs = generator.take_definitions(true);
    for v in defs.values_mut() {
        wrap_refs(v);
    }
    defs
}

fn wrap_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.len() > 1
                && let Some(r) = m.remove("$ref")
            {
                m.insert("allOf".into(), serde_json::json!([{"$ref": r}]));
            }
            for (k, x) in m.iter_mut() {
                match (k.as_str(), x) {
                    // Maps of names to schemas: the names (JSONSchemaProps has `$ref` and `allOf` properties) are
                    // not schema keywords.
                    ("properties" | "patternProperties" | "definitions", Value::Object(named)) => {
                        named.values_mut().for_each(wrap_refs)
                    }
                    (_, x) => wrap_refs(x),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(wrap_refs),
        _ => {}
    }
}

/// Collects the paths (`spec.containers[0].notAField`) present in `input` but not in `kept`.
fn diff(input: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
    match (input, kept) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match b.get(k) {
                    Some(kv) => diff(v, kv, &p, out),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The fields of `obj` its kind does not have, in document order. Empty when all are known, or when the kind
/// has no schema here (custom resources) or the object does not decode.
pub fn unknown_fields(group: &str, version: &str, kind: &str, obj: &Value) -> Vec<String> {
    let Some(kept) = known(group, version, kind, obj) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    diff(obj, &kept, "", &mut out);
    out
}

/// Removes the given paths (as `unknown_fields` reports them) from the object.
pub fn drop_fields(obj: &mut Value, paths: &[String]) {
    for p in paths {
        let mut segments = Vec::new();
        for part in p.split('.') {
            let (name, rest) = part.split_once('[').unwrap_or((part, ""));
            segments.push(Seg::Key(name.to_string()));
            for idx in rest.split('[').filter(|s| !s.is_empty()) {
                if let Ok(i) = idx.trim_end_matches(']').parse() {
                    segments.push(Seg::Index(i));
                }
            }
        }
        remove_at(obj, &segments);
    }
}

fn remove_at(v: &mut Value, segs: &[Seg]) {
    match segs {
        [Seg::Key(k)] => {
            if let Some(m) = v.as_object_mut() {
                m.remove(k);
            }
        }
        [first, rest @ ..] => {
            let next = match first {
                Seg::Key(k) => v.get_mut(k.as_str()),
                Seg::Index(i) => v.get_mut(*i),
            };
            if let Some(n) = next {
                remove_at(n, rest);
            }
        }
        [] => {}
    }
}

enum Seg {
    Key(String),
    Index(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn property_names_are_not_schema_keywords() {
        // JSONSchemaProps has properties named `$ref` and `allOf`: they stay properties.
        let mut v = json!({"type": "object", "properties": {
            "$ref": {"type": "string"},
            "allOf": {"type": "array", "items": {"$ref": "#/x"}},
            "meta": {"$ref": "#/m", "description": "d"}
        }});
        wrap_refs(&mut v);
        assert_eq!(v["properties"]["$ref"], json!({"type": "string"}));
        assert_eq!(v["properties"]["allOf"]["items"], json!({"$ref": "#/x"}));
        assert_eq!(v["properties"]["meta"], json!({"allOf": [{"$ref": "#/m"}], "description": "d"}));
    }

    #[test]
    fn finds_unknown_fields_at_any_depth() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "bogus": 1},
                         "spec": {"containers": [{"name": "a", "image": "x", "notAField": true, "resources": {"limits": {"cpu": 1}}}], "nodeName": null}});
        assert_eq!(unknown_fields("", "v1", "Pod", &pod), ["metadata.bogus", "spec.containers[0].notAField"]);
        let good = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"a": "b"}},
                          "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80}], "resources": {}}]}}, "strategy": {}}});
        assert!(unknown_fields("apps", "v1", "Deployment", &good).is_empty());
        assert!(unknown_fields("example.com", "v1", "Widget", &json!({"x": 1})).is_empty());
    }

    #[test]
    fn drops_reported_fields() {
        let mut pod =
            json!({"metadata": {"name": "p", "bogus": 1}, "spec": {"containers": [{"name": "a", "notAField": true}]}});
        drop_fields(&mut pod, &["metadata.bogus".into(), "spec.containers[0].notAField".into()]);
        assert_eq!(pod, json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}));
    }
}
