//! A pod's DNS configuration as upstream's kubelet forms it (`pkg/kubelet/network/dns`): the node's resolver
//! configuration (`resolvConf`), replaced for `ClusterFirst` pods by the cluster DNS servers (`clusterDNS`) with
//! the cluster search domains and `ndots:5`, empty for `None`, then the pod's `dnsConfig` appended; the result is
//! cut to the resolver's limits (3 nameservers, 32 search paths of at most 253 characters, a search line of 2,048),
//! each cut reported as upstream's `DNSConfigForming` warning.

use serde_json::Value;

use proto::cri::DnsConfig;

/// Upstream's validation.MaxDNSNameservers.
pub const MAX_NAMESERVERS: usize = 3;
/// Upstream's validation.MaxDNSSearchPathsExpanded (ExpandedDNSConfig is GA).
pub const MAX_SEARCH_PATHS: usize = 32;
/// Upstream's validation.MaxDNSSearchListCharsExpanded.
pub const MAX_SEARCH_LIST_CHARS: usize = 2048;
/// Upstream's DNS1123SubdomainMaxLength: longer search paths make some resolvers abort.
const MAX_SEARCH_PATH_CHARS: usize = 253;

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

fn strs(v: &Value, p: &str) -> Vec<String> {
    v.pointer(p)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

/// Upstream's parseResolvConf: nameservers accumulate, the last `search` and `options` lines win, search paths
/// lose a trailing dot.
pub fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut dns = DnsConfig::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.first().copied() {
            Some("nameserver") if fields.len() >= 2 => dns.servers.push(fields[1].to_string()),
            Some("search") => dns.searches = fields[1..].iter().map(|f| f.trim_end_matches('.').to_string()).collect(),
            Some("options") => dns.options = fields[1..].iter().map(|f| f.to_string()).collect(),
            _ => {}
        }
    }
    dns
}

fn omit_duplicates(list: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    list.into_iter().filter(|x| seen.insert(x.clone())).collect()
}

/// Upstream's mergeDNSOptions: the pod's options override the same names (kept in order here).
fn merge_options(existing: &[String], pod_options: &[Value]) -> Vec<String> {
    let mut merged: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: &str| match merged.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 = value.to_string(),
        None => merged.push((name.to_string(), value.to_string())),
    };
    for o in existing {
        match o.split_once(':') {
            Some((n, v)) => set(n, v),
            None => set(o, ""),
        }
    }
    for o in pod_options {
        set(s(o, "/name"), s(o, "/value"));
    }
    merged.into_iter().map(|(n, v)| if v.is_empty() { n } else { format!("{n}:{v}") }).collect()
}

/// Upstream's formDNSNameserversFitsLimits and formDNSSearchFitsLimits: the configuration cut to the limits, with
/// the `DNSConfigForming` warning messages of the cuts.
pub fn fit_limits(mut dns: DnsConfig) -> (DnsConfig, Vec<String>) {
    let mut warnings = Vec::new();
    if dns.servers.len() > MAX_NAMESERVERS {
        dns.servers.truncate(MAX_NAMESERVERS);
        warnings.push(format!(
            "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: {}",
            dns.servers.join(" ")
        ));
    }
    let mut exceeded = dns.searches.len() > MAX_SEARCH_PATHS;
    dns.searches.truncate(MAX_SEARCH_PATHS);
    let before = dns.searches.len();
    dns.searches.retain(|p| p.len() <= MAX_SEARCH_PATH_CHARS);
    exceeded |= dns.searches.len() != before;
    let line = dns.searches.join(" ").len();
    if line > MAX_SEARCH_LIST_CHARS {
        // Drop paths from the end until the line fits.
        let mut cut = 0;
        while let Some(last) = dns.searches.pop() {
            cut += last.len() + 1;
            if line - cut <= MAX_SEARCH_LIST_CHARS {
                break;
            }
        }
        exceeded = true;
    }
    if exceeded {
        warnings.push(format!(
            "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
            dns.searches.join(" ")
        ));
    }
    (dns, warnings)
}

