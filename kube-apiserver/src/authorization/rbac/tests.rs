//! Tests of the RBAC authorizer, mirroring upstream's `plugin/pkg/auth/authorizer/rbac/rbac_test.go`.

use serde_json::{Value, json};

use super::*;

pub(super) fn cluster_role(name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules})
}

pub(super) fn role(ns: &str, name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name, "namespace": ns}, "rules": rules})
}

/// Subjects as upstream's tests write them: `User:alice`, `Group:admins`, `ServiceAccount:ns:name`.
pub(super) fn subjects(list: &[&str]) -> Value {
    Value::Array(
        list.iter()
            .map(|s| {
                if let Some((ns, name)) = s.strip_prefix("ServiceAccount:").and_then(|r| r.split_once(':')) {
                    return json!({"kind": "ServiceAccount", "namespace": ns, "name": name});
                }
                let (kind, name) = s.split_once(':').unwrap_or_else(|| panic!("bad subject {s}"));
                json!({"kind": kind, "apiGroup": GROUP, "name": name})
            })
            .collect(),
    )
}

pub(super) fn cluster_binding(name: &str, role: &str, subs: &[&str]) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role}, "subjects": subjects(subs)})
}

pub(super) fn binding(ns: &str, name: &str, kind: &str, role: &str, subs: &[&str]) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": GROUP, "kind": kind, "name": role}, "subjects": subjects(subs)})
}

pub(super) fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo { username: name.into(), groups: groups.iter().map(|g| g.to_string()).collect(), ..Default::default() }
}

pub(super) fn res(u: &UserInfo, verb: &str, resource: &str, sub: &str, ns: &str, name: &str) -> Attributes {
    Attributes {
        user: u.clone(),
        verb: verb.into(),
        resource_request: true,
        namespace: ns.into(),
        resource: resource.into(),
        subresource: sub.into(),
        name: name.into(),
        ..Default::default()
    }
}

fn url(u: &UserInfo, verb: &str, path: &str) -> Attributes {
    Attributes { user: u.clone(), verb: verb.into(), path: path.into(), ..Default::default() }
}

fn authz(objs: &[(&str, Value)]) -> RbacAuthorizer {
    let a = RbacAuthorizer::new();
    for (resource, obj) in objs {
        a.apply(resource, obj, false);
    }
    a
}

fn allowed(a: &RbacAuthorizer, attrs: &Attributes) -> bool {
    a.authorize(attrs).0 == Decision::Allow
}

#[test]
fn rolebinding_to_clusterrole_is_scoped_to_its_namespace() {
    let a = authz(&[
        ("clusterroles", cluster_role("admin", json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]))),
        ("rolebindings", binding("ns1", "admin", "ClusterRole", "admin", &["User:admin", "Group:admins"])),
    ]);
    let admin = user("admin", &[]);
    for attrs in [
        res(&admin, "get", "Pods", "", "ns1", ""),
        res(&admin, "watch", "Pods", "", "ns1", ""),
        res(&user("admin", &["group1"]), "watch", "Foobar", "", "ns1", ""),
        res(&user("joe", &["admins"]), "watch", "Foobar", "", "ns1", ""),
        res(&user("joe", &["group1", "admins"]), "watch", "Foobar", "", "ns1", ""),
    ] {
        assert!(allowed(&a, &attrs), "{attrs:?}");
    }
    for attrs in [
        res(&admin, "GET", "Pods", "", "ns2", ""),
        res(&admin, "GET", "Nodes", "", "", ""),
        res(&user("admin", &["admins"]), "GET", "Pods", "", "ns2", ""),
        res(&user("admin", &["admins"]), "GET", "Nodes", "", "", ""),
        res(&admin, "get", "pods", "", "ns2", ""),
        res(&admin, "get", "pods", "", "", ""),
    ] {
        assert_eq!(a.authorize(&attrs), (Decision::NoOpinion, String::new()), "{attrs:?}");
    }
}

