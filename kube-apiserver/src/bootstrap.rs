//! What the apiserver sets up at start, as upstream's bootstrap controller: the system namespaces and the
//! `kubernetes` Service in `default` with its Endpoints and EndpointSlice pointing at `--advertise-address`, and the
//! built-in PriorityClasses `system-node-critical` and `system-cluster-critical`, and the
//! `extension-apiserver-authentication` ConfigMap.

use std::sync::Arc;

use api_types::resources::find;
use api_types::{ApiError, Resource};
use serde_json::{Value, json};

use crate::server::Apiserver;

pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

fn resource(group: &str, plural: &str) -> Result<&'static Resource, ApiError> {
    find(group, "v1", plural).ok_or_else(|| ApiError::internal(format!("no resource {plural}")))
}

/// Creates `obj` unless it exists; if it exists and `reconcile` is set, makes the listed top-level fields match.
async fn ensure(
    server: &Arc<Apiserver>,
    res: &Resource,
    ns: Option<&str>,
    obj: Value,
    reconcile: &[&str],
) -> Result<(), ApiError> {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    match server.registry.get(res, ns, &name).await {
        Ok(cur) => {
            if reconcile.iter().all(|f| cur.get(*f) == obj.get(*f)) {
                return Ok(());
            }
            let mut new = cur.clone();
            for f in reconcile {
                new[*f] = obj[*f].clone();
            }
            server.registry.update(res, ns, &name, None, new, false).await.map(|_| ())
        }
        Err(e) if e.code == 404 => match crate::admission::create(server, res, ns, obj, false).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == 409 => Ok(()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Upstream's `rbac/bootstrap-roles` post-start hook: every default ClusterRole, ClusterRoleBinding and kube-system /
/// kube-public Role and RoleBinding created or reconciled (missing rules and subjects added, nothing removed,
/// `rbac.authorization.kubernetes.io/autoupdate: "false"` respected).
async fn bootstrap_roles(server: &Arc<Apiserver>) -> Result<(), ApiError> {
    use crate::authorization::bootstrappolicy as policy;
    use crate::authorization::rbac::reconciliation::{ReconcileOperation, reconcile_operation};
    let group = "rbac.authorization.k8s.io";
    let wanted = policy::cluster_roles()
        .into_iter()
        .map(|o| ("clusterroles", None, o))
        .chain(policy::cluster_role_bindings().into_iter().map(|o| ("clusterrolebindings", None, o)))
        .chain(policy::namespace_roles().into_iter().map(|(ns, o)| ("roles", Some(ns), o)))
        .chain(policy::namespace_role_bindings().into_iter().map(|(ns, o)| ("rolebindings", Some(ns), o)));
    for (plural, ns, obj) in wanted {
        let res = resource(group, plural)?;
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        for _ in 0..5 {
            let stored = match server.registry.get(res, ns.as_deref(), &name).await {
                Ok(v) => Some(v),
                Err(e) if e.code == 404 => None,
                Err(e) => return Err(e),
            };
            let result = match reconcile_operation(stored.as_ref(), &obj) {
                ReconcileOperation::None => Ok(()),
                ReconcileOperation::Create(o) => server.registry.create(res, ns.as_deref(), o, false).await.map(|_| ()),
                ReconcileOperation::Update(o) => {
                    server.registry.update(res, ns.as_deref(), &name, None, o, false).await.map(|_| ())
                }
                ReconcileOperation::Recreate(o) => {
                    let p = crate::registry::DeleteParams::default();
                    server.registry.delete(res, ns.as_deref(), &name, &p).await?;
                    server.registry.create(res, ns.as_deref(), o, false).await.map(|_| ())
                }
            };
            match result {
                Err(e) if e.code == 409 => continue,
                other => {
                    other?;
                    break;
                }
            }
        }
    }
    Ok(())
}

/// The `kube-system/extension-apiserver-authentication` ConfigMap (upstream's ClusterAuthenticationTrust
/// controller): how this apiserver authenticates clients, for the components that delegate authentication to it
/// (kube-controller-manager and kube-scheduler read the client CA and the front-proxy settings from it).
async fn authentication_info(server: &Arc<Apiserver>) -> Result<(), ApiError> {
    let opts = &server.opts;
    let mut data = serde_json::Map::new();
    if let Some(p) = &opts.client_ca_file {
        let pem = std::fs::read_to_string(p).map_err(|e| ApiError::internal(format!("{}: {e}", p.display())))?;
        data.insert("client-ca-file".into(), json!(pem));
    }
    if let Some(rh) = &server.request_header {
        let list = |v: &[String]| json!(serde_json::to_string(v).unwrap_or_default());
        data.insert("requestheader-client-ca-file".into(), json!(rh.ca_pem));
        data.insert("requestheader-allowed-names".into(), list(&rh.allowed_names));
        data.insert("requestheader-extra-headers-prefix".into(), list(&rh.extra_headers_prefix));
        data.insert("requestheader-group-headers".into(), list(&rh.group_headers));
        data.insert("requestheader-username-headers".into(), list(&rh.username_headers));
        data.insert("requestheader-uid-headers".into(), list(&rh.uid_headers));
    }
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"}, "data": data});
    ensure(server, resource("", "configmaps")?, Some("kube-system"), cm, &["data"]).await
}

pub async fn run(server: &Arc<Apiserver>) -> Result<(), ApiError> {
    crate::aggregator::autoregister::run(server).await?;
    let namespaces = resource("", "namespaces")?;
    for ns in SYSTEM_NAMESPACES {
        ensure(
            server,
            namespaces,
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            &[],
        )
        .await?;
    }
    // API Priority and Fairness: the mandatory and suggested FlowSchemas and priority levels.
    crate::flowcontrol::ensure(server).await;
    // The built-in priority classes.
    if let Some(classes) = find("scheduling.k8s.io", "v1", "priorityclasses") {
        for (name, value, what) in [
            (
                "system-node-critical",
                2_000_001_000,
                "Used for system critical pods that must not be moved from their current node.",
            ),
            (
                "system-cluster-critical",
                2_000_000_000,
                "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
            ),
        ] {
            let class = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name}, "value": value, "globalDefault": false,
                "description": what, "preemptionPolicy": "PreemptLowerPriority"});
            ensure(server, classes, None, class, &[]).await?;
        }
    }
    let ip = crate::ipalloc::first_service_ip(&server.opts.service_cluster_ip_range).map_err(ApiError::internal)?;
    let port = server.opts.secure_port;
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
        "spec": {"type": "ClusterIP", "clusterIP": ip.to_string(), "sessionAffinity": "None",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
    });
    ensure(server, resource("", "services")?, Some("default"), service, &[]).await?;
    let addr = server.advertise.to_string();
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": addr}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    ensure(server, resource("", "endpoints")?, Some("default"), endpoints, &["subsets"]).await?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [addr], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    ensure(server, resource("discovery.k8s.io", "endpointslices")?, Some("default"), slice, &["endpoints", "ports"])
        .await?;
    // Start the watch caches every node and controller will watch.
    for (group, plural) in [
        ("", "pods"),
        ("", "nodes"),
        ("", "namespaces"),
        ("", "services"),
        ("", "endpoints"),
        ("discovery.k8s.io", "endpointslices"),
        ("coordination.k8s.io", "leases"),
    ] {
        server.registry.cacher.cache(resource(group, plural)?).await?;
    }
    bootstrap_roles(server).await?;
    authentication_info(server).await?;
    tracing::info!("bootstrap: system namespaces, the kubernetes service and the RBAC bootstrap policy are in place");
    Ok(())
}
