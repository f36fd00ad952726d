//! End to end on this machine: kube-apiserver (in-process, TLS), a private containerd (Debian's package) and the
//! kubelet; pods created with kubectl run as real containers. Host-network pods only here (no CNI traffic).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use client::{Client, Config, ListParams};
use kube_apiserver::pki::Ca;
use serde_json::Value;

async fn start_apiserver(dir: &Path) -> (Client, std::path::PathBuf, tokio::sync::oneshot::Sender<()>) {
    let ca = Ca::new("kubernetes").unwrap();
    std::fs::write(dir.join("ca.crt"), &ca.cert_pem).unwrap();
    ca.issue("kube-apiserver", &[], &["127.0.0.1"]).unwrap().write(&dir.join("s.crt"), &dir.join("s.key")).unwrap();
    let admin = ca.issue("admin", &["system:masters"], &[]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let opts = <kube_apiserver::Options as clap::Parser>::try_parse_from([
        "kube-apiserver".to_string(),
        format!("--secure-port={port}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--data-dir={}", dir.join("data").display()),
        format!("--cert-dir={}", dir.join("certs").display()),
        format!("--tls-cert-file={}", dir.join("s.crt").display()),
        format!("--tls-private-key-file={}", dir.join("s.key").display()),
        format!("--client-ca-file={}", dir.join("ca.crt").display()),
        // No controller-manager makes `default` service accounts here.
        "--disable-admission-plugins=ServiceAccount".into(),
        // kubeadm's order: the node's name does not resolve.
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname".into(),
    ])
    .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(kube_apiserver::server::serve(opts, listener, async move {
        let _ = rx.await;
    }));
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let kubeconfig = dir.join("admin.conf");
    std::fs::write(&kubeconfig, format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
        b64(&ca.cert_pem), b64(&admin.cert_pem), b64(&admin.key_pem))).unwrap();
    let client = Client::new(&Config::from_kubeconfig(&kubeconfig).unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get_raw("/readyz").await.is_err() {
        assert!(Instant::now() < deadline, "apiserver not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (client, kubeconfig, tx)
}

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = kubectl_output(kubeconfig, args, stdin);
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs kubectl and returns whatever it did (exit status, stdout, stderr).
fn kubectl_output(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", kubeconfig.parent().unwrap())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Polls until `f` returns Some, or fails after `secs`.
async fn eventually<T>(secs: u64, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls a pod until `pred` holds; on timeout the failure shows the pod as it was last seen.
async fn pod_until(pods: &client::Api, name: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = Value::Null;
    loop {
        if let Ok(p) = pods.get(name).await {
            if pred(&p) {
                return p;
            }
            last = p;
        }
        assert!(Instant::now() < deadline, "timed out waiting for pod {name}: {:#}", last["status"]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn pod(name: &str, restart: &str, script: &str, init: Option<&str>) -> String {
    let init = init
        .map(|i| format!("  initContainers:\n  - name: init\n    image: docker.io/library/busybox:1.36\n    imagePullPolicy: Never\n    command: [sh, -c, '{i}']\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: e2e-node\n  hostNetwork: true\n  restartPolicy: {restart}\n  terminationGracePeriodSeconds: 2\n{init}  containers:\n  - name: main\n    image: docker.io/library/busybox:1.36\n    imagePullPolicy: Never\n    command: [sh, -c, '{script}']\n"
    )
}

/// A private containerd and the configuration of a kubelet named `e2e-node` that uses it.
async fn node_on_containerd(dir: &Path) -> (proto::testing::Containerd, kubelet::Config) {
    let ctd = tokio::task::spawn_blocking({
        let base = dir.to_path_buf();
        move || proto::testing::Containerd::start(&base)
    })
    .await
    .unwrap()
    .expect("containerd must be installed (apt-get install containerd runc containernetworking-plugins)");
    let flags = kubelet::Flags {
        container_runtime_endpoint: Some(ctd.endpoint()),
        hostname_override: Some("e2e-node".into()),
        node_ip: Some("127.0.0.1".into()),
        root_dir: Some(dir.join("kubelet")),
        ..Default::default()
    };
    let mut cfg = kubelet::Config::resolve(flags).unwrap();
    cfg.pod_logs_dir = dir.join("pods-logs");
    // ConfigMap and Secret volumes follow their objects at each pod's periodic sync (`syncFrequency`, 1 min by
    // default, as upstream): shorter here so the test sees an update soon.
    cfg.sync_frequency = Duration::from_secs(3);
    cfg.cni_conf_dir = Some(ctd.cni_conf_dir.clone());
    cfg.cgroup_root = ctd.cgroup_root.clone();
    cfg.port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    (ctd, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_on_containerd() {
    let dir = tempfile::tempdir().unwrap();
    let (client, kubeconfig, api_stop) = start_apiserver(dir.path()).await;
    let (ctd, mut cfg) = node_on_containerd(dir.path()).await;
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    cfg.pod_manifest_path = Some(manifests.clone());
    cfg.file_check_frequency = Duration::from_secs(2);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut kubelet = tokio::spawn(kubelet::run_with_client(client.clone(), cfg.clone(), stop_rx));

    // The node registers Ready with its capacity, and heartbeats through its Lease.
    let nodes = client.api("", "v1", "nodes").unwrap();
    let node = eventually(20, "node registration", async || nodes.get("e2e-node").await.ok()).await;
    let ready = node["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
    assert_eq!(ready["status"], "True");
    assert!(node["status"]["capacity"]["pods"] == "110");
    assert!(node["status"]["nodeInfo"]["containerRuntimeVersion"].as_str().unwrap().starts_with("containerd://"));
    // Node status as upstream's: the images on the node (largest first, names and sizes), the kubelet's endpoint,
    // the machine's IDs.
    let node = eventually(20, "images in the node status", async || {
        nodes.get("e2e-node").await.ok().filter(|n| n["status"]["images"].as_array().is_some_and(|i| i.len() >= 2))
    })
    .await;
    let images = node["status"]["images"].as_array().unwrap();
    let named = |want: &str| {
        images.iter().any(|i| i["names"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains(want)))
    };
    assert!(named("busybox:1.36") && named("pause:3.10"), "{images:?}");
    assert!(images.iter().all(|i| i["sizeBytes"].as_i64().unwrap() > 0));
    let sizes: Vec<i64> = images.iter().map(|i| i["sizeBytes"].as_i64().unwrap()).collect();
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "largest first: {sizes:?}");
    assert_eq!(node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"], cfg.port);
    for id in ["bootID", "machineID"] {
        assert!(!node["status"]["nodeInfo"][id].as_str().unwrap().is_empty(), "{id}: {:#}", node["status"]["nodeInfo"]);
    }
    let leases = client.api("coordination.k8s.io", "v1", "leases").unwrap().namespaced("kube-node-lease");
    eventually(20, "node lease", async || leases.get("e2e-node").await.ok()).await;

    let pods = client.api("", "v1", "pods").unwrap().namespaced("default");
    let phase = |p: &Value| p["status"]["phase"].as_str().unwrap_or_default().to_string();

    // A long-running pod becomes Running with its container status.
    kubectl(
        &kubeconfig,
        &["create", "-f", "-"],
        Some(&pod("runner", "Always", "echo started; sleep 3600", Some("echo init done"))),
    );
    let p = eventually(60, "runner Running", async || {
        pods.get("runner")
            .await
            .ok()
            .filter(|p| phase(p) == "Running" && p["status"]["containerStatuses"][0]["ready"] == true)
    })
    .await;
    assert_eq!(p["status"]["podIP"], "127.0.0.1");
    assert_eq!(p["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"], 0);
    assert!(p["status"]["containerStatuses"][0]["containerID"].as_str().unwrap().starts_with("containerd://"));
    let conds = p["status"]["conditions"].as_array().unwrap();
    assert!(conds.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
    let table = kubectl(&kubeconfig, &["get", "pods", "-o", "wide"], None);
    assert!(table.contains("runner") && table.contains("Running") && table.contains("e2e-node"), "{table}");

    // Restarting the kubelet does not restart healthy containers.
    let before = p["status"]["containerStatuses"][0]["containerID"].clone();
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), kubelet).await.expect("kubelet stops").unwrap().unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    kubelet = tokio::spawn(kubelet::run_with_client(client.clone(), cfg.clone(), stop_rx));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = pod_until(&pods, "runner", 30, |p| p["status"]["phase"] == "Running").await;
    assert_eq!(after["status"]["containerStatuses"][0]["containerID"], before, "the container was not restarted");
    assert_eq!(after["status"]["containerStatuses"][0]["restartCount"], 0);

    // Logs through the apiserver's pods/log proxy to the kubelet API.
    let logs = kubectl(&kubeconfig, &["logs", "runner"], None);
    assert_eq!(logs, "started\n");
    let logs = kubectl(&kubeconfig, &["logs", "runner", "-c", "init", "--timestamps"], None);
    assert!(logs.ends_with(" init done\n") && logs.starts_with("20"), "{logs}");
    kubectl(
        &kubeconfig,
        &["create", "-f", "-"],
        Some(&pod("ticker", "Never", "for i in 1 2 3; do echo tick $i; sleep 1; done", None)),
    );
    pod_until(&pods, "ticker", 30, |p| p["status"]["containerStatuses"][0]["state"]["running"].is_object()).await;
    let followed = tokio::task::spawn_blocking({
        let kc = kubeconfig.clone();
        move || kubectl(&kc, &["logs", "-f", "ticker"], None)
    })
    .await
    .unwrap();
    assert_eq!(followed, "tick 1\ntick 2\ntick 3\n", "logs -f streams until the container exits");

    // securityContext and resources reach the container: user, group, read-only root, cgroup limits.
    let secured = r#"apiVersion: v1
kind: Pod
metadata: {name: secured}
spec:
  nodeName: e2e-node
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  securityContext: {runAsGroup: 2345}
  containers:
  - name: main
    image: docker.io/library/busybox:1.36
    imagePullPolicy: Never
    command: [sh, -c, 'id -u; id -g; (touch /rootfs-test 2>/dev/null && echo writable) || echo read-only; cat /sys/fs/cgroup/memory/memory.limit_in_bytes; cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us; sleep 3600']
    securityContext: {runAsUser: 1234, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
    resources: {limits: {cpu: 500m, memory: 64Mi}}
"#;
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(secured));
    pod_until(&pods, "secured", 60, |p| p["status"]["phase"] == "Running").await;
    let out = eventually(20, "the secured pod's output", async || {
        let l = kubectl(&kubeconfig, &["logs", "secured"], None);
        (l.lines().count() >= 5).then_some(l)
    })
    .await;
    assert_eq!(out, "1234\n2345\nread-only\n67108864\n50000\n", "securityContext and limits inside the container");
    assert_eq!(pods.get("secured").await.unwrap()["status"]["qosClass"], "Guaranteed");

    // postStart runs after the container starts; preStop runs before it is stopped.
    let hooks_dir = dir.path().join("hooks");
    let hooked = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: hooked}}
spec:
  nodeName: e2e-node
  hostNetwork: true
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: docker.io/library/busybox:1.36
    imagePullPolicy: Never
    command: [sh, -c, 'while [ ! -f /hooks/poststart ]; do sleep 0.1; done; cat /hooks/poststart; trap "exit 0" TERM; sleep 3600 & wait']
    volumeMounts: [{{name: hooks, mountPath: /hooks}}]
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, 'echo from-poststart > /hooks/poststart']}}}}
      preStop: {{exec: {{command: [sh, -c, 'echo from-prestop > /hooks/prestop']}}}}
  volumes:
  - name: hooks
    hostPath: {{path: {}, type: DirectoryOrCreate}}
"#,
        hooks_dir.display()
    );
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(&hooked));
    pod_until(&pods, "hooked", 60, |p| p["status"]["phase"] == "Running").await;
    eventually(20, "postStart output", async || {
        kubectl(&kubeconfig, &["logs", "hooked"], None).contains("from-poststart").then_some(())
    })
    .await;
    kubectl(&kubeconfig, &["delete", "pod", "hooked", "--wait=true", "--timeout=30s"], None);
    let pre = std::fs::read_to_string(hooks_dir.join("prestop")).unwrap_or_default();
    assert_eq!(pre, "from-prestop\n", "preStop ran before the stop");

    // Run to completion.
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(&pod("done", "Never", "exit 0", None)));
    eventually(60, "done Succeeded", async || pods.get("done").await.ok().filter(|p| phase(p) == "Succeeded")).await;
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(&pod("fails", "Never", "exit 3", None)));
    let f =
        eventually(60, "fails Failed", async || pods.get("fails").await.ok().filter(|p| phase(p) == "Failed")).await;
    assert_eq!(f["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 3);

    // A crashing container is restarted, then held in CrashLoopBackOff.
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(&pod("crash", "Always", "exit 1", None)));
    let c = eventually(60, "CrashLoopBackOff", async || {
        pods.get("crash")
            .await
            .ok()
            .filter(|p| p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff")
    })
    .await;
    assert!(c["status"]["containerStatuses"][0]["restartCount"].as_u64().unwrap() >= 1);
    assert_eq!(c["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"], 1);
    kubectl(&kubeconfig, &["logs", "crash", "--previous"], None);

    // A missing image with pullPolicy Never waits with ErrImageNeverPull.
    let missing =
        pod("noimage", "Always", "true", None).replace("docker.io/library/busybox:1.36", "example.com/nothing:1");
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(&missing));
    eventually(30, "ErrImageNeverPull", async || {
        pods.get("noimage")
            .await
            .ok()
            .filter(|p| p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImageNeverPull")
    })
    .await;

    // Environment from values, fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef and envFrom; configMap,
    // secret, downwardAPI and emptyDir volumes (with subPath and items).
    let config = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {key: from-configmap, other: x}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: sec}\nstringData: {password: s3cret}\n";
    kubectl(&kubeconfig, &["apply", "-f", "-"], Some(config));
    let volumes_pod = r#"apiVersion: v1
kind: Pod
metadata: {name: volumes, labels: {app: vol}}
spec:
  nodeName: e2e-node
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:1.36
    imagePullPolicy: Never
    command: [sh, -c, 'echo "A=$A POD=$POD_NAME MEM=$MEM_MI CM=$CM PW=$PW OTHER=$other"; cat /cfg/renamed; echo; cat /info/labels; echo; cat /sec/password; echo; echo x > /scratch/f && cat /scratch/sub/../f; sleep 3600']
    resources: {limits: {memory: 64Mi}}
    env:
    - {name: A, value: plain}
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: MEM_MI
      valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
    - name: CM
      valueFrom: {configMapKeyRef: {name: cfg, key: key}}
    - name: PW
      valueFrom: {secretKeyRef: {name: sec, key: password}}
    envFrom:
    - configMapRef: {name: cfg}
    volumeMounts:
    - {name: cfg, mountPath: /cfg}
    - {name: sec, mountPath: /sec, readOnly: true}
    - {name: info, mountPath: /info}
    - {name: scratch, mountPath: /scratch}
  volumes:
  - name: cfg
    configMap: {name: cfg, items: [{key: key, path: renamed}]}
  - name: sec
    secret: {secretName: sec}
  - name: info
    downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}
  - name: scratch
    emptyDir: {}
"#;
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(volumes_pod));
    let v = pod_until(&pods, "volumes", 60, |p| phase(p) == "Running").await;
    let uid = v["metadata"]["uid"].as_str().unwrap().to_string();
    let log_path = dir.path().join("pods-logs").join(format!("default_volumes_{uid}")).join("main/0.log");
    let log = eventually(30, "the volumes pod's log", async || {
        std::fs::read_to_string(&log_path).ok().filter(|l| l.lines().count() >= 5)
    })
    .await;
    for want in
        ["A=plain POD=volumes MEM=64 CM=from-configmap PW=s3cret OTHER=x", "from-configmap", "app=\"vol\"", "s3cret"]
    {
        assert!(log.contains(want), "missing {want:?} in {log}");
    }
    // configMap updates reach the mounted files (on the next periodic sync).
    kubectl(&kubeconfig, &["patch", "configmap", "cfg", "--type=merge", "-p", r#"{"data":{"key":"updated"}}"#], None);
    let file = dir.path().join("kubelet/pods").join(&uid).join("volumes/kubernetes.io~configmap/cfg/renamed");
    eventually(30, "configMap update in the volume", async || {
        std::fs::read_to_string(&file).ok().filter(|c| c == "updated")
    })
    .await;

    // Probes: readiness gates Ready; a failing liveness probe restarts the container.
    let probed = r#"apiVersion: v1
kind: Pod
metadata: {name: probed}
spec:
  nodeName: e2e-node
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:1.36
    imagePullPolicy: Never
    command: [sh, -c, 'touch /tmp/alive; sleep 2; touch /tmp/ready; sleep 4; rm /tmp/alive; sleep 3600']
    readinessProbe: {exec: {command: [cat, /tmp/ready]}, periodSeconds: 1, failureThreshold: 1}
    livenessProbe: {exec: {command: [cat, /tmp/alive]}, periodSeconds: 1, failureThreshold: 2}
"#;
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(probed));
    let p =
        pod_until(&pods, "probed", 30, |p| p["status"]["containerStatuses"][0]["state"]["running"].is_object()).await;
    assert_eq!(p["status"]["containerStatuses"][0]["ready"], false, "not ready before the readiness probe passes");
    pod_until(&pods, "probed", 30, |p| p["status"]["containerStatuses"][0]["ready"] == true).await;
    let restarted = pod_until(&pods, "probed", 60, |p| {
        p["status"]["containerStatuses"][0]["restartCount"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert!(restarted["status"]["containerStatuses"][0]["lastState"]["terminated"].is_object());
    // Its two probes are two live probe workers in the kubelet's /metrics.
    let metrics = async || kubectl(&kubeconfig, &["get", "--raw", "/api/v1/nodes/e2e-node/proxy/metrics"], None);
    eventually(20, "two probe workers", async || {
        metrics().await.contains("\nkubelet_prober_workers 2\n").then_some(())
    })
    .await;

    // Static pods run from the manifest directory, with a mirror pod in the API that comes back when deleted.
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata: {name: static-web, namespace: kube-system}\nspec:\n  hostNetwork: true\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: docker.io/library/busybox:1.36\n    imagePullPolicy: Never\n    command: [sleep, '3600']\n";
    std::fs::write(manifests.join("static-web.yaml"), manifest).unwrap();
    let system = client.api("", "v1", "pods").unwrap().namespaced("kube-system");
    let m = pod_until(&system, "static-web-e2e-node", 60, |p| p["status"]["phase"] == "Running").await;
    assert!(m["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string());
    assert_eq!(m["metadata"]["ownerReferences"][0]["kind"], "Node");
    let first_uid = m["metadata"]["uid"].as_str().unwrap().to_string();
    kubectl(&kubeconfig, &["delete", "pod", "-n", "kube-system", "static-web-e2e-node", "--wait=false"], None);
    pod_until(&system, "static-web-e2e-node", 30, |p| {
        p["metadata"]["uid"] != first_uid.as_str() && p["status"]["phase"] == "Running"
    })
    .await;
    std::fs::remove_file(manifests.join("static-web.yaml")).unwrap();
    eventually(30, "mirror pod removal", async || {
        system.get("static-web-e2e-node").await.err().filter(|e| e.code() == Some(404))
    })
    .await;

    // Graceful deletion: the kubelet stops the containers and removes the pod from the API.
    kubectl(
        &kubeconfig,
        &[
            "delete",
            "pod",
            "runner",
            "crash",
            "noimage",
            "done",
            "fails",
            "volumes",
            "probed",
            "ticker",
            "secured",
            "--wait=true",
            "--timeout=60s",
        ],
        None,
    );
    let left = pods.list(&ListParams::default()).await.unwrap();
    assert!(left["items"].as_array().unwrap().is_empty(), "{left}");
    // The probers went with their pods.
    eventually(10, "no probe workers", async || metrics().await.contains("\nkubelet_prober_workers 0\n").then_some(()))
        .await;
    let mut cri = proto::Cri::connect(&ctd.endpoint()).await.unwrap();
    eventually(30, "runtime cleanup", async || {
        let running =
            cri.runtime.list_pod_sandbox(proto::cri::ListPodSandboxRequest::default()).await.ok()?.into_inner().items;
        running.is_empty().then_some(())
    })
    .await;

    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), kubelet).await.expect("kubelet stops").unwrap().unwrap();
    drop(cri);
    tokio::task::spawn_blocking(move || drop(ctd)).await.unwrap();
    let _ = api_stop.send(());
}

/// Removes what the bridged-network test adds to the host, even when the test fails.
struct NetworkGuard {
    blackhole: &'static str,
    bridge: &'static str,
}

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["route", "del", "blackhole", self.blackhole]).status();
        let _ = std::process::Command::new("ip").args(["link", "del", self.bridge]).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridged_pods_get_addresses_from_the_pod_cidr() {
    // Network rule: nothing addressed to the cluster may leave this machine. The pod CIDR's own route (to the
    // bridge) is more specific than the blackhole, so only addresses outside the bridge are dropped.
    const CLUSTER_CIDR: &str = "10.250.0.0/16";
    const POD_CIDR: &str = "10.250.7.0/24";
    let status =
        std::process::Command::new("ip").args(["route", "replace", "blackhole", CLUSTER_CIDR]).status().unwrap();
    assert!(status.success(), "adding the blackhole route needs root");
    let _guard = NetworkGuard { blackhole: CLUSTER_CIDR, bridge: "kbt0" };

    let dir = tempfile::tempdir().unwrap();
    let (client, kubeconfig, api_stop) = start_apiserver(dir.path()).await;
    let (ctd, mut cfg) = node_on_containerd(dir.path()).await;
    cfg.pod_cidr = Some(POD_CIDR.into());
    cfg.cni_bridge = "kbt0".into();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let kubelet = tokio::spawn(kubelet::run_with_client(client.clone(), cfg, stop_rx));

    let web = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  nodeName: e2e-node\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: httpd\n    image: docker.io/library/busybox:1.36\n    imagePullPolicy: Never\n    command: [sh, -c, 'mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www']\n    ports: [{name: http, containerPort: 8080}]\n    readinessProbe: {httpGet: {path: /index.html, port: http}, periodSeconds: 1}\n    livenessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}\n";
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(web));
    let pods = client.api("", "v1", "pods").unwrap().namespaced("default");
    let p = pod_until(&pods, "web", 90, |p| {
        p["status"]["phase"] == "Running" && p["status"]["containerStatuses"][0]["ready"] == true
    })
    .await;
    let ip = p["status"]["podIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.250.7."), "pod IP {ip} comes from the pod CIDR");
    // The node reaches the pod through the bridge.
    let body = eventually(30, "HTTP from the pod", async || {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect((ip.as_str(), 8080)).await.ok()?;
        s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        out.contains("hello-from-pod").then_some(out)
    })
    .await;
    assert!(body.starts_with("HTTP/1.") && body.contains("200"), "{body}");
    streams_reach_the_pod(&kubeconfig).await;

    kubectl(&kubeconfig, &["delete", "pod", "web", "--wait=true", "--timeout=60s"], None);
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), kubelet).await.expect("kubelet stops").unwrap().unwrap();
    tokio::task::spawn_blocking(move || drop(ctd)).await.unwrap();
    let _ = api_stop.send(());
}

