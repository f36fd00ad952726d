//! The CRI client against the fake runtime and against a real containerd (root, Debian's containerd and runc).

use std::collections::HashMap;
use std::time::Duration;

use proto::Cri;
use proto::cri::*;
use proto::fake::FakeCri;

async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f).await.expect("timed out")
}

fn sandbox_config(name: &str, log_dir: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        // Host-network sandboxes share the node's UTS namespace: no hostname of their own (as the kubelet does).
        hostname: String::new(),
        log_directory: log_dir.into(),
        labels: HashMap::from([("io.kubernetes.pod.name".into(), name.into())]),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption { network: NamespaceMode::Node as i32, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(name: &str, image: &str, cmd: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(ImageSpec { image: image.into(), ..Default::default() }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_runtime_lifecycle_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("fake.sock");
    let fake = FakeCri::with_images(&["registry.k8s.io/pause:3.10"]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(fake.clone().serve_unix(sock.clone(), async {
        let _ = stopped.await;
    }));
    let mut cri = within(10, async {
        loop {
            if let Ok(c) = Cri::connect(&format!("unix://{}", sock.display())).await {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let v = cri.runtime.version(VersionRequest::default()).await.unwrap().into_inner();
    assert_eq!((v.runtime_name.as_str(), v.runtime_api_version.as_str()), ("fake", "v1"));
    // Images: pull works, a missing one fails like a registry 404.
    let img = |i: &str| Some(ImageSpec { image: i.into(), ..Default::default() });
    assert!(
        cri.image
            .image_status(ImageStatusRequest { image: img("busybox:1.36"), verbose: false })
            .await
            .unwrap()
            .into_inner()
            .image
            .is_none()
    );
    cri.image.pull_image(PullImageRequest { image: img("busybox:1.36"), ..Default::default() }).await.unwrap();
    let err = cri
        .image
        .pull_image(PullImageRequest { image: img("example.com/does-not-exist:1"), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    // Sandbox and container lifecycle.
    let sb = cri
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(sandbox_config("p1", "/tmp")),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let status = cri
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: sb.clone(), verbose: false })
        .await
        .unwrap()
        .into_inner();
    assert!(!status.status.unwrap().network.unwrap().ip.is_empty());
    let id = cri
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sb.clone(),
            config: Some(container_config("c", "busybox:1.36", &["sleep", "100"])),
            sandbox_config: Some(sandbox_config("p1", "/tmp")),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    cri.runtime.start_container(StartContainerRequest { container_id: id.clone() }).await.unwrap();
    let st = |cri: &mut Cri, id: String| {
        let mut rt = cri.runtime.clone();
        async move {
            rt.container_status(ContainerStatusRequest { container_id: id, verbose: false })
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap()
        }
    };
    assert_eq!(st(&mut cri, id.clone()).await.state, ContainerState::ContainerRunning as i32);
    fake.exit_container(&id, 3);
    let s = st(&mut cri, id.clone()).await;
    assert_eq!((s.state, s.exit_code, s.reason.as_str()), (ContainerState::ContainerExited as i32, 3, "Error"));
    let listed = cri
        .runtime
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter { pod_sandbox_id: sb.clone(), ..Default::default() }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.containers.len(), 1);
    cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: sb.clone() }).await.unwrap();
    cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: sb }).await.unwrap();
    assert_eq!(fake.counts(), (0, 0));
    let _ = stop.send(());
    within(10, server).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_containerd_runs_a_busybox_container() {
    let base = tempfile::tempdir().unwrap();
    let ctd = tokio::task::spawn_blocking({
        let base = base.path().to_path_buf();
        move || proto::testing::Containerd::start(&base)
    })
    .await
    .unwrap()
    .expect("containerd must be installed to run this test (apt-get install containerd runc)");
    let mut cri = within(20, async {
        loop {
            if let Ok(c) = Cri::connect(&ctd.endpoint()).await
                && c.runtime.clone().version(VersionRequest::default()).await.is_ok()
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let v = cri.runtime.version(VersionRequest::default()).await.unwrap().into_inner();
    assert_eq!(v.runtime_name, "containerd");
    let images = cri.image.list_images(ListImagesRequest::default()).await.unwrap().into_inner().images;
    assert!(images.iter().any(|i| i.repo_tags.iter().any(|t| t == "docker.io/library/busybox:1.36")), "{images:?}");
    // A host-network sandbox (no CNI needed), and a container that prints and exits.
    let logs = ctd.dir.join("logs");
    std::fs::create_dir_all(logs.join("c")).unwrap();
    let config = sandbox_config("host-pod", logs.to_str().unwrap());
    let sb = within(
        60,
        cri.runtime
            .run_pod_sandbox(RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() }),
    )
    .await
    .unwrap()
    .into_inner()
    .pod_sandbox_id;
    let id = within(
        60,
        cri.runtime.create_container(CreateContainerRequest {
            pod_sandbox_id: sb.clone(),
            config: Some(container_config(
                "c",
                "docker.io/library/busybox:1.36",
                &["sh", "-c", "echo hello from busybox; exit 7"],
            )),
            sandbox_config: Some(config),
        }),
    )
    .await
    .unwrap()
    .into_inner()
    .container_id;
    within(30, cri.runtime.start_container(StartContainerRequest { container_id: id.clone() })).await.unwrap();
    let status = within(30, async {
        loop {
            let s = cri
                .runtime
                .container_status(ContainerStatusRequest { container_id: id.clone(), verbose: false })
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap();
            if s.state == ContainerState::ContainerExited as i32 {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(status.exit_code, 7);
    let log = std::fs::read_to_string(logs.join("c/0.log")).unwrap();
    assert!(log.contains("stdout F hello from busybox"), "CRI log format: {log}");
    within(30, cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: sb.clone() })).await.unwrap();
    within(30, cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: sb })).await.unwrap();
    let left = cri.runtime.list_containers(ListContainersRequest::default()).await.unwrap().into_inner().containers;
    assert!(left.is_empty());
    drop(cri);
    tokio::task::spawn_blocking(move || drop(ctd)).await.unwrap();
}
