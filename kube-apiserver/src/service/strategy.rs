//! The Service strategy's update step that clears what a new type no longer uses (upstream's
//! `dropTypeDependentFields` in `pkg/registry/core/service/strategy.go`): clusterIP(s), IP families and policy when
//! leaving for ExternalName, node ports when leaving NodePort/LoadBalancer, the health check node port,
//! `allocateLoadBalancerNodePorts`, `loadBalancerClass` and `externalTrafficPolicy` when they stop applying, each
//! only if the client left it as it was (a value the client changed is its to keep, and validation judges it).
//! The allocators free what was cleared when the write commits.

use serde_json::{Value, json};

use super::util::*;

fn get<'a>(svc: &'a Value, field: &str) -> Option<&'a Value> {
    spec(svc).get(field)
}

/// Clears the fields `new`'s type does not use that `old` had and the client did not change.
pub fn drop_type_dependent_fields(new: &mut Value, old: &Value) {
    if needs_cluster_ip(old) && !needs_cluster_ip(new) {
        if cluster_ip(old) == cluster_ip(new) && cluster_ips(old) == cluster_ips(new) {
            set_cluster_ip(new, "");
            set_cluster_ips(new, None);
        }
        if get(old, "ipFamilies") == get(new, "ipFamilies") {
            set_ip_families(new, None);
        }
        if ip_family_policy(old) == ip_family_policy(new) {
            set_ip_family_policy(new, None);
        }
    }
    // Users may add, remove or change ports as long as they add no node port of their own.
    let old_ports = node_ports(old);
    if needs_node_port(old) && !needs_node_port(new) && node_ports(new).iter().all(|p| old_ports.contains(p)) {
        for i in 0..ports(new).len() {
            set_node_port(new, i, 0);
        }
    }
    if needs_health_check(old) && !needs_health_check(new) && health_check_node_port(old) == health_check_node_port(new)
    {
        set_health_check_node_port(new, 0);
    }
    let was_lb = service_type(old) == "LoadBalancer";
    let is_lb = service_type(new) == "LoadBalancer";
    if was_lb && !is_lb {
        let (a, b) = (get(old, "allocateLoadBalancerNodePorts"), get(new, "allocateLoadBalancerNodePorts"));
        if a.is_some() && a == b {
            set_or_remove(spec_mut(new), "allocateLoadBalancerNodePorts", None);
        }
        if get(old, "loadBalancerClass") == get(new, "loadBalancerClass") {
            set_or_remove(spec_mut(new), "loadBalancerClass", None);
        }
    }
    if externally_accessible(old)
        && !externally_accessible(new)
        && get(old, "externalTrafficPolicy") == get(new, "externalTrafficPolicy")
    {
        set_or_remove(spec_mut(new), "externalTrafficPolicy", None);
    }
    // A load balancer's status goes with the type, even though its teardown is asynchronous.
    if !is_lb && new.get("status").is_some_and(Value::is_object) {
        new["status"]["loadBalancer"] = json!({});
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_port_svc() -> Value {
        json!({"spec": {"type": "NodePort", "clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "externalTrafficPolicy": "Cluster",
            "internalTrafficPolicy": "Cluster", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]},
            "status": {"loadBalancer": {}}})
    }

    #[test]
    fn leaving_for_external_name_clears_what_it_does_not_use() {
        // Upstream's TestDropTypeDependentFields: unchanged values are cleared.
        let old = node_port_svc();
        let mut new = old.clone();
        new["spec"]["type"] = json!("ExternalName");
        new["spec"]["externalName"] = json!("x.example.com");
        drop_type_dependent_fields(&mut new, &old);
        let spec = &new["spec"];
        for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "externalTrafficPolicy"] {
            assert_eq!(spec.get(f), None, "{f} cleared");
        }
        assert_eq!(spec["ports"][0].get("nodePort"), None);
        assert_eq!(spec["internalTrafficPolicy"], "Cluster", "not type-dependent: kept");
    }

    #[test]
    fn values_the_client_changed_are_kept() {
        let old = node_port_svc();
        let mut new = old.clone();
        new["spec"]["type"] = json!("ClusterIP");
        new["spec"]["ports"][0]["nodePort"] = json!(30999);
        drop_type_dependent_fields(&mut new, &old);
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30999, "a new node port is left for validation to refuse");
        assert_eq!(new["spec"]["clusterIP"], "10.0.0.5", "still a ClusterIP type");
        let mut external = old.clone();
        external["spec"]["type"] = json!("ExternalName");
        external["spec"]["clusterIP"] = json!("10.0.0.6");
        external["spec"]["clusterIPs"] = json!(["10.0.0.6"]);
        drop_type_dependent_fields(&mut external, &old);
        assert_eq!(external["spec"]["clusterIP"], "10.0.0.6");
        // NodePort to ClusterIP with the node port unchanged: cleared.
        let mut plain = old.clone();
        plain["spec"]["type"] = json!("ClusterIP");
        drop_type_dependent_fields(&mut plain, &old);
        assert_eq!(plain["spec"]["ports"][0].get("nodePort"), None);
        assert_eq!(plain["spec"].get("externalTrafficPolicy"), None);
    }
}
