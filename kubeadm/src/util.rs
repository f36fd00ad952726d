//! Small helpers upstream keeps in `cmd/kubeadm/app/util`: host:port handling and service IPs.

use std::net::IpAddr;

/// Splits `host:port`, `[v6]:port`, `host` (port None).
pub fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or_else(|| format!("missing ']' in address {s:?}"))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p.parse().map_err(|_| format!("invalid port {p:?}"))?),
            None if tail.is_empty() => None,
            None => return Err(format!("invalid address {s:?}")),
        };
        return Ok((host.to_string(), port));
    }
    if s.parse::<IpAddr>().is_ok() {
        return Ok((s.to_string(), None));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_string(), Some(p.parse().map_err(|_| format!("invalid port {p:?}"))?))),
        None if !s.is_empty() => Ok((s.to_string(), None)),
        None => Err("empty address".into()),
    }
}

/// `host:port` with brackets around IPv6 addresses.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// The n-th address of the first service subnet (1: the `kubernetes` Service, 10: cluster DNS).
pub fn nth_service_ip(subnets: &str, n: u32) -> Option<IpAddr> {
    let net: ipnetwork::IpNetwork = subnets.split(',').next()?.trim().parse().ok()?;
    match net.network() {
        IpAddr::V4(a) => Some(IpAddr::V4(std::net::Ipv4Addr::from(u32::from(a).checked_add(n)?))),
        IpAddr::V6(a) => Some(IpAddr::V6(std::net::Ipv6Addr::from(u128::from(a).checked_add(n as u128)?))),
    }
}

/// Go's `text/tabwriter` as kubeadm configures it (`NewWriter(out, 10, 4, 3, ' ', 0)`): every cell but the last
/// of a line is padded to its column's width plus 3, at least 10.
pub fn tabwrite(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                widths[i] = widths[i].max((c.chars().count() + 3).max(10));
            }
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                out.push_str(&format!("{c:<w$}", w = widths[i]));
            } else {
                out.push_str(c);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_and_service_ips() {
        assert_eq!(split_host_port("lb.example:6443").unwrap(), ("lb.example".into(), Some(6443)));
        assert_eq!(split_host_port("[fd00::1]:6443").unwrap(), ("fd00::1".into(), Some(6443)));
        assert_eq!(split_host_port("fd00::1").unwrap(), ("fd00::1".into(), None));
        assert_eq!(split_host_port("10.0.0.1").unwrap(), ("10.0.0.1".into(), None));
        assert_eq!(join_host_port("fd00::1", 6443), "[fd00::1]:6443");
        assert_eq!(nth_service_ip("10.96.0.0/12", 1).unwrap().to_string(), "10.96.0.1");
        assert_eq!(nth_service_ip("10.96.0.0/12,fd00::/108", 10).unwrap().to_string(), "10.96.0.10");
    }
}
