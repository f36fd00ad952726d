//! Defaulting of built-in kinds, as upstream's `SetDefaults_*` functions (pkg/apis/*/v1/defaults.go): what
//! a field reads as when the client leaves it out. Applied on create and update; never overrides a given value.

use api_types::Resource;
use serde_json::{Map, Value, json};

fn obj_at<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let o = v.as_object_mut()?;
    let e = o.entry(key).or_insert_with(|| json!({}));
    if e.is_null() {
        *e = json!({});
    }
    e.as_object_mut()
}

fn default(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.into(), value);
    }
}

/// Applies the kind's defaults to a whole object.
pub fn apply(res: &Resource, obj: &mut Value, creating: bool) {
    match (res.group, res.kind) {
        ("", "Pod") => {
            if creating {
                // (On create only: stored pods written before this default must still update unchanged.)
                requests_from_limits(obj);
            }
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec(spec);
            }
            if creating {
                if let Some(spec) = obj.get_mut("spec") {
                    default_toleration_seconds(spec);
                }
                let qos = qos_class(obj.get("spec").unwrap_or(&Value::Null));
                obj["status"] = json!({"phase": "Pending", "qosClass": qos});
            }
        }
        ("", "Namespace") => {
            if creating {
                if let Some(spec) = obj_at(obj, "spec") {
                    default(spec, "finalizers", json!(["kubernetes"]));
                }
                obj["status"] = json!({"phase": "Active"});
            }
            // The name label upstream adds to every namespace.
            let name = obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
            if let Some(meta) = obj_at(obj, "metadata")
                && let Some(labels) = obj_at_map(meta, "labels")
            {
                labels.insert("kubernetes.io/metadata.name".into(), name);
            }
        }
        ("", "Service") => {
            if let Some(spec) = obj_at(obj, "spec") {
                service_spec(spec);
            }
            if creating {
                obj["status"] = json!({"loadBalancer": {}});
            }
        }
        ("", "Secret") => {
            if let Some(o) = obj.as_object_mut() {
                default(o, "type", json!("Opaque"));
                // stringData is write-only: merged into data (base64), as upstream's conversion does.
                if let Some(Value::Object(sd)) = o.remove("stringData") {
                    use base64::Engine;
                    let data = o.entry("data").or_insert_with(|| json!({}));
                    if let Some(d) = data.as_object_mut() {
                        for (k, v) in sd {
                            let text = v.as_str().unwrap_or_default();
                            d.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(text)));
                        }
                    }
                }
            }
        }
        ("", "ReplicationController") => {
            if let Some(spec) = obj_at(obj, "spec") {
                default(spec, "replicas", json!(1));
            }
            template(obj, "/spec/template");
        }
        ("", "PodTemplate") => template(obj, "/template"),
        ("", "PersistentVolumeClaim") => {
            if let Some(spec) = obj_at(obj, "spec") {
                default(spec, "volumeMode", json!("Filesystem"));
            }
            if creating {
                obj["status"] = json!({"phase": "Pending"});
            }
        }
        ("", "LimitRange") => {
            for item in obj.pointer_mut("/spec/limits").and_then(Value::as_array_mut).into_iter().flatten() {
                limit_range_item(item);
            }
        }
        ("", "PersistentVolume") => {
            if let Some(spec) = obj_at(obj, "spec") {
                default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
                default(spec, "volumeMode", json!("Filesystem"));
            }
            if creating {
                obj["status"] = json!({"phase": "Pending"});
            }
        }
        ("apps", "Deployment") => {
            if let Some(spec) = obj_at(obj, "spec") {
                default(spec, "replicas", json!(1));
                default(spec, "revisionHistoryLimit", json!(10));
                default(spec, "progressDeadlineSeconds", json!(600));
                if let Some(strategy) = obj_at_map(spec, "strategy") {
                    default(strategy, "type", json!("RollingUpdate"));
                    if strategy.get("type") == Some(&json!("RollingUpdate"))
                        && let Some(ru) = obj_at_map(strategy, "rollingUpdate")
                    {
                        default(ru, "maxUnavailable", json!("25%"));
                        default(ru, "maxSurge", json!("25%"));
                    }
                }
            }
            template(obj, "/spec/template");
        }
        ("apps", "ReplicaSet") => {
            if let Some(spec) = obj_at(obj, "spec") {
                default(spec, "replicas", json!(1));
            }
            template(obj, "/spec/template");
        }
        ("apps", "StatefulSet") => {
            if let Some(spec) = obj_at(obj, "spec") {
                default(spec, "replicas", json!(1));
                default(spec, "podManagementPolicy", json!("OrderedReady"));
                default(spec, "revisionHistoryLimit", json!(10));
                default(
                    spec,
                    "persistentVolumeClaimRetentionPolicy",
                    json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                );
                if let Some(strategy) = obj_at_map(spec, "updateStrategy") {
                    default(strategy, "type", json!("RollingUpdate"));
                    if strategy.get("type") == Some(&json!("RollingUpdate"))
                        && let Some(ru) = obj_at_map(strategy, "rollingUpdate")
                    {
                        default(ru, "partition", json!(0));
                    }
                }
            }
            template(obj, "/spec/template");
        }
        ("apps", "DaemonSet") => {
            if let Some(spec) = obj_at(obj, "spec") {
                default(spec, "revisionHistoryLimit", json!(10));
                if let Some(strategy) = obj_at_map(spec, "updateStrategy") {
                    default(strategy, "type", json!("RollingUpdate"));
                    if strategy.get("type") == Some(&json!("RollingUpdate"))
                        && let Some(ru) = obj_at_map(strategy, "rollingUpdate")
                    {
                        default(ru, "maxUnavailable", json!(1));
                        default(ru, "maxSurge", json!(0));
                    }
                }
            }
            template(obj, "/spec/template");
        }
        ("batch", "Job") => {
            if let Some(spec) = obj_at(obj, "spec") {
                job_spec(spec);
            }
            template(obj, "/spec/template");
        }
        ("batch", "CronJob") => {
            if let Some(spec) = obj_at(obj, "spec") {
                default(spec, "concurrencyPolicy", json!("Allow"));
                default(spec, "suspend", json!(false));
                default(spec, "successfulJobsHistoryLimit", json!(3));
                default(spec, "failedJobsHistoryLimit", json!(1));
            }
            if let Some(spec) = obj.pointer_mut("/spec/jobTemplate/spec").and_then(Value::as_object_mut) {
                job_spec(spec);
            }
            template(obj, "/spec/jobTemplate/spec/template");
        }
        ("flowcontrol.apiserver.k8s.io", kind) => crate::flowcontrol::default(kind, obj),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => {
            if let Some(spec) = obj_at(obj, "spec") {
                default(spec, "failurePolicy", json!("Fail"));
                if let Some(mc) = spec.get_mut("matchConstraints").and_then(Value::as_object_mut) {
                    match_resources(mc);
                }
            }
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => {
            if let Some(spec) = obj_at(obj, "spec") {
                if let Some(mr) = spec.get_mut("matchResources").and_then(Value::as_object_mut) {
                    match_resources(mr);
                }
                if let Some(pr) = spec.get_mut("paramRef").and_then(Value::as_object_mut) {
                    default(pr, "parameterNotFoundAction", json!("Deny"));
                }
            }
        }
        _ => {}
    }
}

