//! kube-scheduler as kubeadm runs it: a static pod from the kubelet's manifest directory, in containerd, from the
//! `registry.k8s.io/kube-scheduler:v1.33.0` image `deploy/images/build.sh` makes of this package's binary, with
//! kubeadm's flags, hostPath volume and HTTPS probes. The pod starts before there is an apiserver (kubeadm's
//! apiserver is itself a static pod), gets its mirror pod once the apiserver is up, leads, schedules, and is
//! replaced when its manifest changes (`kubeadm upgrade`, `kubeadm init phase control-plane`). Needs root and
//! containerd; host-network pods only, all traffic on loopback.

use std::path::Path;
use std::time::{Duration, Instant};

use kube_apiserver::testing::Prepared;
use proto::cri::{ContainerState, ListContainersRequest};
use serde_json::{Value, json};

/// kubeadm's kube-scheduler manifest (`getSchedulerCommand`, the probes of `GetStaticPodSpecs`), with this test's
/// port and kubeconfig path.
fn manifest(kubeconfig: &Path, port: u16, extra_flag: &str) -> String {
    let k = kubeconfig.display();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  labels: {{component: kube-scheduler, tier: control-plane}}
  name: kube-scheduler
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-scheduler
    - --authentication-kubeconfig={k}
    - --authorization-kubeconfig={k}
    - --bind-address=127.0.0.1
    - --kubeconfig={k}
    - --leader-elect=true
    - --secure-port={port}{extra_flag}
    image: registry.k8s.io/kube-scheduler:v1.33.0
    imagePullPolicy: IfNotPresent
    livenessProbe:
      failureThreshold: 8
      httpGet: {{host: 127.0.0.1, path: /livez, port: {port}, scheme: HTTPS}}
      initialDelaySeconds: 10
      periodSeconds: 10
      timeoutSeconds: 15
    name: kube-scheduler
    readinessProbe:
      failureThreshold: 3
      httpGet: {{host: 127.0.0.1, path: /readyz, port: {port}, scheme: HTTPS}}
      periodSeconds: 1
      timeoutSeconds: 15
    resources:
      requests: {{cpu: 100m}}
    startupProbe:
      failureThreshold: 24
      httpGet: {{host: 127.0.0.1, path: /livez, port: {port}, scheme: HTTPS}}
      initialDelaySeconds: 10
      periodSeconds: 10
      timeoutSeconds: 15
    volumeMounts:
    - {{mountPath: {k}, name: kubeconfig, readOnly: true}}
  hostNetwork: true
  priority: 2000001000
  priorityClassName: system-node-critical
  securityContext:
    seccompProfile: {{type: RuntimeDefault}}
  volumes:
  - hostPath: {{path: {k}, type: FileOrCreate}}
    name: kubeconfig
"#
    )
}

fn write_kubeconfig(path: &Path, server: &str, ca: &str, cert: &str, key: &str) {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: c\n  context: {{cluster: kubernetes, user: u}}\ncurrent-context: c\n",
            b64(ca),
            b64(cert),
            b64(key)
        ),
    )
    .unwrap();
}

/// The running kube-scheduler containers (their IDs).
async fn running(cri: &proto::Cri) -> Vec<String> {
    let Ok(list) = cri.runtime.clone().list_containers(ListContainersRequest::default()).await else { return vec![] };
    list.into_inner()
        .containers
        .into_iter()
        .filter(|c| {
            c.metadata.as_ref().is_some_and(|m| m.name == "kube-scheduler")
                && c.state == ContainerState::ContainerRunning as i32
        })
        .map(|c| c.id)
        .collect()
}

