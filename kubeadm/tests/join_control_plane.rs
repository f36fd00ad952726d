//! `kubeadm join --control-plane --certificate-key` against a real in-process kube-apiserver and a real etcd
//! (Debian's etcd 3.4 on loopback, with the first node's kubeadm-made certificates): the first control plane is
//! made by kubeadm's init phases (certs, kubeconfig, upload-config, upload-certs, bootstrap-token) on stacked etcd
//! behind a controlPlaneEndpoint; the second joins into its own root, downloads the shared certificates, writes its
//! own certificates, kubeconfigs and static pods, adds itself to etcd and is marked as a control plane. Skipped
//! without an `etcd` binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Proc, Stdio};
use std::sync::Arc;

use kube_apiserver::testing::{TestApiserver, within};
use kubeadm::cmd::{self, Command};
use kubeadm::config::{self, InitConfig};
use kubeadm::fs::{Fs, HostFs};
use kubeadm::phases::{Context, Printer};
use serde_json::{Value, json};

/// The etcd process and its data directory (removed after it).
struct Etcd(Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// etcd as node1's static pod would run it, on loopback ports of its own.
fn start_etcd(pki: &Path) -> Option<(Etcd, u16, u16)> {
    let (client, peer, metrics) = (free_port(), free_port(), free_port());
    let data = tempfile::tempdir().unwrap();
    let p = |f: &str| pki.join(f).display().to_string();
    let child = Proc::new("etcd")
        .args([
            "--name=node1".to_string(),
            format!("--data-dir={}", data.path().join("etcd").display()),
            format!("--listen-client-urls=https://127.0.0.1:{client}"),
            format!("--advertise-client-urls=https://127.0.0.1:{client}"),
            format!("--listen-peer-urls=https://127.0.0.1:{peer}"),
            format!("--initial-advertise-peer-urls=https://127.0.0.1:{peer}"),
            format!("--initial-cluster=node1=https://127.0.0.1:{peer}"),
            format!("--listen-metrics-urls=http://127.0.0.1:{metrics}"),
            format!("--cert-file={}", p("etcd/server.crt")),
            format!("--key-file={}", p("etcd/server.key")),
            format!("--trusted-ca-file={}", p("etcd/ca.crt")),
            "--client-cert-auth=true".into(),
            format!("--peer-cert-file={}", p("etcd/peer.crt")),
            format!("--peer-key-file={}", p("etcd/peer.key")),
            format!("--peer-trusted-ca-file={}", p("etcd/ca.crt")),
            "--peer-client-cert-auth=true".into(),
            // etcd matches a peer's certificate SANs against the connection's source address; on loopback cp2
            // (127.0.0.2) connects from 127.0.0.1, which its certificate does not name.
            "--experimental-peer-skip-client-san-verification=true".into(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some((Etcd(child, data), client, peer))
}

/// Signs cluster-info as the controller-manager's bootstrapsigner would.
async fn sign_cluster_info(api: &TestApiserver) {
    let secrets =
        api.client.api("", "v1", "secrets").unwrap().namespaced("kube-system").list(&Default::default()).await.unwrap();
    let secrets: Vec<Arc<Value>> = secrets["items"].as_array().unwrap().iter().cloned().map(Arc::new).collect();
    let cms = api.client.api("", "v1", "configmaps").unwrap().namespaced("kube-public");
    let cm = cms.get("cluster-info").await.unwrap();
    let signed =
        kube_controller_manager::controllers::bootstrapsigner::signed_config_map(&cm, &secrets, jiff::Timestamp::now())
            .unwrap();
    cms.replace("cluster-info", &signed).await.unwrap();
}

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn a_second_control_plane_joins_with_the_uploaded_certificates_and_a_new_etcd_member() {
    if Proc::new("etcd").arg("--version").output().is_err() {
        eprintln!("etcd is not installed: skipped");
        return;
    }
    let api = TestApiserver::start_secure().await;
    let port = api.config.server.rsplit(':').next().unwrap().to_string();
    let endpoint = format!("127.0.0.1:{port}");

    // node1: kubeadm's init phases on stacked etcd, certificates uploaded.
    let first = tempfile::tempdir().unwrap();
    let fs1 = HostFs::new(first.path());
    for f in ["ca.crt", "ca.key"] {
        fs1.write(
            &PathBuf::from("/etc/kubernetes/pki").join(f),
            &std::fs::read(api.dir.path().join(f)).unwrap(),
            0o600,
        )
        .unwrap();
    }
    let text = format!(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nbootstrapTokens:\n- token: abcdef.0123456789abcdef\nlocalAPIEndpoint:\n  advertiseAddress: 127.0.0.1\n  bindPort: {port}\nnodeRegistration:\n  name: node1\ncertificateKey: {KEY}\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\ncontrolPlaneEndpoint: {endpoint}\netcd:\n  local: {{}}\nnetworking:\n  podSubnet: 10.253.0.0/16\n"
    );
    let mut cfg = InitConfig::from_documents(config::parse_documents(&text).unwrap()).unwrap();
    let c1 = Context {
        fs: Arc::new(fs1),
        out: Printer::capture(),
        kubelet: Arc::new(kubeadm::kubelet::Fake::default()),
        now: None,
        host: false,
    };
    let flags = cmd::init::InitFlags { upload_certs: true, ..Default::default() };
    for p in ["certs", "kubeconfig", "upload-config", "upload-certs", "bootstrap-token"] {
        within(30, p, cmd::init::run_phase(&c1, &mut cfg, &flags, p, None))
            .await
            .unwrap_or_else(|e| panic!("{p}: {e}"));
    }
    sign_cluster_info(&api).await;
    let pki1 = first.path().join("etc/kubernetes/pki");
    let (_etcd, etcd_client_port, etcd_peer_port) = start_etcd(&pki1).expect("etcd starts");
    let ctx1 = Context { out: Printer::capture(), ..c1.clone() };
    let etcd_url = format!("https://127.0.0.1:{etcd_client_port}");
    within(30, "etcd up", async {
        loop {
            if let Ok(mut ec) =
                kubeadm::phases::joincontrolplane::etcd_client(&ctx1, &cfg, std::slice::from_ref(&etcd_url)).await
                && ec.member_list().await.is_ok()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    // What node1's kubelet would have published: the etcd mirror pod with its client URL (a moment after the join
    // starts: the join waits for it, as upstream's polls for up to a minute), and node cp2 registering.
    let pods = api.client.api("", "v1", "pods").unwrap().namespaced("kube-system");
    let mirror = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        pods.create(&json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "etcd-node1", "namespace": "kube-system",
                "labels": {"component": "etcd", "tier": "control-plane"},
                "annotations": {
                    "kubeadm.kubernetes.io/etcd.advertise-client-urls": format!("https://127.0.0.1:{etcd_client_port}"),
                    "kubernetes.io/config.mirror": "x"}},
            "spec": {"nodeName": "node1", "containers": [{"name": "etcd", "image": "registry.k8s.io/etcd:3.5.21-0"}]},
        }))
        .await
        .unwrap();
    });
    api.client
        .api("", "v1", "nodes")
        .unwrap()
        .create(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "cp2"}}))
        .await
        .unwrap();

    // cp2 joins as a control plane.
    let second = tempfile::tempdir().unwrap();
    let fs2 = Arc::new(HostFs::new(second.path()));
    let kfs = fs2.clone();
    let kubelet = kubeadm::kubelet::Fake {
        on_restart: Some(Box::new(move || {
            kfs.write(Path::new("/etc/kubernetes/kubelet.conf"), b"written by the kubelet", 0o600).unwrap();
        })),
        ..Default::default()
    };
    let c2 = Context { fs: fs2.clone(), out: Printer::capture(), kubelet: Arc::new(kubelet), now: None, host: false };
    let hash = kubeadm::token::ca_cert_hash(&api.config.ca_pem.clone().unwrap()).unwrap();
    let join = cmd::JoinFlags {
        endpoint: Some(endpoint.clone()),
        token: Some("abcdef.0123456789abcdef".into()),
        discovery_token_ca_cert_hash: vec![hash],
        node_name: Some("cp2".into()),
        control_plane: true,
        certificate_key: Some(KEY.into()),
        apiserver_advertise_address: Some("127.0.0.2".into()),
        ..Default::default()
    };
    within(60, "join --control-plane", cmd::run_with(&c2, Command::Join(join))).await.unwrap_or_else(|e| {
        panic!("{e}\n{}", c2.out.text());
    });
    mirror.await.unwrap();
    let out = c2.out.text();
    for line in [
        "[preflight] Running pre-flight checks before initializing the new control plane instance",
        "[download-certs] Downloading the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace",
        "[control-plane] Creating static Pod manifest for \"kube-apiserver\"",
        "[etcd] Announced new etcd member joining to the existing etcd cluster",
        "[mark-control-plane] Marking the node cp2 as control-plane by adding the labels",
        "This node has joined the cluster and a new control plane instance was created:",
        "* A new etcd member was added to the local/stacked etcd cluster.",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    // The shared certificates are node1's; the node's own are new, for its own addresses, from the same CAs.
    for f in ["ca.key", "front-proxy-ca.key", "sa.key", "etcd/ca.key"] {
        assert_eq!(
            fs2.read(&PathBuf::from("/etc/kubernetes/pki").join(f)).unwrap(),
            std::fs::read(pki1.join(f)).unwrap(),
            "{f}"
        );
    }
    let crt = kubeadm::pki::parse_cert(&fs2.read(Path::new("/etc/kubernetes/pki/apiserver.crt")).unwrap()).unwrap();
    assert_eq!(crt.issuer_cn, "kubernetes");
    assert!(crt.alt_names.ips.iter().any(|i| i.to_string() == "127.0.0.2"), "{:?}", crt.alt_names);
    assert!(crt.alt_names.dns.iter().any(|d| d == "cp2"));
    assert_ne!(
        fs2.read(Path::new("/etc/kubernetes/pki/apiserver.crt")).unwrap(),
        std::fs::read(pki1.join("apiserver.crt")).unwrap()
    );
    let peer = kubeadm::pki::parse_cert(&fs2.read(Path::new("/etc/kubernetes/pki/etcd/peer.crt")).unwrap()).unwrap();
    assert_eq!((peer.common_name.as_str(), peer.issuer_cn.as_str()), ("cp2", "etcd-ca"));
    for comp in ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"] {
        assert!(fs2.exists(&PathBuf::from(format!("/etc/kubernetes/manifests/{comp}.yaml"))), "{comp}");
    }
    assert!(
        fs2.read_string(Path::new("/etc/kubernetes/admin.conf"))
            .unwrap()
            .contains(&format!("server: https://{endpoint}"))
    );
    let etcd = fs2.read_string(Path::new("/etc/kubernetes/manifests/etcd.yaml")).unwrap();
    let initial = etcd.lines().find(|l| l.contains("--initial-cluster=")).unwrap();
    let mut members: Vec<&str> = initial.trim().trim_start_matches("- --initial-cluster=").split(',').collect();
    members.sort();
    assert_eq!(
        members,
        ["cp2=https://127.0.0.2:2380".to_string(), format!("node1=https://127.0.0.1:{etcd_peer_port}")]
    );
    assert!(etcd.contains("- --initial-cluster-state=existing"), "{etcd}");
    assert!(etcd.contains("- --advertise-client-urls=https://127.0.0.2:2379"), "{etcd}");

    // etcd has the new member (not started: it has no name yet).
    let mut ec = kubeadm::phases::joincontrolplane::etcd_client(&ctx1, &cfg, &[etcd_url]).await.unwrap();
    let list = ec.member_list().await.unwrap();
    let urls: Vec<String> = list.members().iter().flat_map(|m| m.peer_urls().to_vec()).collect();
    assert!(urls.contains(&"https://127.0.0.2:2380".to_string()), "{urls:?}");
    assert_eq!(list.members().len(), 2);

    let node = api.client.api("", "v1", "nodes").unwrap().get("cp2").await.unwrap();
    assert_eq!(node["metadata"]["labels"]["node-role.kubernetes.io/control-plane"], "");
    assert_eq!(node["spec"]["taints"][0]["key"], "node-role.kubernetes.io/control-plane");

    // cp2's etcd starts as its manifest says (peer 127.0.0.2:2380 on loopback; the client port is the test's),
    // then `kubeadm reset` on cp2 takes its member out of the cluster again.
    if std::net::TcpListener::bind("127.0.0.2:2380").is_err() {
        eprintln!("127.0.0.2:2380 is taken: reset's member removal not exercised");
        return;
    }
    let pki2 = second.path().join("etc/kubernetes/pki");
    let data2 = tempfile::tempdir().unwrap();
    let client2 = free_port();
    let p2 = |f: &str| pki2.join(f).display().to_string();
    let mut args: Vec<String> = etcd
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- --"))
        .filter(|a| {
            ![
                "data-dir=",
                "listen-client-urls=",
                "advertise-client-urls=",
                "listen-metrics-urls=",
                "cert-file=",
                "key-file=",
                "trusted-ca-file=",
                "peer-cert-file=",
                "peer-key-file=",
                "peer-trusted-ca-file=",
            ]
            .iter()
            .any(|p| a.starts_with(p))
        })
        .map(|a| format!("--{a}"))
        .collect();
    args.extend([
        format!("--data-dir={}", data2.path().join("etcd").display()),
        format!("--listen-client-urls=https://127.0.0.2:{client2}"),
        format!("--advertise-client-urls=https://127.0.0.2:{client2}"),
        format!("--listen-metrics-urls=http://127.0.0.2:{}", free_port()),
        format!("--cert-file={}", p2("etcd/server.crt")),
        format!("--key-file={}", p2("etcd/server.key")),
        format!("--trusted-ca-file={}", p2("etcd/ca.crt")),
        format!("--peer-cert-file={}", p2("etcd/peer.crt")),
        format!("--peer-key-file={}", p2("etcd/peer.key")),
        format!("--peer-trusted-ca-file={}", p2("etcd/ca.crt")),
    ]);
    let child = Proc::new("etcd").args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let _etcd2 = Etcd(child, data2);
    within(30, "cp2's etcd member started", async {
        loop {
            if let Ok(l) = ec.member_list().await
                && l.members().iter().all(|m| !m.name().is_empty())
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
    .await;
    let rc = Context { out: Printer::capture(), ..c2.clone() };
    within(60, "reset", cmd::run_with(&rc, Command::Reset(cmd::ResetFlags { force: true, ..Default::default() })))
        .await
        .unwrap();
    let out = rc.out.text();
    assert!(out.contains("[reset] Removed etcd member https://127.0.0.2:2380"), "{out}");
    let list = ec.member_list().await.unwrap();
    let names: Vec<&str> = list.members().iter().map(|m| m.name()).collect();
    assert_eq!(names, ["node1"]);
}

#[test]
fn control_plane_join_needs_an_endpoint_and_a_shareable_store() {
    let parse = |t: &str| InitConfig::from_documents(config::parse_documents(t).unwrap()).unwrap();
    let base = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint:\n  advertiseAddress: 10.0.0.5\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n";
    let e = kubeadm::phases::joincontrolplane::check(&parse(base)).unwrap_err().to_string();
    assert!(e.starts_with("unable to add a new control plane instance to a cluster that doesn't have a stable controlPlaneEndpoint address"), "{e}");
    let e = kubeadm::phases::joincontrolplane::check(&parse(&format!("{base}controlPlaneEndpoint: lb:6443\n")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("embedded store"), "{e}");
    kubeadm::phases::joincontrolplane::check(&parse(&format!(
        "{base}controlPlaneEndpoint: lb:6443\netcd:\n  local: {{}}\n"
    )))
    .unwrap();
}
