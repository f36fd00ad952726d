//! Field paths and sets of them, as structured-merge-diff's `fieldpath`: a path element names a struct field or
//! map key, a list item by its keys, a set item by its value, or an atomic list item by index; a `Set` is a sorted
//! trie (members at this level, children below), so union, difference and intersection walk two tries in step.

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

/// One step of a path (`fieldpath.PathElement`).
#[derive(Debug, Clone, PartialEq)]
pub enum PathElement {
    /// A struct field or map key.
    Field(String),
    /// An item of a map-typed list, by its key fields sorted by name.
    Key(Vec<(String, Value)>),
    /// An item of a set-typed list, by its value.
    Value(Value),
    /// An item of an atomic list (only seen in the field sets of deduced values).
    Index(usize),
}

impl Eq for PathElement {}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Number(_) => 1,
        Value::String(_) => 2,
        Value::Bool(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// A total order over JSON values (upstream's `value.Compare`: by kind, then by content).
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => x.as_f64().unwrap_or_default().total_cmp(&y.as_f64().unwrap_or_default()),
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (a, b) in x.iter().zip(y) {
                let c = compare_values(a, b);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<_> = x.iter().collect();
            let mut ys: Vec<_> = y.iter().collect();
            xs.sort_by(|a, b| a.0.cmp(b.0));
            ys.sort_by(|a, b| a.0.cmp(b.0));
            for ((ka, va), (kb, vb)) in xs.iter().zip(&ys) {
                let c = ka.cmp(kb).then_with(|| compare_values(va, vb));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xs.len().cmp(&ys.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        use PathElement::*;
        match (self, other) {
            (Field(a), Field(b)) => a.cmp(b),
            (Key(a), Key(b)) => {
                for ((na, va), (nb, vb)) in a.iter().zip(b) {
                    let c = na.cmp(nb).then_with(|| compare_values(va, vb));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (Value(a), Value(b)) => compare_values(a, b),
            (Index(a), Index(b)) => a.cmp(b),
            _ => self.kind().cmp(&other.kind()),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PathElement {
    fn kind(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }
}

/// Upstream's `PathElement.String()`: `.name`, `[k=v,...]`, `[=value]`, `[3]`.
impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(keys) => {
                let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={v}]"),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path from the root of an object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Path(pub Vec<PathElement>);

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for pe in &self.0 {
            write!(f, "{pe}")?;
        }
        Ok(())
    }
}

/// A set of paths as a trie: `members` end at this level, `children` continue below; both sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Set {
    pub members: Vec<PathElement>,
    pub children: Vec<(PathElement, Set)>,
}

impl Set {
    /// The empty set.
    pub fn new() -> Self {
        Set::default()
    }

    /// Whether the set holds no path.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.iter().all(|(_, c)| c.is_empty())
    }

    /// Adds a path (the empty path is not a member of anything).
    pub fn insert(&mut self, path: &[PathElement]) {
        let Some((first, rest)) = path.split_first() else { return };
        if rest.is_empty() {
            if let Err(i) = self.members.binary_search(first) {
                self.members.insert(i, first.clone());
            }
        } else {
            self.child_mut(first).insert(rest);
        }
    }

    /// The child set under `pe`, created when missing.
    pub fn child_mut(&mut self, pe: &PathElement) -> &mut Set {
        let i = match self.children.binary_search_by(|(k, _)| k.cmp(pe)) {
            Ok(i) => i,
            Err(i) => {
                self.children.insert(i, (pe.clone(), Set::new()));
                i
            }
        };
        &mut self.children[i].1
    }

    /// The child set under `pe`.
    pub fn child(&self, pe: &PathElement) -> Option<&Set> {
        self.children.binary_search_by(|(k, _)| k.cmp(pe)).ok().map(|i| &self.children[i].1)
    }

    /// Whether `pe` is a member at this level.
    pub fn has_member(&self, pe: &PathElement) -> bool {
        self.members.binary_search(pe).is_ok()
    }

    /// Whether `pe` is a member or has members below it (upstream's view after `EnsureNamedFieldsAreMembers`).
    pub fn touches(&self, pe: &PathElement) -> bool {
        self.has_member(pe) || self.child(pe).is_some_and(|c| !c.is_empty())
    }

    /// Whether the path is in the set.
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path.split_first() {
            None => false,
            Some((pe, [])) => self.has_member(pe),
            Some((pe, rest)) => self.child(pe).is_some_and(|c| c.has(rest)),
        }
    }

    /// Paths in either set.
    pub fn union(&self, other: &Set) -> Set {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        Set {
            members: union_members(&self.members, &other.members),
            children: union_children(&self.children, &other.children),
        }
    }

    /// Paths of `self` not in `other`.
    pub fn difference(&self, other: &Set) -> Set {
        let members = self.members.iter().filter(|m| !other.has_member(m)).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, c)| {
                let d = match other.child(pe) {
                    Some(o) => c.difference(o),
                    None => c.clone(),
                };
                (!d.is_empty()).then(|| (pe.clone(), d))
            })
            .collect();
        Set { members, children }
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &Set) -> Set {
        let members = self.members.iter().filter(|m| other.has_member(m)).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, c)| {
                let i = c.intersection(other.child(pe)?);
                (!i.is_empty()).then(|| (pe.clone(), i))
            })
            .collect();
        Set { members, children }
    }

    /// The set without the paths of `prefixes` and everything below them (upstream's `ExcludeFields` with a set
    /// of field prefixes, used for the fields a strategy resets).
    pub fn exclude(&self, prefixes: &Set) -> Set {
        let members = self.members.iter().filter(|m| !prefixes.has_member(m)).cloned().collect();
        let children = self
            .children
            .iter()
            .filter(|(pe, _)| !prefixes.has_member(pe))
            .filter_map(|(pe, c)| {
                let e = match prefixes.child(pe) {
                    Some(p) => c.exclude(p),
                    None => c.clone(),
                };
                (!e.is_empty()).then(|| (pe.clone(), e))
            })
            .collect();
        Set { members, children }
    }

    /// Every member path, in order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.walk(&mut Vec::new(), &mut out);
        out
    }

    /// Members first, then children, at every level (upstream's `Set.Iterate`).
    fn walk(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Path>) {
        for m in &self.members {
            prefix.push(m.clone());
            out.push(Path(prefix.clone()));
            prefix.pop();
        }
        for (pe, c) in &self.children {
            prefix.push(pe.clone());
            c.walk(prefix, out);
            prefix.pop();
        }
    }
}

