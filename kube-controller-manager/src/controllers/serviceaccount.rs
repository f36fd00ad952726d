//! `serviceaccount`: a `default` ServiceAccount in every active namespace, recreated if deleted.
//! `root-ca-cert-publisher`: the `kube-root-ca.crt` ConfigMap (key `ca.crt`) in every active namespace, kept equal
//! to the cluster CA.

use std::sync::Arc;

use runtime::{Action, Controller, Notification};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{BoxError, Context, stopped};

fn active(ns: &Value) -> bool {
    ns.pointer("/status/phase").and_then(Value::as_str) != Some("Terminating")
        && ns.pointer("/metadata/deletionTimestamp").is_none()
}

/// Maps an object in a namespace to that namespace's key.
fn namespace_of(n: &Notification) -> Vec<String> {
    vec![runtime::namespace(n.object()).to_string()]
}

pub async fn run(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let namespaces = ctx.informer("", "v1", "namespaces");
    let accounts = ctx.informer("", "v1", "serviceaccounts");
    let c = ctx.clone();
    Controller::new(runtime::controller::Config { workers: 2, ..Default::default() })
        .watches(&namespaces, |n| vec![runtime::name(n.object()).to_string()])
        .watches(&accounts, |n| match n {
            Notification::Deleted(o) if runtime::name(o) == "default" => namespace_of(n),
            _ => vec![],
        })
        .run(
            move |ns: String| {
                let (c, namespaces, accounts) = (c.clone(), namespaces.clone(), accounts.clone());
                async move {
                    let Some(n) = namespaces.store().get("", &ns) else { return Ok::<_, BoxError>(Action::Done) };
                    if !active(&n) || accounts.store().get(&ns, "default").is_some() {
                        return Ok(Action::Done);
                    }
                    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}});
                    match c.api("", "v1", "serviceaccounts").namespaced(&ns).create(&sa).await {
                        Ok(_) => tracing::debug!(namespace = %ns, "created the default service account"),
                        // Already there, or the namespace is going away.
                        Err(e) if matches!(e.code(), Some(409 | 403 | 404)) => {}
                        Err(e) => return Err(e.into()),
                    }
                    Ok(Action::Done)
                }
            },
            stopped(stop),
        )
        .await;
}

pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";

pub async fn run_root_ca_publisher(ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let Some(ca) = ctx.root_ca.clone() else {
        tracing::warn!("root-ca-cert-publisher: no cluster CA known (--root-ca-file); not publishing");
        return;
    };
    let namespaces = ctx.informer("", "v1", "namespaces");
    let configmaps = ctx.informer("", "v1", "configmaps");
    let c = ctx.clone();
    Controller::new(runtime::controller::Config { workers: 2, ..Default::default() })
        .watches(&namespaces, |n| vec![runtime::name(n.object()).to_string()])
        .watches(&configmaps, |n| {
            if runtime::name(n.object()) == ROOT_CA_CONFIGMAP { namespace_of(n) } else { vec![] }
        })
        .run(
            move |ns: String| {
                let (c, namespaces, configmaps, ca) = (c.clone(), namespaces.clone(), configmaps.clone(), ca.clone());
                async move {
                    let Some(n) = namespaces.store().get("", &ns) else { return Ok::<_, BoxError>(Action::Done) };
                    if !active(&n) {
                        return Ok(Action::Done);
                    }
                    let api = c.api("", "v1", "configmaps").namespaced(&ns);
                    let want = json!({"ca.crt": ca});
                    let result = match configmaps.store().get(&ns, ROOT_CA_CONFIGMAP) {
                        Some(cm) if cm.get("data") == Some(&want) => return Ok(Action::Done),
                        Some(cm) => {
                            let mut cm = (*cm).clone();
                            cm["data"] = want;
                            api.replace(ROOT_CA_CONFIGMAP, &cm).await.map(|_| ())
                        }
                        None => {
                            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": ns,
                                    "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                                "data": want});
                            api.create(&cm).await.map(|_| ())
                        }
                    };
                    match result {
                        Ok(()) => Ok(Action::Done),
                        Err(e) if matches!(e.code(), Some(409 | 403 | 404)) => Ok(Action::Done),
                        Err(e) => Err(e.into()),
                    }
                }
            },
            stopped(stop),
        )
        .await;
}