#[test]
fn non_resource_urls() {
    let a = authz(&[
        (
            "clusterroles",
            cluster_role("non-resource-url-getter", json!([{"verbs": ["get"], "nonResourceURLs": ["/apis"]}])),
        ),
        ("clusterroles", cluster_role("non-resource-url", json!([{"verbs": ["*"], "nonResourceURLs": ["/apis"]}]))),
        (
            "clusterroles",
            cluster_role("non-resource-url-prefix", json!([{"verbs": ["get"], "nonResourceURLs": ["/apis/*"]}])),
        ),
        (
            "clusterrolebindings",
            cluster_binding("non-resource-url-getter", "non-resource-url-getter", &["User:foo", "Group:bar"]),
        ),
        (
            "clusterrolebindings",
            cluster_binding("non-resource-url", "non-resource-url", &["User:admin", "Group:admin"]),
        ),
        (
            "clusterrolebindings",
            cluster_binding("non-resource-url-prefix", "non-resource-url-prefix", &["User:prefixed", "Group:prefixed"]),
        ),
    ]);
    let (foo, bar) = (user("foo", &[]), user("", &["bar"]));
    let (admin, admin_g) = (user("admin", &[]), user("", &["admin"]));
    let (prefixed, prefixed_g) = (user("prefixed", &[]), user("", &["prefixed"]));
    for attrs in [
        url(&foo, "get", "/apis"),
        url(&bar, "get", "/apis"),
        url(&admin, "get", "/apis"),
        url(&admin_g, "get", "/apis"),
        url(&admin, "watch", "/apis"),
        url(&admin_g, "watch", "/apis"),
        url(&prefixed, "get", "/apis/v1"),
        url(&prefixed_g, "get", "/apis/v1"),
        url(&prefixed, "get", "/apis/v1/foobar"),
        url(&prefixed_g, "get", "/apis/v1/foorbar"),
    ] {
        assert!(allowed(&a, &attrs), "{attrs:?}");
    }
    for attrs in [
        url(&foo, "watch", "/apis"),
        url(&bar, "watch", "/apis"),
        url(&foo, "get", "/api/v1"),
        url(&bar, "get", "/api/v1"),
        url(&admin, "get", "/api/v1"),
        url(&admin_g, "get", "/api/v1"),
        url(&prefixed, "get", "/api/v1"),
        url(&prefixed_g, "get", "/api/v1"),
    ] {
        assert!(!allowed(&a, &attrs), "{attrs:?}");
    }
}

#[test]
fn subresources() {
    let a = authz(&[
        ("clusterroles", cluster_role("admin", json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["pods"]}]))),
        ("rolebindings", binding("ns1", "admin", "ClusterRole", "admin", &["User:admin", "Group:admins"])),
    ]);
    let admin = user("admin", &[]);
    assert!(allowed(&a, &res(&admin, "get", "pods", "", "ns1", "")));
    assert!(!allowed(&a, &res(&admin, "get", "pods", "status", "ns1", "")));

    a.apply(
        "clusterroles",
        &cluster_role(
            "admin",
            json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["pods/status"]},
                   {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*/scale"]}]),
        ),
        false,
    );
    for (r, sub) in [("pods", "status"), ("pods", "scale"), ("deployments", "scale"), ("anything", "scale")] {
        assert!(allowed(&a, &res(&admin, "get", r, sub, "ns1", "")), "{r}/{sub}");
    }
    assert!(!allowed(&a, &res(&admin, "get", "pods", "", "ns1", "")));
}

