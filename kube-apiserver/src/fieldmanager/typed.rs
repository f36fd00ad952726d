//! Typed values, as structured-merge-diff's `typed` package: a JSON value read with the type information of its
//! kind (built-ins from `api_types::typeinfo`, custom resources from their structural schema, anything else
//! deduced: objects are granular maps, arrays atomic), giving its field set (`ToFieldSet`), the comparison of two
//! versions (`Compare`: added, modified, removed paths), the merge of an applied configuration into a live object
//! (`Merge`) and the removal of items (`RemoveItems`).

use api_types::typeinfo::{self, ListKind, Node, Zero};
use serde_json::{Map, Value};

use super::fieldpath::{PathElement, Set};
use crate::apiextensions::schema::structural::Structural;

/// The type of a value.
#[derive(Debug, Clone, Copy)]
pub enum Ty<'a> {
    /// A node of the built-in table.
    Builtin(u32),
    /// A node of a custom resource's structural schema; `root` for the object itself (its `metadata` is
    /// ObjectMeta, as upstream's CRD handler gives it).
    Schema { node: &'a Structural, root: bool },
    /// No type information: deduced from the value.
    Deduced,
}

/// The keys identifying the items of a map-typed list.
#[derive(Debug, Clone, Copy)]
pub enum Keys<'a> {
    Static(&'static [&'static str]),
    Schema(&'a [String]),
}

impl Keys<'_> {
    fn names(&self) -> Vec<&str> {
        match self {
            Keys::Static(k) => k.to_vec(),
            Keys::Schema(k) => k.iter().map(String::as_str).collect(),
        }
    }
}

/// How a list merges.
#[derive(Debug, Clone, Copy)]
pub enum ListType<'a> {
    Atomic,
    Set,
    Map(Keys<'a>),
}

/// The shape of a type for one value.
#[derive(Debug, Clone, Copy)]
enum Shape<'a> {
    /// Replaced as a whole: scalars, atomic structs, maps and lists.
    Leaf,
    /// An object whose entries are owned on their own.
    Object,
    /// A granular list.
    List(ListType<'a>),
}

