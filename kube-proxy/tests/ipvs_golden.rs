//! The IPVS proxier against the recording fake (as upstream's `pkg/proxy/ipvs/proxier_test.go`): the golden state
//! one sync writes for the overall cluster of `golden.rs` (virtual and real servers, `kube-ipvs0` addresses, ip
//! set entries, iptables rules), then per scenario: schedulers and persistence, NodePort on the node addresses,
//! no-endpoint Services, local traffic policies, terminating fallback, graceful removal of real servers (weight
//! 0, then deletion once the kernel reports no connection), stale virtual servers and addresses, excludeCIDRs,
//! IPv6 names, `--cleanup`, and refusing to start without IPVS. `UPDATE_GOLDEN=1` rewrites the golden file.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube_proxy::exec::{Call, Exec, FakeExec, Output};
use kube_proxy::ipvs::{IpvsProxier, IpvsSettings};
use kube_proxy::localdetector::LocalDetector;
use kube_proxy::metrics::ProxyMetrics;
use kube_proxy::nodeportaddresses::NodePortAddresses;
use kube_proxy::provider::{Provider, SyncOutcome};
use kube_proxy::serviceport::IpFamily;
use serde_json::{Value, json};

const HOST: &str = "test-node";

/// What the fake kernel reports: `ipvsadm -Ln` and `ip -j addr show`.
#[derive(Clone, Default)]
struct Kernel {
    ipvs: Arc<Mutex<String>>,
    addrs: Arc<Mutex<String>>,
}

impl Kernel {
    fn set_ipvs(&self, s: &str) {
        *self.ipvs.lock().unwrap() = s.to_string();
    }

    fn set_bound(&self, ips: &[&str]) {
        let bound: Vec<Value> = ips.iter().map(|ip| json!({"local": ip})).collect();
        *self.addrs.lock().unwrap() = json!([
            {"ifname": "lo", "addr_info": [{"local": "127.0.0.1"}]},
            {"ifname": "eth0", "addr_info": [{"local": "192.168.0.2"}]},
            {"ifname": "kube-ipvs0", "addr_info": bound},
        ])
        .to_string();
    }
}

fn fake(kernel: &Kernel) -> FakeExec {
    let k = kernel.clone();
    k.set_bound(&[]);
    FakeExec::with_responder(move |prog, args| {
        let stdout = match (prog, args) {
            ("ipvsadm", ["-Ln"]) => k.ipvs.lock().unwrap().clone(),
            ("ip", ["-j", "addr", "show"]) => k.addrs.lock().unwrap().clone(),
            ("ipset", ["version"]) => "ipset v7.17, protocol version: 7\n".into(),
            _ => String::new(),
        };
        Output { stdout, ..Default::default() }
    })
}

fn new_provider(settings: IpvsSettings, family: IpFamily) -> (Provider, FakeExec, Kernel) {
    let kernel = Kernel::default();
    let exec = fake(&kernel);
    let shared: Arc<dyn Exec> = Arc::new(exec.clone());
    let (detector, node_ip) = match family {
        IpFamily::V4 => (LocalDetector::Cidr("10.0.0.0/8".parse().unwrap()), "192.168.0.2".parse().unwrap()),
        IpFamily::V6 => (LocalDetector::Cidr("fd10::/64".parse().unwrap()), "2001:db8::2".parse().unwrap()),
    };
    let npa = NodePortAddresses::new(family, &[], &[]);
    let proxier = IpvsProxier::new(family, shared.clone(), false, 14, detector, npa, Some(node_ip), settings);
    let p = Provider::new(
        Box::new(proxier),
        HOST,
        shared,
        Duration::from_secs(3600),
        Arc::new(ProxyMetrics::default()),
        None,
        None,
    );
    p.on_services_synced();
    p.on_endpoint_slices_synced();
    exec.take();
    (p, exec, kernel)
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
           "addressType": if eps.iter().any(|e| e["addresses"][0].as_str().unwrap().contains(':')) { "IPv6" } else { "IPv4" },
           "endpoints": eps,
           "ports": [{"name": port_name, "port": port, "protocol": proto}]})
}

/// The stdin given to `program` by the last sync (empty when it did not run).
fn stdin_of(calls: &[Call], program: &str) -> String {
    calls.iter().filter(|c| c.cmd.starts_with(program)).filter_map(|c| c.stdin.clone()).next_back().unwrap_or_default()
}

