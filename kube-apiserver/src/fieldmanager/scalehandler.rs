//! Ownership across the scale subresource (upstream's `internal/scalehandler.go`): a Scale's managedFields are the
//! parent's entries that own the replicas path, as `.spec.replicas` at autoscaling/v1; after a write of the Scale
//! they go back into the parent's, the replicas path owned exactly by the Scale's owners.

use serde_json::Value;

use super::fieldpath::{PathElement, Set, field};
use super::managers::{Entry, Managed};

/// The replicas path of the parent as path elements (`.spec.replicas`, or a CRD's `specReplicasPath`).
pub fn replicas_path(dotted: &str) -> Vec<PathElement> {
    dotted.split('.').filter(|s| !s.is_empty()).map(field).collect()
}

fn scale_replicas() -> Vec<PathElement> {
    vec![field("spec"), field("replicas")]
}

fn only(path: &[PathElement]) -> Set {
    let mut s = Set::new();
    s.insert(path);
    s
}

/// The Scale's managers from the parent object's managedFields (invalid ones: none).
pub fn to_scale(parent: &Value, parent_replicas: &[PathElement]) -> Managed {
    let managed = Managed::decode(parent).unwrap_or_default();
    let entries = managed
        .entries
        .into_iter()
        .filter(|e| e.set.has(parent_replicas))
        .map(|e| Entry { api_version: "autoscaling/v1".into(), set: only(&scale_replicas()), ..e })
        .collect();
    Managed { entries }
}

/// The parent's managers after a write of the Scale whose managers are now `scale`; new entries are recorded at
/// the parent's `api_version`.
pub fn to_parent(parent: &Value, parent_replicas: &[PathElement], scale: &Managed, api_version: &str) -> Managed {
    let mut managed = Managed::decode(parent).unwrap_or_default();
    let replicas = only(parent_replicas);
    for e in managed.entries.iter_mut() {
        e.set = e.set.difference(&replicas);
    }
    for s in scale.entries.iter().filter(|s| s.set.has(&scale_replicas())) {
        match managed
            .entries
            .iter_mut()
            .find(|e| e.manager == s.manager && e.operation == s.operation && e.subresource == s.subresource)
        {
            Some(e) => {
                e.set = e.set.union(&replicas);
                e.time = s.time.clone();
            }
            None => {
                managed.entries.push(Entry { api_version: api_version.to_string(), set: replicas.clone(), ..s.clone() })
            }
        }
    }
    managed.entries.retain(|e| !e.set.is_empty());
    managed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Upstream scalehandler_test.go TestTransformManagedFieldsToSubresource / ToParent essence.
    #[test]
    fn replicas_ownership_round_trips_through_the_scale() {
        let parent = json!({"metadata": {"managedFields": [
            {"manager": "creator", "operation": "Update", "apiVersion": "apps/v1", "time": "2020-01-01T00:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:replicas": {}, "f:paused": {}}}},
            {"manager": "other", "operation": "Apply", "apiVersion": "apps/v1", "time": "2020-01-01T00:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:metadata": {"f:labels": {"f:a": {}}}}}
        ]}});
        let path = replicas_path(".spec.replicas");
        let scale = to_scale(&parent, &path);
        assert_eq!(scale.entries.len(), 1);
        assert_eq!(scale.entries[0].manager, "creator");
        assert_eq!(scale.entries[0].api_version, "autoscaling/v1");
        // The scaler takes replicas over.
        let scaled = Managed {
            entries: vec![Entry {
                manager: "scaler".into(),
                operation: super::super::managers::Operation::Apply,
                api_version: "autoscaling/v1".into(),
                time: Some("2020-01-02T00:00:00Z".into()),
                subresource: "scale".into(),
                set: only(&scale_replicas()),
            }],
        };
        let back = to_parent(&parent, &path, &scaled, "apps/v1").encode();
        let names: Vec<(&str, &Value)> =
            back.as_array().unwrap().iter().map(|e| (e["manager"].as_str().unwrap(), &e["fieldsV1"])).collect();
        assert_eq!(
            names,
            [
                ("other", &json!({"f:metadata": {"f:labels": {"f:a": {}}}})),
                ("scaler", &json!({"f:spec": {"f:replicas": {}}})),
                ("creator", &json!({"f:spec": {"f:paused": {}}})),
            ]
        );
        assert_eq!(back[1]["apiVersion"], "apps/v1");
        assert_eq!(back[1]["subresource"], "scale");
    }
}
