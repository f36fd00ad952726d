//! The RBAC authorizer, as upstream's `plugin/pkg/auth/authorizer/rbac` over `pkg/registry/rbac/validation`'s
//! `DefaultRuleResolver`: an in-memory snapshot of Roles, ClusterRoles, RoleBindings and ClusterRoleBindings, fed
//! from storage watches through [`RbacAuthorizer::apply`] and [`RbacAuthorizer::reset`], with the bindings
//! indexed by subject (user name, group, service account user name) so that a decision is a few hash lookups and
//! the scan of the rules of the roles bound to the requester. RBAC only ever allows or has no opinion.

pub mod escalation;
pub mod reconciliation;
pub mod rule;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use serde_json::Value;

use crate::auth::UserInfo;
use crate::authorization::{Attributes, Authorizer, Decision, NonResourceRule, ResourceRule};
pub use rule::PolicyRule;

/// The API group of the RBAC objects.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// A binding's `roleRef`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleRef {
    pub api_group: String,
    pub kind: String,
    pub name: String,
}

impl RoleRef {
    pub fn from_value(v: &Value) -> RoleRef {
        let s = |f: &str| v.get(f).and_then(Value::as_str).unwrap_or_default().to_string();
        RoleRef { api_group: s("apiGroup"), kind: s("kind"), name: s("name") }
    }
}

/// One of a binding's `subjects`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub kind: String,
    pub api_group: String,
    pub name: String,
    pub namespace: String,
}

impl Subject {
    pub fn from_value(v: &Value) -> Subject {
        let s = |f: &str| v.get(f).and_then(Value::as_str).unwrap_or_default().to_string();
        Subject { kind: s("kind"), api_group: s("apiGroup"), name: s("name"), namespace: s("namespace") }
    }

    /// The user name this subject grants to, for `User` and `ServiceAccount` subjects (a service account without a
    /// namespace takes the binding's, and grants nothing in a ClusterRoleBinding).
    fn user_name(&self, binding_namespace: &str) -> Option<String> {
        match self.kind.as_str() {
            "User" => Some(self.name.clone()),
            "ServiceAccount" => {
                let ns = if self.namespace.is_empty() { binding_namespace } else { &self.namespace };
                (!ns.is_empty()).then(|| service_account_username(ns, &self.name))
            }
            _ => None,
        }
    }

    /// Upstream's `appliesToUser`.
    fn applies_to(&self, user: &UserInfo, binding_namespace: &str) -> bool {
        match self.kind.as_str() {
            "User" => user.username == self.name,
            "Group" => user.groups.contains(&self.name),
            "ServiceAccount" => {
                let ns = if self.namespace.is_empty() { binding_namespace } else { &self.namespace };
                !ns.is_empty() && matches_service_account(&user.username, ns, &self.name)
            }
            _ => false,
        }
    }

    /// Upstream's `describeSubject`.
    fn describe(&self, binding_namespace: &str) -> String {
        if self.kind == "ServiceAccount" {
            let ns = if self.namespace.is_empty() { binding_namespace } else { &self.namespace };
            format!("{} {}", self.kind, rule::go_quote(&format!("{}/{}", self.name, ns)))
        } else {
            format!("{} {}", self.kind, rule::go_quote(&self.name))
        }
    }
}

/// `system:serviceaccount:<namespace>:<name>`.
pub fn service_account_username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

fn matches_service_account(username: &str, namespace: &str, name: &str) -> bool {
    username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.strip_prefix(namespace))
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some_and(|rest| rest == name)
}

/// A RoleBinding (namespace set) or ClusterRoleBinding.
#[derive(Debug)]
struct Binding {
    name: String,
    namespace: String,
    role_ref: RoleRef,
    subjects: Vec<Subject>,
}