/// upstream `SetDefaults_MatchResources` and `SetDefaults_Rule` (admissionregistration/v1).
/// Upstream's `SetDefaults_Pod`: a container (or init container) with a limit but no request for a resource gets
/// the limit as its request (pods only, not templates).
pub fn requests_from_limits(pod: &mut Value) {
    for list in ["containers", "initContainers"] {
        for c in pod.pointer_mut(&format!("/spec/{list}")).and_then(Value::as_array_mut).into_iter().flatten() {
            let Some(limits) = c.pointer("/resources/limits").and_then(Value::as_object).cloned() else { continue };
            let Some(resources) = c.get_mut("resources").and_then(Value::as_object_mut) else { continue };
            let requests = resources.entry("requests").or_insert_with(|| json!({}));
            if let Some(requests) = requests.as_object_mut() {
                for (k, v) in limits {
                    requests.entry(k).or_insert(v);
                }
            }
            if resources.get("requests").and_then(Value::as_object).is_some_and(Map::is_empty) {
                resources.remove("requests");
            }
        }
    }
}

/// Upstream's `SetDefaults_LimitRangeItem`: for a Container limit, the default limit is the max where unset, the
/// default request the default limit, else the min.
fn limit_range_item(item: &mut Value) {
    if item.get("type").and_then(Value::as_str) != Some("Container") {
        return;
    }
    let list = |item: &Value, k: &str| item.get(k).and_then(Value::as_object).cloned().unwrap_or_default();
    let (max, min) = (list(item, "max"), list(item, "min"));
    let mut default = list(item, "default");
    for (k, v) in &max {
        default.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let mut request = list(item, "defaultRequest");
    for (k, v) in default.iter().chain(&min) {
        request.entry(k.clone()).or_insert_with(|| v.clone());
    }
    // (Empty maps are left out, as Go's omitempty writes them.)
    if !default.is_empty() {
        item["default"] = Value::Object(default);
    }
    if !request.is_empty() {
        item["defaultRequest"] = Value::Object(request);
    }
}

fn match_resources(m: &mut Map<String, Value>) {
    default(m, "matchPolicy", json!("Equivalent"));
    default(m, "namespaceSelector", json!({}));
    default(m, "objectSelector", json!({}));
    for rules in ["resourceRules", "excludeResourceRules"] {
        for r in m.get_mut(rules).and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(r) = r.as_object_mut() {
                default(r, "scope", json!("*"));
            }
        }
    }
}

