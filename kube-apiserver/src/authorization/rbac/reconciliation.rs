//! Reconciliation of the bootstrap RBAC objects against what is stored, as upstream's
//! `pkg/registry/rbac/reconciliation` run by the apiserver's `rbac/bootstrap-roles` post-start hook in union mode
//! (`RemoveExtraPermissions`/`RemoveExtraSubjects` false): missing rules, aggregation selectors, subjects, labels
//! and annotations are added, nothing is removed, and an object annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "false"` is left alone.

use serde_json::{Map, Value};

use super::rule::{PolicyRule, covers};
use super::{RoleRef, Subject};

/// The annotation that opts an object out of reconciliation when `"false"`.
pub const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";

/// What reconciliation asks the caller to do.
#[derive(Debug, Clone, PartialEq)]
pub enum ReconcileOperation {
    /// Nothing to write (up to date, or protected by `autoupdate: "false"`).
    None,
    /// The object does not exist: create it.
    Create(Value),
    /// Update the stored object to this (the stored object with additions; its resourceVersion is kept).
    Update(Value),
    /// A binding's roleRef changed, which cannot be updated: delete the stored binding and create this one.
    Recreate(Value),
}

fn meta_map(obj: &Value, field: &str) -> Map<String, Value> {
    obj["metadata"].get(field).and_then(Value::as_object).cloned().unwrap_or_default()
}

/// Upstream's `merge(expected, existing)`: the stored values win.
fn merged(expected: &Value, existing: &Value, field: &str) -> Map<String, Value> {
    let mut out = meta_map(expected, field);
    out.extend(meta_map(existing, field));
    out
}

fn subjects(obj: &Value) -> Vec<(Subject, Value)> {
    obj.get("subjects")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|v| (normalized_subject(v), v.clone())).collect())
        .unwrap_or_default()
}

/// A subject as stored after defaulting (User and Group subjects carry the RBAC API group).
fn normalized_subject(v: &Value) -> Subject {
    let mut s = Subject::from_value(v);
    if s.api_group.is_empty() && (s.kind == "User" || s.kind == "Group") {
        s.api_group = super::GROUP.into();
    }
    s
}

fn selectors(obj: &Value) -> Option<Vec<Value>> {
    obj.get("aggregationRule")
        .filter(|a| !a.is_null())
        .map(|a| a.get("clusterRoleSelectors").and_then(Value::as_array).cloned().unwrap_or_default())
}

/// What reconciling `wanted` (a bootstrap Role, ClusterRole, RoleBinding or ClusterRoleBinding) against the stored
/// `existing` calls for.
pub fn reconcile_operation(existing: Option<&Value>, wanted: &Value) -> ReconcileOperation {
    let Some(existing) = existing else {
        return ReconcileOperation::Create(wanted.clone());
    };
    if existing["metadata"]["annotations"].get(AUTOUPDATE_ANNOTATION).and_then(Value::as_str) == Some("false") {
        return ReconcileOperation::None;
    }
    let is_binding = wanted.get("roleRef").is_some();
    if is_binding {
        let role_ref = |v: &Value| v.get("roleRef").map(RoleRef::from_value).unwrap_or_default();
        if role_ref(existing) != role_ref(wanted) {
            return ReconcileOperation::Recreate(wanted.clone());
        }
    }

    let mut result = existing.clone();
    let mut changed = false;
    for field in ["annotations", "labels"] {
        let m = merged(wanted, existing, field);
        if m != meta_map(existing, field) {
            result["metadata"][field] = Value::Object(m);
            changed = true;
        }
    }

    if is_binding {
        let have = subjects(existing);
        let mut missing: Vec<Value> = Vec::new();
        let mut seen: Vec<Subject> = Vec::new();
        for (s, v) in subjects(wanted) {
            if !have.iter().any(|(h, _)| *h == s) && !seen.contains(&s) {
                seen.push(s);
                missing.push(v);
            }
        }
        if !missing.is_empty() {
            let mut all: Vec<Value> = have.into_iter().map(|(_, v)| v).collect();
            all.extend(missing);
            result["subjects"] = Value::Array(all);
            changed = true;
        }
    } else {
        let (_, missing) = covers(&PolicyRule::list_from(existing), &PolicyRule::list_from(wanted));
        if !missing.is_empty() {
            let mut rules = existing.get("rules").and_then(Value::as_array).cloned().unwrap_or_default();
            rules.extend(missing.iter().map(PolicyRule::to_value));
            result["rules"] = Value::Array(rules);
            changed = true;
        }
        let (have, want) = (selectors(existing), selectors(wanted));
        match (&have, &want) {
            (Some(_), None) => {
                // upstream drops an aggregation rule the bootstrap role no longer has
                if let Some(m) = result.as_object_mut() {
                    m.remove("aggregationRule");
                }
                changed = true;
            }
            (_, Some(want)) => {
                let have = have.unwrap_or_default();
                let missing: Vec<Value> = want.iter().filter(|w| !have.contains(w)).cloned().collect();
                if !missing.is_empty() {
                    let mut all = have;
                    all.extend(missing);
                    result["aggregationRule"] = serde_json::json!({"clusterRoleSelectors": all});
                    changed = true;
                }
            }
            (None, None) => {}
        }
    }
    if changed { ReconcileOperation::Update(result) } else { ReconcileOperation::None }
}

