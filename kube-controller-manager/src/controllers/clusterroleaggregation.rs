//! `clusterrole-aggregation`: fills the rules of aggregated ClusterRoles, as upstream's
//! `pkg/controller/clusterroleaggregation`.
//!
//! A ClusterRole with an `aggregationRule` gets as `rules` the rules of every other ClusterRole matching any of its
//! `clusterRoleSelectors`: selector by selector, matching roles by name, rules in their order, each rule once. Any
//! ClusterRole change requeues every aggregated role (the set is small and the dependencies unknown, as upstream).
//! The rules are written with server-side apply (field manager `clusterrole-aggregation-controller`, forced),
//! falling back to an update when the server does not support apply.

use std::sync::Arc;

use api_types::selector::LabelSelector;
use bytes::Bytes;
use runtime::{Action, Controller, Informer};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{BoxError, Context, stopped};

pub const FIELD_MANAGER: &str = "clusterrole-aggregation-controller";

/// A rule without its empty fields: Go's semantic equality holds nil and empty lists equal.
fn normalized(rule: &Value) -> Value {
    match rule.as_object() {
        Some(o) => Value::Object(
            o.iter()
                .filter(|(_, v)| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        None => rule.clone(),
    }
}

fn rules(role: &Value) -> Vec<Value> {
    runtime::array(role, "/rules").iter().map(normalized).collect()
}

/// Upstream's `syncClusterRole` without the write: the aggregated rules, or None when the role is not aggregated
/// or already has them.
pub fn aggregated_rules(role: &Value, all: &[Arc<Value>]) -> Result<Option<Vec<Value>>, String> {
    let Some(rule) = role.get("aggregationRule").filter(|r| !r.is_null()) else { return Ok(None) };
    let mut sorted: Vec<&Arc<Value>> = all.iter().collect();
    sorted.sort_by(|a, b| runtime::name(a).cmp(runtime::name(b)));
    let mut new_rules: Vec<Value> = Vec::new();
    for selector in runtime::array(rule, "/clusterRoleSelectors") {
        let selector = LabelSelector::from_json(selector).map_err(|e| e.to_string())?;
        for other in sorted.iter().filter(|r| selector.matches_value(r.pointer("/metadata/labels"))) {
            if runtime::name(other) == runtime::name(role) {
                continue;
            }
            for r in rules(other) {
                if !new_rules.contains(&r) {
                    new_rules.push(r);
                }
            }
        }
    }
    Ok((new_rules != rules(role)).then_some(new_rules))
}

/// The apply configuration upstream sends: the name and the rules.
pub fn apply_configuration(name: &str, rules: &[Value]) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
        "rules": rules})
}

async fn sync(ctx: &Context, role: &Value, all: &[Arc<Value>]) -> Result<Action, BoxError> {
    let Some(new_rules) = aggregated_rules(role, all)? else { return Ok(Action::Done) };
    let name = runtime::name(role);
    let path =
        format!("/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}?fieldManager={FIELD_MANAGER}&force=true");
    let body = Bytes::from(serde_json::to_vec(&apply_configuration(name, &new_rules))?);
    match ctx.client.request(http::Method::PATCH, &path, Some((body, "application/apply-patch+yaml"))).await {
        Ok(_) => Ok(Action::Done),
        Err(e) if e.code() == Some(415) => {
            let mut updated = role.clone();
            updated["rules"] = json!(new_rules);
            ctx.api("rbac.authorization.k8s.io", "v1", "clusterroles").replace(name, &updated).await?;
            Ok(Action::Done)
        }
        Err(e) if e.code() == Some(404) => Ok(Action::Done),
        Err(e) => Err(e.into()),
    }
}

