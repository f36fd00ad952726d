//! Golden rule outputs of the nftables and iptables proxiers from the recording fake (as upstream's
//! `TestOverallNFTablesRules` / `TestOverallIPTablesRules`), and per-scenario checks: ClusterIP, NodePort,
//! no endpoints (reject), session affinity, local traffic policies, terminating fallback, partial syncs that
//! touch only the changed Services, and UDP conntrack cleanup. `UPDATE_GOLDEN=1` rewrites the golden files.

use std::sync::Arc;
use std::time::Duration;

use kube_proxy::exec::{FakeExec, Output};
use kube_proxy::iptables::IptablesProxier;
use kube_proxy::localdetector::LocalDetector;
use kube_proxy::metrics::ProxyMetrics;
use kube_proxy::nftables::NftProxier;
use kube_proxy::nodeportaddresses::NodePortAddresses;
use kube_proxy::provider::{Provider, SyncOutcome};
use kube_proxy::proxier::Proxier;
use kube_proxy::serviceport::IpFamily;
use serde_json::{Value, json};

const HOST: &str = "test-node";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Nft,
    Ipt,
}

fn new_provider(mode: Mode) -> (Provider, FakeExec) {
    // iptables-save answers with no chains; everything else succeeds silently.
    let exec = FakeExec::with_responder(|_, _| Output::default());
    let shared: Arc<dyn kube_proxy::exec::Exec> = Arc::new(exec.clone());
    let detector = LocalDetector::Cidr("10.0.0.0/8".parse().unwrap());
    let npa = NodePortAddresses::new(IpFamily::V4, &[], &[]);
    let node_ip = Some("192.168.0.2".parse().unwrap());
    let proxier: Box<dyn Proxier> = match mode {
        Mode::Nft => Box::new(NftProxier::new(IpFamily::V4, shared.clone(), false, 14, detector, npa, node_ip)),
        Mode::Ipt => Box::new(IptablesProxier::new(
            IpFamily::V4,
            shared.clone(),
            false,
            14,
            detector,
            npa,
            node_ip,
            Duration::from_secs(3600),
        )),
    };
    let p =
        Provider::new(proxier, HOST, shared, Duration::from_secs(3600), Arc::new(ProxyMetrics::default()), None, None);
    p.on_services_synced();
    p.on_endpoint_slices_synced();
    exec.take();
    (p, exec)
}

fn svc(ns: &str, name: &str, spec: Value) -> Value {
    json!({"metadata": {"namespace": ns, "name": name}, "spec": spec})
}

fn ep(ip: &str, node: Option<&str>, ready: bool, serving: bool, terminating: bool) -> Value {
    let mut e =
        json!({"addresses": [ip], "conditions": {"ready": ready, "serving": serving, "terminating": terminating}});
    if let Some(n) = node {
        e["nodeName"] = json!(n);
    }
    e
}

fn slice(ns: &str, svc: &str, name: &str, port_name: &str, port: u16, proto: &str, eps: Vec<Value>) -> Value {
    json!({"metadata": {"namespace": ns, "name": name, "labels": {"kubernetes.io/service-name": svc}},
           "addressType": "IPv4", "endpoints": eps,
           "ports": [{"name": port_name, "port": port, "protocol": proto}]})
}

/// The text given to `nft -f -` or `iptables-restore` by the last sync.
fn written(exec: &FakeExec) -> String {
    exec.take()
        .into_iter()
        .filter(|c| c.cmd.starts_with("nft -f") || c.cmd.starts_with("iptables-restore"))
        .filter_map(|c| c.stdin)
        .next_back()
        .unwrap_or_default()
}

fn golden(name: &str, got: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(got, want, "{name} differs from the golden file");
}