impl Binding {
    fn from_value(obj: &Value) -> Binding {
        let meta = |f: &str| obj["metadata"].get(f).and_then(Value::as_str).unwrap_or_default().to_string();
        Binding {
            name: meta("name"),
            namespace: meta("namespace"),
            role_ref: obj.get("roleRef").map(RoleRef::from_value).unwrap_or_default(),
            subjects: obj
                .get("subjects")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(Subject::from_value).collect())
                .unwrap_or_default(),
        }
    }

    /// Index keys of the subjects: user names (service accounts as their user name) and groups.
    fn keys(&self) -> Vec<(bool /*group*/, String)> {
        let mut keys: Vec<(bool, String)> = self
            .subjects
            .iter()
            .filter_map(|s| match s.kind.as_str() {
                "Group" => Some((true, s.name.clone())),
                _ => s.user_name(&self.namespace).map(|u| (false, u)),
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

/// Where a rule comes from, as upstream's `clusterRoleBindingDescriber` / `roleBindingDescriber`.
struct RuleSource<'a> {
    binding: &'a Binding,
    subject: &'a Subject,
}

impl fmt::Display for RuleSource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.binding;
        if b.namespace.is_empty() {
            write!(
                f,
                "ClusterRoleBinding {} of {} {} to {}",
                rule::go_quote(&b.name),
                b.role_ref.kind,
                rule::go_quote(&b.role_ref.name),
                self.subject.describe("")
            )
        } else {
            write!(
                f,
                "RoleBinding {} of {} {} to {}",
                rule::go_quote(&format!("{}/{}", b.name, b.namespace)),
                b.role_ref.kind,
                rule::go_quote(&b.role_ref.name),
                self.subject.describe(&b.namespace)
            )
        }
    }
}

/// How a missing role is reported: the authorizer reads informer listers upstream (`clusterrole.rbac...`), the
/// registry's escalation checks read storage (`clusterroles.rbac...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    Lister,
    Registry,
}

/// A role reference that could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleRefError {
    NotFound { resource: &'static str, name: String },
    UnsupportedKind(String),
}

impl fmt::Display for RoleRefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoleRefError::NotFound { resource, name } => {
                write!(f, "{resource}.{GROUP} {} not found", rule::go_quote(name))
            }
            RoleRefError::UnsupportedKind(kind) => {
                write!(f, "unsupported role reference kind: {}", rule::go_quote(kind))
            }
        }
    }
}

/// Bindings of one scope (all ClusterRoleBindings, or the RoleBindings of one namespace) by subject, each list
/// sorted by binding name.
#[derive(Debug, Default)]
struct SubjectIndex {
    users: HashMap<String, Vec<Arc<Binding>>>,
    groups: HashMap<String, Vec<Arc<Binding>>>,
}

impl SubjectIndex {
    fn insert(&mut self, b: &Arc<Binding>) {
        for (group, key) in b.keys() {
            let list = if group { self.groups.entry(key).or_default() } else { self.users.entry(key).or_default() };
            let at = list.partition_point(|x| x.name < b.name);
            list.insert(at, b.clone());
        }
    }

    fn remove(&mut self, b: &Binding) {
        for (group, key) in b.keys() {
            let map = if group { &mut self.groups } else { &mut self.users };
            if let Some(list) = map.get_mut(&key) {
                list.retain(|x| x.name != b.name);
                if list.is_empty() {
                    map.remove(&key);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }

    /// The bindings naming `user` (by name, service account name or group), in binding-name order.
    fn candidates<'a>(&'a self, user: &UserInfo) -> Vec<&'a Arc<Binding>> {
        let mut out: Vec<&Arc<Binding>> = Vec::new();
        let mut lists = 0;
        if let Some(l) = self.users.get(&user.username) {
            out.extend(l);
            lists += 1;
        }
        for g in &user.groups {
            if let Some(l) = self.groups.get(g) {
                out.extend(l);
                lists += 1;
            }
        }
        if lists > 1 {
            out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
            out.dedup_by(|a, b| Arc::ptr_eq(a, b));
        }
        out
    }
}

#[derive(Debug, Default)]
struct State {
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    roles: HashMap<String, HashMap<String, Vec<PolicyRule>>>,
    cluster_role_bindings: HashMap<String, Arc<Binding>>,
    role_bindings: HashMap<String, HashMap<String, Arc<Binding>>>,
    cluster_index: SubjectIndex,
    namespace_index: HashMap<String, SubjectIndex>,
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"].get(field).and_then(Value::as_str).unwrap_or_default()
}

impl State {
    fn role_ref_rules(&self, r: &RoleRef, namespace: &str, style: ErrorStyle) -> Result<&[PolicyRule], RoleRefError> {
        let (found, resource) = match (r.kind.as_str(), style) {
            ("ClusterRole", s) => {
                (self.cluster_roles.get(&r.name), if s == ErrorStyle::Lister { "clusterrole" } else { "clusterroles" })
            }
            ("Role", s) => (
                self.roles.get(namespace).and_then(|m| m.get(&r.name)),
                if s == ErrorStyle::Lister { "role" } else { "roles" },
            ),
            (kind, _) => return Err(RoleRefError::UnsupportedKind(kind.to_string())),
        };
        found.map(Vec::as_slice).ok_or_else(|| RoleRefError::NotFound { resource, name: r.name.clone() })
    }

