//! The local APIServices of the built-in group-versions (upstream's autoregister controller with
//! `apiVersionPriorities`): `v1.`, `v1.apps`, ... labelled `kube-aggregator.kubernetes.io/automanaged: onstart`,
//! created at start when missing, so `kubectl get apiservices` lists them as on upstream clusters.

use api_types::ApiError;
use serde_json::json;

use crate::server::Apiserver;

/// Upstream's (group priority, version priority) of a built-in group-version (`pkg/controlplane/apiserver/
/// aggregator.go`); unlisted group-versions get no APIService, as upstream.
pub fn priority(group: &str, version: &str) -> Option<(i64, i64)> {
    Some(match (group, version) {
        ("", "v1") => (18000, 1),
        ("apiregistration.k8s.io", "v1") => (18000, 15),
        ("apps", "v1") => (17800, 15),
        ("events.k8s.io", "v1") => (17750, 15),
        ("authentication.k8s.io", "v1") => (17700, 15),
        ("authorization.k8s.io", "v1") => (17600, 15),
        ("autoscaling", "v2") => (17500, 30),
        ("autoscaling", "v1") => (17500, 15),
        ("batch", "v1") => (17400, 15),
        ("certificates.k8s.io", "v1") => (17300, 15),
        ("networking.k8s.io", "v1") => (17200, 15),
        ("policy", "v1") => (17100, 15),
        ("rbac.authorization.k8s.io", "v1") => (17000, 15),
        ("storage.k8s.io", "v1") => (16800, 15),
        ("apiextensions.k8s.io", "v1") => (16700, 15),
        ("admissionregistration.k8s.io", "v1") => (16700, 15),
        ("scheduling.k8s.io", "v1") => (16600, 15),
        ("coordination.k8s.io", "v1") => (16500, 15),
        ("node.k8s.io", "v1") => (16300, 15),
        ("discovery.k8s.io", "v1") => (16200, 15),
        ("flowcontrol.apiserver.k8s.io", "v1") => (16100, 21),
        ("resource.k8s.io", "v1beta1") => (15900, 9),
        _ => return None,
    })
}

/// Creates the missing local APIServices.
pub async fn run(server: &Apiserver) -> Result<(), ApiError> {
    let res = api_types::resources::find("apiregistration.k8s.io", "v1", "apiservices")
        .ok_or_else(|| ApiError::internal("no APIService resource"))?;
    for (group, versions) in api_types::resources::groups() {
        for version in versions {
            let Some((gp, vp)) = priority(group, version) else { continue };
            let name = format!("{version}.{group}");
            let obj = json!({
                "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                "metadata": {"name": name, "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
                "spec": {"group": group, "version": version, "groupPriorityMinimum": gp, "versionPriority": vp},
            });
            match server.registry.create(res, None, obj, false).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
