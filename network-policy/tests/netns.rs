//! End to end in network namespaces this test makes (and removes, even when it fails): two "nodes", netns joined
//! by a veth pair (10.248.77.0/24), each with a bridge `cni0` and "pods" (netns behind veths on it) in its pod CIDR
//! (10.248.80.0/24 on A, 10.248.81.0/24 on B). The kubelet's routes module, fed Node objects from a TestApiserver,
//! routes each node's pod CIDR to the other; the network-policy controller of each node, fed Pods and
//! NetworkPolicies, programs the node's nftables table. A TCP server in B's pod `web` is then reached, or not, by
//! pods of both nodes as policies come and go: the walkthrough's "declare a network policy" (web reachable only
//! from pods labelled `access: "true"`), cross-node and on the same node.
//!
//! Needs root, `ip` and `nft`. Blackhole routes for the ranges used are added on the host first, so no packet of
//! the test can leave the machine; all traffic stays inside the namespaces.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use api_types::patch::PatchType;
use kube_apiserver::testing::{TestApiserver, within};
use network_policy::nftables::{Nft, Runner};
use runtime::{InformerParams, SharedInformerFactory};
use serde_json::{Value, json};

/// The ranges of this test: node link, and both pod CIDRs (blackholed on the host while it runs).
const BLACKHOLES: &[&str] = &["10.248.76.0/22", "10.248.80.0/22"];
const NS: &str = "netpol-e2e";

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if !out.status.success() {
        return Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn must(args: &[&str]) -> String {
    ip(args).unwrap_or_else(|e| panic!("{e}"))
}

/// A blackhole route on the host, removed on drop if this test added it.
struct Blackhole(String, bool);

impl Blackhole {
    fn add(cidr: &str) -> Blackhole {
        let added = ip(&["route", "add", "blackhole", cidr]).is_ok();
        Blackhole(cidr.to_string(), added)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        if self.1 {
            let _ = ip(&["route", "del", "blackhole", &self.0]);
        }
    }
}

/// A network namespace, deleted on drop (with every link, route and nftables table in it).
struct Netns(String);

impl Netns {
    fn new(name: String) -> Netns {
        let _ = ip(&["netns", "del", &name]);
        must(&["netns", "add", &name]);
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        must(&all)
    }

    fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "sh", "-c", &format!("echo {value} > {path}")])
            .status()
            .unwrap();
        assert!(out.success(), "sysctl {key} in {}", self.0);
    }

    /// Runs `f` on a thread inside this namespace (sockets it opens stay in it).
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        kube_apiserver::testing::in_netns(&self.0, f)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

/// A node: its namespace, bridge and pod CIDR.
struct Node {
    netns: Netns,
    name: String,
    gateway: String,
}

/// A pod: its namespace, address, and the node it is on.
struct Pod {
    netns: Netns,
    addr: String,
}

fn node(tag: &str, name: &str, gateway: &str) -> Node {
    let netns = Netns::new(format!("np{}{tag}", std::process::id()));
    netns.sysctl("net.ipv4.ip_forward", "1");
    netns.ip(&["link", "add", "cni0", "type", "bridge"]);
    netns.ip(&["addr", "add", &format!("{gateway}/24"), "dev", "cni0"]);
    netns.ip(&["link", "set", "cni0", "up"]);
    Node { netns, name: name.to_string(), gateway: gateway.to_string() }
}

fn pod(node: &Node, tag: &str, addr: &str) -> Pod {
    let netns = Netns::new(format!("{}{tag}", node.netns.0));
    let host_side = format!("veth{tag}");
    node.netns.ip(&["link", "add", &host_side, "type", "veth", "peer", "name", "eth0", "netns", &netns.0]);
    node.netns.ip(&["link", "set", &host_side, "master", "cni0", "up"]);
    netns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
    netns.ip(&["link", "set", "eth0", "up"]);
    netns.ip(&["route", "add", "default", "via", &node.gateway]);
    Pod { netns, addr: addr.to_string() }
}

/// A TCP server in a pod answering `hello` to each connection, stopped on drop.
struct Server(Arc<AtomicBool>);

impl Server {
    fn start(pod: &Pod, port: u16) -> Server {
        let addr: SocketAddr = format!("{}:{port}", pod.addr).parse().unwrap();
        let listener = pod.netns.run(move || TcpListener::bind(addr).expect("bind in the pod"));
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.write_all(b"hello\n");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Server(stop)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Whether `from` gets the server's greeting at `to` within a second.
fn reaches(from: &Pod, to: &Pod, port: u16) -> bool {
    let addr: SocketAddr = format!("{}:{port}", to.addr).parse().unwrap();
    from.netns.run(move || {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = String::new();
        s.read_to_string(&mut buf).is_ok() && buf == "hello\n"
    })
}

/// Waits (up to 20 s) until `from` reaches `to` or not, as wanted.
async fn expect(from: &Pod, to: &Pod, want: bool, what: &str) {
    for _ in 0..100 {
        if reaches(from, to, 80) == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: expected {}", if want { "a connection" } else { "no connection" });
}

/// Checks that `from` reaches `to`, or not, right now.
fn check(from: &Pod, to: &Pod, want: bool, what: &str) {
    assert_eq!(reaches(from, to, 80), want, "{what}");
}

async fn create_node(api: &TestApiserver, n: &Node, cidr: &str, internal_ip: &str) {
    let nodes = api.client.api("", "v1", "nodes").unwrap();
    nodes
        .create(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n.name},
                        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}))
        .await
        .unwrap();
    let status = json!({"status": {"addresses": [{"type": "InternalIP", "address": internal_ip},
                                                  {"type": "Hostname", "address": n.name}]}});
    nodes.patch_status(&n.name, PatchType::Merge, &status).await.unwrap();
}