/// Upstream's `MissingClusterDNS` warning when a pod asks for the cluster's DNS (`ClusterFirst` off the host network,
/// or `ClusterFirstWithHostNet`) and the kubelet has no `clusterDNS`: the pod falls back to the `Default` policy.
pub fn missing_cluster_dns(pod: &Value, cluster_dns: &[String]) -> Option<&'static str> {
    let host_network = pod.pointer("/spec/hostNetwork").and_then(Value::as_bool).unwrap_or(false);
    let cluster = match s(pod, "/spec/dnsPolicy") {
        "ClusterFirstWithHostNet" => true,
        "None" | "Default" => false,
        _ => !host_network,
    };
    (cluster && cluster_dns.is_empty()).then_some(
        "kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.",
    )
}

/// Upstream's GetPodDNS: the pod's DNS configuration from the node's resolver configuration (`host`: the content of
/// `resolvConf`, None when it is set to ""), the cluster DNS servers and domain, and the pod's `dnsPolicy` and
/// `dnsConfig`, cut to the limits; with the `DNSConfigForming` warnings.
pub fn pod_dns(
    pod: &Value,
    host: Option<&str>,
    cluster_dns: &[String],
    cluster_domain: &str,
    node_ip: &str,
) -> (DnsConfig, Vec<String>) {
    let host_network = pod.pointer("/spec/hostNetwork").and_then(Value::as_bool).unwrap_or(false);
    let policy = s(pod, "/spec/dnsPolicy");
    let mut dns = host.map(parse_resolv_conf).unwrap_or_default();
    let cluster = match policy {
        "None" => {
            dns = DnsConfig::default();
            false
        }
        "ClusterFirstWithHostNet" => true,
        "Default" => false,
        // ClusterFirst (the default) falls back to Default on the host network.
        _ => !host_network,
    };
    if cluster && !cluster_dns.is_empty() {
        dns.servers = cluster_dns.to_vec();
        if !cluster_domain.is_empty() {
            let ns = s(pod, "/metadata/namespace");
            let mut searches =
                vec![format!("{ns}.svc.{cluster_domain}"), format!("svc.{cluster_domain}"), cluster_domain.to_string()];
            searches.append(&mut dns.searches);
            dns.searches = omit_duplicates(searches);
        }
        dns.options = vec!["ndots:5".into()];
    } else if policy != "None" && host.is_none() {
        // No resolver configuration: the local machine's nameserver (upstream's `--resolv-conf=""`).
        let loopback = if node_ip.parse::<std::net::Ipv6Addr>().is_ok() { "::1" } else { "127.0.0.1" };
        dns.servers.push(loopback.into());
        dns.searches = vec![".".into()];
    }
    if let Some(config) = pod.pointer("/spec/dnsConfig").filter(|c| c.is_object()) {
        dns.servers.extend(strs(config, "/nameservers"));
        dns.servers = omit_duplicates(std::mem::take(&mut dns.servers));
        dns.searches.extend(strs(config, "/searches"));
        dns.searches = omit_duplicates(std::mem::take(&mut dns.searches));
        let options = config.get("options").and_then(Value::as_array).cloned().unwrap_or_default();
        dns.options = merge_options(&dns.options, &options);
    }
    fit_limits(dns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HOST: &str = "# comment\nnameserver 10.0.0.1\nnameserver 10.0.0.2\nsearch old.example\nsearch example.com. corp\noptions ndots:2 edns0\n";

    #[test]
    fn missing_cluster_dns_only_for_cluster_policies_without_servers() {
        let pod = |policy: &str, host: bool| json!({"spec": {"dnsPolicy": policy, "hostNetwork": host}});
        let none: &[String] = &[];
        assert!(missing_cluster_dns(&pod("ClusterFirst", false), none).unwrap().contains("\"ClusterFirst\" policy"));
        assert!(missing_cluster_dns(&pod("ClusterFirstWithHostNet", true), none).is_some());
        assert!(missing_cluster_dns(&json!({"spec": {}}), none).is_some());
        // The host network's ClusterFirst is Default already; Default and None never ask for cluster DNS.
        assert!(missing_cluster_dns(&pod("ClusterFirst", true), none).is_none());
        assert!(missing_cluster_dns(&pod("Default", false), none).is_none());
        assert!(missing_cluster_dns(&pod("None", false), none).is_none());
        assert!(missing_cluster_dns(&pod("ClusterFirst", false), &["10.96.0.10".into()]).is_none());
    }

    #[test]
    fn resolv_conf_as_upstream_parses_it() {
        let dns = parse_resolv_conf(HOST);
        assert_eq!(dns.servers, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(dns.searches, ["example.com", "corp"]);
        assert_eq!(dns.options, ["ndots:2", "edns0"]);
    }

    #[test]
    fn policies_and_pod_dns_config() {
        let pod = |spec: Value| json!({"metadata": {"namespace": "ns"}, "spec": spec});
        let cluster = ["10.96.0.10".to_string()];
        let (dns, warnings) = pod_dns(&pod(json!({})), Some(HOST), &cluster, "cluster.local", "10.0.0.5");
        assert_eq!(dns.servers, ["10.96.0.10"]);
        assert_eq!(dns.searches, ["ns.svc.cluster.local", "svc.cluster.local", "cluster.local", "example.com", "corp"]);
        assert_eq!(dns.options, ["ndots:5"]);
        assert!(warnings.is_empty());
        // ClusterFirst on the host network, and Default: the node's configuration.
        let (dns, _) = pod_dns(&pod(json!({"hostNetwork": true})), Some(HOST), &cluster, "cluster.local", "");
        assert_eq!(dns, parse_resolv_conf(HOST));
        let (dns, _) = pod_dns(&pod(json!({"dnsPolicy": "Default"})), Some(HOST), &cluster, "cluster.local", "");
        assert_eq!(dns, parse_resolv_conf(HOST));
        // No cluster DNS: ClusterFirst falls back to Default.
        let (dns, _) = pod_dns(&pod(json!({})), Some(HOST), &[], "cluster.local", "");
        assert_eq!(dns, parse_resolv_conf(HOST));
        // No resolver configuration: the local nameserver.
        let (dns, _) = pod_dns(&pod(json!({"dnsPolicy": "Default"})), None, &cluster, "cluster.local", "10.0.0.5");
        assert_eq!((dns.servers, dns.searches), (vec!["127.0.0.1".to_string()], vec![".".to_string()]));
        // None with the pod's own configuration; options merged.
        let spec = json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1", "1.1.1.1"], "searches": ["a.b"],
            "options": [{"name": "ndots", "value": "1"}, {"name": "edns0"}]}});
        let (dns, _) = pod_dns(&pod(spec), Some(HOST), &cluster, "cluster.local", "");
        assert_eq!(
            (dns.servers, dns.searches, dns.options),
            (vec!["1.1.1.1".into()], vec!["a.b".into()], vec!["ndots:1".into(), "edns0".into()])
        );
        let spec = json!({"dnsConfig": {"options": [{"name": "ndots", "value": "2"}]}});
        let (dns, _) = pod_dns(&pod(spec), Some(HOST), &cluster, "cluster.local", "");
        assert_eq!(dns.options, ["ndots:2"]);
    }

    #[test]
    fn limits_as_upstream_with_dns_config_forming_messages() {
        let pod = json!({"metadata": {"namespace": "ns"}, "spec": {"dnsPolicy": "Default",
            "dnsConfig": {"nameservers": ["10.0.0.3", "10.0.0.4"]}}});
        let (dns, warnings) = pod_dns(&pod, Some(HOST), &[], "cluster.local", "");
        assert_eq!(dns.servers, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(
            warnings,
            [
                "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: 10.0.0.1 10.0.0.2 10.0.0.3"
            ]
        );

        // More than 32 search paths.
        let many: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        let (dns, warnings) = fit_limits(DnsConfig { searches: many.clone(), ..Default::default() });
        assert_eq!(dns.searches, many[..32]);
        assert_eq!(
            warnings,
            [format!(
                "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
                many[..32].join(" ")
            )]
        );
        // A path over 253 characters is dropped.
        let long = "a".repeat(254);
        let (dns, warnings) =
            fit_limits(DnsConfig { searches: vec!["x".into(), long, "y".into()], ..Default::default() });
        assert_eq!(dns.searches, ["x", "y"]);
        assert_eq!(warnings.len(), 1);
        // A line over 2,048 characters loses paths from its end until it fits.
        let paths: Vec<String> = (0..10).map(|i| format!("{i}{}", "b".repeat(249))).collect();
        let (dns, warnings) = fit_limits(DnsConfig { searches: paths.clone(), ..Default::default() });
        assert_eq!(dns.searches, paths[..8]);
        assert!(dns.searches.join(" ").len() <= MAX_SEARCH_LIST_CHARS);
        assert_eq!(warnings.len(), 1);
        // Within the limits: untouched, no warning.
        let (dns, warnings) = fit_limits(parse_resolv_conf(HOST));
        assert_eq!((dns, warnings.len()), (parse_resolv_conf(HOST), 0));
    }
}
