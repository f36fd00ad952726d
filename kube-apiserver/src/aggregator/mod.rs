//! API aggregation (upstream's kube-aggregator, built in): APIService objects route a group-version to an extension
//! apiserver behind a Service. This module holds the routing table the controllers keep current and what discovery
//! and OpenAPI need from it; `controller` watches APIServices and checks availability, `proxy` forwards requests,
//! `autoregister` creates the local APIServices of the built-in group-versions.

pub mod autoregister;
pub mod controller;
pub mod proxy;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

/// Where a remote group-version is served.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    pub group: String,
    pub version: String,
    pub service_namespace: String,
    pub service_name: String,
    pub port: u16,
    /// PEM of `spec.caBundle` (None with `insecureSkipTLSVerify`).
    pub ca_bundle: Option<Vec<u8>>,
    pub insecure: bool,
    pub group_priority: i64,
    pub version_priority: i64,
    /// The last availability check passed.
    pub available: bool,
    /// The backend's `APIResourceList` from the last successful check (for discovery).
    pub resources: Option<Value>,
    /// The backend's OpenAPI v3 document of the group-version, merged into `/openapi/v3` and `/openapi/v2`.
    pub openapi: Option<OpenApi>,
}

/// An extension apiserver's OpenAPI v3 document and the URL it was downloaded from (with its `hash`).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenApi {
    pub url: String,
    pub document: Arc<Value>,
}

impl Route {
    /// Reads a remote APIService (None for a local one, without `spec.service`).
    pub fn from_apiservice(svc: &Value) -> Option<Route> {
        let spec = &svc["spec"];
        let service = spec.get("service").filter(|s| s.is_object())?;
        let ca_bundle = spec["caBundle"].as_str().filter(|c| !c.is_empty()).and_then(|c| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(c).ok()
        });
        let available = svc["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Available" && c["status"] == "True"));
        Some(Route {
            name: svc["metadata"]["name"].as_str().unwrap_or_default().to_string(),
            group: spec["group"].as_str().unwrap_or_default().to_string(),
            version: spec["version"].as_str().unwrap_or_default().to_string(),
            service_namespace: service["namespace"].as_str().unwrap_or_default().to_string(),
            service_name: service["name"].as_str().unwrap_or_default().to_string(),
            port: service["port"].as_u64().unwrap_or(443) as u16,
            ca_bundle,
            insecure: spec["insecureSkipTLSVerify"] == true,
            group_priority: spec["groupPriorityMinimum"].as_i64().unwrap_or(0),
            version_priority: spec["versionPriority"].as_i64().unwrap_or(0),
            available,
            resources: None,
            openapi: None,
        })
    }
}

/// The routing table of remote group-versions, replaced whole on every change.
#[derive(Default)]
pub struct Aggregator {
    routes: RwLock<Arc<HashMap<(String, String), Route>>>,
}

impl Aggregator {
    pub fn route(&self, group: &str, version: &str) -> Option<Route> {
        self.routes().get(&(group.to_string(), version.to_string())).cloned()
    }

