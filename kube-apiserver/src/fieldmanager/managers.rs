//! `metadata.managedFields`: decoding and encoding the entries (upstream's `internal/managedfields.go`), manager
//! identities (`BuildManagerIdentifier`: manager, operation, subresource, and the apiVersion of updaters), their
//! order, and the cap on update managers (`capmanagers.go`: beyond 10, the oldest merge into `ancient-changes`).

use serde_json::{Map, Value, json};

use super::fieldpath::Set;
use super::fieldsv1;

/// Upstream's cap on Update entries (`DefaultMaxUpdateManagers`).
pub const MAX_UPDATE_MANAGERS: usize = 10;
/// The manager the oldest update entries merge into.
pub const ANCIENT_CHANGES: &str = "ancient-changes";

/// Apply or Update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One managedFields entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: String,
    pub set: Set,
}

impl Entry {
    /// Whether two entries are the same manager (upstream's identifier: the apiVersion counts for updaters only).
    pub fn same_manager(&self, manager: &str, operation: Operation, api_version: &str, subresource: &str) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource == subresource
            && (operation == Operation::Apply || self.api_version == api_version)
    }

    /// How conflict messages name the manager (upstream's `printManager`).
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {:?}", self.subresource);
        }
        if self.operation == Operation::Update {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

/// The managers of an object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Managed {
    pub entries: Vec<Entry>,
}

impl Managed {
    /// Decodes `metadata.managedFields` (absent = none); an invalid list is an error (upstream's
    /// `DecodeManagedFields`), which callers answer by ignoring it.
    pub fn decode(obj: &Value) -> Result<Managed, String> {
        match obj.pointer("/metadata/managedFields") {
            Some(list) => Managed::decode_list(list),
            None => Ok(Managed::default()),
        }
    }

    /// Decodes a managedFields list.
    pub fn decode_list(list: &Value) -> Result<Managed, String> {
        let Value::Array(list) = list else {
            if list.is_null() {
                return Ok(Managed::default());
            }
            return Err("managedFields must be a list".into());
        };
        let mut entries: Vec<Entry> = Vec::with_capacity(list.len());
        for e in list {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            let operation = match e.get("operation").and_then(Value::as_str) {
                Some("Apply") => Operation::Apply,
                Some("Update") => Operation::Update,
                other => return Err(format!("invalid operation {other:?}")),
            };
            match e.get("fieldsType").and_then(Value::as_str) {
                Some("FieldsV1") => {}
                other => return Err(format!("invalid fieldsType {other:?}")),
            }
            let set = match e.get("fieldsV1") {
                Some(f) => fieldsv1::decode(f)?,
                None => Set::new(),
            };
            let entry = Entry {
                manager: s("manager"),
                operation,
                api_version: s("apiVersion"),
                time: e.get("time").and_then(Value::as_str).map(str::to_string),
                subresource: s("subresource"),
                set,
            };
            if entries
                .iter()
                .any(|o| o.same_manager(&entry.manager, entry.operation, &entry.api_version, &entry.subresource))
            {
                return Err(format!("duplicate entry for manager {:?}", entry.manager));
            }
            entries.push(entry);
        }
        Ok(Managed { entries })
    }

