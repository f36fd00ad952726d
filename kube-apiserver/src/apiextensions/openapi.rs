//! OpenAPI v3 documents of custom resource group-versions (upstream `controller/openapi/builder`): the CRD's
//! structural schema as the kind's schema, with apiVersion, kind and metadata added, under upstream's definition
//! name (`com.example.v1.Widget`), and a path per verb so kubectl finds the kind and its `fieldValidation` support.

use serde_json::{Value, json};

use super::served::Snapshot;

/// `com.example.v1.Widget` for group `example.com`: the group reversed, then version and kind.
pub fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// The document of one custom group-version, or None when no established CRD serves it.
pub fn group_version(snap: &Snapshot, group: &str, version: &str) -> Option<Value> {
    let resources = snap.in_group_version(group, version);
    if resources.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for r in resources {
        let Some(cv) = snap.custom_of(r) else { continue };
        let name = definition_name(r.group, r.version, r.kind);
        crate::discovery::resource_paths(r, &name, &mut paths);
        let mut schema = if cv.schema.is_object() { cv.schema.clone() } else { json!({"type": "object"}) };
        if !schema.get("properties").is_some_and(Value::is_object) {
            schema["properties"] = json!({});
        }
        schema["properties"]["apiVersion"] = json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"});
        schema["properties"]["kind"] = json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"});
        schema["properties"]["metadata"] = json!({"type": "object", "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata", "x-kubernetes-preserve-unknown-fields": true});
        schema["x-kubernetes-group-version-kind"] = json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
        if !r.selectable_fields.is_empty() {
            let fields: Vec<Value> = r.selectable_fields.iter().map(|f| json!({"fieldPath": f})).collect();
            schema["x-kubernetes-selectable-fields"] = Value::Array(fields);
        }
        schemas.insert(name, schema);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_definition_names() {
        assert_eq!(definition_name("example.com", "v1", "Widget"), "com.example.v1.Widget");
        assert_eq!(definition_name("stable.example.com", "v1beta1", "CronTab"), "com.example.stable.v1beta1.CronTab");
    }

    #[test]
    fn document_of_an_established_crd() {
        let crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]},
            "status": {"acceptedNames": {"plural": "widgets", "kind": "Widget"}, "conditions": [{"type": "Established", "status": "True"}]}
        });
        let snap = Snapshot::build(&[crd]);
        let doc = group_version(&snap, "example.com", "v1").unwrap();
        let schema = &doc["components"]["schemas"]["com.example.v1.Widget"];
        assert_eq!(schema["properties"]["spec"]["properties"]["size"]["type"], "integer");
        assert_eq!(schema["x-kubernetes-group-version-kind"][0]["kind"], "Widget");
        let post = &doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets"]["post"];
        assert!(post["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
        assert!(group_version(&snap, "example.com", "v2").is_none());
        assert!(schema.get("x-kubernetes-selectable-fields").is_none());
    }

    #[test]
    fn selectable_fields_extension() {
        // Upstream's TestFieldSelectorOpenAPI: the fields in the CRD's order, without the leading dot.
        let crd = json!({
            "metadata": {"name": "shirts.tests.example.com"},
            "spec": {"group": "tests.example.com", "scope": "Cluster", "names": {"plural": "shirts", "kind": "Shirt"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
                        "color": {"type": "string"}, "quantity": {"type": "integer"}}}}}},
                    "selectableFields": [{"jsonPath": ".spec.color"}, {"jsonPath": ".spec.quantity"}]}]},
            "status": {"acceptedNames": {"plural": "shirts", "kind": "Shirt"}, "conditions": [{"type": "Established", "status": "True"}]}
        });
        let snap = Snapshot::build(&[crd]);
        let doc = group_version(&snap, "tests.example.com", "v1").unwrap();
        assert_eq!(
            doc["components"]["schemas"]["com.example.tests.v1.Shirt"]["x-kubernetes-selectable-fields"],
            json!([{"fieldPath": "spec.color"}, {"fieldPath": "spec.quantity"}])
        );
    }
}
