//! The API-writing phases (upload-config, bootstrap-token, mark-control-plane, addon), `kubeadm token
//! create|list|delete` and worker join discovery against a real in-process kube-apiserver (Node,RBAC,
//! bootstrap tokens), with every file under a temp root.

use std::path::Path;
use std::sync::Arc;

use kube_apiserver::testing::{TestApiserver, within};
use kubeadm::cmd::{self, Command};
use kubeadm::config::{self, InitConfig};
use kubeadm::fs::{Fs, HostFs};
use kubeadm::phases::{self, Context, Printer};
use serde_json::{Value, json};

fn ctx(root: &Path) -> Context {
    Context {
        fs: Arc::new(HostFs::new(root)),
        out: Printer::capture(),
        kubelet: Arc::new(kubeadm::kubelet::Fake::default()),
        now: None,
        host: false,
    }
}

/// A control-plane root holding admin.conf for the test apiserver and its CA.
fn control_plane_root(api: &TestApiserver) -> (tempfile::TempDir, InitConfig) {
    let root = tempfile::tempdir().unwrap();
    let fs = HostFs::new(root.path());
    let ca = api.config.ca_pem.clone().unwrap();
    let ca = String::from_utf8(ca).unwrap();
    let admin = kubeadm::kubeconfig::with_certs(
        "kubernetes",
        &api.config.server,
        &ca,
        "kubernetes-admin",
        &String::from_utf8(api.config.client_cert_pem.clone().unwrap()).unwrap(),
        &String::from_utf8(api.config.client_key_pem.clone().unwrap()).unwrap(),
    );
    fs.write(Path::new("/etc/kubernetes/admin.conf"), admin.as_bytes(), 0o600).unwrap();
    fs.write(Path::new("/etc/kubernetes/pki/ca.crt"), ca.as_bytes(), 0o644).unwrap();
    let port = api.config.server.rsplit(':').next().unwrap();
    let text = format!(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nbootstrapTokens:\n- token: abcdef.0123456789abcdef\nlocalAPIEndpoint:\n  advertiseAddress: 127.0.0.1\n  bindPort: {port}\nnodeRegistration:\n  name: node1\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking:\n  serviceSubnet: 10.0.0.0/24\n  podSubnet: 10.253.0.0/16\n"
    );
    let cfg = InitConfig::from_documents(config::parse_documents(&text).unwrap()).unwrap();
    (root, cfg)
}

async fn get(api: &TestApiserver, group: &str, plural: &str, ns: Option<&str>, name: &str) -> Value {
    let (g, v) = group.split_once('/').unwrap_or(("", group));
    let mut a = api.client.api(g, v, plural).unwrap();
    if let Some(ns) = ns {
        a = a.namespaced(ns);
    }
    a.get(name).await.unwrap_or_else(|e| panic!("{plural} {name}: {e}"))
}

/// Signs cluster-info as the controller-manager's bootstrapsigner would.
async fn sign_cluster_info(api: &TestApiserver) {
    let secrets =
        api.client.api("", "v1", "secrets").unwrap().namespaced("kube-system").list(&Default::default()).await.unwrap();
    let secrets: Vec<Arc<Value>> = secrets["items"].as_array().unwrap().iter().cloned().map(Arc::new).collect();
    let cms = api.client.api("", "v1", "configmaps").unwrap().namespaced("kube-public");
    let cm = cms.get("cluster-info").await.unwrap();
    if let Some(signed) =
        kube_controller_manager::controllers::bootstrapsigner::signed_config_map(&cm, &secrets, jiff::Timestamp::now())
    {
        cms.replace("cluster-info", &signed).await.unwrap();
    }
}

