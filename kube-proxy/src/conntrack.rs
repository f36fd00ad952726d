//! Deletes conntrack entries that would keep UDP traffic going to endpoints or black holes that no longer
//! exist (upstream's `pkg/proxy/conntrack/cleanup.go`), with the `conntrack` tool.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::endpointschangetracker::UpdateEndpointsMapResult;
use crate::exec::Exec;
use crate::servicechangetracker::{ServicePortMap, UpdateServiceMapResult};
use crate::serviceport::Protocol;

fn family_args(ip_v6: bool) -> Vec<&'static str> {
    if ip_v6 { vec!["-f", "ipv6"] } else { Vec::new() }
}

fn run(exec: &dyn Exec, args: Vec<String>) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match exec.run("conntrack", &args, None) {
        // conntrack exits 1 when nothing matched ("0 flow entries have been deleted").
        Ok(o) if o.success() || o.stderr.contains("0 flow entries") => {}
        Ok(o) => tracing::warn!(args = ?args, stderr = %o.stderr.trim(), "conntrack failed"),
        Err(e) => tracing::warn!(error = %e, "running conntrack"),
    }
}

/// `conntrack -D --orig-dst <ip> -p udp`: every UDP flow to a Service IP.
pub fn clear_entries_for_ip(exec: &dyn Exec, ip: IpAddr) {
    let mut args: Vec<String> = vec!["-D".into(), "--orig-dst".into(), ip.to_string(), "-p".into(), "udp".into()];
    args.extend(family_args(ip.is_ipv6()).into_iter().map(String::from));
    run(exec, args);
}

/// `conntrack -D -p udp --dport <port>`: every UDP flow to a node port.
pub fn clear_entries_for_port(exec: &dyn Exec, port: u16, ip_v6: bool) {
    let mut args: Vec<String> = vec!["-D".into(), "-p".into(), "udp".into(), "--dport".into(), port.to_string()];
    args.extend(family_args(ip_v6).into_iter().map(String::from));
    run(exec, args);
}

/// `conntrack -D --orig-dst <service ip> --dst-nat <endpoint ip> -p udp`: flows from a Service IP to one endpoint.
pub fn clear_entries_for_nat(exec: &dyn Exec, origin: IpAddr, dest: IpAddr) {
    let mut args: Vec<String> = vec![
        "-D".into(),
        "--orig-dst".into(),
        origin.to_string(),
        "--dst-nat".into(),
        dest.to_string(),
        "-p".into(),
        "udp".into(),
    ];
    args.extend(family_args(origin.is_ipv6()).into_iter().map(String::from));
    run(exec, args);
}

/// `conntrack -D -p udp --dport <node port> --dst-nat <endpoint ip>`: flows from a node port to one endpoint.
pub fn clear_entries_for_port_nat(exec: &dyn Exec, dest: IpAddr, port: u16) {
    let mut args: Vec<String> = vec![
        "-D".into(),
        "-p".into(),
        "udp".into(),
        "--dport".into(),
        port.to_string(),
        "--dst-nat".into(),
        dest.to_string(),
    ];
    args.extend(family_args(dest.is_ipv6()).into_iter().map(String::from));
    run(exec, args);
}

/// Upstream's `CleanStaleEntries`: after a successful sync, the flows of deleted UDP Services and endpoints, and
/// of UDP Services that just got their first endpoint (whose earlier packets were rejected and may be cached).
pub fn clean_stale_entries(
    exec: &dyn Exec,
    ip_v6: bool,
    svc_port_map: &ServicePortMap,
    services: &UpdateServiceMapResult,
    endpoints: &UpdateEndpointsMapResult,
) {
    let mut service_ips: BTreeSet<IpAddr> = services.deleted_udp_cluster_ips.clone();
    let mut node_ports: BTreeSet<u16> = BTreeSet::new();
    for name in &endpoints.newly_active_udp_services {
        if let Some(svc) = svc_port_map.get(name) {
            service_ips.insert(svc.cluster_ip);
            service_ips.extend(svc.external_ips.iter().copied());
            service_ips.extend(svc.load_balancer_vips.iter().copied());
            if svc.protocol == Protocol::Udp && svc.node_port != 0 {
                node_ports.insert(svc.node_port);
            }
        }
    }
    for ip in service_ips {
        clear_entries_for_ip(exec, ip);
    }
    for port in node_ports {
        clear_entries_for_port(exec, port, ip_v6);
    }
    for gone in &endpoints.deleted_udp_endpoints {
        let Some(svc) = svc_port_map.get(&gone.service_port) else { continue };
        let ep = gone.endpoint.ip;
        if svc.node_port != 0 {
            clear_entries_for_port_nat(exec, ep, svc.node_port);
        }
        clear_entries_for_nat(exec, svc.cluster_ip, ep);
        for ip in svc.external_ips.iter().chain(&svc.load_balancer_vips) {
            clear_entries_for_nat(exec, *ip, ep);
        }
    }
}
