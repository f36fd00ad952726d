//! The ServiceAccount admission plugin, as upstream's `plugin/pkg/admission/serviceaccount`: a new pod runs as
//! `spec.serviceAccountName` (default `default`), which must exist; unless automounting is turned off (on the pod,
//! or on the account when the pod does not say), every container mounts the `kube-api-access-<random>` projected
//! volume (a bound token, the cluster CA and the namespace) at `/var/run/secrets/kubernetes.io/serviceaccount`.
//! Mirror pods may not use service accounts, secrets or projected tokens.

use api_types::ApiError;
use serde_json::{Value, json};

use crate::authorization::new_forbidden;

pub const NAME: &str = "ServiceAccount";
pub const DEFAULT_ACCOUNT: &str = "default";
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
pub const VOLUME_PREFIX: &str = "kube-api-access-";
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Upstream's `WarnOnlyBoundTokenExpirationSeconds`.
pub const TOKEN_EXPIRATION: u64 = 3607;

fn is_mirror(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations").and_then(|a| a.get(MIRROR_ANNOTATION)).is_some()
}

/// The projected volume upstream adds (`createVolume`).
pub fn token_volume(name: &str) -> Value {
    json!({"name": name, "projected": {"sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
    ], "defaultMode": 420}})
}

/// Refuses what a mirror pod may not use (upstream's `checkMirrorPod...`), naming the pod.
fn check_mirror(pod: &Value, name: &str) -> Result<(), ApiError> {
    let forbidden = |why: &str| new_forbidden("", "pods", name, why);
    if pod.pointer("/spec/serviceAccountName").and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
        return Err(forbidden("a mirror pod may not reference service accounts"));
    }
    for v in pod.pointer("/spec/volumes").and_then(Value::as_array).into_iter().flatten() {
        if v.get("secret").is_some() {
            return Err(forbidden("a mirror pod may not reference secrets"));
        }
        let sources = v.pointer("/projected/sources").and_then(Value::as_array).into_iter().flatten();
        for s in sources {
            if s.get("secret").is_some() {
                return Err(forbidden("a mirror pod may not reference secrets"));
            }
            if s.get("serviceAccountToken").is_some() {
                return Err(forbidden("a mirror pod may not use ServiceAccountToken volume projections"));
            }
        }
    }
    Ok(())
}

/// Mutates a new pod; `account` is its service account as stored (None: it does not exist).
pub fn admit(pod: &mut Value, namespace: &str, account: Option<&Value>) -> Result<(), ApiError> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    if is_mirror(pod) {
        return check_mirror(pod, &name);
    }
    let sa_name = wanted_account(pod);
    let Some(account) = account else {
        return Err(new_forbidden(
            "",
            "pods",
            &name,
            &format!("error looking up service account {namespace}/{sa_name}: serviceaccount {sa_name:?} not found"),
        ));
    };
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    spec.insert("serviceAccountName".into(), json!(sa_name));
    let automount = match spec.get("automountServiceAccountToken").and_then(Value::as_bool) {
        Some(b) => b,
        None => account.get("automountServiceAccountToken").and_then(Value::as_bool).unwrap_or(true),
    };
    if !automount {
        return Ok(());
    }
    let volumes = spec.get("volumes").and_then(Value::as_array).cloned().unwrap_or_default();
    let existing = volumes
        .iter()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .find(|n| n.starts_with(VOLUME_PREFIX))
        .map(str::to_string);
    let volume_name = existing.clone().unwrap_or_else(|| format!("{VOLUME_PREFIX}{}", crate::strategy::name_suffix()));
    let mount = json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needed = false;
    for kind in ["initContainers", "containers"] {
        for c in spec.get_mut(kind).and_then(Value::as_array_mut).into_iter().flatten() {
            let mounts = c.as_object_mut().map(|c| c.entry("volumeMounts").or_insert(json!([])));
            let Some(mounts) = mounts.and_then(Value::as_array_mut) else { continue };
            if !mounts.iter().any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH)) {
                mounts.push(mount.clone());
                needed = true;
            }
        }
    }
    if existing.is_none() && needed {
        let vols = spec.entry("volumes").or_insert(json!([]));
        if let Some(v) = vols.as_array_mut() {
            v.push(token_volume(&volume_name));
        }
    }
    Ok(())
}

/// The service account a pod asks for (`serviceAccountName`, the deprecated `serviceAccount`, else `default`).
pub fn wanted_account(pod: &Value) -> String {
    ["/spec/serviceAccountName", "/spec/serviceAccount"]
        .iter()
        .find_map(|p| pod.pointer(p).and_then(Value::as_str).filter(|s| !s.is_empty()))
        .unwrap_or(DEFAULT_ACCOUNT)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn mounts_the_token_volume_in_every_container() {
        let mut p = pod(json!({"initContainers": [{"name": "i"}], "containers": [{"name": "a"},
            {"name": "b", "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]}]}));
        admit(&mut p, "ns", Some(&json!({}))).unwrap();
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        let vols = p["spec"]["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 1);
        let name = vols[0]["name"].as_str().unwrap();
        assert!(name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5, "{name}");
        assert_eq!(vols[0], token_volume(name));
        assert_eq!(vols[0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"], 3607);
        let want = json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
        assert_eq!(p["spec"]["initContainers"][0]["volumeMounts"], json!([want]));
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"], json!([want]));
        // A container that mounts something at the path keeps its own.
        assert_eq!(p["spec"]["containers"][1]["volumeMounts"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn automount_switches_and_missing_accounts() {
        let mut p = pod(json!({"automountServiceAccountToken": false, "containers": [{"name": "a"}]}));
        admit(&mut p, "ns", Some(&json!({}))).unwrap();
        assert!(p["spec"].get("volumes").is_none());
        let mut p = pod(json!({"serviceAccountName": "robot", "containers": [{"name": "a"}]}));
        admit(&mut p, "ns", Some(&json!({"automountServiceAccountToken": false}))).unwrap();
        assert!(p["spec"].get("volumes").is_none());
        // The pod's own setting wins over the account's.
        let mut p = pod(json!({"automountServiceAccountToken": true, "containers": [{"name": "a"}]}));
        admit(&mut p, "ns", Some(&json!({"automountServiceAccountToken": false}))).unwrap();
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
        let mut p = pod(json!({"serviceAccountName": "ghost", "containers": [{"name": "a"}]}));
        let e = admit(&mut p, "ns", None).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            r#"pods "p" is forbidden: error looking up service account ns/ghost: serviceaccount "ghost" not found"#
        );
    }

    #[test]
    fn mirror_pods_may_not_use_accounts_or_secrets() {
        let mirror =
            |spec: Value| json!({"metadata": {"name": "m", "annotations": {MIRROR_ANNOTATION: "x"}}, "spec": spec});
        let mut ok = mirror(json!({"containers": [{"name": "a"}]}));
        admit(&mut ok, "ns", None).unwrap();
        assert!(ok["spec"].get("volumes").is_none() && ok["spec"].get("serviceAccountName").is_none());
        let mut bad = mirror(json!({"serviceAccountName": "x", "containers": []}));
        assert!(admit(&mut bad, "ns", None).unwrap_err().message.contains("may not reference service accounts"));
        let mut bad = mirror(json!({"volumes": [{"name": "s", "secret": {"secretName": "x"}}], "containers": []}));
        assert!(admit(&mut bad, "ns", None).unwrap_err().message.contains("may not reference secrets"));
    }
}
