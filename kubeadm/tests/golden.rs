//! Golden-file tests of each file-writing phase through the in-memory filesystem: printed default
//! configurations, static pod manifests (embedded store and local etcd), kubelet files and add-on objects;
//! certificates and kubeconfigs parsed back for their subjects, SANs, usages and lifetimes. Set
//! `UPDATE_GOLDEN=1` to rewrite the files under tests/testdata.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kubeadm::cmd::{self, Command};
use kubeadm::config::{self, InitConfig};
use kubeadm::fs::{Fs, MemFs};
use kubeadm::phases::{self, Context, Printer};
use kubeadm::pki;

fn golden(name: &str, got: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/testdata").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(got, want, "golden file {name} differs");
}

fn now() -> jiff::Timestamp {
    "2025-06-01T12:00:00Z".parse().unwrap()
}

fn ctx(fs: Arc<MemFs>) -> Context {
    Context {
        fs,
        out: Printer::capture(),
        kubelet: Arc::new(kubeadm::kubelet::Fake::default()),
        now: Some(now()),
        host: false,
    }
}

const CONFIG: &str = r#"apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
- token: abcdef.0123456789abcdef
localAPIEndpoint:
  advertiseAddress: 10.0.0.5
nodeRegistration:
  name: node1
  criSocket: unix:///run/containerd/containerd.sock
  kubeletExtraArgs:
  - name: node-ip
    value: 10.0.0.5
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
controlPlaneEndpoint: cp.example:6443
networking:
  podSubnet: 10.244.0.0/16
apiServer:
  certSANs: [extra.example, 192.0.2.9]
  extraArgs:
  - name: v
    value: "2"
  - name: authorization-mode
    value: Node,RBAC,AlwaysAllow
  extraVolumes:
  - name: audit
    hostPath: /var/log/kubernetes
    mountPath: /var/log/kubernetes
    pathType: DirectoryOrCreate
controllerManager:
  extraArgs:
  - name: v
    value: "3"
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
serverTLSBootstrap: true
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
"#;

fn cfg(extra: &str) -> InitConfig {
    let text = format!("{CONFIG}{extra}");
    InitConfig::from_documents(config::parse_documents(&text).unwrap()).unwrap()
}

async fn file_phases(c: &Context, cfg: &mut InitConfig) {
    let flags = cmd::init::InitFlags::default();
    for p in ["certs", "kubeconfig", "etcd", "control-plane", "kubelet-start"] {
        cmd::init::run_phase(c, cfg, &flags, p, None).await.unwrap();
    }
}

fn read(fs: &MemFs, p: &str) -> String {
    fs.read_string(Path::new(p)).unwrap()
}

#[tokio::test]
async fn config_print_defaults_match_upstream_layout() {
    golden("init-defaults.yaml", &cmd::config::print_defaults("init-defaults", &[]).unwrap());
    golden("join-defaults.yaml", &cmd::config::print_defaults("join-defaults", &[]).unwrap());
    let with =
        cmd::config::print_defaults("init-defaults", &["KubeletConfiguration".into(), "KubeProxyConfiguration".into()])
            .unwrap();
    assert!(with.contains("kind: KubeletConfiguration") && with.contains("kind: KubeProxyConfiguration"));
    // What `print` prints is a valid configuration again.
    let docs = config::parse_documents(&cmd::config::print_defaults("init-defaults", &[]).unwrap()).unwrap();
    let c = InitConfig::from_documents(docs).unwrap();
    assert_eq!(c.cluster.kubernetes_version, "v1.33.0");
    assert_eq!(c.init.bootstrap_tokens[0].token, "abcdef.0123456789abcdef");
}

#[tokio::test]
async fn images_list_names_every_component_image() {
    let c = ctx(Arc::new(MemFs::new()));
    cmd::run_with(
        &c,
        Command::Config(cmd::config::ConfigCmd::Images {
            action: "list".into(),
            config: None,
            kubernetes_version: None,
            image_repository: None,
            output: "text".into(),
        }),
    )
    .await
    .unwrap();
    assert_eq!(
        c.out.text(),
        "registry.k8s.io/kube-apiserver:v1.33.0\nregistry.k8s.io/kube-controller-manager:v1.33.0\nregistry.k8s.io/kube-scheduler:v1.33.0\nregistry.k8s.io/kube-proxy:v1.33.0\nregistry.k8s.io/coredns/coredns:v1.12.0\nregistry.k8s.io/pause:3.10\n"
    );
}