    pub fn routes(&self) -> Arc<HashMap<(String, String), Route>> {
        self.routes.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_routes(&self, routes: HashMap<(String, String), Route>) {
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(routes);
    }

    /// The remote groups with their versions, ordered as upstream orders APIServices: by group priority (highest
    /// first), then name; versions by version priority, then kube-aware version order.
    fn groups(&self) -> Vec<(String, Vec<Route>)> {
        let routes = self.routes();
        let mut groups: HashMap<String, Vec<Route>> = HashMap::new();
        for r in routes.values() {
            groups.entry(r.group.clone()).or_default().push(r.clone());
        }
        let mut out: Vec<(String, Vec<Route>)> = groups.into_iter().collect();
        for (_, vs) in &mut out {
            vs.sort_by(|a, b| {
                b.version_priority
                    .cmp(&a.version_priority)
                    .then_with(|| crate::apiextensions::served::compare_kube_versions(&b.version, &a.version))
            });
        }
        let top = |vs: &[Route]| vs.iter().map(|r| r.group_priority).max().unwrap_or(0);
        out.sort_by(|(ga, a), (gb, b)| top(b).cmp(&top(a)).then_with(|| ga.cmp(gb)));
        out
    }

    /// The OpenAPI v3 documents of the remote group-versions, by `(group, version)` in a stable order.
    pub fn openapi_documents(&self) -> Vec<((String, String), Arc<Value>)> {
        let mut docs: Vec<_> = self
            .routes()
            .iter()
            .filter_map(|(k, r)| r.openapi.as_ref().map(|o| (k.clone(), o.document.clone())))
            .collect();
        docs.sort_by(|a, b| a.0.cmp(&b.0));
        docs
    }

    /// The OpenAPI v3 document of one remote group-version.
    pub fn openapi_document(&self, group: &str, version: &str) -> Option<Arc<Value>> {
        self.route(group, version)?.openapi.map(|o| o.document)
    }

    /// A digest of which remote OpenAPI documents are known (it changes when one is added, replaced or removed).
    pub fn openapi_generation(&self) -> u64 {
        let mut h: u64 = 0xcbf29ce484222325;
        let routes = self.routes();
        let mut urls: Vec<String> =
            routes.iter().filter_map(|((g, v), r)| r.openapi.as_ref().map(|o| format!("{g}/{v} {}", o.url))).collect();
        urls.sort();
        for b in urls.join("\n").bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h
    }

    /// Legacy `/apis` entries (`APIGroup`) of the remote groups.
    pub fn api_groups(&self) -> Vec<Value> {
        self.groups().into_iter().map(|(g, vs)| api_group(&g, &vs)).collect()
    }

    /// `/apis/<group>` of a remote group.
    pub fn api_group(&self, group: &str) -> Option<Value> {
        let (g, vs) = self.groups().into_iter().find(|(g, _)| g == group)?;
        let mut doc = api_group(&g, &vs);
        doc["kind"] = json!("APIGroup");
        doc["apiVersion"] = json!("v1");
        Some(doc)
    }

    /// Aggregated discovery (`apidiscovery.k8s.io/v2`) entries of the remote groups, from each backend's resource
    /// list; a backend that is not available is listed `Stale`.
    pub fn aggregated_groups(&self) -> Vec<Value> {
        self.groups()
            .into_iter()
            .map(|(g, vs)| {
                let versions: Vec<Value> = vs
                    .iter()
                    .map(|r| {
                        let resources = r.resources.as_ref().map(aggregated_resources).unwrap_or_default();
                        let freshness = if r.available && r.resources.is_some() { "Current" } else { "Stale" };
                        json!({"version": r.version, "resources": resources, "freshness": freshness})
                    })
                    .collect();
                json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions})
            })
            .collect()
    }
}

/// Upstream's `ValidateAPIService`.
pub fn validate(svc: &Value) -> Vec<api_types::Cause> {
    use api_types::Cause;
    let mut causes = Vec::new();
    let spec = &svc["spec"];
    let (group, version) = (spec["group"].as_str().unwrap_or_default(), spec["version"].as_str().unwrap_or_default());
    let required = format!("{version}.{group}");
    let name = svc["metadata"]["name"].as_str().unwrap_or_default();
    if name != required {
        causes.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            format!("must be `spec.version+\".\"+spec.group`: {required:?}"),
        ));
    }
    if version.is_empty() {
        causes.push(Cause::required("spec.version"));
    }
    let gp = spec["groupPriorityMinimum"].as_i64().unwrap_or(0);
    if gp <= 0 || gp > 20000 {
        causes.push(Cause::invalid("spec.groupPriorityMinimum", &json!(gp), "must be positive and less than 20000"));
    }
    let vp = spec["versionPriority"].as_i64().unwrap_or(0);
    if vp <= 0 || vp > 1000 {
        causes.push(Cause::invalid("spec.versionPriority", &json!(vp), "must be positive and less than 1000"));
    }
    let ca = spec["caBundle"].as_str().is_some_and(|c| !c.is_empty());
    let insecure = spec["insecureSkipTLSVerify"] == true;
    if !spec.get("service").is_some_and(Value::is_object) {
        if ca {
            causes.push(Cause::forbidden("spec.caBundle", "local APIServices may not have a caBundle"));
        }
        if insecure {
            causes.push(Cause::forbidden(
                "spec.insecureSkipTLSVerify",
                "local APIServices may not have insecureSkipTLSVerify",
            ));
        }
        return causes;
    }
    if group.is_empty() {
        causes.push(Cause::required("spec.group"));
    }
    if insecure && ca {
        causes.push(Cause::invalid(
            "spec.insecureSkipTLSVerify",
            &json!(true),
            "may not be true if caBundle is present",
        ));
    }
    causes
}

fn api_group(group: &str, versions: &[Route]) -> Value {
    let gvs: Vec<Value> = versions
        .iter()
        .map(|r| json!({"groupVersion": format!("{group}/{}", r.version), "version": r.version}))
        .collect();
    json!({"name": group, "versions": gvs, "preferredVersion": gvs.first().cloned().unwrap_or(Value::Null)})
}

