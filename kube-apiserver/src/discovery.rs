//! Discovery documents built from the resource table: `/version`, aggregated (`apidiscovery.k8s.io/v2`) and legacy
//! `/api` and `/apis`, per group-version `APIResourceList`s, and the OpenAPI v3 index and group-version documents
//! kubectl reads to decide on server-side field validation.

use api_types::resources::Resource;

use crate::apiextensions::served::Snapshot;
use serde_json::{Value, json};

/// The Kubernetes version we implement; kubectl's dispatcher picks its client from `minor`.
pub const MAJOR: &str = "1";
pub const MINOR: &str = "33";
pub const GIT_VERSION: &str = "v1.33.0";

/// The content type kubectl needs on an aggregated discovery reply.
pub const AGGREGATED_CONTENT_TYPE: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub fn version() -> Value {
    json!({
        "major": MAJOR,
        "minor": MINOR,
        "emulationMajor": MAJOR,
        "emulationMinor": MINOR,
        "minCompatibilityMajor": MAJOR,
        "minCompatibilityMinor": "32",
        "gitVersion": GIT_VERSION,
        "gitCommit": env!("KUBE_GIT_COMMIT"),
        "gitTreeState": env!("KUBE_GIT_TREE_STATE"),
        "buildDate": env!("KUBE_BUILD_DATE"),
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}

/// Whether an Accept header asks for aggregated discovery.
pub fn wants_aggregated(accept: &str) -> bool {
    // One media-type clause asking for apidiscovery.k8s.io/v2 (a v2beta1 request, kubectl 1.27's, gets the legacy
    // documents: 1.33 serves only v2).
    accept.split(',').any(|clause| {
        let params: Vec<&str> = clause.split(';').map(str::trim).collect();
        params.contains(&"as=APIGroupDiscoveryList")
            && params.contains(&"v=v2")
            && params.contains(&"g=apidiscovery.k8s.io")
    })
}

fn scope(r: &Resource) -> &'static str {
    if r.namespaced { "Namespaced" } else { "Cluster" }
}

fn aggregated_resource(r: &Resource) -> Value {
    let mut v = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": scope(r),
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    if !r.subresources.is_empty() {
        v["subresources"] = Value::Array(
            r.subresources
                .iter()
                .map(|s| {
                    let (g, ver) = if s.version.is_empty() { (r.group, r.version) } else { (s.group, s.version) };
                    json!({"subresource": s.name, "responseKind": {"group": g, "version": ver, "kind": s.kind}, "verbs": s.verbs})
                })
                .collect(),
        );
    }
    v
}

fn aggregated_group(snap: &Snapshot, group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = snap.in_group_version(group, v).into_iter().map(aggregated_resource).collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let metadata = if group.is_empty() {
        json!({"creationTimestamp": null})
    } else {
        json!({"name": group, "creationTimestamp": null})
    };
    json!({"metadata": metadata, "versions": versions})
}

/// `/api` (core) or `/apis` (named groups) as an `APIGroupDiscoveryList`.
pub fn aggregated(snap: &Snapshot, core: bool) -> Value {
    let items: Vec<Value> = snap
        .groups()
        .iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, vs)| aggregated_group(snap, g, vs))
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// Legacy `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn api_group(group: &str, versions: &[&str]) -> Value {
    let gvs: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
    json!({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
}

/// Legacy `/apis`.
pub fn api_group_list(snap: &Snapshot) -> Value {
    let groups: Vec<Value> =
        snap.groups().iter().filter(|(g, _)| !g.is_empty()).map(|(g, vs)| api_group(g, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`.
pub fn group(snap: &Snapshot, group: &str) -> Option<Value> {
    let groups = snap.groups();
    let (g, vs) = groups.iter().find(|(g, _)| *g == group)?;
    let mut v = api_group(g, vs);
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    Some(v)
}

/// `/api/v1` or `/apis/<group>/<version>` as an `APIResourceList`, subresources included (`pods/eviction`).
pub fn resource_list(snap: &Snapshot, group: &str, version: &str) -> Option<Value> {
    let mut out = Vec::new();
    for r in snap.in_group_version(group, version) {
        let mut v = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            v["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            v["categories"] = json!(r.categories);
        }
        out.push(v);
        for s in r.subresources {
            let mut sv = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": s.kind,
                "verbs": s.verbs,
            });
            if !s.version.is_empty() {
                sv["group"] = json!(s.group);
                sv["version"] = json!(s.version);
            }
            out.push(sv);
        }
    }
    if out.is_empty() {
        return None;
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}))
}

/// The OpenAPI path key of a group-version: `api/v1` or `apis/apps/v1`.
pub fn openapi_gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// A stable hash of a document (FNV-1a), so clients may cache group-version documents forever.
fn doc_hash(doc: &Value) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in doc.to_string().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

/// `/openapi/v3`: every served group-version with its document URL.
pub fn openapi_index(snap: &Snapshot) -> Value {
    let mut paths = serde_json::Map::new();
    for (g, vs) in snap.groups() {
        for v in vs {
            let doc = openapi_gv(snap, g, v).unwrap_or(Value::Null);
            let path = openapi_gv_path(g, v);
            paths.insert(
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", doc_hash(&doc))}),
            );
        }
    }
    json!({"paths": paths})
}

/// Adds the extension apiservers' group-versions to an `/openapi/v3` index (upstream's aggregated v3 handler
/// lists them beside the local ones), each with a URL whose `hash` follows its document.
pub fn add_to_openapi_index(index: &mut Value, aggregated: &[((String, String), std::sync::Arc<Value>)]) {
    let Some(paths) = index["paths"].as_object_mut() else { return };
    for ((g, v), doc) in aggregated {
        let path = openapi_gv_path(g, v);
        paths
            .entry(path.clone())
            .or_insert_with(|| json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", doc_hash(doc))}));
    }
}

/// The OpenAPI v3 document of one group-version: a path per resource whose operations carry
/// `x-kubernetes-group-version-kind` and the `fieldValidation` parameter (what kubectl checks before it leaves
/// validation to the server), and an open schema per kind.
pub fn openapi_gv(snap: &Snapshot, group: &str, version: &str) -> Option<Value> {
    if api_types::resources::in_group_version(group, version).next().is_none() {
        return crate::apiextensions::openapi::group_version(snap, group, version);
    }
    type Docs = std::sync::Mutex<std::collections::HashMap<String, Option<Value>>>;
    static DOCS: std::sync::OnceLock<Docs> = std::sync::OnceLock::new();
    let docs = DOCS.get_or_init(Default::default);
    let key = format!("{group}/{version}");
    if let Some(doc) = docs.lock().ok().and_then(|d| d.get(&key).cloned()) {
        return doc;
    }
    let doc = build_openapi_gv(group, version);
    if let Ok(mut d) = docs.lock() {
        d.insert(key, doc.clone());
    }
    doc
}

/// The OpenAPI v3 paths of one resource (item and collection) with the operations its verbs allow.
pub fn resource_paths(r: &Resource, schema_name: &str, paths: &mut serde_json::Map<String, Value>) {
    let params = json!([
        {"name": "dryRun", "in": "query", "schema": {"type": "string"}, "description": "When present, indicates that modifications should not be persisted."},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}, "description": "Ignore, Warn or Strict: how the server treats unknown or duplicate fields."},
    ]);
    let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let base = format!("/{}", openapi_gv_path(r.group, r.version));
    let path = if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
    } else {
        format!("{base}/{}/{{name}}", r.plural)
    };
    let op = |verb: &str| {
        json!({
            "operationId": format!("{verb}{}", r.kind),
            "parameters": params,
            "x-kubernetes-action": verb,
            "x-kubernetes-group-version-kind": gvk,
            "requestBody": {"content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema_name}")}}}},
            "responses": {"200": {"description": "OK"}},
        })
    };
    let mut item = serde_json::Map::new();
    for (verb, method) in [("get", "get"), ("update", "put"), ("patch", "patch"), ("delete", "delete")] {
        if r.has_verb(verb) {
            item.insert(method.into(), op(method));
        }
    }
    paths.insert(path, Value::Object(item));
    let collection = if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{base}/{}", r.plural)
    };
    if r.has_verb("create") {
        paths.insert(collection, json!({"post": op("post")}));
    }
}

fn build_openapi_gv(group: &str, version: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    let (mut schemas, roots) = api_types::schema::openapi_definitions(group, version);
    for r in api_types::resources::in_group_version(group, version) {
        let typed = roots.iter().find(|(_, k)| *k == r.kind).map(|(n, _)| n.clone());
        let schema_name = typed.clone().unwrap_or_else(|| schema_name(r));
        resource_paths(r, &schema_name, &mut paths);
        if typed.is_some() {
            continue;
        }
        schemas.insert(
            schema_name,
            json!({
                "type": "object",
                "description": format!("{} is a {} object of {}.", r.kind, r.kind, r.api_version()),
                "properties": {
                    "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
                    "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
                    "metadata": {"type": "object", "description": "Standard object's metadata."},
                },
                "x-kubernetes-preserve-unknown-fields": true,
                "x-kubernetes-group-version-kind": [{"group": r.group, "version": r.version, "kind": r.kind}],
            }),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// Upstream's schema names: `io.k8s.api.apps.v1.Deployment`, `io.k8s.api.core.v1.Pod`.
fn schema_name(r: &Resource) -> String {
    let group = match r.group {
        "" => "core",
        g => g.strip_suffix(".k8s.io").unwrap_or(g).split('.').next().unwrap_or(g),
    };
    let prefix =
        if r.group == "apiextensions.k8s.io" { "io.k8s.apiextensions-apiserver.pkg.apis" } else { "io.k8s.api" };
    format!("{prefix}.{group}.{}.{}", r.version, r.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        Snapshot::default()
    }

    #[test]
    fn aggregated_discovery_only_for_v2() {
        let v2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
        assert!(wants_aggregated(v2));
        // kubectl 1.27 asks for v2beta1 first: it must get the legacy documents.
        let v2beta1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert!(!wants_aggregated(v2beta1));
        assert!(!wants_aggregated("application/json"));
    }

    #[test]
    fn version_carries_build_stamps() {
        let v = version();
        let commit = v["gitCommit"].as_str().unwrap();
        assert!(commit.len() == 40 && commit.bytes().all(|c| c.is_ascii_hexdigit()), "{commit}");
        assert!(["clean", "dirty", "archive"].contains(&v["gitTreeState"].as_str().unwrap()));
        let date = v["buildDate"].as_str().unwrap();
        assert!(date.len() == 20 && date.ends_with('Z') && &date[10..11] == "T", "{date}");
    }

    #[test]
    fn aggregated_core_has_no_group_name_and_pods() {
        let core = aggregated(&snap(), true);
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        assert!(core["items"][0]["metadata"].get("name").is_none());
        let pods = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap()
            .clone();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        let apis = aggregated(&snap(), false);
        let autoscaling =
            apis["items"].as_array().unwrap().iter().find(|g| g["metadata"]["name"] == "autoscaling").unwrap();
        assert_eq!(autoscaling["versions"][0]["version"], "v2");
    }

    #[test]
    fn legacy_v1_lists_eviction_for_drain() {
        let list = resource_list(&snap(), "", "v1").unwrap();
        let ev = list["resources"].as_array().unwrap().iter().find(|r| r["name"] == "pods/eviction").unwrap().clone();
        assert_eq!(
            (ev["group"].clone(), ev["version"].clone(), ev["kind"].clone()),
            (json!("policy"), json!("v1"), json!("Eviction"))
        );
        assert_eq!(ev["verbs"], json!(["create"]));
    }

    #[test]
    fn openapi_patch_operations_carry_gvk_and_field_validation() {
        let doc = openapi_gv(&snap(), "apps", "v1").unwrap();
        let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        assert_eq!(item["patch"]["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(item["patch"]["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
        let index = openapi_index(&snap());
        assert!(
            index["paths"]["apis/batch/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/apis/batch/v1?hash=")
        );
        assert_eq!(
            snap().in_category("all").iter().map(|r| r.plural).collect::<Vec<_>>(),
            [
                "pods",
                "replicationcontrollers",
                "services",
                "daemonsets",
                "deployments",
                "replicasets",
                "statefulsets",
                "horizontalpodautoscalers",
                "cronjobs",
                "jobs"
            ]
        );
    }
}
