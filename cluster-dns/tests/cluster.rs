//! cluster-dns against a real apiserver: the Corefile from the `coredns` ConfigMap, Services and EndpointSlices
//! created and deleted through the API, queried on 127.0.0.1 with hickory's client and with the real `dig`
//! (Debian's bind9-dnsutils); a ConfigMap change (a new stub domain and a rewrite) is applied while a client
//! keeps querying, with no query lost; a broken Corefile is refused and the running one keeps serving.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{FakeUpstream, free_port};
use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use kube_apiserver::testing::TestApiserver;
use serde_json::{Value, json};

fn write_kubeconfig(cfg: &client::Config, path: &std::path::Path) {
    use base64::Engine;
    let b64 = |b: &Option<Vec<u8>>| base64::engine::general_purpose::STANDARD.encode(b.as_deref().unwrap_or_default());
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: t\n  context: {{cluster: t, user: admin}}\ncurrent-context: t\n",
            cfg.server,
            b64(&cfg.ca_pem),
            b64(&cfg.client_cert_pem),
            b64(&cfg.client_key_pem)
        ),
    )
    .unwrap();
}

/// A plain HTTP GET on 127.0.0.1: (status, body).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()))
}

fn corefile(port: u16, hp: u16, rp: u16, mp: u16, upstream: SocketAddr, extra: &str) -> String {
    format!(
        r#".:{port} {{
    bind 127.0.0.1
    errors
    health 127.0.0.1:{hp} {{
       lameduck 1s
    }}
    ready 127.0.0.1:{rp}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 5
    }}
    prometheus 127.0.0.1:{mp}
    forward . {upstream} {{
       max_concurrent 1000
    }}
    cache 30
    loop
    reload
    loadbalance
{extra}}}
"#
    )
}

