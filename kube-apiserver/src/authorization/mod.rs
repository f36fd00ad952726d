//! Authorization: the `--authorization-mode` chain (Node, RBAC, AlwaysAllow, AlwaysDeny, in the order given; the
//! first decisive answer wins) deciding on a request's attributes, as upstream's `authorizer.Attributes`.

pub mod bootstrappolicy;
pub mod feed;
pub mod node;
pub mod rbac;

use crate::auth::UserInfo;

/// What a request asks to do, as upstream's `authorizer.AttributesRecord`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub user: UserInfo,
    /// get, list, watch, create, update, patch, delete, deletecollection, or impersonate, bind, escalate, use,
    /// approve, sign...; for non-resource requests the lower-cased HTTP method (get, post, put, delete...).
    pub verb: String,
    /// true for `/api/...` and `/apis/...` resource requests.
    pub resource_request: bool,
    /// The URL path of a non-resource request (`/healthz`, `/version`, `/apis`).
    pub path: String,
    pub api_group: String,
    pub api_version: String,
    /// Empty for cluster-scoped resources and all-namespace requests.
    pub namespace: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// The request's `fieldSelector` (the Node authorizer lets kubelets list only their own pods).
    pub field_selector: Option<api_types::selector::FieldSelector>,
}

/// An authorizer's answer, as upstream's `authorizer.Decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    NoOpinion,
}

/// A resource rule as SelfSubjectRulesReview reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourceRule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
}

/// A non-resource rule as SelfSubjectRulesReview reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NonResourceRule {
    pub verbs: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

/// One link of the `--authorization-mode` chain.
pub trait Authorizer: Send + Sync {
    /// The decision and its reason (empty when there is nothing to say).
    fn authorize(&self, a: &Attributes) -> (Decision, String);

    /// What `user` may do in `namespace` (for SelfSubjectRulesReview); `incomplete` when this authorizer cannot
    /// enumerate its rules.
    fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<ResourceRule>, Vec<NonResourceRule>, bool);
}

/// `AlwaysAllow`.
pub struct AlwaysAllow;

impl Authorizer for AlwaysAllow {
    fn authorize(&self, _: &Attributes) -> (Decision, String) {
        (Decision::Allow, String::new())
    }
    fn rules_for(&self, _: &UserInfo, _: &str) -> (Vec<ResourceRule>, Vec<NonResourceRule>, bool) {
        let all = || vec!["*".to_string()];
        (
            vec![ResourceRule { verbs: all(), api_groups: all(), resources: all(), resource_names: vec![] }],
            vec![NonResourceRule { verbs: all(), non_resource_urls: all() }],
            false,
        )
    }
}

/// `AlwaysDeny`.
pub struct AlwaysDeny;

impl Authorizer for AlwaysDeny {
    fn authorize(&self, _: &Attributes) -> (Decision, String) {
        (Decision::Deny, "Everything is forbidden.".into())
    }
    fn rules_for(&self, _: &UserInfo, _: &str) -> (Vec<ResourceRule>, Vec<NonResourceRule>, bool) {
        (vec![], vec![], false)
    }
}

/// Members of `system:masters` may do anything (upstream puts this authorizer before the configured modes).
pub struct PrivilegedGroups;

pub const SYSTEM_MASTERS: &str = "system:masters";

impl Authorizer for PrivilegedGroups {
    fn authorize(&self, a: &Attributes) -> (Decision, String) {
        if a.user.groups.iter().any(|g| g == SYSTEM_MASTERS) {
            (Decision::Allow, String::new())
        } else {
            (Decision::NoOpinion, String::new())
        }
    }
    fn rules_for(&self, user: &UserInfo, ns: &str) -> (Vec<ResourceRule>, Vec<NonResourceRule>, bool) {
        if user.groups.iter().any(|g| g == SYSTEM_MASTERS) {
            AlwaysAllow.rules_for(user, ns)
        } else {
            (vec![], vec![], false)
        }
    }
}

/// The `--authorization-mode` chain: each authorizer in turn until one allows or denies.
pub struct Chain {
    pub authorizers: Vec<std::sync::Arc<dyn Authorizer>>,
}

impl Chain {
    /// The decision of the first decisive authorizer, or NoOpinion with every reason given (newline-separated).
    pub fn authorize(&self, a: &Attributes) -> (Decision, String) {
        let mut reasons = Vec::new();
        for z in &self.authorizers {
            let (d, reason) = z.authorize(a);
            match d {
                Decision::NoOpinion => {
                    if !reason.is_empty() {
                        reasons.push(reason);
                    }
                }
                d => return (d, reason),
            }
        }
        (Decision::NoOpinion, reasons.join("\n"))
    }

