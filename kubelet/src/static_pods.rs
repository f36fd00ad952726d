//! Static pods: manifests in `--pod-manifest-path` run on this node without the API (this is how kubeadm runs the
//! control plane), each with a mirror pod in the API (`kubernetes.io/config.mirror`) that carries its status. The
//! directory is rescanned every second for changes (a cheap stat) and fully every `fileCheckFrequency`; a deleted
//! mirror pod comes back, a removed file stops the pod and removes its mirror. A changed file is a new pod (its
//! UID is the content's hash): the old one is stopped first and the new one starts once it is gone, as upstream's
//! pod workers do for static pods of the same full name (two kube-apiservers must not race for one port).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use client::Client;
use serde_json::{Value, json};

use crate::options::Config;
use crate::pods::PodManager;

pub const ANNOTATION_MIRROR: &str = "kubernetes.io/config.mirror";
pub const ANNOTATION_HASH: &str = "kubernetes.io/config.hash";
pub const ANNOTATION_SOURCE: &str = "kubernetes.io/config.source";

/// A stable 128-bit hash (two FNV-1a lanes) as 32 hex digits, like upstream's md5-based config hash.
fn hash(bytes: &[u8]) -> String {
    let (mut a, mut b): (u64, u64) = (0xcbf29ce484222325, 0x84222325cbf29ce4);
    for x in bytes {
        a = (a ^ *x as u64).wrapping_mul(0x100000001b3);
        b = (b ^ (*x as u64).rotate_left(3)).wrapping_mul(0x100000001b3);
    }
    format!("{a:016x}{b:016x}")
}

/// Whether a pod from the API is a mirror pod (the kubelet runs it from its file, not from the API).
pub fn is_mirror(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations").and_then(|a| a.get(ANNOTATION_MIRROR)).is_some()
}

/// A manifest turned into the pod the kubelet runs: `<name>-<node>`, bound here, with its config hash as UID.
pub fn static_pod(manifest: &[u8], node: &str) -> Result<Value, String> {
    let text = std::str::from_utf8(manifest).map_err(|e| e.to_string())?;
    let mut pod: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    if pod.get("kind").and_then(Value::as_str) != Some("Pod") {
        return Err("not a Pod manifest".into());
    }
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or("the pod has no name")?
        .to_string();
    let uid = hash(&[manifest, node.as_bytes()].concat());
    let meta = pod.get_mut("metadata").and_then(Value::as_object_mut).ok_or("metadata must be an object")?;
    meta.insert("name".into(), json!(format!("{name}-{node}")));
    if meta.get("namespace").and_then(Value::as_str).is_none_or(str::is_empty) {
        meta.insert("namespace".into(), json!("default"));
    }
    meta.insert("uid".into(), json!(uid));
    let ann = meta.entry("annotations").or_insert_with(|| json!({}));
    ann[ANNOTATION_HASH] = json!(uid);
    ann[ANNOTATION_SOURCE] = json!("file");
    pod["spec"]["nodeName"] = json!(node);
    Ok(pod)
}

/// The mirror of a static pod: same name and namespace, marked as a mirror and owned by the Node.
fn mirror(pod: &Value, node_uid: &str, node: &str) -> Value {
    let mut m = pod.clone();
    if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("uid");
        let hash = meta.get("annotations").and_then(|a| a.get(ANNOTATION_HASH)).cloned().unwrap_or_default();
        meta.entry("annotations").or_insert_with(|| json!({}))[ANNOTATION_MIRROR] = hash;
        meta.insert(
            "ownerReferences".into(),
            json!([{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid, "controller": true}]),
        );
    }
    m
}

struct Known {
    uid: String,
    pod: Value,
    modified: SystemTime,
}

fn manifests(dir: &Path) -> BTreeMap<PathBuf, SystemTime> {
    let mut out = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            let ext = p.extension().and_then(|x| x.to_str()).unwrap_or_default();
            let hidden = p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
            if hidden || !matches!(ext, "yaml" | "yml" | "json") {
                continue;
            }
            if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                out.insert(p, m);
            }
        }
    }
    out
}