#[tokio::test]
async fn init_file_phases_write_upstreams_files() {
    let fs = Arc::new(MemFs::new());
    let c = ctx(fs.clone());
    let mut cfg = cfg("");
    file_phases(&c, &mut cfg).await;

    let paths: Vec<String> = fs.paths().iter().map(|p| format!("{} {:o}", p.display(), fs.mode(p).unwrap())).collect();
    golden("init-files.txt", &(paths.join("\n") + "\n"));
    golden("kube-apiserver.yaml", &read(&fs, "/etc/kubernetes/manifests/kube-apiserver.yaml"));
    golden("kube-controller-manager.yaml", &read(&fs, "/etc/kubernetes/manifests/kube-controller-manager.yaml"));
    golden("kube-scheduler.yaml", &read(&fs, "/etc/kubernetes/manifests/kube-scheduler.yaml"));
    golden("kubelet-config.yaml", &read(&fs, "/var/lib/kubelet/config.yaml"));
    assert!(read(&fs, "/var/lib/kubelet/kubeadm-flags.env").starts_with(
        "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///run/containerd/containerd.sock --hostname-override=node1 --node-ip=10.0.0.5"
    ));
    assert!(c.kubelet.available());
    let out = c.out.text();
    for line in [
        "[certs] Using certificateDir folder \"/etc/kubernetes/pki\"",
        "[certs] Generating \"ca\" certificate and key",
        "[certs] apiserver serving cert is signed for DNS names [cp.example extra.example kubernetes kubernetes.default kubernetes.default.svc kubernetes.default.svc.cluster.local node1] and IPs [10.0.0.5 10.96.0.1 192.0.2.9]",
        "[certs] Generating \"sa\" key and public key",
        "[kubeconfig] Writing \"super-admin.conf\" kubeconfig file",
        "[etcd] Embedded store mode (no etcd configured). Skipping the creation of a manifest for local etcd",
        "[control-plane] Creating static Pod manifest for \"kube-apiserver\"",
        "[kubelet-start] Starting the kubelet",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }

    // Certificates parsed back.
    let cert = |p: &str| pki::parse_cert(read(&fs, p).as_bytes()).unwrap();
    let year = 365 * 24 * 3600 + 300;
    let ca = cert("/etc/kubernetes/pki/ca.crt");
    assert!(ca.is_ca);
    assert_eq!(ca.common_name, "kubernetes");
    assert_eq!(ca.not_after.as_second() - ca.not_before.as_second(), 10 * 365 * 24 * 3600 + 300);
    let api = cert("/etc/kubernetes/pki/apiserver.crt");
    assert_eq!(api.common_name, "kube-apiserver");
    assert_eq!(api.issuer_cn, "kubernetes");
    assert!(api.server_auth && !api.client_auth);
    assert_eq!(api.not_after.as_second() - api.not_before.as_second(), year);
    assert_eq!(api.not_before, now() - jiff::SignedDuration::from_secs(300));
    let mut dns = api.alt_names.dns.clone();
    dns.sort();
    assert_eq!(
        dns,
        [
            "cp.example",
            "extra.example",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "node1"
        ]
    );
    let ips: Vec<String> = api.alt_names.ips.iter().map(|i| i.to_string()).collect();
    assert_eq!(ips, ["10.96.0.1", "10.0.0.5", "192.0.2.9"]);
    let kc = cert("/etc/kubernetes/pki/apiserver-kubelet-client.crt");
    assert_eq!(
        (kc.common_name.as_str(), kc.organization.clone()),
        ("kube-apiserver-kubelet-client", vec!["kubeadm:cluster-admins".to_string()])
    );
    assert!(kc.client_auth && !kc.server_auth);
    let fp = cert("/etc/kubernetes/pki/front-proxy-client.crt");
    assert_eq!((fp.common_name.as_str(), fp.issuer_cn.as_str()), ("front-proxy-client", "front-proxy-ca"));
    assert!(!fs.exists(Path::new("/etc/kubernetes/pki/etcd/ca.crt")), "no etcd PKI for the embedded store");
    // The service-account key pair matches.
    let sa = rcgen::KeyPair::from_pem(&read(&fs, "/etc/kubernetes/pki/sa.key")).unwrap();
    assert_eq!(sa.public_key_pem(), read(&fs, "/etc/kubernetes/pki/sa.pub"));

    // kubeconfigs: server, identity, CA.
    for (file, server, cn, org) in [
        ("admin.conf", "https://cp.example:6443", "kubernetes-admin", Some("kubeadm:cluster-admins")),
        ("super-admin.conf", "https://cp.example:6443", "kubernetes-super-admin", Some("system:masters")),
        ("kubelet.conf", "https://cp.example:6443", "system:node:node1", Some("system:nodes")),
        ("controller-manager.conf", "https://10.0.0.5:6443", "system:kube-controller-manager", None),
        ("scheduler.conf", "https://10.0.0.5:6443", "system:kube-scheduler", None),
    ] {
        let p = kubeadm::kubeconfig::parse(&read(&fs, &format!("/etc/kubernetes/{file}"))).unwrap();
        assert_eq!(p.server, server, "{file}");
        assert_eq!(p.ca_pem, read(&fs, "/etc/kubernetes/pki/ca.crt").as_bytes(), "{file}");
        let c = pki::parse_cert(&p.client_cert_pem.unwrap()).unwrap();
        assert_eq!(c.common_name, cn, "{file}");
        assert_eq!(c.organization, org.map(|o| vec![o.to_string()]).unwrap_or_default(), "{file}");
        assert!(c.client_auth, "{file}");
        assert_eq!(p.raw["current-context"], format!("{cn}@kubernetes"));
    }

    // A second run reuses everything.
    let c2 = ctx(fs.clone());
    let ca_before = read(&fs, "/etc/kubernetes/pki/ca.crt");
    file_phases(&c2, &mut cfg).await;
    assert_eq!(read(&fs, "/etc/kubernetes/pki/ca.crt"), ca_before);
    let out = c2.out.text();
    assert!(out.contains("[certs] Using existing ca certificate authority"), "{out}");
    assert!(out.contains("[certs] Using existing apiserver certificate and key on disk"), "{out}");
    assert!(out.contains("[kubeconfig] Using existing kubeconfig file: \"/etc/kubernetes/admin.conf\""), "{out}");
}

