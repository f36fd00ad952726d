//! LimitRanger, as upstream's `plugin/pkg/admission/limitranger`: a pod created in a namespace with LimitRanges gets
//! the `default` limits and `defaultRequest` requests of their Container limits where its containers state none
//! (noted in the `kubernetes.io/limit-ranger` annotation), and a pod (on create) or PersistentVolumeClaim (on
//! create and update) outside a range's `min`, `max` or `maxLimitRequestRatio` is refused (403) with upstream's
//! messages (`maximum cpu usage per Container is 500m, but limit is 1`).

use api_types::quantity::Quantity;
use serde_json::{Map, Value, json};

pub const NAME: &str = "LimitRanger";

/// The annotation naming what the plugin set.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

fn list<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

fn limits(range: &Value) -> impl Iterator<Item = &Value> {
    range.pointer("/spec/limits").and_then(Value::as_array).into_iter().flatten()
}

/// Upstream's `defaultContainerResourceRequirements` and `mergeContainerResources` over every container and init
/// container: a default is set only where the container has none for that resource.
pub fn default_pod(ranges: &[Value], pod: &mut Value) {
    let mut default_requests = Map::new();
    let mut default_limits = Map::new();
    for item in ranges.iter().flat_map(limits).filter(|i| i.get("type").and_then(Value::as_str) == Some("Container")) {
        default_requests.extend(list(item, "defaultRequest").cloned().unwrap_or_default());
        default_limits.extend(list(item, "default").cloned().unwrap_or_default());
    }
    if default_requests.is_empty() && default_limits.is_empty() {
        return;
    }
    let mut notes = Vec::new();
    for (field, name) in [("containers", "container"), ("initContainers", "init container")] {
        let Some(containers) = pod.pointer_mut(&format!("/spec/{field}")).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers {
            let cname = c.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let resources = c.as_object_mut().map(|m| m.entry("resources").or_insert_with(|| json!({})));
            let Some(resources) = resources.and_then(Value::as_object_mut) else { continue };
            let mut set = |key: &str, defaults: &Map<String, Value>| -> Vec<String> {
                let target = resources.entry(key).or_insert_with(|| json!({}));
                let Some(target) = target.as_object_mut() else { return Vec::new() };
                let mut added: Vec<String> =
                    defaults.iter().filter(|(k, _)| !target.contains_key(*k)).map(|(k, _)| k.clone()).collect();
                added.sort();
                for k in &added {
                    target.insert(k.clone(), defaults[k].clone());
                }
                added
            };
            let limits_set = set("limits", &default_limits);
            let requests_set = set("requests", &default_requests);
            for (k, v) in [("limits", &limits_set), ("requests", &requests_set)] {
                if v.is_empty() && resources.get(k).and_then(Value::as_object).is_some_and(Map::is_empty) {
                    resources.remove(k);
                }
            }
            if !requests_set.is_empty() {
                notes.push(format!("{} request for {name} {cname}", requests_set.join(", ")));
            }
            if !limits_set.is_empty() {
                notes.push(format!("{} limit for {name} {cname}", limits_set.join(", ")));
            }
        }
    }
    if !notes.is_empty()
        && let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut)
    {
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        annotations[ANNOTATION] = json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
    }
}

fn quantities(m: Option<&Value>) -> Map<String, Value> {
    m.and_then(Value::as_object).cloned().unwrap_or_default()
}

fn milli(m: &Map<String, Value>, k: &str) -> Option<i128> {
    m.get(k).and_then(Value::as_str).and_then(Quantity::parse).map(|q| q.milli)
}

fn text(v: &Value) -> String {
    v.as_str().and_then(Quantity::parse).map(|q| q.format()).unwrap_or_default()
}

