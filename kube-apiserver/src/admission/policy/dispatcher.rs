//! Evaluation of the policies that apply to a request (upstream `policy/validating/dispatcher.go` and
//! `generic.CollectParams`): for each policy whose matchConstraints match, each binding whose matchResources
//! match, each param its paramRef selects, the policy's decisions are applied as the binding's validationActions
//! say: Deny collects denials, Warn adds a Warning to the response, Audit is evaluated and dropped (no audit log
//! here). Configuration errors (a selector that does not parse, a paramKind not served, params missing under
//! `parameterNotFoundAction: Deny`) follow the policy's failurePolicy. The first denial fails the request with its
//! reason's code (422 unless the validation says otherwise) and upstream's message.

use std::sync::Arc;

use api_types::selector::LabelSelector;
use api_types::{ApiError, Resource};
use serde_json::{Value as Json, json};

use super::matcher::Matched;
use super::source::{Action, Binding, Hook, ParamRef};
use super::validator::{AuditOutcome, Decision, Policy};
use crate::admission::Request;
use crate::admission::cel::activation::Inputs;
use crate::admission::webhook::BoxFuture;
use crate::apiextensions::served::Snapshot as Served;

/// What policy admission reads from the cluster, beyond what webhooks read.
pub trait Cluster: crate::admission::webhook::Cluster {
    /// The resources served now.
    fn served(&self) -> Arc<Served>;
    /// One param object (None when it does not exist).
    fn param<'a>(
        &'a self,
        res: &'static Resource,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Json>, ApiError>>;
    /// The param objects a selector selects.
    fn params<'a>(
        &'a self,
        res: &'static Resource,
        namespace: Option<&'a str>,
        selector: &'a LabelSelector,
    ) -> BoxFuture<'a, Result<Vec<Json>, ApiError>>;
}

/// A denial with the policy and binding it came from.
struct Denial<'h> {
    policy: &'h Policy,
    binding: Option<&'h Binding>,
    decision: Decision,
}

/// A configuration error, denied under failurePolicy Fail (upstream `addConfigError`).
fn config_error<'h>(denials: &mut Vec<Denial<'h>>, policy: &'h Policy, binding: Option<&'h Binding>, err: String) {
    if policy.validator.ignore_failures {
        return;
    }
    let what = if binding.is_some() { "binding" } else { "policy" };
    let decision =
        Decision { deny: true, error: true, message: format!("failed to configure {what}: {err}"), reason: "Invalid" };
    denials.push(Denial { policy, binding, decision });
}

/// Runs the policies of `hooks` on a request.
pub async fn dispatch(cluster: &dyn Cluster, hooks: &[Hook], r: &Request<'_>) -> Result<(), ApiError> {
    let served = cluster.served();
    let mut denials: Vec<Denial<'_>> = Vec::new();
    let authorizer = cluster.authorizer();
    // The request's Namespace, read once when a binding first needs it.
    let mut namespace: Option<Json> = None;
    for hook in hooks {
        let policy = &*hook.policy;
        let Some(constraints) = &policy.match_constraints else {
            config_error(&mut denials, policy, None, "policy contained no match constraints, a required field".into());
            continue;
        };
        let matched = match constraints.matches(cluster, &served, r).await {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(e) => {
                config_error(&mut denials, policy, None, e);
                continue;
            }
        };
        // The objects as the matched version shows them (matchPolicy Equivalent), converted once per policy.
        let converted = match matched {
            Matched::Own => None,
            Matched::Equivalent(to) => {
                let convert = async |o: Option<&Json>| match o {
                    Some(o) => cluster.convert(r.resource, to, o.clone()).await.map(Some),
                    None => Ok(None),
                };
                Some((convert(r.object).await?, convert(r.old).await?))
            }
        };
        let versioned =
            converted.as_ref().map(|(object, old)| Request { object: object.as_ref(), old: old.as_ref(), ..*r });
        let versioned = versioned.as_ref().unwrap_or(r);
        let param_res = match &policy.param_kind {
            None => None,
            Some((api_version, kind)) => match param_resource(&served, api_version, kind) {
                Some(res) => Some(res),
                None => {
                    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
                    let err =
                        format!("failed to find resource referenced by paramKind: '{group}/{version}, Kind={kind}'");
                    config_error(&mut denials, policy, None, err);
                    continue;
                }
            },
        };
        for binding in &hook.bindings {
            if let Some(mr) = &binding.match_resources {
                match mr.matches(cluster, &served, r).await {
                    Ok(Some(_)) => {}
                    Ok(None) => continue,
                    Err(e) => {
                        config_error(&mut denials, policy, Some(binding), e);
                        continue;
                    }
                }
            }
            let params = match collect_params(cluster, policy, param_res, binding.param_ref.as_ref(), r).await {
                Ok(p) => p,
                Err(e) => {
                    config_error(&mut denials, policy, Some(binding), e);
                    continue;
                }
            };
            if params.is_empty() {
                continue;
            }
            if namespace.is_none() && !request_namespace(r).is_empty() {
                namespace = Some(cluster.namespace(request_namespace(r)).await?);
            }
            for param in &params {
                let inputs = Inputs {
                    request: versioned,
                    matched: matched.resource(r),
                    params: param.as_ref(),
                    namespace: namespace.as_ref(),
                    authorizer: authorizer.clone(),
                };
                let result = policy.validator.validate(&inputs);
                for decision in result.decisions.into_iter().filter(|d| d.deny) {
                    for action in &binding.actions {
                        match action {
                            Action::Deny => {
                                denials.push(Denial { policy, binding: Some(binding), decision: decision.clone() })
                            }
                            Action::Warn => crate::admission::add_warning(&format!(
                                "Validation failed for ValidatingAdmissionPolicy '{}' with binding '{}': {}",
                                policy.name, binding.name, decision.message
                            )),
                            Action::Audit => tracing::debug!(
                                policy = policy.name,
                                binding = binding.name,
                                message = decision.message,
                                "validation failure (audit)"
                            ),
                        }
                    }
                }
                for outcome in result.audit_annotations {
                    match outcome {
                        AuditOutcome::Error(message) => {
                            let decision = Decision { deny: true, error: true, message, reason: "Invalid" };
                            denials.push(Denial { policy, binding: Some(binding), decision });
                        }
                        AuditOutcome::Publish { key, value } => {
                            tracing::debug!(policy = policy.name, key, value, "audit annotation (no audit log)")
                        }
                        AuditOutcome::Exclude => {}
                    }
                }
            }
        }
    }
    match denials.into_iter().next() {
        None => Ok(()),
        Some(d) => Err(denied(r, &d)),
    }
}

