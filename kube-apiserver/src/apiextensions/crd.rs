//! The CustomResourceDefinition strategy (upstream `pkg/registry/customresourcedefinition`): v1 defaults, status
//! reset on create, storedVersions kept, validation of names, scope and versions, and the cleanup finalizer a
//! delete adds so instances go first.

use api_types::{Cause, Resource};
use serde_json::{Value, json};

use crate::validation::{is_dns1035_label, is_dns1123_label, is_dns1123_subdomain};

/// The finalizer that holds a deleted CRD until its custom resources are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

pub fn is_crd(res: &Resource) -> bool {
    res.group == "apiextensions.k8s.io" && res.plural == "customresourcedefinitions"
}

/// Upstream's v1 defaulting (`SetDefaults_CustomResourceDefinition*`): singular, listKind, conversion strategy.
pub fn apply_defaults(crd: &mut Value) {
    let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) else { return };
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        let kind = names.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
        if names.get("singular").and_then(Value::as_str).is_none_or(str::is_empty) && !kind.is_empty() {
            names.insert("singular".into(), json!(kind.to_lowercase()));
        }
        if names.get("listKind").and_then(Value::as_str).is_none_or(str::is_empty) && !kind.is_empty() {
            names.insert("listKind".into(), json!(format!("{kind}List")));
        }
    }
    let conversion = spec.entry("conversion").or_insert_with(|| json!({}));
    if let Some(c) = conversion.as_object_mut() {
        c.entry("strategy").or_insert_with(|| json!("None"));
        if let Some(port) = c.get_mut("webhook").and_then(|w| w.pointer_mut("/clientConfig/service"))
            && let Some(svc) = port.as_object_mut()
        {
            svc.entry("port").or_insert_with(|| json!(443));
        }
    }
}

fn storage_version(crd: &Value) -> Option<String> {
    let versions = crd.pointer("/spec/versions")?.as_array()?;
    versions.iter().find(|v| v["storage"] == true).and_then(|v| v["name"].as_str()).map(str::to_string)
}

/// Adds the storage version to `status.storedVersions` when it is not there yet.
fn record_stored_version(crd: &mut Value) {
    let Some(storage) = storage_version(crd) else { return };
    if !crd.get("status").is_some_and(Value::is_object) {
        crd["status"] = json!({});
    }
    let stored = crd["status"].as_object_mut().and_then(|s| {
        s.entry("storedVersions").or_insert_with(|| json!([]));
        s.get_mut("storedVersions").and_then(Value::as_array_mut)
    });
    if let Some(stored) = stored
        && !stored.iter().any(|v| v == storage.as_str())
    {
        stored.push(json!(storage));
    }
}

/// A new CRD: status starts empty (no accepted names, no conditions) with the storage version recorded.
pub fn prepare_create(crd: &mut Value) {
    apply_defaults(crd);
    crd["status"] = json!({"acceptedNames": {"plural": "", "kind": ""}, "storedVersions": []});
    record_stored_version(crd);
}

/// An update of the main resource: defaults again, and a new storage version joins `storedVersions`.
pub fn prepare_update(crd: &mut Value) {
    apply_defaults(crd);
    record_stored_version(crd);
}

/// The first delete of a CRD adds the cleanup finalizer and a Terminating condition (upstream's CRD REST `Delete`).
pub fn prepare_delete(crd: &mut Value) {
    if crd.pointer("/metadata/deletionTimestamp").is_some() {
        return;
    }
    let meta = &mut crd["metadata"];
    if !meta.get("finalizers").is_some_and(Value::is_array) {
        meta["finalizers"] = json!([]);
    }
    if let Some(f) = meta["finalizers"].as_array_mut()
        && !f.iter().any(|x| x == CLEANUP_FINALIZER)
    {
        f.push(json!(CLEANUP_FINALIZER));
    }
    set_condition(
        crd,
        "Terminating",
        "True",
        "InstanceDeletionPending",
        "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
    );
}