fn obj_at_map<'a>(m: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    let e = m.entry(key).or_insert_with(|| json!({}));
    if e.is_null() {
        *e = json!({});
    }
    e.as_object_mut()
}

fn job_spec(spec: &mut Map<String, Value>) {
    // Both unset: a non-parallel Job (1 and 1); parallelism alone: a work queue, completions stay unset.
    let unset = |spec: &Map<String, Value>, k: &str| spec.get(k).is_none_or(Value::is_null);
    if unset(spec, "completions") && unset(spec, "parallelism") {
        spec.insert("completions".into(), json!(1));
    }
    default(spec, "parallelism", json!(1));
    // Upstream's SetDefaults_Job: no Job-wide limit when failures are limited per index; only Failed pods are
    // replaced when a pod failure policy judges them.
    let per_index = spec.get("backoffLimitPerIndex").is_some_and(|v| !v.is_null());
    default(spec, "backoffLimit", json!(if per_index { i32::MAX } else { 6 }));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    let policy = spec.get("podFailurePolicy").is_some_and(|v| !v.is_null());
    default(spec, "podReplacementPolicy", json!(if policy { "Failed" } else { "TerminatingOrFailed" }));
}

fn template(obj: &mut Value, pointer: &str) {
    if let Some(spec) = obj.pointer_mut(&format!("{pointer}/spec")) {
        pod_spec(spec);
    }
    if let Some(t) = obj.pointer_mut(pointer).and_then(Value::as_object_mut) {
        let meta = t.entry("metadata").or_insert_with(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            m.entry("creationTimestamp").or_insert(Value::Null);
        }
    }
}

/// Upstream's DefaultTolerationSeconds admission plugin (on pod create): a pod that tolerates neither
/// `node.kubernetes.io/not-ready` nor `node.kubernetes.io/unreachable` with `NoExecute` (or an empty key or
/// effect) gets an `Exists` toleration of each for 300 s, so taint-based eviction waits five minutes.
pub fn default_toleration_seconds(spec: &mut Value) {
    let Some(s) = spec.as_object_mut() else {
        return;
    };
    let list = s.entry("tolerations").or_insert_with(|| json!([]));
    if list.is_null() {
        *list = json!([]);
    }
    let Some(list) = list.as_array_mut() else {
        return;
    };
    let tolerates = |key: &str| {
        list.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str).unwrap_or_default();
            let e = t.get("effect").and_then(Value::as_str).unwrap_or_default();
            (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
        })
    };
    let missing: Vec<&str> = ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]
        .into_iter()
        .filter(|k| !tolerates(k))
        .collect();
    for key in missing {
        list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
    }
}

/// upstream's SetDefaults_PodSpec, SetDefaults_Container and friends.
pub fn pod_spec(spec: &mut Value) {
    let Some(s) = spec.as_object_mut() else {
        return;
    };
    default(s, "restartPolicy", json!("Always"));
    default(s, "terminationGracePeriodSeconds", json!(30));
    default(s, "dnsPolicy", json!("ClusterFirst"));
    default(s, "securityContext", json!({}));
    default(s, "schedulerName", json!("default-scheduler"));
    default(s, "enableServiceLinks", json!(true));
    if let Some(sa) = s.get("serviceAccountName").cloned().filter(|v| !v.is_null()) {
        default(s, "serviceAccount", sa);
    }
    for list in ["initContainers", "containers"] {
        if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                container(c);
            }
        }
    }
    if let Some(vols) = s.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols.iter_mut().filter_map(Value::as_object_mut) {
            for (kind, mode) in [("configMap", 420), ("secret", 420), ("downwardAPI", 420), ("projected", 420)] {
                if let Some(src) = v.get_mut(kind).and_then(Value::as_object_mut) {
                    default(src, "defaultMode", json!(mode));
                }
            }
            if let Some(hp) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
                default(hp, "type", json!(""));
            }
        }
    }
}

fn container(c: &mut Map<String, Value>) {
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    default(c, "resources", json!({}));
    let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
    // `:latest` or no tag (and no digest) pulls always; anything else only when absent.
    let last = image.rsplit('/').next().unwrap_or(image);
    let policy = if image.contains('@') {
        "IfNotPresent"
    } else {
        match last.split_once(':') {
            None => "Always",
            Some((_, "latest")) => "Always",
            Some(_) => "IfNotPresent",
        }
    };
    default(c, "imagePullPolicy", json!(policy));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(p, "protocol", json!("TCP"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            default(p, "timeoutSeconds", json!(1));
            default(p, "periodSeconds", json!(10));
            default(p, "successThreshold", json!(1));
            default(p, "failureThreshold", json!(3));
            if let Some(h) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
                default(h, "path", json!("/"));
                default(h, "scheme", json!("HTTP"));
            }
        }
    }
}

