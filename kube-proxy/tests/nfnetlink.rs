//! The nftables proxier's netlink writer against `nft` itself (needs root and `nft`): the same partial-sync
//! transaction applied with [`kube_proxy::nfnetlink`] in one fresh network namespace and with `nft -f` in another
//! leaves the same ruleset, as `nft list table` prints it; a batch the kernel refuses changes nothing and names
//! the line. Each namespace belongs to a thread of its own (`unshare`), and dies with it.

use std::io::Write;
use std::process::{Command, Stdio};

use kube_proxy::nfnetlink::{self, Outcome};

/// The table a previous sync left: the skeleton's chains and maps, a Service with one endpoint, an old endpoint.
const BEFORE: &str = r#"
add table ip kube-proxy { comment "rules for kube-proxy" ; }
add chain ip kube-proxy mark-for-masquerade
add rule ip kube-proxy mark-for-masquerade mark set mark or 0x4000
add chain ip kube-proxy reject-chain
add rule ip kube-proxy reject-chain reject
add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }
add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }
add map ip kube-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; }
add map ip kube-proxy service-nodeports { type inet_proto . inet_service : verdict ; }
add set ip kube-proxy endpoint-hairpin { type ipv4_addr . ipv4_addr ; }
add map ip kube-proxy endpoints-tcp-0 { typeof numgen random mod 65536 : ip daddr . tcp dport ; flags interval ; }
add map ip kube-proxy endpoints-udp-0 { typeof numgen random mod 65536 : ip daddr . udp dport ; flags interval ; }
add element ip kube-proxy endpoint-hairpin { 10.1.0.4 . 10.1.0.4 }
add map ip kube-proxy endpoints-DDDD-ns/api/tcp/http { typeof numgen random mod 65536 : ip daddr . tcp dport ; flags interval ; }
add element ip kube-proxy endpoints-DDDD-ns/api/tcp/http { 0-65535 : 10.1.0.7 . 80 }
add chain ip kube-proxy service-DDDD-ns/api/tcp/http
add rule ip kube-proxy service-DDDD-ns/api/tcp/http meta l4proto tcp dnat ip to numgen random mod 65536 map @endpoints-DDDD-ns/api/tcp/http
add chain ip kube-proxy endpoint-OLD-ns/web/tcp/http__10.1.0.4/8080
add rule ip kube-proxy endpoint-OLD-ns/web/tcp/http__10.1.0.4/8080 meta l4proto tcp dnat to 10.1.0.4:8080
add chain ip kube-proxy service-AAAA-ns/web/tcp/http
add rule ip kube-proxy service-AAAA-ns/web/tcp/http goto endpoint-OLD-ns/web/tcp/http__10.1.0.4/8080
add element ip kube-proxy cluster-ips { 10.96.0.10 }
add element ip kube-proxy cluster-ips { 10.96.0.12 }
add element ip kube-proxy service-ips { 10.96.0.10 . tcp . 80 : goto service-AAAA-ns/web/tcp/http }
"#;

/// A partial sync: the Service's endpoint replaced by two, a DNS Service without endpoints, a NodePort, a gone
/// ClusterIP, the old endpoint chain deleted, and another Service's endpoint map rewritten with three endpoints.
const PARTIAL: &str = r#"
add chain ip kube-proxy endpoint-BBBB-ns/web/tcp/http__10.1.0.5/8080
add chain ip kube-proxy endpoint-CCCC-ns/web/tcp/http__10.1.0.6/8080
add chain ip kube-proxy service-AAAA-ns/web/tcp/http
flush chain ip kube-proxy service-AAAA-ns/web/tcp/http
add rule ip kube-proxy service-AAAA-ns/web/tcp/http ip daddr 10.96.0.10 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
add rule ip kube-proxy service-AAAA-ns/web/tcp/http ip daddr 10.96.0.10 tcp dport 80 ip saddr != 10.240.0.0/12 jump mark-for-masquerade
add rule ip kube-proxy service-AAAA-ns/web/tcp/http ip daddr 10.96.0.10 sctp dport 80 jump mark-for-masquerade
add rule ip kube-proxy service-AAAA-ns/web/tcp/http numgen random mod 2 == 0 goto endpoint-BBBB-ns/web/tcp/http__10.1.0.5/8080
add rule ip kube-proxy service-AAAA-ns/web/tcp/http goto endpoint-CCCC-ns/web/tcp/http__10.1.0.6/8080
add rule ip kube-proxy endpoint-BBBB-ns/web/tcp/http__10.1.0.5/8080 ip saddr 10.1.0.5 jump mark-for-masquerade
add rule ip kube-proxy endpoint-BBBB-ns/web/tcp/http__10.1.0.5/8080 meta l4proto tcp dnat to 10.1.0.5:8080
add rule ip kube-proxy endpoint-CCCC-ns/web/tcp/http__10.1.0.6/8080 ip saddr 10.1.0.6 jump mark-for-masquerade
add rule ip kube-proxy endpoint-CCCC-ns/web/tcp/http__10.1.0.6/8080 meta l4proto udp dnat to 10.1.0.6:8080
add element ip kube-proxy cluster-ips { 10.96.0.11 }
add element ip kube-proxy no-endpoint-services { 10.96.0.11 . udp . 53 comment "kube-system/dns:dns" : goto reject-chain }
add element ip kube-proxy no-endpoint-services { 10.96.0.11 . tcp . 53 comment "kube-system/dns:dns-tcp" : drop }
add element ip kube-proxy service-nodeports { tcp . 30080 : goto service-AAAA-ns/web/tcp/http }
delete element ip kube-proxy cluster-ips { 10.96.0.12 }
flush map ip kube-proxy endpoints-DDDD-ns/api/tcp/http
add element ip kube-proxy endpoints-DDDD-ns/api/tcp/http { 0-21844 : 10.1.0.7 . 80, 21845-43689 : 10.1.0.8 . 80, 43690-65535 : 10.1.0.9 . 8080 }
add element ip kube-proxy endpoint-hairpin { 10.1.0.8 . 10.1.0.8 }
delete element ip kube-proxy endpoint-hairpin { 10.1.0.4 . 10.1.0.4 }
flush chain ip kube-proxy endpoint-OLD-ns/web/tcp/http__10.1.0.4/8080
delete chain ip kube-proxy endpoint-OLD-ns/web/tcp/http__10.1.0.4/8080
"#;

