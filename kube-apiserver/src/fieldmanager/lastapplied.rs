//! Client-side apply interop (upstream's `lastappliedmanager.go` and `lastappliedupdater.go`): when `kubectl`
//! moves an object from client-side to server-side apply, conflicts on fields its
//! `kubectl.kubernetes.io/last-applied-configuration` annotation lists are not conflicts, and while that
//! annotation exists a server-side apply keeps it in step with the applied configuration.

use serde_json::Value;

use super::conflict::Conflict;
use super::typed::{Ty, to_set};

/// The annotation of client-side apply.
pub const ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Only this manager's applies upgrade from client-side apply (others opt out by their name).
pub const KUBECTL: &str = "kubectl";

fn last_applied(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/annotations")?.get(ANNOTATION)?.as_str()
}

/// Whether the conflicts of `manager`'s apply to `live` are all on fields of its last-applied configuration (so
/// the apply goes ahead as forced).
pub fn conflicts_allowed(ty: Ty<'_>, live: Option<&Value>, manager: &str, conflicts: &[Conflict]) -> bool {
    if manager != KUBECTL {
        return false;
    }
    let Some(text) = live.and_then(last_applied) else { return false };
    let Ok(applied) = serde_json::from_str::<Value>(text) else { return false };
    let set = to_set(ty, &applied);
    conflicts.iter().all(|c| set.has(&c.path.0))
}

/// After a successful apply by `kubectl` to an object carrying the annotation: the annotation becomes the applied
/// configuration (without the annotation itself).
pub fn update_annotation(live: Option<&Value>, manager: &str, config: &Value, merged: &mut Value) {
    if manager != KUBECTL || live.and_then(last_applied).is_none() {
        return;
    }
    let mut applied = config.clone();
    if let Some(a) = applied.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        a.shift_remove(ANNOTATION);
        if a.is_empty()
            && let Some(m) = applied.pointer_mut("/metadata").and_then(Value::as_object_mut)
        {
            m.shift_remove("annotations");
        }
    }
    let text = applied.to_string();
    if let Some(meta) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta.entry("annotations").or_insert_with(|| Value::Object(Default::default()));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(ANNOTATION.into(), Value::String(text));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fieldpath::{Path, field};
    use super::*;
    use serde_json::json;

    fn deployment() -> Ty<'static> {
        Ty::of_kind("apps", "v1", "Deployment")
    }

    // Upstream lastappliedmanager_test.go essence: conflicts inside the annotation's fields are allowed for kubectl
    // only.
    #[test]
    fn conflicts_on_last_applied_fields_are_allowed_for_kubectl() {
        let live = json!({"metadata": {"annotations": {ANNOTATION: "{\"spec\":{\"replicas\":3}}"}}});
        let replicas = [Conflict {
            manager: "\"kubectl-client-side-apply\" using apps/v1".into(),
            path: Path(vec![field("spec"), field("replicas")]),
        }];
        let paused = [Conflict { manager: "\"x\"".into(), path: Path(vec![field("spec"), field("paused")]) }];
        assert!(conflicts_allowed(deployment(), Some(&live), "kubectl", &replicas));
        assert!(!conflicts_allowed(deployment(), Some(&live), "other", &replicas));
        assert!(!conflicts_allowed(deployment(), Some(&live), "kubectl", &paused));
        assert!(!conflicts_allowed(deployment(), Some(&json!({})), "kubectl", &replicas));
    }

    // Upstream lastappliedupdater_test.go TestLastAppliedUpdater essence.
    #[test]
    fn annotation_follows_server_side_applies_of_kubectl() {
        let live = json!({"metadata": {"annotations": {ANNOTATION: "{}"}}});
        let config = json!({"metadata": {"name": "a", "annotations": {ANNOTATION: "stale"}}, "spec": {"replicas": 2}});
        let mut merged = json!({"metadata": {"name": "a"}});
        update_annotation(Some(&live), "kubectl", &config, &mut merged);
        let text = merged["metadata"]["annotations"][ANNOTATION].as_str().unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(text).unwrap(),
            json!({"metadata": {"name": "a"}, "spec": {"replicas": 2}})
        );
        let mut untouched = json!({"metadata": {}});
        update_annotation(Some(&json!({})), "kubectl", &config, &mut untouched);
        assert_eq!(untouched, json!({"metadata": {}}));
    }
}
