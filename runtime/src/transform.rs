//! Building blocks of watch transforms (client-go's `TransformFunc`): cut an object down, as it arrives, to the
//! fields a daemon reads, so its informers never hold whole objects.

use serde_json::Value;

/// Keeps only `keys` of an object (anything else is left as it is).
pub fn retain(v: &mut Value, keys: &[&str]) {
    if let Some(map) = v.as_object_mut() {
        map.retain(|k, _| keys.contains(&k.as_str()));
    }
}

/// [`retain`] on the object at `v[key]`, when there is one.
pub fn retain_in(v: &mut Value, key: &str, keys: &[&str]) {
    if let Some(inner) = v.get_mut(key) {
        retain(inner, keys);
    }
}

/// The items of the array at `v[key]` (none when absent).
pub fn items<'a>(v: &'a mut Value, key: &str) -> &'a mut [Value] {
    v.get_mut(key).and_then(Value::as_array_mut).map(Vec::as_mut_slice).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_only_what_is_named() {
        let mut v =
            json!({"metadata": {"name": "a", "uid": "u"}, "spec": {"ports": [{"port": 1, "x": 2}]}, "status": {}});
        retain(&mut v, &["metadata", "spec"]);
        retain_in(&mut v, "metadata", &["name"]);
        retain_in(&mut v, "absent", &["name"]);
        for p in items(v.get_mut("spec").unwrap(), "ports") {
            retain(p, &["port"]);
        }
        assert_eq!(items(&mut v, "absent").len(), 0);
        assert_eq!(v, json!({"metadata": {"name": "a"}, "spec": {"ports": [{"port": 1}]}}));
    }
}