/// Runs an exec over a WebSocket offering `protocols`, through the apiserver (TLS with the kubeconfig's client
/// certificate), as clients other than kubectl do; returns the protocol the server chose and the messages it sent.
type WebSocket = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A WebSocket to the apiserver at `path` (an exec), authenticated with the kubeconfig's client certificate.
async fn websocket_connect(kubeconfig: &Path, path: &str, protocols: &str) -> (Option<String>, WebSocket) {
    use base64::Engine;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let config: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(kubeconfig).unwrap()).unwrap();
    let b64 = |p: &str| {
        base64::engine::general_purpose::STANDARD.decode(config.pointer(p).unwrap().as_str().unwrap()).unwrap()
    };
    let server = config.pointer("/clusters/0/cluster/server").unwrap().as_str().unwrap().to_string();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &b64("/clusters/0/cluster/certificate-authority-data")[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    let certs: Vec<_> = rustls_pemfile::certs(&mut &b64("/users/0/user/client-certificate-data")[..])
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut &b64("/users/0/user/client-key-data")[..]).unwrap().unwrap();
    let tls =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .unwrap();
    let host = server.trim_start_matches("https://").to_string();
    let tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls)).connect(name, tcp).await.unwrap();
    let mut request = format!("wss://{host}{path}").into_client_request().unwrap();
    if !protocols.is_empty() {
        request.headers_mut().insert("sec-websocket-protocol", protocols.parse().unwrap());
    }
    let (ws, response) = tokio_tungstenite::client_async(request, stream).await.unwrap();
    let chosen = response.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_string());
    (chosen, ws)
}

