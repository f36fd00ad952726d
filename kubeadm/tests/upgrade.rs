//! `kubeadm upgrade plan|apply|diff|node` against a real in-process kube-apiserver set up by kubeadm's own init
//! phases (its CA, certificates, kubeconfigs, manifests, ConfigMaps and add-ons under a temp root). A simulated
//! kubelet plays the node: it turns each manifest in the temp root's /etc/kubernetes/manifests into a mirror pod
//! with the manifest's hash, Running and Ready — unless the test marks an image as broken, then never Ready.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube_apiserver::testing::{TestApiserver, within};
use kubeadm::cmd::upgrade::{self, ApplyFlags, CommonFlags, DiffFlags, NodeCmd, NodeFlags, PlanFlags, UpgradeCmd};
use kubeadm::cmd::{self, Command};
use kubeadm::config::{self, InitConfig};
use kubeadm::fs::{Fs, HostFs};
use kubeadm::phases::{Context, Printer};
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

/// The kubelet's part: mirror pods for the manifests, Ready unless their image is in `broken`.
struct FakeKubelet {
    stop: Arc<AtomicBool>,
    broken: Arc<Mutex<Vec<String>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn hash(b: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    d.as_ref()[..16].iter().map(|x| format!("{x:02x}")).collect()
}

async fn sync_mirror_pods(c: &client::Client, dir: &Path, broken: &[String]) {
    let pods = c.api("", "v1", "pods").unwrap().namespaced("kube-system");
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else { continue };
        let Ok(mut pod) = serde_yaml_ng::from_slice::<Value>(&bytes) else { continue };
        let h = hash(&bytes);
        let name = format!("{}-node1", pod["metadata"]["name"].as_str().unwrap());
        if let Ok(cur) = pods.get(&name).await {
            if cur["metadata"]["annotations"]["kubernetes.io/config.hash"] == h.as_str() {
                continue;
            }
            let _ = pods.delete(&name, Some(&json!({"gracePeriodSeconds": 0}))).await;
        }
        pod["metadata"]["name"] = json!(name);
        let ann = pod["metadata"].as_object_mut().unwrap().entry("annotations").or_insert(json!({}));
        ann["kubernetes.io/config.hash"] = json!(h);
        ann["kubernetes.io/config.mirror"] = json!(h);
        ann["kubernetes.io/config.source"] = json!("file");
        pod["spec"]["nodeName"] = json!("node1");
        pod.as_object_mut().unwrap().remove("status");
        let Ok(created) = pods.create(&pod).await else { continue };
        let image = pod["spec"]["containers"][0]["image"].as_str().unwrap_or_default();
        let ready = if broken.iter().any(|b| b == image) { "False" } else { "True" };
        let mut st = created.clone();
        st["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": ready}]});
        let _ = pods.replace_status(&name, &st).await;
    }
}

