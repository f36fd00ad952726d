//! End to end with the real `nft` and `iptables` (needs root): a "node" network namespace where kube-proxy's
//! rules live, joined by a veth pair to a "pod" namespace serving TCP on two endpoint addresses; kube-proxy (the
//! library, its tools run with `ip netns exec`) watches a real in-process apiserver. ClusterIP and NodePort
//! traffic reaches the endpoints, a Service without endpoints is refused, ClientIP affinity sticks, a removed
//! endpoint leaves the rules within a second, stopping leaves the rules, and `--cleanup` removes them all. The
//! same test runs in nftables, iptables and ipvs mode, each on its own addresses (10.252.4x / 10.253.4x,
//! blackholed on the host meanwhile). The ipvs run needs the kernel's IP_VS and dummy interfaces and says so
//! when it skips; the ip set and iptables side of the ipvs mode is loaded into a namespace's kernel regardless.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube_apiserver::testing::TestApiserver;
use kube_proxy::config::{ProxyConfig, ProxyMode};
use kube_proxy::exec::{Exec, RealExec};
use serde_json::{Value, json};

const SERVER: &str = r#"
import socket, sys, threading
def serve(ip, tag):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, 8080)); s.listen(128)
    while True:
        c, _ = s.accept(); c.sendall((tag + "\n").encode()); c.close()
for ip, tag in [(sys.argv[1], "A"), (sys.argv[2], "B")]:
    threading.Thread(target=serve, args=(ip, tag), daemon=True).start()
threading.Event().wait()
"#;

const CLIENT: &str = r#"
import socket, sys
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
source = (sys.argv[4], 0) if len(sys.argv) > 4 else None
for _ in range(n):
    try:
        c = socket.create_connection((ip, port), timeout=3, source_address=source); print("OK", c.recv(16).decode().strip()); c.close()
    except ConnectionRefusedError:
        print("REFUSED")
    except OSError as e:
        print("ERR", e)
"#;

fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn must(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Everything the test created, removed on drop even when the test fails.
struct Net {
    node: String,
    pod: String,
    routes: Vec<String>,
    server: Option<Child>,
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        // Deleting the namespaces removes the veth pair and every rule inside them.
        sh(&["ip", "netns", "del", &self.node]);
        sh(&["ip", "netns", "del", &self.pod]);
        for r in &self.routes {
            sh(&["ip", "route", "del", "blackhole", r]);
        }
    }
}

struct Addrs {
    node_ip: String,
    ep_a: String,
    ep_b: String,
    svc_cidr: String,
    pod_cidr: String,
    web: String,
    empty: String,
    sticky: String,
    /// A Service whose only endpoint is `ep_a`: its own endpoint reaches it (hairpin).
    hairpin: String,
}

fn addrs(n: u8) -> Addrs {
    Addrs {
        node_ip: format!("10.252.{n}.1"),
        ep_a: format!("10.252.{n}.2"),
        ep_b: format!("10.252.{n}.3"),
        svc_cidr: format!("10.253.{n}.0/24"),
        pod_cidr: format!("10.252.{n}.0/24"),
        web: format!("10.253.{n}.10"),
        empty: format!("10.253.{n}.11"),
        sticky: format!("10.253.{n}.12"),
        hairpin: format!("10.253.{n}.13"),
    }
}