/// What the server sends on an exec WebSocket until it closes it (20 s at most between messages).
async fn websocket_messages(ws: &mut WebSocket) -> Vec<tokio_tungstenite::tungstenite::Message> {
    use futures_util::StreamExt;
    let mut messages = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
        if m.is_close() {
            break;
        }
        messages.push(m);
    }
    messages
}

/// An exec over a WebSocket offering `protocols`, which the test only reads: the protocol chosen and the messages.
async fn websocket_exec(
    kubeconfig: &Path,
    path: &str,
    protocols: &str,
) -> (Option<String>, Vec<tokio_tungstenite::tungstenite::Message>) {
    let (chosen, mut ws) = websocket_connect(kubeconfig, path, protocols).await;
    (chosen, websocket_messages(&mut ws).await)
}

/// exec (exit codes, stdin, a TTY), cp both ways, attach and port-forward, through the apiserver and the kubelet to
/// containerd's streaming server, on the running pod `web` (busybox httpd on 8080).
async fn streams_reach_the_pod(kubeconfig: &Path) {
    // WebSocket channel protocols other than kubectl's v5: base64 text frames and the legacy binary protocol.
    use tokio_tungstenite::tungstenite::Message;
    let path = "/api/v1/namespaces/default/pods/web/exec?command=sh&command=-c&command=echo%20hi%3B%20exit%203&stdout=true&stderr=true";
    let (chosen, messages) = websocket_exec(kubeconfig, path, "v4.base64.channel.k8s.io").await;
    assert_eq!(chosen.as_deref(), Some("v4.base64.channel.k8s.io"));
    assert_eq!(messages.first(), Some(&Message::Text("1".into())), "the empty first frame on stdout");
    assert!(messages.contains(&Message::Text("1aGkK".into())), "stdout 'hi\\n' base64-encoded: {messages:?}");
    let status = messages.iter().find_map(|m| m.to_text().ok().and_then(|t| t.strip_prefix('3'))).unwrap();
    use base64::Engine;
    let status: Value =
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(status).unwrap()).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    let (chosen, messages) = websocket_exec(kubeconfig, path, "channel.k8s.io").await;
    assert_eq!(chosen.as_deref(), Some("channel.k8s.io"));
    assert!(messages.contains(&Message::Binary(b"\x01hi\n".to_vec().into())), "{messages:?}");
    let error = messages.iter().find_map(|m| m.clone().into_data().strip_prefix(b"\x03").map(|e| e.to_vec())).unwrap();
    assert!(String::from_utf8_lossy(&error).contains("exit code 3"), "the error text, not JSON: {error:?}");

    // With a terminal, the output waits for the client's first message (kubectl's terminal size), as kubectl up to
    // 1.33 drops what arrives before it has created its streams; half a second at most.
    let tty_path =
        "/api/v1/namespaces/default/pods/web/exec?command=echo&command=ready&stdin=true&stdout=true&tty=true";
    let (_, mut ws) = websocket_connect(kubeconfig, tty_path, "v5.channel.k8s.io").await;
    let silent = tokio::time::timeout(Duration::from_millis(300), futures_util::StreamExt::next(&mut ws)).await;
    assert!(silent.is_err(), "nothing before the client's first message: {silent:?}");
    futures_util::SinkExt::send(&mut ws, Message::Binary(b"\x04{\"Width\":80,\"Height\":24}".to_vec().into()))
        .await
        .unwrap();
    let messages = websocket_messages(&mut ws).await;
    assert_eq!(messages.first(), Some(&Message::Binary(b"\x01".to_vec().into())), "{messages:?}");
    assert!(messages.contains(&Message::Binary(b"\x01ready\r\n".to_vec().into())), "{messages:?}");
    // A client that never writes gets the output after the half second.
    let (_, mut ws) = websocket_connect(kubeconfig, tty_path, "v5.channel.k8s.io").await;
    let messages = websocket_messages(&mut ws).await;
    assert!(messages.contains(&Message::Binary(b"\x01ready\r\n".to_vec().into())), "{messages:?}");

    let out = kubectl_output(kubeconfig, &["exec", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 3"], None);
    assert_eq!(out.status.code(), Some(3), "the command's exit code: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    // kubectl 1.33's own log lines (klog, `E1205 ... websocket.go:297] Unknown stream id 1, discarding message`: its
    // reader can start before its streams exist and drop the first, empty frame) are not the command's stderr.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let command_stderr: String =
        stderr.lines().filter(|l| !l.contains("websocket.go:")).map(|l| format!("{l}\n")).collect();
    assert!(command_stderr.starts_with("err\n"), "{out:?}");
    // stdin reaches the command and its end closes the command's stdin.
    let echoed =
        kubectl(kubeconfig, &["exec", "-i", "web", "-c", "httpd", "--", "sh", "-c", "tr a-z A-Z"], Some("piped in\n"));
    assert_eq!(echoed, "PIPED IN\n");
    // A TTY (script gives kubectl a terminal): the command sees one, and the terminal size is sent.
    let tty = std::process::Command::new("script")
        .args(["-qec", "kubectl exec -it web -- sh -c 'tty; stty size'", "/dev/null"])
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", kubeconfig.parent().unwrap())
        .env("COLUMNS", "100")
        .env("LINES", "30")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success() && shown.contains("/dev/pts/"), "exec -it: {tty:?}");

    // cp: a file in (tar through stdin) and back out (tar on stdout).
    let dir = kubeconfig.parent().unwrap();
    let local = dir.join("to-pod.txt");
    let content: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&local, &content).unwrap();
    kubectl(kubeconfig, &["cp", local.to_str().unwrap(), "web:/tmp/copied.txt"], None);
    assert_eq!(kubectl(kubeconfig, &["exec", "web", "--", "cat", "/tmp/copied.txt"], None), content);
    let back = dir.join("from-pod.txt");
    kubectl(kubeconfig, &["cp", "web:/tmp/copied.txt", back.to_str().unwrap()], None);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), content);

    // nodes/proxy reaches the kubelet API: health, and the Summary API with the pod's containers measured.
    assert_eq!(kubectl(kubeconfig, &["get", "--raw", "/api/v1/nodes/e2e-node/proxy/healthz"], None), "ok");
    let summary: Value = serde_json::from_str(&kubectl(
        kubeconfig,
        &["get", "--raw", "/api/v1/nodes/e2e-node/proxy/stats/summary"],
        None,
    ))
    .unwrap();
    assert_eq!(summary["node"]["nodeName"], "e2e-node");
    assert!(summary["node"]["memory"]["workingSetBytes"].as_u64().unwrap() > 0, "{summary:#}");
    assert!(summary["node"]["fs"]["capacityBytes"].as_u64().unwrap() > 0, "{summary:#}");
    let web =
        summary["pods"].as_array().unwrap().iter().find(|p| p["podRef"]["name"] == "web").expect("web in summary");
    assert_eq!(web["containers"][0]["name"], "httpd");
    assert!(web["containers"][0]["memory"]["workingSetBytes"].as_u64().unwrap() > 0, "{web:#}");
    assert!(web["memory"]["workingSetBytes"].as_u64().unwrap() > 0, "{web:#}");

    // attach: stdin goes to the container's own process, its output comes back.
    let attached = "apiVersion: v1\nkind: Pod\nmetadata: {name: attached}\nspec:\n  nodeName: e2e-node\n  hostNetwork: true\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: docker.io/library/busybox:1.36\n    imagePullPolicy: Never\n    stdin: true\n    stdinOnce: true\n    command: [sh, -c, 'read line; echo got-$line']\n";
    kubectl(kubeconfig, &["create", "-f", "-"], Some(attached));
    eventually(60, "pod attached running", async || {
        (kubectl(kubeconfig, &["get", "pod", "attached", "-o", "jsonpath={.status.phase}"], None) == "Running")
            .then_some(())
    })
    .await;
    let said = kubectl(kubeconfig, &["attach", "-i", "attached", "-c", "main"], Some("hello\n"));
    assert!(said.contains("got-hello"), "attach: {said:?}");
    kubectl(kubeconfig, &["delete", "pod", "attached", "--wait=false"], None);
    // `kubectl run -i` of a short command: what it wrote before kubectl attached (it attaches once the pod is
    // Running) comes back when it ends without more output, as upstream's users see it (there, through kubectl
    // falling back to the logs of a pod its kubelet reports completed).
    let overrides = r#"{"spec":{"nodeName":"e2e-node","hostNetwork":true}}"#;
    let quick = kubectl_output(
        kubeconfig,
        &[
            "run",
            "quick",
            "--rm",
            "-i",
            "--restart=Never",
            "--image=docker.io/library/busybox:1.36",
            "--image-pull-policy=Never",
            "--overrides",
            overrides,
            "--",
            "sh",
            "-c",
            "echo quick-out; echo quick-err >&2; sleep 1",
        ],
        None,
    );
    let said = String::from_utf8_lossy(&quick.stdout);
    assert!(quick.status.success() && said.contains("quick-out"), "kubectl run -i of a short command: {quick:?}");

    // port-forward: a local port on loopback reaches httpd inside the pod's network namespace.
    let mut pf = tokio::process::Command::new("kubectl")
        .args(["port-forward", "pod/web", ":8080", "--address=127.0.0.1"])
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(pf.stdout.take().unwrap());
    let mut first = String::new();
    use tokio::io::AsyncBufReadExt;
    tokio::time::timeout(Duration::from_secs(30), lines.read_line(&mut first)).await.unwrap().unwrap();
    // "Forwarding from 127.0.0.1:41234 -> 8080"
    let port: u16 = first
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("port-forward said {first:?}"));
    for _ in 0..3 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(20), s.read_to_string(&mut out)).await.unwrap().unwrap();
        assert!(out.contains("200") && out.contains("hello-from-pod"), "through port-forward: {out}");
    }
    pf.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_nodes_register_and_run_pods_on_fake_runtimes() {
    let dir = tempfile::tempdir().unwrap();
    let (client, kubeconfig, api_stop) = start_apiserver(dir.path()).await;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let handles = kubelet::hollow::start(
        &Config::from_kubeconfig(&kubeconfig).unwrap(),
        5,
        "hollow",
        &dir.path().join("hollow"),
        stop_rx,
    )
    .await
    .unwrap();
    let nodes = client.api("", "v1", "nodes").unwrap();
    eventually(30, "5 Ready hollow nodes", async || {
        let list = nodes.list(&ListParams::default()).await.ok()?;
        let ready = list["items"]
            .as_array()?
            .iter()
            .filter(|n| {
                n["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
            })
            .count();
        (ready == 5).then_some(())
    })
    .await;
    let table = kubectl(&kubeconfig, &["get", "nodes"], None);
    assert_eq!(table.lines().filter(|l| l.starts_with("hollow-") && l.contains(" Ready ")).count(), 5, "{table}");
    // A pod bound to one hollow node runs there, on its fake runtime.
    let p = "apiVersion: v1\nkind: Pod\nmetadata: {name: hp}\nspec:\n  nodeName: hollow-3\n  containers: [{name: c, image: docker.io/library/busybox:1.36}]\n";
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(p));
    let pods = client.api("", "v1", "pods").unwrap().namespaced("default");
    let running = pod_until(&pods, "hp", 30, |p| p["status"]["phase"] == "Running").await;
    assert!(running["status"]["podIP"].as_str().unwrap().starts_with("10."));
    kubectl(&kubeconfig, &["delete", "pod", "hp", "--wait=true", "--timeout=30s"], None);
    let _ = stop.send(true);
    for h in handles {
        let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
    }
    let _ = api_stop.send(());
}

