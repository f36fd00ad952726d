//! Table output of NodeMetrics and PodMetrics (upstream's `pkg/api/table.go`): Name, one column per resource
//! (a pod's summed over its containers), Window; each row with the object's metadata.

use serde_json::{Value, json};

/// Sums quantities of one resource as upstream's `Quantity.Add` would, written back in the same form.
fn sum(quantities: &[&str], binary: bool) -> String {
    let total: f64 = quantities.iter().filter_map(|q| api_types::quantity::parse(q)).sum();
    if binary {
        api_types::quantity::format_scaled(total.round() as i64, 0, true)
    } else {
        api_types::quantity::format_scaled((total * 1e9).round() as i64, -9, false)
    }
}

/// The usage an item shows: a node's, or its containers' summed.
fn usage(item: &Value, resource: &str) -> Vec<(String, String)> {
    if resource == "nodes" {
        return item["usage"]
            .as_object()
            .map(|u| u.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
            .unwrap_or_default();
    }
    let containers = item["containers"].as_array().cloned().unwrap_or_default();
    let mut names: Vec<String> =
        containers.iter().flat_map(|c| c["usage"].as_object().into_iter().flat_map(|u| u.keys().cloned())).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let qs: Vec<&str> = containers.iter().filter_map(|c| c["usage"][&name].as_str()).collect();
            let total = sum(&qs, name == "memory");
            (name, total)
        })
        .collect()
}

/// A `meta.k8s.io/<version>` Table of a metrics object or list.
pub fn convert(body: &Value, is_list: bool, resource: &str, version: &str) -> Value {
    let items: Vec<Value> =
        if is_list { body["items"].as_array().cloned().unwrap_or_default() } else { vec![body.clone()] };
    let mut columns = Vec::new();
    let mut rows = Vec::new();
    for item in &items {
        let usage = usage(item, resource);
        if columns.is_empty() {
            columns.push(json!({"name": "Name", "type": "string", "format": "name", "description": "Name of the resource", "priority": 0}));
            for (name, _) in &usage {
                columns.push(
                    json!({"name": name, "type": "string", "format": "quantity", "description": "", "priority": 0}),
                );
            }
            columns.push(
                json!({"name": "Window", "type": "string", "format": "duration", "description": "", "priority": 0}),
            );
        }
        let mut cells = vec![item["metadata"]["name"].clone()];
        cells.extend(usage.into_iter().map(|(_, v)| json!(v)));
        cells.push(item["window"].clone());
        rows.push(json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": format!("meta.k8s.io/{version}"), "metadata": item["metadata"]}}));
    }
    json!({"kind": "Table", "apiVersion": format!("meta.k8s.io/{version}"), "metadata": {}, "columnDefinitions": columns, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_sum_their_containers() {
        let list = json!({"items": [{"metadata": {"name": "p", "namespace": "ns"}, "window": "15s", "containers": [
            {"name": "a", "usage": {"cpu": "1500000n", "memory": "1Mi"}},
            {"name": "b", "usage": {"cpu": "500000n", "memory": "1Mi"}}]}]});
        let t = convert(&list, true, "pods", "v1");
        assert_eq!(t["rows"][0]["cells"], json!(["p", "2m", "2Mi", "15s"]));
        let names: Vec<&str> =
            t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Name", "cpu", "memory", "Window"]);
        assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "ns");
    }
}
