//! Type information for server-side apply: how each field of each built-in kind merges (list types atomic/set/map
//! with their keys, map types, atomic structs), as upstream's OpenAPI extensions and `schemaconv` give
//! structured-merge-diff. The table is generated from upstream's Go types by `api-types/gen/typeinfo.py`.

mod generated;

pub use generated::{NODES, ROOTS};

/// How the items of a list merge (`x-kubernetes-list-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// Replaced as a whole.
    Atomic,
    /// Scalar items, each owned on its own.
    Set,
    /// Object items identified by the values of these keys.
    Map(&'static [&'static str]),
}

/// How a field appears in the Go zero value of its struct (what upstream's field manager diffs a create against).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zero {
    /// `omitempty`: left out.
    Absent,
    /// Encoded as `null` (or a zero scalar).
    Null,
    /// A non-pointer struct: encoded as an (empty) object.
    Object,
}

/// One field of a struct: its JSON name, its type node, its place in the zero value and its `+default` as JSON
/// text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub ty: u32,
    pub zero: Zero,
    pub default: Option<&'static str>,
}

/// A type: a scalar, an untyped value (merged by deduction), a struct, a list or a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    Scalar,
    Untyped,
    /// Fields sorted by name; an atomic struct is replaced as a whole.
    Struct {
        atomic: bool,
        fields: &'static [Field],
    },
    List {
        elem: u32,
        kind: ListKind,
    },
    Map {
        elem: u32,
        atomic: bool,
    },
}

/// The node of a scalar.
pub const SCALAR: u32 = 0;
/// The node of an untyped value.
pub const UNTYPED: u32 = 1;

/// The type node of a built-in kind's object.
pub fn root(group: &str, version: &str, kind: &str) -> Option<u32> {
    ROOTS.binary_search_by(|(g, v, k, _)| (*g, *v, *k).cmp(&(group, version, kind))).ok().map(|i| ROOTS[i].3)
}

/// A type node by index.
pub fn node(ty: u32) -> &'static Node {
    &NODES[ty as usize]
}

/// The field `name` of a struct node.
pub fn field(fields: &'static [Field], name: &str) -> Option<&'static Field> {
    fields.binary_search_by(|f| f.name.cmp(name)).ok().map(|i| &fields[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(mut ty: u32, fields: &[&str]) -> u32 {
        for f in fields {
            ty = match node(ty) {
                Node::Struct { fields, .. } => field(fields, f).unwrap_or_else(|| panic!("no field {f}")).ty,
                Node::List { elem, .. } | Node::Map { elem, .. } if *f == "*" => *elem,
                other => panic!("{f} of {other:?}"),
            };
        }
        ty
    }

    #[test]
    fn container_ports_are_keyed_by_port_and_protocol_as_upstream_openapi() {
        let pod = root("", "v1", "Pod").unwrap();
        let ports = path(pod, &["spec", "containers", "*", "ports"]);
        assert_eq!(
            *node(ports),
            Node::List { elem: path(ports, &["*"]), kind: ListKind::Map(&["containerPort", "protocol"]) }
        );
        let containers = path(pod, &["spec", "containers"]);
        assert!(matches!(node(containers), Node::List { kind: ListKind::Map(["name"]), .. }));
        // Patch strategy only (no listType): volumes merge on name; args are atomic.
        assert!(matches!(node(path(pod, &["spec", "volumes"])), Node::List { kind: ListKind::Map(["name"]), .. }));
        assert!(matches!(
            node(path(pod, &["spec", "containers", "*", "args"])),
            Node::List { kind: ListKind::Atomic, .. }
        ));
    }

    #[test]
    fn metadata_and_selectors_follow_upstream_markers() {
        let deploy = root("apps", "v1", "Deployment").unwrap();
        assert!(matches!(node(path(deploy, &["spec", "selector"])), Node::Struct { atomic: true, .. }));
        assert!(matches!(node(path(deploy, &["metadata", "labels"])), Node::Map { atomic: false, .. }));
        assert!(matches!(node(path(deploy, &["metadata", "finalizers"])), Node::List { kind: ListKind::Set, .. }));
        assert!(matches!(
            node(path(deploy, &["metadata", "ownerReferences"])),
            Node::List { kind: ListKind::Map(["uid"]), .. }
        ));
        let Node::Struct { fields, .. } = node(deploy) else { panic!() };
        assert_eq!(field(fields, "spec").unwrap().zero, Zero::Object);
        assert_eq!(field(fields, "status").unwrap().zero, Zero::Object);
        let spec = field(fields, "spec").unwrap().ty;
        let Node::Struct { fields: spec, .. } = node(spec) else { panic!() };
        assert_eq!(field(spec, "selector").unwrap().zero, Zero::Null);
        assert_eq!(field(spec, "replicas").unwrap().zero, Zero::Absent);
        assert!(field(fields, "apiVersion").is_some());
        let cm = root("", "v1", "ConfigMap").unwrap();
        assert!(matches!(node(path(cm, &["data"])), Node::Map { atomic: false, elem: SCALAR }));
        assert!(root("apiextensions.k8s.io", "v1", "CustomResourceDefinition").is_some());
        assert!(root("autoscaling", "v1", "Scale").is_some());
    }
}
