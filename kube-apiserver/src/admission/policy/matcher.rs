//! Which requests a policy and its bindings apply to (upstream `policy/matching/matching.go` and
//! `generic/policy_matcher.go`): a `MatchResources` (the policy's `matchConstraints`, narrowed by a binding's
//! `matchResources`) with namespace and object selectors, resource rules with resource names, exclusions, and
//! matchPolicy Equivalent (a rule naming another version of the same stored resource matches too). Rules and
//! selectors are the webhooks' ([`crate::admission::webhook::rules`], [`crate::admission::webhook::predicates`]).

use serde_json::Value;

use crate::admission::Request;
use crate::admission::webhook::predicates::{self, Selector};
use crate::admission::webhook::rules::{Attrs, Rule};
pub use crate::admission::webhook::rules::{Matched, equivalents};
use crate::admission::webhook::{Cluster, attrs};
use crate::apiextensions::served::Snapshot;

/// A `NamedRuleWithOperations`.
#[derive(Debug, Clone)]
pub struct NamedRule {
    pub rule: Rule,
    pub resource_names: Vec<String>,
}

impl NamedRule {
    fn from_json(v: &Value) -> NamedRule {
        NamedRule {
            rule: Rule::from_json(v),
            resource_names: v["resourceNames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        }
    }

    fn matches(&self, a: &Attrs<'_>, name: &str) -> bool {
        self.rule.matches(a) && (self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == name))
    }
}

/// A compiled `MatchResources`.
#[derive(Debug, Clone)]
pub struct MatchResources {
    pub namespace_selector: Selector,
    pub object_selector: Selector,
    pub resource_rules: Vec<NamedRule>,
    pub exclude_resource_rules: Vec<NamedRule>,
    /// `matchPolicy: Equivalent` (the v1 default).
    pub equivalent: bool,
}

impl MatchResources {
    pub fn from_json(v: &Value) -> MatchResources {
        let rules = |k: &str| v[k].as_array().into_iter().flatten().map(NamedRule::from_json).collect();
        MatchResources {
            namespace_selector: Selector::from_json(v.get("namespaceSelector")),
            object_selector: Selector::from_json(v.get("objectSelector")),
            resource_rules: rules("resourceRules"),
            exclude_resource_rules: rules("excludeResourceRules"),
            equivalent: v["matchPolicy"] != "Exact",
        }
    }

    /// Whether the resource rules may cover the request, before selectors and resource names: the cheap test
    /// that decides whether a write concerns any policy at all.
    pub fn rules_may_match(&self, served: &Snapshot, r: &Request<'_>) -> bool {
        let a = attrs(r);
        let any = |a: &Attrs<'_>| self.resource_rules.iter().any(|n| n.rule.matches(a));
        self.resource_rules.is_empty()
            || any(&a)
            || (self.equivalent
                && equivalents(served, r.resource)
                    .iter()
                    .any(|e| any(&Attrs { group: e.group, version: e.version, resource: e.plural, ..a })))
    }

    /// Whether the request is matched (upstream `Matcher.Matches`): as what, or None. A selector that fails
    /// matters only when the rules match.
    pub async fn matches(
        &self,
        cluster: &dyn Cluster,
        served: &Snapshot,
        r: &Request<'_>,
    ) -> Result<Option<Matched>, String> {
        let object = r.object.or(r.old);
        let ns = predicates::namespace_matches(cluster, &self.namespace_selector, r, r.object).await;
        if matches!(ns, Ok(false)) {
            return Ok(None);
        }
        let obj = predicates::object_matches(&self.object_selector, r.object, r.old);
        if matches!(obj, Ok(false)) {
            return Ok(None);
        }
        let name = match (r.name, object) {
            ("", Some(o)) => crate::registry::meta_str(o, "name").unwrap_or_default(),
            (n, _) => n,
        };
        if self.rules_match(&self.exclude_resource_rules, served, r, name).is_some() {
            return Ok(None);
        }
        let matched = if self.resource_rules.is_empty() {
            Some(Matched::Own)
        } else {
            self.rules_match(&self.resource_rules, served, r, name)
        };
        let Some(matched) = matched else { return Ok(None) };
        ns.map_err(|e| e.message)?;
        obj.map_err(|e| e.message)?;
        Ok(Some(matched))
    }

    /// How the rules match the request: as its own resource, else (Equivalent) as another version of it.
    fn rules_match(&self, rules: &[NamedRule], served: &Snapshot, r: &Request<'_>, name: &str) -> Option<Matched> {
        let a = attrs(r);
        if rules.iter().any(|n| n.matches(&a, name)) {
            return Some(Matched::Own);
        }
        if !self.equivalent {
            return None;
        }
        for equivalent in equivalents(served, r.resource) {
            let a = Attrs { group: equivalent.group, version: equivalent.version, resource: equivalent.plural, ..a };
            if rules.iter().any(|n| n.matches(&a, name)) {
                return Some(Matched::Equivalent(equivalent));
            }
        }
        None
    }
}