fn dig(port: u16, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig (Debian's bind9-dnsutils; deploy/install-deps.sh installs it)");
    String::from_utf8_lossy(&out.stdout).to_string()
}

async fn client(port: u16) -> Client<TokioRuntimeProvider> {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let conn = UdpClientStream::builder(addr, TokioRuntimeProvider::default()).build();
    let (c, bg) = Client::<TokioRuntimeProvider>::from_sender(conn);
    tokio::spawn(bg);
    c
}

/// (rcode, addresses) of an A query through hickory's client.
async fn lookup_a(c: &mut Client<TokioRuntimeProvider>, name: &str) -> (ResponseCode, Vec<String>) {
    match c.query(Name::from_ascii(name).unwrap(), DNSClass::IN, RecordType::A).await {
        Ok(r) => (
            r.metadata.response_code,
            r.answers
                .iter()
                .filter_map(|a| match &a.data {
                    RData::A(ip) => Some(ip.to_string()),
                    _ => None,
                })
                .collect(),
        ),
        Err(e) if e.to_string().contains("NXDomain") || e.to_string().contains("NXDOMAIN") => {
            (ResponseCode::NXDomain, vec![])
        }
        Err(e) => panic!("query {name}: {e}"),
    }
}

async fn wait_for<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_cluster_from_the_api() {
    let api = TestApiserver::start().await;
    api.namespace("dnstest").await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("admin.conf");
    write_kubeconfig(&api.config, &kubeconfig);
    let upstream = FakeUpstream::start("192.0.2.10").await;
    let consul = FakeUpstream::start("10.150.0.1").await;
    let (port, hp, rp, mp) = (free_port(), free_port(), free_port(), free_port());
    let configmaps = api.client.api("", "v1", "configmaps").unwrap().namespaced("kube-system");
    configmaps
        .create(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"},
            "data": {"Corefile": corefile(port, hp, rp, mp, upstream.addr, "")}}))
        .await
        .unwrap();

    let opts = cluster_dns::Options::parse_args(
        ["cluster-dns", "-kubeconfig", kubeconfig.to_str().unwrap()].into_iter().map(String::from),
    )
    .unwrap();
    assert_eq!(opts.configmap, "kube-system/coredns");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(cluster_dns::run(opts, stop_rx));

    wait_for(30, "ready", || async move { http_get(rp, "/ready").is_some_and(|(s, _)| s == 200) }).await;
    assert_eq!(http_get(hp, "/health").unwrap(), (200, "OK".into()));

    // A Service, a headless Service with StatefulSet-style endpoints, an ExternalName.
    let services = api.client.api("", "v1", "services").unwrap().namespaced("dnstest");
    let web = services
        .create(&json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "dnstest"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}))
        .await
        .unwrap();
    let web_ip = web.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap().to_string();
    services
        .create(&json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "dnstest"},
            "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}}))
        .await
        .unwrap();
    services
        .create(&json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext", "namespace": "dnstest"},
            "spec": {"type": "ExternalName", "externalName": "www.example.com"}}))
        .await
        .unwrap();
    let slices = api.client.api("discovery.k8s.io", "v1", "endpointslices").unwrap().namespaced("dnstest");
    slices
        .create(&json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "db-abc", "namespace": "dnstest", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.253.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.253.0.6"], "hostname": "db-1", "conditions": {"ready": true}},
                {"addresses": ["10.253.0.7"], "hostname": "db-2", "conditions": {"ready": false}}
            ],
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}))
        .await
        .unwrap();

    let mut c = client(port).await;
    let want_web = web_ip.clone();
    wait_for(10, "web's A record", || {
        let want = want_web.clone();
        async move {
            let mut c = client(port).await;
            lookup_a(&mut c, "web.dnstest.svc.cluster.local.").await.1 == [want]
        }
    })
    .await;
    let (rcode, mut ips) = lookup_a(&mut c, "db.dnstest.svc.cluster.local.").await;
    ips.sort();
    assert_eq!((rcode, ips), (ResponseCode::NoError, vec!["10.253.0.5".to_string(), "10.253.0.6".to_string()]));
    assert_eq!(lookup_a(&mut c, "db-1.db.dnstest.svc.cluster.local.").await.1, ["10.253.0.6"]);
    assert_eq!(lookup_a(&mut c, "db-2.db.dnstest.svc.cluster.local.").await.0, ResponseCode::NXDomain, "not ready");
    assert_eq!(lookup_a(&mut c, "nope.dnstest.svc.cluster.local.").await.0, ResponseCode::NXDomain);
    assert_eq!(lookup_a(&mut c, "10-1-2-3.dnstest.pod.cluster.local.").await.1, ["10.1.2.3"]);
    // Names outside the cluster go to the (fake) upstream.
    assert_eq!(lookup_a(&mut c, "example.org.").await.1, ["192.0.2.10"]);

    // The same through dig: A, SRV over TCP, PTR, CNAME, NXDOMAIN and NODATA with the SOA.
    assert_eq!(dig(port, &["+short", "web.dnstest.svc.cluster.local"]).trim(), web_ip);
    let srv = dig(port, &["+tcp", "+short", "SRV", "_pg._tcp.db.dnstest.svc.cluster.local"]);
    let mut lines: Vec<&str> = srv.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["0 50 5432 db-0.db.dnstest.svc.cluster.local.", "0 50 5432 db-1.db.dnstest.svc.cluster.local."],
        "{srv}"
    );
    let rev: Vec<&str> = web_ip.split('.').rev().collect();
    let ptr = dig(port, &["+short", "PTR", &format!("{}.in-addr.arpa", rev.join("."))]);
    assert_eq!(ptr.trim(), "web.dnstest.svc.cluster.local.");
    assert_eq!(dig(port, &["+short", "-x", "10.253.0.5"]).trim(), "db-0.db.dnstest.svc.cluster.local.");
    let cname = dig(port, &["ext.dnstest.svc.cluster.local"]);
    assert!(cname.contains("CNAME\twww.example.com.") && cname.contains("192.0.2.10"), "{cname}");
    let nx = dig(port, &["nope.dnstest.svc.cluster.local"]);
    assert!(
        nx.contains("status: NXDOMAIN") && nx.contains("SOA\tns.dns.cluster.local. hostmaster.cluster.local."),
        "{nx}"
    );
    let nodata = dig(port, &["AAAA", "web.dnstest.svc.cluster.local"]);
    assert!(
        nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0") && nodata.contains("AUTHORITY: 1"),
        "{nodata}"
    );
    assert!(nodata.contains("flags: qr aa rd"), "{nodata}");

    // Records disappear with their objects (within the 5 s TTL the cache may hold them).
    services.delete("web", None).await.unwrap();
    wait_for(15, "web to go", || async move {
        let mut c = client(port).await;
        lookup_a(&mut c, "web.dnstest.svc.cluster.local.").await.0 == ResponseCode::NXDomain
    })
    .await;
    slices.delete("db-abc", None).await.unwrap();
    wait_for(15, "db's endpoints to go", || async move {
        let mut c = client(port).await;
        lookup_a(&mut c, "db.dnstest.svc.cluster.local.").await.0 == ResponseCode::NXDomain
    })
    .await;

    // A ConfigMap change: a stub domain and a rewrite, applied while a client keeps asking.
    let running = Arc::new(AtomicBool::new(true));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let prober = {
        let (running, sent, failed) = (running.clone(), sent.clone(), failed.clone());
        tokio::spawn(async move {
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut id = 0u16;
            while running.load(Ordering::Relaxed) {
                id = id.wrapping_add(1);
                let mut q = common::query("example.org.", RecordType::A);
                q.metadata.id = id;
                sock.send_to(&q.to_vec().unwrap(), ("127.0.0.1", port)).await.unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
                let mut buf = vec![0u8; 4096];
                match tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf)).await {
                    Ok(Ok(n)) if hickory_proto::op::Message::from_vec(&buf[..n]).is_ok_and(|m| m.metadata.id == id) => {
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let extra = "    rewrite name exact alias.example. www.example.com.\n";
    let mut text = corefile(port, hp, rp, mp, upstream.addr, extra);
    text.push_str(&format!(
        "consul.local:{port} {{\n    bind 127.0.0.1\n    errors\n    cache 30\n    forward . {}\n}}\n",
        consul.addr
    ));
    let mut cm = configmaps.get("coredns").await.unwrap();
    cm["data"]["Corefile"] = json!(text);
    configmaps.replace("coredns", &cm).await.unwrap();
    wait_for(15, "the stub domain", || async move {
        let mut c = client(port).await;
        lookup_a(&mut c, "web.service.consul.local.").await.1 == ["10.150.0.1"]
    })
    .await;
    let alias = dig(port, &["alias.example"]);
    assert!(alias.contains("alias.example.\t\t60\tIN\tA\t192.0.2.10"), "rewrite answers for the asked name: {alias}");
    // A broken Corefile is refused; the last good one keeps serving.
    let mut cm = configmaps.get("coredns").await.unwrap();
    cm["data"]["Corefile"] = json!(text.replace("loadbalance", "loadbalance\n    nosuchplugin"));
    configmaps.replace("coredns", &cm).await.unwrap();
    wait_for(15, "the failed reload to be counted", || async move {
        http_get(mp, "/metrics").is_some_and(|(_, body)| body.contains("coredns_reload_failed_total 1"))
    })
    .await;
    assert_eq!(lookup_a(&mut c, "web.service.consul.local.").await.1, ["10.150.0.1"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.store(false, Ordering::Relaxed);
    prober.await.unwrap();
    assert!(sent.load(Ordering::Relaxed) > 10);
    assert_eq!(failed.load(Ordering::Relaxed), 0, "queries lost during reloads");

    let (status, metrics) = http_get(mp, "/metrics").unwrap();
    assert_eq!(status, 200);
    for m in [
        "coredns_dns_requests_total{server=\"dns://:",
        "coredns_dns_responses_total{",
        "coredns_dns_request_duration_seconds_bucket{",
        "coredns_cache_hits_total{",
        "coredns_plugin_enabled{",
        "coredns_build_info{",
    ] {
        assert!(metrics.contains(m), "{m} missing from\n{metrics}");
    }

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server).await.expect("stops").unwrap().unwrap();
    wait_for(
        5,
        "the DNS port to be released",
        || async move { std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() },
    )
    .await;
}
