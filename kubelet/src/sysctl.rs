//! Pod sysctls (upstream's pkg/kubelet/sysctl): the kubelet admits a pod's `securityContext.sysctls` only when
//! each is on the allowlist, the safe sysctls (namespaced and isolated, by kernel version) plus the node's
//! `allowedUnsafeSysctls` (names or `prefix*` patterns, each known to be namespaced). A net sysctl is refused to a
//! `hostNetwork` pod and an IPC one to a `hostIPC` pod. A refused pod fails with `SysctlForbidden`; an admitted
//! pod's sysctls go to its sandbox (`LinuxPodSandboxConfig.sysctls`) with dots as separators.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::admission::Rejection;

/// The reason of a pod refused for its sysctls.
pub const FORBIDDEN_REASON: &str = "SysctlForbidden";

/// Upstream's safe sysctls with the kernel version each appeared in (None: any).
const SAFE_SYSCTLS: &[(&str, Option<(u32, u32)>)] = &[
    ("kernel.shm_rmid_forced", None),
    ("net.ipv4.ip_local_port_range", None),
    ("net.ipv4.tcp_syncookies", None),
    ("net.ipv4.ping_group_range", None),
    ("net.ipv4.ip_unprivileged_port_start", None),
    ("net.ipv4.ip_local_reserved_ports", Some((3, 16))),
    ("net.ipv4.tcp_keepalive_time", Some((4, 5))),
    ("net.ipv4.tcp_fin_timeout", Some((4, 6))),
    ("net.ipv4.tcp_keepalive_intvl", Some((4, 5))),
    ("net.ipv4.tcp_keepalive_probes", Some((4, 5))),
    ("net.ipv4.tcp_rmem", Some((4, 15))),
    ("net.ipv4.tcp_wmem", Some((4, 15))),
];

/// The kernel namespace a sysctl lives in (component-helpers' sysctl.NamespacedBy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    Ipc,
    Net,
}

impl Namespace {
    fn name(self) -> &'static str {
        match self {
            Namespace::Ipc => "ipc",
            Namespace::Net => "net",
        }
    }
}

/// The namespace of a sysctl in dotted form; None when it is not known to be namespaced (a node-level sysctl).
pub fn namespaced_by(sysctl: &str) -> Option<Namespace> {
    if sysctl == "kernel.sem" {
        return Some(Namespace::Ipc);
    }
    [
        ("kernel.shm", Namespace::Ipc),
        ("kernel.msg", Namespace::Ipc),
        ("fs.mqueue.", Namespace::Ipc),
        ("net.", Namespace::Net),
    ]
    .into_iter()
    .find(|(prefix, _)| sysctl.starts_with(prefix))
    .map(|(_, ns)| ns)
}

/// A sysctl written with slashes (`net/ipv4/conf/eth0.100/rp_filter`) in the dotted form the runtime takes
/// (`net.ipv4.conf.eth0/100.rp_filter`): when the first separator is a slash, slashes and dots swap.
pub fn to_dots(sysctl: &str) -> String {
    match sysctl.find(['.', '/']) {
        Some(i) if sysctl.as_bytes()[i] == b'/' => sysctl
            .chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect(),
        _ => sysctl.to_string(),
    }
}

/// A sysctl segment: `[a-z0-9]([-_a-z0-9]*[a-z0-9])?`.
fn is_segment(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Upstream's IsValidSysctlName: at most 253 characters of segments separated by `.` or `/`.
pub fn is_valid_name(name: &str) -> bool {
    name.len() <= 253 && name.split(['.', '/']).all(is_segment)
}

/// Upstream's IsValidSysctlPattern: segments separated by `.` or `/`, the last of which may end in `*`
/// (`kernel.msg*`, `net.*`, `*`).
fn is_valid_pattern(pattern: &str) -> bool {
    if pattern.len() > 253 {
        return false;
    }
    let (head, last) = match pattern.rfind(['.', '/']) {
        Some(i) => (Some(&pattern[..i]), &pattern[i + 1..]),
        None => (None, pattern),
    };
    let last_ok = match last.as_bytes().split_last() {
        None => false,
        Some((end, rest)) => {
            (end.is_ascii_lowercase() || end.is_ascii_digit() || *end == b'*')
                && rest.first().is_none_or(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && rest.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
        }
    };
    last_ok && head.is_none_or(|h| h.split(['.', '/']).all(is_segment))
}

/// The safe sysctls on a kernel of this version (upstream's SafeSysctlAllowlist); an unknown version keeps only
/// those with no minimum.
pub fn safe_sysctls(kernel: Option<(u32, u32)>) -> Vec<&'static str> {
    SAFE_SYSCTLS
        .iter()
        .filter(|(_, min)| min.is_none_or(|m| kernel.is_some_and(|k| k >= m)))
        .map(|(name, _)| *name)
        .collect()
}

/// The running kernel's major and minor version (`/proc/sys/kernel/osrelease`).
pub fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The sysctls a kubelet admits: exact names and prefixes (from `prefix*` patterns), each with its namespace
/// (upstream's patternAllowlist).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    sysctls: HashMap<String, Namespace>,
    prefixes: BTreeMap<String, Namespace>,
}