    /// The entry of a manager.
    pub fn find(&self, manager: &str, op: Operation, api_version: &str, subresource: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.same_manager(manager, op, api_version, subresource))
    }

    /// Encodes the entries in upstream's order (operation, time, manager, apiVersion, subresource), dropping
    /// empty sets.
    pub fn encode(&self) -> Value {
        let mut entries: Vec<&Entry> = self.entries.iter().filter(|e| !e.set.is_empty()).collect();
        entries.sort_by(|a, b| {
            a.operation
                .cmp(&b.operation)
                .then_with(|| a.time.cmp(&b.time))
                .then_with(|| a.manager.cmp(&b.manager))
                .then_with(|| a.api_version.cmp(&b.api_version))
                .then_with(|| a.subresource.cmp(&b.subresource))
        });
        Value::Array(
            entries
                .into_iter()
                .map(|e| {
                    // Empty strings are left out, as Go's `omitempty`.
                    let mut m = Map::new();
                    if !e.manager.is_empty() {
                        m.insert("manager".into(), json!(e.manager));
                    }
                    m.insert("operation".into(), json!(e.operation.as_str()));
                    if !e.api_version.is_empty() {
                        m.insert("apiVersion".into(), json!(e.api_version));
                    }
                    if let Some(t) = &e.time {
                        m.insert("time".into(), json!(t));
                    }
                    m.insert("fieldsType".into(), json!("FieldsV1"));
                    m.insert("fieldsV1".into(), fieldsv1::encode(&e.set));
                    if !e.subresource.is_empty() {
                        m.insert("subresource".into(), json!(e.subresource));
                    }
                    Value::Object(m)
                })
                .collect(),
        )
    }

    /// Merges the oldest update entries into `ancient-changes` (one per apiVersion) until at most `max` remain.
    pub fn cap_updaters(&mut self, max: usize) {
        let mut updaters: Vec<usize> =
            (0..self.entries.len()).filter(|i| self.entries[*i].operation == Operation::Update).collect();
        if updaters.len() <= max {
            return;
        }
        updaters.sort_by(|a, b| {
            let (a, b) = (&self.entries[*a], &self.entries[*b]);
            a.time.cmp(&b.time).then_with(|| a.manager.cmp(&b.manager))
        });
        let mut first_of_version: Vec<(String, usize)> = Vec::new();
        let mut gone = vec![false; self.entries.len()];
        let mut length = updaters.len();
        for &i in &updaters {
            if length <= max {
                break;
            }
            let version = self.entries[i].api_version.clone();
            match first_of_version.iter().find(|(v, _)| *v == version).map(|(_, b)| *b) {
                Some(bucket) => {
                    let merged = self.entries[bucket].set.union(&self.entries[i].set);
                    let time = self.entries[i].time.clone();
                    let b = &mut self.entries[bucket];
                    b.manager = ANCIENT_CHANGES.to_string();
                    b.subresource = String::new();
                    b.set = merged;
                    b.time = time;
                    gone[i] = true;
                    length -= 1;
                }
                None => first_of_version.push((version, i)),
            }
        }
        let mut i = 0;
        self.entries.retain(|_| {
            let keep = !gone[i];
            i += 1;
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(manager: &str, op: Operation, time: &str) -> Value {
        json!({"manager": manager, "operation": if op == Operation::Apply { "Apply" } else { "Update" }, "apiVersion": "v1", "time": time, "fieldsType": "FieldsV1", "fieldsV1": {format!("f:{manager}"): {}}})
    }

    #[test]
    fn decode_encode_and_order() {
        let obj = json!({"metadata": {"managedFields": [
            entry("b", Operation::Update, "2020-01-01T00:00:02Z"),
            entry("a", Operation::Update, "2020-01-01T00:00:02Z"),
            entry("z", Operation::Apply, "2020-01-01T00:00:09Z"),
        ]}});
        let m = Managed::decode(&obj).unwrap();
        let out = m.encode();
        let names: Vec<&str> = out.as_array().unwrap().iter().map(|e| e["manager"].as_str().unwrap()).collect();
        assert_eq!(names, ["z", "a", "b"]);
        assert_eq!(out[0], entry("z", Operation::Apply, "2020-01-01T00:00:09Z"));
    }

    // Upstream managedfields_test.go: invalid entries fail decoding (and the field manager then ignores them).
    #[test]
    fn invalid_entries_are_refused() {
        for bad in [
            json!({"metadata": {"managedFields": [{"manager": "m", "operation": "Bogus", "fieldsType": "FieldsV1"}]}}),
            json!({"metadata": {"managedFields": [{"manager": "m", "operation": "Apply", "fieldsType": "FieldsV2"}]}}),
            json!({"metadata": {"managedFields": [{"manager": "m", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"x:y": {}}}]}}),
            json!({"metadata": {"managedFields": [entry("a", Operation::Apply, "t"), entry("a", Operation::Apply, "u")]}}),
            json!({"metadata": {"managedFields": {}}}),
        ] {
            assert!(Managed::decode(&bad).is_err(), "{bad}");
        }
    }

    // Upstream capmanagers_test.go TestCapManagersManagerMergesEntries essence.
    #[test]
    fn oldest_updaters_merge_into_ancient_changes() {
        let mut list = vec![entry("applier", Operation::Apply, "2020-01-01T00:00:00Z")];
        for i in 0..12 {
            list.push(entry(&format!("m{i:02}"), Operation::Update, &format!("2020-01-01T00:00:{i:02}Z")));
        }
        let mut m = Managed::decode(&json!({"metadata": {"managedFields": list}})).unwrap();
        m.cap_updaters(MAX_UPDATE_MANAGERS);
        let updaters: Vec<&Entry> = m.entries.iter().filter(|e| e.operation == Operation::Update).collect();
        assert_eq!(updaters.len(), MAX_UPDATE_MANAGERS);
        let ancient = m.entries.iter().find(|e| e.manager == ANCIENT_CHANGES).unwrap();
        assert_eq!(ancient.time.as_deref(), Some("2020-01-01T00:00:02Z"));
        let paths: Vec<String> = ancient.set.paths().iter().map(ToString::to_string).collect();
        assert_eq!(paths, [".m00", ".m01", ".m02"]);
        assert!(m.find("applier", Operation::Apply, "", "").is_some());
    }
}