/// Upstream's `minConstraint`, `maxConstraint` and `limitRequestRatioConstraint` of one limit item against the
/// requests and limits of a container, a pod or a claim (`kind`).
fn constraints(
    kind: &str,
    item: &Value,
    requests: &Map<String, Value>,
    limits: &Map<String, Value>,
    errs: &mut Vec<String>,
) {
    for (k, enforced) in list(item, "min").into_iter().flatten() {
        let e = text(enforced);
        let min = Quantity::parse(enforced.as_str().unwrap_or_default()).map_or(0, |q| q.milli);
        match (milli(requests, k), milli(limits, k)) {
            (None, _) => errs.push(format!("minimum {k} usage per {kind} is {e}.  No request is specified")),
            (Some(r), _) if r < min => {
                errs.push(format!("minimum {k} usage per {kind} is {e}, but request is {}", text(&requests[k])))
            }
            (_, Some(l)) if l < min => {
                errs.push(format!("minimum {k} usage per {kind} is {e}, but limit is {}", text(&limits[k])))
            }
            _ => {}
        }
    }
    for (k, enforced) in list(item, "max").into_iter().flatten() {
        let e = text(enforced);
        let max = Quantity::parse(enforced.as_str().unwrap_or_default()).map_or(0, |q| q.milli);
        match (milli(requests, k), milli(limits, k)) {
            (_, None) => errs.push(format!("maximum {k} usage per {kind} is {e}.  No limit is specified")),
            (_, Some(l)) if l > max => {
                errs.push(format!("maximum {k} usage per {kind} is {e}, but limit is {}", text(&limits[k])))
            }
            (Some(r), _) if r > max => {
                errs.push(format!("maximum {k} usage per {kind} is {e}, but request is {}", text(&requests[k])))
            }
            _ => {}
        }
    }
    for (k, enforced) in list(item, "maxLimitRequestRatio").into_iter().flatten() {
        let e = text(enforced);
        let ratio = Quantity::parse(enforced.as_str().unwrap_or_default()).map_or(0, |q| q.milli);
        match (milli(requests, k).filter(|r| *r != 0), milli(limits, k).filter(|l| *l != 0)) {
            (None, _) => errs.push(format!(
                "{k} max limit to request ratio per {kind} is {e}, but no request is specified or request is 0"
            )),
            (_, None) => errs.push(format!(
                "{k} max limit to request ratio per {kind} is {e}, but no limit is specified or limit is 0"
            )),
            (Some(r), Some(l)) => {
                let observed = l as f64 / r as f64;
                if observed * 1000.0 > ratio as f64 {
                    errs.push(format!(
                        "{k} max limit to request ratio per {kind} is {e}, but provided ratio is {observed:.6}"
                    ));
                }
            }
        }
    }
}

/// Sums of resource maps, or the larger of each (init containers run one at a time).
fn combine(into: &mut Map<String, Value>, from: &Map<String, Value>, max: bool) {
    for (k, v) in from {
        let Some(q) = v.as_str().and_then(Quantity::parse) else { continue };
        let cur = into.get(k).and_then(Value::as_str).and_then(Quantity::parse);
        let next = match cur {
            None => q,
            Some(c) if max => {
                if q.milli > c.milli {
                    q
                } else {
                    c
                }
            }
            Some(c) => c.plus(q),
        };
        into.insert(k.clone(), json!(next.format()));
    }
}

/// Upstream's `PodValidateLimitFunc`: Container limits for each container and init container, Pod limits for the
/// pod's total (the containers' sum, or an init container's if larger).
pub fn validate_pod(ranges: &[Value], pod: &Value) -> Result<(), String> {
    let containers =
        |f: &str| pod.pointer(&format!("/spec/{f}")).and_then(Value::as_array).cloned().unwrap_or_default();
    let (regular, init) = (containers("containers"), containers("initContainers"));
    let mut errs = Vec::new();
    for item in ranges.iter().flat_map(limits) {
        match item.get("type").and_then(Value::as_str) {
            Some("Container") => {
                for c in regular.iter().chain(&init) {
                    let req = quantities(c.pointer("/resources/requests"));
                    let lim = quantities(c.pointer("/resources/limits"));
                    constraints("Container", item, &req, &lim, &mut errs);
                }
            }
            Some("Pod") => {
                let (mut req, mut lim) = (Map::new(), Map::new());
                for c in &regular {
                    combine(&mut req, &quantities(c.pointer("/resources/requests")), false);
                    combine(&mut lim, &quantities(c.pointer("/resources/limits")), false);
                }
                for c in &init {
                    combine(&mut req, &quantities(c.pointer("/resources/requests")), true);
                    combine(&mut lim, &quantities(c.pointer("/resources/limits")), true);
                }
                constraints("Pod", item, &req, &lim, &mut errs);
            }
            _ => {}
        }
    }
    aggregate(errs)
}

/// Upstream's `PersistentVolumeClaimValidateLimitFunc`: min and max of `requests.storage` per claim.
pub fn validate_pvc(ranges: &[Value], pvc: &Value) -> Result<(), String> {
    let req = quantities(pvc.pointer("/spec/resources/requests"));
    let mut errs = Vec::new();
    for item in ranges.iter().flat_map(limits) {
        if item.get("type").and_then(Value::as_str) != Some("PersistentVolumeClaim") {
            continue;
        }
        for (k, enforced) in list(item, "min").into_iter().flatten() {
            let min = Quantity::parse(enforced.as_str().unwrap_or_default()).map_or(0, |q| q.milli);
            match milli(&req, k) {
                None => errs.push(format!(
                    "minimum {k} usage per PersistentVolumeClaim is {}.  No request is specified",
                    text(enforced)
                )),
                Some(r) if r < min => errs.push(format!(
                    "minimum {k} usage per PersistentVolumeClaim is {}, but request is {}",
                    text(enforced),
                    text(&req[k])
                )),
                _ => {}
            }
        }
        for (k, enforced) in list(item, "max").into_iter().flatten() {
            let max = Quantity::parse(enforced.as_str().unwrap_or_default()).map_or(0, |q| q.milli);
            match milli(&req, k) {
                None => errs.push(format!(
                    "maximum {k} usage per PersistentVolumeClaim is {}.  No request is specified",
                    text(enforced)
                )),
                Some(r) if r > max => errs.push(format!(
                    "maximum {k} usage per PersistentVolumeClaim is {}, but request is {}",
                    text(enforced),
                    text(&req[k])
                )),
                _ => {}
            }
        }
    }
    aggregate(errs)
}