/// Sets a status condition as upstream's `SetCRDCondition`: the transition time changes only with the status.
pub fn set_condition(crd: &mut Value, ty: &str, status: &str, reason: &str, message: &str) {
    if !crd.get("status").is_some_and(Value::is_object) {
        crd["status"] = json!({});
    }
    if !crd["status"].get("conditions").is_some_and(Value::is_array) {
        crd["status"]["conditions"] = json!([]);
    }
    let now = crate::strategy::now_rfc3339();
    let Some(conds) = crd["status"]["conditions"].as_array_mut() else { return };
    match conds.iter_mut().find(|c| c["type"] == ty) {
        Some(c) => {
            if c["status"] != status {
                c["lastTransitionTime"] = json!(now);
            }
            c["status"] = json!(status);
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        None => conds.push(
            json!({"type": ty, "status": status, "lastTransitionTime": now, "reason": reason, "message": message}),
        ),
    }
}

/// Upstream's `ValidateCustomResourceDefinition` (the parts that do not need the schema checks).
pub fn validate(crd: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec.pointer("/names/plural").and_then(Value::as_str).unwrap_or_default();
    let name = crd.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    if name != format!("{plural}.{group}") {
        causes.push(Cause::invalid("metadata.name", &json!(name), "must be spec.names.plural+\".\"+spec.group"));
    }
    if group.is_empty() {
        causes.push(Cause::required("spec.group"));
    } else if !is_dns1123_subdomain(group) {
        causes.push(Cause::invalid("spec.group", &json!(group), "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"));
    } else if group.split('.').count() < 2 {
        causes.push(Cause::invalid("spec.group", &json!(group), "should be a domain with at least one dot"));
    }
    match spec["scope"].as_str() {
        Some("Cluster" | "Namespaced") => {}
        Some(other) => causes.push(Cause::not_supported("spec.scope", &json!(other), &["Cluster", "Namespaced"])),
        None => causes.push(Cause::required("spec.scope")),
    }
    names(&spec["names"], "spec.names", &mut causes);
    versions(spec, &mut causes);
    causes.extend(super::conversion::validate(&spec["conversion"], "spec.conversion"));
    if let Some(old) = old
        && old["spec"]["scope"] != spec["scope"]
    {
        causes.push(Cause::invalid("spec.scope", &spec["scope"], "field is immutable"));
    }
    if let Some(old) = old
        && old["spec"]["group"] != spec["group"]
    {
        causes.push(Cause::invalid("spec.group", &spec["group"], "field is immutable"));
    }
    causes
}

fn names(names: &Value, path: &str, causes: &mut Vec<Cause>) {
    let label = |field: &str, causes: &mut Vec<Cause>| {
        let v = names[field].as_str().unwrap_or_default();
        if !v.is_empty() && !is_dns1123_label(v) {
            causes.push(Cause::invalid(format!("{path}.{field}"), &json!(v), "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"));
        }
    };
    if names["plural"].as_str().is_none_or(str::is_empty) {
        causes.push(Cause::required(format!("{path}.plural")));
    }
    label("plural", causes);
    label("singular", causes);
    if names["kind"].as_str().is_none_or(str::is_empty) {
        causes.push(Cause::required(format!("{path}.kind")));
    }
    if names["kind"] == names["listKind"] && names["kind"].as_str().is_some_and(|k| !k.is_empty()) {
        causes.push(Cause::invalid(
            format!("{path}.listKind"),
            &names["listKind"],
            "kind and listKind may not be the same",
        ));
    }
    for (i, s) in names["shortNames"].as_array().into_iter().flatten().enumerate() {
        if !s.as_str().is_some_and(is_dns1123_label) {
            causes.push(Cause::invalid(format!("{path}.shortNames[{i}]"), s, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"));
        }
    }
    for (i, c) in names["categories"].as_array().into_iter().flatten().enumerate() {
        if !c.as_str().is_some_and(is_dns1123_label) {
            causes.push(Cause::invalid(format!("{path}.categories[{i}]"), c, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"));
        }
    }
}

/// Upstream's most selectable fields per version.
const MAX_SELECTABLE_FIELDS: usize = 8;

/// Upstream's `ValidateCustomResourceSelectableFields`: each `jsonPath` a field path (no array notation) of the
/// schema, outside metadata, to a string, boolean or integer; no duplicates; at most 8.
fn selectable_fields(
    fields: &Value,
    schema: &super::schema::structural::Structural,
    at: &str,
    causes: &mut Vec<Cause>,
) {
    let Some(fields) = fields.as_array() else { return };
    let mut unique = std::collections::BTreeSet::new();
    for (i, f) in fields.iter().enumerate() {
        let field = format!("{at}[{i}].jsonPath");
        let json_path = f["jsonPath"].as_str().unwrap_or_default();
        if json_path.is_empty() {
            causes.push(Cause::required(field));
            continue;
        }
        let value = json!(json_path);
        let (path, found) = match super::cel::compile::resolve_field_path(json_path, schema, false) {
            Ok(r) => r,
            Err(e) => {
                causes.push(Cause::invalid(field, &value, format!("is an invalid path: {e}")));
                continue;
            }
        };
        if path.split(['.', '[']).next() == Some("metadata") {
            causes.push(Cause::invalid(&field, &value, "must not point to fields in metadata"));
        }
        if !matches!(found.generic.type_.as_str(), "string" | "boolean" | "integer") {
            causes.push(Cause::invalid(
                &field,
                &value,
                "must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed.",
            ));
        }
        if !unique.insert(path) {
            causes.push(Cause::duplicate(field, &value));
        }
    }
    if unique.len() > MAX_SELECTABLE_FIELDS {
        causes.push(Cause {
            reason: "FieldValueTooMany",
            field: at.to_string(),
            message: format!("Too many: {}: must have at most {MAX_SELECTABLE_FIELDS} items", unique.len()),
        });
    }
}

fn versions(spec: &Value, causes: &mut Vec<Cause>) {
    let Some(versions) = spec["versions"].as_array().filter(|v| !v.is_empty()) else {
        causes.push(Cause::invalid(
            "spec.versions",
            &json!([]),
            "must have exactly one version marked as storage version",
        ));
        return;
    };
    let storage = versions.iter().filter(|v| v["storage"] == true).count();
    if storage != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            &spec["versions"],
            "must have exactly one version marked as storage version",
        ));
    }
    if !versions.iter().any(|v| v["served"] == true) {
        causes.push(Cause::invalid(
            "spec.versions",
            &spec["versions"],
            "must have at least one version marked as served",
        ));
    }
    let mut seen = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let path = format!("spec.versions[{i}]");
        let name = v["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            causes.push(Cause::required(format!("{path}.name")));
        } else if !is_dns1035_label(name) {
            causes.push(Cause::invalid(format!("{path}.name"), &json!(name), "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"));
        }
        if seen.contains(&name) {
            causes.push(Cause::invalid(format!("{path}.name"), &json!(name), "must be unique"));
        }
        seen.push(name);
        match v.pointer("/schema/openAPIV3Schema").filter(|s| s.is_object()) {
            None => causes.push(Cause {
                reason: "FieldValueRequired",
                field: format!("{path}.schema.openAPIV3Schema"),
                message: "Required value: schemas are required".into(),
            }),
            Some(schema) => {
                // v1 CRDs must have structural schemas (upstream's ValidateStructural).
                let at = format!("{path}.schema.openAPIV3Schema");
                match super::schema::structural::Structural::new(schema) {
                    Ok(st) => {
                        let structural = super::schema::structural_check::validate_structural(&at, &st);
                        let valid = structural.is_empty();
                        causes.extend(structural.iter().map(|e| e.to_cause()));
                        if valid {
                            causes.extend(super::cel::validation::validate_rules(&at, &st));
                        }
                        selectable_fields(&v["selectableFields"], &st, &format!("{path}.selectableFields"), causes);
                    }
                    Err(e) => causes.push(Cause::invalid(at, &json!(""), e)),
                }
            }
        }
        for (j, col) in v["additionalPrinterColumns"].as_array().into_iter().flatten().enumerate() {
            let at = format!("{path}.additionalPrinterColumns[{j}]");
            causes.extend(super::printer::validate_column_definition(col, &at).iter().map(|e| e.to_cause()));
        }
        if let Some(scale) = v.pointer("/subresources/scale") {
            for (field, required) in
                [("specReplicasPath", true), ("statusReplicasPath", true), ("labelSelectorPath", false)]
            {
                match scale[field].as_str() {
                    None | Some("") if required => {
                        causes.push(Cause::required(format!("{path}.subresources.scale.{field}")))
                    }
                    Some(p) if !p.is_empty() => {
                        let root = if field == "specReplicasPath" { ".spec." } else { ".status." };
                        let ok = if field == "labelSelectorPath" {
                            p.starts_with(".spec.") || p.starts_with(".status.")
                        } else {
                            p.starts_with(root)
                        };
                        if !ok {
                            let detail = match field {
                                "specReplicasPath" => "should be a json path under .spec",
                                "statusReplicasPath" => "should be a json path under .status",
                                _ => "should be a json path under either .spec or .status",
                            };
                            causes.push(Cause::invalid(
                                format!("{path}.subresources.scale.{field}"),
                                &json!(p),
                                detail,
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}}]}
        })
    }

    fn fields(causes: &[Cause]) -> Vec<String> {
        causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    #[test]
    fn defaults_and_create_status() {
        let mut c = crd();
        prepare_create(&mut c);
        assert_eq!(c["spec"]["names"]["singular"], "widget");
        assert_eq!(c["spec"]["names"]["listKind"], "WidgetList");
        assert_eq!(c["spec"]["conversion"], json!({"strategy": "None"}));
        assert_eq!(c["status"], json!({"acceptedNames": {"plural": "", "kind": ""}, "storedVersions": ["v1"]}));
        assert!(validate(&c, None).is_empty(), "{:?}", fields(&validate(&c, None)));
        // A new storage version is appended, the old one kept.
        c["spec"]["versions"] = json!([{"name": "v1", "served": true, "storage": false, "schema": {"openAPIV3Schema": {}}}, {"name": "v2", "served": true, "storage": true, "schema": {"openAPIV3Schema": {}}}]);
        prepare_update(&mut c);
        assert_eq!(c["status"]["storedVersions"], json!(["v1", "v2"]));
    }

    #[test]
    fn validation_errors_as_upstream() {
        let mut c = crd();
        c["metadata"]["name"] = json!("widget.example.com");
        c["spec"]["group"] = json!("example");
        c["spec"]["versions"][0]["storage"] = json!(false);
        c["spec"]["versions"][0].as_object_mut().unwrap().remove("schema");
        let got = fields(&validate(&c, None));
        assert!(
            got.contains(
                &"metadata.name: Invalid value: \"widget.example.com\": must be spec.names.plural+\".\"+spec.group"
                    .to_string()
            ),
            "{got:?}"
        );
        assert!(
            got.contains(
                &"spec.group: Invalid value: \"example\": should be a domain with at least one dot".to_string()
            ),
            "{got:?}"
        );
        assert!(
            got.iter().any(|g| g.starts_with("spec.versions: Invalid value")
                && g.ends_with("must have exactly one version marked as storage version")),
            "{got:?}"
        );
        assert!(
            got.contains(&"spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required".to_string()),
            "{got:?}"
        );
        let old = crd();
        let mut c = crd();
        c["spec"]["scope"] = json!("Cluster");
        assert_eq!(fields(&validate(&c, Some(&old))), ["spec.scope: Invalid value: \"Cluster\": field is immutable"]);
    }

    #[test]
    fn selectable_fields_validated_as_upstream() {
        let mut c = crd();
        c["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "color": {"type": "string"}, "size": {"type": "string", "enum": ["S", "M"]},
                "quantity": {"type": "integer"}, "branded": {"type": "boolean"}, "ratio": {"type": "number"},
                "tags": {"type": "object", "additionalProperties": {"type": "string"}}}}}});
        c["spec"]["versions"][0]["selectableFields"] = json!([
            {"jsonPath": ".spec.color"}, {"jsonPath": ".spec.size"}, {"jsonPath": ".spec.quantity"},
            {"jsonPath": ".spec.branded"}]);
        prepare_create(&mut c);
        assert!(validate(&c, None).is_empty(), "{:?}", fields(&validate(&c, None)));
        c["spec"]["versions"][0]["selectableFields"] = json!([
            {"jsonPath": ""}, {"jsonPath": ".spec.nosuch"}, {"jsonPath": ".spec.ratio"}, {"jsonPath": ".spec.color"},
            {"jsonPath": ".spec.color"}, {"jsonPath": ".spec.tags['a']"}]);
        let got = fields(&validate(&c, None));
        let at = "spec.versions[0].selectableFields";
        for want in [
            format!("{at}[0].jsonPath: Required value"),
            format!(
                "{at}[1].jsonPath: Invalid value: \".spec.nosuch\": is an invalid path: does not refer to a valid field"
            ),
            format!(
                "{at}[2].jsonPath: Invalid value: \".spec.ratio\": must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed."
            ),
            format!("{at}[4].jsonPath: Duplicate value: \".spec.color\""),
            format!(
                "{at}[5].jsonPath: Invalid value: \".spec.tags['a']\": is an invalid path: array notation is not allowed"
            ),
        ] {
            assert!(got.contains(&want), "{want} in {got:?}");
        }
        let many: Vec<Value> = (0..9).map(|i| json!({"jsonPath": format!(".spec.f{i}")})).collect();
        let props: serde_json::Map<String, Value> =
            (0..9).map(|i| (format!("f{i}"), json!({"type": "string"}))).collect();
        c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"] =
            Value::Object(props);
        c["spec"]["versions"][0]["selectableFields"] = Value::Array(many);
        assert_eq!(fields(&validate(&c, None)), [format!("{at}: Too many: 9: must have at most 8 items")]);
    }

    #[test]
    fn delete_adds_finalizer_and_condition_once() {
        let mut c = crd();
        prepare_delete(&mut c);
        assert_eq!(c["metadata"]["finalizers"], json!([CLEANUP_FINALIZER]));
        assert_eq!(c["status"]["conditions"][0]["reason"], "InstanceDeletionPending");
        prepare_delete(&mut c);
        assert_eq!(c["metadata"]["finalizers"].as_array().unwrap().len(), 1);
    }
}
