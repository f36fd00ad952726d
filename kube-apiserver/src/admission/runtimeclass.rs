//! RuntimeClass admission, as upstream's `plugin/pkg/admission/runtimeclass`: a pod created with
//! `spec.runtimeClassName` gets the class's `overhead.podFixed` as `spec.overhead` and its
//! `scheduling.nodeSelector` and `tolerations` merged into its own; a class that does not exist, an overhead the
//! class does not define or that differs from it, and a node selector that contradicts the class's are refused
//! (403) with upstream's messages.

use serde_json::{Value, json};

pub const NAME: &str = "RuntimeClass";

/// Applies the class (None: not found) to the pod; the error is the reason of upstream's Forbidden.
pub fn admit(pod: &mut Value, class_name: &str, class: Option<&Value>) -> Result<(), String> {
    let Some(class) = class else { return Err(format!("pod rejected: RuntimeClass {class_name:?} not found")) };
    // setOverhead / validateOverhead.
    let fixed = class.pointer("/overhead/podFixed").filter(|o| o.as_object().is_some_and(|m| !m.is_empty()));
    let own = pod.pointer("/spec/overhead").filter(|o| o.as_object().is_some_and(|m| !m.is_empty())).cloned();
    match (own, fixed) {
        (Some(_), None) => {
            return Err("pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead".into());
        }
        (Some(own), Some(fixed)) if !same_quantities(&own, fixed) => {
            return Err("pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead".into());
        }
        (None, Some(fixed)) => pod["spec"]["overhead"] = fixed.clone(),
        _ => {}
    }
    // setScheduling: the class's node selector must not contradict the pod's; its tolerations are added.
    if let Some(selector) = class.pointer("/scheduling/nodeSelector").and_then(Value::as_object) {
        let spec = pod["spec"].as_object_mut().ok_or("pod rejected: no spec")?;
        let own = spec.entry("nodeSelector").or_insert_with(|| json!({}));
        let own = own.as_object_mut().ok_or("pod rejected: bad nodeSelector")?;
        for (k, v) in selector {
            match own.get(k) {
                Some(mine) if mine != v => {
                    return Err(format!(
                        "conflict: runtimeClass.scheduling.nodeSelector[{k}] = {}; pod.spec.nodeSelector[{k}] = {}",
                        v.as_str().unwrap_or_default(),
                        mine.as_str().unwrap_or_default()
                    ));
                }
                _ => {
                    own.insert(k.clone(), v.clone());
                }
            }
        }
    }
    if let Some(tolerations) = class.pointer("/scheduling/tolerations").and_then(Value::as_array) {
        let spec = pod["spec"].as_object_mut().ok_or("pod rejected: no spec")?;
        let own = spec.entry("tolerations").or_insert_with(|| json!([]));
        if let Some(own) = own.as_array_mut() {
            for t in tolerations {
                if !own.contains(t) {
                    own.push(t.clone());
                }
            }
        }
    }
    Ok(())
}

/// The same resource quantities, compared by value (`1000m` is `1`).
fn same_quantities(a: &Value, b: &Value) -> bool {
    let parse = |v: &Value| -> std::collections::BTreeMap<String, Option<i128>> {
        v.as_object()
            .into_iter()
            .flatten()
            .map(|(k, q)| (k.clone(), q.as_str().and_then(api_types::quantity::Quantity::parse).map(|q| q.milli)))
            .collect()
    };
    parse(a) == parse(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_scheduling_and_refusals_as_upstream() {
        let class = json!({"metadata": {"name": "kata"}, "handler": "kata",
            "overhead": {"podFixed": {"cpu": "250m", "memory": "120Mi"}},
            "scheduling": {"nodeSelector": {"runtime": "kata"}, "tolerations": [{"key": "kata", "operator": "Exists", "effect": "NoSchedule"}]}});
        let mut pod = json!({"spec": {"runtimeClassName": "kata", "containers": [{"name": "c"}], "nodeSelector": {"disk": "ssd"}}});
        admit(&mut pod, "kata", Some(&class)).unwrap();
        assert_eq!(pod["spec"]["overhead"], json!({"cpu": "250m", "memory": "120Mi"}));
        assert_eq!(pod["spec"]["nodeSelector"], json!({"disk": "ssd", "runtime": "kata"}));
        assert_eq!(pod["spec"]["tolerations"], json!([{"key": "kata", "operator": "Exists", "effect": "NoSchedule"}]));

        assert_eq!(
            admit(&mut json!({"spec": {}}), "missing", None),
            Err("pod rejected: RuntimeClass \"missing\" not found".into())
        );
        let mut own = json!({"spec": {"overhead": {"cpu": "1"}}});
        assert_eq!(
            admit(&mut own, "kata", Some(&class)),
            Err("pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead".into())
        );
        let plain = json!({"handler": "runc"});
        assert_eq!(
            admit(&mut json!({"spec": {"overhead": {"cpu": "1"}}}), "runc", Some(&plain)),
            Err("pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead".into())
        );
        let mut clash = json!({"spec": {"nodeSelector": {"runtime": "gvisor"}}});
        assert_eq!(
            admit(&mut clash, "kata", Some(&class)),
            Err("conflict: runtimeClass.scheduling.nodeSelector[runtime] = kata; pod.spec.nodeSelector[runtime] = gvisor".into())
        );
        let mut same = json!({"spec": {"overhead": {"cpu": "0.25", "memory": "120Mi"}}});
        assert!(admit(&mut same, "kata", Some(&class)).is_ok());
    }
}
