//! Helpers shared by the tests: a fake upstream DNS server on 127.0.0.1 (never a real resolver), free ports,
//! building a configuration over a fixed cluster state, and rendering answers for comparison.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cluster_dns::controller::{Address, Controller, Port, Service, Slice, State};
use cluster_dns::dnsserver::{Dispatcher, Table};
use cluster_dns::request::Proto;
use cluster_dns::server::{Env, build};
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A fake upstream on 127.0.0.1: answers every A query with `answer` (TTL 60), everything else NOERROR empty;
/// over UDP and TCP on the same port. Counts the queries it got.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub queries: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn fake_answer(data: &[u8], answer: std::net::Ipv4Addr) -> Option<Vec<u8>> {
    let q = Message::from_vec(data).ok()?;
    let mut m = Message::response(q.metadata.id, q.metadata.op_code);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.queries = q.queries.clone();
    if let Some(query) = q.queries.first()
        && query.query_type == RecordType::A
    {
        m.answers.push(Record::from_rdata(query.name.clone(), 60, RData::A(A(answer))));
    }
    m.to_vec().ok()
}

impl FakeUpstream {
    pub async fn start(answer: &str) -> Self {
        let answer: std::net::Ipv4Addr = answer.parse().unwrap();
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let udp = tokio::net::UdpSocket::bind(addr).await.unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let q = queries.clone();
        let u = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                let Ok((n, peer)) = udp.recv_from(&mut buf).await else { continue };
                q.fetch_add(1, Ordering::Relaxed);
                if let Some(resp) = fake_answer(&buf[..n], answer) {
                    let _ = udp.send_to(&resp, peer).await;
                }
            }
        });
        let q = queries.clone();
        let t = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = tcp.accept().await else { continue };
                let q = q.clone();
                tokio::spawn(async move {
                    let mut len = [0u8; 2];
                    while s.read_exact(&mut len).await.is_ok() {
                        let mut data = vec![0u8; u16::from_be_bytes(len) as usize];
                        if s.read_exact(&mut data).await.is_err() {
                            return;
                        }
                        q.fetch_add(1, Ordering::Relaxed);
                        let Some(resp) = fake_answer(&data, answer) else { return };
                        let mut out = (resp.len() as u16).to_be_bytes().to_vec();
                        out.extend(resp);
                        let _ = s.write_all(&out).await;
                    }
                });
            }
        });
        FakeUpstream { addr, queries, tasks: vec![u, t] }
    }

    pub fn count(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

/// A port free for both UDP and TCP on 127.0.0.1.
pub fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A UDP port nothing answers on (queries get "connection refused"), kept from other tests' [`free_port`] by a
/// TCP listener held in the guard.
/// A loopback port nothing answers on, for upstreams that must fail. It is taken below the
/// kernel's ephemeral range (32768+), so a socket another test binds to port 0 can never land on
/// it while this test runs; the returned listener keeps other `dead_port` callers off it.
pub fn dead_port() -> (u16, std::net::TcpListener) {
    for port in 20000..32000u16 {
        let Ok(tcp) = std::net::TcpListener::bind(("127.0.0.1", port)) else { continue };
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return (port, tcp);
        }
    }
    panic!("no free loopback port below the ephemeral range");
}

pub fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

pub fn port(name: &str, protocol: &str, port: i32) -> Port {
    Port { name: name.into(), protocol: protocol.into(), port }
}

pub fn service(name: &str, ns: &str, ips: &[&str], ports: Vec<Port>) -> Service {
    Service {
        name: name.into(),
        namespace: ns.into(),
        external_name: None,
        headless: ips == ["None"],
        cluster_ips: ips.iter().filter_map(|i| i.parse().ok()).collect(),
        ports: if ports.is_empty() { vec![port("", "", -1)] } else { ports },
    }
}

pub fn slice(name: &str, ns: &str, svc: &str, addrs: &[(&str, &str)], ports: Vec<Port>) -> Slice {
    Slice {
        name: name.into(),
        namespace: ns.into(),
        service: svc.into(),
        addresses: addrs
            .iter()
            .map(|(i, h)| Address { ip: ip(i), hostname: h.to_string(), target_ref_name: String::new() })
            .collect(),
        ports: if ports.is_empty() { vec![port("", "", -1)] } else { ports },
    }
}