fn setup(tag: &str, a: &Addrs) -> Net {
    let id = std::process::id() % 100000;
    let mut net = Net {
        node: format!("kpx-{tag}-node-{id}"),
        pod: format!("kpx-{tag}-pod-{id}"),
        routes: Vec::new(),
        server: None,
    };
    for cidr in [&a.pod_cidr, &a.svc_cidr] {
        must(&["ip", "route", "replace", "blackhole", cidr]);
        net.routes.push(cidr.clone());
    }
    let (vn, vp) = (format!("kpx{tag}n{}", id % 10000), format!("kpx{tag}p{}", id % 10000));
    must(&["ip", "netns", "add", &net.node]);
    must(&["ip", "netns", "add", &net.pod]);
    must(&["ip", "link", "add", &vn, "netns", &net.node, "type", "veth", "peer", "name", &vp, "netns", &net.pod]);
    let (node, pod) = (net.node.clone(), net.pod.clone());
    for (ns, dev, ips) in [(&node, &vn, vec![&a.node_ip]), (&pod, &vp, vec![&a.ep_a, &a.ep_b])] {
        must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        for ip in ips {
            must(&["ip", "-n", ns, "addr", "add", &format!("{ip}/24"), "dev", dev]);
        }
        must(&["ip", "-n", ns, "link", "set", dev, "up"]);
    }
    // Service IPs route towards the pods (DNAT picks the real destination).
    must(&["ip", "-n", &node, "route", "add", &a.svc_cidr, "dev", &vn]);
    must(&["ip", "-n", &pod, "route", "add", "default", "via", &a.node_ip]);
    // Pod traffic to a Service is routed through the node (hairpin).
    must(&["ip", "netns", "exec", &node, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    net.server = Some(
        Command::new("ip")
            .args(["netns", "exec", &pod, "python3", "-c", SERVER, &a.ep_a, &a.ep_b])
            .stdout(Stdio::null())
            .spawn()
            .expect("server"),
    );
    net
}

/// Connects `n` times from the node namespace; one line per attempt: `OK <tag>`, `REFUSED` or `ERR ...`.
fn connect(net: &Net, ip: &str, port: u16, n: usize) -> Vec<String> {
    connect_from(&net.node, None, ip, port, n)
}

/// As [`connect`], from namespace `ns` and, when given, source address `source`.
fn connect_from(ns: &str, source: Option<&str>, ip: &str, port: u16, n: usize) -> Vec<String> {
    let (port, n) = (port.to_string(), n.to_string());
    let mut args = vec!["netns", "exec", ns, "python3", "-c", CLIENT, ip, &port, &n];
    args.extend(source);
    let out = Command::new("ip").args(&args).output().expect("client");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

async fn eventually_connect(net: &Net, ip: &str, port: u16, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = connect(net, ip, port, 1).join("");
        if want(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "{ip}:{port}: still {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ruleset(exec: &RealExec, mode: ProxyMode) -> String {
    let out = |prog: &str, args: &[&str]| exec.run(prog, args, None).map(|o| o.stdout).unwrap_or_default();
    match mode {
        ProxyMode::Iptables => out("iptables-save", &[]),
        ProxyMode::Nftables => out("nft", &["list", "ruleset"]),
        // Real servers at weight 0 are draining (graceful termination): they get no new connection.
        ProxyMode::Ipvs => {
            let ipvs: Vec<String> = out("ipvsadm", &["-Ln"])
                .lines()
                .filter(|l| !(l.trim_start().starts_with("->") && l.split_whitespace().nth(3) == Some("0")))
                .map(str::to_string)
                .collect();
            format!("{}\n{}{}", ipvs.join("\n"), out("iptables-save", &[]), out("ipset", &["save"]))
        }
    }
}

/// Why this kernel cannot run the ipvs mode, probed inside the test's node namespace (None: it can).
fn ipvs_unsupported(net: &Net) -> Option<String> {
    let ns = |args: &[&str]| Command::new("ip").args(["netns", "exec", &net.node]).args(args).output().expect("spawn");
    let ipvs = ns(&["ipvsadm", "-Ln"]);
    if !ipvs.status.success() {
        return Some(format!("no IPVS in this kernel (ipvsadm -Ln: {})", String::from_utf8_lossy(&ipvs.stderr).trim()));
    }
    let dummy = ns(&["ip", "link", "add", "kpx-probe0", "type", "dummy"]);
    if !dummy.status.success() {
        return Some(format!("no dummy interfaces in this kernel ({})", String::from_utf8_lossy(&dummy.stderr).trim()));
    }
    ns(&["ip", "link", "del", "kpx-probe0"]);
    None
}

fn service(name: &str, ip: &str, extra: Value) -> Value {
    let mut spec =
        json!({"clusterIP": ip, "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn slice(svc: &str, ips: &[&str]) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": format!("{svc}-1"), "namespace": "default", "labels": {"kubernetes.io/service-name": svc}},
           "addressType": "IPv4",
           "endpoints": ips.iter().map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}})).collect::<Vec<_>>(),
           "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
}

async fn run(mode: ProxyMode, n: u8) {
    let tag = &mode.as_str()[..3];
    let a = addrs(n);
    let net = setup(tag, &a);
    if mode == ProxyMode::Ipvs
        && let Some(why) = ipvs_unsupported(&net)
    {
        eprintln!("SKIPPED ipvs_mode_in_a_netns: {why}");
        return;
    }
    let exec = RealExec::in_netns(&net.node);
    let api = TestApiserver::start_with(&[&format!("--service-cluster-ip-range={}", a.svc_cidr)]).await;
    let services = api.client.api("", "v1", "services").unwrap().namespaced("default");
    let slices = api.client.api("discovery.k8s.io", "v1", "endpointslices").unwrap().namespaced("default");
    services
        .create(&service(
            "web",
            &a.web,
            json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]}),
        ))
        .await
        .unwrap();
    services.create(&service("empty", &a.empty, json!({}))).await.unwrap();
    services.create(&service("sticky", &a.sticky, json!({"sessionAffinity": "ClientIP"}))).await.unwrap();
    slices.create(&slice("web", &[&a.ep_a, &a.ep_b])).await.unwrap();
    slices.create(&slice("sticky", &[&a.ep_a, &a.ep_b])).await.unwrap();
    services.create(&service("hairpin", &a.hairpin, json!({}))).await.unwrap();
    slices.create(&slice("hairpin", &[&a.ep_a])).await.unwrap();

    let config = ProxyConfig {
        mode,
        cluster_cidr: vec![a.pod_cidr.clone()],
        bind_address: a.node_ip.clone(),
        healthz_bind_address: "127.0.0.1:0".into(),
        metrics_bind_address: String::new(),
        min_sync_period: Duration::from_millis(100),
        ..Default::default()
    };
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let ctx = kube_proxy::Context {
        config,
        client: api.new_client(),
        hostname: format!("kpx-{tag}-node"),
        exec: Arc::new(exec.clone()),
        node_wait: Duration::ZERO,
    };
    let running = kube_proxy::server::start(ctx, stop).await.expect("start kube-proxy");
    let healthz = running.healthz.expect("healthz port");

    // ClusterIP and NodePort reach an endpoint.
    eventually_connect(&net, &a.web, 80, |g| g.starts_with("OK ")).await;
    eventually_connect(&net, &a.node_ip, 30080, |g| g.starts_with("OK ")).await;
    let answers = connect(&net, &a.web, 80, 30);
    assert!(answers.iter().all(|l| l.starts_with("OK ")), "{answers:?}");
    assert!(
        answers.contains(&"OK A".to_string()) && answers.contains(&"OK B".to_string()),
        "both endpoints used: {answers:?}"
    );

    // Hairpin: an endpoint reaches itself through its Service (masqueraded, so the reply comes back through the
    // node; without it the endpoint would answer itself directly and the connection would never complete).
    let own = connect_from(&net.pod, Some(&a.ep_a), &a.hairpin, 80, 5);
    assert!(own.iter().all(|l| l == "OK A"), "hairpin: {own:?}");

    // No endpoints: refused at once, not a hang.
    let t = Instant::now();
    assert_eq!(connect(&net, &a.empty, 80, 1), ["REFUSED"]);
    assert!(t.elapsed() < Duration::from_secs(2), "refusal took {:?}", t.elapsed());

    // ClientIP affinity: every connection from this client lands on one endpoint.
    let sticky = connect(&net, &a.sticky, 80, 20);
    assert!(sticky[0].starts_with("OK "), "{sticky:?}");
    assert!(sticky.iter().all(|l| *l == sticky[0]), "affinity broken: {sticky:?}");

    // /healthz answers as upstream's.
    let body = http_get(healthz, "/healthz").await;
    assert!(
        body.starts_with("HTTP/1.1 200") && body.contains("\"lastUpdated\"") && body.contains("\"nodeEligible\": true"),
        "{body}"
    );

    // An endpoint removed leaves the rules within a second (the sticky Service keeps its own rules for it).
    // (A DNAT target, or an endpoint map's `address . port` in nftables mode.)
    let still_there =
        |r: &str| r.matches(&format!("{}:8080", a.ep_b)).count() + r.matches(&format!("{} . 8080", a.ep_b)).count();
    let before = still_there(&ruleset(&exec, mode));
    let rv = slices.get("web-1").await.unwrap()["metadata"]["resourceVersion"].clone();
    let mut one = slice("web", &[&a.ep_a]);
    one["metadata"]["resourceVersion"] = rv;
    slices.replace("web-1", &one).await.unwrap();
    let t = Instant::now();
    loop {
        if still_there(&ruleset(&exec, mode)) < before {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(1), "endpoint {} still programmed after 1s", a.ep_b);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answers = connect(&net, &a.web, 80, 10);
    assert!(answers.iter().all(|l| l == "OK A"), "{answers:?}");

    // SIGTERM (stop) leaves the rules in place.
    let _ = stop_tx.send(true);
    running.wait().await;
    let rules = ruleset(&exec, mode);
    assert!(rules.contains("kube-proxy") || rules.contains("KUBE-SERVICES"), "{rules}");
    assert_eq!(connect(&net, &a.web, 80, 1), ["OK A"]);

    // --cleanup removes everything.
    assert!(kube_proxy::cleanup(&exec));
    let rules = ruleset(&exec, mode);
    assert!(!rules.contains("kube-proxy") && !rules.contains("KUBE-"), "left behind:\n{rules}");
    if mode == ProxyMode::Ipvs {
        let ipvs = exec.run("ipvsadm", &["-Ln"], None).unwrap().stdout;
        assert!(!ipvs.lines().any(|l| l.starts_with("TCP") || l.starts_with("UDP")), "{ipvs}");
        assert!(!exec.run("ip", &["link", "show", "kube-ipvs0"], None).unwrap().success(), "kube-ipvs0 left");
    }
    if mode == ProxyMode::Iptables {
        let nft = ruleset(&exec, ProxyMode::Nftables);
        assert!(!nft.contains("KUBE-") && !nft.contains("table ip kube-proxy"), "{nft}");
    }
    drop(net);
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nftables_mode_in_a_netns() {
    tokio::time::timeout(Duration::from_secs(120), run(ProxyMode::Nftables, 41)).await.expect("timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_mode_in_a_netns() {
    tokio::time::timeout(Duration::from_secs(120), run(ProxyMode::Iptables, 42)).await.expect("timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipvs_mode_in_a_netns() {
    tokio::time::timeout(Duration::from_secs(120), run(ProxyMode::Ipvs, 43)).await.expect("timed out");
}

/// Runs the ip set, iptables and `ip addr` commands for real inside a namespace; IPVS (`ipvsadm*`) and the dummy
/// device (creation and address binding) are answered by the recording fake, so the ipvs mode's rules and sets
/// meet the real kernel even where it has no IP_VS. Every call is logged.
struct KernelWithoutIpvs {
    real: RealExec,
    fake: kube_proxy::exec::FakeExec,
    log: std::sync::Mutex<Vec<kube_proxy::exec::Call>>,
}

impl Exec for KernelWithoutIpvs {
    fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> std::io::Result<kube_proxy::exec::Output> {
        let cmd = std::iter::once(program).chain(args.iter().copied()).collect::<Vec<_>>().join(" ");
        self.log.lock().unwrap().push(kube_proxy::exec::Call { cmd, stdin: stdin.map(str::to_string) });
        let faked = program.starts_with("ipvsadm")
            || (program == "ip" && (args.contains(&"dummy") || args.first() == Some(&"-force")));
        if faked { self.fake.run(program, args, stdin) } else { self.real.run(program, args, stdin) }
    }
}

#[test]
fn ipvs_sets_and_rules_load_into_a_namespace() {
    use kube_proxy::ipvs::{IpvsProxier, IpvsSettings};
    use kube_proxy::provider::Provider;
    let a = addrs(44);
    let net = setup("ivs", &a);
    let exec = Arc::new(KernelWithoutIpvs {
        real: RealExec::in_netns(&net.node),
        fake: kube_proxy::exec::FakeExec::new(),
        log: Default::default(),
    });
    let family = kube_proxy::serviceport::IpFamily::V4;
    let npa = kube_proxy::nodeportaddresses::NodePortAddresses::new(family, &[], &[]);
    let detector = kube_proxy::localdetector::LocalDetector::Cidr(a.pod_cidr.parse().unwrap());
    let node_ip = a.node_ip.parse().ok();
    let proxier = IpvsProxier::new(family, exec.clone(), false, 14, detector, npa, node_ip, IpvsSettings::default());
    let metrics = Arc::new(kube_proxy::metrics::ProxyMetrics::default());
    let p =
        Provider::new(Box::new(proxier), "kpx-ivs-node", exec.clone(), Duration::from_secs(30), metrics, None, None);
    p.on_services_synced();
    p.on_endpoint_slices_synced();
    let web = service(
        "web",
        &a.web,
        json!({"type": "NodePort", "externalIPs": [&a.sticky], "externalTrafficPolicy": "Local",
               "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080},
                         {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]}),
    );
    p.on_service(None, Some(&web));
    p.on_service(None, Some(&service("empty", &a.empty, json!({}))));
    let mut eps = slice("web", &[&a.ep_a, &a.ep_b]);
    eps["endpoints"][0]["nodeName"] = json!("kpx-ivs-node");
    p.on_endpoint_slice(&eps, false);
    assert_eq!(p.sync_proxy_rules(), kube_proxy::provider::SyncOutcome::Full);

    let out = |prog: &str, args: &[&str]| exec.real.run(prog, args, None).unwrap().stdout;
    let sets = out("ipset", &["save"]);
    for entry in [
        format!("add KUBE-CLUSTER-IP {},tcp:80", a.web),
        format!("add KUBE-CLUSTER-IP {},udp:53", a.web),
        format!("add KUBE-CLUSTER-IP {},tcp:80", a.empty),
        format!("add KUBE-EXTERNAL-IP-LOCAL {},tcp:80", a.sticky),
        format!("add KUBE-LOOP-BACK {},tcp:8080,{}", a.ep_a, a.ep_a),
        "add KUBE-NODE-PORT-TCP 30080".to_string(),
        "add KUBE-NODE-PORT-LOCAL-UDP 30053".to_string(),
        format!("add KUBE-IPVS-IPS {}", a.web),
    ] {
        assert!(sets.contains(&entry), "{entry} missing from the kernel's sets:\n{sets}");
    }
    let nat = out("iptables-save", &["-t", "nat"]);
    for rule in [
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
        "-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT",
        "-A KUBE-NODE-PORT -p udp -m comment --comment \"Kubernetes nodeport UDP port with externalTrafficPolicy=local\" -m set --match-set KUBE-NODE-PORT-LOCAL-UDP dst -j RETURN",
        "-A KUBE-POSTROUTING -m comment --comment \"Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose\" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE",
    ] {
        assert!(nat.contains(rule), "{rule} missing:\n{nat}");
    }
    let filter = out("iptables-save", &["-t", "filter"]);
    assert!(
        filter
            .contains("-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT"),
        "{filter}"
    );

    // A full sync re-reads the kernel's sets: `ipset save` parses back to exactly what was written.
    exec.log.lock().unwrap().clear();
    p.on_node(Some(&json!({"metadata": {"name": "kpx-ivs-node", "labels": {"zone": "a"}}})));
    assert_eq!(p.sync_proxy_rules(), kube_proxy::provider::SyncOutcome::Full);
    let script = exec
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.cmd == "ipset restore -exist")
        .filter_map(|c| c.stdin.clone())
        .collect::<String>();
    assert!(
        !script.contains("\nadd ") && !script.contains("\ndel "),
        "the kernel's sets differ from what was written:\n{script}"
    );

    // A Service going away leaves the sets.
    p.on_service(Some(&service("empty", &a.empty, json!({}))), None);
    p.sync_proxy_rules();
    assert!(!out("ipset", &["save"]).contains(&a.empty));

    // --cleanup removes the chains, jumps and sets.
    assert!(kube_proxy::cleanup(exec.as_ref()));
    let left =
        format!("{}{}{}", out("iptables-save", &[]), out("ipset", &["list", "-n"]), out("nft", &["list", "ruleset"]));
    assert!(!left.contains("KUBE-"), "left behind:\n{left}");
    drop(net);
}
