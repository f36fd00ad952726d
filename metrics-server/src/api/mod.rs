//! The `metrics.k8s.io/v1beta1` API (upstream's `pkg/api`, served by metrics-server's generic apiserver):
//! discovery (`/apis`, `/apis/metrics.k8s.io`, `/apis/metrics.k8s.io/v1beta1`), NodeMetrics ([`node`]) and
//! PodMetrics ([`pod`]) read with `get` and `list` (label and field selectors, Table output), errors as
//! `Status` objects in upstream's words. Requests arrive here authenticated and authorized ([`crate::server`]).

pub mod node;
pub mod pod;
pub mod table;

use std::collections::HashMap;
use std::sync::Arc;

use api_types::ApiError;
use api_types::selector::{FieldSelector, LabelSelector};
use serde_json::{Value, json};

use crate::metrics::Metrics;
use crate::storage::{Storage, TimeInfo, Usage};

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
pub const GROUP_VERSION: &str = "metrics.k8s.io/v1beta1";

/// What the API reads: the stored points and the informers' nodes and running pods.
pub struct Api {
    pub storage: Arc<Storage>,
    pub nodes: runtime::informer::Informer,
    pub pods: runtime::informer::Informer,
    /// `--node-selector`: nodes outside it are neither scraped nor served.
    pub node_selector: LabelSelector,
    pub metrics: Arc<Metrics>,
}

/// An answer: status code, content type and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub code: u16,
    pub body: Value,
}

impl Answer {
    fn ok(body: Value) -> Self {
        Answer { code: 200, body }
    }

    pub fn error(e: &ApiError) -> Self {
        Answer { code: e.code, body: e.to_status() }
    }
}

/// What a request under `/apis/metrics.k8s.io/v1beta1` asks (upstream's RequestInfo for these routes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `nodes` or `pods`.
    pub resource: &'static str,
    pub namespace: String,
    pub name: String,
}

impl Target {
    /// The resource request a path names, if it names one: `/nodes[/n]`, `/pods`, `/namespaces/<ns>/pods[/p]`.
    pub fn parse(path: &str) -> Option<Target> {
        let rest = path.strip_prefix("/apis/metrics.k8s.io/v1beta1/")?;
        let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        let target = |resource, namespace: &str, name: &str| {
            Some(Target { resource, namespace: namespace.to_string(), name: name.to_string() })
        };
        match parts.as_slice() {
            ["nodes"] => target("nodes", "", ""),
            ["nodes", name] => target("nodes", "", name),
            ["pods"] => target("pods", "", ""),
            ["namespaces", ns, "pods"] => target("pods", ns, ""),
            ["namespaces", ns, "pods", name] => target("pods", ns, name),
            _ => None,
        }
    }

    /// The verb of a GET on it: `get` for an object, else `list` (or `watch` when asked).
    pub fn verb(&self, query: &HashMap<String, String>) -> &'static str {
        if !self.name.is_empty() {
            "get"
        } else if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
            "watch"
        } else {
            "list"
        }
    }
}

/// The group as `/apis` and `/apis/metrics.k8s.io` describe it.
fn api_group() -> Value {
    let version = json!({"groupVersion": GROUP_VERSION, "version": VERSION});
    json!({"name": GROUP, "versions": [version.clone()], "preferredVersion": version})
}

/// The `APIGroupList` of `/apis`.
pub fn group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group()]})
}

/// The `APIGroup` of `/apis/metrics.k8s.io`.
pub fn group() -> Value {
    let mut g = json!({"kind": "APIGroup", "apiVersion": "v1"});
    if let (Some(g), Value::Object(fields)) = (g.as_object_mut(), api_group()) {
        g.extend(fields);
    }
    g
}

/// The `APIResourceList` of `/apis/metrics.k8s.io/v1beta1`: nodes and pods, read-only.
pub fn resource_list() -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": [
        {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
        {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
    ]})
}