/// The cluster of upstream's overall tests, cut down: a ClusterIP Service, a NodePort Service with two
/// endpoints, a Service without endpoints, a ClientIP-affinity Service, a LoadBalancer with
/// externalTrafficPolicy Local, and a Service whose only endpoint is terminating.
fn overall(p: &Provider) {
    p.on_service(
        None,
        Some(&svc(
            "ns1",
            "svc1",
            json!({"clusterIP": "172.30.0.41", "ports": [{"name": "p80", "port": 80, "protocol": "TCP"}]}),
        )),
    );
    p.on_endpoint_slice(
        &slice("ns1", "svc1", "svc1-a", "p80", 80, "TCP", vec![ep("10.180.0.1", None, true, true, false)]),
        false,
    );
    p.on_service(
        None,
        Some(&svc(
            "ns2",
            "svc2",
            json!({"type": "NodePort", "clusterIP": "172.30.0.42",
        "ports": [{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3001}]}),
        )),
    );
    p.on_endpoint_slice(
        &slice(
            "ns2",
            "svc2",
            "svc2-a",
            "p80",
            80,
            "TCP",
            vec![ep("10.180.0.2", Some(HOST), true, true, false), ep("10.180.0.3", Some("other"), true, true, false)],
        ),
        false,
    );
    p.on_service(
        None,
        Some(&svc(
            "ns3",
            "svc3",
            json!({"clusterIP": "172.30.0.43", "ports": [{"name": "p80", "port": 80, "protocol": "TCP"}]}),
        )),
    );
    p.on_service(
        None,
        Some(&svc(
            "ns4",
            "svc4",
            json!({"clusterIP": "172.30.0.44", "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
        "ports": [{"name": "p80", "port": 80, "protocol": "TCP"}]}),
        )),
    );
    p.on_endpoint_slice(
        &slice("ns4", "svc4", "svc4-a", "p80", 80, "TCP", vec![ep("10.180.0.4", None, true, true, false)]),
        false,
    );
    p.on_service(None, Some(&json!({"metadata": {"namespace": "ns5", "name": "svc5"},
        "spec": {"type": "LoadBalancer", "clusterIP": "172.30.0.45", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30000,
                 "ports": [{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3002}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.5"}]}}})));
    p.on_endpoint_slice(
        &slice(
            "ns5",
            "svc5",
            "svc5-a",
            "p80",
            80,
            "TCP",
            vec![ep("10.180.0.5", Some(HOST), true, true, false), ep("10.180.0.6", Some("other"), true, true, false)],
        ),
        false,
    );
    p.on_service(
        None,
        Some(&svc(
            "ns6",
            "svc6",
            json!({"clusterIP": "172.30.0.46", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}),
        )),
    );
    p.on_endpoint_slice(
        &slice(
            "ns6",
            "svc6",
            "svc6-a",
            "dns",
            5353,
            "UDP",
            vec![ep("10.180.0.7", None, false, true, true), ep("10.180.0.8", None, false, false, true)],
        ),
        false,
    );
}

#[test]
fn nftables_overall_rules() {
    let (p, exec) = new_provider(Mode::Nft);
    overall(&p);
    assert_eq!(p.sync_proxy_rules(), SyncOutcome::Full);
    let out = written(&exec);
    golden("nftables-overall.nft", &out);
    // Upstream's names, hashes included.
    assert!(out.contains("add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80\n"), "{out}");
    // Without session affinity, no endpoint chains: the policy chain DNATs through an endpoint map.
    assert!(!out.contains("endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"), "{out}");
    // ClusterIP: dispatch element, masquerade of off-cluster traffic, hairpin masquerade, DNAT.
    assert!(out.contains(
        "add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80, "
    ));
    assert!(out.contains("add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade"));
    // Endpoints maps shared by Service ports (no set per Service; a port's map by a hash of its name): each policy
    // chain owns a block of 65,536 keys of its map.
    assert!(out.contains(
        "add map ip kube-proxy endpoints-tcp-44 { typeof numgen random mod 65536 : ip daddr . tcp dport ; flags interval ; }"
    ));
    assert!(out.contains("add element ip kube-proxy endpoints-tcp-44 { 0-65535 : 10.180.0.1 . 80 }"));
    assert!(out.contains("add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 meta l4proto tcp dnat ip to numgen random mod 65536 offset 0 map @endpoints-tcp-44"));
    assert_eq!(out.matches("add map ip kube-proxy endpoints-").count(), 4, "{out}");
    // Every endpoint IP of the sync in one line of the hairpin set.
    assert!(
        out.contains("add element ip kube-proxy endpoint-hairpin { 10.180.0.1 . 10.180.0.1, 10.180.0.2 . 10.180.0.2, ")
    );
    assert!(out.contains("add rule ip kube-proxy masquerading ct status dnat ip saddr . ip daddr @endpoint-hairpin mark set mark or 0x004000"));
    // NodePort: through the external chain, which masquerades; two endpoints split the random range.
    assert!(out.contains("add element ip kube-proxy service-nodeports { tcp . 3001 : goto external-"));
    // A sync's new elements of a set or map go together, after the chains their verdicts name.
    assert!(out.contains("add element ip kube-proxy cluster-ips { 172.30.0.41, 172.30.0.42, "));
    assert!(out.find("add element ip kube-proxy service-ips").unwrap() > out.rfind("add chain ").unwrap());
    assert!(out.contains("endpoints-tcp-206 { 0-32767 : 10.180.0.2 . 80, 32768-65535 : 10.180.0.3 . 80 }"));
    assert!(
        out.contains(
            "svc2/tcp/p80 meta l4proto tcp dnat ip to numgen random mod 65536 offset 0 map @endpoints-tcp-206"
        )
    );
    // The cluster and local chains of a Service port share its map, each with a block.
    assert!(out.contains("local-HVFWP5L3-ns5/svc5/tcp/p80 meta l4proto tcp dnat ip to numgen random mod 65536 offset 65536 map @endpoints-tcp-188"));
    assert!(out.contains("add element ip kube-proxy endpoints-tcp-188 { 65536-131071 : 10.180.0.5 . 80 }"));
    // No endpoints: rejected, not black-holed.
    assert!(out.contains("add element ip kube-proxy no-endpoint-services { 172.30.0.43 . tcp . 80 comment \"ns3/svc3:p80\" : goto reject-chain }"));
    // Affinity: a timeout set per endpoint, checked first and updated in the endpoint chain.
    assert!(out.contains("flags dynamic,timeout ; timeout 10800s ;"));
    assert!(out.contains("update @affinity-"));
    assert!(out.contains("add chain ip kube-proxy endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80\n"));
    assert!(out.contains("add rule ip kube-proxy endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 ip saddr 10.180.0.4 jump mark-for-masquerade"));
    assert!(out.contains("add rule ip kube-proxy endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 meta l4proto tcp dnat to 10.180.0.4:80"));
    // externalTrafficPolicy Local: the local chain has only the local endpoint; LB IP and node port go external.
    assert!(out.contains(", 1.2.3.5 . tcp . 80 : goto external-HVFWP5L3-ns5/svc5/tcp/p80"));
    assert!(out.contains("comment \"short-circuit pod traffic\""));
    // Terminating fallback: only the serving terminating endpoint.
    assert!(out.contains("endpoints-udp-165 { 0-65535 : 10.180.0.7 . 5353 }"));
    // The maps are declared with the skeleton, and their elements come after every rule (a new rule looking a map
    // up reads every element of it).
    let last_rule = out.rfind("add rule ").unwrap();
    assert!(
        out.find("add map ip kube-proxy endpoints-").unwrap()
            < out.find("add chain ip kube-proxy service-ULMVA6XW").unwrap()
    );
    assert!(out.find("add element ip kube-proxy endpoints-").unwrap() > last_rule, "{out}");
    assert!(!out.contains("10.180.0.8"));
}

#[test]
fn iptables_overall_rules() {
    let (p, exec) = new_provider(Mode::Ipt);
    overall(&p);
    assert_eq!(p.sync_proxy_rules(), SyncOutcome::Full);
    let calls = exec.take();
    // The jump rules are checked (and would be inserted) on a full sync.
    assert!(
        calls.iter().any(|c| c.cmd
            == "iptables -w -t nat -C PREROUTING -m comment --comment kubernetes service portals -j KUBE-SERVICES"),
        "{calls:?}"
    );
    let out = calls
        .into_iter()
        .filter(|c| c.cmd.starts_with("iptables-restore"))
        .filter_map(|c| c.stdin)
        .next_back()
        .unwrap();
    golden("iptables-overall.rules", &out);
    for line in [
        "-A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O",
        "-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ",
        "-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment \"ns1/svc1:p80 -> 10.180.0.1:80\" -j KUBE-SEP-SXIVWICOYRO3J4NJ",
        "-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ",
        "-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80",
        "-A KUBE-SERVICES -m comment --comment \"ns3/svc3:p80 has no endpoints\" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j REJECT",
        "-A KUBE-NODEPORTS -m comment --comment \"ns5/svc5:p80 health check node port\" -m tcp -p tcp --dport 30000 -j ACCEPT",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x004000/0x004000 -j RETURN",
        "-A KUBE-MARK-MASQ -j MARK --or-mark 0x004000",
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS",
    ] {
        assert!(out.contains(&format!("{line}\n")), "missing {line}\n{out}");
    }
    assert!(out.contains("-m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-"));
    assert!(out.contains("-m recent --name KUBE-SEP-") && out.contains("--rcheck --seconds 10800 --reap"));
    assert!(out.contains("--to-destination 10.180.0.7:5353") && !out.contains("10.180.0.8"));
    assert!(out.ends_with("COMMIT\n"));
}

/// A partial sync after one endpoint change rewrites that Service's chains only.
fn partial_sync(mode: Mode) -> String {
    let (p, exec) = new_provider(mode);
    overall(&p);
    assert_eq!(p.sync_proxy_rules(), SyncOutcome::Full);
    exec.take();
    // No change: nothing (nftables) or only the top-level chains (iptables).
    assert_eq!(p.sync_proxy_rules(), SyncOutcome::Partial);
    let idle = written(&exec);
    if mode == Mode::Nft {
        assert_eq!(idle, "", "an idle nftables sync writes nothing");
    } else {
        assert!(!idle.contains("-A KUBE-SEP-") && !idle.contains(":KUBE-SVC-"), "{idle}");
    }
    p.on_endpoint_slice(
        &slice("ns2", "svc2", "svc2-a", "p80", 80, "TCP", vec![ep("10.180.0.2", Some(HOST), true, true, false)]),
        false,
    );
    assert_eq!(p.sync_proxy_rules(), SyncOutcome::Partial);
    written(&exec)
}

#[test]
fn nftables_partial_sync_touches_only_changed_services() {
    let out = partial_sync(Mode::Nft);
    golden("nftables-partial.nft", &out);
    assert!(out.contains("ns2/svc2"), "{out}");
    for other in ["ns1/svc1", "ns3/svc3", "ns4/svc4", "ns5/svc5", "ns6/svc6", "service-ips", "add table"] {
        assert!(!out.contains(other), "{other} rewritten:\n{out}");
    }
    // An endpoint change is map elements only: no chain flushed, no rule written (the kernel re-validates the whole
    // table for a transaction that adds a jump or a DNAT).
    assert!(out.contains("delete element ip kube-proxy endpoints-tcp-206 { 0-32767, 32768-65535 }\n"), "{out}");
    assert!(out.contains("add element ip kube-proxy endpoints-tcp-206 { 0-65535 : 10.180.0.2 . 80 }\n"), "{out}");
    assert!(out.contains("delete element ip kube-proxy endpoint-hairpin { 10.180.0.3 . 10.180.0.3 }"), "{out}");
    assert!(!out.contains("flush chain") && !out.contains("add rule"), "{out}");
}

#[test]
fn iptables_partial_sync_touches_only_changed_services() {
    let out = partial_sync(Mode::Ipt);
    golden("iptables-partial.rules", &out);
    let svc2 = kube_proxy::iptables::service_chain(
        "KUBE-SVC-",
        &kube_proxy::serviceport::ServicePortName::new("ns2", "svc2", "p80", kube_proxy::serviceport::Protocol::Tcp),
    );
    assert!(out.contains(&format!(":{svc2} - [0:0]")), "{out}");
    assert!(!out.contains(":KUBE-SVC-XPGD46QRK7WJZT7O"), "{out}");
    assert!(
        out.contains("-A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 cluster IP\""),
        "top-level chains are rewritten whole"
    );
}

#[test]
fn endpoints_appear_and_disappear() {
    for mode in [Mode::Nft, Mode::Ipt] {
        let (p, exec) = new_provider(mode);
        p.on_service(
            None,
            Some(&svc("ns1", "svc1", json!({"clusterIP": "172.30.0.41", "ports": [{"name": "p80", "port": 80}]}))),
        );
        p.sync_proxy_rules();
        let out = written(&exec);
        assert!(out.contains("172.30.0.41") && (out.contains("reject-chain") || out.contains("-j REJECT")), "{out}");
        p.on_endpoint_slice(
            &slice("ns1", "svc1", "s", "p80", 80, "TCP", vec![ep("10.180.0.1", None, true, true, false)]),
            false,
        );
        p.sync_proxy_rules();
        let out = written(&exec);
        if mode == Mode::Nft {
            assert!(
                out.contains("delete element ip kube-proxy no-endpoint-services { 172.30.0.41 . tcp . 80 }"),
                "{out}"
            );
            assert!(
                out.contains("add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-"),
                "{out}"
            );
        } else {
            assert!(!out.contains("-j REJECT") && out.contains("-j DNAT --to-destination 10.180.0.1:80"), "{out}");
        }
        // Not ready and not serving: no endpoint at all.
        p.on_endpoint_slice(
            &slice("ns1", "svc1", "s", "p80", 80, "TCP", vec![ep("10.180.0.1", None, false, false, false)]),
            false,
        );
        p.sync_proxy_rules();
        let out = written(&exec);
        assert!(out.contains("reject-chain") || out.contains("-j REJECT"), "{out}");
    }
}

/// A partial sync after a Service is deleted removes exactly its elements and chains, and keeps an element
/// another Service port still wants.
#[test]
fn nftables_partial_sync_removes_a_deleted_service() {
    let (p, exec) = new_provider(Mode::Nft);
    let one = svc("ns1", "svc1", json!({"clusterIP": "172.30.0.41", "ports": [{"name": "p80", "port": 80}]}));
    let two = svc(
        "ns1",
        "svc2",
        json!({"clusterIP": "172.30.0.42", "externalIPs": ["192.0.2.9"], "ports": [{"name": "p80", "port": 80}]}),
    );
    let three = svc(
        "ns1",
        "svc3",
        json!({"clusterIP": "172.30.0.43", "externalIPs": ["192.0.2.9"], "ports": [{"name": "p80", "port": 80}]}),
    );
    for s in [&one, &two, &three] {
        p.on_service(None, Some(s));
    }
    for name in ["svc1", "svc2", "svc3"] {
        p.on_endpoint_slice(
            &slice(
                "ns1",
                name,
                &format!("{name}-a"),
                "p80",
                80,
                "TCP",
                vec![ep("10.180.0.1", None, true, true, false)],
            ),
            false,
        );
    }
    assert_eq!(p.sync_proxy_rules(), SyncOutcome::Full);
    exec.take();
    p.on_service(Some(&two), None);
    assert_eq!(p.sync_proxy_rules(), SyncOutcome::Partial);
    let out = written(&exec);
    assert!(out.contains("delete element ip kube-proxy service-ips { 172.30.0.42 . tcp . 80 }"), "{out}");
    assert!(out.contains("delete element ip kube-proxy cluster-ips { 172.30.0.42 }"), "{out}");
    assert!(out.contains("flush chain ip kube-proxy service-") && out.contains("ns1/svc2/tcp/p80"), "{out}");
    // Its block of the endpoints map is emptied (and freed for a later sync).
    assert!(out.contains("delete element ip kube-proxy endpoints-tcp-73 { 0-65535 }\n"), "{out}");
    // svc3 still wants the shared external IP's element (it won the key), and nothing of svc1 or svc3 is written.
    assert!(!out.contains("192.0.2.9"), "{out}");
    assert!(!out.contains("svc1") && !out.contains("svc3") && !out.contains("172.30.0.41"), "{out}");
    // A second later the flushed chains are deleted.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(p.sync_proxy_rules(), SyncOutcome::Partial);
    let out = written(&exec);
    assert!(out.contains("delete chain ip kube-proxy service-") && out.contains("ns1/svc2/tcp/p80"), "{out}");
    assert!(!out.contains("svc1") && !out.contains("svc3"), "{out}");
}

#[test]
fn internal_traffic_policy_local_drops_without_local_endpoints() {
    let (p, exec) = new_provider(Mode::Nft);
    p.on_service(
        None,
        Some(&svc(
            "ns1",
            "svc1",
            json!({"clusterIP": "172.30.0.41", "internalTrafficPolicy": "Local",
        "ports": [{"name": "p80", "port": 80}]}),
        )),
    );
    p.on_endpoint_slice(
        &slice("ns1", "svc1", "s", "p80", 80, "TCP", vec![ep("10.180.0.1", Some("other"), true, true, false)]),
        false,
    );
    p.sync_proxy_rules();
    let out = written(&exec);
    assert!(
        out.contains(
            "add element ip kube-proxy no-endpoint-services { 172.30.0.41 . tcp . 80 comment \"ns1/svc1:p80\" : drop }"
        ),
        "{out}"
    );
    p.on_endpoint_slice(
        &slice("ns1", "svc1", "s", "p80", 80, "TCP", vec![ep("10.180.0.1", Some(HOST), true, true, false)]),
        false,
    );
    p.sync_proxy_rules();
    let out = written(&exec);
    assert!(out.contains("goto local-"), "{out}");
}

#[test]
fn udp_endpoint_removal_flushes_conntrack() {
    let (p, exec) = new_provider(Mode::Nft);
    p.on_service(
        None,
        Some(&svc(
            "ns1",
            "dns",
            json!({"clusterIP": "172.30.0.10", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}),
        )),
    );
    p.on_endpoint_slice(
        &slice(
            "ns1",
            "dns",
            "s",
            "dns",
            53,
            "UDP",
            vec![ep("10.180.0.1", None, true, true, false), ep("10.180.0.2", None, true, true, false)],
        ),
        false,
    );
    p.sync_proxy_rules();
    let cmds: Vec<String> = exec.take().into_iter().map(|c| c.cmd).collect();
    // First endpoints of a UDP Service: flows cached while it rejected are deleted.
    assert!(cmds.contains(&"conntrack -D --orig-dst 172.30.0.10 -p udp".to_string()), "{cmds:?}");
    p.on_endpoint_slice(
        &slice("ns1", "dns", "s", "dns", 53, "UDP", vec![ep("10.180.0.1", None, true, true, false)]),
        false,
    );
    p.sync_proxy_rules();
    let cmds: Vec<String> = exec.take().into_iter().map(|c| c.cmd).collect();
    assert!(cmds.contains(&"conntrack -D --orig-dst 172.30.0.10 --dst-nat 10.180.0.2 -p udp".to_string()), "{cmds:?}");
}

#[test]
fn cleanup_removes_every_mode() {
    let exec = FakeExec::with_responder(|prog, args| {
        if prog.ends_with("tables-save") && args.contains(&"nat") {
            return Output { stdout: "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]\n:OTHER - [0:0]\nCOMMIT\n".into(), ..Default::default() };
        }
        Output::default()
    });
    assert!(kube_proxy::cleanup(&exec));
    let calls = exec.take();
    let nft: Vec<_> = calls.iter().filter(|c| c.cmd == "nft -f -").filter_map(|c| c.stdin.clone()).collect();
    assert_eq!(
        nft,
        [
            "add table ip kube-proxy\ndelete table ip kube-proxy\n",
            "add table ip6 kube-proxy\ndelete table ip6 kube-proxy\n"
        ]
    );
    let restore: Vec<_> =
        calls.iter().filter(|c| c.cmd.starts_with("iptables-restore")).filter_map(|c| c.stdin.clone()).collect();
    assert!(
        restore[0].contains("-X KUBE-SVC-XPGD46QRK7WJZT7O") && restore[0].contains("-X KUBE-SERVICES"),
        "{restore:?}"
    );
    assert!(!restore[0].contains("OTHER"));
    assert!(calls.iter().any(|c| c.cmd.starts_with("iptables -w -t nat -D POSTROUTING")));
}

/// The proxier keeps only the endpoints it wrote and rebuilds chain and affinity set names from them: what a
/// partial sync deletes must be exactly the removed endpoint's chain and set, and a deleted Service's all.
#[test]
fn nftables_removed_endpoints_and_services_leave_no_chain_or_affinity_set() {
    let (p, exec) = new_provider(Mode::Nft);
    let spec = json!({"clusterIP": "172.30.0.44", "sessionAffinity": "ClientIP",
        "ports": [{"name": "p80", "port": 80, "protocol": "TCP"}]});
    p.on_service(None, Some(&svc("ns4", "svc4", spec.clone())));
    let eps = |ips: &[&str]| ips.iter().map(|ip| ep(ip, None, true, true, false)).collect::<Vec<_>>();
    let both = slice("ns4", "svc4", "svc4-a", "p80", 80, "TCP", eps(&["10.180.0.4", "10.180.0.5"]));
    p.on_endpoint_slice(&both, false);
    assert_eq!(p.sync_proxy_rules(), SyncOutcome::Full);
    let out = written(&exec);
    for set in ["ns4/svc4/tcp/p80__10.180.0.4/80", "ns4/svc4/tcp/p80__10.180.0.5/80"] {
        assert!(out.lines().any(|l| l.starts_with("add set ip kube-proxy affinity-") && l.contains(set)), "{out}");
    }

    p.on_endpoint_slice(&slice("ns4", "svc4", "svc4-a", "p80", 80, "TCP", eps(&["10.180.0.4"])), false);
    assert_eq!(p.sync_proxy_rules(), SyncOutcome::Partial);
    let out = written(&exec);
    let deleted: Vec<&str> = out.lines().filter(|l| l.starts_with("delete set")).collect();
    assert_eq!(deleted, ["delete set ip kube-proxy affinity-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80"], "{out}");
    assert!(out.contains("flush chain ip kube-proxy endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80\n"), "{out}");
    assert!(out.contains("add chain ip kube-proxy endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80\n"), "{out}");

    p.on_service(Some(&svc("ns4", "svc4", spec.clone())), None);
    assert_eq!(p.sync_proxy_rules(), SyncOutcome::Partial);
    let out = written(&exec);
    assert!(
        out.lines().any(|l| l.starts_with("delete set ip kube-proxy affinity-") && l.ends_with("__10.180.0.4/80")),
        "{out}"
    );
    for chain in ["endpoint-", "service-"] {
        assert!(out.lines().any(|l| l.starts_with(&format!("flush chain ip kube-proxy {chain}"))), "{chain}: {out}");
    }
    assert!(out.contains("delete element ip kube-proxy service-ips { 172.30.0.44 . tcp . 80 }"), "{out}");
}

/// An endpoint IP of two Services stays in the hairpin set until neither has it; a Service with session affinity
/// masquerades hairpin traffic in its endpoint chains and adds nothing to the set.
#[test]
fn nftables_hairpin_element_lives_while_a_service_has_the_endpoint() {
    let (p, exec) = new_provider(Mode::Nft);
    let spec = |ip: &str| json!({"clusterIP": ip, "ports": [{"name": "p80", "port": 80, "protocol": "TCP"}]});
    let one = |svc: &str, ip: &str| {
        slice("ns", svc, &format!("{svc}-1"), "p80", 80, "TCP", vec![ep(ip, None, true, true, false)])
    };
    for (name, ip) in [("a", "172.30.0.51"), ("b", "172.30.0.52")] {
        p.on_service(None, Some(&svc("ns", name, spec(ip))));
        p.on_endpoint_slice(&one(name, "10.180.1.1"), false);
    }
    let mut sticky = spec("172.30.0.53");
    sticky["sessionAffinity"] = json!("ClientIP");
    p.on_service(None, Some(&svc("ns", "sticky", sticky)));
    p.on_endpoint_slice(&one("sticky", "10.180.1.9"), false);
    assert_eq!(p.sync_proxy_rules(), SyncOutcome::Full);
    let out = written(&exec);
    let hairpin = |ip: &str| format!("element ip kube-proxy endpoint-hairpin {{ {ip} . {ip} }}");
    assert_eq!(out.matches(&format!("add {}", hairpin("10.180.1.1"))).count(), 1, "{out}");
    assert!(!out.contains(&hairpin("10.180.1.9")), "{out}");

    // a's endpoint moves: b still has 10.180.1.1.
    p.on_endpoint_slice(&one("a", "10.180.1.2"), false);
    assert_eq!(p.sync_proxy_rules(), SyncOutcome::Partial);
    let out = written(&exec);
    assert!(out.contains(&format!("add {}", hairpin("10.180.1.2"))), "{out}");
    assert!(!out.contains(&format!("delete {}", hairpin("10.180.1.1"))), "{out}");

    // b goes away: no Service has 10.180.1.1 any more.
    p.on_service(Some(&svc("ns", "b", spec("172.30.0.52"))), None);
    assert_eq!(p.sync_proxy_rules(), SyncOutcome::Partial);
    let out = written(&exec);
    assert!(out.contains(&format!("delete {}", hairpin("10.180.1.1"))), "{out}");
    assert!(!out.contains(&hairpin("10.180.1.2")), "{out}");
}