/// Upstream behaviours the kubelet reproduces, seen from inside real containers on a bridged pod network (its own
/// bridge and blackholed cluster range, apart from the other bridged test's): `$(VAR)` expansion, service
/// variables, the managed /etc/hosts with hostAliases and the pod's hostname, subPathExpr and refused subPath
/// symlinks, downward API resources, init container statuses, termination messages, events,
/// activeDeadlineSeconds and kubelet admission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_pod_behaviours_on_containerd() {
    const CLUSTER_CIDR: &str = "10.251.0.0/16";
    const POD_CIDR: &str = "10.251.9.0/24";
    let status =
        std::process::Command::new("ip").args(["route", "replace", "blackhole", CLUSTER_CIDR]).status().unwrap();
    assert!(status.success(), "adding the blackhole route needs root");
    let _guard = NetworkGuard { blackhole: CLUSTER_CIDR, bridge: "kbt1" };

    let dir = tempfile::tempdir().unwrap();
    let (client, kubeconfig, api_stop) = start_apiserver(dir.path()).await;
    let (ctd, mut cfg) = node_on_containerd(dir.path()).await;
    cfg.pod_cidr = Some(POD_CIDR.into());
    cfg.cni_bridge = "kbt1".into();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let kubelet = tokio::spawn(kubelet::run_with_client(client.clone(), cfg.clone(), stop_rx));
    let pods = client.api("", "v1", "pods").unwrap().namespaced("default");
    let logs_of = async |name: &str, lines: usize| {
        eventually(30, &format!("the output of {name}"), async || {
            let out = kubectl_output(&kubeconfig, &["logs", name], None);
            let l = String::from_utf8_lossy(&out.stdout).into_owned();
            (l.lines().count() >= lines).then_some(l)
        })
        .await
    };

    // A Service created before the pod appears in its environment, with the apiserver's own.
    kubectl(&kubeconfig, &["create", "service", "clusterip", "web-svc", "--tcp=8080:80"], None);
    let svc_ip = kubectl(&kubeconfig, &["get", "service", "web-svc", "-o", "jsonpath={.spec.clusterIP}"], None);
    let expanded = r#"apiVersion: v1
