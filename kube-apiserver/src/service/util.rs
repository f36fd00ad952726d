//! Reading and writing a Service's spec as upstream's `pkg/api/service` helpers and the Service storage's small
//! predicates do. Zero values are absent, as Go's `omitempty` leaves them: a cleared clusterIP or nodePort is
//! removed, not set to "" or 0.

use serde_json::{Map, Value, json};

pub fn spec(svc: &Value) -> &Value {
    svc.get("spec").unwrap_or(&Value::Null)
}

/// The spec as a map, created if missing.
pub fn spec_mut(svc: &mut Value) -> &mut Map<String, Value> {
    if !svc.get("spec").is_some_and(Value::is_object) {
        svc["spec"] = json!({});
    }
    svc["spec"].as_object_mut().expect("spec is an object")
}

fn str_of<'a>(svc: &'a Value, field: &str) -> &'a str {
    spec(svc).get(field).and_then(Value::as_str).unwrap_or_default()
}

fn strings_of(svc: &Value, field: &str) -> Vec<String> {
    spec(svc)
        .get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect()
}

/// `spec.type`, ClusterIP when unset (the default).
pub fn service_type(svc: &Value) -> &str {
    match str_of(svc, "type") {
        "" => "ClusterIP",
        t => t,
    }
}

pub fn needs_cluster_ip(svc: &Value) -> bool {
    service_type(svc) != "ExternalName"
}

pub fn needs_node_port(svc: &Value) -> bool {
    matches!(service_type(svc), "NodePort" | "LoadBalancer")
}

/// Upstream's `ExternallyAccessible`: LoadBalancer, NodePort, or ClusterIP with external IPs.
pub fn externally_accessible(svc: &Value) -> bool {
    match service_type(svc) {
        "LoadBalancer" | "NodePort" => true,
        "ClusterIP" => !strings_of(svc, "externalIPs").is_empty(),
        _ => false,
    }
}

/// Upstream's `NeedsHealthCheck`: a LoadBalancer with `externalTrafficPolicy: Local`.
pub fn needs_health_check(svc: &Value) -> bool {
    service_type(svc) == "LoadBalancer" && str_of(svc, "externalTrafficPolicy") == "Local"
}

/// NodePort, or LoadBalancer unless `allocateLoadBalancerNodePorts: false`.
pub fn should_allocate_node_ports(svc: &Value) -> bool {
    match service_type(svc) {
        "NodePort" => true,
        "LoadBalancer" => spec(svc).get("allocateLoadBalancerNodePorts").and_then(Value::as_bool) != Some(false),
        _ => false,
    }
}

pub fn cluster_ip(svc: &Value) -> &str {
    str_of(svc, "clusterIP")
}

pub fn cluster_ips(svc: &Value) -> Vec<String> {
    strings_of(svc, "clusterIPs")
}

pub fn ip_families(svc: &Value) -> Vec<String> {
    strings_of(svc, "ipFamilies")
}

pub fn ip_family_policy(svc: &Value) -> Option<&str> {
    spec(svc).get("ipFamilyPolicy").and_then(Value::as_str)
}

/// `clusterIP: None` (in either field).
pub fn is_headless(svc: &Value) -> bool {
    cluster_ip(svc) == "None" || cluster_ips(svc).first().is_some_and(|ip| ip == "None")
}

pub fn has_selector(svc: &Value) -> bool {
    spec(svc).get("selector").and_then(Value::as_object).is_some_and(|s| !s.is_empty())
}

pub fn set_cluster_ip(svc: &mut Value, ip: &str) {
    set_or_remove(spec_mut(svc), "clusterIP", (!ip.is_empty()).then(|| json!(ip)));
}

pub fn set_cluster_ips(svc: &mut Value, ips: Option<&[String]>) {
    set_or_remove(spec_mut(svc), "clusterIPs", ips.map(|i| json!(i)));
}

pub fn set_ip_families(svc: &mut Value, families: Option<&[String]>) {
    set_or_remove(spec_mut(svc), "ipFamilies", families.map(|f| json!(f)));
}

pub fn set_ip_family_policy(svc: &mut Value, policy: Option<&str>) {
    set_or_remove(spec_mut(svc), "ipFamilyPolicy", policy.map(|p| json!(p)));
}

pub fn set_or_remove(map: &mut Map<String, Value>, field: &str, value: Option<Value>) {
    match value {
        Some(v) => map.insert(field.into(), v),
        None => map.remove(field),
    };
}

pub fn ports(svc: &Value) -> &[Value] {
    spec(svc).get("ports").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// A port's `nodePort` as given (an int32 upstream), 0 when unset.
pub fn node_port(svc: &Value, i: usize) -> i64 {
    ports(svc).get(i).and_then(|p| p.get("nodePort")).and_then(Value::as_i64).unwrap_or(0)
}

pub fn port_number(svc: &Value, i: usize) -> i64 {
    ports(svc).get(i).and_then(|p| p.get("port")).and_then(Value::as_i64).unwrap_or(0)
}

pub fn protocol(svc: &Value, i: usize) -> &str {
    ports(svc).get(i).and_then(|p| p.get("protocol")).and_then(Value::as_str).unwrap_or("TCP")
}

pub fn port_name(svc: &Value, i: usize) -> &str {
    ports(svc).get(i).and_then(|p| p.get("name")).and_then(Value::as_str).unwrap_or_default()
}

pub fn set_node_port(svc: &mut Value, i: usize, port: i64) {
    if let Some(p) = svc.pointer_mut(&format!("/spec/ports/{i}")).and_then(Value::as_object_mut) {
        set_or_remove(p, "nodePort", (port != 0).then(|| json!(port)));
    }
}

/// Upstream's `collectServiceNodePorts`: every non-zero nodePort, in port order.
pub fn node_ports(svc: &Value) -> Vec<i64> {
    (0..ports(svc).len()).map(|i| node_port(svc, i)).filter(|p| *p != 0).collect()
}

pub fn health_check_node_port(svc: &Value) -> i64 {
    spec(svc).get("healthCheckNodePort").and_then(Value::as_i64).unwrap_or(0)
}

pub fn set_health_check_node_port(svc: &mut Value, port: i64) {
    set_or_remove(spec_mut(svc), "healthCheckNodePort", (port != 0).then(|| json!(port)));
}

/// `<namespace>/<name>`, what an allocation records as its holder.
pub fn holder(svc: &Value) -> String {
    let meta = svc.get("metadata").unwrap_or(&Value::Null);
    let s = |f: &str| meta.get(f).and_then(Value::as_str).unwrap_or_default();
    format!("{}/{}", s("namespace"), s("name"))
}

pub fn name(svc: &Value) -> &str {
    svc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
}
