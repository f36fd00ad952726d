//! Duplicate fields of a JSON request body, as upstream's strict decoding (`sigs.k8s.io/json`) reports them
//! (`duplicate field "spec.replicas"`): serde_json keeps the last of two equal keys silently, so the body is walked
//! once more with a visitor that remembers the keys of each object (and a YAML apply body under Strict, whose first
//! duplicate key is reported with its line, as upstream's strict YAML decoder does).

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// The paths of the fields that appear twice in one object (`spec.replicas`, `spec.containers[0].name`), in the
/// order they are met; empty for a body that is not JSON.
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = Walk { path: String::new(), found: &mut found, fail: false }.deserialize(&mut de);
    found
}

/// The first duplicate key of a YAML document, as upstream's strict YAML decoder reports it:
/// `line 11: key "foo" already set in map` (None when there is none, or the body is not YAML).
pub fn first_yaml_duplicate(body: &[u8]) -> Option<String> {
    let mut found = Vec::new();
    let de = serde_yaml_ng::Deserializer::from_slice(body);
    let err = Walk { path: String::new(), found: &mut found, fail: true }.deserialize(de).err()?;
    let key = found.first()?.rsplit('.').next()?.to_string();
    // The error points at the map; the duplicate is the second key of that map's indentation with this name.
    let start = err.location().map_or(1, |l| l.line()).max(1);
    let text = String::from_utf8_lossy(body);
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let depth = lines.get(start - 1).map_or(0, |l| indent(l));
    let line = lines
        .iter()
        .enumerate()
        .skip(start - 1)
        .take_while(|(_, l)| l.trim().is_empty() || indent(l) >= depth)
        .filter(|(_, l)| {
            indent(l) == depth
                && l.trim_start().strip_prefix(key.as_str()).is_some_and(|r| r.trim_start().starts_with(':'))
        })
        .map(|(i, _)| i + 1)
        .nth(1)
        .unwrap_or(start);
    Some(format!("line {line}: key {key:?} already set in map"))
}

struct Walk<'a> {
    path: String,
    found: &'a mut Vec<String>,
    /// Stop at the first duplicate with an error (whose location the YAML deserializer fills in).
    fail: bool,
}

impl<'a> Walk<'a> {
    fn child(&mut self, path: String) -> Walk<'_> {
        Walk { path, found: self.found, fail: self.fail }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON or YAML value")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() { key.clone() } else { format!("{}.{key}", self.path) };
            if !seen.insert(key.clone()) {
                self.found.push(path.clone());
                if self.fail {
                    return Err(de::Error::custom(format!("key {key:?} already set in map")));
                }
            }
            map.next_value_seed(self.child(path))?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq.next_element_seed(self.child(format!("{}[{i}]", self.path)))?.is_some() {
            i += 1;
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_duplicates_with_their_paths() {
        let body = br#"{"spec": {"unknownField": "foo", "replicas": 2, "replicas": 3,
            "template": {"spec": {"containers": [{"name": "a", "name": "b"}, {"name": "c"}]}}}, "kind": "x", "kind": "y"}"#;
        assert_eq!(duplicate_fields(body), ["spec.replicas", "spec.template.spec.containers[0].name", "kind"]);
        assert!(duplicate_fields(br#"{"a": {"b": 1}, "c": {"b": 2}}"#).is_empty());
        assert!(duplicate_fields(b"apiVersion: v1").is_empty());
    }

    #[test]
    fn the_first_yaml_duplicate_with_its_line() {
        let body = b"\napiVersion: v1\nkind: X\nmetadata:\n  name: a\nspec:\n  foo: 1\n  bar: [1, 2]\n  foo: 2\n";
        assert_eq!(first_yaml_duplicate(body).as_deref(), Some("line 9: key \"foo\" already set in map"));
        assert_eq!(first_yaml_duplicate(b"a: 1\nb: {c: 1, d: 2}\n"), None);
    }
}