/// Runs the file source until `stop`.
pub async fn run(manager: Arc<PodManager>, client: Client, cfg: Config, mut stop: tokio::sync::watch::Receiver<bool>) {
    let Some(dir) = cfg.pod_manifest_path.clone() else { return };
    let Ok(pods) = client.api("", "v1", "pods") else { return };
    let Ok(nodes) = client.api("", "v1", "nodes") else { return };
    let mut known: BTreeMap<PathBuf, Known> = BTreeMap::new();
    // Static pods being torn down, by full name (namespace/name) and UID, and the pods waiting for them.
    let mut terminating: Vec<(String, String)> = Vec::new();
    let mut waiting: Vec<(String, Arc<Value>)> = Vec::new();
    let full_name = |pod: &Value| {
        let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default");
        format!("{ns}/{}", pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default())
    };
    let mut first = true;
    let mut last_full = Instant::now() - cfg.file_check_frequency;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let files = manifests(&dir);
        let full = last_full.elapsed() >= cfg.file_check_frequency;
        if full {
            last_full = Instant::now();
        }
        // Removed files: stop the pod, remove the mirror.
        let gone: Vec<PathBuf> = known.keys().filter(|p| !files.contains_key(*p)).cloned().collect();
        for p in gone {
            if let Some(k) = known.remove(&p) {
                tracing::info!(manifest = %p.display(), "static pod removed");
                manager.update(&k.uid, None);
                terminating.push((full_name(&k.pod), k.uid.clone()));
                let ns = k.pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default");
                let name = k.pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
                let _ = pods.clone().namespaced(ns).delete(name, Some(&json!({"gracePeriodSeconds": 0}))).await;
            }
        }
        for (path, modified) in &files {
            let changed = known.get(path).is_none_or(|k| k.modified != *modified);
            if changed || full {
                let Ok(bytes) = std::fs::read(path) else { continue };
                match static_pod(&bytes, &cfg.node_name) {
                    Ok(pod) => {
                        let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_string();
                        let old = known
                            .insert(path.clone(), Known { uid: uid.clone(), pod: pod.clone(), modified: *modified });
                        if let Some(o) = old.filter(|o| o.uid != uid) {
                            tracing::info!(manifest = %path.display(), "static pod changed; replacing it");
                            manager.update(&o.uid, None);
                            terminating.push((full_name(&o.pod), o.uid));
                        }
                        waiting.retain(|(u, _)| *u != uid);
                        waiting.push((uid, Arc::new(pod)));
                    }
                    Err(e) => tracing::warn!(manifest = %path.display(), error = %e, "invalid static pod manifest"),
                }
            }
        }
        // Pods start once no pod of the same full name is still being torn down.
        terminating.retain(|(_, uid)| manager.has_worker(uid));
        waiting.retain(|(uid, pod)| {
            let name = full_name(pod);
            if terminating.iter().any(|(n, _)| *n == name) {
                return true;
            }
            // Still wanted: the file may have changed again or gone meanwhile.
            if known.values().any(|k| k.uid == *uid) {
                manager.update(uid, Some(pod.clone()));
            }
            false
        });
        if first {
            first = false;
            manager.source_ready("file");
        }
        // Mirrors: every static pod has one in the API, with its current hash.
        let node_uid = nodes
            .get(&cfg.node_name)
            .await
            .ok()
            .and_then(|n| n.pointer("/metadata/uid").and_then(Value::as_str).map(String::from));
        let Some(node_uid) = node_uid else { continue };
        for k in known.values() {
            let ns = k.pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default");
            let name = k.pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
            let api = pods.clone().namespaced(ns);
            match api.get(name).await {
                Ok(existing) => {
                    let current = existing
                        .pointer("/metadata/annotations")
                        .and_then(|a| a.get(ANNOTATION_MIRROR))
                        .and_then(Value::as_str);
                    if current != Some(k.uid.as_str()) || existing.pointer("/metadata/deletionTimestamp").is_some() {
                        let _ = api.delete(name, Some(&json!({"gracePeriodSeconds": 0}))).await;
                    }
                }
                // Under the Node authorizer a pod not bound to this node is 403, not 404 (upstream's kubelet sees
                // only its informer's pods): either way there is no mirror of ours, so make one (409 if another
                // node's pod has the name).
                Err(e) if matches!(e.code(), Some(404) | Some(403)) => {
                    match api.create(&mirror(&k.pod, &node_uid, &cfg.node_name)).await {
                        Ok(_) => manager.status_lost(&k.uid),
                        Err(e) => tracing::warn!(pod = name, error = %e, "creating the mirror pod"),
                    }
                }
                Err(e) => tracing::warn!(pod = name, error = %e, "reading the mirror pod"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_become_node_pods_with_stable_uids() {
        let m = b"apiVersion: v1\nkind: Pod\nmetadata: {name: etcd, namespace: kube-system}\nspec:\n  containers: [{name: etcd, image: x}]\n";
        let p = static_pod(m, "n1").unwrap();
        assert_eq!(p["metadata"]["name"], "etcd-n1");
        assert_eq!(p["spec"]["nodeName"], "n1");
        let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
        assert_eq!(uid.len(), 32);
        assert_eq!(static_pod(m, "n1").unwrap()["metadata"]["uid"], uid.as_str());
        assert_ne!(static_pod(m, "n2").unwrap()["metadata"]["uid"], uid.as_str());
        let mir = mirror(&p, "node-uid", "n1");
        assert!(is_mirror(&mir));
        assert!(mir["metadata"].get("uid").is_none());
        assert_eq!(mir["metadata"]["ownerReferences"][0]["kind"], "Node");
        assert!(static_pod(b"kind: Service\nmetadata: {name: x}\n", "n1").is_err());
    }
}
