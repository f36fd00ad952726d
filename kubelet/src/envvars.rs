//! Service environment variables (upstream's `pkg/kubelet/envvars` and `getServiceEnvVarMap`): for the `kubernetes`
//! Service in `default` always, and for every Service of the pod's namespace when `enableServiceLinks` (default
//! true), `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT`, `<NAME>_SERVICE_PORT_<PORT NAME>` and the Docker link
//! variables `<NAME>_PORT`, `<NAME>_PORT_<port>_<PROTO>{,_PROTO,_PORT,_ADDR}`. Services without a cluster IP
//! (headless, ExternalName) give none.

use std::collections::BTreeMap;

use serde_json::Value;

/// A Service or port name as a variable name: upper case, `-` as `_`.
fn env_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

/// `host:port`, with the host in brackets when it is an IPv6 address (Go's `net.JoinHostPort`).
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

fn cluster_ip(svc: &Value) -> Option<&str> {
    svc.pointer("/spec/clusterIP").and_then(Value::as_str).filter(|ip| !ip.is_empty() && *ip != "None")
}

/// The variables of these Services, in upstream's order.
pub fn from_services<'a>(services: impl IntoIterator<Item = &'a Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for svc in services {
        let Some(ip) = cluster_ip(svc) else { continue };
        let ports = svc.pointer("/spec/ports").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let prefix = env_name(svc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default());
        let port_of = |p: &Value| p.get("port").and_then(Value::as_i64).unwrap_or(0);
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        let service_port = format!("{prefix}_SERVICE_PORT");
        out.push((service_port.clone(), port_of(first).to_string()));
        for p in ports {
            if let Some(name) = p.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                out.push((format!("{service_port}_{}", env_name(name)), port_of(p).to_string()));
            }
        }
        for (i, p) in ports.iter().enumerate() {
            let protocol = p.get("protocol").and_then(Value::as_str).filter(|p| !p.is_empty()).unwrap_or("TCP");
            let (lower, upper) = (protocol.to_lowercase(), protocol.to_uppercase());
            let url = format!("{lower}://{}", join_host_port(ip, port_of(p)));
            if i == 0 {
                out.push((format!("{prefix}_PORT"), url.clone()));
            }
            let port_prefix = format!("{prefix}_PORT_{}_{upper}", port_of(p));
            out.push((port_prefix.clone(), url));
            out.push((format!("{port_prefix}_PROTO"), lower));
            out.push((format!("{port_prefix}_PORT"), port_of(p).to_string()));
            out.push((format!("{port_prefix}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// The service variables a pod in `namespace` sees, from the Services known now: the `kubernetes` Service of
/// `default` always (even with `enableServiceLinks: false`), and the namespace's own when `links` is true (a
/// Service of the pod's namespace named `kubernetes` wins over the master one, as upstream).
pub fn for_pod(services: &[std::sync::Arc<Value>], namespace: &str, links: bool) -> BTreeMap<String, String> {
    let mut chosen: BTreeMap<&str, &Value> = BTreeMap::new();
    for svc in services {
        let ns = svc.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
        let name = svc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        if cluster_ip(svc).is_none() {
            continue;
        }
        if ns == "default" && name == "kubernetes" {
            chosen.entry(name).or_insert(svc);
        } else if ns == namespace && links {
            chosen.insert(name, svc);
        }
    }
    from_services(chosen.into_values()).into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn svc(ns: &str, name: &str, ip: &str, ports: Value) -> Value {
        json!({"metadata": {"namespace": ns, "name": name}, "spec": {"clusterIP": ip, "ports": ports}})
    }

    /// Upstream's TestFromServices, plus an IPv6 cluster IP (bracketed in the URLs, as Go's JoinHostPort).
    #[test]
    fn variables_from_services_as_upstream() {
        let services = [
            svc("ns", "foo-bar", "1.2.3.4", json!([{"port": 8080, "protocol": "TCP"}])),
            svc(
                "ns",
                "abc-123",
                "5.6.7.8",
                json!([{"name": "u-d-p", "port": 8081, "protocol": "UDP"}, {"name": "t-c-p", "port": 8081, "protocol": "TCP"}]),
            ),
            svc(
                "ns",
                "q-u-u-x",
                "9.8.7.6",
                json!([{"port": 8082, "protocol": "TCP"}, {"name": "8083", "port": 8083, "protocol": "TCP"}]),
            ),
            svc("ns", "svrc-clusterip-none", "None", json!([{"port": 8082, "protocol": "TCP"}])),
            svc("ns", "svrc-clusterip-empty", "", json!([{"port": 8082, "protocol": "TCP"}])),
            svc("ns", "v6", "2001:db8::1", json!([{"port": 8084}])),
        ];
        let expected = [
            ("FOO_BAR_SERVICE_HOST", "1.2.3.4"),
            ("FOO_BAR_SERVICE_PORT", "8080"),
            ("FOO_BAR_PORT", "tcp://1.2.3.4:8080"),
            ("FOO_BAR_PORT_8080_TCP", "tcp://1.2.3.4:8080"),
            ("FOO_BAR_PORT_8080_TCP_PROTO", "tcp"),
            ("FOO_BAR_PORT_8080_TCP_PORT", "8080"),
            ("FOO_BAR_PORT_8080_TCP_ADDR", "1.2.3.4"),
            ("ABC_123_SERVICE_HOST", "5.6.7.8"),
            ("ABC_123_SERVICE_PORT", "8081"),
            ("ABC_123_SERVICE_PORT_U_D_P", "8081"),
            ("ABC_123_SERVICE_PORT_T_C_P", "8081"),
            ("ABC_123_PORT", "udp://5.6.7.8:8081"),
            ("ABC_123_PORT_8081_UDP", "udp://5.6.7.8:8081"),
            ("ABC_123_PORT_8081_UDP_PROTO", "udp"),
            ("ABC_123_PORT_8081_UDP_PORT", "8081"),
            ("ABC_123_PORT_8081_UDP_ADDR", "5.6.7.8"),
            ("ABC_123_PORT_8081_TCP", "tcp://5.6.7.8:8081"),
            ("ABC_123_PORT_8081_TCP_PROTO", "tcp"),
            ("ABC_123_PORT_8081_TCP_PORT", "8081"),
            ("ABC_123_PORT_8081_TCP_ADDR", "5.6.7.8"),
            ("Q_U_U_X_SERVICE_HOST", "9.8.7.6"),
            ("Q_U_U_X_SERVICE_PORT", "8082"),
            ("Q_U_U_X_SERVICE_PORT_8083", "8083"),
            ("Q_U_U_X_PORT", "tcp://9.8.7.6:8082"),
            ("Q_U_U_X_PORT_8082_TCP", "tcp://9.8.7.6:8082"),
            ("Q_U_U_X_PORT_8082_TCP_PROTO", "tcp"),
            ("Q_U_U_X_PORT_8082_TCP_PORT", "8082"),
            ("Q_U_U_X_PORT_8082_TCP_ADDR", "9.8.7.6"),
            ("Q_U_U_X_PORT_8083_TCP", "tcp://9.8.7.6:8083"),
            ("Q_U_U_X_PORT_8083_TCP_PROTO", "tcp"),
            ("Q_U_U_X_PORT_8083_TCP_PORT", "8083"),
            ("Q_U_U_X_PORT_8083_TCP_ADDR", "9.8.7.6"),
            ("V6_SERVICE_HOST", "2001:db8::1"),
            ("V6_SERVICE_PORT", "8084"),
            ("V6_PORT", "tcp://[2001:db8::1]:8084"),
            ("V6_PORT_8084_TCP", "tcp://[2001:db8::1]:8084"),
            ("V6_PORT_8084_TCP_PROTO", "tcp"),
            ("V6_PORT_8084_TCP_PORT", "8084"),
            ("V6_PORT_8084_TCP_ADDR", "2001:db8::1"),
        ];
        let got = from_services(services.iter());
        let want: Vec<(String, String)> = expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_master_service_always_and_the_namespace_with_links() {
        let services: Vec<Arc<Value>> = [
            svc("default", "kubernetes", "10.96.0.1", json!([{"name": "https", "port": 443, "protocol": "TCP"}])),
            svc("default", "other", "10.96.0.2", json!([{"port": 80}])),
            svc("app", "web", "10.96.0.3", json!([{"port": 8080}])),
            svc("app", "headless", "None", json!([{"port": 80}])),
            svc("elsewhere", "db", "10.96.0.4", json!([{"port": 5432}])),
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let linked = for_pod(&services, "app", true);
        assert_eq!(linked.get("KUBERNETES_SERVICE_HOST").map(String::as_str), Some("10.96.0.1"));
        assert_eq!(linked.get("KUBERNETES_SERVICE_PORT").map(String::as_str), Some("443"));
        assert_eq!(linked.get("KUBERNETES_SERVICE_PORT_HTTPS").map(String::as_str), Some("443"));
        assert_eq!(linked.get("KUBERNETES_PORT").map(String::as_str), Some("tcp://10.96.0.1:443"));
        assert_eq!(linked.get("WEB_SERVICE_HOST").map(String::as_str), Some("10.96.0.3"));
        assert!(!linked.contains_key("OTHER_SERVICE_HOST") && !linked.contains_key("DB_SERVICE_HOST"));
        assert!(!linked.keys().any(|k| k.starts_with("HEADLESS")));
        let unlinked = for_pod(&services, "app", false);
        assert!(unlinked.contains_key("KUBERNETES_SERVICE_HOST") && !unlinked.contains_key("WEB_SERVICE_HOST"));
        // In default, links include default's own Services.
        let in_default = for_pod(&services, "default", true);
        assert!(in_default.contains_key("OTHER_SERVICE_HOST") && in_default.contains_key("KUBERNETES_SERVICE_HOST"));
    }
}