fn nft(stdin: &str) -> String {
    let mut child =
        Command::new("nft").args(["-f", "-"]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("nft");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "nft -f: {}", String::from_utf8_lossy(&out.stderr));
    list()
}

fn list() -> String {
    let out = Command::new("nft").args(["list", "table", "ip", "kube-proxy"]).output().expect("nft");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `f` on a thread in a network namespace of its own (the `nft` it starts inherit it).
#[allow(unsafe_code)]
fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: the calling thread is ours alone and only moves itself to a new network namespace; no other
        // thread shares or reads its namespace state.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }.expect("unshare");
        f()
    })
    .join()
    .unwrap()
}

fn usable() -> bool {
    rustix::process::geteuid().is_root() && Command::new("nft").arg("--version").output().is_ok()
}

#[test]
fn a_partial_sync_through_netlink_leaves_what_nft_leaves() {
    if !usable() {
        eprintln!("skipped: needs root and nft");
        return;
    }
    let with_nft = in_new_netns(|| {
        nft(BEFORE);
        nft(PARTIAL)
    });
    let with_netlink = in_new_netns(|| {
        nft(BEFORE);
        let batch = nfnetlink::compile("ip kube-proxy", PARTIAL).expect("every line compiles");
        let outcome = nfnetlink::send(&batch).expect("an answer");
        assert!(matches!(outcome, Outcome::Applied), "{outcome:?}");
        list()
    });
    assert!(with_nft.contains("dnat to 10.1.0.6:8080") && !with_nft.contains("10.1.0.4"), "{with_nft}");
    assert!(with_nft.contains("21845-43689 : 10.1.0.8 . 80"), "{with_nft}");
    assert_eq!(with_netlink, with_nft);
}

#[test]
fn a_refused_batch_changes_nothing_and_names_its_line() {
    if !usable() {
        eprintln!("skipped: needs root and nft");
        return;
    }
    let (before, after, outcome) = in_new_netns(|| {
        let before = nft(BEFORE);
        // The first lines are fine; the third names an element that does not exist.
        let text = "add chain ip kube-proxy endpoint-NEW\n\
                    add element ip kube-proxy cluster-ips { 10.96.0.13 }\n\
                    delete element ip kube-proxy cluster-ips { 10.96.0.99 }\n\
                    add element ip kube-proxy cluster-ips { 10.96.0.14 }\n";
        let outcome = nfnetlink::send(&nfnetlink::compile("ip kube-proxy", text).unwrap()).expect("an answer");
        (before, list(), outcome)
    });
    match outcome {
        Outcome::Refused { errno, line } => {
            assert_eq!(errno, rustix::io::Errno::NOENT.raw_os_error(), "ENOENT");
            assert_eq!(line, Some(2));
        }
        other => panic!("applied: {other:?}"),
    }
    assert_eq!(after, before, "nothing of the refused batch stays");
}

