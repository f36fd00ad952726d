//! DNS answers of whole plugin chains over a fixed cluster state, without sockets: the kubernetes plugin against
//! CoreDNS's own test cases (plugin/kubernetes handler, pod, reverse tests), pod modes, NXDOMAIN vs NODATA,
//! truncation, and the cache, rewrite, hosts and forward plugins (forward to a fake upstream on 127.0.0.1).

mod common;

use std::sync::Arc;

use cluster_dns::controller::Controller;
use cluster_dns::dnsserver::encode;
use cluster_dns::request::Proto;
use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

const KUBE: &str = "cluster.local:53 {\n  kubernetes cluster.local in-addr.arpa ip6.arpa {\n    pods insecure\n  }\n}\n.:53 {\n  hosts {\n    1.2.3.4 ext.interwebs.test\n    fallthrough\n  }\n}\nin-addr.arpa:53 ip6.arpa:53 {\n  kubernetes cluster.local in-addr.arpa ip6.arpa\n}\n";

const ZONE_SOA: &str =
    "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. SERIAL 7200 1800 86400 5";

struct Case {
    q: &'static str,
    t: RecordType,
    rcode: ResponseCode,
    answer: &'static [&'static str],
    ns: &'static [&'static str],
    extra: &'static [&'static str],
}

