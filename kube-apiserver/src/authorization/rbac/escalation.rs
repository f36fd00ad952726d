//! Privilege-escalation prevention on writes of RBAC objects, as upstream's `pkg/registry/rbac/escalation_check.go`
//! (`EscalationAllowed`, `RoleEscalationAuthorized`, `BindingAuthorized`), `validation.ConfirmNoEscalation` and
//! the `policybased` storages of the four RBAC resources: a user may only write a Role or ClusterRole holding
//! rules they hold themselves (or with the `escalate` verb on it), and only bind a role whose rules they hold
//! (or with the `bind` verb on it). Members of `system:masters` skip the checks.

use serde_json::{Value, json};

use api_types::ApiError;

use super::rule::{PolicyRule, compact_rules, covers, go_quote, go_quote_list};
use super::{ErrorStyle, GROUP, RbacAuthorizer, RoleRef, RoleRefError, aggregate};
use crate::auth::UserInfo;
use crate::authorization::Attributes;

/// Asks the whole `--authorization-mode` chain whether a request is allowed (the `escalate` and `bind` checks go
/// through every authorizer, not only RBAC).
pub type AuthorizeFn<'a> = &'a dyn Fn(&Attributes) -> bool;

/// Upstream's `EscalationAllowed`: `system:masters` may do anything.
pub fn escalation_allowed(user: &UserInfo) -> bool {
    user.groups.iter().any(|g| g == "system:masters")
}

/// Upstream's `RoleEscalationAuthorized`: the `escalate` verb on the role being written.
fn role_escalation_authorized(
    authorize: AuthorizeFn<'_>,
    user: &UserInfo,
    resource: &str,
    namespace: &str,
    name: &str,
) -> bool {
    authorize(&Attributes {
        user: user.clone(),
        verb: "escalate".into(),
        resource_request: true,
        api_group: GROUP.into(),
        api_version: "*".into(),
        namespace: namespace.into(),
        resource: resource.into(),
        name: name.into(),
        ..Default::default()
    })
}

/// Upstream's `BindingAuthorized`: the `bind` verb on the referenced role, checked in the binding's namespace
/// ("" for a ClusterRoleBinding).
fn binding_authorized(authorize: AuthorizeFn<'_>, user: &UserInfo, role_ref: &RoleRef, namespace: &str) -> bool {
    let resource = match role_ref.kind.as_str() {
        "ClusterRole" => "clusterroles",
        "Role" => "roles",
        _ => return false,
    };
    authorize(&Attributes {
        user: user.clone(),
        verb: "bind".into(),
        resource_request: true,
        api_group: role_ref.api_group.clone(),
        api_version: "*".into(),
        namespace: namespace.into(),
        resource: resource.into(),
        name: role_ref.name.clone(),
        ..Default::default()
    })
}

/// Upstream's `ConfirmNoEscalation`: the user's own rules in `namespace` must cover `rules`; the error text lists
/// what is missing, compacted and sorted.
pub fn confirm_no_escalation(
    rbac: &RbacAuthorizer,
    user: &UserInfo,
    namespace: &str,
    rules: &[PolicyRule],
) -> Result<(), String> {
    let (owner, errors) = rbac.user_rules(user, namespace, ErrorStyle::Registry);
    let (covered, missing) = covers(&owner, rules);
    if covered {
        return Ok(());
    }
    let mut descriptions: Vec<String> = compact_rules(&missing).iter().map(PolicyRule::compact_string).collect();
    descriptions.sort();
    descriptions.dedup();
    let mut msg = format!(
        "user {} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        go_quote(&user.username),
        go_quote_list(&user.groups),
        descriptions.join("\n")
    );
    if !errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", aggregate(&errors)));
    }
    Err(msg)
}

/// Upstream's `NewForbidden` for an RBAC resource: `roles.rbac.authorization.k8s.io "x" is forbidden: <why>`.
fn forbidden(resource: &str, name: &str, why: &str) -> ApiError {
    let qualified = format!("{resource}.{GROUP}");
    let message = if name.is_empty() {
        format!("{qualified} is forbidden: {why}")
    } else {
        format!("{qualified} {} is forbidden: {why}", go_quote(name))
    };
    let mut details = serde_json::Map::new();
    if !name.is_empty() {
        details.insert("name".into(), json!(name));
    }
    details.insert("group".into(), json!(GROUP));
    details.insert("kind".into(), json!(resource));
    ApiError { details: Some(Box::new(Value::Object(details))), ..ApiError::forbidden(message) }
}

fn name_of(obj: &Value) -> &str {
    obj["metadata"].get("name").and_then(Value::as_str).unwrap_or_default()
}

