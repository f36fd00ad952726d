//! The RBAC bootstrap policy, as upstream's `plugin/pkg/auth/authorizer/rbac/bootstrappolicy` (`policy.go`,
//! `controller_policy.go`, `namespace_policy.go`): the default ClusterRoles (including every
//! `system:controller:*` role), ClusterRoleBindings, and the kube-system / kube-public Roles and RoleBindings the
//! apiserver reconciles at start. The objects are read from `bootstrappolicy.txt`, a compact transcription of
//! upstream's golden files; every object is labelled `kubernetes.io/bootstrapping: rbac-defaults` and annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "true"`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use super::rbac::reconciliation::AUTOUPDATE_ANNOTATION;

const API_VERSION: &str = "rbac.authorization.k8s.io/v1";
const GROUP: &str = "rbac.authorization.k8s.io";
const CONTROLLER_PREFIX: &str = "system:controller:";

static DATA: &str = include_str!("bootstrappolicy.txt");

#[derive(Debug, Default)]
struct Policy {
    cluster_roles: Vec<Value>,
    cluster_role_bindings: Vec<Value>,
    roles: Vec<(String, Value)>,
    role_bindings: Vec<(String, Value)>,
}

/// One object of the data file being read.
struct Pending {
    kind: &'static str,
    namespace: String,
    name: String,
    role_ref: Option<(String, String)>,
    labels: BTreeMap<String, String>,
    selectors: Vec<Value>,
    rules: Vec<Value>,
    subjects: Vec<Value>,
}

fn list(field: &str) -> Vec<String> {
    field.split(',').map(|s| if s == "\"\"" { String::new() } else { s.to_string() }).collect()
}

fn resource_rule(verbs: &str, groups: &str, resources: &str, names: Option<&str>) -> Value {
    let mut r = Map::new();
    r.insert("verbs".into(), json!(list(verbs)));
    r.insert("apiGroups".into(), json!(list(groups)));
    r.insert("resources".into(), json!(list(resources)));
    if let Some(names) = names {
        r.insert("resourceNames".into(), json!(list(names)));
    }
    Value::Object(r)
}

fn metadata(name: &str, namespace: &str, extra_labels: &BTreeMap<String, String>) -> Value {
    let mut labels = extra_labels.clone();
    labels.insert("kubernetes.io/bootstrapping".into(), "rbac-defaults".into());
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    if !namespace.is_empty() {
        m.insert("namespace".into(), json!(namespace));
    }
    m.insert("labels".into(), json!(labels));
    m.insert("annotations".into(), json!({AUTOUPDATE_ANNOTATION: "true"}));
    Value::Object(m)
}

fn binding(kind: &str, name: &str, namespace: &str, role_kind: &str, role_name: &str, subjects: Vec<Value>) -> Value {
    let mut b = Map::new();
    b.insert("kind".into(), json!(kind));
    b.insert("apiVersion".into(), json!(API_VERSION));
    b.insert("metadata".into(), metadata(name, namespace, &BTreeMap::new()));
    if !subjects.is_empty() {
        b.insert("subjects".into(), Value::Array(subjects));
    }
    b.insert("roleRef".into(), json!({"apiGroup": GROUP, "kind": role_kind, "name": role_name}));
    Value::Object(b)
}

impl Pending {
    fn finish(self, policy: &mut Policy) {
        match self.kind {
            "ClusterRole" | "Role" => {
                let mut r = Map::new();
                r.insert("kind".into(), json!(self.kind));
                r.insert("apiVersion".into(), json!(API_VERSION));
                r.insert("metadata".into(), metadata(&self.name, &self.namespace, &self.labels));
                if self.selectors.is_empty() {
                    r.insert("rules".into(), Value::Array(self.rules));
                } else {
                    r.insert("aggregationRule".into(), json!({"clusterRoleSelectors": self.selectors}));
                }
                if self.kind == "Role" {
                    policy.roles.push((self.namespace, Value::Object(r)));
                } else {
                    policy.cluster_roles.push(Value::Object(r));
                }
            }
            _ => {
                let (role_kind, role_name) = self.role_ref.unwrap_or_default();
                let b = binding(self.kind, &self.name, &self.namespace, &role_kind, &role_name, self.subjects);
                if self.kind == "RoleBinding" {
                    policy.role_bindings.push((self.namespace, b));
                } else {
                    policy.cluster_role_bindings.push(b);
                }
            }
        }
    }
}