async fn create_pod(api: &TestApiserver, name: &str, node: &Node, pod: &Pod, labels: Value) {
    let pods = api.client.api("", "v1", "pods").unwrap().namespaced(NS);
    pods.create(&json!({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": name, "namespace": NS, "labels": labels},
                        "spec": {"nodeName": node.name, "containers": [{"name": "c", "image": "busybox",
                                 "ports": [{"name": "http", "containerPort": 80}]}]}}))
        .await
        .unwrap();
    let status = json!({"status": {"phase": "Running", "podIP": pod.addr, "podIPs": [{"ip": pod.addr}]}});
    pods.patch_status(name, PatchType::Merge, &status).await.unwrap();
}

fn policies(api: &TestApiserver) -> client::Api {
    api.client.api("networking.k8s.io", "v1", "networkpolicies").unwrap().namespaced(NS)
}

fn network_policy(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

/// The routes of the kubelet's protocol in a node.
fn kubelet_routes(n: &Node) -> String {
    n.netns.ip(&["route", "show", "proto", &kubelet::routes::RTPROT_KUBELET.to_string()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_across_nodes_and_network_policies_in_netns_as_root() {
    let _blackholes: Vec<Blackhole> = BLACKHOLES.iter().map(|c| Blackhole::add(c)).collect();
    let a = node("a", "np-node-a", "10.248.80.1");
    let b = node("b", "np-node-b", "10.248.81.1");
    // The nodes' link.
    a.netns.ip(&["link", "add", "eth1", "type", "veth", "peer", "name", "eth1", "netns", &b.netns.0]);
    a.netns.ip(&["addr", "add", "10.248.77.1/24", "dev", "eth1"]);
    b.netns.ip(&["addr", "add", "10.248.77.2/24", "dev", "eth1"]);
    a.netns.ip(&["link", "set", "eth1", "up"]);
    b.netns.ip(&["link", "set", "eth1", "up"]);
    // Bridged traffic between two pods of a node passes the firewall (what the controller's binary turns on).
    b.netns.sysctl("net.bridge.bridge-nf-call-iptables", "1");
    a.netns.sysctl("net.bridge.bridge-nf-call-iptables", "1");
    let client_a = pod(&a, "c", "10.248.80.11");
    let stranger_a = pod(&a, "s", "10.248.80.12");
    let web = pod(&b, "w", "10.248.81.10");
    let client_b = pod(&b, "c", "10.248.81.11");
    let stranger_b = pod(&b, "s", "10.248.81.12");
    let _server = Server::start(&web, 80);
    let _server_b = Server::start(&client_b, 80);
    check(&client_b, &web, true, "same node, over the bridge");
    check(&web, &client_b, true, "and back");
    check(&client_a, &web, false, "no route to the other node's pods yet");

    let api = TestApiserver::start().await;
    api.namespace(NS).await;
    create_node(&api, &a, "10.248.80.0/24", "10.248.77.1").await;
    create_node(&api, &b, "10.248.81.0/24", "10.248.77.2").await;
    let factory = SharedInformerFactory::new(api.new_client());
    let nodes = factory.informer_for("", "v1", "nodes", InformerParams::all()).unwrap();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    for n in [&a, &b] {
        // A netlink socket opened inside the node's namespace; driven on this runtime.
        let rt = tokio::runtime::Handle::current();
        let handle = n.netns.run(move || {
            let _enter = rt.enter();
            let (connection, handle, _) = rtnetlink::new_connection().expect("netlink");
            rt.spawn(connection);
            handle
        });
        let table = kubelet::routes::Netlink::from_handle(handle);
        tokio::spawn(kubelet::routes::run(table, nodes.clone(), n.name.clone(), stop.clone()));
    }
    within(20, "the routes to the other node's pod CIDR", async {
        while !kubelet_routes(&a).contains("10.248.81.0/24 via 10.248.77.2")
            || !kubelet_routes(&b).contains("10.248.80.0/24 via 10.248.77.1")
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(!kubelet_routes(&a).contains("10.248.80.0/24"), "no route to its own pod CIDR");
    check(&client_a, &web, true, "pod on node A reaches the pod on node B");
    check(&stranger_a, &web, true, "every pod does");

    // The network policy controllers of both nodes, their nft run inside the node's namespace.
    create_pod(&api, "client-a", &a, &client_a, json!({"access": "true"})).await;
    create_pod(&api, "stranger-a", &a, &stranger_a, json!({})).await;
    create_pod(&api, "web", &b, &web, json!({"app": "web"})).await;
    create_pod(&api, "client-b", &b, &client_b, json!({"access": "true"})).await;
    create_pod(&api, "stranger-b", &b, &stranger_b, json!({})).await;
    let mut health = Vec::new();
    let mut controllers = Vec::new();
    for n in [&a, &b] {
        let nft = Nft::with_command(vec!["ip".into(), "netns".into(), "exec".into(), n.netns.0.clone(), "nft".into()]);
        let controller = network_policy::Controller::new(&factory, &n.name, nft, Duration::from_secs(300)).unwrap();
        health.push((controller.health(), controller.metrics()));
        controllers.push(tokio::spawn(controller.run(stop.clone())));
    }
    within(20, "the first sync of both controllers", async {
        while health.iter().any(|(_, m)| m.get("network_policy_syncs_total") < 1.0) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(health.iter().all(|(h, _)| h.problem().is_none()));
    check(&client_a, &web, true, "no policy: open");

    // Default deny for web: nobody gets in, from either node.
    let np = policies(&api);
    np.create(&network_policy(
        "web-deny",
        json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]}),
    ))
    .await
    .unwrap();
    expect(&client_a, &web, false, "default deny: the labelled pod of the other node").await;
    check(&client_b, &web, false, "default deny: the labelled pod of the same node");
    check(&stranger_b, &web, false, "default deny: the other pod of the same node");

    // Allow from access=true: the labelled pods of both nodes get in, the others do not.
    np.create(&network_policy(
        "access-web",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"access": "true"}}}]}]}),
    ))
    .await
    .unwrap();
    expect(&client_a, &web, true, "allowed: labelled, other node").await;
    check(&client_b, &web, true, "allowed: labelled, same node");
    check(&stranger_a, &web, false, "not labelled, other node");
    check(&stranger_b, &web, false, "not labelled, same node");

    // Labels change: the stranger of node A gets the label and in.
    let pods = api.client.api("", "v1", "pods").unwrap().namespaced(NS);
    pods.patch("stranger-a", PatchType::Merge, &json!({"metadata": {"labels": {"access": "true"}}})).await.unwrap();
    expect(&stranger_a, &web, true, "labelled later").await;

    // Stateful: web may start nothing (egress deny), yet answers the connections it is allowed to take.
    np.create(&network_policy(
        "web-no-egress",
        json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"]}),
    ))
    .await
    .unwrap();
    expect(&web, &client_b, false, "web's own connections are refused").await;
    check(&client_a, &web, true, "replies to allowed connections pass");

    // Egress on node A: client-a may only reach port 81.
    np.create(&network_policy(
        "client-a-egress",
        json!({"podSelector": {"matchLabels": {"access": "true"}}, "policyTypes": ["Egress"],
               "egress": [{"ports": [{"port": 81}]}]}),
    ))
    .await
    .unwrap();
    expect(&client_a, &web, false, "egress denied on the client's node").await;
    np.delete("client-a-egress", None).await.unwrap();
    expect(&client_a, &web, true, "egress allowed again").await;

    // Policies deleted: open again.
    for name in ["web-deny", "access-web", "web-no-egress"] {
        np.delete(name, None).await.unwrap();
    }
    expect(&stranger_b, &web, true, "no policy left").await;

    // The node's Node object goes: its pod CIDR's route goes from the other node, and only that route.
    api.client.api("", "v1", "nodes").unwrap().delete(&b.name, None).await.unwrap();
    within(20, "the route to the deleted node's pod CIDR removed", async {
        while kubelet_routes(&a).contains("10.248.81.0/24") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(a.netns.ip(&["route", "show"]).contains("10.248.77.0/24 dev eth1"), "other routes stay");
    check(&client_a, &web, false, "no route to the deleted node's pods");

    // --cleanup removes the table, and only it.
    let _ = stop_tx.send(true);
    // Stopped for good first: a sync still under way would write the table again after the cleanup.
    for c in controllers {
        let _ = tokio::time::timeout(Duration::from_secs(20), c).await;
    }
    let nft_b = Nft::with_command(vec!["ip".into(), "netns".into(), "exec".into(), b.netns.0.clone(), "nft".into()]);
    nft_b.apply("table inet other { }\n").await.unwrap();
    nft_b.apply(&network_policy::ruleset::cleanup()).await.unwrap();
    let tables = Command::new("ip").args(["netns", "exec", &b.netns.0, "nft", "list", "tables"]).output().unwrap();
    let tables = String::from_utf8_lossy(&tables.stdout);
    assert!(!tables.contains("kube-network-policy") && tables.contains("inet other"), "{tables}");
    factory.shutdown();
}
