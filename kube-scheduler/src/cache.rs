//! The scheduler's cache: every node with the pods bound (or assumed) to it. A pod is *assumed* on its node as
//! soon as the scheduler picks it, before the binding is written, so the next cycle already counts it; the
//! informer's update confirms it, a failed binding forgets it. Snapshots are cheap (shared, copied on write).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::model::{NodeInfo, PodInfo};

#[derive(Default)]
pub struct Cache {
    nodes: Vec<Arc<NodeInfo>>,
    index: HashMap<String, usize>,
    /// Pod UID -> node name, for every pod in the cache.
    pod_node: HashMap<String, String>,
    /// Pods placed by the scheduler whose binding the informer has not shown yet.
    assumed: HashMap<String, String>,
    /// Pods bound to nodes the cache does not know (yet), by node.
    orphans: HashMap<String, Vec<PodInfo>>,
    /// Placed pods with required anti-affinity (others' filters must look at them).
    anti_affinity_pods: usize,
}

/// The nodes as they were at the start of a scheduling cycle.
#[derive(Clone, Default)]
pub struct Snapshot {
    pub nodes: Vec<Arc<NodeInfo>>,
    /// Nodes that have at least one pod with required anti-affinity (existing pods' anti-affinity checks).
    pub have_anti_affinity: bool,
}

impl Cache {
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn upsert_node(&mut self, node: Arc<Value>) {
        let name = runtime::name(&node).to_string();
        match self.index.get(&name) {
            Some(&i) => Arc::make_mut(&mut self.nodes[i]).set_node(node),
            None => {
                let mut info = NodeInfo::new(node);
                for p in self.orphans.remove(&name).unwrap_or_default() {
                    info.add_pod(p);
                }
                self.index.insert(name, self.nodes.len());
                self.nodes.push(Arc::new(info));
            }
        }
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else { return };
        let removed = self.nodes.swap_remove(i);
        if i < self.nodes.len() {
            let moved = self.nodes[i].name.clone();
            self.index.insert(moved, i);
        }
        // Its pods wait for the node to come back (or for their own deletion).
        self.orphans.insert(name.to_string(), removed.pods.clone());
    }

    fn place(&mut self, p: PodInfo, node: &str) {
        self.pod_node.insert(p.uid.clone(), node.to_string());
        self.anti_affinity_pods += p.has_required_anti_affinity as usize;
        match self.index.get(node) {
            Some(&i) => Arc::make_mut(&mut self.nodes[i]).add_pod(p),
            None => self.orphans.entry(node.to_string()).or_default().push(p),
        }
    }

    fn unplace(&mut self, uid: &str) {
        let Some(node) = self.pod_node.remove(uid) else { return };
        let anti = match self.index.get(&node) {
            Some(&i) => {
                let n = Arc::make_mut(&mut self.nodes[i]);
                let anti = n.pods.iter().any(|p| p.uid == uid && p.has_required_anti_affinity);
                n.remove_pod(uid);
                anti
            }
            None => {
                let mut anti = false;
                if let Some(v) = self.orphans.get_mut(&node) {
                    anti = v.iter().any(|p| p.uid == uid && p.has_required_anti_affinity);
                    v.retain(|p| p.uid != uid);
                }
                anti
            }
        };
        self.anti_affinity_pods -= anti as usize;
    }

    /// A pod bound to a node (added or updated); confirms an assumed pod. Terminal pods free their node.
    pub fn upsert_pod(&mut self, pod: Arc<Value>) {
        let info = PodInfo::new(pod);
        let node = info.node_name().to_string();
        let terminal =
            matches!(info.pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"));
        self.assumed.remove(&info.uid);
        self.unplace(&info.uid);
        if !node.is_empty() && !terminal {
            self.place(info, &node);
        }
    }

    pub fn remove_pod(&mut self, uid: &str) {
        self.assumed.remove(uid);
        self.unplace(uid);
    }

    /// Counts `pod` on `node` before its binding is written.
    pub fn assume(&mut self, pod: &Arc<Value>, node: &str) {
        let mut p = (**pod).clone();
        p["spec"]["nodeName"] = Value::String(node.to_string());
        let info = PodInfo::new(Arc::new(p));
        self.unplace(&info.uid);
        self.assumed.insert(info.uid.clone(), node.to_string());
        self.place(info, node);
    }

    /// Undoes [`Cache::assume`] after a failed binding.
    pub fn forget(&mut self, uid: &str) {
        if self.assumed.remove(uid).is_some() {
            self.unplace(uid);
        }
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.assumed.contains_key(uid)
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot { have_anti_affinity: self.anti_affinity_pods > 0, nodes: self.nodes.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::pod;
    use serde_json::json;

    #[test]
    fn assumed_pods_count_until_forgotten_or_confirmed() {
        let mut c = Cache::default();
        c.upsert_node(Arc::new(json!({"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "2"}}})));
        let p = Arc::new(pod("a", "500m", "1Mi"));
        c.assume(&p, "n1");
        let snap = c.snapshot();
        assert_eq!(snap.nodes[0].requested.milli_cpu, 500);
        c.forget("uid-a");
        assert_eq!(c.snapshot().nodes[0].requested.milli_cpu, 0);
        // The snapshot taken before is unchanged (copy on write).
        assert_eq!(snap.nodes[0].requested.milli_cpu, 500);
        c.assume(&p, "n1");
        let mut bound = (*p).clone();
        bound["spec"]["nodeName"] = json!("n1");
        c.upsert_pod(Arc::new(bound.clone()));
        assert!(!c.is_assumed("uid-a"));
        assert_eq!(c.snapshot().nodes[0].pods.len(), 1);
        bound["status"] = json!({"phase": "Succeeded"});
        c.upsert_pod(Arc::new(bound));
        assert_eq!(c.snapshot().nodes[0].pods.len(), 0);
    }

    #[test]
    fn pods_of_an_unknown_node_appear_with_it() {
        let mut c = Cache::default();
        let mut p = pod("a", "1", "1Mi");
        p["spec"]["nodeName"] = json!("late");
        c.upsert_pod(Arc::new(p));
        c.upsert_node(Arc::new(json!({"metadata": {"name": "late"}})));
        assert_eq!(c.snapshot().nodes[0].requested.milli_cpu, 1000);
        c.remove_node("late");
        assert_eq!(c.node_count(), 0);
    }
}