/// A minimal OpenAPI v2 document of the group's paths and kinds, for clients that read it (kubectl explain).
pub fn openapi_v2() -> Value {
    let usage = json!({"type": "object", "additionalProperties": {"type": "string", "format": "quantity"}});
    let meta = json!({"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"});
    let gvk = |kind: &str| json!([{"group": GROUP, "version": VERSION, "kind": kind}]);
    let list = |item: &str, kind: &str| {
        json!({"type": "object", "required": ["items"], "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"},
            "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"},
            "items": {"type": "array", "items": {"$ref": format!("#/definitions/{item}")}}},
            "x-kubernetes-group-version-kind": gvk(kind)})
    };
    let get = |kind: &str| {
        json!({"get": {"produces": ["application/json"], "schemes": ["https"],
            "responses": {"200": {"description": "OK", "schema": {"$ref": format!("#/definitions/io.k8s.metrics.pkg.apis.metrics.v1beta1.{kind}")}}}}})
    };
    let mut doc = json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes metrics-server", "version": env!("CARGO_PKG_VERSION")},
        "paths": {
            "/apis/metrics.k8s.io/v1beta1/nodes": get("NodeMetricsList"),
            "/apis/metrics.k8s.io/v1beta1/nodes/{name}": get("NodeMetrics"),
            "/apis/metrics.k8s.io/v1beta1/pods": get("PodMetricsList"),
            "/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods": get("PodMetricsList"),
            "/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/{name}": get("PodMetrics"),
        },
        "definitions": {
            "io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics": {
                "description": "NodeMetrics sets resource usage metrics of a node.",
                "type": "object", "required": ["timestamp", "window", "usage"],
                "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": meta,
                    "timestamp": {"type": "string", "format": "date-time"}, "window": {"type": "string"}, "usage": usage},
                "x-kubernetes-group-version-kind": gvk("NodeMetrics")},
            "io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetricsList":
                list("io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics", "NodeMetricsList"),
            "io.k8s.metrics.pkg.apis.metrics.v1beta1.ContainerMetrics": {
                "description": "ContainerMetrics sets resource usage metrics of a container.",
                "type": "object", "required": ["name", "usage"],
                "properties": {"name": {"type": "string"}, "usage": usage}},
            "io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics": {
                "description": "PodMetrics sets resource usage metrics of a pod.",
                "type": "object", "required": ["timestamp", "window", "containers"],
                "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": meta,
                    "timestamp": {"type": "string", "format": "date-time"}, "window": {"type": "string"},
                    "containers": {"type": "array", "items": {"$ref": "#/definitions/io.k8s.metrics.pkg.apis.metrics.v1beta1.ContainerMetrics"}}},
                "x-kubernetes-group-version-kind": gvk("PodMetrics")},
            "io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetricsList":
                list("io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics", "PodMetricsList"),
        },
    });
    // The metadata schemas the kinds refer to, from the same source as the kube-apiserver's.
    let meta = Value::Object(api_types::schema::openapi_meta_definitions()).to_string();
    let meta: Value =
        serde_json::from_str(&meta.replace("#/components/schemas/", "#/definitions/")).unwrap_or_default();
    if let (Some(defs), Some(meta)) = (doc["definitions"].as_object_mut(), meta.as_object()) {
        defs.extend(meta.clone());
    }
    doc
}

/// The OpenAPI v3 document of `metrics.k8s.io/v1beta1` (what `/openapi/v3` lists and the kube-apiserver merges
/// into its own documents): the v2 document's schemas as `components.schemas`, a get or list operation per path.
pub fn openapi_v3() -> Value {
    let v2 = openapi_v2();
    let schemas: Value =
        serde_json::from_str(&v2["definitions"].to_string().replace("#/definitions/", "#/components/schemas/"))
            .unwrap_or_default();
    let mut paths = serde_json::Map::new();
    for (path, item) in v2["paths"].as_object().into_iter().flatten() {
        let schema = item.pointer("/get/responses/200/schema").cloned().unwrap_or_default();
        let reference = schema["$ref"].as_str().unwrap_or_default().replace("#/definitions/", "#/components/schemas/");
        let kind = reference.rsplit('.').next().unwrap_or_default().to_string();
        let action = if kind.ends_with("List") { "list" } else { "get" };
        paths.insert(
            path.clone(),
            json!({"get": {"description": format!("{action} {kind}"), "operationId": format!("{action}MetricsV1beta1{kind}"),
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": reference}}}}},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": {"group": GROUP, "version": VERSION, "kind": kind}}}),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes metrics-server", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// `/openapi/v3`: the group-version's document with its URL, `hash` changing with the document (upstream's
/// upper-case hex digest; any stable digest serves clients, which only compare it).
pub fn openapi_v3_index() -> Value {
    let doc = openapi_v3().to_string();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in doc.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    json!({"paths": {format!("apis/{GROUP}/{VERSION}"): {"serverRelativeURL": format!("/openapi/v3/apis/{GROUP}/{VERSION}?hash={h:016X}")}}})
}

/// RFC 3339 at second precision, as `metav1.Time` marshals.
pub fn rfc3339(nanos: i64) -> String {
    jiff::Timestamp::from_nanosecond(nanos as i128)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| "0001-01-01T00:00:00Z".into())
}

pub fn now_nanos() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

/// A usage as `corev1.ResourceList` (upstream's `uint64Quantity`: CPU in DecimalSI nanocores, memory in BinarySI
/// bytes; values past `i64::MAX` lose a digit).
pub fn usage_json(u: &Usage) -> Value {
    fn quantity(v: u64, scale: i32, binary: bool) -> String {
        match i64::try_from(v) {
            Ok(v) => api_types::quantity::format_scaled(v, scale, binary),
            Err(_) => api_types::quantity::format_scaled((v / 10) as i64, scale + 1, binary),
        }
    }
    json!({"cpu": quantity(u.cpu_nanocores, -9, false), "memory": quantity(u.memory_bytes, 0, true)})
}

/// The `timestamp` and `window` of a metric.
fn time_fields(t: &TimeInfo) -> (String, String) {
    (rfc3339(t.timestamp), api_types::duration::format(t.window))
}

/// An object's metadata as the metrics carry it: name, namespace, creation time (now), labels.
fn metadata(name: &str, namespace: Option<&str>, labels: Option<&Value>) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("name".into(), json!(name));
    if let Some(ns) = namespace {
        m.insert("namespace".into(), json!(ns));
    }
    m.insert("creationTimestamp".into(), json!(rfc3339(now_nanos())));
    if let Some(l) = labels.filter(|l| l.as_object().is_some_and(|o| !o.is_empty())) {
        m.insert("labels".into(), l.clone());
    }
    Value::Object(m)
}

/// A list's selectors, from the query (400 when they do not parse).
pub struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selectors {
    pub fn from_query(query: &HashMap<String, String>) -> Result<Self, ApiError> {
        let labels = match query.get("labelSelector") {
            Some(s) => LabelSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?,
            None => LabelSelector::everything(),
        };
        let fields = match query.get("fieldSelector") {
            Some(s) => FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?,
            None => FieldSelector::everything(),
        };
        Ok(Selectors { labels, fields })
    }

    /// Whether an object matches: its labels, and its `metadata.name` (and `metadata.namespace`) fields.
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_value(obj.pointer("/metadata/labels"))
            && self.fields.matches(|f| match f {
                "metadata.name" => obj.pointer("/metadata/name").and_then(Value::as_str).map(String::from),
                "metadata.namespace" => obj.pointer("/metadata/namespace").and_then(Value::as_str).map(String::from),
                _ => None,
            })
    }
}