    pub fn allows(&self, a: &Attributes) -> bool {
        self.authorize(a).0 == Decision::Allow
    }

    /// Every authorizer's rules for `user` in `namespace`, and whether any list is incomplete.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<ResourceRule>, Vec<NonResourceRule>, bool) {
        let (mut rr, mut nr, mut incomplete) = (vec![], vec![], false);
        for z in &self.authorizers {
            let (r, n, i) = z.rules_for(user, namespace);
            rr.extend(r);
            nr.extend(n);
            incomplete |= i;
        }
        (rr, nr, incomplete)
    }
}

/// The chain `--authorization-mode` names, after the system:masters check, and the authorizers that need feeding.
/// `rbac` is the shared RBAC snapshot (always fed: the escalation checks read it even when RBAC does not authorize).
pub fn from_modes(
    modes: &[String],
    rbac: std::sync::Arc<rbac::RbacAuthorizer>,
) -> Result<(Chain, Vec<std::sync::Arc<dyn feed::Indexed>>), String> {
    use std::sync::Arc;
    let mut chain: Vec<Arc<dyn Authorizer>> = vec![Arc::new(PrivilegedGroups)];
    let mut indexed: Vec<Arc<dyn feed::Indexed>> = vec![rbac.clone()];
    let mut seen = std::collections::HashSet::new();
    for m in modes.iter().map(|m| m.trim()).filter(|m| !m.is_empty()) {
        if !seen.insert(m.to_string()) {
            return Err(format!("authorization-mode {m:?} has mode specified more than once"));
        }
        match m {
            "AlwaysAllow" => chain.push(Arc::new(AlwaysAllow)),
            "AlwaysDeny" => chain.push(Arc::new(AlwaysDeny)),
            "RBAC" => chain.push(rbac.clone()),
            "Node" => {
                let node = Arc::new(node::NodeAuthorizer::new());
                chain.push(node.clone());
                indexed.push(node);
            }
            other => {
                return Err(format!(
                    "authorization-mode {other:?} is not a valid mode (AlwaysAllow, AlwaysDeny, Node, RBAC)"
                ));
            }
        }
    }
    if seen.is_empty() {
        return Err("at least one authorization-mode must be passed".into());
    }
    Ok((Chain { authorizers: chain }, indexed))
}

/// Upstream's `forbiddenMessage`: what a user was refused.
pub fn forbidden_message(a: &Attributes) -> String {
    let user = &a.user.username;
    if !a.resource_request {
        return format!("User {user:?} cannot {} path {:?}", a.verb, a.path);
    }
    let mut resource = a.resource.clone();
    if !a.subresource.is_empty() {
        resource = format!("{resource}/{}", a.subresource);
    }
    if a.namespace.is_empty() {
        format!(
            "User {user:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
            a.verb, a.api_group
        )
    } else {
        format!(
            "User {user:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
            a.verb, a.api_group, a.namespace
        )
    }
}

/// Upstream's 403 for a refused request (`responsewriters.Forbidden` with `apierrors.NewForbidden`).
pub fn forbidden(a: &Attributes, reason: &str) -> api_types::ApiError {
    let msg = forbidden_message(a);
    let err = if reason.is_empty() { msg } else { format!("{msg}: {reason}") };
    new_forbidden(&a.api_group, if a.resource_request { &a.resource } else { "" }, &a.name, &err)
}

/// `apierrors.NewForbidden(group/resource, name, err)`.
pub fn new_forbidden(group: &str, resource: &str, name: &str, err: &str) -> api_types::ApiError {
    let qualified = if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") };
    let message = if resource.is_empty() {
        format!("forbidden: {err}")
    } else if name.is_empty() {
        format!("{qualified} is forbidden: {err}")
    } else {
        format!("{qualified} {name:?} is forbidden: {err}")
    };
    let mut e = api_types::ApiError::forbidden(message);
    let mut details = serde_json::Map::new();
    if !name.is_empty() {
        details.insert("name".into(), name.into());
    }
    if !group.is_empty() {
        details.insert("group".into(), group.into());
    }
    if !resource.is_empty() {
        details.insert("kind".into(), resource.into());
    }
    e.details = Some(Box::new(serde_json::Value::Object(details)));
    e
}

