//! Golden tests: the script for each scenario (upstream's NetworkPolicy API cases) against `testdata/<name>.nft`,
//! applied through the recording runner; `UPDATE_GOLDEN=1` rewrites the files. Every golden script is also checked
//! by nftables itself (`nft -c`, in a network namespace of its own).

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::nftables::{Recording, Runner};
use crate::policy::Cluster;

fn pod(ns: &str, name: &str, node: &str, ip: &str, labels: Value) -> Value {
    json!({
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
            {"name": "http", "containerPort": 8080},
            {"name": "dns", "containerPort": 5353, "protocol": "UDP"},
        ]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    })
}

fn namespace(name: &str, labels: Value) -> Value {
    let mut labels = labels;
    labels["kubernetes.io/metadata.name"] = json!(name);
    json!({"metadata": {"name": name, "labels": labels}})
}

fn policy(ns: &str, name: &str, spec: Value) -> Arc<Value> {
    Arc::new(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"namespace": ns, "name": name}, "spec": spec}))
}

/// Node n1 runs `web` and `db` (namespace `default`); n2 runs the clients: `client` (access=true), `stranger`, and
/// `blue` (access=true, namespace `other`, team=blue); a host-network pod on n1 takes no part.
fn cluster(policies: Vec<Arc<Value>>) -> Cluster {
    let mut host = pod("default", "host", "n1", "192.168.0.1", json!({"app": "web"}));
    host["spec"]["hostNetwork"] = json!(true);
    let pods = [
        pod("default", "web", "n1", "10.244.1.10", json!({"app": "web"})),
        pod("default", "db", "n1", "10.244.1.11", json!({"app": "db"})),
        pod("default", "client", "n2", "10.244.2.20", json!({"access": "true"})),
        pod("default", "stranger", "n2", "10.244.2.21", json!({})),
        pod("other", "blue", "n2", "10.244.2.22", json!({"access": "true"})),
        host,
    ];
    let namespaces = [namespace("default", json!({})), namespace("other", json!({"team": "blue"}))];
    Cluster::from_objects(pods.iter(), namespaces.iter(), policies)
}

fn golden(name: &str, policies: Vec<Arc<Value>>) {
    let script = render(&cluster(policies).ruleset("n1"));
    let recording = Recording::default();
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(recording.apply(&script)).unwrap();
    let got = recording.last().unwrap();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata").join(format!("{name}.nft"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(got, want, "{name}: the script differs from {}", path.display());
}

#[test]
fn no_policies() {
    golden("no_policies", vec![]);
}

#[test]
fn default_deny_ingress() {
    golden("default_deny_ingress", vec![policy("default", "default-deny-ingress", json!({"podSelector": {}}))]);
}

/// The walkthrough's "declare a network policy": web reachable only from pods labelled access=true (of its own
/// namespace: `blue` has the label but lives elsewhere).
#[test]
fn allow_from_pods_with_a_label() {
    golden(
        "allow_from_label",
        vec![policy(
            "default",
            "access-web",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"access": "true"}}}]}]}),
        )],
    );
}

/// namespaceSelector alone (every pod of the namespaces), and with a podSelector (those pods of the namespaces);
/// matchExpressions on the default namespace label.
#[test]
fn namespace_selector() {
    golden(
        "namespace_selector",
        vec![policy(
            "default",
            "from-blue",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
                {"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]},
                {"from": [{"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name",
                           "operator": "In", "values": ["default", "other"]}]},
                           "podSelector": {"matchLabels": {"access": "true"}}}]},
            ]}),
        )],
    );
}

#[test]
fn ip_block_with_except() {
    golden(
        "ip_block_except",
        vec![policy(
            "default",
            "cidr",
            json!({"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress", "Egress"],
                   "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.2.0/24", "10.244.3.0/24"]}},
                                         {"ipBlock": {"cidr": "10.244.2.20/32"}},
                                         {"ipBlock": {"cidr": "fd00::/8"}}]}],
                   "egress": [{"to": [{"ipBlock": {"cidr": "10.244.2.21/24"}}]}]}),
        )],
    );
}

