//! A fake CRI runtime and image service, in memory: sandboxes get an address, containers start at once and run
//! until stopped, images "pull" instantly (or fail for names not allowed), exec returns success. It serves the real
//! gRPC API on a unix socket, so the kubelet's real CRI client path runs against it; hollow nodes use one each.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::Stream;
use tonic::{Request, Response, Status};

use crate::cri::image_service_server::{ImageService, ImageServiceServer};
use crate::cri::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use crate::cri::*;

fn now_nanos() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[derive(Clone, Debug)]
struct Sandbox {
    id: String,
    config: PodSandboxConfig,
    state: i32,
    created_at: i64,
    ip: String,
}

#[derive(Clone, Debug)]
struct Ctr {
    id: String,
    sandbox: String,
    config: ContainerConfig,
    state: i32,
    created_at: i64,
    started_at: i64,
    finished_at: i64,
    exit_code: i32,
    reason: String,
}

#[derive(Default)]
struct State {
    sandboxes: BTreeMap<String, Sandbox>,
    containers: BTreeMap<String, Ctr>,
    images: BTreeMap<String, Image>,
}

/// What the fake refuses to pull (to test ErrImagePull): images whose name contains this.
const UNPULLABLE: &str = "does-not-exist";

/// The fake runtime. Cheap to clone; clones share state.
#[derive(Clone, Default)]
pub struct FakeCri {
    state: Arc<Mutex<State>>,
    next_ip: Arc<AtomicU32>,
    /// How many times each method was called, for tests (counts, so that a long-lived hollow node stays small).
    pub calls: Arc<Mutex<std::collections::BTreeMap<String, u64>>>,
}

/// What a running fake container "uses": 10 millicores since it started (CPU time grows by 10 ms a second) and a
/// working set of 4 MiB plus up to 4 MiB that depend on its name, so that hollow nodes feed metrics-server.
fn synthetic_stats(c: &Ctr, now: i64) -> ContainerStats {
    let name = c.config.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or_default();
    let working_set = (4u64 << 20) + (name.bytes().map(u64::from).sum::<u64>() % 1024) * 4096;
    let cpu = (now.saturating_sub(c.started_at).max(0) as u64) / 100;
    let v = |value| Some(UInt64Value { value });
    ContainerStats {
        attributes: Some(ContainerAttributes {
            id: c.id.clone(),
            metadata: c.config.metadata.clone(),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
        }),
        cpu: Some(CpuUsage { timestamp: now, usage_core_nano_seconds: v(cpu), usage_nano_cores: v(10_000_000) }),
        memory: Some(MemoryUsage {
            timestamp: now,
            working_set_bytes: v(working_set),
            usage_bytes: v(working_set),
            rss_bytes: v(working_set / 2),
            ..Default::default()
        }),
        writable_layer: Some(FilesystemUsage {
            timestamp: now,
            used_bytes: v(4096),
            inodes_used: v(1),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn image_record(name: &str) -> Image {
    let id = format!("sha256:{:064x}", name.bytes().fold(0u128, |h, b| h.wrapping_mul(31).wrapping_add(b as u128)));
    Image {
        id,
        repo_tags: vec![name.to_string()],
        repo_digests: vec![],
        size: 1 << 20,
        uid: None,
        username: String::new(),
        spec: Some(ImageSpec { image: name.to_string(), ..Default::default() }),
        pinned: false,
    }
}

fn lock(m: &Mutex<State>) -> Result<std::sync::MutexGuard<'_, State>, Status> {
    m.lock().map_err(|_| Status::internal("fake CRI state poisoned"))
}

impl FakeCri {
    /// A runtime with these images already present.
    pub fn with_images(images: &[&str]) -> Self {
        let fake = FakeCri::default();
        if let Ok(mut st) = fake.state.lock() {
            for i in images {
                st.images.insert(i.to_string(), image_record(i));
            }
        }
        fake
    }

    fn record(&self, call: &str) {
        if let Ok(mut c) = self.calls.lock() {
            *c.entry(call.to_string()).or_default() += 1;
        }
    }

    /// Serves both services on a unix socket until `shutdown` completes.
    pub async fn serve_unix(
        self,
        path: PathBuf,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        let _ = std::fs::remove_file(&path);
        let listener = match tokio::net::UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "fake CRI cannot bind");
                return Ok(());
            }
        };
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        tonic::transport::Server::builder()
            .add_service(RuntimeServiceServer::new(self.clone()))
            .add_service(ImageServiceServer::new(self))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    }

    /// Marks a running container as exited (to simulate a crash or completion).
    pub fn exit_container(&self, id: &str, code: i32) {
        if let Ok(mut st) = self.state.lock()
            && let Some(c) = st.containers.get_mut(id)
            && c.state == ContainerState::ContainerRunning as i32
        {
            c.state = ContainerState::ContainerExited as i32;
            c.exit_code = code;
            c.finished_at = now_nanos();
            c.reason = if code == 0 { "Completed".into() } else { "Error".into() };
        }
    }

    /// Number of sandboxes and containers (for tests and metrics).
    pub fn counts(&self) -> (usize, usize) {
        self.state.lock().map(|st| (st.sandboxes.len(), st.containers.len())).unwrap_or_default()
    }

    fn sandbox_status(&self, s: &Sandbox) -> PodSandboxStatus {
        PodSandboxStatus {
            id: s.id.clone(),
            metadata: s.config.metadata.clone(),
            state: s.state,
            created_at: s.created_at,
            network: Some(PodSandboxNetworkStatus { ip: s.ip.clone(), additional_ips: vec![] }),
            linux: None,
            labels: s.config.labels.clone(),
            annotations: s.config.annotations.clone(),
            runtime_handler: String::new(),
        }
    }
}

