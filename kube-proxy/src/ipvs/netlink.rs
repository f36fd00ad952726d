//! The `kube-ipvs0` dummy interface that holds every Service IP so the kernel accepts their traffic locally,
//! where IPVS picks it up (upstream's `NetLinkHandle` in `pkg/proxy/ipvs/netlink_linux.go`), driven through the
//! `ip` tool (`ip -j addr show` to read, `ip -force -batch -` to bind and unbind many addresses at once).

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::IpAddr;

use serde_json::Value;

use crate::exec::Exec;
use crate::proxier::{Error, Result};
use crate::serviceport::IpFamily;

/// Upstream's `defaultDummyDevice`.
pub const DUMMY_DEVICE: &str = "kube-ipvs0";

fn run(exec: &dyn Exec, args: &[&str], stdin: Option<&str>) -> Result<crate::exec::Output> {
    exec.run("ip", args, stdin).map_err(|source| Error::Exec { cmd: format!("ip {}", args.join(" ")), source })
}

/// Creates the dummy device when it is missing (`ip link add kube-ipvs0 type dummy`). As upstream, the
/// device stays down: the kernel adds local routes for its addresses regardless.
pub fn ensure_dummy_device(exec: &dyn Exec) -> Result<()> {
    let out = run(exec, &["link", "add", DUMMY_DEVICE, "type", "dummy"], None)?;
    if out.success() || out.stderr.contains("File exists") {
        return Ok(());
    }
    Err(Error::Tool { cmd: format!("ip link add {DUMMY_DEVICE} type dummy"), stderr: out.stderr.trim().to_string() })
}

/// Deletes the dummy device (and with it every Service address). False when it exists and could not be removed.
pub fn delete_dummy_device(exec: &dyn Exec) -> bool {
    match exec.run("ip", &["link", "del", DUMMY_DEVICE], None) {
        Ok(o) if o.success() => true,
        Ok(o) if o.stderr.contains("Cannot find device") || o.stderr.contains("does not exist") => true,
        Ok(o) => {
            tracing::error!(device = DUMMY_DEVICE, stderr = %o.stderr.trim(), "error deleting dummy device");
            false
        }
        Err(e) => {
            tracing::error!(device = DUMMY_DEVICE, error = %e, "error deleting dummy device");
            false
        }
    }
}

/// This family's local addresses: those bound to the dummy device, and the node's (every other interface's,
/// without loopback and IPv6 link-local ones; upstream's `GetAllLocalAddressesExcept`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LocalAddresses {
    pub bound: BTreeSet<IpAddr>,
    pub node: BTreeSet<IpAddr>,
}

/// Reads the addresses with `ip -j addr show`.
pub fn local_addresses(exec: &dyn Exec, family: IpFamily) -> Result<LocalAddresses> {
    let out = run(exec, &["-j", "addr", "show"], None)?;
    if !out.success() {
        return Err(Error::Tool { cmd: "ip -j addr show".into(), stderr: out.stderr.trim().to_string() });
    }
    let links: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    let mut addrs = LocalAddresses::default();
    for link in links.as_array().into_iter().flatten() {
        let dummy = link.get("ifname").and_then(Value::as_str) == Some(DUMMY_DEVICE);
        for a in runtime::array(link, "/addr_info") {
            let Some(ip) = a.get("local").and_then(Value::as_str).and_then(|s| s.parse::<IpAddr>().ok()) else {
                continue;
            };
            if !family.matches(&ip) {
                continue;
            }
            if dummy {
                addrs.bound.insert(ip);
            } else if !ip.is_loopback() && !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80) {
                addrs.node.insert(ip);
            }
        }
    }
    Ok(addrs)
}

/// The `ip -batch` lines adding (or deleting) host addresses on the dummy device.
pub fn address_batch(add: bool, ips: &BTreeSet<IpAddr>) -> String {
    let mut out = String::new();
    for ip in ips {
        let len = if ip.is_ipv4() { 32 } else { 128 };
        let _ = writeln!(out, "addr {} {ip}/{len} dev {DUMMY_DEVICE}", if add { "add" } else { "del" });
    }
    out
}

/// Binds or unbinds addresses in one `ip -force -batch -` (errors on single lines are logged, not fatal).
pub fn apply_addresses(exec: &dyn Exec, add: bool, ips: &BTreeSet<IpAddr>) -> Result<()> {
    if ips.is_empty() {
        return Ok(());
    }
    let batch = address_batch(add, ips);
    let out = run(exec, &["-force", "-batch", "-"], Some(&batch))?;
    // Already bound (added meanwhile) or already gone is what we want.
    let harmless = |l: &str| {
        l.trim().is_empty()
            || l.starts_with("Command failed")
            || l.contains("File exists")
            || l.contains("Cannot assign requested address")
    };
    if !out.success() && !out.stderr.lines().all(harmless) {
        tracing::warn!(add, stderr = %out.stderr.trim(), "some addresses of {DUMMY_DEVICE} could not be changed");
        if add {
            return Err(Error::Tool { cmd: "ip -force -batch -".into(), stderr: out.stderr.trim().to_string() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{FakeExec, Output};

    #[test]
    fn reads_addresses() {
        let exec = FakeExec::with_responder(|_, _| {
            Output {
            stdout: r#"[{"ifname":"lo","addr_info":[{"local":"127.0.0.1"},{"local":"::1"}]},
                        {"ifname":"eth0","addr_info":[{"local":"192.168.1.5"},{"local":"fe80::1"},{"local":"2001:db8::5"}]},
                        {"ifname":"kube-ipvs0","addr_info":[{"local":"10.96.0.1"}]}]"#
                .into(),
            ..Default::default()
        }
        });
        let v4 = local_addresses(&exec, IpFamily::V4).unwrap();
        assert_eq!(v4.bound.iter().map(|i| i.to_string()).collect::<Vec<_>>(), ["10.96.0.1"]);
        assert_eq!(v4.node.iter().map(|i| i.to_string()).collect::<Vec<_>>(), ["192.168.1.5"]);
        let v6 = local_addresses(&exec, IpFamily::V6).unwrap();
        assert_eq!(v6.node.iter().map(|i| i.to_string()).collect::<Vec<_>>(), ["2001:db8::5"]);
        let ips: BTreeSet<IpAddr> = ["10.96.0.1".parse().unwrap(), "fd00::1".parse().unwrap()].into();
        assert_eq!(
            address_batch(true, &ips),
            "addr add 10.96.0.1/32 dev kube-ipvs0\naddr add fd00::1/128 dev kube-ipvs0\n"
        );
    }

    #[test]
    fn binding_tolerates_addresses_already_there() {
        let exists = FakeExec::with_responder(|_, _| Output {
            status: 1,
            stderr: "RTNETLINK answers: File exists\nCommand failed -:1\n".into(),
            ..Default::default()
        });
        let ips: BTreeSet<IpAddr> = ["10.96.0.1".parse().unwrap()].into();
        assert!(apply_addresses(&exists, true, &ips).is_ok());
        let broken = FakeExec::with_responder(|_, _| Output {
            status: 1,
            stderr: "Cannot find device \"kube-ipvs0\"\nCommand failed -:1\n".into(),
            ..Default::default()
        });
        assert!(apply_addresses(&broken, true, &ips).is_err());
        assert!(apply_addresses(&broken, false, &ips).is_ok(), "unbinding failures are only logged");
    }
}