impl Allowlist {
    /// The safe sysctls of this kernel plus the node's allowed unsafe ones (`--allowed-unsafe-sysctls`).
    pub fn for_node(allowed_unsafe: &[String]) -> Result<Self, String> {
        let mut patterns: Vec<String> = safe_sysctls(kernel_version()).into_iter().map(String::from).collect();
        patterns.extend(allowed_unsafe.iter().filter(|p| !p.is_empty()).cloned());
        Allowlist::new(&patterns)
    }

    /// Upstream's NewAllowlist: every pattern valid and known to be namespaced.
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        let mut list = Allowlist::default();
        for p in patterns {
            if !is_valid_pattern(p) {
                return Err(format!(
                    "sysctl {p:?} must have at most 253 characters and match regex ([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*([a-z0-9][-_a-z0-9]*)?[a-z0-9*]"
                ));
            }
            let p = to_dots(p);
            if let Some(prefix) = p.strip_suffix('*') {
                let ns =
                    namespaced_by(prefix).ok_or_else(|| format!("the sysctls {p:?} are not known to be namespaced"))?;
                list.prefixes.insert(prefix.to_string(), ns);
            } else {
                let ns = namespaced_by(&p).ok_or_else(|| format!("the sysctl {p:?} are not known to be namespaced"))?;
                list.sysctls.insert(p, ns);
            }
        }
        Ok(list)
    }

    /// Whether one sysctl may be set by a pod sharing the host's network (`host_net`) or IPC namespace.
    fn validate(&self, sysctl: &str, host_net: bool, host_ipc: bool) -> Result<(), String> {
        let sysctl = to_dots(sysctl);
        let ns = self.sysctls.get(&sysctl).copied().or_else(|| {
            self.prefixes.iter().find(|(prefix, _)| sysctl.starts_with(prefix.as_str())).map(|(_, ns)| *ns)
        });
        match ns {
            None => Err(format!("{sysctl:?} not allowlisted")),
            Some(ns @ Namespace::Ipc) if host_ipc => {
                Err(format!("{sysctl:?} not allowed with host {} enabled", ns.name()))
            }
            Some(ns @ Namespace::Net) if host_net => {
                Err(format!("{sysctl:?} not allowed with host {} enabled", ns.name()))
            }
            Some(_) => Ok(()),
        }
    }

    /// Upstream's Admit: every sysctl of the pod allowlisted, or the pod is refused with `SysctlForbidden`.
    pub fn admit(&self, pod: &Value) -> Result<(), Rejection> {
        let flag = |f: &str| pod.pointer(&format!("/spec/{f}")).and_then(Value::as_bool).unwrap_or(false);
        let (host_net, host_ipc) = (flag("hostNetwork"), flag("hostIPC"));
        for (name, _) in pod_sysctls(pod) {
            if let Err(e) = self.validate(&name, host_net, host_ipc) {
                return Err(Rejection { reason: FORBIDDEN_REASON.into(), message: format!("forbidden sysctl: {e}") });
            }
        }
        Ok(())
    }
}

/// A pod's sysctls as written (`securityContext.sysctls`, name and value).
fn pod_sysctls(pod: &Value) -> Vec<(String, String)> {
    pod.pointer("/spec/securityContext/sysctls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let name = s.get("name")?.as_str()?.to_string();
            Some((name, s.get("value").and_then(Value::as_str).unwrap_or_default().to_string()))
        })
        .collect()
}