const fn ok(q: &'static str, t: RecordType, answer: &'static [&'static str]) -> Case {
    Case { q, t, rcode: ResponseCode::NoError, answer, ns: &[], extra: &[] }
}

const fn nodata(q: &'static str, t: RecordType) -> Case {
    Case { q, t, rcode: ResponseCode::NoError, answer: &[], ns: &[ZONE_SOA], extra: &[] }
}

const fn nxdomain(q: &'static str, t: RecordType) -> Case {
    Case { q, t, rcode: ResponseCode::NXDomain, answer: &[], ns: &[ZONE_SOA], extra: &[] }
}

async fn check(d: &cluster_dns::dnsserver::Dispatcher, cases: &[Case]) {
    for c in cases {
        let m = ask(d, c.q, c.t).await;
        let what = format!("{} {}", c.q, c.t);
        assert_eq!(m.metadata.response_code, c.rcode, "{what}: {m:?}");
        let mut want: Vec<String> = c.answer.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(render(&m.answers), want, "{what}: answer");
        let mut want: Vec<String> = c.ns.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(render(&m.authorities), want, "{what}: authority");
        let mut want: Vec<String> = c.extra.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(render(&m.additionals), want, "{what}: additional");
        if m.metadata.response_code != ResponseCode::Refused {
            assert!(m.metadata.authoritative || c.q.starts_with("ext"), "{what}: AA");
        }
    }
}

#[tokio::test]
async fn kubernetes_answers_as_coredns() {
    use RecordType::*;
    let d = dispatcher(KUBE, Controller::fixed(coredns_fixture()));
    let cases = [
        ok("svc1.testns.svc.cluster.local.", A, &["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"]),
        ok("svcempty.testns.svc.cluster.local.", A, &["svcempty.testns.svc.cluster.local. 5 IN A 10.0.0.1"]),
        Case {
            extra: &["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"],
            ..ok(
                "svc1.testns.svc.cluster.local.",
                SRV,
                &["svc1.testns.svc.cluster.local. 5 IN SRV 0 100 80 svc1.testns.svc.cluster.local."],
            )
        },
        Case {
            extra: &["svc6.testns.svc.cluster.local. 5 IN AAAA 1234:abcd::1"],
            ..ok(
                "svc6.testns.svc.cluster.local.",
                SRV,
                &["svc6.testns.svc.cluster.local. 5 IN SRV 0 100 80 svc6.testns.svc.cluster.local."],
            )
        },
        Case {
            extra: &["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"],
            ..ok(
                "_http._tcp.svc1.testns.svc.cluster.local.",
                SRV,
                &["_http._tcp.svc1.testns.svc.cluster.local. 5 IN SRV 0 100 80 svc1.testns.svc.cluster.local."],
            )
        },
        ok(
            "hdls1.testns.svc.cluster.local.",
            A,
            &[
                "hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.2",
                "hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.3",
                "hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.4",
                "hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.5",
            ],
        ),
        ok("hdlsprtls.testns.svc.cluster.local.", A, &["hdlsprtls.testns.svc.cluster.local. 5 IN A 172.0.0.20"]),
        nodata("svc1.testns.svc.cluster.local.", AAAA),
        nxdomain("svc0.testns.svc.cluster.local.", AAAA),
        nxdomain("svc0.testns.svc.cluster.local.", A),
        nxdomain("svc0.svc-nons.svc.cluster.local.", A),
        ok("dns-version.cluster.local.", TXT, &["dns-version.cluster.local. 28800 IN TXT 1.1.0"]),
        nodata("svc1.testns.svc.cluster.local.", TXT),
        nxdomain("svc0.svc-nons.svc.cluster.local.", TXT),
        nxdomain("bogusendpoint.hdls1.testns.svc.cluster.local.", A),
        nxdomain("bogusendpoint.svc0.testns.svc.cluster.local.", A),
        ok("svc6.testns.svc.cluster.local.", AAAA, &["svc6.testns.svc.cluster.local. 5 IN AAAA 1234:abcd::1"]),
        ok(
            "hdls1.testns.svc.cluster.local.",
            AAAA,
            &[
                "hdls1.testns.svc.cluster.local. 5 IN AAAA 5678:abcd::1",
                "hdls1.testns.svc.cluster.local. 5 IN AAAA 5678:abcd::2",
            ],
        ),
        nodata("svc.cluster.local.", A),
        nodata("pod.cluster.local.", A),
        nodata("testns.svc.cluster.local.", A),
        nodata("svc.cluster.local.", NS),
        nodata("testns.svc.cluster.local.", NS),
        nxdomain("foo.cluster.local.", NS),
        nxdomain("foo.svc.cluster.local.", NS),
        ok(
            "svc-dual-stack.testns.svc.cluster.local.",
            A,
            &["svc-dual-stack.testns.svc.cluster.local. 5 IN A 10.0.0.3"],
        ),
        ok(
            "svc-dual-stack.testns.svc.cluster.local.",
            AAAA,
            &["svc-dual-stack.testns.svc.cluster.local. 5 IN AAAA 10::3"],
        ),
        Case {
            extra: &[
                "svc-dual-stack.testns.svc.cluster.local. 5 IN A 10.0.0.3",
                "svc-dual-stack.testns.svc.cluster.local. 5 IN AAAA 10::3",
            ],
            ..ok(
                "svc-dual-stack.testns.svc.cluster.local.",
                SRV,
                &["svc-dual-stack.testns.svc.cluster.local. 5 IN SRV 0 50 80 svc-dual-stack.testns.svc.cluster.local."],
            )
        },
        nodata("svc1.testns.svc.cluster.local.", SOA),
        nxdomain("endpoint.external.testns.svc.cluster.local.", CNAME),
        nxdomain("subdomain.subdomain.external.testns.svc.cluster.local.", CNAME),
        // Headless SRV: one per endpoint hostname and port, weights split evenly (CoreDNS's 16 for six).
        Case {
            extra: &[
                "172-0-0-2.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.2",
                "172-0-0-3.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.3",
                "5678-abcd--1.hdls1.testns.svc.cluster.local. 5 IN AAAA 5678:abcd::1",
                "5678-abcd--2.hdls1.testns.svc.cluster.local. 5 IN AAAA 5678:abcd::2",
                "dup-name.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.4",
                "dup-name.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.5",
            ],
            ..ok(
                "_http._tcp.hdls1.testns.svc.cluster.local.",
                SRV,
                &[
                    "_http._tcp.hdls1.testns.svc.cluster.local. 5 IN SRV 0 16 80 172-0-0-2.hdls1.testns.svc.cluster.local.",
                    "_http._tcp.hdls1.testns.svc.cluster.local. 5 IN SRV 0 16 80 172-0-0-3.hdls1.testns.svc.cluster.local.",
                    "_http._tcp.hdls1.testns.svc.cluster.local. 5 IN SRV 0 16 80 5678-abcd--1.hdls1.testns.svc.cluster.local.",
                    "_http._tcp.hdls1.testns.svc.cluster.local. 5 IN SRV 0 16 80 5678-abcd--2.hdls1.testns.svc.cluster.local.",
                    "_http._tcp.hdls1.testns.svc.cluster.local. 5 IN SRV 0 16 80 dup-name.hdls1.testns.svc.cluster.local.",
                ],
            )
        },
        ok(
            "5678-abcd--2.hdls1.testns.svc.cluster.local.",
            AAAA,
            &["5678-abcd--2.hdls1.testns.svc.cluster.local. 5 IN AAAA 5678:abcd::2"],
        ),
        ok(
            "172-0-0-20.hdlsprtls.testns.svc.cluster.local.",
            A,
            &["172-0-0-20.hdlsprtls.testns.svc.cluster.local. 5 IN A 172.0.0.20"],
        ),
        ok(
            "172-0-0-2.hdls1.testns.svc.cluster.local.",
            A,
            &["172-0-0-2.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.2"],
        ),
        // StatefulSet-style hostnames.
        ok(
            "dup-name.hdls1.testns.svc.cluster.local.",
            A,
            &[
                "dup-name.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.4",
                "dup-name.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.5",
            ],
        ),
        ok("ep1a.svc1.testns.svc.cluster.local.", A, &["ep1a.svc1.testns.svc.cluster.local. 5 IN A 172.0.0.1"]),
        // ExternalName.
        ok(
            "external.testns.svc.cluster.local.",
            CNAME,
            &["external.testns.svc.cluster.local. 5 IN CNAME ext.interwebs.test."],
        ),
        ok(
            "external.testns.svc.cluster.local.",
            A,
            &[
                "external.testns.svc.cluster.local. 5 IN CNAME ext.interwebs.test.",
                "ext.interwebs.test. 3600 IN A 1.2.3.4",
            ],
        ),
        ok(
            "external-to-service.testns.svc.cluster.local.",
            A,
            &[
                "external-to-service.testns.svc.cluster.local. 5 IN CNAME svc1.testns.svc.cluster.local.",
                "svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1",
            ],
        ),
        // The zone itself, its NS and SOA.
        ok("cluster.local.", SOA, &[ZONE_SOA]),
        nodata("cluster.local.", A),
        // Pods, insecure: any well-formed address in an existing namespace.
        ok("10-240-0-1.podns.pod.cluster.local.", A, &["10-240-0-1.podns.pod.cluster.local. 5 IN A 10.240.0.1"]),
        ok("172-0-0-2.podns.pod.cluster.local.", A, &["172-0-0-2.podns.pod.cluster.local. 5 IN A 172.0.0.2"]),
        nxdomain("blah.podns.pod.cluster.local.", A),
        nxdomain("blah.podns.pod.cluster.local.", AAAA),
        nxdomain("blah.podns.pod.cluster.local.", HINFO),
        nxdomain("blah.pod-nons.pod.cluster.local.", A),
        nodata("podns.pod.cluster.local.", A),
        // Case does not matter, and is kept in the answer.
        ok("SVC1.TestNS.svc.cluster.local.", A, &["SVC1.TestNS.svc.cluster.local. 5 IN A 10.0.0.1"]),
    ];
    check(&d, &cases).await;
    // The answer leaves CNAMEs before their targets.
    let m = ask(&d, "external-to-service.testns.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
    // Zone transfers are refused.
    assert_eq!(ask(&d, "cluster.local.", RecordType::AXFR).await.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn reverse_lookups() {
    use RecordType::*;
    let d = dispatcher(KUBE, Controller::fixed(coredns_fixture()));
    const REV_SOA: &str =
        "in-addr.arpa. 5 IN SOA ns.dns.in-addr.arpa. hostmaster.in-addr.arpa. SERIAL 7200 1800 86400 5";
    let cases = [
        ok("1.0.0.10.in-addr.arpa.", PTR, &["1.0.0.10.in-addr.arpa. 5 IN PTR svc1.testns.svc.cluster.local."]),
        ok("1.0.0.172.in-addr.arpa.", PTR, &["1.0.0.172.in-addr.arpa. 5 IN PTR ep1a.svc1.testns.svc.cluster.local."]),
        ok(
            "2.0.0.172.in-addr.arpa.",
            PTR,
            &["2.0.0.172.in-addr.arpa. 5 IN PTR 172-0-0-2.hdls1.testns.svc.cluster.local."],
        ),
        ok(
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.4.3.2.1.ip6.arpa.",
            PTR,
            &[
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.4.3.2.1.ip6.arpa. 5 IN PTR svc6.testns.svc.cluster.local.",
            ],
        ),
        Case { ns: &[REV_SOA], ..nxdomain("101.0.0.10.in-addr.arpa.", PTR) },
        Case { ns: &[REV_SOA], ..nxdomain("svc1.testns.svc.0.10.in-addr.arpa.", A) },
        nodata("svc1.testns.svc.cluster.local.", PTR),
        nxdomain("100.0.0.10.cluster.local.", PTR),
    ];
    check(&d, &cases).await;
}

#[tokio::test]
async fn pod_modes() {
    let state = coredns_fixture;
    let verified = dispatcher("cluster.local {\n kubernetes {\n pods verified\n }\n}\n", Controller::fixed(state()));
    check(
        &verified,
        &[
            ok(
                "10-240-0-1.podns.pod.cluster.local.",
                RecordType::A,
                &["10-240-0-1.podns.pod.cluster.local. 5 IN A 10.240.0.1"],
            ),
            nodata("podns.pod.cluster.local.", RecordType::A),
            nxdomain("pod-nons.pod.cluster.local.", RecordType::A),
            nxdomain("172-0-0-2.podns.pod.cluster.local.", RecordType::A),
            // The right IP in another namespace is not that pod.
            nxdomain("10-240-0-1.testns.pod.cluster.local.", RecordType::A),
        ],
    )
    .await;
    let disabled = dispatcher("cluster.local {\n kubernetes\n}\n", Controller::fixed(state()));
    check(
        &disabled,
        &[
            nxdomain("10-240-0-1.podns.pod.cluster.local.", RecordType::A),
            nxdomain("172-0-0-2.podns.pod.cluster.local.", RecordType::A),
        ],
    )
    .await;
}

#[tokio::test]
async fn ttl_and_fallthrough_and_sync() {
    let c = Controller::fixed(coredns_fixture());
    let up = FakeUpstream::start("192.0.2.9").await;
    let d = dispatcher(
        &format!(
            "cluster.local {{\n kubernetes {{\n ttl 30\n fallthrough\n }}\n hosts {{\n 10.9.9.9 other.svc.cluster.local\n fallthrough\n }}\n forward . {}\n}}\n",
            up.addr
        ),
        c.clone(),
    );
    let m = ask(&d, "svc1.testns.svc.cluster.local.", RecordType::A).await;
    assert_eq!(render(&m.answers), ["svc1.testns.svc.cluster.local. 30 IN A 10.0.0.1"]);
    let m = ask(&d, "other.svc.cluster.local.", RecordType::A).await;
    assert_eq!(render(&m.answers), ["other.svc.cluster.local. 3600 IN A 10.9.9.9"], "hosts runs first");
    let m = ask(&d, "nope.testns.svc.cluster.local.", RecordType::A).await;
    assert_eq!(render(&m.answers), ["nope.testns.svc.cluster.local. 60 IN A 192.0.2.9"], "fell through to forward");
    // Without sync, a missing name is SERVFAIL rather than NXDOMAIN (CoreDNS's notSynced case), SOA included.
    let unsynced = Controller::fixed(coredns_fixture());
    unsynced.set_synced(false);
    let d2 = dispatcher("cluster.local {\n kubernetes\n}\n", unsynced);
    let m = ask(&d2, "svc0.testns.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(m.authorities.len(), 1);
    // NODATA carries the configured TTL as the SOA minimum.
    let m = ask(&d, "svc1.testns.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(
        render(&m.authorities),
        ["cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. SERIAL 7200 1800 86400 30"]
    );
}

#[tokio::test]
async fn records_follow_state_changes() {
    let c = Controller::fixed(coredns_fixture());
    let d = dispatcher("cluster.local {\n kubernetes\n}\n", c.clone());
    c.update(|st| st.upsert_service(service("new", "testns", &["10.0.0.99"], vec![])));
    let m = ask(&d, "new.testns.svc.cluster.local.", RecordType::A).await;
    assert_eq!(render(&m.answers), ["new.testns.svc.cluster.local. 5 IN A 10.0.0.99"]);
    c.update(|st| st.delete_service("new.testns"));
    let m = ask(&d, "new.testns.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // A headless service without ready endpoints does not exist (the specification's NXDOMAIN).
    c.update(|st| st.delete_slice("testns", "hdls1-slice1"));
    let m = ask(&d, "hdls1.testns.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn truncation_over_udp() {
    let c = Controller::fixed(coredns_fixture());
    let addrs: Vec<(String, String)> = (1..=60).map(|i| (format!("10.77.0.{i}"), String::new())).collect();
    let refs: Vec<(&str, &str)> = addrs.iter().map(|(a, h)| (a.as_str(), h.as_str())).collect();
    c.update(|st| {
        st.upsert_service(service("big", "testns", &["None"], vec![]));
        st.upsert_slice(slice("big-1", "testns", "big", &refs, vec![]));
    });
    let d = dispatcher("cluster.local {\n kubernetes\n}\n", c);
    let client = "127.0.0.1:5000".parse().unwrap();
    let q = query("big.testns.svc.cluster.local.", RecordType::A).to_vec().unwrap();
    let udp = Message::from_vec(&d.handle_bytes(&q, client, Proto::Udp).await.unwrap()).unwrap();
    assert!(udp.metadata.truncation, "TC over 512 bytes");
    assert!(udp.answers.len() < 60);
    assert!(d.handle_bytes(&q, client, Proto::Udp).await.unwrap().len() <= 512);
    let tcp = Message::from_vec(&d.handle_bytes(&q, client, Proto::Tcp).await.unwrap()).unwrap();
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 60);
    // An EDNS buffer of 4096 takes them all, and the OPT record is echoed.
    let q = query_edns("big.testns.svc.cluster.local.", RecordType::A, 4096).to_vec().unwrap();
    let big = Message::from_vec(&d.handle_bytes(&q, client, Proto::Udp).await.unwrap()).unwrap();
    assert!(!big.metadata.truncation);
    assert_eq!(big.answers.len(), 60);
    assert_eq!(big.edns.as_ref().map(|e| e.max_payload()), Some(4096));
    let _ = encode;
}

#[tokio::test]
async fn cache_keeps_answers_and_denials() {
    let c = Controller::fixed(coredns_fixture());
    let d = dispatcher("cluster.local {\n cache 30\n kubernetes\n}\n", c.clone());
    let m = ask(&d, "svc1.testns.svc.cluster.local.", RecordType::A).await;
    assert_eq!(render(&m.answers), ["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"]);
    let m = ask(&d, "gone.testns.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    c.update(|st| {
        st.upsert_service(service("svc1", "testns", &["10.0.0.42"], vec![port("http", "tcp", 80)]));
        st.upsert_service(service("gone", "testns", &["10.0.0.43"], vec![]));
    });
    // Served from the cache (any case of the name), TTLs not above what is left.
    let m = ask(&d, "SVC1.testns.svc.cluster.local.", RecordType::A).await;
    assert!(m.answers[0].to_string().ends_with("A 10.0.0.1"), "{:?}", m.answers);
    assert!(m.answers[0].ttl <= 5);
    assert_eq!(m.queries[0].name.to_ascii(), "SVC1.testns.svc.cluster.local.");
    let m = ask(&d, "gone.testns.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "denial cached");
    // A different type is its own entry.
    let m = ask(&d, "svc1.testns.svc.cluster.local.", RecordType::SRV).await;
    assert!(!m.answers.is_empty());
    let metrics = cluster_dns::metrics::metrics().render();
    assert!(metrics.contains("coredns_cache_hits_total{"), "{metrics}");
    // The cache's TTL clamp: entries live for the record TTL (5 s, the floor), then the new state shows.
    tokio::time::sleep(std::time::Duration::from_millis(5100)).await;
    let m = ask(&d, "svc1.testns.svc.cluster.local.", RecordType::A).await;
    assert!(m.answers[0].to_string().ends_with("A 10.0.0.42"), "{:?}", m.answers);
}

/// kubeadm's Corefile: `disable success cluster.local` and `disable denial cluster.local` — the cluster zone's answers
/// and denials are never cached (changes show at once), while a bad `disable` kind is refused.
#[tokio::test]
async fn cache_disable_for_the_cluster_zone() {
    let c = Controller::fixed(coredns_fixture());
    let d = dispatcher(
        ".:53 {\n kubernetes cluster.local\n cache 30 {\n  disable success cluster.local\n  disable denial cluster.local\n }\n}\n",
        c.clone(),
    );
    let m = ask(&d, "svc1.testns.svc.cluster.local.", RecordType::A).await;
    assert!(m.answers[0].to_string().ends_with("A 10.0.0.1"), "{:?}", m.answers);
    let m = ask(&d, "gone.testns.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    c.update(|st| {
        st.upsert_service(service("svc1", "testns", &["10.0.0.42"], vec![port("http", "tcp", 80)]));
        st.upsert_service(service("gone", "testns", &["10.0.0.43"], vec![]));
    });
    let m = ask(&d, "svc1.testns.svc.cluster.local.", RecordType::A).await;
    assert!(m.answers[0].to_string().ends_with("A 10.0.0.42"), "answers not cached: {:?}", m.answers);
    let m = ask(&d, "gone.testns.svc.cluster.local.", RecordType::A).await;
    assert!(m.answers[0].to_string().ends_with("A 10.0.0.43"), "denials not cached: {:?}", m.answers);
    let env = cluster_dns::server::Env::new(None, 53);
    let built =
        cluster_dns::server::build(".:53 {\n cache {\n  disable everything\n }\n}\n", "Corefile", &env).map(|_| ());
    assert!(built.is_err_and(|e| e.contains("disable")));
}

#[tokio::test]
async fn rewrite_names_and_answers() {
    let c = Controller::fixed(coredns_fixture());
    let d = dispatcher(
        ". {\n rewrite name exact db.example.com. svc1.testns.svc.cluster.local.\n rewrite name suffix .corp.internal. .svc.cluster.local. answer auto\n rewrite name regex (.*)\\.pods\\.example\\.$ {1}.podns.pod.cluster.local answer name (.*)\\.podns\\.pod\\.cluster\\.local\\.$ {1}.pods.example\n kubernetes cluster.local {\n pods insecure\n }\n}\n",
        c,
    );
    let m = ask(&d, "db.example.com.", RecordType::A).await;
    assert_eq!(render(&m.answers), ["db.example.com. 5 IN A 10.0.0.1"]);
    assert_eq!(m.queries[0].name.to_ascii(), "db.example.com.");
    let m = ask(&d, "svc6.testns.corp.internal.", RecordType::AAAA).await;
    assert_eq!(render(&m.answers), ["svc6.testns.corp.internal. 5 IN AAAA 1234:abcd::1"]);
    let m = ask(&d, "10-1-2-3.pods.example.", RecordType::A).await;
    assert_eq!(render(&m.answers), ["10-1-2-3.pods.example. 5 IN A 10.1.2.3"]);
    // Names no rule matches pass unchanged.
    let m = ask(&d, "svc1.testns.svc.cluster.local.", RecordType::A).await;
    assert_eq!(render(&m.answers), ["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"]);
}

#[tokio::test]
async fn hosts_inline_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hosts");
    std::fs::write(&file, "10.1.1.1 db.example.org\nfd00::1 v6only.example.org\n").unwrap();
    let d = dispatcher(
        &format!(
            "example.org {{\n hosts {} {{\n 10.1.1.2 web.example.org\n ttl 60\n reload 1s\n }}\n}}\nnet {{\n hosts {} net {{\n fallthrough\n }}\n}}\n",
            file.display(),
            file.display()
        ),
        Controller::fixed(Default::default()),
    );
    let m = ask(&d, "db.example.org.", RecordType::A).await;
    assert_eq!(render(&m.answers), ["db.example.org. 60 IN A 10.1.1.1"]);
    assert!(m.metadata.authoritative);
    let m = ask(&d, "web.example.org.", RecordType::A).await;
    assert_eq!(render(&m.answers), ["web.example.org. 60 IN A 10.1.1.2"]);
    // Known name, other family: NODATA.
    let m = ask(&d, "v6only.example.org.", RecordType::A).await;
    assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0));
    // Unknown name without fallthrough: SERVFAIL, as CoreDNS (hosts has no SOA to deny with).
    let m = ask(&d, "nope.example.org.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    // PTR from the file.
    let m = ask(&d, "1.1.1.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused, "in-addr.arpa is not served by these blocks");
    // The file is re-read when it changes.
    std::fs::write(&file, "10.1.1.9 db.example.org\n").unwrap();
    let mut seen = false;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let m = ask(&d, "db.example.org.", RecordType::A).await;
        if render(&m.answers) == ["db.example.org. 60 IN A 10.1.1.9"] {
            seen = true;
            break;
        }
    }
    assert!(seen, "hosts file change picked up");
}

#[tokio::test]
async fn forward_to_fake_upstreams() {
    let up = FakeUpstream::start("192.0.2.7").await;
    let (dead, _guard) = dead_port();
    let d = dispatcher(
        &format!(
            ". {{\n forward . 127.0.0.1:{dead} {} {{\n policy sequential\n max_fails 1\n health_check 100ms\n }}\n}}\n",
            up.addr
        ),
        Controller::fixed(Default::default()),
    );
    for i in 0..3 {
        let m = ask(&d, &format!("host{i}.example.com."), RecordType::A).await;
        assert_eq!(render(&m.answers), [format!("host{i}.example.com. 60 IN A 192.0.2.7")]);
    }
    // Over TCP too.
    let m = d.handle(query("tcp.example.com.", RecordType::A), "127.0.0.1:1".parse().unwrap(), Proto::Tcp).await;
    assert_eq!(render(&m.answers), ["tcp.example.com. 60 IN A 192.0.2.7"]);
    assert!(up.count() >= 4);
    // Only names under FROM are forwarded; `except` keeps names back.
    let up2 = FakeUpstream::start("192.0.2.8").await;
    let d = dispatcher(
        &format!(". {{\n forward example.com {} {{\n except skip.example.com\n }}\n}}\n", up2.addr),
        Controller::fixed(Default::default()),
    );
    let m = ask(&d, "a.example.com.", RecordType::A).await;
    assert_eq!(render(&m.answers), ["a.example.com. 60 IN A 192.0.2.8"]);
    let m = ask(&d, "a.example.net.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "no next plugin: {m:?}");
    let m = ask(&d, "x.skip.example.com.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    // No upstream answers: SERVFAIL.
    let d = dispatcher(&format!(". {{\n forward . 127.0.0.1:{dead}\n}}\n"), Controller::fixed(Default::default()));
    let m = ask(&d, "x.example.com.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let metrics = cluster_dns::metrics::metrics().render();
    assert!(metrics.contains("coredns_proxy_request_duration_seconds_count{proxy_name=\"forward\""), "{metrics}");
}

#[tokio::test]
async fn stub_domain_blocks() {
    // kubeadm's "stub domain": a server block for consul.local forwarding elsewhere than ".".
    let main = FakeUpstream::start("192.0.2.1").await;
    let consul = FakeUpstream::start("10.150.0.1").await;
    let d = dispatcher(
        &format!(
            ".:53 {{\n errors\n forward . {}\n}}\nconsul.local:53 {{\n errors\n cache 30\n forward . {}\n}}\n",
            main.addr, consul.addr
        ),
        Controller::fixed(Default::default()),
    );
    let m = ask(&d, "web.service.consul.local.", RecordType::A).await;
    assert_eq!(render(&m.answers), ["web.service.consul.local. 60 IN A 10.150.0.1"]);
    let m = ask(&d, "example.com.", RecordType::A).await;
    assert_eq!(render(&m.answers), ["example.com. 60 IN A 192.0.2.1"]);
    assert_eq!((main.count(), consul.count()), (1, 1));
}

#[tokio::test]
async fn plugin_order_is_coredns_not_the_file() {
    // cache written after kubernetes still runs before it.
    let c = Controller::fixed(coredns_fixture());
    let d = dispatcher("cluster.local {\n kubernetes\n cache 30\n prometheus localhost:0\n}\n", c.clone());
    ask(&d, "svc1.testns.svc.cluster.local.", RecordType::A).await;
    c.update(|st| st.upsert_service(service("svc1", "testns", &["10.0.0.50"], vec![])));
    let m = ask(&d, "svc1.testns.svc.cluster.local.", RecordType::A).await;
    assert!(m.answers[0].to_string().ends_with("A 10.0.0.1"), "cached: {:?}", m.answers);
    let text = cluster_dns::metrics::metrics().render();
    assert!(text.contains("coredns_dns_requests_total{server=\"dns://:53\",zone=\"cluster.local.\",view=\"\",proto=\"udp\",family=\"1\",type=\"A\"}"), "{text}");
    assert!(text.contains("coredns_dns_responses_total{server=\"dns://:53\",zone=\"cluster.local.\",view=\"\",rcode=\"NOERROR\",plugin=\"cache\"}"), "{text}");
    assert!(text.contains("coredns_dns_request_duration_seconds_count{server=\"dns://:53\",zone=\"cluster.local.\",view=\"\",type=\"A\"}"), "{text}");
    let _ = Arc::new(());
}