/// The namespace whose object `namespaceObject` is: the request's, none for cluster-scoped requests and for
/// Namespaces themselves.
fn request_namespace<'a>(r: &Request<'a>) -> &'a str {
    if r.resource.group.is_empty() && r.resource.plural == "namespaces" { "" } else { r.namespace }
}

/// The served resource of a paramKind.
fn param_resource(served: &Served, api_version: &str, kind: &str) -> Option<&'static Resource> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    served.in_group_version(group, version).into_iter().find(|r| r.kind == kind)
}

/// The params a binding selects (upstream `CollectParams`): `[None]` without paramKind or paramRef, else the
/// named object or the selected ones, from the paramRef's namespace or the request's.
async fn collect_params(
    cluster: &dyn Cluster,
    policy: &Policy,
    res: Option<&'static Resource>,
    param_ref: Option<&ParamRef>,
    r: &Request<'_>,
) -> Result<Vec<Option<Json>>, String> {
    let (Some(res), Some(pr)) = (res, param_ref) else { return Ok(vec![None]) };
    let namespace = if res.namespaced {
        let ns = if pr.namespace.is_empty() { r.namespace } else { pr.namespace.as_str() };
        if ns.is_empty() {
            return Err("cannot use namespaced paramRef in policy binding that matches cluster-scoped resources".into());
        }
        Some(ns)
    } else if !pr.namespace.is_empty() {
        return Err("paramRef.namespace must not be provided for a cluster-scoped `paramKind`".into());
    } else {
        None
    };
    let mut found = if !pr.name.is_empty() {
        if pr.selector.is_some() {
            return Err("paramRef.name and paramRef.selector are mutually exclusive".into());
        }
        cluster.param(res, namespace, &pr.name).await.map_err(|e| e.message)?.into_iter().collect()
    } else if let Some(selector) = &pr.selector {
        use crate::admission::webhook::predicates::Selector;
        let everything = LabelSelector::default();
        let selector = match selector {
            Selector::Everything => &everything,
            Selector::Parsed(s) => s,
            Selector::Invalid(e) => return Err(e.clone()),
        };
        cluster.params(res, namespace, selector).await.map_err(|e| e.message)?
    } else {
        return Err("one of name or selector must be provided".into());
    };
    if found.is_empty() && pr.deny_not_found {
        return Err("no params found for policy binding with `Deny` parameterNotFoundAction".into());
    }
    // Params carry their apiVersion and kind, as upstream's wrapped params do.
    if let Some((api_version, kind)) = &policy.param_kind {
        for p in found.iter_mut().filter_map(Json::as_object_mut) {
            p.entry("apiVersion").or_insert_with(|| json!(api_version));
            p.entry("kind").or_insert_with(|| json!(kind));
        }
    }
    Ok(found.into_iter().map(Some).collect())
}

/// The error of a denial (upstream: `admission.NewForbidden` with the decision's reason and code, and the message
/// as its one cause).
fn denied(r: &Request<'_>, d: &Denial<'_>) -> ApiError {
    let message = match d.binding {
        Some(b) => format!(
            "ValidatingAdmissionPolicy '{}' with binding '{}' denied request: {}",
            d.policy.name, b.name, d.decision.message
        ),
        None => format!("ValidatingAdmissionPolicy '{}' denied request: {}", d.policy.name, d.decision.message),
    };
    let name = match (r.name, r.object) {
        ("", Some(o)) => crate::registry::meta_str(o, "name").unwrap_or_default(),
        (n, _) => n,
    };
    let reason = if d.decision.reason.is_empty() { "Invalid" } else { d.decision.reason };
    let code = match reason {
        "Forbidden" => 403,
        "Unauthorized" => 401,
        "RequestEntityTooLarge" => 413,
        _ => 422,
    };
    let res = r.resource;
    let qualified = res.qualified();
    let mut details = serde_json::Map::new();
    details.insert("name".into(), json!(name));
    if !res.group.is_empty() {
        details.insert("group".into(), json!(res.group));
    }
    details.insert("kind".into(), json!(res.plural));
    details.insert("causes".into(), json!([{"message": message}]));
    let mut e = ApiError::new(code, reason, format!("{qualified} {name:?} is forbidden: {message}"));
    e.details = Some(Box::new(Json::Object(details)));
    e
}