kind: Pod
metadata: {name: expanded}
spec:
  nodeName: e2e-node
  restartPolicy: Never
  hostname: h1
  subdomain: sub
  hostAliases: [{ip: 1.2.3.4, hostnames: [foo.example, bar.example]}]
  initContainers:
  - {name: init, image: docker.io/library/busybox:1.36, imagePullPolicy: Never, command: [sh, -c, 'echo init']}
  containers:
  - name: main
    image: docker.io/library/busybox:1.36
    imagePullPolicy: Never
    env:
    - {name: FOO, value: foo}
    - {name: BAR, value: bar}
    - {name: FOOBAR, value: '$(FOO);;$(BAR)'}
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    command: [sh, -c, 'echo ''FOOBAR=$(FOOBAR) ESCAPED=$$(FOO) UNKNOWN=$(NOPE)''; env | grep SERVICE_HOST | sort; echo "HOSTNAME=$(hostname) FILE=$(cat /etc/hostname)"; echo "CPU=$(cat /info/cpu) MILLI=$(cat /info/milli) MEM=$(cat /info/mem)"; cat /etc/hosts; echo sub > /logs/marker; printf bye > /dev/termination-log']
    resources: {limits: {cpu: 250m, memory: 64Mi}}
    volumeMounts: [{name: scratch, mountPath: /logs, subPathExpr: '$(POD_NAME)'}, {name: info, mountPath: /info}]
  volumes:
  - {name: scratch, emptyDir: {}}
  - name: info
    downwardAPI:
      items:
      - {path: cpu, resourceFieldRef: {containerName: main, resource: limits.cpu}}
      - {path: milli, resourceFieldRef: {containerName: main, resource: limits.cpu, divisor: 1m}}
      - {path: mem, resourceFieldRef: {containerName: main, resource: limits.memory}}