impl<'a> Ty<'a> {
    /// The type of a built-in kind's object.
    pub fn of_kind(group: &str, version: &str, kind: &str) -> Ty<'static> {
        typeinfo::root(group, version, kind).map(Ty::Builtin).unwrap_or(Ty::Deduced)
    }

    /// The type of a custom resource's object.
    pub fn of_schema(schema: &'a Structural) -> Ty<'a> {
        Ty::Schema { node: schema, root: true }
    }

    fn shape(&self, v: &Value) -> Shape<'a> {
        match (self, v) {
            (Ty::Builtin(n), _) => match typeinfo::node(*n) {
                Node::Scalar => Shape::Leaf,
                Node::Untyped => Ty::Deduced.shape(v),
                Node::Struct { atomic, .. } | Node::Map { atomic, .. } => {
                    if *atomic || !v.is_object() {
                        Shape::Leaf
                    } else {
                        Shape::Object
                    }
                }
                Node::List { kind, .. } => match (kind, v.is_array()) {
                    (_, false) | (ListKind::Atomic, _) => Shape::Leaf,
                    (ListKind::Set, _) => Shape::List(ListType::Set),
                    (ListKind::Map(keys), _) => Shape::List(ListType::Map(Keys::Static(keys))),
                },
            },
            (Ty::Schema { node, root }, _) => {
                let ext = &node.extensions;
                if ext.int_or_string {
                    return Shape::Leaf;
                }
                match node.generic.type_.as_str() {
                    "object" if v.is_object() => {
                        if ext.map_type.as_deref() == Some("atomic") && !root {
                            Shape::Leaf
                        } else {
                            Shape::Object
                        }
                    }
                    "array" if v.is_array() => match ext.list_type.as_deref() {
                        Some("set") => Shape::List(ListType::Set),
                        Some("map") => Shape::List(ListType::Map(Keys::Schema(&ext.list_map_keys))),
                        _ => Shape::Leaf,
                    },
                    "" if ext.preserve_unknown_fields => Ty::Deduced.shape(v),
                    _ => Shape::Leaf,
                }
            }
            (Ty::Deduced, Value::Object(_)) => Shape::Object,
            (Ty::Deduced, _) => Shape::Leaf,
        }
    }

    /// The type of an object's entry `name` (a struct field, else the map's element type, else deduced) and how it
    /// appears in the Go zero value.
    fn field(&self, name: &str) -> (Ty<'a>, Zero) {
        match self {
            Ty::Builtin(n) => match typeinfo::node(*n) {
                Node::Struct { fields, .. } => match typeinfo::field(fields, name) {
                    Some(f) => (Ty::Builtin(f.ty), f.zero),
                    None => (Ty::Deduced, Zero::Absent),
                },
                Node::Map { elem, .. } => (Ty::Builtin(*elem), Zero::Absent),
                _ => (Ty::Deduced, Zero::Absent),
            },
            Ty::Schema { node, root } => {
                if *root && name == "metadata" {
                    return (object_meta(), Zero::Object);
                }
                if *root && (name == "apiVersion" || name == "kind") {
                    return (Ty::Builtin(typeinfo::SCALAR), Zero::Absent);
                }
                if let Some(p) = node.properties.get(name) {
                    return (Ty::Schema { node: p, root: false }, Zero::Absent);
                }
                match node.generic.additional_properties.as_ref().and_then(|a| a.structural.as_deref()) {
                    Some(s) => (Ty::Schema { node: s, root: false }, Zero::Absent),
                    None => (Ty::Deduced, Zero::Absent),
                }
            }
            Ty::Deduced => (Ty::Deduced, Zero::Absent),
        }
    }

    /// Whether `name` is a declared field (a struct field), not an entry of a map.
    fn declares(&self, name: &str) -> bool {
        match self {
            Ty::Builtin(n) => match typeinfo::node(*n) {
                Node::Struct { fields, .. } => typeinfo::field(fields, name).is_some(),
                _ => false,
            },
            Ty::Schema { node, root } => {
                node.properties.contains_key(name) || (*root && matches!(name, "metadata" | "apiVersion" | "kind"))
            }
            Ty::Deduced => false,
        }
    }

    /// The type of a list's items.
    fn elem(&self) -> Ty<'a> {
        match self {
            Ty::Builtin(n) => match typeinfo::node(*n) {
                Node::List { elem, .. } => Ty::Builtin(*elem),
                _ => Ty::Deduced,
            },
            Ty::Schema { node, .. } => match node.items.as_deref() {
                Some(s) => Ty::Schema { node: s, root: false },
                None => Ty::Deduced,
            },
            Ty::Deduced => Ty::Deduced,
        }
    }

    /// The default of a field of this (struct) type, for list-map keys missing from an item.
    fn field_default(&self, name: &str) -> Option<Value> {
        match self {
            Ty::Builtin(n) => match typeinfo::node(*n) {
                Node::Struct { fields, .. } => {
                    typeinfo::field(fields, name).and_then(|f| f.default).and_then(|d| serde_json::from_str(d).ok())
                }
                _ => None,
            },
            Ty::Schema { node, .. } => node.properties.get(name).and_then(|p| p.generic.default.clone()),
            Ty::Deduced => None,
        }
    }
}

/// ObjectMeta's node.
fn object_meta() -> Ty<'static> {
    match Ty::of_kind("", "v1", "ConfigMap") {
        Ty::Builtin(cm) => match typeinfo::node(cm) {
            Node::Struct { fields, .. } => typeinfo::field(fields, "metadata").map(|f| Ty::Builtin(f.ty)),
            _ => None,
        },
        _ => None,
    }
    .unwrap_or(Ty::Deduced)
}

/// The path element of a list item.
fn item_element(lt: ListType<'_>, elem: Ty<'_>, i: usize, item: &Value) -> PathElement {
    match lt {
        ListType::Atomic => PathElement::Index(i),
        ListType::Set => PathElement::Value(item.clone()),
        ListType::Map(keys) => {
            let mut names = keys.names();
            names.sort_unstable();
            let mut out = Vec::with_capacity(names.len());
            for k in names {
                match item.get(k).cloned().or_else(|| elem.field_default(k)) {
                    Some(v) => out.push((k.to_string(), v)),
                    None => continue,
                }
            }
            PathElement::Key(out)
        }
    }
}