fn unreadable(i: usize, line: &str) -> ! {
    panic!("bootstrappolicy.txt:{}: cannot read {line:?}", i + 1)
}

fn parse(data: &str) -> Policy {
    let mut policy = Policy::default();
    let mut pending: Option<Pending> = None;
    for (i, line) in data.lines().enumerate() {
        let bad = || -> ! { unreadable(i, line) };
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = trimmed.split_whitespace().collect();
        if !line.starts_with(char::is_whitespace) {
            if let Some(p) = pending.take() {
                p.finish(&mut policy);
            }
            let role_ref = |s: &str| s.split_once(':').map(|(k, n)| (k.to_string(), n.to_string()));
            let (kind, namespace, name, role_ref) = match f.as_slice() {
                ["ClusterRole", name] => ("ClusterRole", "", *name, None),
                ["Role", ns, name] => ("Role", *ns, *name, None),
                ["ClusterRoleBinding", name, r] => ("ClusterRoleBinding", "", *name, role_ref(r)),
                ["RoleBinding", ns, name, r] => ("RoleBinding", *ns, *name, role_ref(r)),
                _ => bad(),
            };
            pending = Some(Pending {
                kind,
                namespace: namespace.into(),
                name: name.into(),
                role_ref,
                labels: BTreeMap::new(),
                selectors: Vec::new(),
                rules: Vec::new(),
                subjects: Vec::new(),
            });
            continue;
        }
        let Some(p) = pending.as_mut() else { bad() };
        match f.as_slice() {
            ["r", verbs, groups, resources] => p.rules.push(resource_rule(verbs, groups, resources, None)),
            ["r", verbs, groups, resources, names] => {
                p.rules.push(resource_rule(verbs, groups, resources, Some(names)))
            }
            ["u", verbs, urls] => p.rules.push(json!({"verbs": list(verbs), "nonResourceURLs": list(urls)})),
            ["E"] => p.rules.push(resource_rule("create,patch,update", "\"\",events.k8s.io", "events", None)),
            ["l", kv] => {
                let (k, v) = kv.split_once('=').unwrap_or_else(|| bad());
                p.labels.insert(k.into(), v.into());
            }
            ["a", kv] => {
                let (k, v) = kv.split_once('=').unwrap_or_else(|| bad());
                p.selectors.push(json!({"matchLabels": {k: v}}));
            }
            ["s", "ServiceAccount", ns_name] => {
                let (ns, name) = ns_name.split_once('/').unwrap_or_else(|| bad());
                p.subjects.push(json!({"kind": "ServiceAccount", "name": name, "namespace": ns}));
            }
            ["s", kind @ ("User" | "Group"), name] => {
                p.subjects.push(json!({"kind": kind, "apiGroup": GROUP, "name": name}));
            }
            _ => bad(),
        }
    }
    if let Some(p) = pending.take() {
        p.finish(&mut policy);
    }
    // controller_policy.go binds each controller role to the controller's service account in kube-system
    let controller_bindings: Vec<Value> = policy
        .cluster_roles
        .iter()
        .filter_map(|r| r["metadata"]["name"].as_str())
        .filter_map(|name| name.strip_prefix(CONTROLLER_PREFIX).map(|sa| (name, sa)))
        .map(|(name, sa)| {
            let subject = json!({"kind": "ServiceAccount", "name": sa, "namespace": "kube-system"});
            binding("ClusterRoleBinding", name, "", "ClusterRole", name, vec![subject])
        })
        .collect();
    policy.cluster_role_bindings.extend(controller_bindings);
    policy
}

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| parse(DATA))
}

/// Every bootstrap ClusterRole: upstream's `ClusterRoles()` and `ControllerRoles()`.
pub fn cluster_roles() -> Vec<Value> {
    policy().cluster_roles.clone()
}

/// Every bootstrap ClusterRoleBinding: upstream's `ClusterRoleBindings()` and `ControllerRoleBindings()`.
pub fn cluster_role_bindings() -> Vec<Value> {
    policy().cluster_role_bindings.clone()
}

/// The bootstrap Roles with their namespaces (`NamespaceRoles()`).
pub fn namespace_roles() -> Vec<(String, Value)> {
    policy().roles.clone()
}