#[tokio::test]
async fn local_etcd_gets_its_pki_manifest_and_apiserver_flags() {
    let fs = Arc::new(MemFs::new());
    let c = ctx(fs.clone());
    let mut cfg = cfg(
        "---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\ncontrolPlaneEndpoint: cp.example:6443\netcd:\n  local:\n    serverCertSANs: [etcd.example]\n",
    );
    file_phases(&c, &mut cfg).await;
    golden("etcd.yaml", &read(&fs, "/etc/kubernetes/manifests/etcd.yaml"));
    let api = read(&fs, "/etc/kubernetes/manifests/kube-apiserver.yaml");
    assert!(api.contains("- --etcd-servers=https://127.0.0.1:2379"));
    assert!(api.contains("- --etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt"));
    assert!(!api.contains("--data-dir") && !api.contains("kube-apiserver-data"));
    let server = pki::parse_cert(read(&fs, "/etc/kubernetes/pki/etcd/server.crt").as_bytes()).unwrap();
    assert_eq!(server.common_name, "node1");
    assert_eq!(server.issuer_cn, "etcd-ca");
    assert!(server.server_auth && server.client_auth);
    let mut dns = server.alt_names.dns.clone();
    dns.sort();
    assert_eq!(dns, ["etcd.example", "localhost", "node1"]);
    let ips: Vec<String> = server.alt_names.ips.iter().map(|i| i.to_string()).collect();
    assert_eq!(ips, ["10.0.0.5", "127.0.0.1", "::1"]);
    let peer = pki::parse_cert(read(&fs, "/etc/kubernetes/pki/etcd/peer.crt").as_bytes()).unwrap();
    assert_eq!(peer.alt_names.dns, ["node1"]);
    let hc = pki::parse_cert(read(&fs, "/etc/kubernetes/pki/etcd/healthcheck-client.crt").as_bytes()).unwrap();
    assert_eq!(hc.common_name, "kube-etcd-healthcheck-client");
    let aec = pki::parse_cert(read(&fs, "/etc/kubernetes/pki/apiserver-etcd-client.crt").as_bytes()).unwrap();
    assert_eq!((aec.common_name.as_str(), aec.issuer_cn.as_str()), ("kube-apiserver-etcd-client", "etcd-ca"));
}

/// The etcd image runs Debian's etcd 3.4: every flag of the manifest must be one it knows (its `--help` lists
/// them), and the probes must use `/health` (3.4 has no `/livez` or `/readyz`).
#[test]
fn etcd_manifest_suits_the_installed_etcd() {
    let cfg = cfg("---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\netcd:\n  local: {}\n");
    let pod = kubeadm::manifests::etcd::etcd_pod(&cfg);
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health?exclude=NOSPACE&serializable=true");
    assert_eq!(c["startupProbe"]["httpGet"]["path"], "/health?serializable=false");
    assert!(c.get("readinessProbe").is_none());
    let Ok(out) = std::process::Command::new("etcd").arg("--help").output() else {
        eprintln!("etcd is not installed: flag check skipped");
        return;
    };
    let help = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    for arg in kubeadm::manifests::etcd::etcd_command(&cfg).iter().skip(1) {
        let name = arg.split('=').next().unwrap();
        assert!(help.contains(&format!("  {name} ")), "etcd --help does not list {name}");
    }
}