/// Ports: a range with endPort, a lone port, a whole protocol, and named ports resolved against the selected pod
/// (ingress) and the peers (egress).
#[test]
fn ports_with_end_port_and_names() {
    golden(
        "ports",
        vec![policy(
            "default",
            "ports",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress", "Egress"],
                   "ingress": [{"ports": [{"protocol": "TCP", "port": 8000, "endPort": 9000}, {"port": 80},
                                          {"protocol": "SCTP"}, {"port": "http"}],
                                "from": [{"podSelector": {}}]}],
                   "egress": [{"ports": [{"protocol": "UDP", "port": "dns"}]}]}),
        )],
    );
}

/// Egress deny-all for web; db keeps its egress.
#[test]
fn egress_deny() {
    golden(
        "egress_deny",
        vec![policy(
            "default",
            "deny-egress",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"]}),
        )],
    );
}

/// policyTypes decide what a policy isolates: ingress rules of an Egress-only policy are ignored, a policy with
/// egress rules and no policyTypes isolates both ways, an allow-all rule (`{}`) allows everything.
#[test]
fn policy_types() {
    golden(
        "policy_types",
        vec![
            policy(
                "default",
                "egress-only",
                json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
                       "ingress": [{"from": [{"podSelector": {}}]}],
                       "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]}]}),
            ),
            policy("default", "implied", json!({"podSelector": {"matchLabels": {"app": "db"}}, "egress": [{}]})),
            // Selects only pods of another node: nothing here.
            policy("other", "elsewhere", json!({"podSelector": {}})),
        ],
    );
}

/// nftables accepts every golden script (a check, `nft -c`, in a fresh network namespace: nothing is changed).
/// Needs root and nft.
#[test]
fn golden_scripts_are_valid_nftables_as_root() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "nft") {
            continue;
        }
        let out = std::process::Command::new("unshare")
            .args(["--net", "nft", "-c", "-f"])
            .arg(&path)
            .output()
            .expect("unshare and nft (run as root)");
        assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} golden scripts");
}

#[test]
fn long_names_are_hashed_and_cleanup_removes_only_the_table() {
    let long = "x".repeat(250);
    let p = policy_prefix("default", &long);
    assert!(p.len() < 40 && p.starts_with("policy_"), "{p}");
    assert_eq!(p, policy_prefix("default", &long), "stable");
    assert_eq!(policy_prefix("a-b", "c"), "policy_a-b_c");
    assert_ne!(policy_prefix("a-b", "c"), policy_prefix("a", "b-c"));
    assert_eq!(cleanup(), "table inet kube-network-policy\ndelete table inet kube-network-policy\n");
}

/// Dual-stack pods: each family gets its own sets and rules; an ipBlock applies in its own family only.
#[test]
fn dual_stack() {
    let mut web = pod("default", "web", "n1", "10.244.1.10", json!({"app": "web"}));
    web["status"]["podIPs"] = json!([{"ip": "10.244.1.10"}, {"ip": "fd00:10:244:1::a"}]);
    let mut client = pod("default", "client", "n2", "10.244.2.20", json!({"access": "true"}));
    client["status"]["podIPs"] = json!([{"ip": "10.244.2.20"}, {"ip": "fd00:10:244:2::14"}]);
    let namespaces = [namespace("default", json!({}))];
    let policies = vec![policy(
        "default",
        "dual",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"access": "true"}}},
                                     {"ipBlock": {"cidr": "fd00:99::/32", "except": ["fd00:99:1::/48"]}}],
                            "ports": [{"port": "http"}]}]}),
    )];
    let cluster = Cluster::from_objects([web, client].iter(), namespaces.iter(), policies);
    let script = render(&cluster.ruleset("n1"));
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/dual_stack.nft");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &script).unwrap();
    }
    assert_eq!(script, std::fs::read_to_string(&path).unwrap());
}