    /// Upstream's `VisitRulesFor`: the rules of ClusterRoleBindings, then of the RoleBindings of `namespace`, that
    /// apply to `user`; `visit` returns false to stop. Unresolvable role references are collected in `errors`.
    fn visit_rules_for(
        &self,
        user: &UserInfo,
        namespace: &str,
        style: ErrorStyle,
        errors: &mut Vec<String>,
        visit: &mut dyn FnMut(&RuleSource<'_>, &PolicyRule) -> bool,
    ) {
        let scopes =
            [Some(&self.cluster_index), if namespace.is_empty() { None } else { self.namespace_index.get(namespace) }];
        for index in scopes.into_iter().flatten() {
            for b in index.candidates(user) {
                let Some(subject) = b.subjects.iter().find(|s| s.applies_to(user, &b.namespace)) else {
                    continue;
                };
                match self.role_ref_rules(&b.role_ref, &b.namespace, style) {
                    Ok(rules) => {
                        let source = RuleSource { binding: b, subject };
                        for r in rules {
                            if !visit(&source, r) {
                                return;
                            }
                        }
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
        }
    }

    fn insert_binding(&mut self, b: Binding) {
        let b = Arc::new(b);
        if b.namespace.is_empty() {
            if let Some(old) = self.cluster_role_bindings.insert(b.name.clone(), b.clone()) {
                self.cluster_index.remove(&old);
            }
            self.cluster_index.insert(&b);
        } else {
            let old = self.role_bindings.entry(b.namespace.clone()).or_default().insert(b.name.clone(), b.clone());
            let index = self.namespace_index.entry(b.namespace.clone()).or_default();
            if let Some(old) = old {
                index.remove(&old);
            }
            index.insert(&b);
        }
    }

    fn remove_binding(&mut self, namespace: &str, name: &str) {
        if namespace.is_empty() {
            if let Some(old) = self.cluster_role_bindings.remove(name) {
                self.cluster_index.remove(&old);
            }
            return;
        }
        let Some(bindings) = self.role_bindings.get_mut(namespace) else { return };
        if let Some(old) = bindings.remove(name)
            && let Some(index) = self.namespace_index.get_mut(namespace)
        {
            index.remove(&old);
            if index.is_empty() {
                self.namespace_index.remove(namespace);
            }
        }
        if bindings.is_empty() {
            self.role_bindings.remove(namespace);
        }
    }

    fn apply(&mut self, resource: &str, obj: &Value, deleted: bool) {
        let (namespace, name) = (meta_str(obj, "namespace"), meta_str(obj, "name"));
        match resource {
            "clusterroles" => {
                if deleted {
                    self.cluster_roles.remove(name);
                } else {
                    self.cluster_roles.insert(name.to_string(), PolicyRule::list_from(obj));
                }
            }
            "roles" => {
                if deleted {
                    if let Some(m) = self.roles.get_mut(namespace) {
                        m.remove(name);
                        if m.is_empty() {
                            self.roles.remove(namespace);
                        }
                    }
                } else {
                    self.roles
                        .entry(namespace.to_string())
                        .or_default()
                        .insert(name.to_string(), PolicyRule::list_from(obj));
                }
            }
            "rolebindings" | "clusterrolebindings" => {
                // a ClusterRoleBinding never has a namespace, whatever the object says
                let namespace = if resource == "rolebindings" { namespace } else { "" };
                if deleted {
                    self.remove_binding(namespace, name);
                } else {
                    let mut b = Binding::from_value(obj);
                    b.namespace = namespace.to_string();
                    self.insert_binding(b);
                }
            }
            _ => {}
        }
    }

    fn clear(&mut self, resource: &str) {
        match resource {
            "clusterroles" => self.cluster_roles.clear(),
            "roles" => self.roles.clear(),
            "rolebindings" => {
                self.role_bindings.clear();
                self.namespace_index.clear();
            }
            "clusterrolebindings" => {
                self.cluster_role_bindings.clear();
                self.cluster_index = SubjectIndex::default();
            }
            _ => {}
        }
    }
}

/// Upstream's `utilerrors.NewAggregate(errs).Error()`: one message alone, several deduplicated in `[a, b]`.
fn aggregate(errors: &[String]) -> String {
    if errors.len() == 1 {
        return errors[0].clone();
    }
    let mut seen: Vec<&str> = Vec::new();
    for e in errors {
        if !seen.contains(&e.as_str()) {
            seen.push(e);
        }
    }
    if seen.len() == 1 { seen[0].to_string() } else { format!("[{}]", seen.join(", ")) }
}

/// The RBAC authorizer over its snapshot of the four RBAC resources.
#[derive(Debug, Default)]
pub struct RbacAuthorizer {
    state: RwLock<State>,
}

impl RbacAuthorizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one watch event of `resource` (`roles`, `clusterroles`, `rolebindings`, `clusterrolebindings`;
    /// anything else is ignored): an added or modified object replaces the one of the same namespace and name,
    /// a deleted one is dropped.
    pub fn apply(&self, resource: &str, obj: &Value, deleted: bool) {
        self.state.write().unwrap_or_else(|e| e.into_inner()).apply(resource, obj, deleted);
    }

    /// Replaces every object of `resource` by `objs` (after a relist).
    pub fn reset(&self, resource: &str, objs: Vec<Value>) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.clear(resource);
        for obj in &objs {
            state.apply(resource, obj, false);
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Upstream's `RulesFor`: every rule granted to `user` cluster-wide and in `namespace`, and the unresolvable
    /// role references met on the way (the rules found are still valid).
    pub fn user_rules(&self, user: &UserInfo, namespace: &str, style: ErrorStyle) -> (Vec<PolicyRule>, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        self.read().visit_rules_for(user, namespace, style, &mut errors, &mut |_, r| {
            rules.push(r.clone());
            true
        });
        (rules, errors)
    }

    /// Upstream's `GetRoleReferenceRules`: the rules of the role a binding in `namespace` ("" for a
    /// ClusterRoleBinding) refers to.
    pub fn role_ref_rules(
        &self,
        role_ref: &RoleRef,
        namespace: &str,
        style: ErrorStyle,
    ) -> Result<Vec<PolicyRule>, RoleRefError> {
        self.read().role_ref_rules(role_ref, namespace, style).map(<[PolicyRule]>::to_vec)
    }
}

impl Authorizer for RbacAuthorizer {
    fn authorize(&self, a: &Attributes) -> (Decision, String) {
        let mut reason = None;
        let mut errors = Vec::new();
        self.read().visit_rules_for(&a.user, &a.namespace, ErrorStyle::Lister, &mut errors, &mut |source, r| {
            if r.allows(a) {
                reason = Some(format!("RBAC: allowed by {source}"));
                return false;
            }
            true
        });
        match reason {
            Some(reason) => (Decision::Allow, reason),
            None if errors.is_empty() => (Decision::NoOpinion, String::new()),
            None => (Decision::NoOpinion, format!("RBAC: {}", aggregate(&errors))),
        }
    }

    fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<ResourceRule>, Vec<NonResourceRule>, bool) {
        let (rules, _) = self.user_rules(user, namespace, ErrorStyle::Lister);
        let mut resource_rules = Vec::new();
        let mut non_resource_rules = Vec::new();
        for r in rules {
            if !r.resources.is_empty() {
                resource_rules.push(ResourceRule {
                    verbs: r.verbs.clone(),
                    api_groups: r.api_groups.clone(),
                    resources: r.resources.clone(),
                    resource_names: r.resource_names.clone(),
                });
            }
            if !r.non_resource_urls.is_empty() {
                non_resource_rules.push(NonResourceRule { verbs: r.verbs, non_resource_urls: r.non_resource_urls });
            }
        }
        (resource_rules, non_resource_rules, false)
    }
}

#[cfg(test)]
mod tests;
