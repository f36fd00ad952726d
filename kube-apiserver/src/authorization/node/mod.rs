//! The Node authorizer, as upstream's `plugin/pkg/auth/authorizer/node`: requests from kubelets (user
//! `system:node:<name>` in group `system:nodes`) may read the secrets, configmaps, PVCs, PVs, ResourceClaims,
//! VolumeAttachments and ResourceSlices that the node's pods use ([`graph`]), request tokens for the service
//! accounts of those pods, and use their own Node, Lease and CSINode objects; other resources get the static
//! node rules ([`node_rules`]). Everything else is NoOpinion with upstream's reason, for the next authorizer.
//! The NodeRestriction admission plugin narrows the writes allowed here to the node's own objects.

pub mod graph;
pub mod node_rules;
pub mod references;

use std::sync::RwLock;

use api_types::selector::{FieldOp, FieldSelector};
use serde_json::Value;

use super::{Attributes, Authorizer, Decision, NonResourceRule, ResourceRule};
use crate::auth::UserInfo;
use graph::{Graph, VertexType};

/// The user name prefix of node identities.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The group every node identity belongs to.
pub const NODES_GROUP: &str = "system:nodes";
/// The namespace holding node heartbeat leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// Upstream's `nodeidentifier.NodeIdentity`: `Some(node name)` for a `system:node:<name>` user in
/// `system:nodes` (the name may be empty), `None` for anyone else.
pub fn node_identity(user: &UserInfo) -> Option<&str> {
    let name = user.username.strip_prefix(NODE_USER_PREFIX)?;
    user.groups.iter().any(|g| g == NODES_GROUP).then_some(name)
}

/// Authorizes kubelets' requests against the graph of what their pods use.
pub struct NodeAuthorizer {
    graph: RwLock<Graph>,
    /// Upstream's `AuthorizeNodeWithSelectors` (beta, on in 1.33): nodes and pods are subdivided too, and
    /// list/watch of pods and ResourceSlices need a field selector naming the node.
    selectors: bool,
}

impl Default for NodeAuthorizer {
    fn default() -> Self {
        NodeAuthorizer::new()
    }
}

type Answer = (Decision, String);

fn no_opinion(reason: impl Into<String>) -> Answer {
    (Decision::NoOpinion, reason.into())
}

fn allow() -> Answer {
    (Decision::Allow, String::new())
}

/// Whether the field selector requires `field` to equal `value` (`field=value` or `field==value`).
fn selects(selector: Option<&FieldSelector>, field: &str, value: &str) -> bool {
    selector.is_some_and(|s| {
        s.requirements().iter().any(|r| r.field == field && r.op == FieldOp::Equals && r.value == value)
    })
}

impl NodeAuthorizer {
    /// An authorizer with an empty graph and selector authorization on (upstream's 1.33 default).
    pub fn new() -> NodeAuthorizer {
        NodeAuthorizer { graph: RwLock::new(Graph::new()), selectors: true }
    }

    /// Turns `AuthorizeNodeWithSelectors` off: nodes and pods fall back to the static node rules, and
    /// ResourceSlices may be listed and watched without a selector.
    pub fn with_selector_authorization(mut self, enabled: bool) -> NodeAuthorizer {
        self.selectors = enabled;
        self
    }

    /// Feeds the graph from a storage watch, as upstream's graph populator: `resource` is the plural of the
    /// stored object (`pods`, `persistentvolumes`, `volumeattachments`, `resourceslices`; others are ignored),
    /// `deleted` for a delete event (with the last state of the object). Pods count once `spec.nodeName` is set;
    /// applying an object again replaces what it links.
    pub fn apply(&self, resource: &str, obj: &Value, deleted: bool) {
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        let node_name = obj.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
        let mut graph = self.graph.write().unwrap_or_else(|e| e.into_inner());
        match (resource, deleted) {
            ("pods", true) => {
                let namespace = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
                graph.delete_pod(namespace, name);
            }
            ("pods", false) if !node_name.is_empty() => graph.add_pod(obj),
            ("persistentvolumes", true) => graph.delete_pv(name),
            ("persistentvolumes", false) => graph.add_pv(obj),
            ("volumeattachments", true) => graph.delete_node_object(VertexType::VolumeAttachment, name),
            ("volumeattachments", false) => graph.add_node_object(VertexType::VolumeAttachment, name, node_name),
            ("resourceslices", true) => graph.delete_node_object(VertexType::ResourceSlice, name),
            ("resourceslices", false) => graph.add_node_object(VertexType::ResourceSlice, name, node_name),
            _ => {}
        }
    }