/// The golden full sync (every kind of Service the golden tests write, TCP and UDP) loads into a kernel, and the
/// golden partial sync applies after it the same through netlink as through `nft -f`.
#[test]
fn the_golden_syncs_load_into_the_kernel() {
    if !usable() {
        eprintln!("skipped: needs root and nft");
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let overall = std::fs::read_to_string(dir.join("nftables-overall.nft")).unwrap();
    let partial = std::fs::read_to_string(dir.join("nftables-partial.nft")).unwrap();
    let (o, p) = (overall.clone(), partial.clone());
    let with_nft = in_new_netns(move || {
        nft(&o);
        nft(&p)
    });
    let with_netlink = in_new_netns(move || {
        nft(&overall);
        let batch = nfnetlink::compile("ip kube-proxy", &partial).expect("a partial sync compiles");
        let outcome = nfnetlink::send(&batch).expect("an answer");
        assert!(matches!(outcome, Outcome::Applied), "{outcome:?}");
        list()
    });
    assert!(with_nft.contains("udp dport"), "{with_nft}");
    assert_eq!(with_netlink, with_nft);
}

/// The Service part of a full sync (after the skeleton, which `nft` writes): the dispatch maps and sets emptied
/// and refilled, Service chains DNATing through their blocks of the endpoints maps (one per protocol here), each
/// map's elements after every rule; `count` Services make the batch megabytes (past the socket's default send
/// buffer).
fn full_sync(count: u32) -> String {
    let mut text = String::from(
        "flush set ip kube-proxy cluster-ips\nflush map ip kube-proxy service-ips\n\
         flush set ip kube-proxy endpoint-hairpin\nflush map ip kube-proxy endpoints-tcp-0\n\
         flush map ip kube-proxy endpoints-udp-0\n",
    );
    let mut elements = String::new();
    for i in 0..count {
        let (ip, chain, base) =
            (format!("10.97.{}.{}", i / 250, i % 250 + 1), format!("service-{i:05}-ns/s/tcp/p"), i / 2 * 65536);
        let (proto, port) = if i % 2 == 0 { ("tcp", 80) } else { ("udp", 53) };
        text += &format!("add chain ip kube-proxy {chain}\n");
        text += &format!("add element ip kube-proxy cluster-ips {{ {ip} }}\n");
        text += &format!("add element ip kube-proxy service-ips {{ {ip} . {proto} . {port} : goto {chain} }}\n");
        text += &format!(
            "add element ip kube-proxy endpoint-hairpin {{ 10.2.{}.{} . 10.2.{}.{} }}\n",
            i / 250,
            i % 250,
            i / 250,
            i % 250
        );
        elements += &format!(
            "add element ip kube-proxy endpoints-{proto}-0 {{ {}-{} : 10.1.0.7 . 8080, {}-{} : 10.1.{}.{} . 8080, {}-{} : 10.1.0.9 . 8081 }}\n",
            base,
            base + 21844,
            base + 21845,
            base + 43689,
            i / 250,
            i % 250,
            base + 43690,
            base + 65535
        );
        text += &format!(
            "add rule ip kube-proxy {chain} ip daddr {ip} {proto} dport {port} ip saddr != 10.244.0.0/16 jump mark-for-masquerade\n"
        );
        text += &format!(
            "add rule ip kube-proxy {chain} meta l4proto {proto} dnat ip to numgen random mod 65536 offset {base} map @endpoints-{proto}-0\n"
        );
    }
    // Several elements of a map in one line, with comments and verdicts, as a sync writes what it added.
    text += "add element ip kube-proxy no-endpoint-services { 10.97.200.1 . tcp . 80 comment \"a/b:c\" : goto reject-chain, \
             10.97.200.2 . udp . 53 comment \"a/d:e\" : drop, 10.97.200.3 . tcp . 8080 : drop }\n";
    text += "add element ip kube-proxy cluster-ips { 10.97.200.1, 10.97.200.2, 10.97.200.3 }\n";
    text + &elements
}

#[test]
fn a_full_sync_through_netlink_leaves_what_nft_leaves() {
    if !usable() {
        eprintln!("skipped: needs root and nft");
        return;
    }
    // Service 1's block (the first UDP one) goes from three endpoints to one, as a partial sync writes it.
    let change = "delete element ip kube-proxy endpoints-udp-0 { 0-21844, 21845-43689, 43690-65535 }\n\
                  add element ip kube-proxy endpoints-udp-0 { 0-65535 : 10.1.0.30 . 53 }\n";
    for count in [3, 3000] {
        let (text, text2) = (full_sync(count), full_sync(count));
        let with_nft = in_new_netns(move || {
            nft(BEFORE);
            nft(&text);
            nft(change)
        });
        let with_netlink = in_new_netns(move || {
            nft(BEFORE);
            let batch = nfnetlink::compile("ip kube-proxy", &text2).expect("a full sync's Service part compiles");
            assert!(count < 1000 || batch.len() > 1 << 20, "{} bytes", batch.len());
            let outcome = nfnetlink::send(&batch).expect("an answer");
            assert!(matches!(outcome, Outcome::Applied), "{outcome:?}");
            let outcome = nfnetlink::send(&nfnetlink::compile("ip kube-proxy", change).unwrap()).expect("an answer");
            assert!(matches!(outcome, Outcome::Applied), "{outcome:?}");
            list()
        });
        assert!(with_nft.contains("udp dnat ip to numgen random mod 65536 map @endpoints-udp-0"), "{with_nft}");
        assert!(with_nft.contains("tcp dnat ip to numgen random mod 65536 offset 65536 map @endpoints-tcp-0"));
        assert!(with_nft.contains("0-65535 : 10.1.0.30 . 53"), "{with_nft}");
        assert!(with_nft.contains("10.97.200.2 . udp . 53 comment \"a/d:e\" : drop"), "{with_nft}");
        assert!(!with_nft.contains("10.1.0.4 . 10.1.0.4") && !with_nft.contains("10.96.0.12"), "{with_nft}");
        assert_eq!(with_netlink, with_nft, "{count} Services");
    }
}
