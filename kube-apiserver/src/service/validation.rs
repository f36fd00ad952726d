//! Service validation as upstream's `ValidateService` and `ValidateServiceUpdate`
//! (`pkg/apis/core/validation/validation.go`): what each type allows (no ClusterIP for ExternalName, no
//! `clusterIP: None` for NodePort/LoadBalancer, no node port on ClusterIP), ports, duplicate ports and node ports,
//! the ClusterIP and IP family fields ([`cluster_ips_related_fields`], also the allocator's pre-check), traffic
//! policies, the health check node port, and on update the ClusterIPs and families that may not change unless the
//! type goes to or from ExternalName. Messages and field paths are upstream's.

use api_types::Cause;
use serde_json::{Value, json};

use super::alloc::{go_strings, invalid_shown};
use super::util::*;
use crate::validation::{DNS1123_LABEL_MSG, DNS1123_SUBDOMAIN_MSG, is_dns1123_label, is_dns1123_subdomain};

const INVALID_IP: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

/// Upstream's `isHeadlessService`: exactly `clusterIPs: [None]`.
fn headless(svc: &Value) -> bool {
    cluster_ips(svc) == ["None"]
}

fn str_field<'a>(svc: &'a Value, field: &str) -> Option<&'a str> {
    spec(svc).get(field).and_then(Value::as_str)
}

/// `core.ServicePort{...}` as Go's `%#v` prints the key of a duplicate port.
fn go_service_port(protocol: &str, port: i64) -> String {
    format!(
        "core.ServicePort{{Name:\"\", Protocol:{protocol:?}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}"
    )
}

