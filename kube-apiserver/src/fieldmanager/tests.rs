//! The essence of upstream's `internal/fieldmanager_test.go`, `skipnonapplied_test.go` and structured-merge-diff's
//! `merge/multiple_appliers_test.go`, `merge/conflict_test.go`: update tracking, apply merge, conflicts, force,
//! removal of dropped fields, resets and client-side apply interop.

use serde_json::{Value, json};

use super::*;

fn req(manager: &str, api_version: &str) -> Request {
    Request { manager: manager.into(), api_version: api_version.into(), subresource: String::new(), apply: false }
}

fn deployment() -> Ty<'static> {
    Ty::of_kind("apps", "v1", "Deployment")
}

fn cm() -> Ty<'static> {
    Ty::of_kind("", "v1", "ConfigMap")
}

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| (e["manager"].as_str().unwrap().to_string(), e["operation"].as_str().unwrap().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn fields_of<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == manager)
        .map(|e| &e["fieldsV1"])
        .unwrap()
}

fn apply_obj(ty: Ty<'_>, live: Option<&Value>, config: &Value, manager: &str, force: bool) -> Result<Value, ApiError> {
    apply(ty, &Set::new(), live, config, &req(manager, "apps/v1"), force)
}

fn web(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "nginx", "image": image}]}
        }}
    })
}

#[test]
fn create_and_update_record_update_managers() {
    let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "uid": "u", "creationTimestamp": "t"}, "data": {"a": "1"}});
    update(cm(), &Set::new(), None, &mut obj, None, &req("kubectl-create", "v1"));
    assert_eq!(managers(&obj), [("kubectl-create".to_string(), "Update".to_string())]);
    let entry = &obj["metadata"]["managedFields"][0];
    assert_eq!(entry["apiVersion"], "v1");
    assert_eq!(entry["fieldsType"], "FieldsV1");
    assert!(entry["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(entry.get("subresource").is_none());
    assert_eq!(entry["fieldsV1"], json!({"f:data": {".": {}, "f:a": {}}}));

    // Another manager changes `a` and adds `b`: it takes `a` over.
    let live = obj.clone();
    let mut new = live.clone();
    new["data"] = json!({"a": "2", "b": "3"});
    update(cm(), &Set::new(), Some(&live), &mut new, None, &req("kubectl-edit", "v1"));
    assert_eq!(fields_of(&new, "kubectl-create"), &json!({"f:data": {}}));
    assert_eq!(fields_of(&new, "kubectl-edit"), &json!({"f:data": {"f:a": {}, "f:b": {}}}));

    // A no-op update changes nothing, not even the time.
    let live = new.clone();
    let mut same = live.clone();
    update(cm(), &Set::new(), Some(&live), &mut same, None, &req("kubectl-edit", "v1"));
    assert_eq!(same, live);
}

// TestApplyStripsFields: metadata the server sets is never owned.
#[test]
fn apply_strips_server_set_metadata() {
    let mut obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "b", "namespace": "b", "uid": "b", "generation": 0, "resourceVersion": "b", "creationTimestamp": "2020-01-01T00:00:00Z"}});
    update(deployment(), &Set::new(), None, &mut obj, None, &req("fieldmanager_test", "apps/v1"));
    assert!(obj["metadata"].get("managedFields").is_none(), "{obj}");
}

// TestResetManagedFieldsEmptyList / EmptyItem, and invalid managedFields ignored.
#[test]
fn reset_and_invalid_managed_fields() {
    let applied = apply_obj(
        cm(),
        None,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "b"}}}),
        "applier",
        false,
    )
    .unwrap();
    assert_eq!(managers(&applied).len(), 1);
    for reset in [json!([]), json!([{}])] {
        let mut new = applied.clone();
        new["metadata"]["managedFields"] = reset.clone();
        update(cm(), &Set::new(), Some(&applied), &mut new, Some(&reset), &req("update_manager", "v1"));
        assert!(new["metadata"].get("managedFields").is_none(), "{new}");
    }
    let bad = json!([{"manager": "x", "operation": "Bogus", "fieldsType": "FieldsV1"}]);
    let mut new = applied.clone();
    new["metadata"]["managedFields"] = bad.clone();
    update(cm(), &Set::new(), Some(&applied), &mut new, Some(&bad), &req("update_manager", "v1"));
    assert_eq!(new["metadata"]["managedFields"], applied["metadata"]["managedFields"]);
}

