//! Storage keys: `/<resource>/<namespace>/<name>` (cluster-scoped objects have no namespace segment),
//! relative to the backend prefix (`/registry`), exactly as upstream lays them out.

use super::{Result, StorageError};

/// The key of one object.
pub fn object_key(resource: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("/{resource}/{ns}/{name}"),
        None => format!("/{resource}/{name}"),
    }
}

/// The list prefix of a resource, in one namespace or across all; always ends in `/` so that
/// `/pods/a/` never matches `/pods/ab/...`.
pub fn resource_prefix(resource: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("/{resource}/{ns}/"),
        None => format!("/{resource}/"),
    }
}

fn invalid(key: &str, reason: &'static str) -> StorageError {
    StorageError::InvalidKey { key: key.to_string(), reason }
}

fn check_segments(key: &str, segments: &str) -> Result<()> {
    for seg in segments.split('/') {
        match seg {
            "" => return Err(invalid(key, "empty path segment")),
            "." | ".." => return Err(invalid(key, "'.' and '..' segments are not allowed")),
            _ => {}
        }
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(key, "only printable ASCII characters are allowed"));
    }
    Ok(())
}

/// A key: starts with `/`, non-empty segments, none of them `.` or `..`, printable ASCII.
pub fn validate_key(key: &str) -> Result<()> {
    let rest = key.strip_prefix('/').ok_or_else(|| invalid(key, "must start with '/'"))?;
    if rest.ends_with('/') {
        return Err(invalid(key, "must not end with '/'"));
    }
    check_segments(key, rest)
}

/// A list or watch prefix: like a key, but ending in `/` (the root `/` lists everything).
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix == "/" {
        return Ok(());
    }
    let rest = prefix.strip_prefix('/').ok_or_else(|| invalid(prefix, "must start with '/'"))?;
    let rest = rest.strip_suffix('/').ok_or_else(|| invalid(prefix, "a prefix must end with '/'"))?;
    check_segments(prefix, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_upstream() {
        assert_eq!(object_key("pods", Some("default"), "nginx"), "/pods/default/nginx");
        assert_eq!(object_key("nodes", None, "n1"), "/nodes/n1");
        assert_eq!(resource_prefix("pods", Some("a")), "/pods/a/");
        assert_eq!(resource_prefix("pods", None), "/pods/");
    }

    #[test]
    fn rejects_dot_segments_and_bad_shapes() {
        for bad in ["pods/a", "/pods/../x", "/pods/./x", "/pods//x", "/pods/x/", "/", "/pods/a b", ""] {
            assert!(validate_key(bad).is_err(), "{bad} should be rejected");
        }
        assert!(validate_key("/pods/default/nginx").is_ok());
        for bad in ["/pods", "/pods/../", "pods/", "//", "/a//b/"] {
            assert!(validate_prefix(bad).is_err(), "{bad} should be rejected");
        }
        assert!(validate_prefix("/pods/").is_ok());
        assert!(validate_prefix("/").is_ok());
    }

    #[test]
    fn prefix_end_excludes_siblings() {
        let end = super::super::prefix_end("/pods/a/");
        assert_eq!(end, "/pods/a0");
        assert!("/pods/a/zzz" < end.as_str());
        assert!("/pods/ab/x" > end.as_str());
    }
}