#[tokio::test]
async fn api_phases_tokens_and_join_discovery() {
    let api = TestApiserver::start_secure().await;
    let (root, mut cfg) = control_plane_root(&api);
    let c = ctx(root.path());
    // The node the kubelet would have registered.
    api.client
        .api("", "v1", "nodes")
        .unwrap()
        .create(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1", "labels": {"kubernetes.io/hostname": "node1"}}}))
        .await
        .unwrap();

    let flags = cmd::init::InitFlags::default();
    within(60, "API phases", async {
        for p in ["upload-config", "mark-control-plane", "bootstrap-token", "addon"] {
            cmd::init::run_phase(&c, &mut cfg, &flags, p, None).await.unwrap_or_else(|e| panic!("{p}: {e}"));
        }
    })
    .await;
    let out = c.out.text();
    for line in [
        "[upload-config] Storing the configuration used in ConfigMap \"kubeadm-config\" in the \"kube-system\" Namespace",
        "[kubelet] Creating a ConfigMap \"kubelet-config\" in namespace kube-system with the configuration for the kubelets in the cluster",
        "[mark-control-plane] Marking the node node1 as control-plane by adding the labels: [node-role.kubernetes.io/control-plane node.kubernetes.io/exclude-from-external-load-balancers]",
        "[mark-control-plane] Marking the node node1 as control-plane by adding the taints [node-role.kubernetes.io/control-plane:NoSchedule]",
        "[bootstrap-token] Using token: abcdef.0123456789abcdef",
        "[bootstrap-token] Creating the \"cluster-info\" ConfigMap in the \"kube-public\" namespace",
        "[addons] Applied essential addon: CoreDNS",
        "[addons] Applied essential addon: kube-proxy",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }

    // upload-config
    let kc = get(&api, "v1", "configmaps", Some("kube-system"), "kubeadm-config").await;
    let stored =
        config::parse_documents(kc["data"]["ClusterConfiguration"].as_str().unwrap()).unwrap().cluster.unwrap();
    assert_eq!(stored.networking.pod_subnet, "10.253.0.0/16");
    let kl = get(&api, "v1", "configmaps", Some("kube-system"), "kubelet-config").await;
    assert!(kl["data"]["kubelet"].as_str().unwrap().contains("clusterDNS:\n- 10.0.0.10"));
    get(&api, "rbac.authorization.k8s.io/v1", "rolebindings", Some("kube-system"), "kubeadm:nodes-kubeadm-config")
        .await;
    let admins = get(&api, "rbac.authorization.k8s.io/v1", "clusterrolebindings", None, "kubeadm:cluster-admins").await;
    assert_eq!(admins["roleRef"]["name"], "cluster-admin");

    // mark-control-plane
    let node = get(&api, "v1", "nodes", None, "node1").await;
    assert_eq!(node["metadata"]["labels"]["node-role.kubernetes.io/control-plane"], "");
    assert_eq!(
        node["spec"]["taints"],
        json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}])
    );

    // bootstrap-token
    let secret = get(&api, "v1", "secrets", Some("kube-system"), "bootstrap-token-abcdef").await;
    assert_eq!(secret["type"], "bootstrap.kubernetes.io/token");
    let t = kubeadm::token::from_secret(&secret).unwrap();
    assert_eq!(t.usages, ["authentication", "signing"]);
    assert_eq!(t.description, "");
    for crb in [
        "kubeadm:get-nodes",
        "kubeadm:kubelet-bootstrap",
        "kubeadm:node-autoapprove-bootstrap",
        "kubeadm:node-autoapprove-certificate-rotation",
    ] {
        get(&api, "rbac.authorization.k8s.io/v1", "clusterrolebindings", None, crb).await;
    }
    let ci = get(&api, "v1", "configmaps", Some("kube-public"), "cluster-info").await;
    let ci_kc = kubeadm::kubeconfig::parse(ci["data"]["kubeconfig"].as_str().unwrap()).unwrap();
    assert_eq!(ci_kc.server, api.config.server);

    // addon
    let svc = get(&api, "v1", "services", Some("kube-system"), "kube-dns").await;
    assert_eq!(svc["spec"]["clusterIP"], "10.0.0.10");
    let dep = get(&api, "apps/v1", "deployments", Some("kube-system"), "coredns").await;
    assert_eq!(dep["spec"]["template"]["spec"]["containers"][0]["image"], "registry.k8s.io/coredns/coredns:v1.12.0");
    let corefile = get(&api, "v1", "configmaps", Some("kube-system"), "coredns").await;
    assert!(corefile["data"]["Corefile"].as_str().unwrap().contains("kubernetes cluster.local in-addr.arpa ip6.arpa"));
    let ds = get(&api, "apps/v1", "daemonsets", Some("kube-system"), "kube-proxy").await;
    assert_eq!(ds["spec"]["template"]["spec"]["containers"][0]["image"], "registry.k8s.io/kube-proxy:v1.33.0");
    let kp = get(&api, "v1", "configmaps", Some("kube-system"), "kube-proxy").await;
    assert!(kp["data"]["config.conf"].as_str().unwrap().contains("clusterCIDR: 10.253.0.0/16"));
    // Running the phases again updates in place.
    within(30, "API phases again", cmd::init::run_phase(&c, &mut cfg, &flags, "addon", None)).await.unwrap();

    // token create / list / delete
    let tc = ctx(root.path());
    cmd::run_with(
        &tc,
        Command::Token(cmd::token::TokenCmd::Create {
            token: Some("zyxwvu.0123456789zyxwvu".into()),
            print_join_command: true,
            ttl: "2h0m0s".into(),
            usages: vec!["signing".into(), "authentication".into()],
            groups: vec!["system:bootstrappers:kubeadm:default-node-token".into()],
            description: "test token".into(),
            certificate_key: None,
            kubeconfig: "/etc/kubernetes/admin.conf".into(),
            config: None,
        }),
    )
    .await
    .unwrap();
    let ca_pem = api.config.ca_pem.clone().unwrap();
    let hash = kubeadm::token::ca_cert_hash(&ca_pem).unwrap();
    let endpoint = api.config.server.trim_start_matches("https://").to_string();
    assert_eq!(
        tc.out.text(),
        format!("kubeadm join {endpoint} --token zyxwvu.0123456789zyxwvu --discovery-token-ca-cert-hash {hash} \n")
    );
    let lc = ctx(root.path());
    cmd::run_with(&lc, Command::Token(cmd::token::TokenCmd::List { kubeconfig: "/etc/kubernetes/admin.conf".into() }))
        .await
        .unwrap();
    let list = lc.out.text();
    assert!(list.starts_with("TOKEN                     TTL "), "{list}");
    assert!(list.contains("abcdef.0123456789abcdef   23h"), "{list}");
    assert!(list.contains("zyxwvu.0123456789zyxwvu   1h"), "{list}");
    assert!(list.contains("authentication,signing   test token"), "{list}");

    // Join discovery: the signed cluster-info, pinned CA.
    sign_cluster_info(&api).await;
    let d = within(
        30,
        "discovery",
        phases::join::discover_token(
            &endpoint,
            "abcdef.0123456789abcdef",
            std::slice::from_ref(&hash),
            false,
            std::time::Duration::from_secs(5),
        ),
    )
    .await
    .unwrap();
    assert_eq!(d.ca_pem.as_bytes(), ca_pem.as_slice());
    let wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000".to_string();
    let err = phases::join::discover_token(
        &endpoint,
        "abcdef.0123456789abcdef",
        &[wrong],
        false,
        std::time::Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("none of the public keys"), "{err}");
    let err = phases::join::discover_token(
        &endpoint,
        "abcdef.0123456789abcdea",
        std::slice::from_ref(&hash),
        false,
        std::time::Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("failed to verify JWS signature"), "{err}");
    let err = phases::join::discover_token(
        &endpoint,
        "qqqqqq.0123456789abcdef",
        std::slice::from_ref(&hash),
        false,
        std::time::Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("token id \"qqqqqq\" is invalid"), "{err}");
    let err = phases::join::discover_token(
        &endpoint,
        "abcdef.0123456789abcdef",
        &[],
        false,
        std::time::Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("--discovery-token-unsafe-skip-ca-verification"), "{err}");
    phases::join::discover_token(&endpoint, "abcdef.0123456789abcdef", &[], true, std::time::Duration::from_secs(5))
        .await
        .unwrap();

    // A whole worker join into its own root; the fake kubelet "completes" TLS bootstrap by writing kubelet.conf.
    let worker = tempfile::tempdir().unwrap();
    let wfs = Arc::new(HostFs::new(worker.path()));
    let kubelet_fs = wfs.clone();
    let fake = kubeadm::kubelet::Fake {
        on_restart: Some(Box::new(move || {
            let boot = kubelet_fs.read_string(Path::new("/etc/kubernetes/bootstrap-kubelet.conf")).unwrap();
            assert!(boot.contains("token: abcdef.0123456789abcdef"));
            kubelet_fs.write(Path::new("/etc/kubernetes/kubelet.conf"), b"written by the kubelet", 0o600).unwrap();
        })),
        ..Default::default()
    };
    let wc = Context { fs: wfs.clone(), out: Printer::capture(), kubelet: Arc::new(fake), now: None, host: false };
    let flags = cmd::JoinFlags {
        endpoint: Some(endpoint.clone()),
        token: Some("abcdef.0123456789abcdef".into()),
        discovery_token_ca_cert_hash: vec![hash.clone()],
        node_name: Some("worker1".into()),
        ..Default::default()
    };
    within(60, "join", cmd::run_with(&wc, Command::Join(flags))).await.unwrap();
    let out = wc.out.text();
    assert!(out.contains("This node has joined the cluster:"), "{out}");
    assert_eq!(wfs.read(Path::new("/etc/kubernetes/pki/ca.crt")).unwrap(), ca_pem);
    assert!(wfs.read_string(Path::new("/var/lib/kubelet/config.yaml")).unwrap().contains("kind: KubeletConfiguration"));
    assert!(
        wfs.read_string(Path::new("/var/lib/kubelet/kubeadm-flags.env"))
            .unwrap()
            .contains("--hostname-override=worker1")
    );
    assert!(!wfs.exists(Path::new("/etc/kubernetes/bootstrap-kubelet.conf")), "bootstrap credentials removed");

    // Delete, then list no longer shows it.
    let dc = ctx(root.path());
    cmd::run_with(
        &dc,
        Command::Token(cmd::token::TokenCmd::Delete {
            tokens: vec!["zyxwvu".into()],
            kubeconfig: "/etc/kubernetes/admin.conf".into(),
        }),
    )
    .await
    .unwrap();
    assert_eq!(dc.out.text(), "bootstrap token \"zyxwvu\" deleted\n");
    let lc = ctx(root.path());
    cmd::run_with(&lc, Command::Token(cmd::token::TokenCmd::List { kubeconfig: "/etc/kubernetes/admin.conf".into() }))
        .await
        .unwrap();
    assert!(!lc.out.text().contains("zyxwvu"));

    // Reset of the worker: kubelet stopped, its files gone.
    let rc = Context {
        fs: wfs.clone(),
        out: Printer::capture(),
        kubelet: Arc::new(kubeadm::kubelet::Fake::default()),
        now: None,
        host: false,
    };
    cmd::run_with(&rc, Command::Reset(cmd::ResetFlags { force: true, ..Default::default() })).await.unwrap();
    let out = rc.out.text();
    assert!(out.contains("[reset] Stopping the kubelet service"), "{out}");
    assert!(out.contains("[reset] Deleting files: [/etc/kubernetes/admin.conf /etc/kubernetes/super-admin.conf /etc/kubernetes/kubelet.conf"), "{out}");
    assert!(!wfs.exists(Path::new("/etc/kubernetes/kubelet.conf")));
    assert!(!wfs.exists(Path::new("/var/lib/kubelet/config.yaml")));
    assert!(!wfs.exists(Path::new("/etc/kubernetes/pki/ca.crt")));
    api.stop().await;
}