"#;
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(expanded));
    let done = pod_until(&pods, "expanded", 90, |p| p["status"]["phase"] == "Succeeded").await;
    let out = logs_of("expanded", 5).await;
    let ip = done["status"]["podIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.251.9."), "{ip}");
    assert!(out.starts_with("FOOBAR=foo;;bar ESCAPED=$(FOO) UNKNOWN=$(NOPE)\n"), "{out}");
    assert!(out.contains("\nKUBERNETES_SERVICE_HOST="), "{out}");
    assert!(out.contains(&format!("\nWEB_SVC_SERVICE_HOST={svc_ip}\n")), "{out}");
    assert!(out.contains("\nHOSTNAME=h1 FILE=h1\n"), "{out}");
    // The downward API volume: the cpu limit in cores (rounded up) and millicores, the memory limit in bytes.
    assert!(out.contains("\nCPU=1 MILLI=250 MEM=67108864\n"), "{out}");
    let hosts = out.split_once("# Kubernetes-managed hosts file.\n").map(|(_, h)| h).unwrap_or_else(|| panic!("{out}"));
    assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
    assert!(hosts.contains(&format!("\n{ip}\th1.sub.default.svc.cluster.local\th1\n")), "{hosts}");
    assert!(
        hosts.ends_with("\n# Entries added by HostAliases.\n1.2.3.4\tfoo.example\tbar.example\n"),
        "{hosts} {:#}",
        done["spec"]
    );
    // subPathExpr: the pod name's directory in the volume.
    let uid = done["metadata"]["uid"].as_str().unwrap();
    let marker =
        dir.path().join("kubelet/pods").join(uid).join("volumes/kubernetes.io~empty-dir/scratch/expanded/marker");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "sub\n");
    // Events as upstream's kubelet records them, shown by kubectl describe.
    let described = eventually(20, "the pod's events", async || {
        let d = kubectl(&kubeconfig, &["describe", "pod", "expanded"], None);
        d.contains("Started container main").then_some(d)
    })
    .await;
    for want in [
        "Container image \"docker.io/library/busybox:1.36\" already present on machine",
        "Created container: init",
        "Created container: main",
        "Started container init",
    ] {
        assert!(described.contains(want), "{want:?} in {described}");
    }
    let node_events =
        kubectl(&kubeconfig, &["get", "events", "--field-selector=involvedObject.kind=Node", "-o", "json"], None);
    for want in [
        "\"Starting kubelet.\"",
        "\"Node e2e-node status is now: NodeReady\"",
        "\"Node e2e-node status is now: NodeHasSufficientMemory\"",
        "\"NodeAllocatableEnforced\"",
        "\"Updated Node Allocatable limit across pods\"",
    ] {
        assert!(node_events.contains(want), "{want} in {node_events}");
    }
    // The termination message from /dev/termination-log; the init container's status.
    assert_eq!(done["status"]["containerStatuses"][0]["state"]["terminated"]["message"], "bye");
    assert_eq!(done["status"]["initContainerStatuses"][0]["ready"], true);
    let conds = done["status"]["conditions"].as_array().unwrap();
    assert!(conds.iter().any(|c| c["type"] == "Initialized" && c["status"] == "True" && c["reason"] == "PodCompleted"));
    assert!(conds.iter().any(|c| c["type"] == "Ready" && c["status"] == "False" && c["reason"] == "PodCompleted"));

    // enableServiceLinks: false keeps only the apiserver's variables; setHostnameAsFQDN gives the FQDN.
    let fqdn = r#"apiVersion: v1
kind: Pod
metadata: {name: fqdn}
spec:
  nodeName: e2e-node
  restartPolicy: Never
  enableServiceLinks: false
  subdomain: sub
  setHostnameAsFQDN: true
  containers:
  - {name: main, image: docker.io/library/busybox:1.36, imagePullPolicy: Never, command: [sh, -c, 'hostname; env | grep -c SERVICE_HOST; echo oops; exit 2'], terminationMessagePolicy: FallbackToLogsOnError}
"#;
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(fqdn));
    let failed = pod_until(&pods, "fqdn", 90, |p| p["status"]["phase"] == "Failed").await;
    assert_eq!(logs_of("fqdn", 3).await, "fqdn.sub.default.svc.cluster.local\n1\noops\n");
    // FallbackToLogsOnError: the end of the log as the message.
    assert_eq!(
        failed["status"]["containerStatuses"][0]["state"]["terminated"]["message"],
        "fqdn.sub.default.svc.cluster.local\n1\noops\n"
    );

    // A subPath through a symlink leaving the volume is refused (CreateContainerConfigError); the init container
    // that made the link finished and is ready while the app container waits.
    let escape = r#"apiVersion: v1
kind: Pod
metadata: {name: escape}
spec:
  nodeName: e2e-node
  terminationGracePeriodSeconds: 1
  initContainers:
  - {name: link, image: docker.io/library/busybox:1.36, imagePullPolicy: Never, command: [ln, -s, /etc, /vol/out], volumeMounts: [{name: vol, mountPath: /vol}]}
  containers:
  - {name: main, image: docker.io/library/busybox:1.36, imagePullPolicy: Never, command: [sleep, '3600'], volumeMounts: [{name: vol, mountPath: /data, subPath: out}]}
  volumes: [{name: vol, emptyDir: {}}]