fn cmds(calls: &[Call]) -> Vec<String> {
    calls.iter().map(|c| c.cmd.clone()).collect()
}

/// Everything one sync wrote, in order of the tools, for the golden file.
fn written(calls: &[Call]) -> String {
    let mut out = String::new();
    for (title, prog) in [
        ("ipvsadm-restore", "ipvsadm-restore"),
        ("ip -force -batch -", "ip -force -batch"),
        ("ipset restore -exist", "ipset restore"),
        ("iptables-restore", "iptables-restore"),
    ] {
        for c in calls.iter().filter(|c| c.cmd.starts_with(prog)) {
            out.push_str(&format!("### {title}\n{}", c.stdin.clone().unwrap_or_default()));
        }
    }
    out
}

fn golden(name: &str, got: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(got, want, "{name} differs from the golden file");
}

/// The overall cluster of `golden.rs`: ClusterIP, NodePort with a local and a remote endpoint, no endpoints,
/// ClientIP affinity, LoadBalancer with externalTrafficPolicy Local, and a UDP Service whose endpoints terminate.
fn overall(p: &Provider) {
    let tcp80 = json!([{"name": "p80", "port": 80, "protocol": "TCP"}]);
    p.on_service(None, Some(&svc("ns1", "svc1", json!({"clusterIP": "172.30.0.41", "ports": tcp80}))));
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
    p.on_service(None, Some(&svc("ns3", "svc3", json!({"clusterIP": "172.30.0.43", "ports": tcp80}))));
    p.on_service(
        None,
        Some(&svc(
            "ns4",
            "svc4",
            json!({"clusterIP": "172.30.0.44", "sessionAffinity": "ClientIP",
                   "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}}, "ports": tcp80}),
        )),
    );
    p.on_endpoint_slice(
        &slice("ns4", "svc4", "svc4-a", "p80", 80, "TCP", vec![ep("10.180.0.4", None, true, true, false)]),
        false,
    );
    p.on_service(None, Some(&json!({"metadata": {"namespace": "ns5", "name": "svc5"},
        "spec": {"type": "LoadBalancer", "clusterIP": "172.30.0.45", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30000,
                 "externalIPs": ["192.168.99.11"], "loadBalancerSourceRanges": ["203.0.113.0/25"],
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

fn assert_has(text: &str, lines: &[&str]) {
    for l in lines {
        assert!(text.contains(&format!("{l}\n")), "missing {l:?} in:\n{text}");
    }
}

#[test]
fn overall_state() {
    let (p, exec, _) = new_provider(IpvsSettings::default(), IpFamily::V4);
    overall(&p);
    assert_eq!(p.sync_proxy_rules(), SyncOutcome::Full);
    let calls = exec.take();
    golden("ipvs-overall.txt", &written(&calls));
    let c = cmds(&calls);
    // Upstream's sysctls, the dummy device, the jumps from the built-in chains.
    assert!(c.contains(&"sysctl -q -w net.ipv4.vs.conntrack=1 net.ipv4.vs.expire_nodest_conn=1 net.ipv4.vs.expire_quiescent_template=1 net.ipv4.ip_forward=1".to_string()), "{c:?}");
    assert!(c.contains(&"ip link add kube-ipvs0 type dummy".to_string()));
    assert!(
        c.contains(
            &"iptables -w -t filter -C INPUT -m comment --comment kubernetes ipvs access filter -j KUBE-IPVS-FILTER"
                .to_string()
        )
    );
    assert!(
        c.contains(
            &"iptables -w -t nat -C PREROUTING -m comment --comment kubernetes service portals -j KUBE-SERVICES"
                .to_string()
        )
    );

    let ipvs = stdin_of(&calls, "ipvsadm-restore");
    assert_has(
        &ipvs,
        &[
            // ClusterIP: a virtual server with the default scheduler, one real server per ready endpoint.
            "-A -t 172.30.0.41:80 -s rr",
            "-a -t 172.30.0.41:80 -r 10.180.0.1:80 -m -w 1",
            // NodePort: virtual servers on the node's address (not loopback), both endpoints.
            "-A -t 192.168.0.2:3001 -s rr",
            "-a -t 192.168.0.2:3001 -r 10.180.0.2:80 -m -w 1",
            "-a -t 192.168.0.2:3001 -r 10.180.0.3:80 -m -w 1",
            // No endpoints: the virtual server exists without real servers (IPVS refuses with ICMP).
            "-A -t 172.30.0.43:80 -s rr",
            // ClientIP affinity: persistence with the Service's timeout.
            "-A -t 172.30.0.44:80 -s rr -p 10800",
            // externalTrafficPolicy Local: ClusterIP to every endpoint, external IP, LB IP and node port local only.
            "-a -t 172.30.0.45:80 -r 10.180.0.6:80 -m -w 1",
            "-a -t 1.2.3.5:80 -r 10.180.0.5:80 -m -w 1",
            "-a -t 192.168.99.11:80 -r 10.180.0.5:80 -m -w 1",
            "-a -t 192.168.0.2:3002 -r 10.180.0.5:80 -m -w 1",
            // Terminating fallback: only the serving terminating endpoint.
            "-A -u 172.30.0.46:53 -s rr",
            "-a -u 172.30.0.46:53 -r 10.180.0.7:5353 -m -w 1",
        ],
    );
    assert!(!ipvs.contains("-a -t 172.30.0.43:80"), "{ipvs}");
    assert!(!ipvs.contains("-a -t 1.2.3.5:80 -r 10.180.0.6:80"), "{ipvs}");
    assert!(!ipvs.contains("10.180.0.8"));
    assert!(!ipvs.contains("127.0.0.1"), "no node port on loopback");

    let ip = stdin_of(&calls, "ip -force -batch");
    assert_has(&ip, &["addr add 172.30.0.41/32 dev kube-ipvs0", "addr add 1.2.3.5/32 dev kube-ipvs0"]);
    assert!(!ip.contains("192.168.0.2"), "node addresses are never bound: {ip}");

    let sets = stdin_of(&calls, "ipset restore");
    assert_has(
        &sets,
        &[
            "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536",
            "create KUBE-NODE-PORT-TCP bitmap:port range 0-65535",
            "add KUBE-CLUSTER-IP 172.30.0.41,tcp:80",
            "add KUBE-CLUSTER-IP 172.30.0.46,udp:53",
            "add KUBE-LOOP-BACK 10.180.0.2,tcp:80,10.180.0.2",
            "add KUBE-NODE-PORT-TCP 3001",
            "add KUBE-NODE-PORT-LOCAL-TCP 3002",
            "add KUBE-LOAD-BALANCER 1.2.3.5,tcp:80",
            "add KUBE-LOAD-BALANCER-LOCAL 1.2.3.5,tcp:80",
            "add KUBE-LOAD-BALANCER-FW 1.2.3.5,tcp:80",
            "add KUBE-LOAD-BALANCER-SOURCE-CIDR 1.2.3.5,tcp:80,203.0.113.0/25",
            "add KUBE-EXTERNAL-IP-LOCAL 192.168.99.11,tcp:80",
            "add KUBE-HEALTH-CHECK-NODE-PORT 30000",
            "add KUBE-IPVS-IPS 172.30.0.41",
        ],
    );
    assert!(!sets.contains("KUBE-LOOP-BACK 10.180.0.3"), "only local endpoints hairpin");

    let rules = stdin_of(&calls, "iptables-restore");
    assert_has(
        &rules,
        &[
            ":KUBE-SERVICES - [0:0]",
            ":KUBE-IPVS-FILTER - [0:0]",
            "-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN",
            "-A KUBE-POSTROUTING -m comment --comment \"Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose\" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE",
            "-A KUBE-SERVICES -m comment --comment \"Kubernetes service cluster ip + port for masquerade purpose\" -m set --match-set KUBE-CLUSTER-IP dst,dst ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ",
            "-A KUBE-NODE-PORT -p tcp -m comment --comment \"Kubernetes nodeport TCP port with externalTrafficPolicy=local\" -m set --match-set KUBE-NODE-PORT-LOCAL-TCP dst -j RETURN",
            "-A KUBE-NODE-PORT -p tcp -m comment --comment \"Kubernetes nodeport TCP port for masquerade purpose\" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ",
            "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT",
            "-A KUBE-SERVICES -m comment --comment \"Kubernetes service lb portal\" -m set --match-set KUBE-LOAD-BALANCER dst,dst -j KUBE-LOAD-BALANCER",
            "-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ",
            "-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT",
            "-A KUBE-PROXY-FIREWALL -m comment --comment \"Kubernetes service load balancer ip + port for load balancer with sourceRange\" -m set --match-set KUBE-LOAD-BALANCER-FW dst,dst -j KUBE-SOURCE-RANGES-FIREWALL",
            "-A KUBE-SOURCE-RANGES-FIREWALL -j DROP",
            // The node (192.168.0.2) is outside the source ranges: it may not reach the LB IP either.
            "-A KUBE-IPVS-OUT-FILTER -s 1.2.3.5 -m ipvs --vaddr 1.2.3.5 --vproto tcp --vport 80 -j DROP",
            "-A KUBE-NODE-PORT -m comment --comment \"Kubernetes health check node port\" -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j ACCEPT",
            "-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT",
            "-A KUBE-POSTROUTING -m mark ! --mark 0x004000/0x004000 -j RETURN",
            "-A KUBE-POSTROUTING -j MARK --xor-mark 0x004000",
            "-A KUBE-MARK-MASQ -j MARK --or-mark 0x004000",
            "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x004000/0x004000 -j ACCEPT",
        ],
    );
    // No per-Service rule: the sets carry the Services.
    assert!(!rules.contains("172.30.0.41"), "{rules}");
    assert!(rules.starts_with("*nat\n") && rules.ends_with("COMMIT\n"));
}

#[test]
fn schedulers_and_affinity() {
    for (sched, want) in
        [("lc", "-A -t 172.30.0.44:80 -s lc -p 60"), ("mh", "-A -t 172.30.0.44:80 -s mh -p 60 -b mh-port")]
    {
        let settings = IpvsSettings { scheduler: sched.into(), ..Default::default() };
        let (p, exec, _) = new_provider(settings, IpFamily::V4);
        p.on_service(
            None,
            Some(&svc(
                "ns4",
                "svc4",
                json!({"clusterIP": "172.30.0.44", "sessionAffinity": "ClientIP",
                       "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                       "ports": [{"name": "p80", "port": 80}]}),
            )),
        );
        p.sync_proxy_rules();
        assert_has(&stdin_of(&exec.take(), "ipvsadm-restore"), &[want]);
    }
    // An empty scheduler is rr.
    let (p, exec, kernel) = new_provider(IpvsSettings { scheduler: String::new(), ..Default::default() }, IpFamily::V4);
    p.on_service(
        None,
        Some(&svc("ns1", "svc1", json!({"clusterIP": "172.30.0.41", "ports": [{"name": "p80", "port": 80}]}))),
    );
    p.sync_proxy_rules();
    assert_has(&stdin_of(&exec.take(), "ipvsadm-restore"), &["-A -t 172.30.0.41:80 -s rr"]);
    // Affinity added later: the existing virtual server is edited, not recreated.
    kernel.set_ipvs("TCP  172.30.0.41:80 rr\n");
    kernel.set_bound(&["172.30.0.41"]);
    p.on_service(
        Some(&svc("ns1", "svc1", json!({"clusterIP": "172.30.0.41", "ports": [{"name": "p80", "port": 80}]}))),
        Some(&svc(
            "ns1",
            "svc1",
            json!({"clusterIP": "172.30.0.41", "sessionAffinity": "ClientIP", "ports": [{"name": "p80", "port": 80}]}),
        )),
    );
    p.sync_proxy_rules();
    let calls = exec.take();
    assert_eq!(stdin_of(&calls, "ipvsadm-restore"), "-E -t 172.30.0.41:80 -s rr -p 10800\n");
    assert!(stdin_of(&calls, "ip -force -batch").is_empty(), "already bound");
}

#[test]
fn graceful_removal_of_real_servers() {
    let (p, exec, kernel) = new_provider(IpvsSettings::default(), IpFamily::V4);
    p.on_service(
        None,
        Some(&svc("ns1", "svc1", json!({"clusterIP": "172.30.0.41", "ports": [{"name": "p80", "port": 80}]}))),
    );
    p.on_service(
        None,
        Some(&svc(
            "ns1",
            "dns",
            json!({"clusterIP": "172.30.0.10", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}),
        )),
    );
    let both = vec![ep("10.180.0.1", None, true, true, false), ep("10.180.0.2", None, true, true, false)];
    p.on_endpoint_slice(&slice("ns1", "svc1", "s", "p80", 80, "TCP", both.clone()), false);
    p.on_endpoint_slice(&slice("ns1", "dns", "d", "dns", 53, "UDP", both), false);
    p.sync_proxy_rules();
    exec.take();
    // The kernel has both; 10.180.0.2 still has connections.
    kernel.set_ipvs(
        "TCP  172.30.0.41:80 rr
  -> 10.180.0.1:80                Masq    1      0          0
  -> 10.180.0.2:80                Masq    1      1          4
UDP  172.30.0.10:53 rr
  -> 10.180.0.1:53                Masq    1      0          0
  -> 10.180.0.2:53                Masq    1      0          9
",
    );
    kernel.set_bound(&["172.30.0.41", "172.30.0.10"]);
    let one = vec![ep("10.180.0.1", None, true, true, false)];
    p.on_endpoint_slice(&slice("ns1", "svc1", "s", "p80", 80, "TCP", one.clone()), false);
    p.on_endpoint_slice(&slice("ns1", "dns", "d", "dns", 53, "UDP", one), false);
    p.sync_proxy_rules();
    let calls = exec.take();
    // TCP: weight 0 until its connections end; UDP: deleted at once.
    assert_eq!(
        stdin_of(&calls, "ipvsadm-restore"),
        "-e -t 172.30.0.41:80 -r 10.180.0.2:80 -m -w 0\n-d -u 172.30.0.10:53 -r 10.180.0.2:53\n"
    );
    // UDP flows to the removed endpoint are flushed (shared with every mode).
    assert!(cmds(&calls).contains(&"conntrack -D --orig-dst 172.30.0.10 --dst-nat 10.180.0.2 -p udp".to_string()));
    // Still draining: nothing to do.
    kernel.set_ipvs(
        "TCP  172.30.0.41:80 rr
  -> 10.180.0.1:80                Masq    1      0          0
  -> 10.180.0.2:80                Masq    0      0          2
UDP  172.30.0.10:53 rr
  -> 10.180.0.1:53                Masq    1      0          0
",
    );
    p.on_service(
        None,
        Some(&svc("ns9", "other", json!({"clusterIP": "172.30.0.99", "ports": [{"name": "p", "port": 1}]}))),
    );
    p.sync_proxy_rules();
    assert_eq!(stdin_of(&exec.take(), "ipvsadm-restore"), "-A -t 172.30.0.99:1 -s rr\n");
    // Drained: deleted on the next (periodic) sync.
    kernel.set_ipvs(
        "TCP  172.30.0.41:80 rr
  -> 10.180.0.1:80                Masq    1      0          0
  -> 10.180.0.2:80                Masq    0      0          0
UDP  172.30.0.10:53 rr
  -> 10.180.0.1:53                Masq    1      0          0
TCP  172.30.0.99:1 rr
",
    );
    p.sync_proxy_rules();
    assert_eq!(stdin_of(&exec.take(), "ipvsadm-restore"), "-d -t 172.30.0.41:80 -r 10.180.0.2:80\n");
    // The endpoint coming back while draining gets its weight back.
    kernel.set_ipvs(
        "TCP  172.30.0.41:80 rr
  -> 10.180.0.1:80                Masq    1      0          0
  -> 10.180.0.2:80                Masq    0      0          3
UDP  172.30.0.10:53 rr
  -> 10.180.0.1:53                Masq    1      0          0
TCP  172.30.0.99:1 rr
",
    );
    let both = vec![ep("10.180.0.1", None, true, true, false), ep("10.180.0.2", None, true, true, false)];
    p.on_endpoint_slice(&slice("ns1", "svc1", "s", "p80", 80, "TCP", both), false);
    p.sync_proxy_rules();
    assert_eq!(stdin_of(&exec.take(), "ipvsadm-restore"), "-e -t 172.30.0.41:80 -r 10.180.0.2:80 -m -w 1\n");
}

#[test]
fn removed_services_leave_ipvs_the_interface_and_the_sets() {
    let settings = IpvsSettings { exclude_cidrs: vec!["10.250.0.0/16".parse().unwrap()], ..Default::default() };
    let (p, exec, kernel) = new_provider(settings, IpFamily::V4);
    let s = svc("ns1", "svc1", json!({"clusterIP": "172.30.0.41", "ports": [{"name": "p80", "port": 80}]}));
    p.on_service(None, Some(&s));
    p.sync_proxy_rules();
    let sets = stdin_of(&exec.take(), "ipset restore");
    assert!(sets.contains("add KUBE-CLUSTER-IP 172.30.0.41,tcp:80\n"), "{sets}");
    kernel.set_ipvs(
        "TCP  172.30.0.41:80 rr
TCP  10.250.0.1:443 rr
  -> 10.250.1.1:443               Masq    1      0          0
UDP  [fd00::1]:53 rr
",
    );
    kernel.set_bound(&["172.30.0.41"]);
    p.on_service(Some(&s), None);
    assert_eq!(p.sync_proxy_rules(), SyncOutcome::Partial);
    let calls = exec.take();
    // Our family's stale virtual server goes; excludeCIDRs and the other family's stay.
    assert_eq!(stdin_of(&calls, "ipvsadm-restore"), "-D -t 172.30.0.41:80\n");
    assert_eq!(stdin_of(&calls, "ip -force -batch"), "addr del 172.30.0.41/32 dev kube-ipvs0\n");
    // A partial sync changes the sets by difference, without re-creating them.
    assert_eq!(
        stdin_of(&calls, "ipset restore"),
        "del KUBE-CLUSTER-IP 172.30.0.41,tcp:80\ndel KUBE-IPVS-IPS 172.30.0.41\n"
    );
    let rules = stdin_of(&calls, "iptables-restore");
    assert!(!rules.contains("--match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT"), "empty sets have no rules: {rules}");
    // An idle sync changes nothing in IPVS, the interface or the sets.
    p.on_service(None, Some(&svc("ns2", "x", json!({"clusterIP": "None", "ports": [{"port": 1}]}))));
    kernel.set_ipvs("TCP  10.250.0.1:443 rr\n");
    kernel.set_bound(&[]);
    p.sync_proxy_rules();
    let calls = exec.take();
    for prog in ["ipvsadm-restore", "ip -force -batch", "ipset restore"] {
        assert!(!calls.iter().any(|c| c.cmd.starts_with(prog)), "{prog} ran: {:?}", cmds(&calls));
    }
}

#[test]
fn ipv6_names() {
    let (p, exec, _) = new_provider(IpvsSettings::default(), IpFamily::V6);
    p.on_service(
        None,
        Some(&svc(
            "ns1",
            "svc1",
            json!({"clusterIP": "fd00::41", "clusterIPs": ["fd00::41"], "ipFamilies": ["IPv6"],
                   "ports": [{"name": "p80", "port": 80}]}),
        )),
    );
    p.on_endpoint_slice(
        &slice("ns1", "svc1", "s", "p80", 80, "TCP", vec![ep("fd10::5", None, true, true, false)]),
        false,
    );
    p.sync_proxy_rules();
    let calls = exec.take();
    assert_has(
        &stdin_of(&calls, "ipvsadm-restore"),
        &["-A -t [fd00::41]:80 -s rr", "-a -t [fd00::41]:80 -r [fd10::5]:80 -m -w 1"],
    );
    assert_has(&stdin_of(&calls, "ip -force -batch"), &["addr add fd00::41/128 dev kube-ipvs0"]);
    let sets = stdin_of(&calls, "ipset restore");
    assert_has(
        &sets,
        &[
            "create KUBE-6-CLUSTER-IP hash:ip,port family inet6 hashsize 1024 maxelem 65536",
            "add KUBE-6-CLUSTER-IP fd00::41,tcp:80",
        ],
    );
    let rules = stdin_of(&calls, "ip6tables-restore");
    assert_has(
        &rules,
        &[
            "-A KUBE-SERVICES -s ::1/128 -j RETURN",
            "-A KUBE-SERVICES -m set --match-set KUBE-6-CLUSTER-IP dst,dst -j ACCEPT",
        ],
    );
}

#[test]
fn cleanup_removes_the_ipvs_state() {
    let exec = FakeExec::with_responder(|prog, args| {
        let stdout = match (prog, args) {
            ("iptables-save", ["-t", "filter"]) => {
                "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-IPVS-FILTER - [0:0]\n:KUBE-NODE-PORT - [0:0]\n:OTHER - [0:0]\nCOMMIT\n"
            }
            ("ipset", ["list", "-n"]) => "KUBE-CLUSTER-IP\nKUBE-6-CLUSTER-IP\nsomeone-elses\n",
            _ => "",
        };
        Output { stdout: stdout.into(), ..Default::default() }
    });
    assert!(kube_proxy::cleanup(&exec));
    let calls = exec.take();
    let c = cmds(&calls);
    for want in [
        "ipvsadm -C",
        "ip link del kube-ipvs0",
        "iptables -w -t filter -D INPUT -m comment --comment kubernetes ipvs access filter -j KUBE-IPVS-FILTER",
        "ip6tables -w -t nat -D POSTROUTING -m comment --comment kubernetes postrouting rules -j KUBE-POSTROUTING",
        "ipset destroy KUBE-CLUSTER-IP",
        "ipset destroy KUBE-6-CLUSTER-IP",
    ] {
        assert!(c.contains(&want.to_string()), "missing {want}: {c:?}");
    }
    assert!(!c.iter().any(|x| x.contains("someone-elses")));
    let restores: Vec<String> = calls
        .iter()
        .filter(|c| c.cmd.starts_with("iptables-restore"))
        .filter_map(|c| c.stdin.clone())
        .filter(|s| s.contains("KUBE-IPVS-FILTER"))
        .collect();
    assert_eq!(
        restores,
        [
            "*filter\n:KUBE-NODE-PORT - [0:0]\n:KUBE-IPVS-FILTER - [0:0]\n-X KUBE-NODE-PORT\n-X KUBE-IPVS-FILTER\nCOMMIT\n"
        ]
    );
    // The sets go after the rules that reference them.
    let pos = |s: &str| c.iter().position(|x| x == s).unwrap();
    assert!(pos("ipset destroy KUBE-CLUSTER-IP") > pos("ip link del kube-ipvs0"));

    // Without IPVS in the kernel nothing is flushed and cleanup still succeeds.
    let exec = FakeExec::with_responder(|prog, _| {
        if prog == "ipvsadm" {
            Output { status: 2, stderr: "Can't initialize ipvs: Protocol not available".into(), ..Default::default() }
        } else if prog == "ip" {
            Output { status: 1, stderr: "Cannot find device \"kube-ipvs0\"".into(), ..Default::default() }
        } else {
            Output::default()
        }
    });
    assert!(kube_proxy::cleanup(&exec));
    assert!(!cmds(&exec.take()).contains(&"ipvsadm -C".to_string()));
}

#[test]
fn refuses_to_start_without_ipvs() {
    let exec: Arc<dyn Exec> = Arc::new(FakeExec::with_responder(|prog, args| match (prog, args) {
        ("ipset", _) => Output { stdout: "ipset v7.17, protocol version: 7\n".into(), ..Default::default() },
        _ => Output { status: 2, stderr: "Can't initialize ipvs: Protocol not available".into(), ..Default::default() },
    }));
    let config = kube_proxy::ProxyConfig { mode: kube_proxy::ProxyMode::Ipvs, ..Default::default() };
    let err = kube_proxy::server::new_proxier(&config, IpFamily::V4, exec, LocalDetector::NoOp, &[])
        .err()
        .expect("refused")
        .to_string();
    assert_eq!(
        err,
        "can't use the IPVS proxier: IPVS not supported by the kernel: Can't initialize ipvs: Protocol not available"
    );
    let old: Arc<dyn Exec> = Arc::new(FakeExec::with_responder(|_, _| Output {
        stdout: "ipset v4.5, protocol version: 4\n".into(),
        ..Default::default()
    }));
    let err = IpvsProxier::can_use(old.as_ref()).unwrap_err();
    assert!(err.contains("less than min required version 6.0"), "{err}");
    // With IPVS and a recent ipset the proxier is built.
    let ok: Arc<dyn Exec> = Arc::new(FakeExec::with_responder(|prog, _| Output {
        stdout: if prog == "ipset" { "ipset v7.17, protocol version: 7\n".into() } else { String::new() },
        ..Default::default()
    }));
    let p = kube_proxy::server::new_proxier(&config, IpFamily::V4, ok, LocalDetector::NoOp, &[]).unwrap();
    assert_eq!(p.mode(), "ipvs");
}