/// The bootstrap RoleBindings with their namespaces (`NamespaceRoleBindings()`).
pub fn namespace_role_bindings() -> Vec<(String, Value)> {
    policy().role_bindings.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::UserInfo;
    use crate::authorization::rbac::RbacAuthorizer;
    use crate::authorization::rbac::rule::{PolicyRule, rules_allow};
    use crate::authorization::{Attributes, Authorizer, Decision};

    /// The names in upstream's testdata/cluster-roles.yaml (default feature gates of 1.33).
    const CLUSTER_ROLES: &[&str] = &[
        "admin",
        "cluster-admin",
        "edit",
        "system:aggregate-to-admin",
        "system:aggregate-to-edit",
        "system:aggregate-to-view",
        "system:auth-delegator",
        "system:basic-user",
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        "system:certificates.k8s.io:kube-apiserver-client-approver",
        "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
        "system:certificates.k8s.io:kubelet-serving-approver",
        "system:certificates.k8s.io:legacy-unknown-approver",
        "system:discovery",
        "system:heapster",
        "system:kube-aggregator",
        "system:kube-controller-manager",
        "system:kube-dns",
        "system:kube-scheduler",
        "system:kubelet-api-admin",
        "system:monitoring",
        "system:node",
        "system:node-bootstrapper",
        "system:node-problem-detector",
        "system:node-proxier",
        "system:persistent-volume-provisioner",
        "system:public-info-viewer",
        "system:service-account-issuer-discovery",
        "system:volume-scheduler",
        "view",
    ];

    /// testdata/cluster-role-bindings.yaml.
    const CLUSTER_ROLE_BINDINGS: &[&str] = &[
        "cluster-admin",
        "system:basic-user",
        "system:discovery",
        "system:kube-controller-manager",
        "system:kube-dns",
        "system:kube-scheduler",
        "system:monitoring",
        "system:node",
        "system:node-proxier",
        "system:public-info-viewer",
        "system:service-account-issuer-discovery",
        "system:volume-scheduler",
    ];

    /// testdata/controller-roles.yaml (and, one each, controller-role-bindings.yaml).
    const CONTROLLERS: &[&str] = &[
        "attachdetach-controller",
        "certificate-controller",
        "clusterrole-aggregation-controller",
        "cronjob-controller",
        "daemon-set-controller",
        "deployment-controller",
        "disruption-controller",
        "endpoint-controller",
        "endpointslice-controller",
        "endpointslicemirroring-controller",
        "ephemeral-volume-controller",
        "expand-controller",
        "generic-garbage-collector",
        "horizontal-pod-autoscaler",
        "job-controller",
        "legacy-service-account-token-cleaner",
        "namespace-controller",
        "node-controller",
        "persistent-volume-binder",
        "pod-garbage-collector",
        "pv-protection-controller",
        "pvc-protection-controller",
        "replicaset-controller",
        "replication-controller",
        "resourcequota-controller",
        "root-ca-cert-publisher",
        "route-controller",
        "selinux-warning-controller",
        "service-account-controller",
        "service-cidrs-controller",
        "service-controller",
        "statefulset-controller",
        "ttl-after-finished-controller",
        "ttl-controller",
        "validatingadmissionpolicy-status-controller",
    ];

    /// testdata/namespace-roles.yaml.
    const NAMESPACE_ROLES: &[(&str, &str)] = &[
        ("kube-public", "system:controller:bootstrap-signer"),
        ("kube-system", "extension-apiserver-authentication-reader"),
        ("kube-system", "system::leader-locking-kube-controller-manager"),
        ("kube-system", "system::leader-locking-kube-scheduler"),
        ("kube-system", "system:controller:bootstrap-signer"),
        ("kube-system", "system:controller:cloud-provider"),
        ("kube-system", "system:controller:token-cleaner"),
    ];

    /// testdata/namespace-role-bindings.yaml.
    const NAMESPACE_ROLE_BINDINGS: &[(&str, &str)] = &[
        ("kube-public", "system:controller:bootstrap-signer"),
        ("kube-system", "system::extension-apiserver-authentication-reader"),
        ("kube-system", "system::leader-locking-kube-controller-manager"),
        ("kube-system", "system::leader-locking-kube-scheduler"),
        ("kube-system", "system:controller:bootstrap-signer"),
        ("kube-system", "system:controller:cloud-provider"),
        ("kube-system", "system:controller:token-cleaner"),
    ];

    fn name(v: &Value) -> String {
        v["metadata"]["name"].as_str().unwrap().to_string()
    }

    fn names(objs: &[Value], controllers: bool) -> Vec<String> {
        let mut n: Vec<String> =
            objs.iter().map(name).filter(|n| n.starts_with(CONTROLLER_PREFIX) == controllers).collect();
        n.sort();
        n
    }

    fn find(objs: &[Value], n: &str) -> Value {
        objs.iter().find(|o| name(o) == n).unwrap_or_else(|| panic!("no {n}")).clone()
    }

    #[test]
    fn names_match_upstreams_golden_files() {
        let roles = cluster_roles();
        let bindings = cluster_role_bindings();
        assert_eq!(names(&roles, false), CLUSTER_ROLES);
        assert_eq!(names(&bindings, false), CLUSTER_ROLE_BINDINGS);
        let controllers: Vec<String> = CONTROLLERS.iter().map(|c| format!("{CONTROLLER_PREFIX}{c}")).collect();
        assert_eq!(names(&roles, true), controllers);
        assert_eq!(names(&bindings, true), controllers);
        assert_eq!(roles.len(), 31 + 35);
        assert_eq!(bindings.len(), 12 + 35);
        let ns = |l: Vec<(String, Value)>| l.iter().map(|(ns, v)| (ns.clone(), name(v))).collect::<Vec<_>>();
        let want = |l: &[(&str, &str)]| l.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        assert_eq!(ns(namespace_roles()), want(NAMESPACE_ROLES));
        assert_eq!(ns(namespace_role_bindings()), want(NAMESPACE_ROLE_BINDINGS));
    }

    #[test]
    fn every_object_is_labelled_and_annotated() {
        let all = cluster_roles()
            .into_iter()
            .chain(cluster_role_bindings())
            .chain(namespace_roles().into_iter().map(|(_, v)| v))
            .chain(namespace_role_bindings().into_iter().map(|(_, v)| v));
        for obj in all {
            assert_eq!(obj["apiVersion"], API_VERSION);
            assert_eq!(obj["metadata"]["labels"]["kubernetes.io/bootstrapping"], "rbac-defaults", "{obj}");
            assert_eq!(obj["metadata"]["annotations"][AUTOUPDATE_ANNOTATION], "true", "{obj}");
        }
        for (ns, obj) in namespace_roles().into_iter().chain(namespace_role_bindings()) {
            assert_eq!(obj["metadata"]["namespace"], ns.as_str());
        }
    }

    #[test]
    fn bindings_refer_to_bootstrap_roles() {
        let roles = cluster_roles();
        for b in cluster_role_bindings() {
            find(&roles, b["roleRef"]["name"].as_str().unwrap());
        }
        let ns_roles = namespace_roles();
        for (ns, b) in namespace_role_bindings() {
            let r = b["roleRef"]["name"].as_str().unwrap();
            assert!(ns_roles.iter().any(|(n, v)| *n == ns && name(v) == r), "{ns}/{r}");
        }
        let gc = find(&cluster_role_bindings(), "system:controller:generic-garbage-collector");
        assert_eq!(
            gc["subjects"],
            json!([{"kind": "ServiceAccount", "name": "generic-garbage-collector", "namespace": "kube-system"}])
        );
        // the deprecated system:node binding keeps no subjects
        assert!(find(&cluster_role_bindings(), "system:node").get("subjects").is_none());
    }

    fn req(verb: &str, group: &str, resource: &str, sub: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            ..Default::default()
        }
    }

    fn rules_of(name: &str) -> Vec<PolicyRule> {
        PolicyRule::list_from(&find(&cluster_roles(), name))
    }

    #[test]
    fn role_contents() {
        let node = rules_of("system:node");
        assert!(rules_allow(&req("get", "", "secrets", ""), &node));
        assert!(!rules_allow(&req("create", "", "secrets", ""), &node));
        assert!(!rules_allow(&req("delete", "", "secrets", ""), &node));
        assert!(rules_allow(&req("create", "", "serviceaccounts", "token"), &node));
        assert!(rules_allow(&req("patch", "", "nodes", "status"), &node));

        // view, through its aggregated part, reads pods but no secrets; edit's part reads secrets
        let view = rules_of("system:aggregate-to-view");
        assert!(rules_allow(&req("get", "", "pods", ""), &view));
        assert!(!view.iter().any(|r| r.resources.iter().any(|res| res.contains("secrets") || res == "*")));
        assert!(rules_of("view").is_empty());
        assert_eq!(
            find(&cluster_roles(), "view")["aggregationRule"],
            json!({"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]})
        );
        let edit = rules_of("system:aggregate-to-edit");
        assert!(rules_allow(&req("get", "", "secrets", ""), &edit));
        assert!(!rules_allow(&req("create", "rbac.authorization.k8s.io", "roles", ""), &edit));
        assert!(rules_allow(
            &req("create", "rbac.authorization.k8s.io", "roles", ""),
            &rules_of("system:aggregate-to-admin")
        ));

        let admin = rules_of("cluster-admin");
        assert!(rules_allow(&req("escalate", "anything", "widgets", "status"), &admin));

        let disruption = rules_of("system:controller:disruption-controller");
        assert!(rules_allow(&req("get", "apps", "deployments", "scale"), &disruption));
        assert!(!rules_allow(&req("update", "apps", "deployments", "scale"), &disruption));
    }

    fn loaded() -> RbacAuthorizer {
        let a = RbacAuthorizer::new();
        a.reset("clusterroles", cluster_roles());
        a.reset("clusterrolebindings", cluster_role_bindings());
        a.reset("roles", namespace_roles().into_iter().map(|(_, v)| v).collect());
        a.reset("rolebindings", namespace_role_bindings().into_iter().map(|(_, v)| v).collect());
        a
    }

    fn who(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo { username: name.into(), groups: groups.iter().map(|g| g.to_string()).collect(), ..Default::default() }
    }

    fn decide(a: &RbacAuthorizer, u: &UserInfo, mut at: Attributes, ns: &str) -> Decision {
        at.user = u.clone();
        at.namespace = ns.into();
        a.authorize(&at).0
    }

    fn path(verb: &str, p: &str) -> Attributes {
        Attributes { verb: verb.into(), path: p.into(), ..Default::default() }
    }

    #[test]
    fn the_loaded_policy_authorizes_as_upstream() {
        let a = loaded();
        let anonymous = who("system:anonymous", &["system:unauthenticated"]);
        assert_eq!(decide(&a, &anonymous, path("get", "/healthz"), ""), Decision::Allow);
        assert_eq!(decide(&a, &anonymous, path("get", "/version"), ""), Decision::Allow);
        assert_eq!(decide(&a, &anonymous, path("get", "/apis"), ""), Decision::NoOpinion);

        let alice = who("alice", &["system:authenticated"]);
        assert_eq!(decide(&a, &alice, path("get", "/apis/apps/v1"), ""), Decision::Allow);
        assert_eq!(
            decide(&a, &alice, req("create", "authorization.k8s.io", "selfsubjectaccessreviews", ""), ""),
            Decision::Allow
        );
        assert_eq!(decide(&a, &alice, req("list", "", "pods", ""), "default"), Decision::NoOpinion);

        let root = who("root", &["system:masters", "system:authenticated"]);
        assert_eq!(
            a.authorize(&Attributes { user: root.clone(), ..req("delete", "", "nodes", "") }),
            (
                Decision::Allow,
                r#"RBAC: allowed by ClusterRoleBinding "cluster-admin" of ClusterRole "cluster-admin" to Group "system:masters""#
                    .to_string()
            )
        );

        let scheduler = who("system:kube-scheduler", &["system:authenticated"]);
        assert_eq!(decide(&a, &scheduler, req("create", "", "pods", "binding"), "ns1"), Decision::Allow);
        assert_eq!(
            decide(&a, &scheduler, req("update", "coordination.k8s.io", "leases", ""), "kube-system"),
            Decision::Allow
        );

        let gc = who(
            "system:serviceaccount:kube-system:generic-garbage-collector",
            &["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
        );
        assert_eq!(decide(&a, &gc, req("delete", "apps", "deployments", ""), "ns1"), Decision::Allow);
        assert_eq!(decide(&a, &gc, req("create", "apps", "deployments", ""), "ns1"), Decision::NoOpinion);

        let signer = who(
            "system:serviceaccount:kube-system:bootstrap-signer",
            &["system:serviceaccounts", "system:serviceaccounts:kube-system"],
        );
        let update_cluster_info = Attributes { name: "cluster-info".into(), ..req("update", "", "configmaps", "") };
        assert_eq!(decide(&a, &signer, update_cluster_info.clone(), "kube-public"), Decision::Allow);
        assert_eq!(decide(&a, &signer, update_cluster_info, "default"), Decision::NoOpinion);
    }
}
