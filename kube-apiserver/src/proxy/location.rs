//! Where a `pods/proxy` or `services/proxy` request goes (upstream's `ResourceLocation` of the pod strategy and of
//! the Service storage). The name is `[scheme:]name[:port]` (`SplitSchemeNamePort`, scheme `http` or `https`). A
//! pod is reached at its first pod IP, which must be a global unicast address, on the port given (a number, or a
//! service name as in `/etc/services`, as Go's dialer reads it) or else its first container port. A Service is
//! reached at a ready address of its Endpoints on the endpoint port named like the Service port asked for (by name,
//! or by number through the Service's ports), an address that belongs to a pod of the namespace holding that IP.

use std::net::IpAddr;
use std::sync::Arc;

use api_types::ApiError;
use serde_json::Value;

use crate::server::Apiserver;

/// A backend address: scheme (`http` or `https`), IP and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub https: bool,
    pub ip: String,
    pub port: u16,
}

/// Upstream's `SplitSchemeNamePort`: `name`, `name:port` or `scheme:name:port`; None if the name is empty, the
/// scheme is not http or https, or there are more parts.
pub fn split_scheme_name_port(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    (!name.is_empty() && matches!(scheme, "" | "http" | "https")).then_some((scheme, name, port))
}

fn resource(plural: &str) -> Result<&'static api_types::Resource, ApiError> {
    api_types::resources::find("", "v1", plural).ok_or_else(|| ApiError::internal(format!("no {plural} resource")))
}

/// Go's `IsGlobalUnicast`: not unspecified, loopback, multicast, link-local or the IPv4 broadcast address.
fn global_unicast(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified() || v4.is_loopback() || v4.is_multicast() || v4.is_link_local() || v4.is_broadcast())
        }
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_loopback() || v6.is_multicast() || v6.is_unicast_link_local()),
    }
}

/// A port as Go's dialer reads it: a number, or a name from `/etc/services`.
fn resolve_port(port: &str) -> Result<u16, String> {
    if let Ok(p) = port.parse::<u16>() {
        return Ok(p);
    }
    let services = std::fs::read_to_string("/etc/services").unwrap_or_default();
    for line in services.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let (Some(name), Some(number)) = (fields.next(), fields.next()) else { continue };
        let Some((number, "tcp")) = number.split_once('/') else { continue };
        if (name == port || fields.any(|alias| alias == port))
            && let Ok(p) = number.parse()
        {
            return Ok(p);
        }
    }
    Err(format!("dial tcp: lookup tcp/{port}: unknown port"))
}