fn union_members(a: &[PathElement], b: &[PathElement]) -> Vec<PathElement> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            Ordering::Less => {
                out.push(a[i].clone());
                i += 1;
            }
            Ordering::Greater => {
                out.push(b[j].clone());
                j += 1;
            }
            Ordering::Equal => {
                out.push(a[i].clone());
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

fn union_children(a: &[(PathElement, Set)], b: &[(PathElement, Set)]) -> Vec<(PathElement, Set)> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let ord = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.0.cmp(&y.0),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match ord {
            Ordering::Less => {
                out.push(a[i].clone());
                i += 1;
            }
            Ordering::Greater => {
                out.push(b[j].clone());
                j += 1;
            }
            Ordering::Equal => {
                out.push((a[i].0.clone(), a[i].1.union(&b[j].1)));
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Shorthand for a field path element.
pub fn field(name: &str) -> PathElement {
    PathElement::Field(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(names: &[&str]) -> Vec<PathElement> {
        names.iter().map(|n| field(n)).collect()
    }

    fn set(paths: &[&[&str]]) -> Set {
        let mut s = Set::new();
        for path in paths {
            s.insert(&p(path));
        }
        s
    }

    // Upstream fieldpath/set_test.go: TestSetUnion, TestSetDifference, TestSetIntersection (essence).
    #[test]
    fn union_difference_intersection() {
        let a = set(&[&["a"], &["b", "c"], &["b", "d"]]);
        let b = set(&[&["b", "c"], &["e"], &["b"]]);
        assert_eq!(a.union(&b), set(&[&["a"], &["b"], &["b", "c"], &["b", "d"], &["e"]]));
        assert_eq!(a.difference(&b), set(&[&["a"], &["b", "d"]]));
        assert_eq!(a.intersection(&b), set(&[&["b", "c"]]));
        assert!(a.difference(&a).is_empty());
        assert!(a.has(&p(&["b", "d"])) && !a.has(&p(&["b"])));
        assert!(a.touches(&field("b")) && !a.touches(&field("z")));
    }

    #[test]
    fn exclude_removes_whole_subtrees() {
        let a = set(&[&["spec", "replicas"], &["status", "replicas"], &["status"]]);
        assert_eq!(a.exclude(&set(&[&["status"]])), set(&[&["spec", "replicas"]]));
    }

    #[test]
    fn paths_print_as_upstream() {
        let mut s = Set::new();
        let key = PathElement::Key(vec![("containerPort".into(), json!(80)), ("protocol".into(), json!("TCP"))]);
        s.insert(&[field("spec"), field("ports"), key.clone(), field("name")]);
        s.insert(&[field("spec"), field("ports"), key]);
        s.insert(&[field("metadata"), field("finalizers"), PathElement::Value(json!("a"))]);
        s.insert(&[field("spec"), field("replicas")]);
        let printed: Vec<String> = s.paths().iter().map(ToString::to_string).collect();
        assert_eq!(
            printed,
            [
                ".metadata.finalizers[=\"a\"]",
                ".spec.replicas",
                ".spec.ports[containerPort=80,protocol=\"TCP\"]",
                ".spec.ports[containerPort=80,protocol=\"TCP\"].name"
            ]
        );
    }

    #[test]
    fn elements_order_fields_before_keys_values_and_indexes() {
        let mut v = vec![PathElement::Index(0), PathElement::Value(json!(1)), field("a"), PathElement::Key(vec![])];
        v.sort();
        assert_eq!(v, [field("a"), PathElement::Key(vec![]), PathElement::Value(json!(1)), PathElement::Index(0)]);
    }
}