    /// [`Authorizer::authorize`] with the request's `fieldSelector` (upstream's `attrs.GetFieldSelector()`),
    /// which pod and ResourceSlice list/watch requests need when selector authorization is on.
    pub fn authorize_with_field_selector(&self, a: &Attributes, field_selector: Option<&FieldSelector>) -> Answer {
        let Some(node) = node_identity(&a.user) else {
            return no_opinion("");
        };
        if node.is_empty() {
            return no_opinion(format!("unknown node for user {:?}", a.user.username));
        }
        if a.resource_request {
            match (a.api_group.as_str(), a.resource.as_str()) {
                ("", "secrets") => return self.read_namespaced(node, VertexType::Secret, a),
                ("", "configmaps") => return self.read_namespaced(node, VertexType::ConfigMap, a),
                ("", "persistentvolumeclaims") if a.subresource == "status" => {
                    return self.status_update(node, VertexType::Pvc, a);
                }
                ("", "persistentvolumeclaims") => return self.get(node, VertexType::Pvc, a),
                ("", "persistentvolumes") => return self.get(node, VertexType::Pv, a),
                ("resource.k8s.io", "resourceclaims") => return self.get(node, VertexType::ResourceClaim, a),
                ("storage.k8s.io", "volumeattachments") => return self.get(node, VertexType::VolumeAttachment, a),
                ("", "serviceaccounts") => return self.create_token(node, a),
                ("coordination.k8s.io", "leases") => return lease(node, a),
                ("storage.k8s.io", "csinodes") => return csi_node(node, a),
                ("resource.k8s.io", "resourceslices") => return self.resource_slice(node, a, field_selector),
                ("", "nodes") if self.selectors => return node_object(node, a),
                ("", "pods") if self.selectors => return self.pod(node, a, field_selector),
                _ => {}
            }
        }
        if node_rules::allow(a) { allow() } else { no_opinion("") }
    }

    /// Upstream's `authorize`: a named object with a path to the node.
    fn related(&self, node: &str, kind: VertexType, a: &Attributes) -> Answer {
        if a.name.is_empty() {
            return no_opinion("No Object name found");
        }
        let graph = self.graph.read().unwrap_or_else(|e| e.into_inner());
        match graph.has_path_from(node, kind, &a.namespace, &a.name) {
            Ok(()) => allow(),
            Err(why) => {
                tracing::debug!(node, %why, "NODE DENY");
                no_opinion(format!("no relationship found between node '{node}' and this object"))
            }
        }
    }

    /// Upstream's `authorizeStatusUpdate`.
    fn status_update(&self, node: &str, kind: VertexType, a: &Attributes) -> Answer {
        if !matches!(a.verb.as_str(), "update" | "patch") {
            return no_opinion("can only get/update/patch this type");
        }
        if a.subresource != "status" {
            return no_opinion("can only update status subresource");
        }
        self.related(node, kind, a)
    }

    /// Upstream's `authorizeGet`.
    fn get(&self, node: &str, kind: VertexType, a: &Attributes) -> Answer {
        if a.verb != "get" {
            return no_opinion("can only get individual resources of this type");
        }
        if !a.subresource.is_empty() {
            return no_opinion("cannot get subresource");
        }
        self.related(node, kind, a)
    }

    /// Upstream's `authorizeReadNamespacedObject`: get, and list/watch of a single named object.
    fn read_namespaced(&self, node: &str, kind: VertexType, a: &Attributes) -> Answer {
        if !matches!(a.verb.as_str(), "get" | "list" | "watch") {
            return no_opinion("can only read resources of this type");
        }
        if !a.subresource.is_empty() {
            return no_opinion("cannot read subresource");
        }
        if a.namespace.is_empty() {
            return no_opinion("can only read namespaced object of this type");
        }
        self.related(node, kind, a)
    }

    /// Upstream's `authorizeCreateToken`: `create serviceaccounts/token` for the service account of a pod on
    /// the node.
    fn create_token(&self, node: &str, a: &Attributes) -> Answer {
        if a.verb != "create" || a.name.is_empty() {
            return no_opinion("can only create tokens for individual service accounts");
        }
        if a.subresource != "token" {
            return no_opinion("can only create token subresource of serviceaccount");
        }
        self.related(node, VertexType::ServiceAccount, a)
    }