"#;
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(escape));
    let refused = pod_until(&pods, "escape", 90, |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    })
    .await;
    assert_eq!(
        refused["status"]["containerStatuses"][0]["state"]["waiting"]["message"],
        "failed to prepare subPath for volumeMount \"vol\" of container \"main\""
    );
    assert_eq!(refused["status"]["initContainerStatuses"][0]["ready"], true);
    assert_eq!(refused["status"]["phase"], "Pending");

    // activeDeadlineSeconds: the pod fails with DeadlineExceeded and its container is killed.
    let deadline = "apiVersion: v1\nkind: Pod\nmetadata: {name: deadline}\nspec:\n  nodeName: e2e-node\n  activeDeadlineSeconds: 3\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: main, image: docker.io/library/busybox:1.36, imagePullPolicy: Never, command: [sleep, '3600']}\n";
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(deadline));
    let expired = pod_until(&pods, "deadline", 60, |p| p["status"]["phase"] == "Failed").await;
    assert_eq!(expired["status"]["reason"], "DeadlineExceeded");
    assert_eq!(expired["status"]["message"], "Pod was active on the node longer than the specified deadline");
    assert!(expired["status"]["containerStatuses"][0]["state"]["terminated"].is_object(), "{:#}", expired["status"]);

    // Admission: a second pod asking for a host port in use is rejected (NodePorts), one asking for more cpu than
    // the node has too (OutOfcpu); neither runs.
    let port_pod = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: e2e-node\n  hostNetwork: true\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: main, image: docker.io/library/busybox:1.36, imagePullPolicy: Never, command: [sleep, '3600'], ports: [{{containerPort: 18181, hostPort: 18181}}]}}\n"
        )
    };
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(&port_pod("port-a")));
    pod_until(&pods, "port-a", 60, |p| p["status"]["phase"] == "Running").await;
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(&port_pod("port-b")));
    let rejected = pod_until(&pods, "port-b", 30, |p| p["status"]["phase"] == "Failed").await;
    assert_eq!(rejected["status"]["reason"], "NodePorts");
    assert_eq!(
        rejected["status"]["message"],
        "Pod was rejected: Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports"
    );
    assert!(rejected["status"]["containerStatuses"].is_null(), "nothing ran: {:#}", rejected["status"]);
    let greedy = "apiVersion: v1\nkind: Pod\nmetadata: {name: greedy}\nspec:\n  nodeName: e2e-node\n  containers:\n  - {name: main, image: docker.io/library/busybox:1.36, imagePullPolicy: Never, command: [sleep, '3600'], resources: {requests: {cpu: '1000'}}}\n";
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(greedy));
    let greedy = pod_until(&pods, "greedy", 30, |p| p["status"]["phase"] == "Failed").await;
    assert_eq!(greedy["status"]["reason"], "OutOfcpu");

    // The pods' cgroups (upstream's pkg/kubelet/cm): kubepods limited to the node's allocatable, a cgroup per pod
    // under its QoS class's with the pod's limits, the pod's containers inside it; gone with the pod.
    let limited = "apiVersion: v1\nkind: Pod\nmetadata: {name: limited}\nspec:\n  nodeName: e2e-node\n  hostNetwork: true\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: main, image: docker.io/library/busybox:1.36, imagePullPolicy: Never, command: [sleep, '3600'], resources: {requests: {cpu: 100m, memory: 32Mi}, limits: {cpu: 200m, memory: 64Mi}}}\n";
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(limited));
    let limited = pod_until(&pods, "limited", 60, |p| p["status"]["phase"] == "Running").await;
    assert_eq!(limited["status"]["qosClass"], "Burstable");
    // Each container has its own PID namespace (no shareProcessNamespace): its command is PID 1, not the pause.
    let pid1 = kubectl(&kubeconfig, &["exec", "limited", "--", "cat", "/proc/1/cmdline"], None);
    assert!(pid1.starts_with("sleep"), "PID 1 of the container: {pid1:?}");
    // kubectl debug: an ephemeral container in the running pod, in the target container's PID namespace.
    kubectl(
        &kubeconfig,
        &[
            "debug",
            "limited",
            "--image=docker.io/library/busybox:1.36",
            "--image-pull-policy=Never",
            "--target=main",
            "--container=dbg",
            "--profile=general",
            "--",
            "sh",
            "-c",
            "cat /proc/1/cmdline; echo; echo debugged",
        ],
        None,
    );
    let debugged = pod_until(&pods, "limited", 60, |p| {
        p["status"]["ephemeralContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    })
    .await;
    assert_eq!(debugged["spec"]["ephemeralContainers"][0]["name"], "dbg");
    assert_eq!(debugged["status"]["ephemeralContainerStatuses"][0]["name"], "dbg");
    let dbg_logs = kubectl(&kubeconfig, &["logs", "limited", "-c", "dbg"], None);
    assert!(dbg_logs.starts_with("sleep") && dbg_logs.contains("debugged"), "the target's processes: {dbg_logs:?}");
    // An ephemeral container cannot be removed or changed, nor added by a plain update.
    let mut plain = pods.get("limited").await.unwrap();
    plain["spec"]["ephemeralContainers"] = serde_json::json!([]);
    let kept = pods.replace("limited", &plain).await.unwrap();
    assert_eq!(kept["spec"]["ephemeralContainers"][0]["name"], "dbg", "a plain update keeps them");
    let root = cfg.cgroup_root.trim_start_matches('/').to_string();
    let cgroup =
        |controller: &str, rel: &str| PathBuf::from(format!("/sys/fs/cgroup/{controller}/{root}/kubepods/{rel}"));
    let read =
        |p: PathBuf| std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).trim().to_string();
    let limited_dir = format!("burstable/pod{}", limited["metadata"]["uid"].as_str().unwrap());
    assert_eq!(read(cgroup("memory", &format!("{limited_dir}/memory.limit_in_bytes"))), (64 << 20).to_string());
    assert_eq!(read(cgroup("cpu", &format!("{limited_dir}/cpu.cfs_quota_us"))), "20000");
    assert_eq!(read(cgroup("cpu", &format!("{limited_dir}/cpu.shares"))), "102");
    assert_eq!(read(cgroup("cpu", "burstable/cpu.shares")), "102");
    assert_eq!(read(cgroup("cpu", "besteffort/cpu.shares")), "2");
    let kubepods_memory: u64 = read(cgroup("memory", "memory.limit_in_bytes")).parse().unwrap();
    assert!(kubepods_memory > 0 && kubepods_memory < i64::MAX as u64, "kubepods limited: {kubepods_memory}");
    // The sandbox's and the container's processes are in the pod's cgroup.
    let processes: usize = std::fs::read_dir(cgroup("memory", &limited_dir))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| std::fs::read_to_string(e.path().join("cgroup.procs")).unwrap_or_default().lines().count())
        .sum();
    assert!(processes >= 2, "the pause and sleep processes in {limited_dir}: {processes}");
    let port_a = pods.get("port-a").await.unwrap();
    let port_a_dir = cgroup("cpu", &format!("besteffort/pod{}", port_a["metadata"]["uid"].as_str().unwrap()));
    assert!(port_a_dir.is_dir(), "a BestEffort pod's cgroup: {}", port_a_dir.display());

    kubectl(
        &kubeconfig,
        &[
            "delete",
            "pod",
            "expanded",
            "fqdn",
            "escape",
            "deadline",
            "port-a",
            "port-b",
            "greedy",
            "limited",
            "--wait=true",
            "--timeout=60s",
        ],
        None,
    );
    // Removed from every hierarchy the runtime made it in (on cgroup v1 all of them: blkio, devices, freezer,
    // name=systemd... not only those with limits).
    let hierarchies: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    eventually(20, "the pods' cgroups removed", async || {
        (hierarchies.iter().all(|h| !cgroup(h, &limited_dir).exists()) && !port_a_dir.exists()).then_some(())
    })
    .await;
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), kubelet).await.expect("kubelet stops").unwrap().unwrap();
    tokio::task::spawn_blocking(move || drop(ctd)).await.unwrap();
    let _ = api_stop.send(());
}

/// Upstream's e2e for pod security contexts, sysctls and gRPC probes on a real runtime: the fsGroup in `id -G` and
/// owning the volumes (test/e2e/common/node/security_context.go, storage/empty_dir.go, projected_configmap.go),
/// a safe sysctl set in the pod and an unsafe one refused (node/sysctl.go), and gRPC liveness probes against a
/// health server in this process (the pods share the node's network, so the kubelet probes 127.0.0.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_contexts_sysctls_and_grpc_probes_on_containerd() {
    use tonic_health::ServingStatus;
    let dir = tempfile::tempdir().unwrap();
    let (client, kubeconfig, api_stop) = start_apiserver(dir.path()).await;
    let (ctd, cfg) = node_on_containerd(dir.path()).await;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let kubelet = tokio::spawn(kubelet::run_with_client(client.clone(), cfg.clone(), stop_rx));
    let pods = client.api("", "v1", "pods").unwrap().namespaced("default");
    let logs_of = async |name: &str, lines: usize| {
        eventually(60, &format!("the output of {name}"), async || {
            let out = kubectl_output(&kubeconfig, &["logs", name], None);
            let l = String::from_utf8_lossy(&out.stdout).into_owned();
            (l.lines().count() >= lines).then_some(l)
        })
        .await
    };

    // fsGroup and supplementalGroups: the process's groups, the volumes' group and modes, and a file the
    // non-root container makes in its emptyDir (the setgid directory gives it the fsGroup).
    kubectl(&kubeconfig, &["create", "configmap", "fs-cm", "--from-literal=data-1=value-1"], None);
    let grouped = r#"apiVersion: v1
