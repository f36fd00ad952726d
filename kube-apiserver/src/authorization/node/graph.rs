//! The Node authorizer's graph, as upstream's `plugin/pkg/auth/authorizer/node/graph.go` and
//! `graph_populator.go`: vertices for API objects, edges pointing toward the nodes that may read them.
//!
//! ```text
//! node <- pod <- secret, configmap, pvc, serviceaccount, resourceclaim
//!               pvc <- pv <- secret
//! node <- volumeattachment
//! node <- resourceslice
//! ```
//!
//! Every edge is contributed by exactly one stored object (a pod, a PV, a VolumeAttachment or a ResourceSlice)
//! and carries the node it finally leads to when that is known. Re-applying an object replaces its edges, and
//! deleting it removes them; a vertex exists while some edge touches it, as upstream drops vertices left without
//! neighbours.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::references;

/// The kinds of object the graph links, with upstream's names (used in log and error text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VertexType {
    ConfigMap,
    ResourceSlice,
    Node,
    Pod,
    Pvc,
    Pv,
    ResourceClaim,
    Secret,
    VolumeAttachment,
    ServiceAccount,
}

impl VertexType {
    pub fn name(self) -> &'static str {
        match self {
            VertexType::ConfigMap => "configmap",
            VertexType::ResourceSlice => "resourceslice",
            VertexType::Node => "node",
            VertexType::Pod => "pod",
            VertexType::Pvc => "pvc",
            VertexType::Pv => "pv",
            VertexType::ResourceClaim => "resourceclaim",
            VertexType::Secret => "secret",
            VertexType::VolumeAttachment => "volumeattachment",
            VertexType::ServiceAccount => "serviceAccount",
        }
    }
}

/// An API object in the graph: its type, namespace ("" when cluster-scoped) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Vertex {
    pub kind: VertexType,
    pub namespace: String,
    pub name: String,
}

impl Vertex {
    fn new(kind: VertexType, namespace: &str, name: &str) -> Vertex {
        Vertex { kind, namespace: namespace.to_string(), name: name.to_string() }
    }

    fn node(name: &str) -> Vertex {
        Vertex::new(VertexType::Node, "", name)
    }
}

/// `from -> to`, decorated with the node it leads to when that is known (upstream's destination edges).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Edge {
    from: Vertex,
    to: Vertex,
    destination: Option<Vertex>,
}