/// Upstream's `SetDefaults_Service`. The IP family fields are not defaults: the Service storage's allocator sets
/// them (`crate::service::alloc`).
fn service_spec(spec: &mut Map<String, Value>) {
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let config = spec.entry("sessionAffinityConfig").or_insert_with(|| json!({}));
            if let Some(c) = config.as_object_mut() {
                let client_ip = c.entry("clientIP").or_insert_with(|| json!({}));
                if let Some(ip) = client_ip.as_object_mut() {
                    default(ip, "timeoutSeconds", json!(10800));
                }
            }
        }
        _ => {}
    }
    let ty = spec.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(p, "protocol", json!("TCP"));
            // Upstream's SetDefaults_Service: an unset, 0 or "" targetPort (Go clients always send 0) is the port.
            let unset = p.get("targetPort").is_none_or(|t| t.is_null() || *t == json!(0) || *t == json!(""));
            if let Some(port) = p.get("port").cloned().filter(|_| unset) {
                p.insert("targetPort".into(), port);
            }
        }
    }
    // Externally accessible: LoadBalancer, NodePort, or ClusterIP with external IPs.
    let external_ips = spec.get("externalIPs").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer") || (ty == "ClusterIP" && external_ips) {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if matches!(ty.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
}

/// upstream's GetPodQOS: Guaranteed when every container has equal CPU and memory requests and limits,
/// BestEffort when none has any, Burstable otherwise.
pub fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|l| spec.get(*l).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        let relevant = |m: Option<&Map<String, Value>>| {
            m.map(|m| m.keys().filter(|k| *k == "cpu" || *k == "memory").count()).unwrap_or(0)
        };
        if relevant(req) > 0 || relevant(lim) > 0 {
            any = true;
        }
        for r in ["cpu", "memory"] {
            let l = lim.and_then(|m| m.get(r));
            // A request defaults to its limit.
            let q = req.and_then(|m| m.get(r)).or(l);
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_completions_default_only_when_parallelism_is_unset_too() {
        let spec = |v: Value| {
            let mut m = v.as_object().cloned().unwrap();
            job_spec(&mut m);
            (m.get("completions").cloned(), m.get("parallelism").cloned())
        };
        assert_eq!(spec(json!({})), (Some(json!(1)), Some(json!(1))));
        // A work queue: parallelism without completions stays so.
        assert_eq!(spec(json!({"parallelism": 3})), (None, Some(json!(3))));
        assert_eq!(spec(json!({"completions": 5})), (Some(json!(5)), Some(json!(1))));
    }

    #[test]
    fn pod_defaults_match_upstream() {
        let mut spec = json!({"containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]});
        pod_spec(&mut spec);
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(spec["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(spec["containers"][1]["ports"][0]["protocol"], "TCP");
        assert_eq!(spec["containers"][0]["terminationMessagePath"], "/dev/termination-log");
    }

    #[test]
    fn secret_string_data_becomes_data() {
        let res = api_types::resources::find("", "v1", "secrets").unwrap();
        let mut sec = json!({"metadata": {"name": "s"}, "data": {"a": "eA=="}, "stringData": {"b": "hello"}});
        apply(res, &mut sec, true);
        assert_eq!(sec["data"], json!({"a": "eA==", "b": "aGVsbG8="}));
        assert!(sec.get("stringData").is_none());
        assert_eq!(sec["type"], "Opaque");
    }

    #[test]
    fn pods_tolerate_not_ready_and_unreachable_for_five_minutes_unless_they_say_otherwise() {
        let mut spec = json!({"containers": []});
        default_toleration_seconds(&mut spec);
        assert_eq!(
            spec["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
        let own = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5});
        let mut spec = json!({"tolerations": [own.clone()]});
        default_toleration_seconds(&mut spec);
        assert_eq!(spec["tolerations"].as_array().unwrap().len(), 2);
        assert_eq!(spec["tolerations"][0], own);
        assert_eq!(spec["tolerations"][1]["key"], "node.kubernetes.io/not-ready");
        // Tolerating everything needs nothing added.
        let mut spec = json!({"tolerations": [{"operator": "Exists"}]});
        default_toleration_seconds(&mut spec);
        assert_eq!(spec["tolerations"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(&json!({"containers": [{"name": "a"}]})), "BestEffort");
        let g = json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]});
        assert_eq!(qos_class(&b), "Burstable");
    }

    #[test]
    fn deployment_defaults() {
        let res = api_types::resources::find("apps", "v1", "deployments").unwrap();
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x:1"}]}}}});
        apply(res, &mut d, true);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    }
}