/// A legacy `APIResourceList` as aggregated discovery resources (subresources folded into their parents).
fn aggregated_resources(list: &Value) -> Vec<Value> {
    let (group, version) = match list["groupVersion"].as_str().unwrap_or_default().split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), list["groupVersion"].as_str().unwrap_or_default().to_string()),
    };
    let items = list["resources"].as_array().cloned().unwrap_or_default();
    let mut out: Vec<Value> = Vec::new();
    for r in &items {
        let name = r["name"].as_str().unwrap_or_default();
        if let Some((parent, sub)) = name.split_once('/') {
            if let Some(p) = out.iter_mut().find(|p| p["resource"] == parent) {
                if !p.get("subresources").is_some_and(Value::is_array) {
                    p["subresources"] = json!([]);
                }
                let kind = json!({"group": r["group"].as_str().unwrap_or(&group), "version": r["version"].as_str().unwrap_or(&version), "kind": r["kind"]});
                if let Some(subs) = p["subresources"].as_array_mut() {
                    subs.push(json!({"subresource": sub, "responseKind": kind, "verbs": r["verbs"]}));
                }
            }
            continue;
        }
        let mut v = json!({
            "resource": name,
            "responseKind": {"group": group, "version": version, "kind": r["kind"]},
            "scope": if r["namespaced"] == true { "Namespaced" } else { "Cluster" },
            "singularResource": r["singularName"],
            "verbs": r["verbs"],
        });
        for k in ["shortNames", "categories"] {
            if r.get(k).is_some_and(|x| x.as_array().is_some_and(|a| !a.is_empty())) {
                v[k] = r[k].clone();
            }
        }
        out.push(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apiservice(name: &str, group: &str, version: &str, gp: i64, vp: i64) -> Value {
        json!({"metadata": {"name": name}, "spec": {"group": group, "version": version, "groupPriorityMinimum": gp, "versionPriority": vp,
            "service": {"namespace": "kube-system", "name": "metrics-server"}, "insecureSkipTLSVerify": true}})
    }

    #[test]
    fn routes_groups_and_discovery() {
        assert!(Route::from_apiservice(&json!({"spec": {"group": "apps", "version": "v1"}})).is_none(), "local");
        let r = Route::from_apiservice(&apiservice("v1beta1.metrics.k8s.io", "metrics.k8s.io", "v1beta1", 100, 100))
            .unwrap();
        assert_eq!((r.port, r.insecure, r.available), (443, true, false));
        let agg = Aggregator::default();
        let mut routes = HashMap::new();
        let mut a = r.clone();
        a.available = true;
        a.resources = Some(json!({"groupVersion": "metrics.k8s.io/v1beta1", "resources": [
            {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
            {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]}]}));
        routes.insert(("metrics.k8s.io".to_string(), "v1beta1".to_string()), a);
        let b =
            Route::from_apiservice(&apiservice("v1.wardle.example.com", "wardle.example.com", "v1", 1000, 15)).unwrap();
        let mut c = Route::from_apiservice(&apiservice(
            "v1alpha1.wardle.example.com",
            "wardle.example.com",
            "v1alpha1",
            1000,
            15,
        ))
        .unwrap();
        c.version_priority = 20;
        routes.insert(("wardle.example.com".to_string(), "v1".to_string()), b);
        routes.insert(("wardle.example.com".to_string(), "v1alpha1".to_string()), c);
        agg.set_routes(routes);
        let groups = agg.api_groups();
        assert_eq!(groups[0]["name"], "wardle.example.com", "higher group priority first");
        assert_eq!(groups[0]["preferredVersion"]["version"], "v1alpha1", "higher version priority first");
        assert_eq!(agg.api_group("metrics.k8s.io").unwrap()["kind"], "APIGroup");
        let aggregated = agg.aggregated_groups();
        let metrics = aggregated.iter().find(|g| g["metadata"]["name"] == "metrics.k8s.io").unwrap();
        assert_eq!(metrics["versions"][0]["freshness"], "Current");
        assert_eq!(metrics["versions"][0]["resources"][1]["scope"], "Namespaced");
        assert_eq!(metrics["versions"][0]["resources"][0]["responseKind"]["kind"], "NodeMetrics");
        let wardle = aggregated.iter().find(|g| g["metadata"]["name"] == "wardle.example.com").unwrap();
        assert_eq!(wardle["versions"][0]["freshness"], "Stale", "no successful check yet");
    }
}