/// The graph: edges grouped by the object that contributed them, and an adjacency index over all of them.
#[derive(Debug, Default)]
pub struct Graph {
    /// The contributing object (a pod, pv, volumeattachment or resourceslice vertex) -> its edges.
    sources: HashMap<Vertex, Vec<Edge>>,
    /// from -> to -> (destination, number of contributions of that edge).
    out: HashMap<Vertex, HashMap<Vertex, (Option<Vertex>, usize)>>,
    /// Vertices with incoming edges, to tell which vertices exist.
    incoming: HashMap<Vertex, usize>,
}

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }

    /// Replaces the edges `source` contributes (none removes them all).
    fn set_source(&mut self, source: Vertex, edges: Vec<Edge>) {
        if let Some(old) = self.sources.remove(&source) {
            for e in old {
                self.unlink(e);
            }
        }
        let mut seen = HashSet::new();
        let edges: Vec<Edge> = edges.into_iter().filter(|e| seen.insert(e.clone())).collect();
        if edges.is_empty() {
            return;
        }
        for e in &edges {
            let targets = self.out.entry(e.from.clone()).or_default();
            let entry = targets.entry(e.to.clone()).or_insert((e.destination.clone(), 0));
            entry.1 += 1;
            *self.incoming.entry(e.to.clone()).or_default() += 1;
        }
        self.sources.insert(source, edges);
    }

    fn unlink(&mut self, e: Edge) {
        if let Some(targets) = self.out.get_mut(&e.from) {
            if let Some(entry) = targets.get_mut(&e.to) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    targets.remove(&e.to);
                }
            }
            if targets.is_empty() {
                self.out.remove(&e.from);
            }
        }
        if let Some(n) = self.incoming.get_mut(&e.to) {
            *n -= 1;
            if *n == 0 {
                self.incoming.remove(&e.to);
            }
        }
    }

    fn exists(&self, v: &Vertex) -> bool {
        self.out.contains_key(v) || self.incoming.contains_key(v)
    }

    /// Upstream's `AddPod` (for a pod with `spec.nodeName` set): `pod -> node`, and unless it is a mirror pod,
    /// `serviceaccount, secret, configmap, pvc, resourceclaim -> pod`.
    pub fn add_pod(&mut self, pod: &Value) {
        let namespace = str_at(pod, "/metadata/namespace");
        let pod_vertex = Vertex::new(VertexType::Pod, namespace, str_at(pod, "/metadata/name"));
        let node = Vertex::node(str_at(pod, "/spec/nodeName"));
        let mut edges = vec![Edge { from: pod_vertex.clone(), to: node.clone(), destination: Some(node.clone()) }];
        // A node must never be able to create a pod that grants it access to other objects: mirror pods link
        // to nothing (NodeRestriction also refuses such mirror pods; this is defence in depth).
        let mirror = pod.pointer("/metadata/annotations").and_then(|a| a.get(MIRROR_POD_ANNOTATION)).is_some();
        if !mirror {
            let mut link = |kind: VertexType, name: &str| {
                edges.push(Edge {
                    from: Vertex::new(kind, namespace, name),
                    to: pod_vertex.clone(),
                    destination: Some(node.clone()),
                });
            };
            let service_account = str_at(pod, "/spec/serviceAccountName");
            if !service_account.is_empty() {
                link(VertexType::ServiceAccount, service_account);
            }
            for name in references::pod_secret_names(pod) {
                link(VertexType::Secret, &name);
            }
            for name in references::pod_configmap_names(pod) {
                link(VertexType::ConfigMap, &name);
            }
            for name in references::pod_pvc_names(pod) {
                link(VertexType::Pvc, &name);
            }
            for name in references::pod_resource_claim_names(pod) {
                link(VertexType::ResourceClaim, &name);
            }
        }
        self.set_source(pod_vertex, edges);
    }

    pub fn delete_pod(&mut self, namespace: &str, name: &str) {
        self.set_source(Vertex::new(VertexType::Pod, namespace, name), Vec::new());
    }

    /// Upstream's `AddPV`: with a claim reference, `pv -> pvc` and `secret -> pv` for the kubelet-visible secrets
    /// the volume names; these edges carry no node, as the claim's pod may not exist yet.
    pub fn add_pv(&mut self, pv: &Value) {
        let pv_vertex = Vertex::new(VertexType::Pv, "", str_at(pv, "/metadata/name"));
        let mut edges = Vec::new();
        if pv.pointer("/spec/claimRef").is_some_and(Value::is_object) {
            let pvc =
                Vertex::new(VertexType::Pvc, str_at(pv, "/spec/claimRef/namespace"), str_at(pv, "/spec/claimRef/name"));
            edges.push(Edge { from: pv_vertex.clone(), to: pvc, destination: None });
            for (namespace, name, kubelet_visible) in references::pv_secret_names(pv) {
                if kubelet_visible {
                    edges.push(Edge {
                        from: Vertex::new(VertexType::Secret, &namespace, &name),
                        to: pv_vertex.clone(),
                        destination: None,
                    });
                }
            }
        }
        self.set_source(pv_vertex, edges);
    }

    pub fn delete_pv(&mut self, name: &str) {
        self.set_source(Vertex::new(VertexType::Pv, "", name), Vec::new());
    }

    /// Upstream's `AddVolumeAttachment` and `AddResourceSlice`: `object -> node` when a node is named.
    pub fn add_node_object(&mut self, kind: VertexType, name: &str, node_name: &str) {
        let vertex = Vertex::new(kind, "", name);
        let mut edges = Vec::new();
        if !node_name.is_empty() {
            let node = Vertex::node(node_name);
            edges.push(Edge { from: vertex.clone(), to: node.clone(), destination: Some(node) });
        }
        self.set_source(vertex, edges);
    }

    pub fn delete_node_object(&mut self, kind: VertexType, name: &str) {
        self.set_source(Vertex::new(kind, "", name), Vec::new());
    }

    /// Upstream's `hasPathFrom`: whether a directed path leads from the object to the node. Edges decorated
    /// with another node are not followed. The error text says why not (for logs).
    pub fn has_path_from(&self, node_name: &str, kind: VertexType, namespace: &str, name: &str) -> Result<(), String> {
        let node = Vertex::node(node_name);
        let kind_name = kind.name();
        if !self.exists(&node) {
            return Err(format!("unknown node '{node_name}' cannot get {kind_name} {namespace}/{name}"));
        }
        let start = Vertex::new(kind, namespace, name);
        if !self.exists(&start) {
            return Err(format!("node '{node_name}' cannot get unknown {kind_name} {namespace}/{name}"));
        }
        let mut visited: HashSet<&Vertex> = HashSet::new();
        let mut stack = vec![&start];
        while let Some(v) = stack.pop() {
            if *v == node {
                return Ok(());
            }
            if !visited.insert(v) {
                continue;
            }
            for (to, (destination, _)) in self.out.get(v).into_iter().flatten() {
                if destination.as_ref().is_some_and(|d| *d != node) {
                    continue;
                }
                stack.push(to);
            }
        }
        Err(format!(
            "node '{node_name}' cannot get {kind_name} {namespace}/{name}, no relationship to this object was found in the node authorizer graph"
        ))
    }
}

