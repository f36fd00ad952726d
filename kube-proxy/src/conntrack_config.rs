//! The conntrack sysctls kube-proxy sets at start from the `conntrack` section (upstream's
//! `cmd/kube-proxy/app/conntrack.go`): the table size (`maxPerCore` x CPUs, at least `min`) and the TCP and UDP
//! timeouts; 0 leaves a value as the kernel has it.

use std::time::Duration;

use crate::config::Conntrack;

const SYSCTL_BASE: &str = "/proc/sys/net/netfilter";

fn write(name: &str, value: u64) {
    let path = format!("{SYSCTL_BASE}/{name}");
    match std::fs::read_to_string(&path) {
        Ok(cur) if cur.trim() == value.to_string() => {}
        _ => match std::fs::write(&path, value.to_string()) {
            Ok(()) => tracing::info!(sysctl = name, value, "set conntrack sysctl"),
            Err(e) => tracing::warn!(sysctl = name, value, error = %e, "cannot set conntrack sysctl"),
        },
    }
}

/// The table size upstream asks for: `maxPerCore` per CPU, at least `min` (0 when `maxPerCore` is 0).
pub fn conntrack_max(c: &Conntrack, cpus: usize) -> u64 {
    if c.max_per_core == 0 {
        return 0;
    }
    (u64::from(c.max_per_core) * cpus as u64).max(u64::from(c.min))
}

/// Applies the section; failures are logged (a container may not write these).
pub fn apply(c: &Conntrack) {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let max = conntrack_max(c, cpus);
    if max > 0 {
        write("nf_conntrack_max", max);
    }
    let secs = |d: Duration| d.as_secs();
    for (name, d) in [
        ("nf_conntrack_tcp_timeout_established", c.tcp_established_timeout),
        ("nf_conntrack_tcp_timeout_close_wait", c.tcp_close_wait_timeout),
        ("nf_conntrack_udp_timeout", c.udp_timeout),
        ("nf_conntrack_udp_timeout_stream", c.udp_stream_timeout),
    ] {
        if !d.is_zero() {
            write(name, secs(d));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max() {
        let c = crate::config::ProxyConfig::default().conntrack;
        assert_eq!(conntrack_max(&c, 2), 131072);
        assert_eq!(conntrack_max(&c, 8), 262144);
        assert_eq!(conntrack_max(&Conntrack { max_per_core: 0, ..c }, 8), 0);
    }
}
