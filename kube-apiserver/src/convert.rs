//! Conversion between served versions that share storage, as upstream's conversion functions: events are stored
//! as core/v1 Events and served also as events.k8s.io/v1; HorizontalPodAutoscalers are stored as autoscaling/v2 and
//! served also as autoscaling/v1; custom resources with conversion `None` differ between versions only in apiVersion.

use api_types::Resource;
use serde_json::{Map, Value, json};

fn is_events_v1(res: &Resource) -> bool {
    res.group == "events.k8s.io"
}

fn is_hpa_v1(res: &Resource) -> bool {
    res.group == "autoscaling" && res.version == "v1"
}

/// Whether objects of this resource may be stored in another version's shape (a custom resource may have been
/// written through another served version: conversion `None` changes only its apiVersion).
pub fn converts(res: &Resource) -> bool {
    is_events_v1(res) || is_hpa_v1(res) || res.custom
}

/// The resource whose shape the objects are stored in (itself, unless it converts).
pub fn storage_resource(res: &'static Resource) -> &'static Resource {
    let stored = if is_events_v1(res) {
        api_types::resources::find("", "v1", "events")
    } else if is_hpa_v1(res) {
        api_types::resources::find("autoscaling", "v2", "horizontalpodautoscalers")
    } else {
        None
    };
    stored.unwrap_or(res)
}

/// Renames top-level fields (`from` -> `to`) and moves the rest as they are.
fn rename(obj: &Value, pairs: &[(&str, &str)], api_version: &str) -> Value {
    let mut out = Map::new();
    let Some(src) = obj.as_object() else { return obj.clone() };
    for (k, v) in src {
        let key = pairs.iter().find(|(from, _)| from == k).map(|(_, to)| *to).unwrap_or(k.as_str());
        out.insert(key.to_string(), v.clone());
    }
    out.insert("apiVersion".into(), json!(api_version));
    Value::Object(out)
}

/// core/v1 field -> events.k8s.io/v1 field.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn swap(pairs: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    pairs.iter().map(|(a, b)| (*b, *a)).collect()
}

/// The object as the client's version shows it (from the stored shape).
pub fn to_external(res: &Resource, obj: Value) -> Value {
    if is_events_v1(res) {
        return rename(&obj, EVENT_FIELDS, "events.k8s.io/v1");
    }
    if is_hpa_v1(res) {
        return hpa_v2_to_v1(&obj);
    }
    if res.custom && obj.get("apiVersion").and_then(Value::as_str) != Some(&res.api_version()) {
        let mut obj = obj;
        obj["apiVersion"] = json!(res.api_version());
        return obj;
    }
    obj
}

/// The object in the stored shape (from the client's version).
pub fn to_internal(res: &Resource, obj: Value) -> Value {
    if is_events_v1(res) {
        let mut v = rename(&obj, &swap(EVENT_FIELDS), "v1");
        v["kind"] = json!("Event");
        return v;
    }
    if is_hpa_v1(res) {
        return hpa_v1_to_v2(&obj);
    }
    obj
}

/// autoscaling/v2 -> v1: the CPU utilization metric becomes targetCPUUtilizationPercentage.
fn hpa_v2_to_v1(obj: &Value) -> Value {
    let mut out = obj.clone();
    out["apiVersion"] = json!("autoscaling/v1");
    let cpu = obj
        .pointer("/spec/metrics")
        .and_then(Value::as_array)
        .and_then(|ms| ms.iter().find(|m| m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")));
    if let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("metrics");
        spec.remove("behavior");
        if let Some(u) = cpu.and_then(|m| m.pointer("/resource/target/averageUtilization")) {
            spec.insert("targetCPUUtilizationPercentage".into(), u.clone());
        }
    }
    let current = obj
        .pointer("/status/currentMetrics")
        .and_then(Value::as_array)
        .and_then(|ms| ms.iter().find(|m| m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")));
    if let Some(status) = out.get_mut("status").and_then(Value::as_object_mut) {
        status.remove("currentMetrics");
        status.remove("conditions");
        if let Some(u) = current.and_then(|m| m.pointer("/resource/current/averageUtilization")) {
            status.insert("currentCPUUtilizationPercentage".into(), u.clone());
        }
    }
    out
}

/// autoscaling/v1 -> v2: targetCPUUtilizationPercentage becomes a CPU Resource metric.
fn hpa_v1_to_v2(obj: &Value) -> Value {
    let mut out = obj.clone();
    out["apiVersion"] = json!("autoscaling/v2");
    if let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut)
        && let Some(t) = spec.remove("targetCPUUtilizationPercentage")
    {
        spec.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": t}}}]),
        );
    }
    if let Some(status) = out.get_mut("status").and_then(Value::as_object_mut)
        && let Some(c) = status.remove("currentCPUUtilizationPercentage")
    {
        status.insert(
            "currentMetrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": c}}}]),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_between_versions() {
        let res = api_types::resources::find("events.k8s.io", "v1", "events").unwrap();
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p"},
                          "message": "hi", "reason": "Started", "count": 2, "source": {"component": "kubelet"}, "type": "Normal"});
        let ext = to_external(res, core.clone());
        assert_eq!(ext["apiVersion"], "events.k8s.io/v1");
        assert_eq!(ext["regarding"]["name"], "p");
        assert_eq!(ext["note"], "hi");
        assert_eq!(ext["deprecatedCount"], 2);
        assert_eq!(ext["deprecatedSource"]["component"], "kubelet");
        assert_eq!(to_internal(res, ext), core);
    }

    #[test]
    fn hpa_cpu_target_converts() {
        let res = api_types::resources::find("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
                        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 80}});
        let v2 = to_internal(res, v1.clone());
        assert_eq!(v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 80);
        assert_eq!(to_external(res, v2), v1);
    }
}
