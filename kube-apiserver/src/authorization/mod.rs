//! Authorization: the `--authorization-mode` chain (Node, RBAC, AlwaysAllow, AlwaysDeny, in the order given; the
//! first decisive answer wins) deciding on a request's attributes, as upstream's `authorizer.Attributes`.

pub mod bootstrappolicy;
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