/// The sysctls of a pod's sandbox, names in dotted form (upstream's ConvertPodSysctlsVariableToDotsSeparator).
pub fn sandbox_sysctls(pod: &Value) -> HashMap<String, String> {
    pod_sysctls(pod).into_iter().map(|(name, value)| (to_dots(&name), value)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(sysctls: Value, spec: Value) -> Value {
        let mut p = json!({"spec": {"securityContext": {"sysctls": sysctls}, "containers": [{"name": "c"}]}});
        if let (Some(base), Some(extra)) = (p["spec"].as_object_mut(), spec.as_object()) {
            base.extend(extra.clone());
        }
        p
    }

    fn message(r: Result<(), Rejection>) -> String {
        match r {
            Ok(()) => "admitted".into(),
            Err(r) => format!("{}: {}", r.reason, r.message),
        }
    }

    /// Upstream's safe sysctls by kernel version (safe_sysctls_test.go).
    #[test]
    fn safe_sysctls_by_kernel_version() {
        let old = safe_sysctls(Some((3, 10)));
        assert_eq!(
            old,
            [
                "kernel.shm_rmid_forced",
                "net.ipv4.ip_local_port_range",
                "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range",
                "net.ipv4.ip_unprivileged_port_start"
            ]
        );
        assert_eq!(safe_sysctls(Some((4, 5))).len(), 9);
        assert!(!safe_sysctls(Some((4, 5))).contains(&"net.ipv4.tcp_fin_timeout"));
        assert_eq!(safe_sysctls(Some((5, 15))).len(), 12);
        assert_eq!(safe_sysctls(None), old, "an unknown kernel keeps those without a minimum");
    }

    /// Upstream's allowlist_test.go: valid and invalid patterns, namespaced or not.
    #[test]
    fn allowlist_patterns() {
        let new = |p: &[&str]| Allowlist::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        for valid in [
            &["kernel.msg*", "kernel.sem"][..],
            &["kernel/msg*", "kernel/sem"],
            &["net.ipv4.conf.eth0/100.rp_filter"],
            &["net/ipv4/conf/eth0.100/rp_filter"],
            &["net.*"],
        ] {
            assert!(new(valid).is_ok(), "{valid:?}");
        }
        for invalid in [&["****"][..], &["net.-"], &["net.*.foo"], &["foo"], &["foo*"]] {
            assert!(new(invalid).is_err(), "{invalid:?}");
        }
        assert!(new(&["kernel.msgmax*"]).is_ok(), "a prefix need not end at a separator");
        assert_eq!(
            new(&["net.-"]).unwrap_err(),
            "sysctl \"net.-\" must have at most 253 characters and match regex ([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*([a-z0-9][-_a-z0-9]*)?[a-z0-9*]"
        );
        assert_eq!(
            new(&["kernel.shmall"]),
            Ok(Allowlist { sysctls: HashMap::from([("kernel.shmall".into(), Namespace::Ipc)]), ..Default::default() })
        );
        assert_eq!(new(&["fs.file-max"]).unwrap_err(), "the sysctl \"fs.file-max\" are not known to be namespaced");
        assert_eq!(new(&["vm.*"]).unwrap_err(), "the sysctls \"vm.*\" are not known to be namespaced");
    }

    #[test]
    fn slashes_become_dots() {
        assert_eq!(to_dots("kernel/shm_rmid_forced"), "kernel.shm_rmid_forced");
        assert_eq!(to_dots("net/ipv4/conf/eno2.100/rp_filter"), "net.ipv4.conf.eno2/100.rp_filter");
        assert_eq!(to_dots("net.ipv4.conf.eno2/100.rp_filter"), "net.ipv4.conf.eno2/100.rp_filter");
        assert_eq!(
            sandbox_sysctls(&pod(json!([{"name": "kernel/shm_rmid_forced", "value": "1"}]), json!({}))),
            HashMap::from([("kernel.shm_rmid_forced".to_string(), "1".to_string())])
        );
    }

    /// The kubelet's admission: safe sysctls pass, unsafe ones unless allowed, net sysctls never with
    /// hostNetwork, IPC ones never with hostIPC (upstream's Admit and e2e "should not launch unsafe, but not
    /// explicitly enabled sysctls on the node").
    #[test]
    fn admission_as_upstream() {
        let safe =
            Allowlist::new(&safe_sysctls(Some((5, 15))).into_iter().map(String::from).collect::<Vec<_>>()).unwrap();
        let shm = json!([{"name": "kernel.shm_rmid_forced", "value": "1"}]);
        assert_eq!(message(safe.admit(&pod(shm.clone(), json!({})))), "admitted");
        assert_eq!(
            message(safe.admit(&pod(json!([{"name": "kernel/shm_rmid_forced", "value": "1"}]), json!({})))),
            "admitted"
        );
        assert_eq!(message(safe.admit(&json!({"spec": {}}))), "admitted");
        let msgmax = json!([{"name": "kernel.msgmax", "value": "10000000000"}]);
        assert_eq!(
            message(safe.admit(&pod(msgmax.clone(), json!({})))),
            "SysctlForbidden: forbidden sysctl: \"kernel.msgmax\" not allowlisted"
        );
        let port_range = json!([{"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"}]);
        assert_eq!(message(safe.admit(&pod(port_range.clone(), json!({})))), "admitted");
        assert_eq!(
            message(safe.admit(&pod(port_range, json!({"hostNetwork": true})))),
            "SysctlForbidden: forbidden sysctl: \"net.ipv4.ip_local_port_range\" not allowed with host net enabled"
        );
        assert_eq!(
            message(safe.admit(&pod(shm, json!({"hostIPC": true})))),
            "SysctlForbidden: forbidden sysctl: \"kernel.shm_rmid_forced\" not allowed with host ipc enabled"
        );
        // `--allowed-unsafe-sysctls=kernel.msg*,net.core.somaxconn`.
        let node = Allowlist::new(&["kernel.msg*".into(), "net.core.somaxconn".into()]).unwrap();
        assert_eq!(message(node.admit(&pod(msgmax, json!({})))), "admitted");
        let somaxconn = json!([{"name": "net.core.somaxconn", "value": "1024"}]);
        assert_eq!(message(node.admit(&pod(somaxconn.clone(), json!({})))), "admitted");
        assert!(message(node.admit(&pod(somaxconn, json!({"hostNetwork": true})))).contains("host net"));
    }
}