fn start_kubelet(api: &TestApiserver, root: &Path) -> FakeKubelet {
    let stop = Arc::new(AtomicBool::new(false));
    let broken: Arc<Mutex<Vec<String>>> = Arc::default();
    let (c, dir, s, b) = (api.new_client(), root.join("etc/kubernetes/manifests"), stop.clone(), broken.clone());
    let task = tokio::spawn(async move {
        while !s.load(Ordering::SeqCst) {
            let broken = b.lock().unwrap().clone();
            sync_mirror_pods(&c, &dir, &broken).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    FakeKubelet { stop, broken, task: Some(task) }
}

/// A cluster made by kubeadm's init phases on the test apiserver (whose CA kubeadm reuses), node1 Ready.
async fn kubeadm_cluster(api: &TestApiserver) -> (tempfile::TempDir, Context) {
    let root = tempfile::tempdir().unwrap();
    let fs = HostFs::new(root.path());
    for f in ["ca.crt", "ca.key"] {
        let data = std::fs::read(api.dir.path().join(f)).unwrap();
        fs.write(&PathBuf::from("/etc/kubernetes/pki").join(f), &data, 0o600).unwrap();
    }
    let port = api.config.server.rsplit(':').next().unwrap();
    let text = format!(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nbootstrapTokens:\n- token: abcdef.0123456789abcdef\nlocalAPIEndpoint:\n  advertiseAddress: 127.0.0.1\n  bindPort: {port}\nnodeRegistration:\n  name: node1\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.33.0\nnetworking:\n  serviceSubnet: 10.0.0.0/24\n  podSubnet: 10.253.0.0/16\n"
    );
    let mut cfg = InitConfig::from_documents(config::parse_documents(&text).unwrap()).unwrap();
    let c = ctx(root.path());
    api.client
        .api("", "v1", "nodes")
        .unwrap()
        .create(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"}}))
        .await
        .unwrap();
    let node = api.client.api("", "v1", "nodes").unwrap().get("node1").await.unwrap();
    let mut st = node.clone();
    st["status"] =
        json!({"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.33.0"}});
    api.client.api("", "v1", "nodes").unwrap().replace_status("node1", &st).await.unwrap();
    let flags = cmd::init::InitFlags::default();
    for p in [
        "certs",
        "kubeconfig",
        "control-plane",
        "kubelet-start",
        "upload-config",
        "mark-control-plane",
        "bootstrap-token",
        "addon",
    ] {
        cmd::init::run_phase(&c, &mut cfg, &flags, p, None).await.unwrap_or_else(|e| panic!("{p}: {e}"));
    }
    (root, ctx_fresh(&c))
}

fn ctx_fresh(c: &Context) -> Context {
    Context { out: Printer::capture(), ..c.clone() }
}

fn common() -> CommonFlags {
    CommonFlags { kubeconfig: "/etc/kubernetes/admin.conf".into(), ..Default::default() }
}

fn apply_flags(version: &str) -> ApplyFlags {
    ApplyFlags {
        version: Some(version.into()),
        common: common(),
        yes: true,
        force: false,
        dry_run: false,
        etcd_upgrade: true,
        certificate_renewal: true,
        skip_phases: vec![],
    }
}

fn read(root: &Path, p: &str) -> String {
    std::fs::read_to_string(root.join(p.trim_start_matches('/'))).unwrap()
}

async fn run(c: &Context, u: UpgradeCmd) -> Result<String, String> {
    let c = ctx_fresh(c);
    let r = cmd::run_with(&c, Command::Upgrade(u)).await;
    r.map(|_| c.out.text()).map_err(|e| format!("{e}\n--- output:\n{}", c.out.text()))
}

fn dirs_under(root: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(root.join("etc/kubernetes/tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect()
}

#[tokio::test]
async fn plan_apply_diff_and_node_upgrade_the_static_pod_control_plane() {
    let api = TestApiserver::start_secure().await;
    let (root, c) = kubeadm_cluster(&api).await;
    let r = root.path();
    let _kubelet = start_kubelet(&api, r);
    let pods = api.client.api("", "v1", "pods").unwrap().namespaced("kube-system");
    within(20, "mirror pods", async {
        while pods.get("kube-scheduler-node1").await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    // plan: every component from v1.33.0 to the version asked for.
    let out = run(&c, UpgradeCmd::Plan(PlanFlags { version: Some("v1.33.1".into()), common: common() })).await.unwrap();
    for line in [
        "[upgrade/config] Reading configuration from the \"kubeadm-config\" ConfigMap in namespace \"kube-system\"...",
        "[upgrade] Running cluster health checks",
        "[upgrade/versions] Cluster version: v1.33.0",
        "[upgrade/versions] kubeadm version: v1.33.0",
        "[upgrade/versions] Target version: v1.33.1",
        "Components that must be upgraded manually after you have upgraded the control plane with 'kubeadm upgrade apply':\nCOMPONENT   NODE      CURRENT   TARGET\nkubelet     node1     v1.33.0   v1.33.1\n",
        "Upgrade to the latest stable version:\n\nCOMPONENT                 NODE      CURRENT   TARGET\nkube-apiserver            node1     v1.33.0   v1.33.1\nkube-controller-manager   node1     v1.33.0   v1.33.1\nkube-scheduler            node1     v1.33.0   v1.33.1\nkube-proxy                          v1.33.0   v1.33.1\nCoreDNS                             v1.12.0   v1.12.0\n",
        "You can now apply the upgrade by executing the following command:\n\n\tkubeadm upgrade apply v1.33.1\n",
        "kubelet.config.k8s.io     v1beta1           v1beta1             no",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }

    // diff: the image lines change.
    let d = DiffFlags {
        version: Some("v1.33.1".into()),
        kubeconfig: "/etc/kubernetes/admin.conf".into(),
        config: None,
        api_server_manifest: "/etc/kubernetes/manifests/kube-apiserver.yaml".into(),
        controller_manager_manifest: "/etc/kubernetes/manifests/kube-controller-manager.yaml".into(),
        scheduler_manifest: "/etc/kubernetes/manifests/kube-scheduler.yaml".into(),
        context_lines: 3,
    };
    let out = run(&c, UpgradeCmd::Diff(d.clone())).await.unwrap();
    assert!(out.contains("--- /etc/kubernetes/manifests/kube-apiserver.yaml\n+++ new manifest\n@@"), "{out}");
    assert!(
        out.contains(
            "-    image: registry.k8s.io/kube-apiserver:v1.33.0\n+    image: registry.k8s.io/kube-apiserver:v1.33.1\n"
        ),
        "{out}"
    );
    assert!(out.contains("+    image: registry.k8s.io/kube-scheduler:v1.33.1\n"), "{out}");

    // Version skew: a skipped minor is fatal, an unstable version needs a flag or --force.
    let e = run(&c, UpgradeCmd::Apply(apply_flags("v1.35.0"))).await.unwrap_err();
    assert!(e.contains("is too high; kubeadm can upgrade only 1 minor version at a time"), "{e}");
    assert!(e.contains("Please fix the misalignments highlighted above and try upgrading again"), "{e}");
    let e = run(&c, UpgradeCmd::Apply(apply_flags("v1.33.1-rc.0"))).await.unwrap_err();
    assert!(e.contains("is an unstable version") && e.contains("Can be bypassed if you pass the --force flag"), "{e}");
    // Without -y the upgrade waits for a yes.
    let mut no = apply_flags("v1.33.1");
    no.yes = false;
    let e = upgrade::apply(&ctx_fresh(&c), no, &mut &b"n\n"[..]).await.unwrap_err();
    assert!(e.to_string().contains("won't proceed"), "{e}");
    assert!(read(r, "/etc/kubernetes/manifests/kube-apiserver.yaml").contains("kube-apiserver:v1.33.0"));

    // apply: one component at a time, backups kept, certificates renewed, ConfigMaps and add-ons upgraded.
    let before_apiserver_crt = read(r, "/etc/kubernetes/pki/apiserver.crt");
    let before_cm_conf = read(r, "/etc/kubernetes/controller-manager.conf");
    let before_front_proxy = read(r, "/etc/kubernetes/pki/front-proxy-client.crt");
    let out = within(60, "upgrade apply", run(&c, UpgradeCmd::Apply(apply_flags("v1.33.1")))).await.unwrap();
    let order: Vec<usize> = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"]
        .iter()
        .map(|comp| {
            let prep = out.find(&format!("[upgrade/staticpods] Preparing for \"{comp}\" upgrade")).unwrap();
            let done = out.find(&format!("[upgrade/staticpods] Component \"{comp}\" upgraded successfully!")).unwrap();
            assert!(prep < done, "{out}");
            done
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "one component at a time:\n{out}");
    for line in [
        "[upgrade/version] You have chosen to upgrade to version \"v1.33.1\"",
        "[upgrade/apply] Upgrading your Static Pod-hosted control plane to version \"v1.33.1\"...",
        "[upgrade/staticpods] Renewing apiserver certificate",
        "[upgrade/staticpods] Renewing controller-manager.conf certificate",
        "[upgrade/staticpods] Renewing admin.conf certificate",
        "[upload-config] Storing the configuration used in ConfigMap \"kubeadm-config\" in the \"kube-system\" Namespace",
        "[upgrade/kubelet-config] The kubelet configuration for this node was successfully upgraded!",
        "[addons] Applied essential addon: kube-proxy",
        "[upgrade] SUCCESS! A control plane node of your cluster was upgraded to \"v1.33.1\".",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    for comp in ["kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
        assert!(read(r, &format!("/etc/kubernetes/manifests/{comp}.yaml")).contains(&format!("{comp}:v1.33.1")));
    }
    let backups = dirs_under(r, "kubeadm-backup-manifests-");
    assert_eq!(backups.len(), 1);
    let old = std::fs::read_to_string(backups[0].join("kube-apiserver.yaml")).unwrap();
    assert!(old.contains("kube-apiserver:v1.33.0"));
    assert!(dirs_under(r, "kubeadm-upgraded-manifests").is_empty(), "the temporary directory is removed");
    assert_ne!(read(r, "/etc/kubernetes/pki/apiserver.crt"), before_apiserver_crt);
    assert_ne!(read(r, "/etc/kubernetes/pki/front-proxy-client.crt"), before_front_proxy);
    assert_ne!(read(r, "/etc/kubernetes/controller-manager.conf"), before_cm_conf);
    let old_cert = kubeadm::pki::parse_cert(before_apiserver_crt.as_bytes()).unwrap();
    let new_cert = kubeadm::pki::parse_cert(read(r, "/etc/kubernetes/pki/apiserver.crt").as_bytes()).unwrap();
    assert_eq!(
        (new_cert.common_name.as_str(), &new_cert.alt_names),
        (old_cert.common_name.as_str(), &old_cert.alt_names)
    );
    assert_eq!(new_cert.spki, old_cert.spki, "renewal keeps the key");
    let kc =
        api.client.api("", "v1", "configmaps").unwrap().namespaced("kube-system").get("kubeadm-config").await.unwrap();
    assert!(kc["data"]["ClusterConfiguration"].as_str().unwrap().contains("kubernetesVersion: v1.33.1"));
    let ds =
        api.client.api("apps", "v1", "daemonsets").unwrap().namespaced("kube-system").get("kube-proxy").await.unwrap();
    assert_eq!(ds["spec"]["template"]["spec"]["containers"][0]["image"], "registry.k8s.io/kube-proxy:v1.33.1");
    assert!(read(r, "/var/lib/kubelet/config.yaml").contains("kind: KubeletConfiguration"));
    assert_eq!(dirs_under(r, "kubeadm-kubelet-config-").len(), 1, "the kubelet's previous config is backed up");

    // Afterwards only the kubelet is left, as upstream's plan shows; once it runs v1.33.1 nothing is.
    let plan = PlanFlags { version: Some("v1.33.1".into()), common: common() };
    let out = run(&c, UpgradeCmd::Plan(plan.clone())).await.unwrap();
    assert!(out.contains("kubelet     node1     v1.33.0   v1.33.1\n"), "{out}");
    assert!(out.contains("kube-apiserver            node1     v1.33.1   v1.33.1\n"), "{out}");
    let nodes = api.client.api("", "v1", "nodes").unwrap();
    let mut n = nodes.get("node1").await.unwrap();
    n["status"]["nodeInfo"]["kubeletVersion"] = json!("v1.33.1");
    nodes.replace_status("node1", &n).await.unwrap();
    let out = run(&c, UpgradeCmd::Plan(plan)).await.unwrap();
    assert!(out.contains("Awesome, you're up-to-date! Enjoy!"), "{out}");
    // Nothing left to diff; `upgrade node` on this control plane changes no manifest.
    let out = run(&c, UpgradeCmd::Diff(d)).await.unwrap();
    assert!(!out.contains("+++"), "{out}");
    let node = NodeCmd {
        phase: None,
        flags: NodeFlags {
            kubeconfig: "/etc/kubernetes/admin.conf".into(),
            config: None,
            dry_run: false,
            etcd_upgrade: true,
            certificate_renewal: true,
            ignore_preflight_errors: vec![],
            skip_phases: vec![],
        },
    };
    let out = within(30, "upgrade node", run(&c, UpgradeCmd::Node(node))).await.unwrap();
    assert!(
        out.contains("[upgrade/staticpods] Current and new manifests of kube-apiserver are equal, skipping upgrade"),
        "{out}"
    );
    assert!(out.contains("[upgrade] The configuration for this node was successfully upgraded!"), "{out}");
}

#[tokio::test]
async fn apply_rolls_back_every_upgraded_manifest_when_a_component_stays_unready() {
    let api = TestApiserver::start_secure().await;
    let (root, c) = kubeadm_cluster(&api).await;
    let r = root.path();
    let kubelet = start_kubelet(&api, r);
    let pods = api.client.api("", "v1", "pods").unwrap().namespaced("kube-system");
    within(20, "mirror pods", async {
        while pods.get("kube-scheduler-node1").await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // The new controller-manager never becomes Ready; the upgrade waits 3 s for it (UpgradeConfiguration).
    kubelet.broken.lock().unwrap().push("registry.k8s.io/kube-controller-manager:v1.33.2".into());
    let cfg_path = r.join("upgrade.yaml");
    std::fs::write(
        &cfg_path,
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: UpgradeConfiguration\ntimeouts:\n  upgradeManifests: 3s\n",
    )
    .unwrap();
    let crt = read(r, "/etc/kubernetes/pki/apiserver.crt");
    let mut f = apply_flags("v1.33.2");
    f.common.config = Some(cfg_path.display().to_string());
    f.certificate_renewal = false;
    let e = within(60, "failing upgrade", run(&c, UpgradeCmd::Apply(f))).await.unwrap_err();
    assert!(e.contains("[upgrade/staticpods] Component \"kube-apiserver\" upgraded successfully!"), "{e}");
    assert!(
        e.contains("couldn't upgrade control plane. kubeadm has tried to recover everything into the earlier state"),
        "{e}"
    );
    assert!(e.contains("kube-controller-manager-node1 is not Running and Ready"), "{e}");
    // Both the upgraded apiserver and the failed controller-manager are back on v1.33.0; the scheduler was never touched.
    for comp in ["kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
        assert!(
            read(r, &format!("/etc/kubernetes/manifests/{comp}.yaml")).contains(&format!("{comp}:v1.33.0")),
            "{comp}"
        );
    }
    assert!(!e.contains("Renewing"), "--certificate-renewal=false renews nothing");
    assert_eq!(read(r, "/etc/kubernetes/pki/apiserver.crt"), crt);
    let kc =
        api.client.api("", "v1", "configmaps").unwrap().namespaced("kube-system").get("kubeadm-config").await.unwrap();
    assert!(kc["data"]["ClusterConfiguration"].as_str().unwrap().contains("kubernetesVersion: v1.33.0"));
    // The rolled-back apiserver comes back (its mirror pod hash returns to the old manifest's).
    let old_hash = hash(read(r, "/etc/kubernetes/manifests/kube-apiserver.yaml").as_bytes());
    within(10, "old apiserver pod", async {
        loop {
            if let Ok(p) = pods.get("kube-apiserver-node1").await
                && p["metadata"]["annotations"]["kubernetes.io/config.hash"] == old_hash.as_str()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}