pub fn validate(svc: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    if let Some(old) = old {
        upgrade_downgrade_cluster_ips(old, svc, causes);
        upgrade_downgrade_ip_families(old, svc, causes);
        if needs_health_check(old)
            && needs_health_check(svc)
            && health_check_node_port(old) != health_check_node_port(svc)
        {
            causes.push(Cause::forbidden("spec.healthCheckNodePort", "field is immutable"));
        }
    }
    let ty = service_type(svc);
    let n = ports(svc).len();
    if n == 0 && !headless(svc) && ty != "ExternalName" {
        causes.push(Cause::required("spec.ports"));
    }
    match ty {
        "LoadBalancer" | "NodePort" if headless(svc) => causes.push(Cause::invalid(
            "spec.clusterIPs[0]",
            &json!("None"),
            format!("may not be set to 'None' for {ty} services"),
        )),
        "ExternalName" => {
            for field in ["clusterIPs", "ipFamilies"] {
                if spec(svc).get(field).and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
                    causes.push(Cause::forbidden(format!("spec.{field}"), "may not be set for ExternalName services"));
                }
            }
            if ip_family_policy(svc).is_some() {
                causes.push(Cause::forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"));
            }
            // A CNAME may end with a dot: fully qualified.
            let cname = str_field(svc, "externalName").unwrap_or_default();
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                causes.push(Cause::required("spec.externalName"));
            } else if !is_dns1123_subdomain(cname) {
                causes.push(Cause::invalid("spec.externalName", &json!(cname), DNS1123_SUBDOMAIN_MSG));
            }
        }
        _ => {}
    }
    let mut names: Vec<&str> = Vec::new();
    for i in 0..n {
        let name = port_name(svc, i);
        if n > 1 && name.is_empty() {
            causes.push(Cause::required(format!("spec.ports[{i}].name")));
        } else if !name.is_empty() {
            if !is_dns1123_label(name) {
                causes.push(Cause::invalid(format!("spec.ports[{i}].name"), &json!(name), DNS1123_LABEL_MSG));
            }
            if names.contains(&name) {
                causes.push(Cause::duplicate(format!("spec.ports[{i}].name"), &json!(name)));
            } else {
                names.push(name);
            }
        }
        let port = port_number(svc, i);
        if !(1..=65535).contains(&port) {
            causes.push(Cause::invalid(
                format!("spec.ports[{i}].port"),
                &json!(port),
                "must be between 1 and 65535, inclusive",
            ));
        }
        let protocol = protocol(svc, i);
        if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
            causes.push(Cause::not_supported(
                format!("spec.ports[{i}].protocol"),
                &json!(protocol),
                &["SCTP", "TCP", "UDP"],
            ));
        }
    }
    if let Some(affinity) = str_field(svc, "sessionAffinity")
        && !matches!(affinity, "None" | "ClientIP")
    {
        causes.push(Cause::not_supported("spec.sessionAffinity", &json!(affinity), &["ClientIP", "None"]));
    }
    causes.extend(cluster_ips_related_fields(svc));
    for (i, ip) in spec(svc).get("externalIPs").and_then(Value::as_array).into_iter().flatten().enumerate() {
        if ip.as_str().and_then(|s| s.parse::<std::net::IpAddr>().ok()).is_none() {
            causes.push(Cause::invalid(format!("spec.externalIPs[{i}]"), ip, INVALID_IP));
        }
    }
    if !matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName") {
        causes.push(Cause::not_supported(
            "spec.type",
            &json!(ty),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    if ty == "ClusterIP" {
        for i in 0..n {
            if node_port(svc, i) != 0 {
                causes.push(Cause::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    // Node ports and ports are unique per protocol.
    let mut node_ports_seen: Vec<(&str, i64)> = Vec::new();
    let mut ports_seen: Vec<(&str, i64)> = Vec::new();
    for i in 0..n {
        let (protocol, node_port, port) = (protocol(svc, i), node_port(svc, i), port_number(svc, i));
        if node_port != 0 {
            if node_ports_seen.contains(&(protocol, node_port)) {
                causes.push(Cause::duplicate(format!("spec.ports[{i}].nodePort"), &json!(node_port)));
            }
            node_ports_seen.push((protocol, node_port));
        }
        if ports_seen.contains(&(protocol, port)) {
            causes.push(Cause {
                reason: "FieldValueDuplicate",
                field: format!("spec.ports[{i}]"),
                message: format!("Duplicate value: {}", go_service_port(protocol, port)),
            });
        }
        ports_seen.push((protocol, port));
    }
    let allocate_lb = spec(svc).get("allocateLoadBalancerNodePorts");
    if allocate_lb.is_some() && ty != "LoadBalancer" {
        causes.push(Cause::forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if ty == "LoadBalancer" && allocate_lb.is_none() {
        // Upstream's path, without `spec.`.
        causes.push(Cause::required("allocateLoadBalancerNodePorts"));
    }
    traffic_policies(svc, causes);
}

/// `externalTrafficPolicy`, `healthCheckNodePort` and `internalTrafficPolicy`.
fn traffic_policies(svc: &Value, causes: &mut Vec<Cause>) {
    let etp = str_field(svc, "externalTrafficPolicy").unwrap_or_default();
    if !externally_accessible(svc) {
        if !etp.is_empty() {
            causes.push(Cause::invalid(
                "spec.externalTrafficPolicy",
                &json!(etp),
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        causes.push(Cause::required("spec.externalTrafficPolicy"));
    } else if !matches!(etp, "Cluster" | "Local") {
        causes.push(Cause::not_supported("spec.externalTrafficPolicy", &json!(etp), &["Cluster", "Local"]));
    }
    let hc = health_check_node_port(svc);
    if !needs_health_check(svc) {
        if hc != 0 {
            causes.push(Cause::invalid(
                "spec.healthCheckNodePort",
                &json!(hc),
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if hc == 0 {
        causes.push(Cause::required("spec.healthCheckNodePort"));
    } else if !(1..=65535).contains(&hc) {
        causes.push(Cause::invalid("spec.healthCheckNodePort", &json!(hc), "must be between 1 and 65535, inclusive"));
    }
    match str_field(svc, "internalTrafficPolicy") {
        None if matches!(service_type(svc), "ClusterIP" | "NodePort" | "LoadBalancer") => {
            causes.push(Cause::required("spec.internalTrafficPolicy"))
        }
        Some(p) if !matches!(p, "Cluster" | "Local") => {
            causes.push(Cause::not_supported("spec.internalTrafficPolicy", &json!(p), &["Cluster", "Local"]))
        }
        _ => {}
    }
}

/// Upstream's `ValidateServiceClusterIPsRelatedFields`: clusterIP and clusterIPs agree, families and policy are
/// known values, ClusterIPs are IPs (or a lone `None`), at most two of different families, each of the family
/// `ipFamilies` names for it.
pub fn cluster_ips_related_fields(svc: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if service_type(svc) == "ExternalName" {
        return causes;
    }
    let (ip, ips, families) = (cluster_ip(svc), cluster_ips(svc), ip_families(svc));
    let shown = go_strings(&ips);
    if !ip.is_empty() {
        match ips.first() {
            None => causes.push(Cause::required("spec.clusterIPs")),
            Some(first) if first != ip => {
                causes.push(invalid_shown("spec.clusterIPs", &shown, "first value must match `clusterIP`"))
            }
            _ => {}
        }
    } else if !ips.is_empty() {
        causes.push(invalid_shown("spec.clusterIPs", &shown, "must be empty when `clusterIP` is not specified"));
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, family) in families.iter().enumerate() {
        if !matches!(family.as_str(), "IPv4" | "IPv6") {
            causes.push(Cause::not_supported(format!("spec.ipFamilies[{i}]"), &json!(family), &["IPv4", "IPv6"]));
        }
        if seen.contains(&family.as_str()) {
            causes.push(Cause::duplicate(format!("spec.ipFamilies[{i}]"), &json!(family)));
        }
        seen.push(family);
    }
    if let Some(policy) = ip_family_policy(svc)
        && !matches!(policy, "SingleStack" | "PreferDualStack" | "RequireDualStack")
    {
        causes.push(Cause::not_supported(
            "spec.ipFamilyPolicy",
            &json!(policy),
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        ));
    }
    let mut bad_ips = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && ip == "None" {
            if ips.len() > 1 {
                bad_ips = true;
                causes.push(invalid_shown("spec.clusterIPs", &shown, "'None' must be the first and only value"));
            }
            continue;
        }
        if ip.parse::<std::net::IpAddr>().is_err() {
            bad_ips = true;
            causes.push(Cause::invalid(format!("spec.clusterIPs[{i}]"), &json!(ip), INVALID_IP));
        }
    }
    if ips.len() > 2 {
        causes.push(invalid_shown("spec.clusterIPs", &shown, "may only hold up to 2 values"));
    }
    if bad_ips {
        return causes;
    }
    let v6 = |ip: &str| ip.parse::<std::net::Ipv6Addr>().is_ok();
    if ips.len() == 2 && v6(&ips[0]) == v6(&ips[1]) {
        causes.push(invalid_shown("spec.clusterIPs", &shown, "may specify no more than one IP for each IP family"));
    }
    if !headless(svc) {
        for (i, (ip, family)) in ips.iter().zip(&families).enumerate() {
            if family == "IPv4" && v6(ip) {
                causes.push(Cause::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    &json!(ip),
                    format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
            if family == "IPv6" && !v6(ip) {
                causes.push(Cause::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    &json!(ip),
                    format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
    causes
}

/// Upstream's `validateUpgradeDowngradeClusterIPs`: the primary ClusterIP never changes (a second may be added,
/// or dropped with SingleStack), unless the Service goes to or from ExternalName.
fn upgrade_downgrade_cluster_ips(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    if service_type(new) == "ExternalName" || service_type(old) == "ExternalName" {
        return;
    }
    if headless(old) && headless(new) {
        return;
    }
    let (was, now) = (cluster_ips(old), cluster_ips(new));
    let shown = go_strings(&now);
    let immutable = |i: usize| invalid_shown(format!("spec.clusterIPs[{i}]"), &shown, "may not change once set");
    if was.len() == now.len() {
        for (i, ip) in was.iter().enumerate() {
            if *ip != now[i] {
                causes.push(immutable(i));
            }
        }
    } else if was.len() > now.len() {
        if now.is_empty() {
            causes.push(invalid_shown("spec.clusterIPs[0]", &shown, "primary clusterIP can not be unset"));
        }
        if !was.is_empty() && !now.is_empty() && now[0] != was[0] {
            causes.push(immutable(0));
        }
        if now.len() == 1 && ip_family_policy(new) != Some("SingleStack") {
            causes.push(invalid_shown(
                "spec.clusterIPs[0]",
                &shown,
                "`ipFamilyPolicy` must be set to 'SingleStack' when releasing the secondary clusterIP",
            ));
        }
    } else if !was.is_empty() && now[0] != was[0] {
        causes.push(immutable(0));
    }
}

/// Upstream's `validateUpgradeDowngradeIPFamilies`: likewise for `ipFamilies`; headless Services may change them.
fn upgrade_downgrade_ip_families(old: &Value, new: &Value, causes: &mut Vec<Cause>) {
    if service_type(new) == "ExternalName" || service_type(old) == "ExternalName" {
        return;
    }
    if headless(old) || headless(new) {
        return;
    }
    let (was, now) = (ip_families(old), ip_families(new));
    let shown = go_strings(&now);
    let shown_ips = go_strings(&cluster_ips(new));
    if was.len() == now.len() {
        if was != now {
            causes.push(invalid_shown("spec.ipFamilies[0]", &shown, "may not change once set"));
        }
    } else if was.len() > now.len() {
        if now.is_empty() {
            causes.push(invalid_shown("spec.ipFamilies[0]", &shown, "primary ipFamily can not be unset"));
        }
        if !now.is_empty() && now[0] != was[0] {
            causes.push(invalid_shown("spec.ipFamilies[0]", &shown_ips, "may not change once set"));
        }
        if now.len() == 1 && ip_family_policy(new) != Some("SingleStack") {
            causes.push(invalid_shown(
                "spec.clusterIPs[0]",
                &shown_ips,
                "`ipFamilyPolicy` must be set to 'SingleStack' when releasing the secondary ipFamily",
            ));
        }
    } else if !was.is_empty() && !now.is_empty() && now[0] != was[0] {
        causes.push(invalid_shown("spec.ipFamilies[0]", &shown_ips, "may not change once set"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(svc: &Value, old: Option<&Value>) -> Vec<String> {
        let mut causes = Vec::new();
        validate(svc, old, &mut causes);
        causes.into_iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    fn cluster_ip_svc() -> Value {
        json!({"spec": {"type": "ClusterIP", "clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster",
            "sessionAffinity": "None", "ports": [{"port": 80, "protocol": "TCP"}]}})
    }

    #[test]
    fn type_rules_as_upstream() {
        let mut np = cluster_ip_svc();
        np["spec"]["ports"][0]["nodePort"] = json!(30080);
        assert_eq!(text(&np, None), ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]);
        let mut external = cluster_ip_svc();
        external["spec"]["type"] = json!("ExternalName");
        assert_eq!(
            text(&external, None),
            [
                "spec.clusterIPs: Forbidden: may not be set for ExternalName services",
                "spec.ipFamilies: Forbidden: may not be set for ExternalName services",
                "spec.ipFamilyPolicy: Forbidden: may not be set for ExternalName services",
                "spec.externalName: Required value"
            ]
        );
        let mut headless_np = cluster_ip_svc();
        headless_np["spec"]["type"] = json!("NodePort");
        headless_np["spec"]["externalTrafficPolicy"] = json!("Cluster");
        headless_np["spec"]["clusterIP"] = json!("None");
        headless_np["spec"]["clusterIPs"] = json!(["None"]);
        assert_eq!(
            text(&headless_np, None),
            ["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"]
        );
        let mut dup = cluster_ip_svc();
        dup["spec"]["type"] = json!("NodePort");
        dup["spec"]["externalTrafficPolicy"] = json!("Cluster");
        dup["spec"]["ports"] = json!([{"name": "a", "port": 80, "protocol": "TCP", "nodePort": 30080},
                                      {"name": "b", "port": 80, "protocol": "TCP", "nodePort": 30080},
                                      {"name": "c", "port": 81, "protocol": "UDP", "nodePort": 30080}]);
        assert_eq!(
            text(&dup, None),
            [
                "spec.ports[1].nodePort: Duplicate value: 30080",
                "spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}"
            ]
        );
        let mut etp = cluster_ip_svc();
        etp["spec"]["externalTrafficPolicy"] = json!("Cluster");
        assert_eq!(
            text(&etp, None),
            [
                "spec.externalTrafficPolicy: Invalid value: \"Cluster\": may only be set for externally-accessible services"
            ]
        );
    }

    #[test]
    fn cluster_ips_immutable_unless_external_name() {
        let old = cluster_ip_svc();
        let mut moved = old.clone();
        moved["spec"]["clusterIP"] = json!("10.0.0.6");
        moved["spec"]["clusterIPs"] = json!(["10.0.0.6"]);
        assert_eq!(
            text(&moved, Some(&old)),
            ["spec.clusterIPs[0]: Invalid value: []string{\"10.0.0.6\"}: may not change once set"]
        );
        let external =
            json!({"spec": {"type": "ExternalName", "externalName": "x.example.com", "sessionAffinity": "None"}});
        assert!(text(&external, Some(&old)).is_empty());
        assert!(text(&old, Some(&external)).is_empty());
        let mut mismatch = old.clone();
        mismatch["spec"]["clusterIPs"] = json!(["10.0.0.7"]);
        assert!(
            cluster_ips_related_fields(&mismatch)[0].message.ends_with("first value must match `clusterIP`"),
            "{:?}",
            cluster_ips_related_fields(&mismatch)
        );
    }
}