/// The object to write to bring `existing` up to `wanted`, or None when nothing is to be written. A binding whose
/// roleRef changed comes back as `wanted` itself, which must replace the stored binding by delete and create
/// ([`reconcile_operation`] tells that case apart).
pub fn reconcile(existing: Option<&Value>, wanted: &Value) -> Option<Value> {
    match reconcile_operation(existing, wanted) {
        ReconcileOperation::None => None,
        ReconcileOperation::Create(v) | ReconcileOperation::Update(v) | ReconcileOperation::Recreate(v) => Some(v),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn role(rules: Value) -> Value {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "r", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                "annotations": {AUTOUPDATE_ANNOTATION: "true"}},
            "rules": rules})
    }

    #[test]
    fn missing_objects_are_created() {
        let want = role(json!([]));
        assert_eq!(reconcile_operation(None, &want), ReconcileOperation::Create(want.clone()));
    }

    #[test]
    fn rules_are_unioned_and_user_additions_kept() {
        let want = role(json!([{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]));
        let mut have = role(json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
                                   {"verbs": ["*"], "apiGroups": ["x"], "resources": ["y"]}]));
        have["metadata"]["resourceVersion"] = json!("7");
        have["metadata"]["labels"]["mine"] = json!("yes");
        have["metadata"]["annotations"].as_object_mut().unwrap().remove(AUTOUPDATE_ANNOTATION);
        let out = reconcile(Some(&have), &want).unwrap();
        assert_eq!(
            out["rules"],
            json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
                   {"verbs": ["*"], "apiGroups": ["x"], "resources": ["y"]},
                   {"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}])
        );
        assert_eq!(out["metadata"]["labels"], json!({"kubernetes.io/bootstrapping": "rbac-defaults", "mine": "yes"}));
        assert_eq!(out["metadata"]["annotations"], json!({AUTOUPDATE_ANNOTATION: "true"}));
        assert_eq!(out["metadata"]["resourceVersion"], "7");
        // reconciling the result again is a no-op
        assert_eq!(reconcile(Some(&out), &want), None);
    }

    #[test]
    fn user_values_of_labels_and_annotations_win() {
        let want = role(json!([]));
        let mut have = want.clone();
        have["metadata"]["labels"]["kubernetes.io/bootstrapping"] = json!("changed");
        assert_eq!(reconcile(Some(&have), &want), None);
    }

    #[test]
    fn autoupdate_false_protects() {
        let want = role(json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]));
        let mut have = role(json!([]));
        have["metadata"]["annotations"][AUTOUPDATE_ANNOTATION] = json!("false");
        assert_eq!(reconcile_operation(Some(&have), &want), ReconcileOperation::None);
    }

    #[test]
    fn aggregation_selectors_are_added_and_aggregated_rules_kept() {
        let sel = json!({"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}});
        let mut want = role(json!([]));
        want.as_object_mut().unwrap().remove("rules");
        want["aggregationRule"] = json!({"clusterRoleSelectors": [sel]});
        // the controller filled the rules in; a user added a selector
        let mut have = role(json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]));
        have["aggregationRule"] = json!({"clusterRoleSelectors": [sel, {"matchLabels": {"extra": "1"}}]});
        assert_eq!(reconcile(Some(&have), &want), None);
        have["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {"extra": "1"}}]});
        let out = reconcile(Some(&have), &want).unwrap();
        assert_eq!(out["aggregationRule"]["clusterRoleSelectors"], json!([{"matchLabels": {"extra": "1"}}, sel]));
        assert_eq!(out["rules"], have["rules"]);
        // a bootstrap role that is no longer aggregated loses the stored rule
        let out = reconcile(Some(&have), &role(json!([]))).unwrap();
        assert!(out.get("aggregationRule").is_none());
    }

    fn crb(role: &str, subjects: Value) -> Value {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "b", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                "annotations": {AUTOUPDATE_ANNOTATION: "true"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": subjects})
    }

    #[test]
    fn binding_subjects_are_unioned() {
        let want = crb(
            "r",
            json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"},
                                   {"kind": "ServiceAccount", "name": "sa", "namespace": "kube-system"}]),
        );
        // stored without the defaulted apiGroup, plus a user addition
        let have = crb("r", json!([{"kind": "Group", "name": "system:authenticated"}, {"kind": "User", "name": "me"}]));
        let out = reconcile(Some(&have), &want).unwrap();
        assert_eq!(
            out["subjects"],
            json!([{"kind": "Group", "name": "system:authenticated"}, {"kind": "User", "name": "me"},
                   {"kind": "ServiceAccount", "name": "sa", "namespace": "kube-system"}])
        );
        assert_eq!(reconcile(Some(&out), &want), None);
    }

    #[test]
    fn binding_with_another_role_ref_is_recreated() {
        let want = crb("r", json!([]));
        let have = crb("other", json!([]));
        assert_eq!(reconcile_operation(Some(&have), &want), ReconcileOperation::Recreate(want.clone()));
    }
}