#[test]
fn allow_reasons_name_binding_role_and_first_matching_subject() {
    let a = authz(&[
        ("clusterroles", cluster_role("y", json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]))),
        ("roles", role("ns1", "r", json!([{"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}]))),
        ("clusterrolebindings", cluster_binding("x", "y", &["Group:other", "User:z", "Group:devs"])),
        ("rolebindings", binding("ns1", "rb", "Role", "r", &["ServiceAccount:ns1:sa"])),
    ]);
    let z = user("z", &["devs"]);
    assert_eq!(
        a.authorize(&res(&z, "get", "pods", "", "ns1", "")),
        (Decision::Allow, r#"RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "y" to User "z""#.to_string())
    );
    let sa = user("system:serviceaccount:ns1:sa", &["system:serviceaccounts", "system:serviceaccounts:ns1"]);
    assert_eq!(
        a.authorize(&res(&sa, "list", "pods", "", "ns1", "")),
        (
            Decision::Allow,
            r#"RBAC: allowed by RoleBinding "rb/ns1" of Role "r" to ServiceAccount "sa/ns1""#.to_string()
        )
    );
    // the Role only counts in its own namespace
    assert!(!allowed(&a, &res(&sa, "list", "pods", "", "ns2", "")));
}

#[test]
fn service_account_subjects_and_groups() {
    let a = authz(&[
        (
            "clusterroles",
            cluster_role("reader", json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}])),
        ),
        // a ServiceAccount subject without a namespace takes the RoleBinding's
        ("rolebindings", binding("ns1", "local-sa", "ClusterRole", "reader", &[])),
        (
            "rolebindings",
            binding("ns2", "all-sas-of-ns2", "ClusterRole", "reader", &["Group:system:serviceaccounts:ns2"]),
        ),
        ("clusterrolebindings", cluster_binding("all-sas", "reader", &["Group:system:serviceaccounts"])),
    ]);
    a.apply(
        "rolebindings",
        &json!({"metadata": {"name": "local-sa", "namespace": "ns1"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "builder"}]}),
        false,
    );
    let builder = user("system:serviceaccount:ns1:builder", &[]);
    assert!(allowed(&a, &res(&builder, "get", "configmaps", "", "ns1", "")));
    assert!(!allowed(&a, &res(&builder, "get", "configmaps", "", "ns3", "")));
    assert!(!allowed(&a, &res(&user("system:serviceaccount:ns2:builder", &[]), "get", "configmaps", "", "ns1", "")));

    let ns2_sa = user("system:serviceaccount:ns2:x", &["system:serviceaccounts:ns2"]);
    assert!(allowed(&a, &res(&ns2_sa, "get", "configmaps", "", "ns2", "")));
    assert!(!allowed(&a, &res(&ns2_sa, "get", "configmaps", "", "ns1", "")));

    let any_sa = user("system:serviceaccount:ns9:y", &["system:serviceaccounts", "system:serviceaccounts:ns9"]);
    assert_eq!(
        a.authorize(&res(&any_sa, "get", "configmaps", "", "", "")),
        (
            Decision::Allow,
            r#"RBAC: allowed by ClusterRoleBinding "all-sas" of ClusterRole "reader" to Group "system:serviceaccounts""#
                .to_string()
        )
    );

    // a ServiceAccount subject of a ClusterRoleBinding needs a namespace
    a.apply(
        "clusterrolebindings",
        &json!({"metadata": {"name": "no-ns"}, "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "lost"}]}),
        false,
    );
    assert!(!allowed(&a, &res(&user("system:serviceaccount::lost", &[]), "get", "configmaps", "", "", "")));
    // a user named like a service account matches a ServiceAccount subject, as upstream compares user names
    a.apply("clusterrolebindings", &cluster_binding("sa-kube", "reader", &["ServiceAccount:kube-system:dns"]), false);
    assert_eq!(
        a.authorize(&res(&user("system:serviceaccount:kube-system:dns", &[]), "get", "configmaps", "", "", "")).1,
        r#"RBAC: allowed by ClusterRoleBinding "sa-kube" of ClusterRole "reader" to ServiceAccount "dns/kube-system""#
    );
}

#[test]
fn bindings_to_missing_roles_are_ignored_and_reported() {
    let a = authz(&[
        ("clusterrolebindings", cluster_binding("b1", "missing", &["User:u"])),
        ("rolebindings", binding("ns1", "b2", "Role", "gone", &["User:u"])),
        ("clusterroles", cluster_role("ok", json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]))),
        ("clusterrolebindings", cluster_binding("b3", "ok", &["User:u"])),
    ]);
    let u = user("u", &[]);
    assert_eq!(a.authorize(&res(&u, "get", "pods", "", "ns1", "")).0, Decision::Allow);
    assert_eq!(
        a.authorize(&res(&u, "list", "pods", "", "", "")),
        (Decision::NoOpinion, r#"RBAC: clusterrole.rbac.authorization.k8s.io "missing" not found"#.to_string())
    );
    assert_eq!(
        a.authorize(&res(&u, "list", "pods", "", "ns1", "")),
        (
            Decision::NoOpinion,
            r#"RBAC: [clusterrole.rbac.authorization.k8s.io "missing" not found, role.rbac.authorization.k8s.io "gone" not found]"#
                .to_string()
        )
    );
    // the role appears later: the binding now grants
    a.apply(
        "roles",
        &role("ns1", "gone", json!([{"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}])),
        false,
    );
    assert_eq!(a.authorize(&res(&u, "list", "pods", "", "ns1", "")).0, Decision::Allow);
}

#[test]
fn updates_deletes_and_relists() {
    let a = authz(&[
        ("clusterroles", cluster_role("r", json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]))),
        ("clusterrolebindings", cluster_binding("b", "r", &["User:alice"])),
    ]);
    let (alice, bob) = (user("alice", &[]), user("bob", &[]));
    assert!(allowed(&a, &res(&alice, "get", "pods", "", "", "")));
    // the binding moves from alice to bob
    a.apply("clusterrolebindings", &cluster_binding("b", "r", &["User:bob"]), false);
    assert!(!allowed(&a, &res(&alice, "get", "pods", "", "", "")));
    assert!(allowed(&a, &res(&bob, "get", "pods", "", "", "")));
    // the role loses the verb
    a.apply(
        "clusterroles",
        &cluster_role("r", json!([{"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}])),
        false,
    );
    assert!(!allowed(&a, &res(&bob, "get", "pods", "", "", "")));
    assert!(allowed(&a, &res(&bob, "list", "pods", "", "", "")));
    // deleted
    a.apply("clusterrolebindings", &cluster_binding("b", "r", &["User:bob"]), true);
    assert!(!allowed(&a, &res(&bob, "list", "pods", "", "", "")));
    // relist brings it back for alice only
    a.reset("clusterrolebindings", vec![cluster_binding("b2", "r", &["User:alice"])]);
    assert!(allowed(&a, &res(&alice, "list", "pods", "", "", "")));
    assert!(!allowed(&a, &res(&bob, "list", "pods", "", "", "")));
    a.reset("clusterroles", vec![]);
    assert!(!allowed(&a, &res(&alice, "list", "pods", "", "", "")));

    // namespaced bindings: deleting the last one of a namespace drops its index
    a.apply(
        "clusterroles",
        &cluster_role("r", json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}])),
        false,
    );
    a.apply("rolebindings", &binding("ns1", "rb", "ClusterRole", "r", &["User:carol"]), false);
    assert!(allowed(&a, &res(&user("carol", &[]), "get", "pods", "", "ns1", "")));
    a.apply("rolebindings", &binding("ns1", "rb", "ClusterRole", "r", &["User:carol"]), true);
    assert!(!allowed(&a, &res(&user("carol", &[]), "get", "pods", "", "ns1", "")));
    assert!(a.read().namespace_index.is_empty() && a.read().role_bindings.is_empty());
}

#[test]
fn rules_for_lists_cluster_and_namespace_rules() {
    let a = authz(&[
        ("clusterroles", cluster_role("c", json!([{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]))),
        (
            "roles",
            role(
                "ns1",
                "r",
                json!([{"verbs": ["list"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["p"]}]),
            ),
        ),
        ("clusterrolebindings", cluster_binding("c", "c", &["Group:system:authenticated"])),
        ("rolebindings", binding("ns1", "r", "Role", "r", &["User:u"])),
    ]);
    let u = user("u", &["system:authenticated"]);
    let (resource_rules, non_resource_rules, incomplete) = a.rules_for(&u, "ns1");
    assert!(!incomplete);
    assert_eq!(
        resource_rules,
        vec![ResourceRule {
            verbs: vec!["list".into()],
            api_groups: vec!["".into()],
            resources: vec!["pods".into()],
            resource_names: vec!["p".into()],
        }]
    );
    assert_eq!(
        non_resource_rules,
        vec![NonResourceRule { verbs: vec!["get".into()], non_resource_urls: vec!["/healthz".into()] }]
    );
    let (resource_rules, non_resource_rules, _) = a.rules_for(&u, "ns2");
    assert!(resource_rules.is_empty());
    assert_eq!(non_resource_rules.len(), 1);
}
