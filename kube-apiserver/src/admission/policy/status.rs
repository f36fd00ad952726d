//! The policy status controller (upstream `pkg/controller/validatingadmissionpolicystatus`, which runs in
//! kube-controller-manager; here a task of the apiserver, next to the type checker it needs): for every policy
//! whose `metadata.generation` is not yet the `status.observedGeneration`, type-check it and write
//! `status.observedGeneration` and `status.typeChecking` (empty warnings included: a non-nil typeChecking tells
//! clients the check is done).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use api_types::patch::PatchType;
use serde_json::{Value, json};

use super::typechecking::{CustomSchema, TypeChecker, resources_to_check};
use crate::apiextensions::served::Served;
use crate::registry::{Registry, meta_str};

/// The status a policy should have, when it differs from what it has (`custom`: the schemas of the custom
/// resources it names).
pub fn wanted_status(
    checker: &mut TypeChecker,
    policy: &Value,
    custom: &HashMap<(String, String, String), CustomSchema>,
) -> Option<Value> {
    let generation = policy.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    let observed = policy.pointer("/status/observedGeneration").and_then(Value::as_i64);
    if observed == Some(generation) && policy.pointer("/status/typeChecking").is_some_and(Value::is_object) {
        return None;
    }
    let warnings: Vec<Value> = checker
        .check_with(policy, custom)
        .into_iter()
        .map(|(field_ref, warning)| json!({"fieldRef": field_ref, "warning": warning}))
        .collect();
    let warnings = if warnings.is_empty() { Value::Null } else { Value::Array(warnings) };
    Some(json!({"observedGeneration": generation, "typeChecking": {"expressionWarnings": warnings}}))
}

/// The `openAPIV3Schema` of the custom resources a policy's rules name, from their CRDs.
async fn custom_schemas(
    registry: &Registry,
    served: &Served,
    policy: &Value,
) -> HashMap<(String, String, String), CustomSchema> {
    let mut out = HashMap::new();
    let Some(crds) = api_types::resources::find("apiextensions.k8s.io", "v1", "customresourcedefinitions") else {
        return out;
    };
    let snap = served.load();
    for (group, version, resource) in resources_to_check(&policy["spec"]) {
        let Some(cv) = snap.custom(&group, &version, &resource) else { continue };
        let Ok(crd) = registry.get(crds, None, &format!("{resource}.{group}")).await else { continue };
        let schema = crd.pointer("/spec/versions").and_then(Value::as_array).and_then(|vs| {
            vs.iter().find(|v| v["name"] == version.as_str())?.pointer("/schema/openAPIV3Schema").cloned()
        });
        if let Some(schema) = schema {
            out.insert((group, version, resource), CustomSchema { kind: cv.res.kind.to_string(), schema });
        }
    }
    out
}

/// Runs the controller until `stop` fires.
pub fn spawn(registry: Registry, served: Arc<Served>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let Some(res) = api_types::resources::find("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies")
    else {
        return;
    };
    tokio::spawn(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
        let writer = async {
            let mut checker = TypeChecker::default();
            while let Some(policy) = rx.recv().await {
                let custom = custom_schemas(&registry, &served, &policy).await;
                // Schema generation and checking are CPU work: off the async workers.
                let (back, status) = match tokio::task::spawn_blocking(move || {
                    let status = wanted_status(&mut checker, &policy, &custom);
                    (checker, status.map(|s| (policy, s)))
                })
                .await
                {
                    Ok(done) => done,
                    Err(e) => {
                        tracing::error!(error = %e, "policy type checking failed");
                        return;
                    }
                };
                checker = back;
                let Some((policy, status)) = status else { continue };
                let name = meta_str(&policy, "name").unwrap_or_default().to_string();
                let patch = json!({"status": status}).to_string();
                for attempt in 0..5 {
                    let written = registry
                        .patch(res, None, &name, Some("status"), PatchType::Merge, patch.as_bytes(), false)
                        .await;
                    match written {
                        Ok(_) => break,
                        Err(e) if e.code == 404 => break,
                        Err(e) => {
                            tracing::warn!(policy = name, attempt, error = %e, "writing the policy status failed");
                            tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
                        }
                    }
                }
            }
        };
        let mut seen: BTreeMap<String, (i64, bool)> = BTreeMap::new();
        let follow = super::source::follow(&registry, res, |policies| {
            for (name, p) in policies {
                let generation = p.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
                let done = p.pointer("/status/observedGeneration").and_then(Value::as_i64) == Some(generation)
                    && p.pointer("/status/typeChecking").is_some_and(Value::is_object);
                if !done && seen.get(name) != Some(&(generation, done)) {
                    let _ = tx.send(p.clone());
                }
                seen.insert(name.clone(), (generation, done));
            }
            seen.retain(|n, _| policies.contains_key(n));
        });
        tokio::select! {
            _ = follow => {}
            _ = writer => {}
            _ = stop.changed() => {}
        }
    });
}