/// Upstream's `IsOnlyMutatingGCFields`: the update only touches what the garbage collector writes (owner
/// references and finalizers; `managedFields`, which records that write, and the obsolete `selfLink` are ignored
/// too).
pub fn only_gc_fields_changed(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in ["ownerReferences", "finalizers", "selfLink", "managedFields"] {
                meta.remove(field);
            }
        }
        v
    };
    strip(new) == strip(old)
}

fn has_aggregation_rule(obj: &Value) -> bool {
    obj.get("aggregationRule")
        .and_then(|a| a.get("clusterRoleSelectors"))
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty())
}

/// The check of a Role (`resource` `roles`, in `namespace`) or ClusterRole (`clusterroles`, namespace "") write:
/// `obj` is the object to store, `old` the stored one on an update (None on a create, whose request names no
/// object, so an `escalate` grant limited by resourceNames does not apply to it, as upstream).
///
/// Allowed for `system:masters`, with `escalate` on the role, for an update touching only owner references and
/// finalizers, or when the user already holds every rule of the role; a ClusterRole with an aggregationRule (before
/// or after the update) also needs the user to hold every permission (`*` on `*.*` and every URL). Otherwise 403
/// with upstream's text.
pub fn check_role_write(
    authorize: AuthorizeFn<'_>,
    rbac: &RbacAuthorizer,
    user: &UserInfo,
    resource: &str,
    namespace: &str,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let name = name_of(obj);
    let request_name = if old.is_some() { name } else { "" };
    if escalation_allowed(user) || role_escalation_authorized(authorize, user, resource, namespace, request_name) {
        return Ok(());
    }
    if let Some(old) = old
        && only_gc_fields_changed(obj, old)
    {
        return Ok(());
    }
    confirm_no_escalation(rbac, user, namespace, &PolicyRule::list_from(obj))
        .map_err(|e| forbidden(resource, name, &e))?;
    if resource == "clusterroles" && (has_aggregation_rule(obj) || old.is_some_and(has_aggregation_rule)) {
        let full_authority = [
            PolicyRule {
                verbs: vec!["*".into()],
                api_groups: vec!["*".into()],
                resources: vec!["*".into()],
                ..Default::default()
            },
            PolicyRule { verbs: vec!["*".into()], non_resource_urls: vec!["*".into()], ..Default::default() },
        ];
        confirm_no_escalation(rbac, user, namespace, &full_authority)
            .map_err(|_| forbidden(resource, name, "must have cluster-admin privileges to use the aggregationRule"))?;
    }
    Ok(())
}