// TestUpdateApplyConflict and TestApplyUpdateApplyConflictForced.
#[test]
fn apply_conflicts_with_an_updater_unless_forced() {
    let created = apply_obj(deployment(), None, &web(3, "nginx:1"), "kubectl", false).unwrap();
    assert_eq!(managers(&created), [("kubectl".to_string(), "Apply".to_string())]);
    let mut updated = created.clone();
    updated["spec"]["replicas"] = json!(5);
    update(deployment(), &Set::new(), Some(&created), &mut updated, None, &req("kubectl-client-side-apply", "apps/v1"));
    assert_eq!(fields_of(&updated, "kubectl-client-side-apply"), &json!({"f:spec": {"f:replicas": {}}}));

    let err = apply_obj(deployment(), Some(&updated), &web(3, "nginx:2"), "kubectl", false).unwrap_err();
    assert_eq!(err.code, 409);
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    assert_eq!(err.details.as_ref().unwrap()["causes"][0]["field"], ".spec.replicas");
    assert_eq!(err.details.as_ref().unwrap()["causes"][0]["type"], "FieldManagerConflict");

    // Leaving the contested field out is no conflict; forcing takes it over.
    let mut without = web(3, "nginx:2");
    without["spec"].as_object_mut().unwrap().shift_remove("replicas");
    let ok = apply_obj(deployment(), Some(&updated), &without, "kubectl", false).unwrap();
    assert_eq!(ok["spec"]["replicas"], 5);
    let forced = apply_obj(deployment(), Some(&updated), &web(3, "nginx:2"), "kubectl", true).unwrap();
    assert_eq!(forced["spec"]["replicas"], 3);
    assert_eq!(managers(&forced), [("kubectl".to_string(), "Apply".to_string())]);
}

// structured-merge-diff multiple_appliers_test.go: two appliers share a list; an applier dropping its item removes
// it, a field another applier also set stays.
#[test]
fn appliers_own_their_items_and_removal_spares_shared_fields() {
    let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1", "shared": "x"}}});
    let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"b": "2", "shared": "x"}}});
    let obj = apply_obj(cm(), None, &a, "a", false).unwrap();
    let obj = apply_obj(cm(), Some(&obj), &b, "b", false).unwrap();
    assert_eq!(obj["metadata"]["labels"], json!({"a": "1", "shared": "x", "b": "2"}));
    // Same value: both own `shared`, no conflict.
    assert!(fields_of(&obj, "a")["f:metadata"]["f:labels"].get("f:shared").is_some());
    let a2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    let obj = apply_obj(cm(), Some(&obj), &a2, "a", false).unwrap();
    assert_eq!(obj["metadata"]["labels"], json!({"shared": "x", "b": "2"}));
    // A conflicting value for a shared field names every other owner.
    let b2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"b": "3"}}});
    let obj = apply_obj(cm(), Some(&obj), &b2, "b", false).unwrap();
    assert_eq!(obj["metadata"]["labels"], json!({"b": "3"}));
}