/// The pod's first IP (`status.podIPs[0]`, else `status.podIP`).
fn pod_ip(pod: &Value) -> &str {
    pod.pointer("/status/podIPs/0/ip")
        .or_else(|| pod.pointer("/status/podIP"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Upstream's pod `ResourceLocation`. A port name that is no service name is a dial error (503), as upstream's.
pub async fn pod(server: &Arc<Apiserver>, ns: &str, id: &str) -> Result<Result<Location, String>, ApiError> {
    let Some((scheme, name, port)) = split_scheme_name_port(id) else {
        return Err(ApiError::bad_request(format!("invalid pod request {id:?}")));
    };
    let pod = server.registry.get(resource("pods")?, Some(ns), name).await?;
    let mut port = port.to_string();
    if port.is_empty()
        && let Some(first) = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find_map(|c| c.pointer("/ports/0/containerPort").and_then(Value::as_i64))
    {
        port = first.to_string();
    }
    let ip = pod_ip(&pod).to_string();
    if !ip.parse::<IpAddr>().is_ok_and(|a| global_unicast(&a)) {
        return Err(ApiError::bad_request("address not allowed"));
    }
    // No port at all: the scheme's default, as a URL without one.
    let https = scheme == "https";
    let port = if port.is_empty() { Ok(if https { 443 } else { 80 }) } else { resolve_port(&port) };
    Ok(port.map(|port| Location { https, ip, port }))
}

/// Upstream's Service `ResourceLocation`: through the Service's Endpoints.
pub async fn service(server: &Arc<Apiserver>, ns: &str, id: &str) -> Result<Location, ApiError> {
    let Some((scheme, name, port)) = split_scheme_name_port(id) else {
        return Err(ApiError::bad_request(format!("invalid service request {id:?}")));
    };
    let mut port_name = port.to_string();
    if let Ok(number) = port.parse::<i64>() {
        // A port number means the Service port of that number, by its name.
        let svc = server.registry.get(resource("services")?, Some(ns), name).await?;
        let ports = svc.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
        match ports.iter().find(|p| p.get("port").and_then(Value::as_i64) == Some(number)) {
            Some(p) => port_name = p.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
            None => {
                return Err(ApiError::unavailable(format!("no service port {number} found for service {name:?}")));
            }
        }
    }
    let endpoints = server.registry.get(resource("endpoints")?, Some(ns), name).await?;
    let subsets = endpoints.get("subsets").and_then(Value::as_array).cloned().unwrap_or_default();
    if subsets.is_empty() {
        return Err(ApiError::unavailable(format!("no endpoints available for service {name:?}")));
    }
    let pods = resource("pods")?;
    let seed = random(subsets.len());
    for k in 0..subsets.len() {
        let subset = &subsets[(seed + k) % subsets.len()];
        let addresses = subset.get("addresses").and_then(Value::as_array).cloned().unwrap_or_default();
        if addresses.is_empty() {
            continue;
        }
        let subset_ports = subset.get("ports").and_then(Value::as_array).cloned().unwrap_or_default();
        for p in &subset_ports {
            if p.get("name").and_then(Value::as_str).unwrap_or_default() != port_name {
                continue;
            }
            let Some(number) = p.get("port").and_then(Value::as_u64).and_then(|n| u16::try_from(n).ok()) else {
                continue;
            };
            let start = random(addresses.len());
            for t in 0..addresses.len() {
                let address = &addresses[(start + t) % addresses.len()];
                let ip = address.get("ip").and_then(Value::as_str).unwrap_or_default();
                if valid_address(server, pods, ns, address, ip).await {
                    return Ok(Location { https: scheme == "https", ip: ip.to_string(), port: number });
                }
                tracing::debug!(service = name, ip, "endpoint address is not a pod of the namespace with that IP");
            }
        }
    }
    Err(ApiError::unavailable(format!("no endpoints available for service {id:?}")))
}

/// Upstream's `isValidAddress`: the address names a pod of this namespace that has the IP.
async fn valid_address(
    server: &Arc<Apiserver>,
    pods: &'static api_types::Resource,
    ns: &str,
    address: &Value,
    ip: &str,
) -> bool {
    let Some(target) = address.get("targetRef") else { return false };
    if target.get("namespace").and_then(Value::as_str) != Some(ns) {
        return false;
    }
    let name = target.get("name").and_then(Value::as_str).unwrap_or_default();
    let Ok(pod) = server.registry.get(pods, Some(ns), name).await else { return false };
    let ips: Vec<&str> = pod
        .pointer("/status/podIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("ip").and_then(Value::as_str))
        .collect();
    ips.contains(&ip) || (ips.is_empty() && pod_ip(&pod) == ip)
}

fn random(n: usize) -> usize {
    (uuid::Uuid::new_v4().as_u128() % n.max(1) as u128) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_upstream_splits_them() {
        // Upstream's TestSplitSchemeNamePort.
        assert_eq!(split_scheme_name_port("aoeu:asdf"), Some(("", "aoeu", "asdf")));
        assert_eq!(split_scheme_name_port("http:aoeu:asdf"), Some(("http", "aoeu", "asdf")));
        assert_eq!(split_scheme_name_port("https:aoeu:"), Some(("https", "aoeu", "")));
        assert_eq!(split_scheme_name_port("https:aoeu:asdf"), Some(("https", "aoeu", "asdf")));
        assert_eq!(split_scheme_name_port("aoeu:"), Some(("", "aoeu", "")));
        assert_eq!(split_scheme_name_port("aoeu"), Some(("", "aoeu", "")));
        assert_eq!(split_scheme_name_port(":asdf"), None);
        assert_eq!(split_scheme_name_port("aoeu:asdf:htns"), None);
        assert_eq!(split_scheme_name_port("http::asdf"), None);
        assert_eq!(split_scheme_name_port("http::"), None);
        assert_eq!(split_scheme_name_port(""), None);
        assert_eq!(split_scheme_name_port("ftp:a:b"), None);
    }

    #[test]
    fn only_global_unicast_pod_addresses() {
        for ok in ["10.1.2.3", "192.168.0.1", "2001:db8::1"] {
            assert!(global_unicast(&ok.parse().unwrap()), "{ok}");
        }
        for bad in ["127.0.0.1", "0.0.0.0", "169.254.1.1", "224.0.0.1", "255.255.255.255", "::1", "fe80::1"] {
            assert!(!global_unicast(&bad.parse().unwrap()), "{bad}");
        }
        assert_eq!(resolve_port("8080").unwrap(), 8080);
        assert!(resolve_port("no-such-service-name").unwrap_err().contains("unknown port"));
    }
}