/// The items of a list with their path elements, repeated elements after the first ignored.
fn index_items<'v>(lt: ListType<'_>, elem: Ty<'_>, list: &'v [Value]) -> Vec<(PathElement, &'v Value)> {
    let mut out: Vec<(PathElement, &Value)> = Vec::with_capacity(list.len());
    let mut seen: Vec<PathElement> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let pe = item_element(lt, elem, i, item);
        match seen.binary_search(&pe) {
            Ok(_) => continue,
            Err(at) => seen.insert(at, pe.clone()),
        }
        out.push((pe, item));
    }
    out
}

/// Members and children gathered for one level of a trie, sorted when done.
#[derive(Default)]
struct Level {
    members: Vec<PathElement>,
    children: Vec<(PathElement, Set)>,
}

impl Level {
    fn member(&mut self, pe: &PathElement) {
        self.members.push(pe.clone());
    }

    fn child(&mut self, pe: &PathElement, s: Set) {
        if !s.is_empty() {
            self.children.push((pe.clone(), s));
        }
    }

    fn finish(mut self) -> Set {
        self.members.sort();
        self.members.dedup();
        self.children.sort_by(|a, b| a.0.cmp(&b.0));
        Set { members: self.members, children: self.children }
    }
}

/// The set of fields of a value (upstream's `ToFieldSet`): leaves, list items, map entries (not struct fields),
/// and struct fields that are null or empty objects.
pub fn to_set(ty: Ty<'_>, v: &Value) -> Set {
    let mut level = Level::default();
    match (ty.shape(v), v) {
        (Shape::Object, Value::Object(m)) => {
            for (k, val) in m {
                let pe = PathElement::Field(k.clone());
                let (fty, _) = ty.field(k);
                match fty.shape(val) {
                    Shape::Leaf => level.member(&pe),
                    _ => {
                        level.child(&pe, to_set(fty, val));
                        if val.as_object().is_some_and(Map::is_empty) || !ty.declares(k) {
                            level.member(&pe);
                        }
                    }
                }
            }
        }
        (Shape::List(lt), Value::Array(items)) => {
            let elem = ty.elem();
            for (pe, item) in index_items(lt, elem, items) {
                level.member(&pe);
                if !matches!(elem.shape(item), Shape::Leaf) {
                    level.child(&pe, to_set(elem, item));
                }
            }
        }
        _ => {}
    }
    level.finish()
}

/// What changed between two versions of a value (upstream's `Comparison`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Comparison {
    pub added: Set,
    pub modified: Set,
    pub removed: Set,
}

