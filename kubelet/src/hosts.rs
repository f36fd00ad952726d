//! The pod's hostname, domain and kubelet-managed `/etc/hosts` (upstream's `GeneratePodHostNameAndDomain`,
//! `GetNodenameForKernel` and `ensureHostsFile`): the hosts file is written to `<root-dir>/pods/<uid>/etc-hosts`
//! and bind-mounted at `/etc/hosts` in every container that does not mount something there itself.

use std::path::{Path, PathBuf};

use serde_json::Value;

const MANAGED_HEADER: &str = "# Kubernetes-managed hosts file.\n";
const MANAGED_HEADER_HOST_NETWORK: &str = "# Kubernetes-managed hosts file (host network).\n";
/// Where the hosts file lives in containers (and on the node).
pub const ETC_HOSTS: &str = "/etc/hosts";

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

/// A hostname capped at 63 characters, without a trailing `-` or `.` after the cut.
fn truncate(hostname: &str) -> String {
    if hostname.len() <= 63 {
        return hostname.to_string();
    }
    hostname[..63].trim_end_matches(['-', '.']).to_string()
}

/// The pod's short hostname (`spec.hostname` or its name) and its domain (`<subdomain>.<namespace>.svc.<cluster
/// domain>` when `spec.subdomain` is set, else empty).
pub fn hostname_and_domain(pod: &Value, cluster_domain: &str) -> (String, String) {
    let name = match s(pod, "/spec/hostname") {
        "" => s(pod, "/metadata/name"),
        h => h,
    };
    let domain = match s(pod, "/spec/subdomain") {
        "" => String::new(),
        sub => format!("{sub}.{}.svc.{cluster_domain}", s(pod, "/metadata/namespace")),
    };
    (truncate(name), domain)
}

/// The hostname the pod's kernel (UTS namespace) gets: the short name, or the FQDN with `setHostnameAsFQDN` (at
/// most 64 characters, as upstream).
pub fn kernel_hostname(pod: &Value, cluster_domain: &str) -> Result<String, String> {
    let (host, domain) = hostname_and_domain(pod, cluster_domain);
    let fqdn_wanted = pod.pointer("/spec/setHostnameAsFQDN").and_then(Value::as_bool).unwrap_or(false);
    if !fqdn_wanted || domain.is_empty() {
        return Ok(host);
    }
    let fqdn = format!("{host}.{domain}");
    if fqdn.len() > 64 {
        return Err(format!(
            "failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too long (64 characters is the max, {} characters requested)",
            fqdn.len()
        ));
    }
    Ok(fqdn)
}

/// The `hostAliases` lines, after a blank line and a comment (nothing without aliases).
fn alias_lines(aliases: &[Value]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for a in aliases {
        let names: Vec<&str> =
            a.get("hostnames").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        out.push_str(&format!("{}\t{}\n", s(a, "/ip"), names.join("\t")));
    }
    out
}