async fn eventually<T>(secs: u64, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_scheduler_runs_as_a_kubeadm_static_pod() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The apiserver's certificates and port, but no apiserver yet.
    let prepared = Prepared::new().await.refuse_connections();
    let server = prepared.config.server.clone();
    let ca = prepared.ca.cert_pem.clone();
    let sched = prepared.ca.issue("system:kube-scheduler", &[], &[]).unwrap();
    let kubeconfig = d.join("scheduler.conf");
    write_kubeconfig(&kubeconfig, &server, &ca, &sched.cert_pem, &sched.key_pem);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();

    // containerd with the pause image, and the kube-scheduler image made of this package's binary.
    let ctd = tokio::task::spawn_blocking({
        let base = d.to_path_buf();
        move || proto::testing::Containerd::start(&base)
    })
    .await
    .unwrap()
    .expect("containerd must be installed (apt-get install containerd runc containernetworking-plugins), as root");
    let bin = Path::new(env!("CARGO_BIN_EXE_kube-scheduler"));
    let images = Path::new(env!("CARGO_TARGET_TMPDIR")).join("images");
    let status = std::process::Command::new("bash")
        .arg(proto::testing::deploy_dir().join("images/build.sh"))
        .arg(&images)
        .args(["--only", "kube-scheduler", "--import", "--address"])
        .arg(&ctd.socket)
        .env("BIN_DIR", bin.parent().unwrap())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "building the kube-scheduler image");

    // The kubelet, with the manifest in its static pod path.
    let manifests = d.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("kube-scheduler.yaml"), manifest(&kubeconfig, port, "")).unwrap();
    let flags = kubelet::Flags {
        container_runtime_endpoint: Some(ctd.endpoint()),
        hostname_override: Some("e2e-node".into()),
        node_ip: Some("127.0.0.1".into()),
        root_dir: Some(d.join("kubelet")),
        pod_manifest_path: Some(manifests.clone()),
        ..Default::default()
    };
    let mut cfg = kubelet::Config::resolve(flags).unwrap();
    cfg.pod_logs_dir = d.join("pod-logs");
    cfg.healthz_port = 0;
    cfg.cgroup_root = ctd.cgroup_root.clone();
    cfg.port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let kubelet_client = client::Client::new(&prepared.config).unwrap();
    let kubelet = tokio::spawn(kubelet::run_with_client(kubelet_client, cfg, stop_rx));

    // Running before there is an apiserver.
    let cri = proto::Cri::connect(&ctd.endpoint()).await.unwrap();
    let first =
        eventually(30, "kube-scheduler running without an apiserver", async || running(&cri).await.into_iter().next())
            .await;
    assert!(std::net::TcpStream::connect(server.trim_start_matches("https://")).is_err(), "no apiserver yet");

    // The apiserver comes up: the mirror pod appears with the pod's status, Ready through the HTTPS probes.
    let api = prepared.start(&[]).await;
    let pods = api.client.api("", "v1", "pods").unwrap().namespaced("kube-system");
    let mirror = eventually(40, "the mirror pod Running and Ready", async || {
        pods.get("kube-scheduler-e2e-node").await.ok().filter(ready)
    })
    .await;
    assert!(mirror["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string(), "{mirror:#}");
    assert_eq!(mirror["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert_eq!(mirror["spec"]["nodeName"], "e2e-node");
    assert_eq!(mirror["status"]["containerStatuses"][0]["containerID"], format!("containerd://{first}"));

    // It talks to the API: it leads and binds a pod to the node.
    let leases = api.client.api("coordination.k8s.io", "v1", "leases").unwrap().namespaced("kube-system");
    let lease = eventually(20, "the kube-scheduler Lease", async || leases.get("kube-scheduler").await.ok()).await;
    assert!(lease["spec"]["holderIdentity"].as_str().is_some_and(|h| !h.is_empty()), "{lease:#}");
    let default_pods = api.client.api("", "v1", "pods").unwrap().namespaced("default");
    default_pods
        .create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "scheduled"},
            "spec": {"containers": [{"name": "c", "image": "docker.io/library/busybox:1.36"}]}}))
        .await
        .unwrap();
    eventually(20, "the pod bound by the static kube-scheduler", async || {
        default_pods.get("scheduled").await.ok().filter(|p| p["spec"]["nodeName"] == "e2e-node")
    })
    .await;
    default_pods.delete("scheduled", Some(&json!({"gracePeriodSeconds": 0}))).await.unwrap();

    // A rewritten manifest replaces the pod: the old container stops, a new one runs with the new flags, the mirror
    // follows the new config hash.
    let old_hash = mirror["metadata"]["annotations"]["kubernetes.io/config.hash"].clone();
    std::fs::write(manifests.join("kube-scheduler.yaml"), manifest(&kubeconfig, port, "\n    - --v=2")).unwrap();
    let second = eventually(40, "the new kube-scheduler container", async || {
        let ids = running(&cri).await;
        (ids.len() == 1 && ids[0] != first).then(|| ids[0].clone())
    })
    .await;
    let mirror = eventually(30, "the mirror pod of the new manifest", async || {
        pods.get("kube-scheduler-e2e-node")
            .await
            .ok()
            .filter(|p| p["metadata"]["annotations"]["kubernetes.io/config.hash"] != old_hash)
            .filter(|p| p["status"]["containerStatuses"][0]["containerID"] == format!("containerd://{second}"))
    })
    .await;
    assert!(mirror["spec"]["containers"][0]["command"].as_array().unwrap().contains(&json!("--v=2")));

    // The manifest removed: the pod stops and its mirror goes.
    std::fs::remove_file(manifests.join("kube-scheduler.yaml")).unwrap();
    eventually(30, "the static pod gone", async || {
        let gone = pods.get("kube-scheduler-e2e-node").await.err().is_some_and(|e| e.code() == Some(404));
        (gone && running(&cri).await.is_empty()).then_some(())
    })
    .await;
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), kubelet).await;
    drop(api);
    tokio::task::spawn_blocking(move || drop(ctd)).await.unwrap();
    eprintln!("static pod test took {:.1}s", started.elapsed().as_secs_f64());
}