/// The attributes of an API request (`RequestInfo`) by `user`.
pub fn resource_attributes(user: &UserInfo, info: &crate::request::RequestInfo) -> Attributes {
    Attributes {
        user: user.clone(),
        verb: info.verb.clone(),
        resource_request: true,
        path: String::new(),
        api_group: info.group.clone(),
        api_version: info.version.clone(),
        namespace: info.namespace.clone().unwrap_or_default(),
        resource: info.resource.clone(),
        subresource: info.subresource.clone().unwrap_or_default(),
        name: info.name.clone().unwrap_or_default(),
        field_selector: None,
    }
}

/// Sets the request's field selector on `a`; a list or watch whose selector requires one `metadata.name` names that
/// object, as upstream's RequestInfoFactory does (so a kubelet may watch its own Node).
pub fn with_field_selector(mut a: Attributes, selector: Option<&str>) -> Attributes {
    a.field_selector = selector.and_then(|f| api_types::selector::FieldSelector::parse(f).ok());
    if a.name.is_empty() && matches!(a.verb.as_str(), "list" | "watch") {
        let exact = a.field_selector.as_ref().and_then(|fs| {
            let r = fs.requirements();
            match r {
                [one] if one.field == "metadata.name" && one.op == api_types::selector::FieldOp::Equals => {
                    Some(one.value.clone())
                }
                _ => None,
            }
        });
        if let Some(name) =
            exact.filter(|n| !n.is_empty() && !n.contains('/') && !n.contains('%') && n != "." && n != "..")
        {
            a.name = name;
        }
    }
    a
}

/// The attributes of a non-resource request (`/healthz`, `/version`, `/apis`...): the verb is the lower-cased method.
pub fn non_resource_attributes(user: &UserInfo, method: &str, path: &str) -> Attributes {
    Attributes {
        user: user.clone(),
        verb: method.to_ascii_lowercase(),
        resource_request: false,
        path: path.to_string(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserInfo {
        UserInfo::authenticated("alice".into(), String::new(), vec![])
    }

    #[test]
    fn forbidden_text_as_upstream() {
        let info = crate::request::parse("GET", "/api/v1/namespaces/y/pods", false).unwrap();
        let e = forbidden(&resource_attributes(&alice(), &info), "");
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "y""#
        );
        let info = crate::request::parse("GET", "/apis/apps/v1/namespaces/y/deployments/web/scale", false).unwrap();
        let e = forbidden(&resource_attributes(&alice(), &info), "");
        assert_eq!(
            e.message,
            r#"deployments.apps "web" is forbidden: User "alice" cannot get resource "deployments/scale" in API group "apps" in the namespace "y""#
        );
        assert_eq!(e.details.as_deref().unwrap()["group"], "apps");
        let info = crate::request::parse("GET", "/api/v1/nodes", false).unwrap();
        let e = forbidden(&resource_attributes(&alice(), &info), "");
        assert!(e.message.ends_with(r#"cannot list resource "nodes" in API group "" at the cluster scope"#));
        let e = forbidden(&non_resource_attributes(&alice(), "GET", "/metrics"), "");
        assert_eq!(e.message, r#"forbidden: User "alice" cannot get path "/metrics""#);
    }

    #[test]
    fn a_metadata_name_selector_names_the_object() {
        let info = crate::request::parse("GET", "/api/v1/nodes", true).unwrap();
        let a = with_field_selector(resource_attributes(&alice(), &info), Some("metadata.name=n1"));
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("watch", "n1"));
        let a = with_field_selector(resource_attributes(&alice(), &info), Some("metadata.name!=n1"));
        assert_eq!(a.name, "");
        let a = with_field_selector(resource_attributes(&alice(), &info), Some("spec.unschedulable=true"));
        assert_eq!(a.name, "");
    }

    #[test]
    fn chain_takes_the_first_decisive_answer() {
        let a = non_resource_attributes(&alice(), "GET", "/x");
        let chain = Chain { authorizers: vec![std::sync::Arc::new(PrivilegedGroups), std::sync::Arc::new(AlwaysDeny)] };
        assert_eq!(chain.authorize(&a).0, Decision::Deny);
        let mut admin = a.clone();
        admin.user.groups.push(SYSTEM_MASTERS.into());
        assert_eq!(chain.authorize(&admin).0, Decision::Allow);
        let chain = Chain { authorizers: vec![std::sync::Arc::new(PrivilegedGroups)] };
        assert_eq!(chain.authorize(&a).0, Decision::NoOpinion);
    }
}