    /// Upstream's `authorizeResourceSlice`.
    fn resource_slice(&self, node: &str, a: &Attributes, field_selector: Option<&FieldSelector>) -> Answer {
        if !a.subresource.is_empty() {
            return no_opinion("cannot authorize ResourceSlice subresources");
        }
        match a.verb.as_str() {
            // NodeRestriction checks spec.nodeName of the new object.
            "create" => allow(),
            "get" | "update" | "patch" | "delete" => self.related(node, VertexType::ResourceSlice, a),
            "watch" | "list" | "deletecollection" => {
                if !self.selectors || selects(field_selector, "spec.nodeName", node) {
                    allow()
                } else {
                    no_opinion("can only list/watch/deletecollection resourceslices with nodeName field selector")
                }
            }
            _ => no_opinion(
                "only the following verbs are allowed for a ResourceSlice: get, watch, list, create, update, patch, delete, deletecollection",
            ),
        }
    }

    /// Upstream's `authorizePod` (selector authorization on).
    fn pod(&self, node: &str, a: &Attributes, field_selector: Option<&FieldSelector>) -> Answer {
        match (a.subresource.as_str(), a.verb.as_str()) {
            ("", "get") => self.get(node, VertexType::Pod, a),
            ("", "list" | "watch") => {
                if selects(field_selector, "spec.nodeName", node) {
                    allow()
                } else if !a.name.is_empty() {
                    self.related(node, VertexType::Pod, a)
                } else {
                    no_opinion("can only list/watch pods with spec.nodeName field selector")
                }
            }
            // Mirror pods, pod status and evictions; NodeRestriction limits them to the node's own pods.
            ("", "create" | "delete") | ("status", "update" | "patch") | ("eviction", "create") => allow(),
            _ => no_opinion(""),
        }
    }
}

/// Upstream's `authorizeNode` (selector authorization on): a node reads only its own Node object by name;
/// creates and updates are left to NodeRestriction.
fn node_object(node: &str, a: &Attributes) -> Answer {
    match (a.subresource.as_str(), a.verb.as_str()) {
        ("", "create" | "update" | "patch") | ("status", "update" | "patch") => allow(),
        ("", "get" | "list" | "watch") => {
            if a.name == node {
                allow()
            } else if a.name.is_empty() {
                no_opinion(format!("node '{node}' cannot read all nodes, only its own Node object"))
            } else {
                no_opinion(format!("node '{node}' cannot read '{}', only its own Node object", a.name))
            }
        }
        _ => no_opinion(""),
    }
}

/// Upstream's `authorizeLease`: the node's own lease in `kube-node-lease` (the name of a create is checked by
/// NodeRestriction).
fn lease(node: &str, a: &Attributes) -> Answer {
    if !matches!(a.verb.as_str(), "get" | "create" | "update" | "patch" | "delete") {
        return no_opinion("can only get, create, update, patch, or delete a node lease");
    }
    if a.namespace != NODE_LEASE_NAMESPACE {
        return no_opinion(format!("can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"));
    }
    if a.verb != "create" && a.name != node {
        return no_opinion("can only access node lease with the same name as the requesting node");
    }
    allow()
}

/// Upstream's `authorizeCSINode`: the node's own CSINode (the name of a create is checked by NodeRestriction).
fn csi_node(node: &str, a: &Attributes) -> Answer {
    if !matches!(a.verb.as_str(), "get" | "create" | "update" | "patch" | "delete") {
        return no_opinion("can only get, create, update, patch, or delete a CSINode");
    }
    if !a.subresource.is_empty() {
        return no_opinion("cannot authorize CSINode subresources");
    }
    if a.verb != "create" && a.name != node {
        return no_opinion("can only access CSINode with the same name as the requesting node");
    }
    allow()
}

impl Authorizer for NodeAuthorizer {
    /// Without a field selector: pod and ResourceSlice list/watch are refused unless they name one object (see
    /// [`NodeAuthorizer::authorize_with_field_selector`]).
    fn authorize(&self, a: &Attributes) -> (Decision, String) {
        self.authorize_with_field_selector(a, a.field_selector.as_ref())
    }

    /// Nodes' permissions are not enumerable: incomplete for a node, nothing for anyone else.
    fn rules_for(&self, user: &UserInfo, _namespace: &str) -> (Vec<ResourceRule>, Vec<NonResourceRule>, bool) {
        (Vec::new(), Vec::new(), node_identity(user).is_some())
    }
}

#[cfg(test)]
mod tests;