/// CoreDNS's handler_test fixture (plugin/kubernetes/handler_test.go), as our slim objects.
pub fn coredns_fixture() -> State {
    let mut st = State::default();
    for ns in ["testns", "podns", "kube-system"] {
        st.namespaces.insert(ns.into());
    }
    let http = || vec![port("http", "tcp", 80)];
    st.upsert_service(service("kubedns", "kube-system", &["10.0.0.10"], vec![port("dns", "udp", 53)]));
    st.upsert_service(service("svc1", "testns", &["10.0.0.1"], http()));
    st.upsert_service(service("svcempty", "testns", &["10.0.0.1"], http()));
    st.upsert_service(service("svc6", "testns", &["1234:abcd::1"], http()));
    st.upsert_service(service("hdls1", "testns", &["None"], vec![]));
    st.upsert_service(service("hdlsprtls", "testns", &["None"], vec![]));
    st.upsert_service(service("svc-dual-stack", "testns", &["10.0.0.3", "10::3"], http()));
    let mut ext = service("external", "testns", &[], http());
    ext.external_name = Some("ext.interwebs.test".into());
    st.upsert_service(ext);
    let mut ext2 = service("external-to-service", "testns", &[], http());
    ext2.external_name = Some("svc1.testns.svc.cluster.local".into());
    st.upsert_service(ext2);
    st.upsert_slice(slice("kubedns", "kube-system", "kubedns", &[("172.0.0.100", "")], vec![port("dns", "udp", 53)]));
    st.upsert_slice(slice("svc1-slice1", "testns", "svc1", &[("172.0.0.1", "ep1a")], http()));
    st.upsert_slice(slice("svcempty-slice1", "testns", "svcempty", &[], http()));
    st.upsert_slice(slice(
        "hdls1-slice1",
        "testns",
        "hdls1",
        &[
            ("172.0.0.2", ""),
            ("172.0.0.3", ""),
            ("172.0.0.4", "dup-name"),
            ("172.0.0.5", "dup-name"),
            ("5678:abcd::1", ""),
            ("5678:abcd::2", ""),
        ],
        http(),
    ));
    st.upsert_slice(slice("hdlsprtls-slice1", "testns", "hdlsprtls", &[("172.0.0.20", "")], vec![]));
    st.upsert_pod("podns", "foo", Some(ip("10.240.0.1")));
    st
}

/// A dispatcher for the blocks a Corefile puts on port 53, over a fixed controller.
pub fn dispatcher(corefile: &str, controller: Arc<Controller>) -> Arc<Dispatcher> {
    let mut env = Env::new(None, 53);
    env.fixed_controller = Some(controller);
    let mut config = build(corefile, "Corefile", &env).unwrap_or_else(|e| panic!("{e}"));
    let (_, blocks) = config.tables.pop_first().expect("a server block");
    Dispatcher::new(Table::new(blocks))
}

pub fn query(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

pub fn query_edns(name: &str, qtype: RecordType, size: u16) -> Message {
    let mut m = query(name, qtype);
    let mut e = Edns::new();
    e.set_max_payload(size);
    m.edns = Some(e);
    m
}

pub async fn ask(d: &Dispatcher, name: &str, qtype: RecordType) -> Message {
    d.handle(query(name, qtype), "10.240.0.1:40000".parse().unwrap(), Proto::Udp).await
}

/// Records as text, SOA serials masked, sorted (CoreDNS's tests sort too).
pub fn render(records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = records
        .iter()
        .map(|r| match &r.data {
            RData::SOA(soa) => format!(
                "{} {} IN SOA {} {} SERIAL {} {} {} {}",
                r.name, r.ttl, soa.mname, soa.rname, soa.refresh, soa.retry, soa.expire, soa.minimum
            ),
            _ => r.to_string(),
        })
        .collect();
    out.sort();
    out
}