/// The managed hosts file of a pod on the pod network.
pub fn managed_content(pod_ips: &[&str], hostname: &str, domain: &str, aliases: &[Value]) -> String {
    let mut out = String::from(MANAGED_HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    for ip in pod_ips {
        if domain.is_empty() {
            out.push_str(&format!("{ip}\t{hostname}\n"));
        } else {
            out.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n"));
        }
    }
    out.push_str(&alias_lines(aliases));
    out
}

/// The hosts file of a host-network pod: the node's, with the pod's aliases after it.
pub fn node_content(node_hosts: &str, aliases: &[Value]) -> String {
    format!("{MANAGED_HEADER_HOST_NETWORK}{node_hosts}{}", alias_lines(aliases))
}

/// Writes the pod's hosts file (mode 0644) and returns its path, or None when none is mounted: a pod on the pod
/// network without an IP yet (upstream's shouldMountHostsFile).
pub fn ensure(
    pod_dir: &Path,
    pod: &Value,
    pod_ip: &str,
    cluster_domain: &str,
    node_hosts: &Path,
) -> std::io::Result<Option<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let host_network = pod.pointer("/spec/hostNetwork").and_then(Value::as_bool).unwrap_or(false);
    if !host_network && pod_ip.is_empty() {
        return Ok(None);
    }
    let aliases = pod.pointer("/spec/hostAliases").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let content = if host_network {
        node_content(&std::fs::read_to_string(node_hosts)?, aliases)
    } else {
        let (host, domain) = hostname_and_domain(pod, cluster_domain);
        managed_content(&[pod_ip], &host, &domain, aliases)
    };
    std::fs::create_dir_all(pod_dir)?;
    let path = pod_dir.join("etc-hosts");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
        std::fs::write(&path, content)?;
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LOCAL: &str = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n";

    /// Upstream's TestManagedHostsFileContent cases.
    #[test]
    fn managed_hosts_file_content_as_upstream() {
        let aliases = [
            json!({"ip": "123.45.67.89", "hostnames": ["foo", "bar", "baz"]}),
            json!({"ip": "456.78.90.123", "hostnames": ["park", "doo", "boo"]}),
        ];
        assert_eq!(managed_content(&["123.45.67.89"], "podFoo", "", &[]), format!("{LOCAL}123.45.67.89\tpodFoo\n"));
        assert_eq!(
            managed_content(&["203.0.113.1"], "podFoo", "domainFoo", &[]),
            format!("{LOCAL}203.0.113.1\tpodFoo.domainFoo\tpodFoo\n")
        );
        assert_eq!(
            managed_content(&["203.0.113.1"], "podFoo", "domainFoo", &aliases[..1]),
            format!(
                "{LOCAL}203.0.113.1\tpodFoo.domainFoo\tpodFoo\n\n# Entries added by HostAliases.\n123.45.67.89\tfoo\tbar\tbaz\n"
            )
        );
        assert_eq!(
            managed_content(&["203.0.113.1"], "podFoo", "domainFoo", &aliases),
            format!(
                "{LOCAL}203.0.113.1\tpodFoo.domainFoo\tpodFoo\n\n# Entries added by HostAliases.\n123.45.67.89\tfoo\tbar\tbaz\n456.78.90.123\tpark\tdoo\tboo\n"
            )
        );
        assert_eq!(
            managed_content(&["203.0.113.1", "fd00::6"], "podFoo", "domainFoo", &[]),
            format!("{LOCAL}203.0.113.1\tpodFoo.domainFoo\tpodFoo\nfd00::6\tpodFoo.domainFoo\tpodFoo\n")
        );
    }

    /// Upstream's TestNodeHostsFileContent: the node's file under the host-network header, aliases appended.
    #[test]
    fn host_network_hosts_file_content_as_upstream() {
        let node = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n123.45.67.89\tsome.domain\n";
        assert_eq!(node_content(node, &[]), format!("# Kubernetes-managed hosts file (host network).\n{node}"));
        let aliases = [json!({"ip": "123.45.67.89", "hostnames": ["foo", "bar", "baz"]})];
        assert_eq!(
            node_content(node, &aliases),
            format!(
                "# Kubernetes-managed hosts file (host network).\n{node}\n# Entries added by HostAliases.\n123.45.67.89\tfoo\tbar\tbaz\n"
            )
        );
    }

    #[test]
    fn hostnames_domains_and_fqdns() {
        let pod = |spec: Value| json!({"metadata": {"name": "web-0", "namespace": "prod"}, "spec": spec});
        assert_eq!(hostname_and_domain(&pod(json!({})), "cluster.local"), ("web-0".into(), String::new()));
        assert_eq!(
            hostname_and_domain(&pod(json!({"hostname": "db", "subdomain": "svc1"})), "cluster.local"),
            ("db".into(), "svc1.prod.svc.cluster.local".into())
        );
        let long = format!("{}-{}", "a".repeat(62), "b");
        assert_eq!(hostname_and_domain(&pod(json!({"hostname": long})), "c").0, "a".repeat(62), "cut at 63, no '-'");
        assert_eq!(kernel_hostname(&pod(json!({"subdomain": "s"})), "cluster.local").unwrap(), "web-0");
        assert_eq!(
            kernel_hostname(&pod(json!({"subdomain": "s", "setHostnameAsFQDN": true})), "cluster.local").unwrap(),
            "web-0.s.prod.svc.cluster.local"
        );
        assert_eq!(kernel_hostname(&pod(json!({"setHostnameAsFQDN": true})), "cluster.local").unwrap(), "web-0");
        let too_long = pod(json!({"hostname": "h".repeat(40), "subdomain": "s", "setHostnameAsFQDN": true}));
        assert!(
            kernel_hostname(&too_long, "cluster.local").unwrap_err().contains("is too long (64 characters is the max")
        );
    }

    #[test]
    fn hosts_files_are_written_for_pods_with_an_address_or_the_host_network() {
        let dir = tempfile::tempdir().unwrap();
        let node_hosts = dir.path().join("node-hosts");
        std::fs::write(&node_hosts, "10.0.0.1\tnode1\n").unwrap();
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"hostAliases": [{"ip": "1.2.3.4", "hostnames": ["a.example"]}]}});
        assert_eq!(ensure(dir.path(), &pod, "", "cluster.local", &node_hosts).unwrap(), None, "no IP yet");
        let path = ensure(dir.path(), &pod, "10.1.0.7", "cluster.local", &node_hosts).unwrap().unwrap();
        let content = std::fs::read_to_string(&path).unwrap();
        assert!(content.contains("10.1.0.7\tp\n") && content.ends_with("1.2.3.4\ta.example\n"), "{content}");
        let mut host = pod.clone();
        host["spec"]["hostNetwork"] = json!(true);
        let path = ensure(dir.path(), &host, "", "cluster.local", &node_hosts).unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# Kubernetes-managed hosts file (host network).\n10.0.0.1\tnode1\n\n# Entries added by HostAliases.\n1.2.3.4\ta.example\n"
        );
    }
}