/// The output form a request asks for by its `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    /// `meta.k8s.io` Table of this version (`v1` or `v1beta1`).
    Table(&'static str),
}

impl Output {
    pub fn from_accept(accept: &str) -> Output {
        for part in accept.split(',') {
            let p = part.replace(' ', "");
            if p.contains("as=Table") && p.contains("g=meta.k8s.io") {
                return Output::Table(if p.contains("v=v1beta1") { "v1beta1" } else { "v1" });
            }
        }
        Output::Json
    }
}

impl Api {
    /// Answers a GET of `target` with these query parameters, in `output` form.
    pub fn get(&self, target: &Target, query: &HashMap<String, String>, output: Output) -> Answer {
        let result = match (target.resource, target.verb(query)) {
            (resource, "watch") => Err(ApiError {
                details: Some(Box::new(json!({"group": GROUP, "kind": resource}))),
                ..ApiError::method_not_allowed(format!(
                    "watch is not supported on resources of kind \"{resource}.{GROUP}\""
                ))
            }),
            ("nodes", "get") => self.get_node(&target.name).map(|n| (n, false)),
            ("nodes", _) => Selectors::from_query(query).map(|s| (self.list_nodes(&s), true)),
            (_, "get") => self.get_pod(&target.namespace, &target.name).map(|p| (p, false)),
            _ => Selectors::from_query(query).map(|s| (self.list_pods(&target.namespace, &s), true)),
        };
        match result {
            Ok((body, is_list)) => Answer::ok(match output {
                Output::Json => body,
                Output::Table(version) => table::convert(&body, is_list, target.resource, version),
            }),
            Err(e) => Answer::error(&e),
        }
    }

    /// Observes how old served metrics are (`metrics_server_api_metric_freshness_seconds`).
    fn observe_freshness(&self, t: &TimeInfo) {
        self.metrics.metric_freshness.observe((now_nanos() - t.timestamp).max(0) as f64 / 1e9);
    }
}

#[cfg(test)]
mod openapi_tests {
    use super::*;

    /// Every `$ref` of a document names one of its schemas.
    fn dangling(doc: &Value, prefix: &str, schemas: &serde_json::Map<String, Value>) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![doc];
        while let Some(v) = stack.pop() {
            match v {
                Value::Object(m) => {
                    if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                        let name = r.strip_prefix(prefix).unwrap_or(r);
                        if !schemas.contains_key(name) {
                            out.push(r.to_string());
                        }
                    }
                    stack.extend(m.values());
                }
                Value::Array(a) => stack.extend(a),
                _ => {}
            }
        }
        out
    }

    #[test]
    fn documents_are_self_contained_with_kinds_and_operations() {
        let v3 = openapi_v3();
        let schemas = v3["components"]["schemas"].as_object().unwrap();
        assert_eq!(dangling(&v3, "#/components/schemas/", schemas), Vec::<String>::new());
        let node = &schemas["io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics"];
        assert_eq!(node["x-kubernetes-group-version-kind"][0]["kind"], "NodeMetrics");
        assert!(
            schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"].get("ownerReferences").is_some()
        );
        let pods = &v3["paths"]["/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods"]["get"];
        assert_eq!(pods["x-kubernetes-action"], "list");
        assert_eq!(pods["x-kubernetes-group-version-kind"]["kind"], "PodMetricsList");
        let v2 = openapi_v2();
        assert_eq!(dangling(&v2, "#/definitions/", v2["definitions"].as_object().unwrap()), Vec::<String>::new());
        let index = openapi_v3_index();
        let url = index["paths"]["apis/metrics.k8s.io/v1beta1"]["serverRelativeURL"].as_str().unwrap();
        assert!(url.starts_with("/openapi/v3/apis/metrics.k8s.io/v1beta1?hash="), "{url}");
    }
}