/// The keys of every aggregated ClusterRole.
fn aggregated_keys(roles: &Informer) -> Vec<String> {
    roles
        .store()
        .list()
        .iter()
        .filter(|r| r.get("aggregationRule").is_some_and(|a| !a.is_null()))
        .map(|r| runtime::name(r).to_string())
        .collect()
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let roles = ctx.informer("rbac.authorization.k8s.io", "v1", "clusterroles");
    let (c, watched) = (ctx.clone(), roles.clone());
    Controller::new(runtime::controller::Config { workers: 5, ..Default::default() })
        .watches(&roles, move |_| aggregated_keys(&watched))
        .run(
            move |name: String| {
                let (c, roles) = (c.clone(), roles.clone());
                async move {
                    let Some(role) = roles.store().get("", &name) else { return Ok::<_, BoxError>(Action::Done) };
                    sync(&c, &role, &roles.store().list()).await
                }
            },
            stopped(stop),
        )
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hammer() -> Vec<Value> {
        vec![
            json!({"verbs": ["hammer"], "resources": ["nails"]}),
            json!({"verbs": ["hammer"], "resources": ["wedges"]}),
        ]
    }
    fn chisel() -> Vec<Value> {
        vec![json!({"verbs": ["chisel"], "resources": ["mortises"]})]
    }
    fn saw() -> Vec<Value> {
        vec![json!({"verbs": ["saw"], "resources": ["boards"]})]
    }

    fn role(name: &str, foo: &str, rules: Vec<Value>) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": name, "labels": {"foo": foo}}, "rules": rules}))
    }

    fn combined(selectors: &[&str], rules: Vec<Vec<Value>>) -> Arc<Value> {
        let selectors: Vec<Value> = selectors.iter().map(|s| json!({"matchLabels": {"foo": s}})).collect();
        Arc::new(json!({"metadata": {"name": "combined"}, "aggregationRule": {"clusterRoleSelectors": selectors},
            "rules": rules.concat()}))
    }

    #[test]
    fn aggregates_as_upstream() {
        type Case = (&'static str, Vec<Arc<Value>>, Option<Vec<Vec<Value>>>);
        let cases: Vec<Case> = vec![
            (
                "remove dead rules",
                vec![role("hammer", "bar", hammer()), combined(&["bar"], vec![saw()])],
                Some(vec![hammer()]),
            ),
            (
                "strip rules",
                vec![role("hammer", "not-bar", hammer()), combined(&["bar"], vec![hammer()])],
                Some(vec![]),
            ),
            (
                "select properly and put in order",
                vec![
                    role("hammer", "bar", hammer()),
                    role("chisel", "bar", chisel()),
                    role("saw", "not-bar", saw()),
                    combined(&["bar"], vec![]),
                ],
                Some(vec![chisel(), hammer()]),
            ),
            (
                "select properly with multiple selectors",
                vec![
                    role("hammer", "bar", hammer()),
                    role("chisel", "bar", chisel()),
                    role("saw", "not-bar", saw()),
                    combined(&["bar", "not-bar"], vec![]),
                ],
                Some(vec![chisel(), hammer(), saw()]),
            ),
            (
                "select properly remove duplicates",
                vec![
                    role("hammer", "bar", hammer()),
                    role("chisel", "bar", chisel()),
                    role("saw", "bar", saw()),
                    role("other-saw", "not-bar", saw()),
                    combined(&["bar", "not-bar"], vec![]),
                ],
                Some(vec![chisel(), hammer(), saw()]),
            ),
            ("no diff skip", vec![role("hammer", "bar", hammer()), combined(&["bar"], vec![hammer()])], None),
        ];
        for (name, roles, want) in cases {
            let target = roles.iter().find(|r| runtime::name(r) == "combined").unwrap();
            let got = aggregated_rules(target, &roles).unwrap();
            assert_eq!(got, want.map(|w| w.concat()), "{name}");
        }
        // Not aggregated: nothing to do.
        assert_eq!(aggregated_rules(&role("hammer", "bar", vec![]), &[]).unwrap(), None);
        // Empty and absent lists are the same rule.
        let with_empty = Arc::new(json!({"metadata": {"name": "x", "labels": {"foo": "bar"}},
            "rules": [{"verbs": ["hammer"], "resources": ["nails"], "apiGroups": [], "resourceNames": null}]}));
        let target = combined(&["bar"], vec![vec![hammer()[0].clone()]]);
        assert_eq!(aggregated_rules(&target, &[with_empty, target.clone()]).unwrap(), None);
        assert_eq!(
            apply_configuration("combined", &saw()),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "combined"}, "rules": [{"verbs": ["saw"], "resources": ["boards"]}]})
        );
    }
}