#[tokio::test]
async fn external_ca_mode_needs_every_signed_file() {
    // A CA without its key: certificates it would sign must exist already.
    let fs = Arc::new(MemFs::new());
    let c = ctx(fs.clone());
    let ca = pki::Ca::generate(
        "kubernetes",
        std::time::Duration::from_secs(3600 * 24 * 3650),
        pki::KeyAlgorithm::EcdsaP256,
        now(),
    )
    .unwrap();
    fs.write(Path::new("/etc/kubernetes/pki/ca.crt"), ca.cert_pem.as_bytes(), 0o644).unwrap();
    let mut cfg = cfg("");
    let err = cmd::init::run_phase(&c, &mut cfg, &Default::default(), "certs", None).await.unwrap_err().to_string();
    assert!(err.contains("external CA mode"), "{err}");
    assert!(c.out.text().contains("[certs] Using existing ca keyless certificate authority"));

    // With the key present once to make everything, then removed: everything is reused and the controller
    // manager loses its signing flags.
    let fs = Arc::new(MemFs::new());
    let c = ctx(fs.clone());
    file_phases(&c, &mut cfg).await;
    fs.remove(Path::new("/etc/kubernetes/pki/ca.key")).unwrap();
    let c2 = ctx(fs.clone());
    for p in ["certs", "kubeconfig", "control-plane"] {
        cmd::init::run_phase(&c2, &mut cfg, &Default::default(), p, None).await.unwrap();
    }
    let cm = read(&fs, "/etc/kubernetes/manifests/kube-controller-manager.yaml");
    assert!(!cm.contains("cluster-signing-key-file"), "{cm}");
    assert!(
        read(&fs, "/etc/kubernetes/manifests/kube-apiserver.yaml")
            .contains("--client-ca-file=/etc/kubernetes/pki/ca.crt")
    );
}

#[test]
fn addon_objects_match_golden() {
    let cfg = cfg("");
    let dns: Vec<String> = phases::addons::coredns_objects(&cfg).iter().map(config::marshal).collect();
    golden("coredns.yaml", &dns.join("---\n"));
    let proxy: Vec<String> = phases::addons::kube_proxy_objects(&cfg).iter().map(config::marshal).collect();
    golden("kube-proxy.yaml", &proxy.join("---\n"));
}

#[tokio::test]
async fn certs_renew_keeps_identity_and_key_and_check_expiration_prints_the_table() {
    let fs = Arc::new(MemFs::new());
    let c = ctx(fs.clone());
    let mut cfg = cfg("");
    file_phases(&c, &mut cfg).await;
    let before = pki::parse_cert(read(&fs, "/etc/kubernetes/pki/apiserver.crt").as_bytes()).unwrap();
    let mut later = ctx(fs.clone());
    later.now = Some(now() + jiff::SignedDuration::from_hours(24 * 100));
    cmd::run_with(
        &later,
        Command::Certs(cmd::certs::CertsCmd::Renew {
            name: "all".into(),
            cert_dir: None,
            config: None,
            csr_only: false,
            csr_dir: None,
        }),
    )
    .await
    .unwrap();
    let out = later.out.text();
    assert!(out.contains("certificate for serving the Kubernetes API renewed"), "{out}");
    assert!(
        out.contains("certificate embedded in the kubeconfig file for the admin to use and for kubeadm itself renewed"),
        "{out}"
    );
    assert!(out.contains("Done renewing certificates."), "{out}");
    let after = pki::parse_cert(read(&fs, "/etc/kubernetes/pki/apiserver.crt").as_bytes()).unwrap();
    assert_eq!(after.alt_names, before.alt_names);
    assert_eq!(after.spki, before.spki, "renewal keeps the key");
    assert_eq!(after.not_after.as_second() - before.not_after.as_second(), 100 * 24 * 3600);

    let check = ctx(fs.clone());
    cmd::run_with(&check, Command::Certs(cmd::certs::CertsCmd::CheckExpiration { cert_dir: None, config: None }))
        .await
        .unwrap();
    let table = check.out.text();
    golden("check-expiration.txt", &table);
}