impl Comparison {
    /// Without the reset fields of a strategy (upstream's `ExcludeFields`).
    pub fn exclude(&self, prefixes: &Set) -> Comparison {
        Comparison {
            added: self.added.exclude(prefixes),
            modified: self.modified.exclude(prefixes),
            removed: self.removed.exclude(prefixes),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Change {
    Added,
    Modified,
    Removed,
}

static EMPTY_OBJECT: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| Value::Object(Map::new()));

fn is_empty_container(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

/// Compares `old` (None: the zero value of the kind, as upstream diffs a create against) with `new`.
pub fn compare(ty: Ty<'_>, old: Option<&Value>, new: &Value) -> Comparison {
    let (lhs, zero) = match old {
        Some(o) => (o, false),
        None => (&*EMPTY_OBJECT, true),
    };
    let mut out = Comparison::default();
    compare_node(ty, Some(lhs), Some(new), zero, &mut out);
    out
}

/// Compares one node; returns its own change, filling `out` with the changes below it.
fn compare_node(ty: Ty<'_>, l: Option<&Value>, r: Option<&Value>, zero: bool, out: &mut Comparison) -> Option<Change> {
    let probe = r.filter(|v| !v.is_null()).or(l).unwrap_or(&Value::Null);
    let shape = ty.shape(probe);
    // A null stands for an empty object or list (a zero value): compared item by item, but present.
    let kinds_differ = matches!((l, r), (Some(a), Some(b)) if !a.is_null() && !b.is_null() && std::mem::discriminant(a) != std::mem::discriminant(b));
    let leaf = matches!(shape, Shape::Leaf) || kinds_differ || (is_empty_container(l) && is_empty_container(r));
    if leaf {
        return match (l, r) {
            (None, Some(_)) => Some(Change::Added),
            (Some(_), None) => Some(Change::Removed),
            (Some(a), Some(b)) if a != b => Some(Change::Modified),
            _ => None,
        };
    }
    let mut added = Level::default();
    let mut modified = Level::default();
    let mut removed = Level::default();
    let mut visit = |pe: PathElement, child: Option<Change>, sub: Comparison| {
        match child {
            Some(Change::Added) => added.member(&pe),
            Some(Change::Modified) => modified.member(&pe),
            Some(Change::Removed) => removed.member(&pe),
            None => {}
        }
        added.child(&pe, sub.added);
        modified.child(&pe, sub.modified);
        removed.child(&pe, sub.removed);
    };
    match shape {
        Shape::Object => {
            let lm = l.and_then(Value::as_object);
            let rm = r.and_then(Value::as_object);
            let keys = lm
                .into_iter()
                .flat_map(|m| m.keys())
                .chain(rm.into_iter().flat_map(|m| m.keys()).filter(|k| !lm.is_some_and(|lm| lm.contains_key(*k))));
            for k in keys {
                let (fty, zero_value) = ty.field(k);
                let mut lv = lm.and_then(|m| m.get(k));
                let mut child_zero = false;
                if lv.is_none() && zero {
                    match zero_value {
                        Zero::Object => {
                            lv = Some(&*EMPTY_OBJECT);
                            child_zero = true;
                        }
                        Zero::Null => lv = Some(&Value::Null),
                        Zero::Absent => {}
                    }
                }
                let rv = rm.and_then(|m| m.get(k));
                let mut sub = Comparison::default();
                let change = compare_node(fty, lv, rv, child_zero, &mut sub);
                visit(PathElement::Field(k.clone()), change, sub);
            }
        }
        Shape::List(lt) => {
            let elem = ty.elem();
            let li = l.and_then(Value::as_array).map(|a| index_items(lt, elem, a)).unwrap_or_default();
            let ri = r.and_then(Value::as_array).map(|a| index_items(lt, elem, a)).unwrap_or_default();
            let find = |items: &[(PathElement, &Value)], pe: &PathElement| -> Option<usize> {
                items.iter().position(|(p, _)| p == pe)
            };
            for (pe, lv) in &li {
                let rv = find(&ri, pe).map(|i| ri[i].1);
                let mut sub = Comparison::default();
                let change = compare_node(elem, Some(lv), rv, false, &mut sub);
                visit(pe.clone(), change, sub);
            }
            for (pe, rv) in &ri {
                if find(&li, pe).is_none() {
                    let mut sub = Comparison::default();
                    let change = compare_node(elem, None, Some(rv), false, &mut sub);
                    visit(pe.clone(), change, sub);
                }
            }
        }
        Shape::Leaf => unreachable!("leaves return above"),
    }
    out.added = added.finish();
    out.modified = modified.finish();
    out.removed = removed.finish();
    match (l, r) {
        (None, Some(_)) => Some(Change::Added),
        (Some(_), None) => Some(Change::Removed),
        _ => None,
    }
}

/// Merges an applied configuration into the live value (upstream's `Merge`): leaves and atomic values from the
/// configuration, objects entry by entry, granular lists item by item in the configuration's order with the live
/// items it does not name kept where they were.
pub fn merge(ty: Ty<'_>, live: Option<&Value>, config: Option<&Value>) -> Option<Value> {
    let (l, r) = match (live, config) {
        (l, None) => return l.cloned(),
        (None, Some(r)) => (None, r),
        (Some(l), Some(r)) => (Some(l), r),
    };
    let kinds_differ = l.is_some_and(|l| std::mem::discriminant(l) != std::mem::discriminant(r));
    match ty.shape(r) {
        _ if kinds_differ => Some(r.clone()),
        Shape::Leaf => Some(r.clone()),
        Shape::Object => {
            let (Some(Value::Object(lm)), Value::Object(rm)) = (l, r) else { return Some(r.clone()) };
            let mut out = Map::with_capacity(lm.len().max(rm.len()));
            for (k, lv) in lm {
                let (fty, _) = ty.field(k);
                if let Some(v) = merge(fty, Some(lv), rm.get(k)) {
                    out.insert(k.clone(), v);
                }
            }
            for (k, rv) in rm {
                if !lm.contains_key(k) {
                    let (fty, _) = ty.field(k);
                    if let Some(v) = merge(fty, None, Some(rv)) {
                        out.insert(k.clone(), v);
                    }
                }
            }
            Some(Value::Object(out))
        }
        Shape::List(lt) => {
            let (Some(Value::Array(la)), Value::Array(ra)) = (l, r) else { return Some(r.clone()) };
            let elem = ty.elem();
            Some(Value::Array(merge_list(lt, elem, la, ra)))
        }
    }
}

/// Upstream's list merge order (`mergingWalker.visitListItems`).
fn merge_list(lt: ListType<'_>, elem: Ty<'_>, la: &[Value], ra: &[Value]) -> Vec<Value> {
    let lhs = index_items(lt, elem, la);
    let rhs = index_items(lt, elem, ra);
    let in_lhs = |pe: &PathElement| lhs.iter().find(|(p, _)| p == pe).map(|(_, v)| *v);
    let in_rhs = |pe: &PathElement| rhs.iter().find(|(p, _)| p == pe).map(|(_, v)| *v);
    let shared: Vec<&PathElement> = rhs.iter().map(|(p, _)| p).filter(|p| in_lhs(p).is_some()).collect();
    let mut shared = shared.into_iter();
    let mut next_shared = shared.next();
    let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
    let (mut li, mut ri) = (0, 0);
    while li < lhs.len() || ri < rhs.len() {
        if li < lhs.len() && ri < rhs.len() {
            let pe = &lhs[li].0;
            if *pe == rhs[ri].0 {
                out.extend(merge(elem, Some(lhs[li].1), Some(rhs[ri].1)));
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if in_rhs(pe).is_some() && next_shared.is_some_and(|n| n != pe) {
                li += 1;
                continue;
            }
        }
        if li < lhs.len() && in_rhs(&lhs[li].0).is_none() {
            out.extend(merge(elem, Some(lhs[li].1), None));
            li += 1;
            continue;
        }
        if ri < rhs.len() {
            let pe = &rhs[ri].0;
            out.extend(merge(elem, in_lhs(pe), Some(rhs[ri].1)));
            if next_shared.is_some_and(|n| n == pe) {
                next_shared = shared.next();
            }
            ri += 1;
        } else {
            // A live item named by the configuration but already merged: skip it.
            li += 1;
        }
    }
    out
}

/// Removes from `v` every entry or item that `last` (the applier's previous set) owned and nobody owns now
/// (`owned`): upstream's prune of fields an applier dropped, after `EnsureNamedFieldsAreMembers` (a path owned
/// below counts as owned).
pub fn remove_unowned(ty: Ty<'_>, v: &mut Value, last: &Set, owned: &Set) {
    static EMPTY: std::sync::LazyLock<Set> = std::sync::LazyLock::new(Set::new);
    match (ty.shape(v), v) {
        (Shape::Object, Value::Object(m)) => {
            let mut drop = Vec::new();
            for (k, val) in m.iter_mut() {
                let pe = PathElement::Field(k.clone());
                if !last.touches(&pe) {
                    continue;
                }
                if !owned.touches(&pe) {
                    drop.push(k.clone());
                } else if let Some(lc) = last.child(&pe) {
                    let (fty, _) = ty.field(k);
                    remove_unowned(fty, val, lc, owned.child(&pe).unwrap_or(&EMPTY));
                }
            }
            for k in drop {
                m.shift_remove(&k);
            }
        }
        (Shape::List(lt), Value::Array(items)) => {
            let elem = ty.elem();
            let mut keep = Vec::with_capacity(items.len());
            for (i, mut item) in std::mem::take(items).into_iter().enumerate() {
                let pe = item_element(lt, elem, i, &item);
                if last.touches(&pe) {
                    if !owned.touches(&pe) {
                        continue;
                    }
                    if let Some(lc) = last.child(&pe) {
                        remove_unowned(elem, &mut item, lc, owned.child(&pe).unwrap_or(&EMPTY));
                    }
                }
                keep.push(item);
            }
            *items = keep;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::fieldsv1;
    use super::*;
    use serde_json::json;

    fn deployment() -> Ty<'static> {
        Ty::of_kind("apps", "v1", "Deployment")
    }

    // Upstream typed/toset_test.go essence, and the managedFields kubectl shows for an applied Deployment.
    #[test]
    fn field_set_of_an_applied_deployment() {
        let obj = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}]}]}
                }
            }
        });
        let set = to_set(deployment(), &obj);
        assert_eq!(
            fieldsv1::encode(&set),
            json!({
                "f:apiVersion": {}, "f:kind": {},
                "f:metadata": {"f:labels": {"f:app": {}}, "f:name": {}},
                "f:spec": {
                    "f:replicas": {}, "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                            ".": {}, "f:image": {}, "f:name": {},
                            "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                        }}}
                    }
                }
            })
        );
    }

    // The managedFields upstream records for `kubectl create deployment`: paths of zero-valued structs (spec,
    // strategy, template) are not added, created maps and pointers (labels, rollingUpdate) are.
    #[test]
    fn compare_against_the_zero_value_as_upstream_create() {
        let new = json!({
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
                "template": {"spec": {"containers": [{"name": "c", "image": "i", "resources": {}}]}}
            }
        });
        let c = compare(deployment(), None, &new);
        assert!(c.modified.is_empty() && c.removed.is_empty());
        assert_eq!(
            fieldsv1::encode(&c.added),
            json!({
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}, "f:name": {}},
                "f:spec": {
                    "f:replicas": {},
                    "f:strategy": {"f:rollingUpdate": {".": {}, "f:maxSurge": {}}, "f:type": {}},
                    "f:template": {"f:spec": {"f:containers": {
                            "k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}, "f:resources": {}}
                    }}}
                }
            })
        );
    }

    #[test]
    fn compare_finds_modified_and_removed_leaves_and_items() {
        let old = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b"}]}}}});
        let new = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "a", "image": "y"}]}}}});
        let c = compare(deployment(), Some(&old), &new);
        assert_eq!(
            c.modified.paths().iter().map(ToString::to_string).collect::<Vec<_>>(),
            [".spec.replicas", ".spec.template.spec.containers[name=\"a\"].image"]
        );
        let removed: Vec<String> = c.removed.paths().iter().map(ToString::to_string).collect();
        assert_eq!(
            removed,
            [".spec.template.spec.containers[name=\"b\"]", ".spec.template.spec.containers[name=\"b\"].name"]
        );
        assert!(c.added.is_empty());
    }

    // structured-merge-diff merge/key_test.go, set_test.go essence: keyed items merge, atomic values are replaced.
    #[test]
    fn merge_by_list_types() {
        let live = json!({
            "metadata": {"finalizers": ["a", "b"], "labels": {"x": "1"}},
            "spec": {"selector": {"matchLabels": {"a": "1", "b": "2"}}, "template": {"spec": {"containers": [
                {"name": "a", "image": "1", "args": ["x", "y"]}, {"name": "b", "image": "2"}
            ]}}}
        });
        let config = json!({
            "metadata": {"finalizers": ["c", "a"], "labels": {"y": "2"}},
            "spec": {"selector": {"matchLabels": {"c": "3"}}, "template": {"spec": {"containers": [
                {"name": "c", "image": "3"}, {"name": "a", "args": ["z"]}
            ]}}}
        });
        let merged = merge(deployment(), Some(&live), Some(&config)).unwrap();
        assert_eq!(merged["metadata"]["finalizers"], json!(["c", "a", "b"]));
        assert_eq!(merged["metadata"]["labels"], json!({"x": "1", "y": "2"}));
        assert_eq!(merged["spec"]["selector"], json!({"matchLabels": {"c": "3"}}));
        assert_eq!(
            merged["spec"]["template"]["spec"]["containers"],
            json!([{"name": "c", "image": "3"}, {"name": "a", "image": "1", "args": ["z"]}, {"name": "b", "image": "2"}])
        );
    }

    #[test]
    fn remove_unowned_drops_only_what_nobody_owns() {
        let mut v = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 1, "paused": true}});
        let last = to_set(
            deployment(),
            &json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 1, "paused": true}}),
        );
        let mut owned = to_set(deployment(), &json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}}));
        owned.insert(&[PathElement::Field("spec".into()), PathElement::Field("paused".into())]);
        remove_unowned(deployment(), &mut v, &last, &owned);
        assert_eq!(v, json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1, "paused": true}}));
    }
}