/// The annotation that marks a pod as the API mirror of a kubelet's static pod.
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, secrets: &[&str]) -> Value {
        let volumes: Vec<Value> = secrets.iter().map(|s| json!({"name": s, "secret": {"secretName": s}})).collect();
        json!({"metadata": {"name": name, "namespace": "ns"}, "spec": {"nodeName": node, "volumes": volumes}})
    }

    #[test]
    fn deleting_a_pod_removes_only_its_edges() {
        let mut g = Graph::new();
        g.add_pod(&pod("a", "n1", &["shared", "only-a"]));
        g.add_pod(&pod("b", "n2", &["shared"]));
        assert!(g.has_path_from("n1", VertexType::Secret, "ns", "shared").is_ok());
        assert!(g.has_path_from("n2", VertexType::Secret, "ns", "shared").is_ok());
        assert!(g.has_path_from("n2", VertexType::Secret, "ns", "only-a").is_err());
        g.delete_pod("ns", "a");
        assert!(g.has_path_from("n1", VertexType::Secret, "ns", "shared").is_err());
        assert!(g.has_path_from("n1", VertexType::Secret, "ns", "only-a").is_err());
        assert!(g.has_path_from("n2", VertexType::Secret, "ns", "shared").is_ok());
        assert!(g.out.keys().all(|v| v.name != "only-a"), "orphaned vertex left behind");
    }

    #[test]
    fn errors_name_the_missing_piece() {
        let mut g = Graph::new();
        assert_eq!(
            g.has_path_from("n1", VertexType::Secret, "ns", "s").unwrap_err(),
            "unknown node 'n1' cannot get secret ns/s"
        );
        g.add_pod(&pod("a", "n1", &[]));
        assert_eq!(
            g.has_path_from("n1", VertexType::Secret, "ns", "s").unwrap_err(),
            "node 'n1' cannot get unknown secret ns/s"
        );
        g.add_pod(&pod("b", "n2", &["s"]));
        assert_eq!(
            g.has_path_from("n1", VertexType::Secret, "ns", "s").unwrap_err(),
            "node 'n1' cannot get secret ns/s, no relationship to this object was found in the node authorizer graph"
        );
    }

    #[test]
    fn pv_secrets_reach_the_node_through_the_claim() {
        let mut g = Graph::new();
        g.add_pv(&json!({"metadata": {"name": "pv1"}, "spec": {
            "claimRef": {"namespace": "ns", "name": "claim"},
            "csi": {"driver": "d", "volumeHandle": "h",
                    "nodeStageSecretRef": {"namespace": "ns", "name": "stage"},
                    "controllerPublishSecretRef": {"namespace": "ns", "name": "controller"}}
        }}));
        assert!(g.has_path_from("n1", VertexType::Pv, "", "pv1").is_err());
        g.add_pod(&json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {
            "nodeName": "n1", "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "claim"}}]
        }}));
        assert!(g.has_path_from("n1", VertexType::Pv, "", "pv1").is_ok());
        assert!(g.has_path_from("n1", VertexType::Pvc, "ns", "claim").is_ok());
        assert!(g.has_path_from("n1", VertexType::Secret, "ns", "stage").is_ok());
        assert!(g.has_path_from("n1", VertexType::Secret, "ns", "controller").is_err());
        // an unbound PV links nothing
        g.add_pv(&json!({"metadata": {"name": "pv1"}, "spec": {"csi": {"driver": "d", "volumeHandle": "h"}}}));
        assert!(g.has_path_from("n1", VertexType::Pv, "", "pv1").is_err());
        // deleting the pod keeps the pv -> pvc edge for the next pod
        g.add_pv(&json!({"metadata": {"name": "pv1"}, "spec": {"claimRef": {"namespace": "ns", "name": "claim"}}}));
        g.delete_pod("ns", "p");
        assert!(g.has_path_from("n1", VertexType::Pv, "", "pv1").is_err());
        assert!(g.exists(&Vertex::new(VertexType::Pvc, "ns", "claim")));
    }

    #[test]
    fn mirror_pods_link_only_themselves() {
        let mut g = Graph::new();
        let mut mirror = pod("static", "n1", &["s"]);
        mirror["metadata"]["annotations"] = json!({MIRROR_POD_ANNOTATION: "hash"});
        mirror["spec"]["serviceAccountName"] = json!("sa");
        g.add_pod(&mirror);
        assert!(g.has_path_from("n1", VertexType::Pod, "ns", "static").is_ok());
        assert!(g.has_path_from("n1", VertexType::Secret, "ns", "s").is_err());
        assert!(g.has_path_from("n1", VertexType::ServiceAccount, "ns", "sa").is_err());
    }

    #[test]
    fn attachments_and_slices_follow_their_node_name() {
        let mut g = Graph::new();
        g.add_node_object(VertexType::VolumeAttachment, "va", "n1");
        assert!(g.has_path_from("n1", VertexType::VolumeAttachment, "", "va").is_ok());
        g.add_node_object(VertexType::VolumeAttachment, "va", "n2");
        assert!(g.has_path_from("n1", VertexType::VolumeAttachment, "", "va").is_err());
        assert!(g.has_path_from("n2", VertexType::VolumeAttachment, "", "va").is_ok());
        g.delete_node_object(VertexType::VolumeAttachment, "va");
        assert!(g.has_path_from("n2", VertexType::VolumeAttachment, "", "va").is_err());
        assert!(g.out.is_empty() && g.incoming.is_empty() && g.sources.is_empty());
    }
}