// TestApplyRemoveContainerPort (integration) essence: an item the applier drops from a keyed list goes away.
#[test]
fn dropping_a_keyed_item_removes_it() {
    let mut with_ports = web(1, "nginx");
    with_ports["spec"]["template"]["spec"]["containers"][0]["ports"] =
        json!([{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP"}]);
    let obj = apply_obj(deployment(), None, &with_ports, "kubectl", false).unwrap();
    let mut one = with_ports.clone();
    one["spec"]["template"]["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
    let obj = apply_obj(deployment(), Some(&obj), &one, "kubectl", false).unwrap();
    // The protocol the applier stopped setting goes too (the strategy's defaulting sets it again, as upstream's).
    assert_eq!(obj["spec"]["template"]["spec"]["containers"][0]["ports"], json!([{"containerPort": 80}]));
}

#[test]
fn apply_refuses_managed_fields_in_the_body() {
    let mut body = web(1, "x");
    body["metadata"]["managedFields"] = json!([]);
    let e = apply_obj(deployment(), None, &body, "kubectl", false).unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (400, "metadata.managedFields must be nil"));
}

// TestNoOpChanges: an identical apply keeps the object and its managedFields as they are.
#[test]
fn identical_apply_is_a_no_op() {
    let obj = apply_obj(deployment(), None, &web(1, "x"), "kubectl", false).unwrap();
    let again = apply_obj(deployment(), Some(&obj), &web(1, "x"), "kubectl", false).unwrap();
    assert_eq!(again, obj);
}

// skipnonapplied_test.go: the first apply to an unmanaged object gives its existing fields to before-first-apply.
#[test]
fn first_apply_to_an_unmanaged_object() {
    let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"old": "1"}});
    let obj = apply_obj(
        cm(),
        Some(&live),
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"new": "2"}}),
        "a",
        false,
    )
    .unwrap();
    assert_eq!(obj["data"], json!({"old": "1", "new": "2"}));
    assert_eq!(
        managers(&obj),
        [("a".to_string(), "Apply".to_string()), ("before-first-apply".to_string(), "Update".to_string())]
    );
}

// TestInteropForClientSideApplyAndServerSideApply / TestUpgradeClientSideToServerSideApply essence.
#[test]
fn client_side_apply_upgrades_to_server_side() {
    let mut csa = web(3, "nginx:1");
    csa["metadata"]["annotations"] = json!({lastapplied::ANNOTATION: web(3, "nginx:1").to_string()});
    let mut live = csa.clone();
    update(deployment(), &Set::new(), None, &mut live, None, &req("kubectl-client-side-apply", "apps/v1"));
    let obj = apply_obj(deployment(), Some(&live), &web(4, "nginx:2"), "kubectl", false).unwrap();
    assert_eq!(obj["spec"]["replicas"], 4);
    let annotation: Value =
        serde_json::from_str(obj["metadata"]["annotations"][lastapplied::ANNOTATION].as_str().unwrap()).unwrap();
    assert_eq!(annotation, web(4, "nginx:2"));
    // Another manager name does not upgrade.
    assert_eq!(apply_obj(deployment(), Some(&live), &web(4, "nginx:2"), "other", false).unwrap_err().code, 409);
}

#[test]
fn manager_from_query_or_user_agent() {
    assert_eq!(manager_of(Some("mine"), Some("kubectl/v1.33.0 (linux/amd64)")), "mine");
    assert_eq!(manager_of(None, Some("kubectl/v1.33.0 (linux/amd64) kubernetes/abc")), "kubectl");
    assert_eq!(manager_of(Some(""), None), "");
    let e = check_options("PatchOptions", None, None, true).unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (422, "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch")
    );
    let e = check_options("PatchOptions", Some("m"), Some("true"), false).unwrap_err();
    assert_eq!(
        e.message,
        "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"
    );
    assert!(check_options("UpdateOptions", Some(&"x".repeat(129)), None, false).is_err());
    assert!(check_options("CreateOptions", None, None, false).is_ok());
}

#[test]
fn reset_fields_keep_status_out_of_main_endpoint_ownership() {
    let reset = reset_fields(true, None);
    let live =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"}, "spec": {"replicas": 1}});
    let mut new = live.clone();
    new["status"] = json!({"replicas": 3});
    new["spec"]["replicas"] = json!(2);
    update(deployment(), &reset, Some(&live), &mut new, None, &req("m", "apps/v1"));
    assert_eq!(fields_of(&new, "m"), &json!({"f:spec": {"f:replicas": {}}}));
}