/// `utilerrors.NewAggregate`: one message, or `[a, b]`.
fn aggregate(errs: Vec<String>) -> Result<(), String> {
    match errs.len() {
        0 => Ok(()),
        1 => Err(errs.into_iter().next().unwrap_or_default()),
        _ => Err(format!("[{}]", errs.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(limits: Value) -> Value {
        json!({"metadata": {"name": "lr"}, "spec": {"limits": limits}})
    }

    /// Upstream's e2e "should create a LimitRange with defaults and ensure pod has those defaults applied".
    #[test]
    fn defaults_fill_only_what_containers_leave_out() {
        let ranges = [range(json!([{"type": "Container",
            "default": {"cpu": "500m", "memory": "500Mi", "ephemeral-storage": "500Gi"},
            "defaultRequest": {"cpu": "100m", "memory": "200Mi", "ephemeral-storage": "200Gi"}}]))];
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a"},
            {"name": "b", "resources": {"requests": {"cpu": "300m"}, "limits": {"cpu": "300m", "memory": "1Gi"}}}]}});
        default_pod(&ranges, &mut pod);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"],
            json!({
            "requests": {"cpu": "100m", "memory": "200Mi", "ephemeral-storage": "200Gi"},
            "limits": {"cpu": "500m", "memory": "500Mi", "ephemeral-storage": "500Gi"}})
        );
        assert_eq!(
            pod["spec"]["containers"][1]["resources"],
            json!({
            "requests": {"cpu": "300m", "memory": "200Mi", "ephemeral-storage": "200Gi"},
            "limits": {"cpu": "300m", "memory": "1Gi", "ephemeral-storage": "500Gi"}})
        );
        assert_eq!(
            pod["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu, ephemeral-storage, memory request for container a; cpu, ephemeral-storage, memory limit for container a; ephemeral-storage, memory request for container b; ephemeral-storage limit for container b"
        );
    }

    #[test]
    fn min_max_and_ratio_refuse_with_upstreams_messages() {
        let ranges =
            [range(json!([{"type": "Container", "min": {"cpu": "50m"}, "max": {"cpu": "500m", "memory": "500Mi"},
            "maxLimitRequestRatio": {"memory": "2"}}]))];
        let pod = |req: Value, lim: Value| json!({"spec": {"containers": [{"name": "c", "resources": {"requests": req, "limits": lim}}]}});
        assert_eq!(
            validate_pod(
                &ranges,
                &pod(json!({"cpu": "100m", "memory": "100Mi"}), json!({"cpu": "200m", "memory": "200Mi"}))
            ),
            Ok(())
        );
        assert_eq!(
            validate_pod(
                &ranges,
                &pod(json!({"cpu": "100m", "memory": "100Mi"}), json!({"cpu": "1", "memory": "200Mi"}))
            ),
            Err("maximum cpu usage per Container is 500m, but limit is 1".into())
        );
        assert_eq!(
            validate_pod(&ranges, &pod(json!({"cpu": "10m", "memory": "100Mi"}), json!({"cpu": "200m", "memory": "300Mi"}))),
            Err("[minimum cpu usage per Container is 50m, but request is 10m, memory max limit to request ratio per Container is 2, but provided ratio is 3.000000]".into())
        );
        assert_eq!(
            validate_pod(&ranges, &pod(json!({"cpu": "100m", "memory": "100Mi"}), json!({"cpu": "200m"}))),
            Err("[maximum memory usage per Container is 500Mi.  No limit is specified, memory max limit to request ratio per Container is 2, but no limit is specified or limit is 0]".into())
        );
        let pods = [range(json!([{"type": "Pod", "max": {"cpu": "1"}}]))];
        let two = json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "600m"}}}, {"name": "b", "resources": {"limits": {"cpu": "600m"}}}]}});
        assert_eq!(validate_pod(&pods, &two), Err("maximum cpu usage per Pod is 1, but limit is 1200m".into()));
        let claims =
            [range(json!([{"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "5Gi"}}]))];
        let pvc = |s: &str| json!({"spec": {"resources": {"requests": {"storage": s}}}});
        assert_eq!(validate_pvc(&claims, &pvc("2Gi")), Ok(()));
        assert_eq!(
            validate_pvc(&claims, &pvc("500Mi")),
            Err("minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi".into())
        );
    }
}
