//! Where the Corefile comes from and how changes reach the server: a file (`-conf`, re-read every `reload`
//! interval when the `reload` plugin is on) or the `Corefile` key of a ConfigMap watched through the API (each
//! change applied at once when `reload` is on). A configuration that fails to load is logged with its error and
//! counted in `coredns_reload_failed_total`; the running one keeps serving.

use std::sync::Arc;
use std::time::Duration;

use runtime::{InformerParams, Notification, SharedInformerFactory};
use serde_json::Value;
use tokio::sync::watch;

use crate::BoxError;
use crate::server::Instance;

/// Applies a changed Corefile, keeping the old one on failure.
pub async fn reload(instance: &Instance, text: &str, file: &str) -> bool {
    match instance.apply(text, file).await {
        Ok(()) => {
            tracing::info!("plugin/reload: running configuration from {file} reloaded");
            true
        }
        Err(e) => {
            crate::metrics::metrics().reload_failed.inc();
            tracing::error!(
                "plugin/reload: corefile changes not applied, the previous configuration keeps serving: {e}"
            );
            false
        }
    }
}

fn jittered(interval: Duration, jitter: Duration) -> Duration {
    interval + jitter.mul_f64(rand::random::<f64>())
}

/// Serves the Corefile at `path` until `stop`.
pub async fn run_file(instance: Arc<Instance>, path: &str, mut stop: watch::Receiver<bool>) -> Result<(), BoxError> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    instance.apply(&text, path).await?;
    tracing::info!("serving the configuration in {path}");
    let mut current = text;
    loop {
        let wait = instance.settings().and_then(|s| s.reload).map(|(i, j)| jittered(i, j));
        tokio::select! {
            _ = runtime::daemon::stopped(stop.clone()) => return Ok(()),
            _ = stop.changed() => if *stop.borrow() { return Ok(()) },
            _ = tokio::time::sleep(wait.unwrap_or(Duration::from_secs(3600))), if wait.is_some() => {
                let Ok(text) = std::fs::read_to_string(path) else { continue };
                if text != current {
                    reload(&instance, &text, path).await;
                    current = text;
                }
            }
        }
    }
}

/// Serves the Corefile held in a ConfigMap (`namespace/name`, key `key`) until `stop`.
pub async fn run_configmap(
    instance: Arc<Instance>,
    configmap: &str,
    key: &str,
    stop: watch::Receiver<bool>,
) -> Result<(), BoxError> {
    let (ns, name) =
        configmap.split_once('/').ok_or_else(|| format!("-configmap {configmap:?}: want namespace/name"))?;
    let cfg = instance.env.client.clone().ok_or("no API client configuration")?;
    let client = client::Client::new(&cfg)?;
    let factory = SharedInformerFactory::new(client);
    let informer = factory.informer_for(
        "",
        "v1",
        "configmaps",
        InformerParams::all().namespace(ns).fields(&format!("metadata.name={name}")),
    )?;
    let mut events = informer.subscribe();
    let file = format!("configmap {configmap}");
    let mut current: Option<String> = None;
    tracing::info!("waiting for the Corefile in {file} (key {key})");
    loop {
        let n = tokio::select! {
            _ = runtime::daemon::stopped(stop.clone()) => break,
            n = events.recv() => match n { Some(n) => n, None => break },
        };
        let text = match &n {
            Notification::Added(o) | Notification::Updated { new: o, .. } => {
                o.pointer(&format!("/data/{}", key.replace('~', "~0").replace('/', "~1"))).and_then(Value::as_str)
            }
            Notification::Resync(_) => continue,
            Notification::Deleted(_) => {
                tracing::warn!("{file} was deleted; the running configuration keeps serving");
                continue;
            }
        };
        let Some(text) = text else {
            tracing::error!("{file} has no key {key:?}");
            continue;
        };
        if current.as_deref() == Some(text) {
            continue;
        }
        if current.is_none() {
            match instance.apply(text, &file).await {
                Ok(()) => tracing::info!("serving the configuration in {file}"),
                Err(e) => {
                    crate::metrics::metrics().reload_failed.inc();
                    tracing::error!("{e}");
                    continue;
                }
            }
        } else if instance.settings().is_some_and(|s| s.reload.is_some()) {
            reload(&instance, text, &file).await;
        } else {
            tracing::warn!("{file} changed but the reload plugin is not enabled; restart to apply it");
        }
        current = Some(text.to_string());
    }
    factory.shutdown();
    Ok(())
}