fn container_status(c: &Ctr) -> ContainerStatus {
    ContainerStatus {
        id: c.id.clone(),
        metadata: c.config.metadata.clone(),
        state: c.state,
        created_at: c.created_at,
        started_at: c.started_at,
        finished_at: c.finished_at,
        exit_code: c.exit_code,
        image: c.config.image.clone(),
        image_ref: c.config.image.as_ref().map(|i| image_record(&i.image).id).unwrap_or_default(),
        reason: c.reason.clone(),
        message: String::new(),
        labels: c.config.labels.clone(),
        annotations: c.config.annotations.clone(),
        mounts: c.config.mounts.clone(),
        log_path: c.config.log_path.clone(),
        ..Default::default()
    }
}

fn label_match(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

type EventStream = Pin<Box<dyn Stream<Item = Result<ContainerEventResponse, Status>> + Send + 'static>>;

fn unimplemented<T>(what: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!("the fake CRI does not implement {what}")))
}

#[tonic::async_trait]
impl RuntimeService for FakeCri {
    async fn version(&self, _: Request<VersionRequest>) -> Result<Response<VersionResponse>, Status> {
        self.record("Version");
        Ok(Response::new(VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "fake".into(),
            runtime_version: "0.1.0".into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        r: Request<RunPodSandboxRequest>,
    ) -> Result<Response<RunPodSandboxResponse>, Status> {
        self.record("RunPodSandbox");
        let config = r.into_inner().config.ok_or_else(|| Status::invalid_argument("config is required"))?;
        let n = self.next_ip.fetch_add(1, Ordering::Relaxed) + 2;
        let sandbox = Sandbox {
            id: new_id(),
            config,
            state: PodSandboxState::SandboxReady as i32,
            created_at: now_nanos(),
            ip: format!("10.{}.{}.{}", 128 + (n >> 16) % 64, (n >> 8) & 255, n & 255),
        };
        let id = sandbox.id.clone();
        lock(&self.state)?.sandboxes.insert(id.clone(), sandbox);
        Ok(Response::new(RunPodSandboxResponse { pod_sandbox_id: id }))
    }

    async fn stop_pod_sandbox(
        &self,
        r: Request<StopPodSandboxRequest>,
    ) -> Result<Response<StopPodSandboxResponse>, Status> {
        self.record("StopPodSandbox");
        let id = r.into_inner().pod_sandbox_id;
        let mut st = lock(&self.state)?;
        if let Some(s) = st.sandboxes.get_mut(&id) {
            s.state = PodSandboxState::SandboxNotready as i32;
        }
        let now = now_nanos();
        for c in st.containers.values_mut().filter(|c| c.sandbox == id) {
            if c.state == ContainerState::ContainerRunning as i32 {
                c.state = ContainerState::ContainerExited as i32;
                c.exit_code = 137;
                c.finished_at = now;
                c.reason = "Error".into();
            }
        }
        Ok(Response::new(StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        r: Request<RemovePodSandboxRequest>,
    ) -> Result<Response<RemovePodSandboxResponse>, Status> {
        self.record("RemovePodSandbox");
        let id = r.into_inner().pod_sandbox_id;
        let mut st = lock(&self.state)?;
        st.sandboxes.remove(&id);
        st.containers.retain(|_, c| c.sandbox != id);
        Ok(Response::new(RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        r: Request<PodSandboxStatusRequest>,
    ) -> Result<Response<PodSandboxStatusResponse>, Status> {
        self.record("PodSandboxStatus");
        let id = r.into_inner().pod_sandbox_id;
        let st = lock(&self.state)?;
        let s = st.sandboxes.get(&id).ok_or_else(|| Status::not_found(format!("sandbox {id} not found")))?;
        Ok(Response::new(PodSandboxStatusResponse { status: Some(self.sandbox_status(s)), ..Default::default() }))
    }

    async fn list_pod_sandbox(
        &self,
        r: Request<ListPodSandboxRequest>,
    ) -> Result<Response<ListPodSandboxResponse>, Status> {
        self.record("ListPodSandbox");
        let filter = r.into_inner().filter.unwrap_or_default();
        let st = lock(&self.state)?;
        let items = st
            .sandboxes
            .values()
            .filter(|s| filter.id.is_empty() || s.id == filter.id)
            .filter(|s| filter.state.as_ref().is_none_or(|v| v.state == s.state))
            .filter(|s| label_match(&s.config.labels, &filter.label_selector))
            .map(|s| PodSandbox {
                id: s.id.clone(),
                metadata: s.config.metadata.clone(),
                state: s.state,
                created_at: s.created_at,
                labels: s.config.labels.clone(),
                annotations: s.config.annotations.clone(),
                runtime_handler: String::new(),
            })
            .collect();
        Ok(Response::new(ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        r: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        self.record("CreateContainer");
        let r = r.into_inner();
        let config = r.config.ok_or_else(|| Status::invalid_argument("config is required"))?;
        let mut st = lock(&self.state)?;
        if !st.sandboxes.contains_key(&r.pod_sandbox_id) {
            return Err(Status::not_found(format!("sandbox {} not found", r.pod_sandbox_id)));
        }
        let image = config.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
        if !st.images.contains_key(&image) {
            return Err(Status::not_found(format!("image {image:?} not present")));
        }
        let id = new_id();
        st.containers.insert(
            id.clone(),
            Ctr {
                id: id.clone(),
                sandbox: r.pod_sandbox_id,
                config,
                state: ContainerState::ContainerCreated as i32,
                created_at: now_nanos(),
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
                reason: String::new(),
            },
        );
        Ok(Response::new(CreateContainerResponse { container_id: id }))
    }

    async fn start_container(
        &self,
        r: Request<StartContainerRequest>,
    ) -> Result<Response<StartContainerResponse>, Status> {
        self.record("StartContainer");
        let id = r.into_inner().container_id;
        let mut st = lock(&self.state)?;
        let c = st.containers.get_mut(&id).ok_or_else(|| Status::not_found(format!("container {id} not found")))?;
        if c.state != ContainerState::ContainerCreated as i32 {
            return Err(Status::failed_precondition(format!("container {id} is not in created state")));
        }
        c.state = ContainerState::ContainerRunning as i32;
        c.started_at = now_nanos();
        Ok(Response::new(StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        r: Request<StopContainerRequest>,
    ) -> Result<Response<StopContainerResponse>, Status> {
        self.record("StopContainer");
        let id = r.into_inner().container_id;
        let mut st = lock(&self.state)?;
        if let Some(c) = st.containers.get_mut(&id)
            && c.state == ContainerState::ContainerRunning as i32
        {
            c.state = ContainerState::ContainerExited as i32;
            c.exit_code = 0;
            c.finished_at = now_nanos();
            c.reason = "Completed".into();
        }
        Ok(Response::new(StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        r: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerResponse>, Status> {
        self.record("RemoveContainer");
        lock(&self.state)?.containers.remove(&r.into_inner().container_id);
        Ok(Response::new(RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        r: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        self.record("ListContainers");
        let filter = r.into_inner().filter.unwrap_or_default();
        let st = lock(&self.state)?;
        let containers = st
            .containers
            .values()
            .filter(|c| filter.id.is_empty() || c.id == filter.id)
            .filter(|c| filter.pod_sandbox_id.is_empty() || c.sandbox == filter.pod_sandbox_id)
            .filter(|c| filter.state.as_ref().is_none_or(|v| v.state == c.state))
            .filter(|c| label_match(&c.config.labels, &filter.label_selector))
            .map(|c| Container {
                id: c.id.clone(),
                pod_sandbox_id: c.sandbox.clone(),
                metadata: c.config.metadata.clone(),
                image: c.config.image.clone(),
                image_ref: c.config.image.as_ref().map(|i| image_record(&i.image).id).unwrap_or_default(),
                state: c.state,
                created_at: c.created_at,
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
                image_id: String::new(),
            })
            .collect();
        Ok(Response::new(ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        r: Request<ContainerStatusRequest>,
    ) -> Result<Response<ContainerStatusResponse>, Status> {
        self.record("ContainerStatus");
        let id = r.into_inner().container_id;
        let st = lock(&self.state)?;
        let c = st.containers.get(&id).ok_or_else(|| Status::not_found(format!("container {id} not found")))?;
        Ok(Response::new(ContainerStatusResponse { status: Some(container_status(c)), info: HashMap::new() }))
    }

    async fn update_container_resources(
        &self,
        _: Request<UpdateContainerResourcesRequest>,
    ) -> Result<Response<UpdateContainerResourcesResponse>, Status> {
        Ok(Response::new(UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        _: Request<ReopenContainerLogRequest>,
    ) -> Result<Response<ReopenContainerLogResponse>, Status> {
        Ok(Response::new(ReopenContainerLogResponse {}))
    }

    async fn exec_sync(&self, _: Request<ExecSyncRequest>) -> Result<Response<ExecSyncResponse>, Status> {
        self.record("ExecSync");
        Ok(Response::new(ExecSyncResponse { stdout: vec![], stderr: vec![], exit_code: 0 }))
    }

    async fn exec(&self, _: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
        unimplemented("Exec")
    }

    async fn attach(&self, _: Request<AttachRequest>) -> Result<Response<AttachResponse>, Status> {
        unimplemented("Attach")
    }

    async fn port_forward(&self, _: Request<PortForwardRequest>) -> Result<Response<PortForwardResponse>, Status> {
        unimplemented("PortForward")
    }

    async fn container_stats(
        &self,
        _: Request<ContainerStatsRequest>,
    ) -> Result<Response<ContainerStatsResponse>, Status> {
        unimplemented("ContainerStats")
    }

    async fn list_container_stats(
        &self,
        _: Request<ListContainerStatsRequest>,
    ) -> Result<Response<ListContainerStatsResponse>, Status> {
        let now = now_nanos();
        let st = lock(&self.state)?;
        let stats = st
            .containers
            .values()
            .filter(|c| c.state == ContainerState::ContainerRunning as i32)
            .map(|c| synthetic_stats(c, now))
            .collect();
        Ok(Response::new(ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        _: Request<PodSandboxStatsRequest>,
    ) -> Result<Response<PodSandboxStatsResponse>, Status> {
        unimplemented("PodSandboxStats")
    }

    async fn list_pod_sandbox_stats(
        &self,
        _: Request<ListPodSandboxStatsRequest>,
    ) -> Result<Response<ListPodSandboxStatsResponse>, Status> {
        Ok(Response::new(ListPodSandboxStatsResponse { stats: vec![] }))
    }

    async fn update_runtime_config(
        &self,
        _: Request<UpdateRuntimeConfigRequest>,
    ) -> Result<Response<UpdateRuntimeConfigResponse>, Status> {
        Ok(Response::new(UpdateRuntimeConfigResponse {}))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        self.record("Status");
        let cond = |t: &str| RuntimeCondition {
            r#type: t.into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        };
        Ok(Response::new(StatusResponse {
            status: Some(RuntimeStatus { conditions: vec![cond("RuntimeReady"), cond("NetworkReady")] }),
            ..Default::default()
        }))
    }

    async fn checkpoint_container(
        &self,
        _: Request<CheckpointContainerRequest>,
    ) -> Result<Response<CheckpointContainerResponse>, Status> {
        unimplemented("CheckpointContainer")
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        _: Request<GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        unimplemented("GetContainerEvents")
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<ListMetricDescriptorsRequest>,
    ) -> Result<Response<ListMetricDescriptorsResponse>, Status> {
        Ok(Response::new(ListMetricDescriptorsResponse { descriptors: vec![] }))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<ListPodSandboxMetricsRequest>,
    ) -> Result<Response<ListPodSandboxMetricsResponse>, Status> {
        Ok(Response::new(ListPodSandboxMetricsResponse { pod_metrics: vec![] }))
    }

    async fn runtime_config(
        &self,
        _: Request<RuntimeConfigRequest>,
    ) -> Result<Response<RuntimeConfigResponse>, Status> {
        Ok(Response::new(RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration { cgroup_driver: CgroupDriver::Cgroupfs as i32 }),
        }))
    }
}

#[tonic::async_trait]
impl ImageService for FakeCri {
    async fn list_images(&self, _: Request<ListImagesRequest>) -> Result<Response<ListImagesResponse>, Status> {
        self.record("ListImages");
        Ok(Response::new(ListImagesResponse { images: lock(&self.state)?.images.values().cloned().collect() }))
    }

    async fn image_status(&self, r: Request<ImageStatusRequest>) -> Result<Response<ImageStatusResponse>, Status> {
        self.record("ImageStatus");
        let name = r.into_inner().image.map(|i| i.image).unwrap_or_default();
        Ok(Response::new(ImageStatusResponse {
            image: lock(&self.state)?.images.get(&name).cloned(),
            info: HashMap::new(),
        }))
    }

    async fn pull_image(&self, r: Request<PullImageRequest>) -> Result<Response<PullImageResponse>, Status> {
        self.record("PullImage");
        let name = r.into_inner().image.map(|i| i.image).unwrap_or_default();
        if name.contains(UNPULLABLE) {
            return Err(Status::not_found(format!("failed to pull image {name:?}: not found")));
        }
        let image = image_record(&name);
        let id = image.id.clone();
        lock(&self.state)?.images.insert(name, image);
        Ok(Response::new(PullImageResponse { image_ref: id }))
    }

    async fn remove_image(&self, r: Request<RemoveImageRequest>) -> Result<Response<RemoveImageResponse>, Status> {
        let name = r.into_inner().image.map(|i| i.image).unwrap_or_default();
        lock(&self.state)?.images.remove(&name);
        Ok(Response::new(RemoveImageResponse {}))
    }

    async fn image_fs_info(&self, _: Request<ImageFsInfoRequest>) -> Result<Response<ImageFsInfoResponse>, Status> {
        Ok(Response::new(ImageFsInfoResponse { image_filesystems: vec![], container_filesystems: vec![] }))
    }
}
