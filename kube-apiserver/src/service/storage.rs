//! The Service storage's hooks around the generic registry (upstream's `pkg/registry/core/service/storage/
//! storage.go`: `beginCreate`, `beginUpdate`, `afterDelete`). Before the strategy runs, allocated values a client
//! left out of an update are patched in from the stored object (`patchAllocatedValues`), `clusterIP` and
//! `clusterIPs` are brought in step (`normalizeClusterIPs`), and the allocators run in a [`Transaction`] that the
//! registry commits once the object is stored or reverts when the write fails.

use std::collections::{HashMap, HashSet};

use api_types::ApiError;
use serde_json::Value;

use super::alloc::{Allocators, Transaction};
use super::util::*;

/// Before a Service is created: ClusterIPs from clusterIP, then allocation.
pub async fn begin_create(al: &Allocators, svc: &mut Value, dry_run: bool) -> Result<Transaction, ApiError> {
    normalize_cluster_ips(svc, None);
    al.allocate_create(svc, dry_run).await
}

/// Before a Service is updated (after defaulting, before the strategy): allocated values kept, ClusterIPs in step,
/// then what the change of type or ports takes and frees.
pub async fn begin_update(
    al: &Allocators,
    new: &mut Value,
    old: &Value,
    dry_run: bool,
) -> Result<Transaction, ApiError> {
    patch_allocated_values(new, old);
    normalize_cluster_ips(new, Some(old));
    al.allocate_update(new, old, dry_run).await
}

/// After a Service is gone: everything it held is free again.
pub async fn after_delete(al: &Allocators, svc: &Value) {
    al.release_allocated(svc).await
}

/// Upstream's `patchAllocatedValues`: a client that sends a Service back without its clusterIP, clusterIPs, node
/// ports (matched by port name, unless another port took the number) or health check node port keeps them, when
/// the type still needs them.
pub fn patch_allocated_values(new: &mut Value, old: &Value) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        if cluster_ip(new).is_empty() {
            let ip = cluster_ip(old).to_string();
            set_cluster_ip(new, &ip);
        }
        let old_ips = cluster_ips(old);
        if cluster_ips(new).is_empty() && !old_ips.is_empty() {
            set_cluster_ips(new, Some(&old_ips));
        }
    }
    if needs_node_port(old) && needs_node_port(new) {
        let new_ports: HashSet<i64> = node_ports(new).into_iter().collect();
        let used: HashSet<i64> = node_ports(old).into_iter().filter(|p| new_ports.contains(p)).collect();
        let by_name: HashMap<String, i64> =
            (0..ports(old).len()).map(|i| (port_name(old, i).to_string(), node_port(old, i))).collect();
        for i in 0..ports(new).len() {
            if node_port(new, i) == 0 {
                let was = by_name.get(port_name(new, i)).copied().unwrap_or(0);
                if !used.contains(&was) {
                    set_node_port(new, i, was);
                }
            }
        }
    }
    if needs_health_check(old) && needs_health_check(new) && health_check_node_port(new) == 0 {
        set_health_check_node_port(new, health_check_node_port(old));
    }
}

/// Upstream's `normalizeClusterIPs`: old clients send only `clusterIP`; the plural follows it (set, kept,
/// cleared) unless the client changed the plural itself.
pub fn normalize_cluster_ips(new: &mut Value, old: Option<&Value>) {
    let (ip, ips) = (cluster_ip(new).to_string(), cluster_ips(new));
    let Some(old) = old else {
        if !ip.is_empty() && ips.is_empty() {
            set_cluster_ips(new, Some(std::slice::from_ref(&ip)));
        }
        return;
    };
    let (old_ip, old_ips) = (cluster_ip(old), cluster_ips(old));
    if !old_ips.is_empty() && ips.is_empty() && old_ip == ip {
        set_cluster_ips(new, Some(&old_ips));
    }
    if old_ip != ip {
        let same_plural = cluster_ips(new) == old_ips;
        if !old_ip.is_empty() && ip.is_empty() {
            if same_plural {
                set_cluster_ips(new, None);
            }
        } else if same_plural {
            set_cluster_ips(new, Some(std::slice::from_ref(&ip)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn allocated_values_are_patched_in() {
        // Upstream's TestPatchAllocatedValues cases: kept when both types need them, matched by port name.
        let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"],
            "ports": [{"name": "a", "port": 80, "nodePort": 30001}, {"name": "b", "port": 81, "nodePort": 30002}]}});
        let mut new = json!({"spec": {"type": "NodePort",
            "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30001}, {"name": "c", "port": 82}]}});
        patch_allocated_values(&mut new, &old);
        assert_eq!(new["spec"]["clusterIP"], "10.0.0.5");
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.0.0.5"]));
        // "a" had 30001, now used by "b": not patched; "c" had none.
        assert_eq!(node_ports(&new), vec![30001]);
        assert_eq!(new["spec"]["ports"][0].get("nodePort"), None);
        let mut to_cluster_ip = json!({"spec": {"type": "ClusterIP", "ports": [{"name": "a", "port": 80}]}});
        patch_allocated_values(&mut to_cluster_ip, &old);
        assert_eq!(node_ports(&to_cluster_ip), Vec::<i64>::new(), "ClusterIP needs no node ports");
        let mut to_external = json!({"spec": {"type": "ExternalName", "externalName": "x.example.com"}});
        patch_allocated_values(&mut to_external, &old);
        assert_eq!(to_external["spec"].get("clusterIP"), None, "ExternalName needs no ClusterIP");
    }

    #[test]
    fn cluster_ips_follow_cluster_ip() {
        let mut created = json!({"spec": {"clusterIP": "10.0.0.9"}});
        normalize_cluster_ips(&mut created, None);
        assert_eq!(created["spec"]["clusterIPs"], json!(["10.0.0.9"]));
        let old = json!({"spec": {"clusterIP": "10.0.0.9", "clusterIPs": ["10.0.0.9"]}});
        // An old client that sends only clusterIP keeps the plural.
        let mut kept = json!({"spec": {"clusterIP": "10.0.0.9"}});
        normalize_cluster_ips(&mut kept, Some(&old));
        assert_eq!(kept["spec"]["clusterIPs"], json!(["10.0.0.9"]));
        // Clearing the singular clears the unchanged plural.
        let mut cleared = json!({"spec": {"clusterIPs": ["10.0.0.9"]}});
        normalize_cluster_ips(&mut cleared, Some(&old));
        assert_eq!(cleared["spec"].get("clusterIPs"), None);
        // Changing the singular with the plural unchanged moves the plural (validation then refuses the change).
        let mut changed = json!({"spec": {"clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.9"]}});
        normalize_cluster_ips(&mut changed, Some(&old));
        assert_eq!(changed["spec"]["clusterIPs"], json!(["10.0.0.7"]));
    }
}
