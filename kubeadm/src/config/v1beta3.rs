//! `kubeadm.k8s.io/v1beta3` to v1beta4 (upstream's `v1beta4/conversion.go`): `extraArgs` and `kubeletExtraArgs`
//! maps become `{name, value}` lists (sorted by name, as upstream's conversion), `discovery.timeout` moves to
//! `timeouts.discovery`, and `apiServer.timeoutForControlPlane` (gone in v1beta4) is dropped.

use serde_json::{Value, json};

fn args_map_to_list(v: &mut Value) {
    if let Some(map) = v.as_object() {
        let mut list: Vec<(String, String)> = map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
            .collect();
        list.sort();
        *v = Value::Array(list.into_iter().map(|(name, value)| json!({"name": name, "value": value})).collect());
    }
}

/// Converts one v1beta3 document (any kind) to v1beta4.
pub fn convert(mut v: Value) -> Value {
    v["apiVersion"] = Value::String(super::GROUP_VERSION.into());
    for ptr in [
        "/apiServer/extraArgs",
        "/controllerManager/extraArgs",
        "/scheduler/extraArgs",
        "/etcd/local/extraArgs",
        "/nodeRegistration/kubeletExtraArgs",
    ] {
        if let Some(a) = v.pointer_mut(ptr) {
            args_map_to_list(a);
        }
    }
    if let Some(api) = v.get_mut("apiServer").and_then(Value::as_object_mut) {
        api.remove("timeoutForControlPlane");
    }
    if let Some(t) = v.get_mut("discovery").and_then(Value::as_object_mut).and_then(|d| d.remove("timeout")) {
        v["timeouts"]["discovery"] = t;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_maps_and_timeouts() {
        let v = convert(json!({
            "apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "JoinConfiguration",
            "nodeRegistration": {"kubeletExtraArgs": {"v": "4", "node-labels": "a=b"}},
            "discovery": {"timeout": "1m0s"},
        }));
        assert_eq!(v["apiVersion"], "kubeadm.k8s.io/v1beta4");
        assert_eq!(
            v["nodeRegistration"]["kubeletExtraArgs"],
            json!([{"name": "node-labels", "value": "a=b"}, {"name": "v", "value": "4"}])
        );
        assert_eq!(v["timeouts"]["discovery"], "1m0s");
        assert!(v["discovery"].get("timeout").is_none());
    }
}