kind: Pod
metadata: {name: grouped}
spec:
  nodeName: e2e-node
  hostNetwork: true
  restartPolicy: Never
  securityContext: {runAsUser: 1000, fsGroup: 1001, supplementalGroups: [5678]}
  containers:
  - name: main
    image: docker.io/library/busybox:1.36
    imagePullPolicy: Never
    command: [sh, -c, 'id -G; stat -c "%g %a" /scratch; umask 022; echo new > /scratch/f; stat -c "%g %a" /scratch/f; stat -L -c "%g %a" /cfg/data-1; cat /cfg/data-1; echo; stat -L -c "%g %a" /proj/data-1; cat /proj/data-1; echo']
    volumeMounts:
    - {name: scratch, mountPath: /scratch}
    - {name: cfg, mountPath: /cfg}
    - {name: proj, mountPath: /proj}
  volumes:
  - name: scratch
    emptyDir: {}
  - name: cfg
    configMap: {name: fs-cm}
  - name: proj
    projected: {defaultMode: 0440, sources: [{configMap: {name: fs-cm}}]}
"#;
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(grouped));
    pod_until(&pods, "grouped", 60, |p| p["status"]["phase"] == "Succeeded").await;
    let out = logs_of("grouped", 7).await;
    let lines: Vec<&str> = out.lines().collect();
    let groups: Vec<&str> = lines[0].split_whitespace().collect();
    assert!(groups.contains(&"1001") && groups.contains(&"5678"), "id -G: {}", lines[0]);
    assert_eq!(
        &lines[1..],
        ["1001 2777", "1001 644", "1001 644", "value-1", "1001 440", "value-1"],
        "emptyDir setgid and group-writable, a new file the fsGroup's, configMap files the fsGroup's with their \
         defaultMode (0440 readable by the non-root user through the fsGroup)"
    );

    // supplementalGroupsPolicy Strict on a runtime that does not report enforcing it (containerd before 2.0 has no
    // CRI features): refused by the kubelet, as upstream's since 1.33.
    let strict = grouped
        .replace("name: grouped", "name: strict")
        .replace("supplementalGroups: [5678]", "supplementalGroups: [5678], supplementalGroupsPolicy: Strict");
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(&strict));
    let refused = pod_until(&pods, "strict", 30, |p| p["status"]["phase"] == "Failed").await;
    assert_eq!(refused["status"]["reason"], "SupplementalGroupsPolicyNotSupported");
    assert_eq!(
        refused["status"]["message"],
        "Pod was rejected: SupplementalGroupsPolicy=Strict is not supported in this node"
    );

    // Sysctls: a safe one is set in the pod; an unsafe one the node does not allow fails the pod; invalid names
    // and a net sysctl with hostNetwork are the apiserver's to refuse.
    let sysctl_pod = |name: &str, sysctl: &str, value: &str, command: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: e2e-node\n  hostNetwork: true\n  restartPolicy: Never\n  securityContext:\n    sysctls: [{{name: {sysctl}, value: '{value}'}}]\n  containers:\n  - name: test-container\n    image: docker.io/library/busybox:1.36\n    imagePullPolicy: Never\n    command: [sh, -c, '{command}']\n"
        )
    };
    kubectl(
        &kubeconfig,
        &["create", "-f", "-"],
        Some(&sysctl_pod(
            "sysctl",
            "kernel.shm_rmid_forced",
            "1",
            "sysctl kernel.shm_rmid_forced; cat /proc/sys/kernel/shm_rmid_forced",
        )),
    );
    let done =
        pod_until(&pods, "sysctl", 60, |p| matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))).await;
    assert_eq!(done["status"]["phase"], "Succeeded", "{:#}", done["status"]);
    assert_eq!(logs_of("sysctl", 2).await, "kernel.shm_rmid_forced = 1\n1\n");
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(&sysctl_pod("unsafe", "kernel.msgmax", "10000000000", "true")));
    let refused = pod_until(&pods, "unsafe", 30, |p| p["status"]["phase"] == "Failed").await;
    assert_eq!(refused["status"]["reason"], "SysctlForbidden");
    assert_eq!(refused["status"]["message"], "Pod was rejected: forbidden sysctl: \"kernel.msgmax\" not allowlisted");
    let invalid =
        kubectl_output(&kubeconfig, &["create", "-f", "-"], Some(&sysctl_pod("invalid", "foo-", "bar", "true")));
    let err = String::from_utf8_lossy(&invalid.stderr);
    assert!(!invalid.status.success() && err.contains("Invalid value: \"foo-\""), "{err}");
    let host_net = kubectl_output(
        &kubeconfig,
        &["create", "-f", "-"],
        Some(&sysctl_pod("hostnet", "net.ipv4.ip_local_port_range", "1024 65535", "true")),
    );
    let err = String::from_utf8_lossy(&host_net.stderr);
    assert!(!host_net.status.success() && err.contains("may not be specified when 'hostNetwork' is true"), "{err}");

    // gRPC liveness probes: SERVING keeps the container, NOT_SERVING restarts it (with upstream's event).
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status("up", ServingStatus::Serving).await;
    reporter.set_service_status("down", ServingStatus::NotServing).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (health_stop, health_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tonic::transport::Server::builder().add_service(health).serve_with_incoming_shutdown(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        async move {
            let _ = health_stopped.await;
        },
    ));
    let grpc_pod = |name: &str, service: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: e2e-node\n  hostNetwork: true\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: docker.io/library/busybox:1.36\n    imagePullPolicy: Never\n    command: [sleep, '3600']\n    livenessProbe: {{grpc: {{port: {port}, service: {service}}}, periodSeconds: 1, failureThreshold: 2}}\n"
        )
    };
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(&grpc_pod("grpc-up", "up")));
    kubectl(&kubeconfig, &["create", "-f", "-"], Some(&grpc_pod("grpc-down", "down")));
    let restart_count = |p: &Value| p["status"]["containerStatuses"][0]["restartCount"].as_u64().unwrap_or(0);
    pod_until(&pods, "grpc-down", 60, |p| restart_count(p) >= 1).await;
    let events = client.api("", "v1", "events").unwrap().namespaced("default");
    let unhealthy = eventually(20, "the Unhealthy event", async || {
        let list = events.list(&ListParams::default()).await.ok()?;
        list["items"]
            .as_array()?
            .iter()
            .find(|e| e["reason"] == "Unhealthy" && e["involvedObject"]["name"] == "grpc-down")
            .cloned()
    })
    .await;
    assert_eq!(unhealthy["message"], "Liveness probe failed: service unhealthy (responded with \"NOT_SERVING\")");
    let up = pod_until(&pods, "grpc-up", 30, |p| p["status"]["phase"] == "Running").await;
    assert_eq!(restart_count(&up), 0);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(restart_count(&pods.get("grpc-up").await.unwrap()), 0, "a SERVING service keeps its container");
    // The service goes down: the container is restarted.
    reporter.set_service_status("up", ServingStatus::NotServing).await;
    pod_until(&pods, "grpc-up", 60, |p| restart_count(p) >= 1).await;

    kubectl(
        &kubeconfig,
        &[
            "delete",
            "pod",
            "grouped",
            "strict",
            "sysctl",
            "unsafe",
            "grpc-up",
            "grpc-down",
            "--wait=true",
            "--timeout=60s",
        ],
        None,
    );
    let _ = health_stop.send(());
    let _ = server.await;
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), kubelet).await.expect("kubelet stops").unwrap().unwrap();
    tokio::task::spawn_blocking(move || drop(ctd)).await.unwrap();
    let _ = api_stop.send(());
}
