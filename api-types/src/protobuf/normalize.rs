//! What upstream's typed decoding rewrites in a built-in object: each resource quantity (`resources.requests`, a
//! node's `capacity`, a quota's `hard`...) becomes its canonical form (`1000m` -> `1`, `0.5Gi` -> `512Mi`), found
//! through the kind's protobuf message, which marks every Quantity field.

use serde_json::{Map, Value};

use super::{Field, Kind, MAX_DEPTH, Message, Special, fieldindex::START, find_root};

/// Rewrites every quantity of a built-in object in upstream's canonical form (a JSON number too, which upstream
/// accepts for a quantity, becomes its string). A kind without a protobuf message (a custom resource) and a value
/// that is not a quantity are left as they are.
pub fn canonicalize_quantities(obj: &mut Value) {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let Some(message) = find_root(api_version, kind) else { return };
    if let Some(fields) = obj.as_object_mut() {
        walk(message, fields, 0);
    }
}

fn walk(message: &'static Message, obj: &mut Map<String, Value>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    for (key, value) in obj.iter_mut() {
        if let Some(field) = field_named(message, key) {
            if field.repeated {
                if let Value::Array(items) = value {
                    items.iter_mut().for_each(|item| visit(field.kind, item, depth));
                }
            } else {
                visit(field.kind, value, depth);
            }
        }
    }
}

/// The field of `message` a JSON key names, also among the fields of structs it embeds inline.
fn field_named(message: &'static Message, key: &str) -> Option<&'static Field> {
    if let Some((_, field)) = message.index.find_following(message.fields, key, START) {
        return Some(field);
    }
    if !message.has_inline {
        return None;
    }
    message.fields.iter().find_map(|f| match f.kind {
        Kind::Inline(m) => field_named(m, key),
        _ => None,
    })
}

fn visit(kind: Kind, value: &mut Value, depth: usize) {
    match kind {
        Kind::Message(m) => message_value(m, value, depth),
        Kind::MapMessage(m) => {
            if let Value::Object(entries) = value {
                entries.values_mut().for_each(|v| message_value(m, v, depth));
            }
        }
        _ => {}
    }
}

fn message_value(message: &'static Message, value: &mut Value, depth: usize) {
    match (message.special, value) {
        (Special::Quantity, Value::String(s)) => {
            if let Some(c) = crate::quantity::canonical(s).filter(|c| c != s) {
                *s = c;
            }
        }
        (Special::Quantity, value @ Value::Number(_)) => {
            if let Some(c) = crate::quantity::canonical(&value.to_string()) {
                *value = Value::String(c);
            }
        }
        (Special::None, Value::Object(fields)) => walk(message, fields, depth + 1),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn quantities_of_every_shape_are_canonical() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": {"cpu": "1000m"}},
        "spec": {
            "containers": [{"name": "a", "image": "i", "resources": {"requests": {"cpu": "1000m", "memory": "0.5Gi"}, "limits": {"cpu": 2, "memory": "1024Mi"}}}],
            "initContainers": [{"name": "b", "image": "i", "resources": {"limits": {"cpu": 0.5}}}],
            "overhead": {"cpu": "250m", "memory": "1048576"},
            "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1000Mi"}}]
        }});
        canonicalize_quantities(&mut pod);
        let c = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(c["requests"], json!({"cpu": "1", "memory": "512Mi"}));
        assert_eq!(c["limits"], json!({"cpu": "2", "memory": "1Gi"}));
        assert_eq!(pod["spec"]["initContainers"][0]["resources"]["limits"]["cpu"], "500m");
        // Written without a binary suffix, a byte count stays decimal.
        assert_eq!(pod["spec"]["overhead"], json!({"cpu": "250m", "memory": "1048576"}));
        assert_eq!(pod["spec"]["volumes"][0]["emptyDir"]["sizeLimit"], "1000Mi");
        // Not a quantity: left alone.
        assert_eq!(pod["metadata"]["annotations"]["cpu"], "1000m");

        let mut quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
            "spec": {"hard": {"requests.cpu": "2000m", "pods": "10"}}, "status": {"used": {"requests.cpu": "0.1"}}});
        canonicalize_quantities(&mut quota);
        assert_eq!(quota["spec"]["hard"], json!({"requests.cpu": "2", "pods": "10"}));
        assert_eq!(quota["status"]["used"]["requests.cpu"], "100m");

        // A value that does not parse stays for validation to refuse; a custom resource is not touched.
        let mut bad = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "l"},
            "spec": {"limits": [{"type": "Container", "max": {"cpu": "lots"}, "default": {"memory": "2048Mi"}}]}});
        canonicalize_quantities(&mut bad);
        assert_eq!(bad["spec"]["limits"][0]["max"]["cpu"], "lots");
        assert_eq!(bad["spec"]["limits"][0]["default"]["memory"], "2Gi");
        let mut cr = json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"cpu": "1000m"}});
        canonicalize_quantities(&mut cr);
        assert_eq!(cr["spec"]["cpu"], "1000m");
    }
}