/// The check of a RoleBinding (`resource` `rolebindings`, in `namespace`) or ClusterRoleBinding
/// (`clusterrolebindings`, namespace "") write; `old` as for [`check_role_write`].
///
/// Allowed for `system:masters`, for an update touching only owner references and finalizers, with `bind` on the
/// referenced role, or when the user already holds every rule of that role. A reference to a missing role is 404
/// (`clusterroles.rbac.authorization.k8s.io "x" not found`), an unknown kind 500, and an escalation 403 with
/// upstream's text.
pub fn check_binding_write(
    authorize: AuthorizeFn<'_>,
    rbac: &RbacAuthorizer,
    user: &UserInfo,
    resource: &str,
    namespace: &str,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if escalation_allowed(user) {
        return Ok(());
    }
    if resource == "rolebindings" && namespace.is_empty() {
        return Err(ApiError::bad_request("namespace is required"));
    }
    if let Some(old) = old
        && only_gc_fields_changed(obj, old)
    {
        return Ok(());
    }
    let role_ref = obj.get("roleRef").map(RoleRef::from_value).unwrap_or_default();
    if binding_authorized(authorize, user, &role_ref, namespace) {
        return Ok(());
    }
    let rules = rbac.role_ref_rules(&role_ref, namespace, ErrorStyle::Registry).map_err(|e| match e {
        RoleRefError::NotFound { resource, name } => ApiError::not_found(GROUP, resource, &name),
        e @ RoleRefError::UnsupportedKind(_) => ApiError::internal(e.to_string()),
    })?;
    confirm_no_escalation(rbac, user, namespace, &rules).map_err(|e| forbidden(resource, name_of(obj), &e))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{binding, cluster_binding, cluster_role, role, user};
    use super::*;

    const MASTERS: &str = "system:masters";

    fn deny_all(_: &Attributes) -> bool {
        false
    }

    /// A cluster where `u` may get and list pods cluster-wide and everything in namespace `mine`.
    fn cluster() -> RbacAuthorizer {
        let a = RbacAuthorizer::new();
        a.apply(
            "clusterroles",
            &cluster_role("pod-reader", json!([{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}])),
            false,
        );
        a.apply(
            "clusterroles",
            &cluster_role("all", json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}])),
            false,
        );
        a.apply("clusterrolebindings", &cluster_binding("u-reads-pods", "pod-reader", &["User:u"]), false);
        a.apply("rolebindings", &binding("mine", "u-owns-mine", "ClusterRole", "all", &["User:u"]), false);
        a
    }

    fn u() -> UserInfo {
        user("u", &["system:authenticated"])
    }

    fn pods_role(verbs: &[&str]) -> Value {
        cluster_role("x", json!([{"verbs": verbs, "apiGroups": [""], "resources": ["pods"]}]))
    }

    #[test]
    fn roles_within_the_users_own_rules_pass() {
        let a = cluster();
        check_role_write(&deny_all, &a, &u(), "clusterroles", "", &pods_role(&["get"]), None).unwrap();
        check_role_write(&deny_all, &a, &u(), "clusterroles", "", &pods_role(&["get", "list"]), None).unwrap();
        // in namespace mine the user holds everything
        let r = role("mine", "x", json!([{"verbs": ["*"], "apiGroups": ["apps"], "resources": ["deployments"]}]));
        check_role_write(&deny_all, &a, &u(), "roles", "mine", &r, None).unwrap();
    }

    #[test]
    fn escalating_roles_are_forbidden_with_upstreams_text() {
        let a = cluster();
        let obj = cluster_role(
            "x",
            json!([{"verbs": ["get", "create", "delete"], "apiGroups": [""], "resources": ["pods", "secrets"]},
                   {"verbs": ["get"], "nonResourceURLs": ["/metrics"]}]),
        );
        let err = check_role_write(&deny_all, &a, &u(), "clusterroles", "", &obj, None).unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(err.reason, "Forbidden");
        assert_eq!(
            err.message,
            "clusterroles.rbac.authorization.k8s.io \"x\" is forbidden: user \"u\" (groups=[\"system:authenticated\"]) \
             is attempting to grant RBAC permissions not currently held:\n\
             {APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"create\" \"delete\"]}\n\
             {APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"create\" \"delete\"]}\n\
             {NonResourceURLs:[\"/metrics\"], Verbs:[\"get\"]}"
        );
        assert_eq!(
            err.details.as_deref(),
            Some(&json!({"name": "x", "group": "rbac.authorization.k8s.io", "kind": "clusterroles"}))
        );
        // a Role outside the user's namespace
        let r =
            role("theirs", "x", json!([{"verbs": ["create"], "apiGroups": ["apps"], "resources": ["deployments"]}]));
        let err = check_role_write(&deny_all, &a, &u(), "roles", "theirs", &r, None).unwrap_err();
        assert!(
            err.message.starts_with("roles.rbac.authorization.k8s.io \"x\" is forbidden: user \"u\""),
            "{}",
            err.message
        );
        assert!(err.message.ends_with("{APIGroups:[\"apps\"], Resources:[\"deployments\"], Verbs:[\"create\"]}"));
    }

    #[test]
    fn resolution_errors_are_appended() {
        let a = cluster();
        a.apply("clusterrolebindings", &cluster_binding("dangling", "missing", &["User:u"]), false);
        let err = check_role_write(&deny_all, &a, &u(), "clusterroles", "", &pods_role(&["delete"]), None).unwrap_err();
        assert!(
            err.message.ends_with(
                "{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}; resolution errors: \
                 [clusterroles.rbac.authorization.k8s.io \"missing\" not found]"
            ),
            "{}",
            err.message
        );
    }

    #[test]
    fn escalate_verb_and_masters_skip_the_check() {
        let a = cluster();
        let obj = pods_role(&["delete"]);
        let seen = std::cell::RefCell::new(Vec::new());
        let escalate_on_clusterroles = |at: &Attributes| {
            seen.borrow_mut().push(at.clone());
            at.verb == "escalate" && at.resource == "clusterroles" && at.api_group == GROUP
        };
        check_role_write(&escalate_on_clusterroles, &a, &u(), "clusterroles", "", &obj, None).unwrap();
        let asked = seen.borrow()[0].clone();
        assert_eq!((asked.api_version.as_str(), asked.name.as_str(), asked.resource_request), ("*", "", true));
        // an update names the object
        check_role_write(&escalate_on_clusterroles, &a, &u(), "clusterroles", "", &obj, Some(&pods_role(&["get"])))
            .unwrap();
        assert_eq!(seen.borrow()[1].name, "x");

        check_role_write(&deny_all, &a, &user("root", &[MASTERS]), "clusterroles", "", &obj, None).unwrap();
    }

    #[test]
    fn aggregation_rules_need_full_authority() {
        let a = cluster();
        let mut obj = pods_role(&["get"]);
        obj["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]});
        let err = check_role_write(&deny_all, &a, &u(), "clusterroles", "", &obj, None).unwrap_err();
        assert_eq!(
            err.message,
            "clusterroles.rbac.authorization.k8s.io \"x\" is forbidden: must have cluster-admin privileges to use the aggregationRule"
        );
        // removing an aggregation rule needs it too
        let err =
            check_role_write(&deny_all, &a, &u(), "clusterroles", "", &pods_role(&["get"]), Some(&obj)).unwrap_err();
        assert!(err.message.ends_with("must have cluster-admin privileges to use the aggregationRule"));
        // a cluster admin may
        a.apply("clusterroles", &cluster_role("admin", json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}, {"verbs": ["*"], "nonResourceURLs": ["*"]}])), false);
        a.apply("clusterrolebindings", &cluster_binding("admins", "admin", &["User:boss"]), false);
        check_role_write(&deny_all, &a, &user("boss", &[]), "clusterroles", "", &obj, None).unwrap();
    }

    #[test]
    fn gc_only_updates_pass() {
        let a = cluster();
        let old = pods_role(&["delete"]);
        let mut new = old.clone();
        new["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
        new["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "1"}]);
        check_role_write(&deny_all, &a, &u(), "clusterroles", "", &new, Some(&old)).unwrap();
        new["rules"][0]["verbs"] = json!(["delete", "create"]);
        assert_eq!(check_role_write(&deny_all, &a, &u(), "clusterroles", "", &new, Some(&old)).unwrap_err().code, 403);
    }

    #[test]
    fn bindings_need_bind_or_the_roles_rules() {
        let a = cluster();
        a.apply(
            "clusterroles",
            &cluster_role("deleter", json!([{"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]}])),
            false,
        );
        // holds the role's rules cluster-wide
        let ok = cluster_binding("b", "pod-reader", &["User:v"]);
        check_binding_write(&deny_all, &a, &u(), "clusterrolebindings", "", &ok, None).unwrap();
        // holds them in namespace mine only
        let rb = binding("mine", "b", "ClusterRole", "deleter", &["User:v"]);
        check_binding_write(&deny_all, &a, &u(), "rolebindings", "mine", &rb, None).unwrap();

        let crb = cluster_binding("b", "deleter", &["User:v"]);
        let err = check_binding_write(&deny_all, &a, &u(), "clusterrolebindings", "", &crb, None).unwrap_err();
        assert_eq!(
            err.message,
            "clusterrolebindings.rbac.authorization.k8s.io \"b\" is forbidden: user \"u\" (groups=[\"system:authenticated\"]) \
             is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}"
        );
        let rb = binding("theirs", "b", "ClusterRole", "deleter", &["User:v"]);
        let err = check_binding_write(&deny_all, &a, &u(), "rolebindings", "theirs", &rb, None).unwrap_err();
        assert!(err.message.starts_with("rolebindings.rbac.authorization.k8s.io \"b\" is forbidden: user \"u\""));

        // the bind verb on that role, in that namespace
        let bind_deleter_in_theirs = |at: &Attributes| {
            at.verb == "bind"
                && at.resource == "clusterroles"
                && at.name == "deleter"
                && at.namespace == "theirs"
                && at.api_group == GROUP
                && at.api_version == "*"
        };
        check_binding_write(&bind_deleter_in_theirs, &a, &u(), "rolebindings", "theirs", &rb, None).unwrap();
        assert!(check_binding_write(&bind_deleter_in_theirs, &a, &u(), "clusterrolebindings", "", &crb, None).is_err());

        check_binding_write(&deny_all, &a, &user("root", &[MASTERS]), "clusterrolebindings", "", &crb, None).unwrap();
    }

    #[test]
    fn bindings_to_missing_or_odd_roles() {
        let a = cluster();
        let crb = cluster_binding("b", "nope", &["User:v"]);
        let err = check_binding_write(&deny_all, &a, &u(), "clusterrolebindings", "", &crb, None).unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (404, "clusterroles.rbac.authorization.k8s.io \"nope\" not found")
        );
        let rb = binding("mine", "b", "Role", "nope", &["User:v"]);
        let err = check_binding_write(&deny_all, &a, &u(), "rolebindings", "mine", &rb, None).unwrap_err();
        assert_eq!((err.code, err.message.as_str()), (404, "roles.rbac.authorization.k8s.io \"nope\" not found"));
        let odd = binding("mine", "b", "Widget", "w", &["User:v"]);
        let err = check_binding_write(&deny_all, &a, &u(), "rolebindings", "mine", &odd, None).unwrap_err();
        assert_eq!(err.code, 500);
        assert!(err.message.ends_with("unsupported role reference kind: \"Widget\""));
        let err = check_binding_write(&deny_all, &a, &u(), "rolebindings", "", &rb, None).unwrap_err();
        assert_eq!((err.code, err.message.as_str()), (400, "namespace is required"));
    }
}
