//! Pod workers: one serialised worker per pod UID running a level-triggered `sync_pod(desired, observed)`, woken by
//! spec changes (the pod informer), runtime changes (the PLEG relist) and a periodic resync. Pod phase and container
//! statuses are derived from what the runtime reports, never kept as control flow.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_types::patch::PatchType;
use client::Client;
use proto::Cri;
use proto::cri::*;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::events::{Normal, Warning};
use crate::node::now_rfc3339;
use crate::options::Config;
use runtime::array;

pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Container annotations (upstream's names) with what reading the termination message needs.
const ANNOTATION_TERMINATION_PATH: &str = "io.kubernetes.container.terminationMessagePath";
const ANNOTATION_TERMINATION_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
/// Upstream's MaxContainerTerminationMessageLength, and the log fallback's lines and bytes.
const MAX_TERMINATION_MESSAGE: usize = 4096;
const MAX_TERMINATION_LOG_LINES: usize = 80;
const MAX_TERMINATION_LOG_BYTES: usize = 2048;

/// A duration as Go prints it (`10s`, `1m20s`, `5m0s`, `1.5s`, `250ms`), for upstream's messages.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    let trim = |v: f64| {
        let t = format!("{v:.9}");
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim(nanos as f64 / 1e3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim(nanos as f64 / 1e6));
    }
    let total = d.as_secs();
    let (h, m) = (total / 3600, (total % 3600) / 60);
    let secs = trim((total % 60) as f64 + f64::from(d.subsec_nanos()) / 1e9);
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

/// Where a container's termination message is written (`terminationMessagePath`, default `/dev/termination-log`).
fn termination_message_path(c: &Value) -> &str {
    match s(c, "/terminationMessagePath") {
        "" => "/dev/termination-log",
        p => p,
    }
}

/// At most the last `max` bytes of a file.
fn read_tail(path: &std::path::Path, max: usize) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max as u64)))?;
    let mut buf = Vec::with_capacity(max.min(len as usize));
    f.take(max as u64).read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The end of a CRI log as a termination message: the last 80 lines, at most their last 2 KiB.
fn last_log_lines(cri_log: &str) -> String {
    let lines: Vec<&str> = cri_log.lines().collect();
    let tail = lines[lines.len().saturating_sub(MAX_TERMINATION_LOG_LINES)..].join("\n");
    let text = crate::server::render(&tail, false, None);
    let mut cut = text.len().saturating_sub(MAX_TERMINATION_LOG_BYTES);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    text[cut..].to_string()
}

/// CrashLoopBackOff: 10 s doubling to 5 min (upstream).
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How soon a pod whose sync hit trouble (an error, a container waiting to start) is synced again: upstream's pod
/// workers' `backOffPeriod`. A settled pod waits `syncFrequency`.
const RETRY: Duration = Duration::from_secs(10);

/// What a sync left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Synced {
    /// The pod is gone and nothing of it runs: the worker ends.
    Finished,
    /// Everything asked for runs (or the pod is terminal): next at the periodic resync.
    Settled,
    /// Something waits (a container, a volume, an API call): again after [`RETRY`].
    Retry,
}

/// Whether an update of a pod asks for a sync: upstream's `podsDifferSemantically` (spec, labels, annotations,
/// deletion timestamp and grace period; not the status).
fn differ_semantically(old: &Value, new: &Value) -> bool {
    fn meta<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
        v.get("metadata").and_then(|m| m.get(k)).filter(|v| !v.is_null())
    }
    old.get("spec") != new.get("spec")
        || ["labels", "annotations", "deletionTimestamp", "deletionGracePeriodSeconds"]
            .iter()
            .any(|k| meta(old, k) != meta(new, k))
}

/// A pod's resourceVersion as a number (this apiserver's are revisions; None for another kind).
fn resource_version(pod: &Value) -> Option<u64> {
    runtime::resource_version(pod).parse().ok()
}

/// What of a pod status the kubelet reconciles when another writer changed it: the phase and the Ready condition.
fn reported(status: &Value) -> (Option<&str>, Option<&str>) {
    let ready = status
        .get("conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c.get("type").and_then(Value::as_str) == Some("Ready")))
        .and_then(|c| c.get("status").and_then(Value::as_str));
    (status.get("phase").and_then(Value::as_str), ready)
}

fn nanos_rfc3339(n: i64) -> Value {
    if n <= 0 {
        return Value::Null;
    }
    match jiff::Timestamp::from_nanosecond(n as i128) {
        Ok(t) => json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
        Err(_) => Value::Null,
    }
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

/// What the runtime has for one pod.
#[derive(Default, Debug, Clone)]
struct Observed {
    sandboxes: Vec<PodSandbox>,
    /// Container statuses by container name, newest attempt first.
    containers: BTreeMap<String, Vec<ContainerStatus>>,
}

impl Observed {
    fn ready_sandbox(&self) -> Option<&PodSandbox> {
        self.sandboxes.iter().filter(|s| s.state == PodSandboxState::SandboxReady as i32).max_by_key(|s| s.created_at)
    }
    fn latest(&self, name: &str) -> Option<&ContainerStatus> {
        self.containers.get(name).and_then(|v| v.first())
    }
}

/// Why a container is waiting, for its status.
#[derive(Default)]
struct Waiting {
    reasons: HashMap<String, (String, String)>,
    /// The pod failed as a whole (reason, message): activeDeadlineSeconds passed, or admission refused it.
    failed: Option<(&'static str, String)>,
}

/// Upstream's activeDeadlineHandler reason and message.
const DEADLINE_REASON: &str = "DeadlineExceeded";
const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";

/// What starting a container of a pod needs.
struct StartContext<'a> {
    pod: &'a Value,
    sandbox: &'a str,
    sandbox_cfg: &'a PodSandboxConfig,
    pod_ip: &'a str,
    volumes: &'a BTreeMap<String, std::path::PathBuf>,
    allocatable: &'a Value,
    /// The pod's managed hosts file, mounted at /etc/hosts.
    hosts: Option<&'a std::path::Path>,
}

/// Upstream's image pull back-off (a `flowcontrol.Backoff` of 10 s doubling to 300 s, keyed by pod UID and image),
/// with the last pull error for the waiting message: per key, the last failure, the current delay and that error.
#[derive(Default)]
struct PullBackOff(HashMap<String, (Instant, Duration, String)>);

impl PullBackOff {
    /// An entry untouched for twice the maximum delay is forgotten (upstream's hasExpired).
    fn expired(now: Instant, last: Instant) -> bool {
        now.saturating_duration_since(last) > 2 * BACKOFF_MAX
    }

    /// The last pull error while `key` is backing off (upstream's IsInBackOffSinceUpdate).
    fn holds(&self, key: &str, now: Instant) -> Option<String> {
        let (last, delay, error) = self.0.get(key)?;
        (!Self::expired(now, *last) && now.saturating_duration_since(*last) < *delay).then(|| error.clone())
    }

    /// A failed pull: the delay starts at 10 s, or doubles up to 300 s (upstream's Next).
    fn next(&mut self, key: &str, now: Instant, error: String) {
        let delay = match self.0.get(key) {
            Some((last, delay, _)) if !Self::expired(now, *last) => (*delay * 2).min(BACKOFF_MAX),
            _ => BACKOFF_START,
        };
        self.0.insert(key.to_string(), (now, delay, error));
    }

    /// Forgets expired entries (upstream's GC after a successful pull).
    fn gc(&mut self, now: Instant) {
        self.0.retain(|_, (last, _, _)| !Self::expired(now, *last));
    }
}

/// Whether a pod came from a file (a static pod), not from the API.
fn is_static(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations/kubernetes.io~1config.source")
        .and_then(Value::as_str)
        .is_some_and(|s| s != "api")
}

/// Runs and reports the pods bound to this node.
pub struct PodManager {
    pub cri: Cri,
    pub client: Client,
    pub cfg: Config,
    pods: client::Api,
    workers: Mutex<HashMap<String, Arc<Notify>>>,
    /// Per (pod uid, container): restart back-off (next allowed start, current delay).
    backoff: Mutex<HashMap<(String, String), (Instant, Duration)>>,
    /// Image pull back-off per pod UID and image (upstream's image manager back-off).
    pull_backoff: Mutex<PullBackOff>,
    /// Desired pods by UID, from the informer.
    desired: Mutex<HashMap<String, Arc<Value>>>,
    /// Container and sandbox states (by runtime ID) a worker has synced with since the last relist: the PLEG
    /// does not wake a worker for a change it made and saw itself.
    synced_states: Mutex<HashMap<String, i32>>,
    /// The last status written per pod UID, with the resourceVersion the write produced.
    written: Mutex<HashMap<String, (Value, u64)>>,
    /// The probers of the running containers, with their results.
    pub probers: Arc<crate::prober::Probers>,
    /// The machine's memory, for OOM scores.
    memory_capacity: i64,
    /// The node's allocatable resources (the downward API's default limits).
    allocatable: Value,
    /// The Services the containers' service variables come from (none without one: upstream's kubelet without
    /// an apiserver).
    services: std::sync::OnceLock<runtime::informer::Informer>,
    /// This node's Node object, for admission (labels, taints, allocatable); without one, the Node as registered.
    node: std::sync::OnceLock<runtime::informer::Informer>,
    /// The pods admitted to run here (upstream's admitted pods): new pods are checked against them.
    admitted: Mutex<std::collections::HashSet<String>>,
    /// The kubelet's Events (disabled on hollow nodes).
    pub events: crate::events::Events,
    /// The pods' cgroups ([`crate::cm`]); unset on fake runtimes, where sandboxes get no cgroup parent.
    cgroups: std::sync::OnceLock<Arc<crate::cm::ContainerManager>>,
    /// The pods' service account tokens (projected `serviceAccountToken` sources).
    pub tokens: crate::token::TokenManager,
    /// Pod sources (`api`, `file`) that have not delivered their pods yet: until all have, pods found in the
    /// runtime but not desired are left alone (upstream's sourcesReady), so a restarted kubelet does not kill
    /// what it is about to be told to run.
    pending_sources: Mutex<std::collections::HashSet<&'static str>>,
    /// The runtime's features (CRI `Status`), for the Node admission checks against before its informer has it.
    runtime_features: std::sync::OnceLock<Option<proto::cri::RuntimeFeatures>>,
}

impl PodManager {
    pub fn new(cri: Cri, client: Client, cfg: Config) -> Result<Arc<Self>, client::Error> {
        let pods = client.api("", "v1", "pods")?;
        let events = if cfg.record_events {
            crate::events::Events::new(&client, &cfg.node_name)?
        } else {
            crate::events::Events::disabled()
        };
        let (capacity, allocatable) = crate::node::resources(&cfg);
        let memory_capacity = capacity["memory"].as_str().and_then(crate::node::bytes).unwrap_or(1 << 30);
        let tokens = crate::token::TokenManager::new(Some(client.clone()));
        Ok(Arc::new(PodManager {
            cri,
            client,
            cfg,
            pods,
            workers: Mutex::new(HashMap::new()),
            backoff: Mutex::new(HashMap::new()),
            pull_backoff: Mutex::default(),
            desired: Mutex::new(HashMap::new()),
            synced_states: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            probers: Arc::default(),
            memory_capacity,
            allocatable,
            services: std::sync::OnceLock::new(),
            node: std::sync::OnceLock::new(),
            admitted: Mutex::new(std::collections::HashSet::new()),
            events,
            cgroups: std::sync::OnceLock::new(),
            tokens,
            pending_sources: Mutex::default(),
            runtime_features: std::sync::OnceLock::new(),
        }))
    }

    /// A pod source that will deliver its pods later (see [`PodManager::source_ready`]).
    pub fn source_pending(&self, source: &'static str) {
        self.pending_sources.lock().unwrap_or_else(|e| e.into_inner()).insert(source);
    }

    /// A pod source delivered its pods once.
    pub fn source_ready(&self, source: &'static str) {
        self.pending_sources.lock().unwrap_or_else(|e| e.into_inner()).remove(source);
    }

    /// Whether every pod source delivered its pods once.
    pub fn sources_ready(&self) -> bool {
        self.pending_sources.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// Keep the pods' cgroups with this container manager (a real runtime's kubelet).
    pub fn use_cgroups(&self, cm: Arc<crate::cm::ContainerManager>) {
        let _ = self.cgroups.set(cm);
    }

    /// The runtime's features, as the Node registered them (`status.features`).
    pub fn use_runtime_features(&self, features: Option<proto::cri::RuntimeFeatures>) {
        let _ = self.runtime_features.set(features);
    }

    /// The informer of this node's Node object (admission reads its labels, taints and allocatable).
    pub fn use_node(&self, informer: runtime::informer::Informer) {
        let _ = self.node.set(informer);
    }

    /// Admits a new pod if it fits next to the pods admitted already (upstream's canAdmitPod), and records it.
    /// Admission is serialised, so two pods cannot take the same host port or the last cpu at once.
    /// `node` is the Node to check against; None for the informer's copy (or, before it synced, the Node as
    /// registered).
    fn admit(&self, uid: &str, pod: &Value, node: Option<Value>) -> Result<(), crate::admission::Rejection> {
        let node = node
            .or_else(|| self.node.get().and_then(|n| n.store().get("", &self.cfg.node_name)).map(|n| (*n).clone()))
            .unwrap_or_else(|| {
                let mut node = crate::node::node_object(&self.cfg, "");
                crate::node::set_features(&mut node, self.runtime_features.get().and_then(Option::as_ref));
                node
            });
        let is_static = is_static(pod);
        let desired = self.desired_pods();
        // The sysctls first, as upstream's admit handlers run.
        self.cfg.sysctls.admit(pod)?;
        let Ok(mut admitted) = self.admitted.lock() else { return Ok(()) };
        let others: Vec<Arc<Value>> = desired
            .into_iter()
            .filter(|p| {
                let other = s(p, "/metadata/uid");
                other != uid && admitted.contains(other) && !self.is_terminal(other, p)
            })
            .collect();
        crate::admission::admit(pod, &node, &others, is_static)?;
        admitted.insert(uid.to_string());
        Ok(())
    }

    /// Whether a pod reached Succeeded or Failed, as the API shows it or as this kubelet wrote it last.
    fn is_terminal(&self, uid: &str, pod: &Value) -> bool {
        let terminal = |p: Option<&str>| matches!(p, Some("Succeeded" | "Failed"));
        terminal(pod.pointer("/status/phase").and_then(Value::as_str))
            || self.written.lock().is_ok_and(|w| terminal(w.get(uid).and_then(|(st, _)| st["phase"].as_str())))
    }

    /// Fails a pod admission refused (upstream's rejectPod): phase Failed, the reason, "Pod was rejected: ...".
    async fn reject(&self, pod: &Value, r: &crate::admission::Rejection) -> Result<(), client::Error> {
        let uid = s(pod, "/metadata/uid").to_string();
        tracing::info!(pod = %s(pod, "/metadata/name"), reason = %r.reason, message = %r.message, "pod rejected");
        self.events.pod(pod, Warning, &r.reason, r.message.clone());
        let status =
            json!({"phase": "Failed", "reason": r.reason, "message": format!("Pod was rejected: {}", r.message)});
        let api = self.pods.clone().namespaced(s(pod, "/metadata/namespace"));
        match api.patch_status(s(pod, "/metadata/name"), PatchType::Merge, &json!({ "status": status })).await {
            Ok(written) => {
                if let Ok(mut w) = self.written.lock() {
                    w.insert(uid, (status, resource_version(&written).unwrap_or(0)));
                }
                Ok(())
            }
            Err(e) if e.code() == Some(404) => Ok(()),
            // A static pod runs whether or not there is an API to report to (kubeadm's apiserver is one): its
            // status is written once its mirror pod is (re)created.
            Err(e) if e.code().is_none() && is_static(pod) => {
                tracing::debug!(pod = %uid, error = %e, "the static pod's status waits for the apiserver");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The Service informer the containers' service variables come from.
    pub fn use_services(&self, informer: runtime::informer::Informer) {
        let _ = self.services.set(informer);
    }

    /// The service variables of a pod's containers, from the Services known now. Until the Services were listed
    /// once, a pod from the API waits (upstream's kubelet does, so that KUBERNETES_SERVICE_HOST is never missing);
    /// a static pod goes ahead.
    async fn service_env(&self, pod: &Value) -> Result<BTreeMap<String, String>, (String, String)> {
        let Some(informer) = self.services.get() else { return Ok(BTreeMap::new()) };
        let is_static = is_static(pod);
        // Just after the kubelet started, the first list is usually a moment away.
        if !informer.has_synced() && !is_static {
            let _ = tokio::time::timeout(Duration::from_secs(5), informer.wait_synced()).await;
        }
        if !informer.has_synced() && !is_static {
            return Err((
                "CreateContainerConfigError".into(),
                "services have not yet been read at least once, cannot construct envvars".into(),
            ));
        }
        let ns = s(pod, "/metadata/namespace");
        let links = pod.pointer("/spec/enableServiceLinks").and_then(Value::as_bool).unwrap_or(true);
        let services = informer.store().list_by(|svc| {
            let svc_ns = s(svc, "/metadata/namespace");
            svc_ns == ns || (svc_ns == "default" && s(svc, "/metadata/name") == "kubernetes")
        });
        Ok(crate::envvars::for_pod(&services, ns, links))
    }

    /// The pods this kubelet runs (from the API and from files).
    pub fn desired_pods(&self) -> Vec<Arc<Value>> {
        self.desired.lock().map(|d| d.values().cloned().collect()).unwrap_or_default()
    }

    /// Whether the latest instance of a pod's container is running.
    pub async fn container_running(&self, uid: &str, container: &str) -> bool {
        match self.observe(uid).await {
            Ok(obs) => obs.latest(container).is_some_and(|c| c.state == ContainerState::ContainerRunning as i32),
            Err(_) => false,
        }
    }

    /// The runtime ID of the running latest instance of a pod's container (exec and attach go to it).
    pub async fn running_container_id(&self, uid: &str, container: &str) -> Option<String> {
        let obs = self.observe(uid).await.ok()?;
        obs.latest(container).filter(|c| c.state == ContainerState::ContainerRunning as i32).map(|c| c.id.clone())
    }

    /// The runtime ID of a pod's ready sandbox (port forwarding goes into its network namespace).
    pub async fn sandbox_id(&self, uid: &str) -> Option<String> {
        self.observe(uid).await.ok()?.ready_sandbox().map(|s| s.id.clone())
    }

    /// A pod as the API has it now (added or updated), or gone (None). As upstream's pod config, an update that
    /// changes only the status (the kubelet's own writes, mostly) is kept without syncing the pod.
    pub fn update(self: &Arc<Self>, uid: &str, pod: Option<Arc<Value>>) {
        let mut sync = true;
        if let Ok(mut d) = self.desired.lock() {
            match pod {
                Some(p) => {
                    if let Some(old) = d.insert(uid.to_string(), p.clone()) {
                        // A status-only change is synced when someone else rewrote what the kubelet reports.
                        sync = differ_semantically(&old, &p) || self.status_overwritten(uid, &p);
                    }
                }
                None => {
                    d.remove(uid);
                }
            };
        }
        if sync {
            self.wake(uid);
        }
    }

    /// Whether `pod` is newer than the kubelet's last status write and reports another phase or readiness (what
    /// upstream's status manager reconciles).
    fn status_overwritten(&self, uid: &str, pod: &Value) -> bool {
        let Some((status, rv)) = self.written.lock().ok().and_then(|w| w.get(uid).cloned()) else { return false };
        let newer = resource_version(pod).is_some_and(|seen| seen > rv);
        newer && pod.get("status").is_none_or(|api| reported(api) != reported(&status))
    }

    /// The API object carrying a pod's status is new (a static pod's mirror was created again): what was
    /// written to the old one is forgotten and the status written anew.
    pub fn status_lost(self: &Arc<Self>, uid: &str) {
        if let Ok(mut w) = self.written.lock() {
            w.remove(uid);
        }
        self.wake(uid);
    }

    /// Whether a pod still has a worker (it runs, or is being torn down).
    pub fn has_worker(&self, uid: &str) -> bool {
        self.workers.lock().is_ok_and(|w| w.contains_key(uid))
    }

    /// Wakes (or starts) the worker of a pod.
    pub fn wake(self: &Arc<Self>, uid: &str) {
        let Ok(mut workers) = self.workers.lock() else { return };
        if let Some(n) = workers.get(uid) {
            n.notify_one();
            return;
        }
        let notify = Arc::new(Notify::new());
        workers.insert(uid.to_string(), notify.clone());
        let this = self.clone();
        let uid = uid.to_string();
        tokio::spawn(async move { this.worker(uid, notify).await });
    }

    /// A pod is gone and torn down: everything kept about it goes (its worker, probers, restart back-off, last
    /// written status, and its entries in the event recorder's caches).
    fn forget(&self, uid: &str) {
        self.probers.remove_pod(uid);
        self.events.forget_pod(uid);
        if let Ok(mut b) = self.backoff.lock() {
            b.retain(|(pod, _), _| pod != uid);
        }
        if let Ok(mut w) = self.workers.lock() {
            w.remove(uid);
        }
        if let Ok(mut w) = self.written.lock() {
            w.remove(uid);
        }
    }

    async fn worker(self: Arc<Self>, uid: String, notify: Arc<Notify>) {
        loop {
            let pod = self.desired.lock().ok().and_then(|d| d.get(&uid).cloned());
            let synced = if pod.is_none() && !self.sources_ready() {
                // A pod found in the runtime at start that no source has delivered yet is not torn down before
                // every source delivered its pods (upstream's sourcesReady): after a kubelet restart the API's
                // pods arrive a moment after the runtime's containers are seen.
                Synced::Retry
            } else {
                match self.sync_pod(&uid, pod.as_deref()).await {
                    Ok(synced) => synced,
                    Err(e) => {
                        tracing::warn!(pod = %uid, error = %e, "sync failed; will retry");
                        Synced::Retry
                    }
                }
            };
            if synced == Synced::Finished {
                self.forget(&uid);
                return;
            }
            let mut wait = if synced == Synced::Retry { RETRY } else { self.cfg.sync_frequency };
            // A pod with an active deadline is looked at again when it ends.
            if let Some(left) = pod.as_deref().and_then(|p| self.until_deadline(&uid, p)) {
                wait = wait.min(left + Duration::from_millis(10));
            }
            let _ = tokio::time::timeout(wait, notify.notified()).await;
        }
    }

    async fn observe(&self, uid: &str) -> Result<Observed, tonic::Status> {
        let mut rt = self.cri.runtime.clone();
        let labels = HashMap::from([(LABEL_POD_UID.to_string(), uid.to_string())]);
        let sandboxes = rt
            .list_pod_sandbox(ListPodSandboxRequest {
                filter: Some(PodSandboxFilter { label_selector: labels.clone(), ..Default::default() }),
            })
            .await?
            .into_inner()
            .items;
        let containers = rt
            .list_containers(ListContainersRequest {
                filter: Some(ContainerFilter { label_selector: labels, ..Default::default() }),
            })
            .await?
            .into_inner()
            .containers;
        let mut obs = Observed { sandboxes, ..Default::default() };
        for c in containers {
            let status = rt
                .container_status(ContainerStatusRequest { container_id: c.id.clone(), verbose: false })
                .await?
                .into_inner()
                .status;
            if let Some(st) = status {
                let name = c.labels.get(LABEL_CONTAINER_NAME).cloned().unwrap_or_default();
                obs.containers.entry(name).or_default().push(st);
            }
        }
        for list in obs.containers.values_mut() {
            list.sort_by_key(|c| std::cmp::Reverse(c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0)));
        }
        Ok(obs)
    }

    /// Kills everything of a pod in the runtime.
    async fn teardown(&self, obs: &Observed, grace: i64) -> Result<(), tonic::Status> {
        self.teardown_pod(None, obs, grace).await
    }

    /// Stops a pod: preStop hooks first (within the grace period), then TERM and, after the rest of the grace
    /// period, KILL (CRI StopContainer's timeout), then the sandbox.
    async fn teardown_pod(&self, pod: Option<&Value>, obs: &Observed, grace: i64) -> Result<(), tonic::Status> {
        self.kill_containers(pod, obs, grace).await?;
        let mut rt = self.cri.runtime.clone();
        for sb in &obs.sandboxes {
            rt.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: sb.id.clone() }).await?;
            rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: sb.id.clone() }).await?;
        }
        // Nothing of the pod runs any more: its cgroup goes too.
        if let Some(cm) = self.cgroups.get() {
            let uids = obs.sandboxes.iter().filter_map(|sb| sb.metadata.as_ref()).map(|m| m.uid.as_str());
            for uid in uids.collect::<std::collections::BTreeSet<_>>() {
                cm.remove_pod(uid);
            }
        }
        Ok(())
    }

    /// Stops a pod's running containers: preStop hooks first (within the grace period), then TERM and, after the
    /// rest of the grace period, KILL. The sandbox and the containers' records stay.
    async fn kill_containers(&self, pod: Option<&Value>, obs: &Observed, grace: i64) -> Result<(), tonic::Status> {
        let mut rt = self.cri.runtime.clone();
        let started = std::time::Instant::now();
        let running: Vec<&ContainerStatus> =
            obs.containers.values().flatten().filter(|c| c.state == ContainerState::ContainerRunning as i32).collect();
        if let Some(pod) = pod {
            let ip = pod.pointer("/status/podIP").and_then(Value::as_str).unwrap_or_default().to_string();
            let hooks = running.iter().filter_map(|st| {
                let name = st.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
                let spec = pod
                    .pointer("/spec/containers")
                    .and_then(Value::as_array)?
                    .iter()
                    .find(|c| s(c, "/name") == name)?
                    .clone();
                let hook = spec.pointer("/lifecycle/preStop")?.clone();
                Some((st.id.clone(), spec, hook))
            });
            let runs: Vec<_> = hooks
                .map(|(id, spec, hook)| {
                    let (cri, ip) = (self.cri.clone(), ip.clone());
                    async move { crate::prober::run_handler(&cri, &id, &hook, &spec, &ip, grace.max(1) as u64).await }
                })
                .collect();
            let _ =
                tokio::time::timeout(Duration::from_secs(grace.max(0) as u64), futures_util::future::join_all(runs))
                    .await;
        }
        let left = (grace - started.elapsed().as_secs() as i64).max(0);
        for c in running {
            if let (Some(pod), Some(m)) = (pod, c.metadata.as_ref()) {
                self.events.container(pod, &m.name, Normal, "Killing", format!("Stopping container {}", m.name));
            }
            rt.stop_container(StopContainerRequest { container_id: c.id.clone(), timeout: left }).await?;
        }
        Ok(())
    }

    /// When the pod's activeDeadlineSeconds ends, counted from its startTime (as written last, else the API's):
    /// None without a deadline or before the pod started.
    fn active_deadline(&self, uid: &str, pod: &Value) -> Option<jiff::Timestamp> {
        let seconds = pod.pointer("/spec/activeDeadlineSeconds").and_then(Value::as_i64)?;
        let written = self.written.lock().ok().and_then(|w| w.get(uid).map(|(st, _)| st.clone()));
        let start = written
            .as_ref()
            .and_then(|st| st.get("startTime"))
            .or_else(|| pod.pointer("/status/startTime"))
            .and_then(Value::as_str)?
            .parse::<jiff::Timestamp>()
            .ok()?;
        start.checked_add(jiff::SignedDuration::from_secs(seconds)).ok()
    }

    /// How long until the pod's active deadline (zero when it passed).
    fn until_deadline(&self, uid: &str, pod: &Value) -> Option<Duration> {
        let end = self.active_deadline(uid, pod)?;
        let left = end.duration_since(jiff::Timestamp::now());
        Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
    }

    fn log_dir(&self, pod: &Value) -> std::path::PathBuf {
        self.cfg.pod_logs_dir.join(format!(
            "{}_{}_{}",
            s(pod, "/metadata/namespace"),
            s(pod, "/metadata/name"),
            s(pod, "/metadata/uid")
        ))
    }

    /// The sandbox of a pod, with the `DNSConfigForming` warnings of its DNS configuration. Err when its hostname
    /// cannot be made (an FQDN longer than 64 characters) or the node's resolver configuration cannot be read.
    fn sandbox_config(&self, pod: &Value, attempt: u32) -> Result<(PodSandboxConfig, Vec<String>), String> {
        let host_network = pod.pointer("/spec/hostNetwork").and_then(Value::as_bool).unwrap_or(false);
        // A host-network pod shares the node's UTS namespace: no hostname of its own.
        let hostname =
            if host_network { String::new() } else { crate::hosts::kernel_hostname(pod, &self.cfg.cluster_domain)? };
        let labels = HashMap::from([
            (LABEL_POD_UID.to_string(), s(pod, "/metadata/uid").to_string()),
            (LABEL_POD_NAME.to_string(), s(pod, "/metadata/name").to_string()),
            (LABEL_POD_NAMESPACE.to_string(), s(pod, "/metadata/namespace").to_string()),
        ]);
        let resolv = &self.cfg.resolv_conf;
        let host = match resolv.as_str() {
            "" => None,
            path => Some(std::fs::read_to_string(path).map_err(|e| format!("open {path}: {e}"))?),
        };
        let (dns, warnings) = crate::dns::pod_dns(
            pod,
            host.as_deref(),
            &self.cfg.cluster_dns,
            &self.cfg.cluster_domain,
            &self.cfg.node_ip,
        );
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: s(pod, "/metadata/name").into(),
                uid: s(pod, "/metadata/uid").into(),
                namespace: s(pod, "/metadata/namespace").into(),
                attempt,
            }),
            hostname,
            dns_config: Some(dns),
            log_directory: self.log_dir(pod).display().to_string(),
            labels,
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.cgroups.get().map(|cm| cm.cgroup_parent(pod)).unwrap_or_default(),
                sysctls: crate::sysctl::sandbox_sysctls(pod),
                security_context: Some(LinuxSandboxSecurityContext {
                    privileged: crate::security::any_privileged(pod),
                    supplemental_groups: crate::security::supplemental_groups(pod),
                    supplemental_groups_policy: crate::security::supplemental_groups_policy(pod) as i32,
                    namespace_options: Some(crate::security::namespaces(pod)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        Ok((config, warnings))
    }

    fn container_config(
        &self,
        pod: &Value,
        c: &Value,
        attempt: u32,
        envs: Vec<KeyValue>,
        mounts: Vec<Mount>,
    ) -> ContainerConfig {
        let name = s(c, "/name").to_string();
        // `$(VAR)` in command and args expands from the container's final environment (upstream's
        // ExpandContainerCommandAndArgs).
        let strs = |p: &str| -> Vec<String> {
            let var = |k: &str| envs.iter().find(|e| e.key == k).map(|e| e.value.clone());
            c.pointer(p)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
                .map(|v| crate::expansion::expand(v, crate::expansion::lookup(&[&var])))
                .collect()
        };
        let labels = HashMap::from([
            (LABEL_POD_UID.to_string(), s(pod, "/metadata/uid").to_string()),
            (LABEL_POD_NAME.to_string(), s(pod, "/metadata/name").to_string()),
            (LABEL_POD_NAMESPACE.to_string(), s(pod, "/metadata/namespace").to_string()),
            (LABEL_CONTAINER_NAME.to_string(), name.clone()),
        ]);
        ContainerConfig {
            metadata: Some(ContainerMetadata { name: name.clone(), attempt }),
            image: Some(ImageSpec { image: s(c, "/image").into(), ..Default::default() }),
            command: strs("/command"),
            args: strs("/args"),
            working_dir: s(c, "/workingDir").into(),
            envs,
            mounts,
            labels,
            annotations: HashMap::from([
                ("io.kubernetes.container.restartCount".to_string(), attempt.to_string()),
                (ANNOTATION_TERMINATION_PATH.to_string(), termination_message_path(c).to_string()),
                (
                    ANNOTATION_TERMINATION_POLICY.to_string(),
                    match s(c, "/terminationMessagePolicy") {
                        "" => "File",
                        p => p,
                    }
                    .to_string(),
                ),
            ]),
            log_path: format!("{name}/{attempt}.log"),
            linux: Some(LinuxContainerConfig {
                resources: Some(crate::security::resources(pod, c, self.memory_capacity)),
                security_context: Some(crate::security::security_context(pod, c)),
            }),
            stdin: c.get("stdin").and_then(Value::as_bool).unwrap_or(false),
            stdin_once: c.get("stdinOnce").and_then(Value::as_bool).unwrap_or(false),
            tty: c.get("tty").and_then(Value::as_bool).unwrap_or(false),
            ..Default::default()
        }
    }

    /// Makes sure the image is present as the pull policy asks. Err is the waiting reason and message.
    async fn ensure_image(&self, pod: &Value, c: &Value) -> Result<(), (String, String)> {
        let image = s(c, "/image").to_string();
        let name = s(c, "/name");
        let policy = s(c, "/imagePullPolicy");
        let spec = Some(ImageSpec { image: image.clone(), ..Default::default() });
        let mut img = self.cri.image.clone();
        let present = img
            .image_status(ImageStatusRequest { image: spec.clone(), verbose: false })
            .await
            .ok()
            .and_then(|r| r.into_inner().image)
            .is_some();
        let events = &self.events;
        if present && policy != "Always" {
            let message = format!("Container image \"{image}\" already present on machine");
            events.container(pod, name, Normal, "Pulled", message);
            return Ok(());
        }
        if policy == "Never" {
            let message = format!("Container image \"{image}\" is not present with pull policy of Never");
            events.container(pod, name, Warning, "ErrImageNeverPull", message.clone());
            events.container(pod, name, Warning, "Failed", "Error: ErrImageNeverPull");
            return Err(("ErrImageNeverPull".into(), message));
        }
        let key = format!("{}_{image}", s(pod, "/metadata/uid"));
        if let Some(previous) = self.pull_backoff.lock().ok().and_then(|b| b.holds(&key, Instant::now())) {
            // Upstream's ErrImagePullBackOff: the event without, the waiting message with the last pull error.
            let message = format!("Back-off pulling image \"{image}\"");
            events.container(pod, name, Normal, "BackOff", message.clone());
            events.container(pod, name, Warning, "Failed", "Error: ImagePullBackOff");
            return Err(("ImagePullBackOff".into(), format!("{message}: {previous}")));
        }
        events.container(pod, name, Normal, "Pulling", format!("Pulling image \"{image}\""));
        let started = Instant::now();
        match img.pull_image(PullImageRequest { image: spec.clone(), auth: None, sandbox_config: None }).await {
            Ok(_) => {
                let took = go_duration(started.elapsed());
                let size = img
                    .image_status(ImageStatusRequest { image: spec, verbose: false })
                    .await
                    .ok()
                    .and_then(|r| r.into_inner().image)
                    .map(|i| i.size)
                    .unwrap_or(0);
                let message = format!(
                    "Successfully pulled image \"{image}\" in {took} ({took} including waiting). Image size: {size} bytes."
                );
                events.container(pod, name, Normal, "Pulled", message);
                if let Ok(mut b) = self.pull_backoff.lock() {
                    b.gc(Instant::now());
                }
                Ok(())
            }
            Err(e) => {
                let message = format!("Failed to pull image \"{image}\": {}", e.message());
                events.container(pod, name, Warning, "Failed", message);
                events.container(pod, name, Warning, "Failed", "Error: ErrImagePull");
                let message = format!("failed to pull image \"{image}\": {}", e.message());
                if let Ok(mut b) = self.pull_backoff.lock() {
                    b.next(&key, Instant::now(), format!("ErrImagePull: {message}"));
                }
                Err(("ErrImagePull".into(), message))
            }
        }
    }

    /// Whether a container may be (re)started now (then the next back-off is recorded); Err is the back-off that
    /// holds it (10 s doubling to 5 min, as upstream's CrashLoopBackOff).
    fn backoff_allows(&self, uid: &str, name: &str, restarting: bool) -> Result<(), Duration> {
        let Ok(mut b) = self.backoff.lock() else { return Ok(()) };
        let key = (uid.to_string(), name.to_string());
        let now = Instant::now();
        match b.get(&key).copied() {
            Some((next, current)) if restarting && now < next => Err(current),
            Some((_, current)) if restarting => {
                let delay = (current * 2).min(BACKOFF_MAX);
                b.insert(key, (now + delay, delay));
                Ok(())
            }
            _ => {
                if restarting {
                    b.insert(key, (now + BACKOFF_START, BACKOFF_START));
                }
                Ok(())
            }
        }
    }

    /// A restart held back: the container waits in CrashLoopBackOff with upstream's message, and a BackOff event.
    fn crash_loop(&self, pod: &Value, name: &str, delay: Duration, waiting: &mut Waiting) {
        let who = crate::events::format_pod(pod);
        let event = format!("Back-off restarting failed container {name} in pod {who}");
        self.events.container(pod, name, Warning, "BackOff", event);
        let message = format!("back-off {} restarting failed container={name} pod={who}", go_duration(delay));
        waiting.reasons.insert(name.into(), ("CrashLoopBackOff".into(), message));
    }

    /// The runtime configuration of a container: its environment (with service variables and `$(VAR)`
    /// expansion), mounts (with sub paths) and expanded command and args. Err is the waiting reason and message
    /// (CreateContainerConfigError).
    async fn prepare_container(
        &self,
        ctx: &StartContext<'_>,
        c: &Value,
        attempt: u32,
    ) -> Result<ContainerConfig, (String, String)> {
        let pod = ctx.pod;
        let services = self.service_env(pod).await?;
        let envs = crate::volumes::environment(
            &self.client,
            pod,
            c,
            ctx.pod_ip,
            &self.cfg.node_ip,
            ctx.allocatable,
            &services,
        )
        .await?;
        let mut mounts = crate::volumes::mounts(c, ctx.volumes, &envs)?;
        // The managed hosts file, unless the container mounts something at /etc/hosts itself.
        if let Some(hosts) = ctx.hosts
            && !mounts.iter().any(|m| m.container_path == crate::hosts::ETC_HOSTS)
        {
            mounts.push(Mount {
                container_path: crate::hosts::ETC_HOSTS.into(),
                host_path: hosts.display().to_string(),
                ..Default::default()
            });
        }
        // The termination message file: a fresh one per container instance, writable by any user (upstream).
        let dir = self.cfg.root_dir.join("pods").join(s(pod, "/metadata/uid")).join("containers").join(s(c, "/name"));
        let file = dir.join(uuid::Uuid::new_v4().simple().to_string());
        let made = std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::File::create(&file))
            .and_then(|_| std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)));
        match made {
            Ok(()) => mounts.push(Mount {
                container_path: termination_message_path(c).into(),
                host_path: file.display().to_string(),
                ..Default::default()
            }),
            Err(e) => tracing::warn!(error = %e, path = %file.display(), "creating the termination message file"),
        }
        Ok(self.container_config(pod, c, attempt, envs, mounts))
    }

    async fn start_container(&self, ctx: &StartContext<'_>, c: &Value, attempt: u32) -> Result<(), (String, String)> {
        let (pod, sandbox, sandbox_cfg) = (ctx.pod, ctx.sandbox, ctx.sandbox_cfg);
        let name = s(c, "/name");
        let failed = |reason: &str, message: String| {
            self.events.container(pod, name, Warning, "Failed", format!("Error: {message}"));
            (reason.to_string(), message)
        };
        // The image first, then the configuration (upstream's startContainer).
        self.ensure_image(pod, c).await?;
        let mut config = self.prepare_container(ctx, c, attempt).await.map_err(|(r, m)| failed(&r, m))?;
        // An ephemeral container with `targetContainerName` joins that container's PID namespace (TARGET).
        if let Some(target) = c.get("targetContainerName").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            let id = self.running_container_id(s(pod, "/metadata/uid"), target).await.ok_or_else(|| {
                failed("CreateContainerConfigError", format!("target container {target:?} is not running"))
            })?;
            if let Some(ns) = config
                .linux
                .as_mut()
                .and_then(|l| l.security_context.as_mut())
                .and_then(|sc| sc.namespace_options.as_mut())
            {
                ns.pid = proto::cri::NamespaceMode::Target as i32;
                ns.target_id = id;
            }
        }
        let mut rt = self.cri.runtime.clone();
        let created = rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox.into(),
                config: Some(config),
                sandbox_config: Some(sandbox_cfg.clone()),
            })
            .await
            .map_err(|e| failed("CreateContainerError", e.message().to_string()))?
            .into_inner()
            .container_id;
        self.events.container(pod, name, Normal, "Created", format!("Created container: {name}"));
        rt.start_container(StartContainerRequest { container_id: created.clone() })
            .await
            .map_err(|e| failed("RunContainerError", e.message().to_string()))?;
        self.events.container(pod, name, Normal, "Started", format!("Started container {name}"));
        if let Some(hook) = c.pointer("/lifecycle/postStart") {
            // A failed postStart hook kills the container; its restart policy decides what happens next.
            if !crate::prober::run_handler(&self.cri, &created, hook, c, ctx.pod_ip, 30).await {
                self.events.container(pod, name, Warning, "FailedPostStartHook", "PostStartHook failed");
                self.events.container(pod, name, Normal, "Killing", "FailedPostStartHook");
                let _ = rt.stop_container(StopContainerRequest { container_id: created, timeout: 0 }).await;
                return Err((
                    "PostStartHookError".into(),
                    format!("postStart hook of container {} failed", s(c, "/name")),
                ));
            }
        }
        Ok(())
    }

    /// One level-triggered pass.
    async fn sync_pod(
        &self,
        uid: &str,
        pod: Option<&Value>,
    ) -> Result<Synced, Box<dyn std::error::Error + Send + Sync>> {
        let obs = self.observe(uid).await?;
        let Some(pod) = pod else {
            // Deleted from the API (or never ours): nothing of it may keep running, nor be probed, nor count.
            self.probers.remove_pod(uid);
            if let Ok(mut a) = self.admitted.lock() {
                a.remove(uid);
            }
            self.teardown(&obs, 2).await?;
            crate::volumes::teardown(&self.cfg.root_dir, uid);
            self.tokens.delete_service_account_token(uid);
            return Ok(Synced::Finished);
        };
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            // Terminating: a probe must not restart a container being stopped (upstream's StopLivenessAndStartup).
            self.probers.remove_pod(uid);
            let grace = pod.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30);
            self.teardown_pod(Some(pod), &obs, grace).await?;
            let api = self.pods.clone().namespaced(s(pod, "/metadata/namespace"));
            let opts = json!({"gracePeriodSeconds": 0, "preconditions": {"uid": uid}});
            match api.delete(s(pod, "/metadata/name"), Some(&opts)).await {
                Ok(_) => {}
                Err(e) if matches!(e.code(), Some(404 | 409)) => {}
                Err(e) => return Err(Box::new(e)),
            }
            return Ok(Synced::Retry);
        }
        if self.is_terminal(uid, pod) {
            // Terminal: keep the record, stop what runs.
            self.probers.remove_pod(uid);
            if let Ok(mut a) = self.admitted.lock() {
                a.remove(uid);
            }
            if obs.containers.values().flatten().any(|c| c.state == ContainerState::ContainerRunning as i32) {
                self.teardown(&obs, 2).await?;
            } else if let Some(sb) = obs.ready_sandbox() {
                // Nothing runs any more: the sandbox stops too, its records stay for status and logs.
                let mut rt = self.cri.runtime.clone();
                rt.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: sb.id.clone() }).await?;
            }
            // A terminated pod keeps no cgroup (upstream removes those of pods that cannot run containers).
            if let Some(cm) = self.cgroups.get() {
                cm.remove_pod(uid);
            }
            return Ok(Synced::Settled);
        }
        // Admission: a pod new to this node must fit next to those admitted (one found running was admitted before).
        if !self.admitted.lock().is_ok_and(|a| a.contains(uid)) {
            if obs.sandboxes.is_empty() && obs.containers.is_empty() {
                let mut admitted = self.admit(uid, pod, None);
                // As upstream: when only the node's labels refuse it, they are read again from the API first.
                if admitted.as_ref().is_err_and(|r| r.reason == "NodeAffinity")
                    && let Ok(node) = self.client.api("", "v1", "nodes")?.get(&self.cfg.node_name).await
                {
                    admitted = self.admit(uid, pod, Some(node));
                }
                if let Err(r) = admitted {
                    self.reject(pod, &r).await?;
                    return Ok(Synced::Settled);
                }
            } else if let Ok(mut a) = self.admitted.lock() {
                a.insert(uid.to_string());
            }
        }
        let mut waiting = Waiting::default();
        let mut rt = self.cri.runtime.clone();
        // Past activeDeadlineSeconds: the pod fails and its containers are killed (upstream's activeDeadlineHandler).
        if self.until_deadline(uid, pod).is_some_and(|left| left.is_zero()) {
            self.probers.remove_pod(uid);
            let grace = pod.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30);
            self.kill_containers(Some(pod), &obs, grace).await?;
            let obs = self.observe(uid).await?;
            let sandbox = match obs.ready_sandbox() {
                Some(sb) => rt
                    .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: sb.id.clone(), verbose: false })
                    .await
                    .ok()
                    .and_then(|r| r.into_inner().status),
                None => None,
            };
            self.events.pod(pod, Normal, DEADLINE_REASON, DEADLINE_MESSAGE);
            waiting.failed = Some((DEADLINE_REASON, DEADLINE_MESSAGE.to_string()));
            self.write_status(pod, &obs, &waiting, sandbox.as_ref()).await?;
            return Ok(Synced::Settled);
        }
        // The sandbox.
        let attempt = obs.sandboxes.len() as u32;
        let (sandbox_cfg, dns_warnings) = match self.sandbox_config(pod, attempt) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(pod = %uid, error = %e, "creating the pod sandbox");
                self.events.pod(pod, Warning, "FailedCreatePodSandBox", format!("Failed to create pod sandbox: {e}"));
                self.write_status(pod, &Observed::default(), &waiting, None).await?;
                return Ok(Synced::Retry);
            }
        };
        let (sandbox_id, obs) = match obs.ready_sandbox() {
            Some(sb) => (sb.id.clone(), obs),
            None => {
                if !obs.sandboxes.is_empty() {
                    self.events.pod(
                        pod,
                        Normal,
                        "SandboxChanged",
                        "Pod sandbox changed, it will be killed and re-created.",
                    );
                    self.teardown(&obs, 2).await?;
                }
                std::fs::create_dir_all(self.log_dir(pod)).ok();
                for warning in dns_warnings {
                    self.events.pod(pod, Warning, "DNSConfigForming", warning);
                }
                if let Some(message) = crate::dns::missing_cluster_dns(pod, &self.cfg.cluster_dns) {
                    // On the node and on the pod, as upstream's GetPodDNS (the pod named as format.Pod does).
                    self.events.node(Warning, "MissingClusterDNS", message);
                    let who = format!(
                        "{}_{}({})",
                        s(pod, "/metadata/name"),
                        s(pod, "/metadata/namespace"),
                        s(pod, "/metadata/uid")
                    );
                    self.events.pod(pod, Warning, "MissingClusterDNS", format!("pod: \"{who}\". {message}"));
                }
                // The pod's cgroup with its limits first: the sandbox is created under it (upstream's
                // EnsureExists in SyncPod).
                if let Some(cm) = self.cgroups.get()
                    && let Err(e) = cm.ensure_pod(pod)
                {
                    tracing::warn!(pod = %uid, error = %e, "creating the pod's cgroup");
                    let message = format!("unable to ensure pod container exists: {e}");
                    self.events.pod(pod, Warning, "FailedCreatePodContainer", message);
                    self.write_status(pod, &Observed::default(), &waiting, None).await?;
                    return Ok(Synced::Retry);
                }
                match rt
                    .run_pod_sandbox(RunPodSandboxRequest {
                        config: Some(sandbox_cfg.clone()),
                        runtime_handler: String::new(),
                    })
                    .await
                {
                    // What runs changed: observe again.
                    Ok(r) => (r.into_inner().pod_sandbox_id, self.observe(uid).await?),
                    Err(e) => {
                        tracing::warn!(pod = %uid, error = %e.message(), "creating the pod sandbox");
                        let message = format!("Failed to create pod sandbox: {}", e.message());
                        self.events.pod(pod, Warning, "FailedCreatePodSandBox", message);
                        self.write_status(pod, &Observed::default(), &waiting, None).await?;
                        return Ok(Synced::Retry);
                    }
                }
            }
        };
        let restart_policy = match s(pod, "/spec/restartPolicy") {
            "" => "Always",
            p => p,
        };
        let host_network = pod.pointer("/spec/hostNetwork").and_then(Value::as_bool).unwrap_or(false);
        let sandbox_status = rt
            .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: sandbox_id.clone(), verbose: false })
            .await
            .ok()
            .and_then(|r| r.into_inner().status);
        let pod_ip = if host_network {
            self.cfg.node_ip.clone()
        } else {
            sandbox_status.as_ref().and_then(|st| st.network.as_ref()).map(|n| n.ip.clone()).unwrap_or_default()
        };
        let volumes = match crate::volumes::setup(
            &self.client,
            &self.cfg.root_dir,
            pod,
            &crate::volumes::FieldSource {
                pod_ip: &pod_ip,
                host_ip: &self.cfg.node_ip,
                allocatable: &self.allocatable,
            },
            &self.tokens,
        )
        .await
        {
            Ok(v) => v,
            Err(e) => {
                // As upstream's volume manager: a FailedMount event; the containers wait to be created.
                let message = format!("MountVolume.SetUp failed for volume \"{}\" : {}", e.volume, e.message);
                self.events.pod(pod, Warning, "FailedMount", message);
                self.write_status(pod, &obs, &waiting, sandbox_status.as_ref()).await?;
                return Ok(Synced::Retry);
            }
        };
        let pod_dir = self.cfg.root_dir.join("pods").join(uid);
        let hosts = crate::hosts::ensure(
            &pod_dir,
            pod,
            &pod_ip,
            &self.cfg.cluster_domain,
            std::path::Path::new(crate::hosts::ETC_HOSTS),
        )
        .unwrap_or_else(|e| {
            tracing::warn!(pod = %uid, error = %e, "writing the pod's hosts file");
            None
        });
        let ctx = StartContext {
            pod,
            sandbox: &sandbox_id,
            sandbox_cfg: &sandbox_cfg,
            pod_ip: &pod_ip,
            volumes: &volumes,
            allocatable: &self.allocatable,
            hosts: hosts.as_deref(),
        };
        // Whether a container was (re)started: what runs changed.
        let mut started = false;
        // Init containers, in order: each must succeed before the next starts.
        let mut initialized = true;
        for c in pod.pointer("/spec/initContainers").and_then(Value::as_array).into_iter().flatten() {
            let name = s(c, "/name");
            match obs.latest(name) {
                Some(st) if st.state == ContainerState::ContainerExited as i32 && st.exit_code == 0 => continue,
                Some(st)
                    if st.state == ContainerState::ContainerRunning as i32
                        || st.state == ContainerState::ContainerCreated as i32 =>
                {
                    initialized = false;
                    break;
                }
                Some(st) => {
                    initialized = false;
                    if restart_policy == "Never" {
                        break;
                    }
                    let attempt = st.metadata.as_ref().map(|m| m.attempt + 1).unwrap_or(1);
                    match self.backoff_allows(uid, name, true) {
                        Ok(()) => {
                            started = true;
                            if let Err(w) = self.start_container(&ctx, c, attempt).await {
                                waiting.reasons.insert(name.into(), w);
                            }
                        }
                        Err(delay) => self.crash_loop(pod, name, delay, &mut waiting),
                    }
                    break;
                }
                None => {
                    initialized = false;
                    started = true;
                    if let Err(w) = self.start_container(&ctx, c, 0).await {
                        waiting.reasons.insert(name.into(), w);
                    }
                    break;
                }
            }
        }
        if initialized {
            for c in pod.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten() {
                let name = s(c, "/name");
                let (start, attempt) = match obs.latest(name) {
                    None => (true, 0),
                    Some(st) if st.state == ContainerState::ContainerExited as i32 => {
                        let again = restart_policy == "Always" || (restart_policy == "OnFailure" && st.exit_code != 0);
                        (again, st.metadata.as_ref().map(|m| m.attempt + 1).unwrap_or(1))
                    }
                    Some(_) => (false, 0),
                };
                if !start {
                    continue;
                }
                if attempt > 0
                    && let Err(delay) = self.backoff_allows(uid, name, true)
                {
                    self.crash_loop(pod, name, delay, &mut waiting);
                    continue;
                }
                started = true;
                if let Err(w) = self.start_container(&ctx, c, attempt).await {
                    waiting.reasons.insert(name.into(), w);
                }
            }
        }
        // Ephemeral containers (kubectl debug): started once each, in the running pod, never restarted.
        for c in array(pod, "/spec/ephemeralContainers") {
            let name = s(c, "/name");
            if obs.latest(name).is_some() {
                continue;
            }
            started = true;
            if let Err(w) = self.start_container(&ctx, c, 0).await {
                waiting.reasons.insert(name.into(), w);
            }
        }
        let obs = if started { self.observe(uid).await? } else { obs };
        if let Ok(mut states) = self.synced_states.lock() {
            states.extend(obs.sandboxes.iter().map(|sb| (sb.id.clone(), sb.state)));
            states.extend(obs.containers.values().flatten().map(|c| (c.id.clone(), c.state)));
        }
        self.manage_probers(uid, pod, &obs, &pod_ip);
        self.write_status(pod, &obs, &waiting, sandbox_status.as_ref()).await?;
        // Containers not yet running (waiting, backing off, init containers in turn) are looked at again soon.
        let settled = waiting.reasons.is_empty()
            && initialized
            && array(pod, "/spec/containers").iter().all(|c| {
                obs.latest(s(c, "/name")).is_some_and(|st| {
                    st.state == ContainerState::ContainerRunning as i32
                        || (st.state == ContainerState::ContainerExited as i32 && restart_policy != "Always")
                })
            });
        Ok(if settled { Synced::Settled } else { Synced::Retry })
    }

    /// Starts the probers of every running app container that has none, and ends those of containers that stopped.
    fn manage_probers(&self, uid: &str, pod: &Value, obs: &Observed, pod_ip: &str) {
        let grace = pod.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30);
        let running: Vec<(&ContainerStatus, &Value)> = array(pod, "/spec/containers")
            .iter()
            .filter_map(|c| {
                obs.latest(s(c, "/name"))
                    .filter(|st| st.state == ContainerState::ContainerRunning as i32)
                    .map(|st| (st, c))
            })
            .collect();
        let ids: Vec<&str> = running.iter().map(|(st, _)| st.id.as_str()).collect();
        self.probers.retain(uid, &ids);
        let notify = self.workers.lock().ok().and_then(|w| w.get(uid).cloned());
        for (st, spec) in running {
            if self.probers.has(&st.id) {
                continue;
            }
            let target = crate::prober::Target {
                pod_uid: uid.to_string(),
                container_id: st.id.clone(),
                spec: spec.clone(),
                pod_ip: pod_ip.to_string(),
                grace,
                started_at: st.started_at,
                pod: Arc::new(pod.clone()),
                events: self.events.clone(),
            };
            self.probers.start(&self.cri, target, notify.clone());
        }
    }

    /// The termination message of an exited container (upstream's getTerminationMessage): the file mounted at its
    /// `terminationMessagePath` (its last 4 KiB), or with `FallbackToLogsOnError` and a failure, the end of its log
    /// when the file is empty (80 lines, 2 KiB).
    fn termination_message(&self, pod: &Value, st: &ContainerStatus) -> String {
        let path = st.annotations.get(ANNOTATION_TERMINATION_PATH).map(String::as_str).unwrap_or_default();
        let fallback = st.annotations.get(ANNOTATION_TERMINATION_POLICY).map(String::as_str)
            == Some("FallbackToLogsOnError")
            && st.exit_code != 0
            && st.reason != "ContainerCannotRun";
        let mut message = String::new();
        let mut check_logs = fallback;
        if let Some(m) = st.mounts.iter().find(|m| !path.is_empty() && m.container_path == path) {
            match read_tail(std::path::Path::new(&m.host_path), MAX_TERMINATION_MESSAGE) {
                Ok(data) => {
                    check_logs = fallback && data.is_empty();
                    message = data;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    message = format!("Error on reading termination log {}: {e}", m.host_path);
                    check_logs = false;
                }
            }
        }
        if check_logs {
            let (name, attempt) = st.metadata.as_ref().map(|m| (m.name.as_str(), m.attempt)).unwrap_or_default();
            let log = self.log_dir(pod).join(name).join(format!("{attempt}.log"));
            message = match std::fs::read_to_string(&log) {
                Ok(content) => last_log_lines(&content),
                Err(e) => format!("Error on reading termination message from logs: {e}"),
            };
        }
        match (st.message.is_empty(), message.is_empty()) {
            (_, true) => st.message.clone(),
            (true, false) => message,
            (false, false) => format!("{}: {message}", st.message),
        }
    }

    /// A container's status as upstream's convertToAPIContainerStatuses: the latest attempt's state, the one before
    /// as lastState; a container not created yet waits (`PodInitializing` in pods with init containers, else
    /// `ContainerCreating`); a start that failed or is held back waits with its reason, what ended before as
    /// lastState. Init containers are ready once they exited 0.
    fn container_status(
        &self,
        pod: &Value,
        spec: &Value,
        list: Option<&Vec<ContainerStatus>>,
        waiting: &Waiting,
        init: bool,
    ) -> Value {
        let name = s(spec, "/name");
        let latest = list.and_then(|l| l.first());
        let previous = list.and_then(|l| l.get(1));
        let state_of = |st: &ContainerStatus| -> Value {
            match st.state {
                x if x == ContainerState::ContainerRunning as i32 => {
                    json!({"running": {"startedAt": nanos_rfc3339(st.started_at)}})
                }
                x if x == ContainerState::ContainerExited as i32 => {
                    let mut t = json!({
                        "exitCode": st.exit_code,
                        "reason": if st.reason.is_empty() { if st.exit_code == 0 { "Completed" } else { "Error" } } else { st.reason.as_str() },
                        "startedAt": nanos_rfc3339(st.started_at),
                        "finishedAt": nanos_rfc3339(st.finished_at),
                        "containerID": format!("containerd://{}", st.id),
                    });
                    let message = self.termination_message(pod, st);
                    if !message.is_empty() {
                        t["message"] = json!(message);
                    }
                    json!({ "terminated": t })
                }
                // Created but not started (or unknown): waiting to run, without a reason.
                _ => json!({"waiting": {}}),
            }
        };
        let default_reason =
            if array(pod, "/spec/initContainers").is_empty() { "ContainerCreating" } else { "PodInitializing" };
        let mut state = latest.map(state_of).unwrap_or_else(|| json!({"waiting": {"reason": default_reason}}));
        let mut last = previous.map(state_of).unwrap_or(json!({}));
        let init_done =
            init && latest.is_some_and(|st| st.state == ContainerState::ContainerExited as i32 && st.exit_code == 0);
        if !init_done && let Some((reason, message)) = waiting.reasons.get(name) {
            if state.get("terminated").is_some() {
                last = state;
            }
            state = json!({"waiting": {"reason": reason, "message": message}});
        }
        let running = latest.is_some_and(|st| st.state == ContainerState::ContainerRunning as i32)
            && state.get("running").is_some();
        let health = latest
            .map(|st| self.probers.health(&st.id))
            .unwrap_or(crate::prober::Health { started: false, ready: false });
        let ready = if init { init_done } else { running && health.ready && health.started };
        let mut out = json!({
            "name": name,
            "state": state,
            "lastState": last,
            "ready": ready,
            "started": running && health.started,
            "restartCount": latest.and_then(|st| st.metadata.as_ref()).map(|m| m.attempt).unwrap_or(0),
            "image": s(spec, "/image"),
            "imageID": latest.map(|st| st.image_ref.clone()).unwrap_or_default(),
        });
        if let Some(st) = latest {
            out["containerID"] = json!(format!("containerd://{}", st.id));
        }
        out
    }

    async fn write_status(
        &self,
        pod: &Value,
        obs: &Observed,
        waiting: &Waiting,
        sandbox: Option<&PodSandboxStatus>,
    ) -> Result<(), client::Error> {
        let uid = s(pod, "/metadata/uid").to_string();
        let (inits, apps) = (array(pod, "/spec/initContainers"), array(pod, "/spec/containers"));
        let init_statuses: Vec<Value> = inits
            .iter()
            .map(|c| self.container_status(pod, c, obs.containers.get(s(c, "/name")), waiting, true))
            .collect();
        let statuses: Vec<Value> = apps
            .iter()
            .map(|c| self.container_status(pod, c, obs.containers.get(s(c, "/name")), waiting, false))
            .collect();
        let ephemeral: Vec<Value> = array(pod, "/spec/ephemeralContainers")
            .iter()
            .map(|c| self.container_status(pod, c, obs.containers.get(s(c, "/name")), waiting, false))
            .collect();
        let phase = match &waiting.failed {
            Some(_) => "Failed",
            None => crate::status::phase(pod, &init_statuses, &statuses),
        };
        let conditions = crate::status::conditions(pod, &init_statuses, &statuses, phase, sandbox.is_some());
        // Transition and start times continue from the status last written (the informer's copy may not have it
        // yet), else from the API's.
        let last_written = self.written.lock().ok().and_then(|w| w.get(&uid).map(|(status, _)| status.clone()));
        let none = json!({});
        let old = last_written.as_ref().or_else(|| pod.get("status")).unwrap_or(&none);
        let since = |c: &crate::status::Condition| {
            let st = if c.status { "True" } else { "False" };
            let prev =
                old.get("conditions").and_then(Value::as_array).and_then(|cs| cs.iter().find(|p| p["type"] == c.kind));
            match prev {
                Some(p) if p["status"] == st => p["lastTransitionTime"].clone(),
                _ => json!(now_rfc3339()),
            }
        };
        let pod_ip = sandbox.and_then(|sb| sb.network.as_ref()).map(|n| n.ip.clone()).filter(|ip| !ip.is_empty());
        let host_network = pod.pointer("/spec/hostNetwork").and_then(Value::as_bool).unwrap_or(false);
        let pod_ip = if host_network { Some(self.cfg.node_ip.clone()) } else { pod_ip };
        // The kubelet's conditions; those other writers own (DisruptionTarget, readiness gates' types) stay, as a
        // merge patch replaces the whole list.
        let foreign = array(pod, "/status/conditions").iter().filter(|c| {
            c.get("type").and_then(Value::as_str).is_some_and(|t| !crate::status::KUBELET_CONDITIONS.contains(&t))
        });
        let conditions: Vec<Value> = conditions.iter().map(|c| c.to_json(since(c))).chain(foreign.cloned()).collect();
        let mut status = json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": self.cfg.node_ip,
            "hostIPs": [{"ip": self.cfg.node_ip}],
            "startTime": old.get("startTime").cloned().filter(|v| !v.is_null()).unwrap_or_else(|| json!(now_rfc3339())),
            "containerStatuses": statuses,
            "qosClass": old.get("qosClass").cloned().unwrap_or(json!("BestEffort")),
        });
        if !ephemeral.is_empty() {
            status["ephemeralContainerStatuses"] = json!(ephemeral);
        }
        // A failure of the pod as a whole keeps its reason while the phase stays.
        let failed = waiting.failed.clone().map(|(r, m)| (json!(r), json!(m))).or_else(|| {
            (old.get("phase").and_then(Value::as_str) == Some(phase) && old.get("reason").is_some_and(|r| !r.is_null()))
                .then(|| (old["reason"].clone(), old.get("message").cloned().unwrap_or(Value::Null)))
        });
        if let Some((reason, message)) = failed {
            status["reason"] = reason;
            status["message"] = message;
        }
        if !init_statuses.is_empty() {
            status["initContainerStatuses"] = json!(init_statuses);
        }
        if let Some(ip) = pod_ip {
            status["podIP"] = json!(ip);
            status["podIPs"] = json!([{"ip": ip}]);
        }
        // Unchanged since the last write: nothing to send, unless a copy of the pod newer than that write shows
        // another phase or readiness (someone else wrote it). An older copy is the informer not having our write
        // yet.
        if last_written.as_ref() == Some(&status) && !self.status_overwritten(&uid, pod) {
            return Ok(());
        }
        let api = self.pods.clone().namespaced(s(pod, "/metadata/namespace"));
        match api.patch_status(s(pod, "/metadata/name"), PatchType::Merge, &json!({"status": status})).await {
            Ok(written) => {
                if let Ok(mut w) = self.written.lock() {
                    w.insert(uid, (status, resource_version(&written).unwrap_or(0)));
                }
                Ok(())
            }
            Err(e) if e.code() == Some(404) => Ok(()),
            Err(e) if e.code().is_none() && is_static(pod) => {
                tracing::debug!(pod = %uid, error = %e, "the static pod's status waits for the apiserver");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The PLEG: relists the runtime every period and wakes the workers of pods whose containers changed; pods
    /// found in the runtime that the API does not have get a worker too, which removes them.
    pub async fn pleg(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut last: HashMap<String, i32> = HashMap::new();
        let mut tick = tokio::time::interval(self.cfg.pleg_period);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let mut rt = self.cri.runtime.clone();
            let Ok(containers) = rt.list_containers(ListContainersRequest::default()).await else { continue };
            let Ok(sandboxes) = rt.list_pod_sandbox(ListPodSandboxRequest::default()).await else { continue };
            if let Ok(mut states) = self.synced_states.lock() {
                last.extend(states.drain());
            }
            let mut now: HashMap<String, i32> = HashMap::new();
            let mut changed: Vec<String> = Vec::new();
            for c in containers.into_inner().containers {
                let uid = c.labels.get(LABEL_POD_UID).cloned().unwrap_or_default();
                if last.get(&c.id) != Some(&c.state) {
                    changed.push(uid.clone());
                }
                now.insert(c.id, c.state);
            }
            for sb in sandboxes.into_inner().items {
                let uid = sb.labels.get(LABEL_POD_UID).cloned().unwrap_or_default();
                let known = self.desired.lock().ok().is_some_and(|d| d.contains_key(&uid));
                if !known && self.sources_ready() {
                    changed.push(uid.clone());
                }
                if last.get(&sb.id) != Some(&sb.state) {
                    changed.push(uid);
                }
                now.insert(sb.id, sb.state);
            }
            changed.sort();
            changed.dedup();
            for uid in changed.into_iter().filter(|u| !u.is_empty()) {
                self.wake(&uid);
            }
            last = now;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kube_apiserver::testing::TestApiserver;
    use proto::fake::FakeCri;

    #[test]
    fn status_only_updates_do_not_differ_semantically() {
        let pod = json!({"metadata": {"name": "p", "resourceVersion": "5", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Pending"}});
        let mut status = pod.clone();
        status["metadata"]["resourceVersion"] = json!("6");
        status["status"]["phase"] = json!("Running");
        assert!(!differ_semantically(&pod, &status));
        for (path, value) in [
            ("/spec/activeDeadlineSeconds", json!(5)),
            ("/metadata/labels", json!({"a": "c"})),
            ("/metadata/annotations", json!({"x": "y"})),
            ("/metadata/deletionTimestamp", json!("2026-01-01T00:00:00Z")),
        ] {
            let mut changed = pod.clone();
            let (parent, key) = path.rsplit_once('/').unwrap();
            changed.pointer_mut(parent).unwrap()[key] = value;
            assert!(differ_semantically(&pod, &changed), "{path}");
        }
    }

    /// A PodManager on a fake runtime, for a node named n1.
    pub(crate) fn manager_on_fake(server: &TestApiserver, dir: &std::path::Path) -> (Arc<PodManager>, FakeCri) {
        manager_with(server, dir, crate::hollow::PRELOADED, |_| {})
    }

    /// A PodManager on a fake runtime holding `images`, for a node named n1, its configuration adjusted by `tune`.
    fn manager_with(
        server: &TestApiserver,
        dir: &std::path::Path,
        images: &[&str],
        tune: impl FnOnce(&mut Config),
    ) -> (Arc<PodManager>, FakeCri) {
        let flags = crate::Flags {
            hostname_override: Some("n1".into()),
            root_dir: Some(dir.to_path_buf()),
            ..Default::default()
        };
        let mut cfg = Config::resolve(flags).unwrap();
        cfg.pod_logs_dir = dir.join("logs");
        tune(&mut cfg);
        let fake = FakeCri::with_images(images);
        let manager = PodManager::new(Cri::local(fake.clone()), server.new_client(), cfg).unwrap();
        (manager, fake)
    }

    /// The event with `reason` about the object named `object`, waiting up to two seconds for it.
    async fn event(events: &client::Api, reason: &str, object: &str) -> Value {
        for _ in 0..100 {
            let list = events.list(&client::ListParams::default()).await.unwrap();
            let items = list["items"].as_array().unwrap();
            if let Some(e) = items.iter().find(|e| e["reason"] == reason && e["involvedObject"]["name"] == object) {
                return e.clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no {reason} event for {object}");
    }

    async fn settle(manager: &PodManager, live: usize) {
        for _ in 0..100 {
            if manager.probers.live() == live {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(manager.probers.live(), live);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn probers_end_with_their_container_and_their_pod() {
        let server = TestApiserver::start().await;
        let pods = server.client.api("", "v1", "pods").unwrap().namespaced("default");
        let probe = json!({"exec": {"command": ["true"]}, "periodSeconds": 1});
        let pod = pods
            .create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "docker.io/library/busybox:1.36",
                    "readinessProbe": probe, "livenessProbe": probe}, {"name": "plain", "image": "docker.io/library/busybox:1.36"}]}}))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (manager, fake) = manager_on_fake(&server, dir.path());
        let uid = s(&pod, "/metadata/uid").to_string();
        manager.sync_pod(&uid, Some(&pod)).await.unwrap();
        settle(&manager, 2).await;

        // The container exits: its probers end at the next sync, and its restart gets new ones.
        let id = manager.running_container_id(&uid, "c").await.unwrap();
        fake.exit_container(&id, 1);
        manager.sync_pod(&uid, Some(&pod)).await.unwrap();
        settle(&manager, 2).await;
        assert!(!manager.probers.has(&id));
        let restarted = manager.running_container_id(&uid, "c").await.unwrap();
        assert!(restarted != id && manager.probers.has(&restarted));

        // A terminal pod is not probed.
        let mut done = pod.clone();
        done["status"] = json!({"phase": "Failed"});
        manager.sync_pod(&uid, Some(&done)).await.unwrap();
        settle(&manager, 0).await;

        // Probing again while it runs; then the pod goes away and takes its probers along.
        manager.sync_pod(&uid, Some(&pod)).await.unwrap();
        settle(&manager, 2).await;
        assert_eq!(manager.sync_pod(&uid, None).await.unwrap(), Synced::Finished);
        settle(&manager, 0).await;
        server.stop().await;
    }

    /// `$(VAR)` in env values expands from the variables declared before (envFrom included) and the service
    /// variables; command and args expand from the final environment; service links follow enableServiceLinks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dependent_env_vars_and_service_links_reach_the_container_config() {
        let server = TestApiserver::start().await;
        let client = server.new_client();
        let cms = client.api("", "v1", "configmaps").unwrap().namespaced("default");
        cms.create(&kube_apiserver::testing::configmap("default", "cfg", json!({}), json!({"K": "from-cm"})))
            .await
            .unwrap();
        let services = client.api("", "v1", "services").unwrap();
        server.namespace("other").await;
        for (ns, name) in [("default", "web-svc"), ("other", "db")] {
            services
                .clone()
                .namespaced(ns)
                .create(&json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
                    "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}))
                .await
                .unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let (manager, _) = manager_on_fake(&server, dir.path());
        let factory = runtime::informer::SharedInformerFactory::new(server.new_client());
        let res = api_types::resources::find("", "v1", "services").unwrap();
        let informer = factory.informer(res, runtime::informer::InformerParams::all()).unwrap();
        manager.use_services(informer.clone());
        assert!(informer.wait_synced().await);
        let svc_ip = |ns: &str, name: &str| {
            informer.store().get(ns, name).unwrap()["spec"]["clusterIP"].as_str().unwrap().to_string()
        };

        let container = json!({"name": "c", "image": "busybox",
            "envFrom": [{"configMapRef": {"name": "cfg"}}],
            "env": [
                {"name": "FOO", "value": "foo"},
                {"name": "BAR", "value": "$(FOO)-bar"},
                {"name": "ESC", "value": "$$(FOO)"},
                {"name": "UNKNOWN", "value": "$(NOPE)"},
                {"name": "LATER", "value": "$(AFTER)"},
                {"name": "AFTER", "value": "x"},
                {"name": "FROM_CM", "value": "$(K)"},
                {"name": "SVC", "value": "$(WEB_SVC_SERVICE_HOST):$(WEB_SVC_SERVICE_PORT)"},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "REF_POD", "value": "$(POD)"},
                {"name": "EMPTY"},
            ],
            "command": ["sh", "-c", "echo $(BAR) $$(FOO) $(MISSING)"],
            "args": ["$(KUBERNETES_SERVICE_HOST)", "$(REF_POD)"]});
        let pod = json!({"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"nodeName": "n1", "containers": [container]}});
        let sandbox_cfg = PodSandboxConfig::default();
        let (volumes, allocatable) = (BTreeMap::new(), json!({}));
        let ctx = |pod| StartContext {
            pod,
            sandbox: "",
            sandbox_cfg: &sandbox_cfg,
            pod_ip: "10.0.0.5",
            volumes: &volumes,
            allocatable: &allocatable,
            hosts: None,
        };
        let config = manager.prepare_container(&ctx(&pod), &pod["spec"]["containers"][0], 0).await.unwrap();
        let env: BTreeMap<&str, &str> = config.envs.iter().map(|e| (e.key.as_str(), e.value.as_str())).collect();
        let web = svc_ip("default", "web-svc");
        let master = svc_ip("default", "kubernetes");
        for (k, v) in [
            ("FOO", "foo"),
            ("BAR", "foo-bar"),
            ("ESC", "$(FOO)"),
            ("UNKNOWN", "$(NOPE)"),
            ("LATER", "$(AFTER)"),
            ("FROM_CM", "from-cm"),
            ("K", "from-cm"),
            ("SVC", &format!("{web}:80")),
            ("POD", "p"),
            ("REF_POD", "p"),
            ("EMPTY", ""),
            ("KUBERNETES_SERVICE_HOST", &master),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", &format!("tcp://{master}:443")),
            ("KUBERNETES_PORT_443_TCP_ADDR", &master),
            ("WEB_SVC_SERVICE_HOST", &web),
            ("WEB_SVC_SERVICE_PORT_HTTP", "80"),
            ("WEB_SVC_PORT_80_TCP", &format!("tcp://{web}:80")),
            ("WEB_SVC_PORT_80_TCP_PROTO", "tcp"),
        ] {
            assert_eq!(env.get(k).copied(), Some(v), "{k}");
        }
        assert!(!env.contains_key("DB_SERVICE_HOST"), "another namespace's services are not linked");
        assert_eq!(config.command, ["sh", "-c", "echo foo-bar $(FOO) $(MISSING)"]);
        assert_eq!(config.args, [master.as_str(), "p"]);

        // Without service links only the master service remains.
        let mut unlinked = pod.clone();
        unlinked["spec"]["enableServiceLinks"] = json!(false);
        let config = manager.prepare_container(&ctx(&unlinked), &unlinked["spec"]["containers"][0], 0).await.unwrap();
        let keys: Vec<&str> = config.envs.iter().map(|e| e.key.as_str()).collect();
        assert!(keys.contains(&"KUBERNETES_SERVICE_HOST") && !keys.contains(&"WEB_SVC_SERVICE_HOST"), "{keys:?}");
        factory.shutdown();
        server.stop().await;
    }

    fn condition<'a>(pod: &'a Value, kind: &str) -> &'a Value {
        pod["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == kind).unwrap()
    }

    /// Init containers run in order; until they are done the app container waits with `PodInitializing` and the
    /// Initialized condition names the incomplete ones; a finished init container is ready.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn init_container_statuses_and_conditions_as_upstream() {
        let server = TestApiserver::start().await;
        let pods = server.client.api("", "v1", "pods").unwrap().namespaced("default");
        let image = "docker.io/library/busybox:1.36";
        let pod = pods
            .create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                "spec": {"nodeName": "n1", "initContainers": [{"name": "init1", "image": image}, {"name": "init2", "image": image}],
                    "containers": [{"name": "app", "image": image}]}}))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (manager, fake) = manager_on_fake(&server, dir.path());
        let uid = s(&pod, "/metadata/uid").to_string();

        manager.sync_pod(&uid, Some(&pod)).await.unwrap();
        let p = pods.get("p").await.unwrap();
        assert_eq!(p["status"]["phase"], "Pending");
        let inits = &p["status"]["initContainerStatuses"];
        assert!(inits[0]["state"]["running"].is_object());
        assert_eq!(inits[0]["ready"], false);
        assert_eq!(inits[1]["state"], json!({"waiting": {"reason": "PodInitializing"}}));
        assert_eq!(p["status"]["containerStatuses"][0]["state"], json!({"waiting": {"reason": "PodInitializing"}}));
        let initialized = condition(&p, "Initialized");
        assert_eq!(initialized["status"], "False");
        assert_eq!(initialized["reason"], "ContainersNotInitialized");
        assert_eq!(initialized["message"], "containers with incomplete status: [init1 init2]");
        assert_eq!(condition(&p, "Ready")["reason"], "ContainersNotReady");
        assert_eq!(condition(&p, "Ready")["message"], "containers with unready status: [app]");
        assert_eq!(condition(&p, "ContainersReady")["message"], "containers with unready status: [app]");

        // init1 exits 0: it is ready, init2 runs.
        fake.exit_container(&manager.running_container_id(&uid, "init1").await.unwrap(), 0);
        manager.sync_pod(&uid, Some(&pod)).await.unwrap();
        let p = pods.get("p").await.unwrap();
        assert_eq!(p["status"]["initContainerStatuses"][0]["ready"], true);
        assert_eq!(p["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"], "Completed");
        assert_eq!(condition(&p, "Initialized")["message"], "containers with incomplete status: [init2]");

        // init2 exits 0: the pod is initialized and the app runs.
        fake.exit_container(&manager.running_container_id(&uid, "init2").await.unwrap(), 0);
        manager.sync_pod(&uid, Some(&pod)).await.unwrap();
        let p = pods.get("p").await.unwrap();
        assert_eq!(p["status"]["phase"], "Running");
        assert!(p["status"]["initContainerStatuses"].as_array().unwrap().iter().all(|c| c["ready"] == true));
        for kind in ["Initialized", "Ready", "ContainersReady", "PodReadyToStartContainers", "PodScheduled"] {
            let c = condition(&p, kind);
            assert!(c["status"] == "True" && c.get("reason").is_none(), "{c}");
        }
        server.stop().await;
    }

    /// The termination message comes from the file mounted at terminationMessagePath (its last 4 KiB), or, with
    /// FallbackToLogsOnError and a failure, from the end of the log when the file is empty.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn termination_messages_from_the_file_or_the_log() {
        let server = TestApiserver::start().await;
        let pods = server.client.api("", "v1", "pods").unwrap().namespaced("default");
        let image = "docker.io/library/busybox:1.36";
        let pod = pods
            .create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                "spec": {"nodeName": "n1", "restartPolicy": "Never", "containers": [
                    {"name": "file", "image": image, "terminationMessagePath": "/tmp/msg"},
                    {"name": "big", "image": image},
                    {"name": "logs", "image": image, "terminationMessagePolicy": "FallbackToLogsOnError"},
                    {"name": "quiet", "image": image, "terminationMessagePolicy": "FallbackToLogsOnError"}]}}))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (manager, fake) = manager_on_fake(&server, dir.path());
        let uid = s(&pod, "/metadata/uid").to_string();
        manager.sync_pod(&uid, Some(&pod)).await.unwrap();
        let obs = manager.observe(&uid).await.unwrap();
        let host_file = |name: &str, path: &str| {
            let st = obs.latest(name).unwrap();
            let m = st.mounts.iter().find(|m| m.container_path == path).expect("termination file mounted");
            (st.id.clone(), std::path::PathBuf::from(&m.host_path))
        };
        let (file_id, file) = host_file("file", "/tmp/msg");
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o666);
        std::fs::write(&file, "all done").unwrap();
        fake.exit_container(&file_id, 0);
        let (big_id, big) = host_file("big", "/dev/termination-log");
        let long: String = (0..5000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        std::fs::write(&big, &long).unwrap();
        fake.exit_container(&big_id, 0);
        // A failing container with an empty message file: the end of its log (the last 80 lines).
        let (logs_id, _) = host_file("logs", "/dev/termination-log");
        let log_dir = manager.log_dir(&pod).join("logs");
        std::fs::create_dir_all(&log_dir).unwrap();
        let log: String = (0..100).map(|i| format!("2024-01-01T00:00:00Z stdout F line {i}\n")).collect();
        std::fs::write(log_dir.join("0.log"), log).unwrap();
        fake.exit_container(&logs_id, 3);
        // Succeeding: no fallback to the log.
        let (quiet_id, _) = host_file("quiet", "/dev/termination-log");
        std::fs::create_dir_all(manager.log_dir(&pod).join("quiet")).unwrap();
        std::fs::write(manager.log_dir(&pod).join("quiet/0.log"), "2024-01-01T00:00:00Z stdout F hi\n").unwrap();
        fake.exit_container(&quiet_id, 0);

        manager.sync_pod(&uid, Some(&pod)).await.unwrap();
        let p = pods.get("p").await.unwrap();
        let message = |i: usize| p["status"]["containerStatuses"][i]["state"]["terminated"]["message"].clone();
        assert_eq!(message(0), "all done");
        assert_eq!(message(1), json!(long[long.len() - 4096..]), "the last 4 KiB");
        let expected: String = (20..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(message(2), json!(expected));
        assert_eq!(message(3), Value::Null);
        assert_eq!(p["status"]["phase"], "Failed");
        server.stop().await;
    }

    /// Past activeDeadlineSeconds (from its startTime) the pod fails with DeadlineExceeded and its containers are
    /// stopped; the worker is woken at the deadline.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn active_deadline_fails_the_pod_and_kills_its_containers() {
        let server = TestApiserver::start().await;
        let pods = server.client.api("", "v1", "pods").unwrap().namespaced("default");
        let pod = pods
            .create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                "spec": {"nodeName": "n1", "activeDeadlineSeconds": 2, "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "c", "image": "docker.io/library/busybox:1.36",
                        "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}]}}))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (manager, fake) = manager_on_fake(&server, dir.path());
        let uid = s(&pod, "/metadata/uid").to_string();
        assert!(manager.until_deadline(&uid, &pod).is_none(), "not started yet");
        manager.sync_pod(&uid, Some(&pod)).await.unwrap();
        let running = pods.get("p").await.unwrap();
        assert_eq!(running["status"]["phase"], "Running");
        let left = manager.until_deadline(&uid, &pod).unwrap();
        assert!(left > Duration::from_millis(500) && left <= Duration::from_secs(2), "{left:?}");
        // Before the deadline nothing changes.
        manager.sync_pod(&uid, Some(&running)).await.unwrap();
        assert_eq!(pods.get("p").await.unwrap()["status"]["phase"], "Running");

        tokio::time::sleep(left + Duration::from_millis(100)).await;
        assert_eq!(manager.until_deadline(&uid, &running), Some(Duration::ZERO));
        manager.sync_pod(&uid, Some(&running)).await.unwrap();
        let failed = pods.get("p").await.unwrap();
        assert_eq!(failed["status"]["phase"], "Failed");
        assert_eq!(failed["status"]["reason"], "DeadlineExceeded");
        assert_eq!(failed["status"]["message"], "Pod was active on the node longer than the specified deadline");
        assert!(failed["status"]["containerStatuses"][0]["state"]["terminated"].is_object());
        assert!(manager.running_container_id(&uid, "c").await.is_none(), "the container was stopped");
        assert_eq!(manager.probers.live(), 0);
        // A restart back-off is kept per container until the pod is gone.
        assert!(manager.backoff_allows(&uid, "c", true).is_ok());
        assert_eq!(manager.backoff.lock().unwrap().len(), 1);
        manager.forget(&uid);
        assert!(manager.backoff.lock().unwrap().is_empty(), "the gone pod's back-off is forgotten");
        // Terminal: the next sync stops the sandbox and starts nothing.
        manager.sync_pod(&uid, Some(&failed)).await.unwrap();
        assert!(manager.sandbox_id(&uid).await.is_none());
        assert_eq!(fake.counts().1, 1, "no container started again");
        server.stop().await;
    }

    /// A new pod that does not fit next to the admitted ones fails with upstream's reason and runs nothing; once
    /// the pod holding the port is gone, the port is free again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn admission_rejects_pods_that_do_not_fit() {
        let server = TestApiserver::start().await;
        let pods = server.client.api("", "v1", "pods").unwrap().namespaced("default");
        let make = async |name: &str, container: Value| {
            pods.create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                "spec": {"nodeName": "n1", "containers": [container]}}))
                .await
                .unwrap()
        };
        let with_port = json!({"name": "c", "image": "docker.io/library/busybox:1.36",
            "ports": [{"containerPort": 80, "hostPort": 18080}]});
        let first = make("first", with_port.clone()).await;
        let second = make("second", with_port.clone()).await;
        let greedy = make(
            "greedy",
            json!({"name": "c", "image": "docker.io/library/busybox:1.36",
            "resources": {"requests": {"cpu": "100000"}}}),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let (manager, fake) = manager_on_fake(&server, dir.path());
        let uid = |p: &Value| s(p, "/metadata/uid").to_string();
        // What the pod informer would have (without starting workers).
        let desire = |p: &Value| {
            manager.desired.lock().unwrap().insert(uid(p), Arc::new(p.clone()));
        };
        for p in [&first, &second, &greedy] {
            desire(p);
        }
        manager.sync_pod(&uid(&first), Some(&first)).await.unwrap();
        assert_eq!(pods.get("first").await.unwrap()["status"]["phase"], "Running");

        assert_eq!(manager.sync_pod(&uid(&second), Some(&second)).await.unwrap(), Synced::Settled);
        let rejected = pods.get("second").await.unwrap();
        assert_eq!(rejected["status"]["phase"], "Failed");
        assert_eq!(rejected["status"]["reason"], "NodePorts");
        assert_eq!(
            rejected["status"]["message"],
            "Pod was rejected: Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports"
        );
        assert!(manager.sandbox_id(&uid(&second)).await.is_none(), "a rejected pod runs nothing");
        // Synced again from an older copy: still terminal, not admitted again.
        assert_eq!(manager.sync_pod(&uid(&second), Some(&second)).await.unwrap(), Synced::Settled);
        assert_eq!(fake.counts().0, 1);

        manager.sync_pod(&uid(&greedy), Some(&greedy)).await.unwrap();
        let greedy = pods.get("greedy").await.unwrap();
        assert_eq!(greedy["status"]["reason"], "OutOfcpu");
        assert!(greedy["status"]["message"].as_str().unwrap().starts_with(
            "Pod was rejected: Node didn't have enough resource: cpu, requested: 100000000, used: 0, capacity: "
        ));

        // A node selector on a label the Node got later: read from the API before refusing.
        let nodes = server.client.api("", "v1", "nodes").unwrap();
        let mut node = crate::node::node_object(&manager.cfg, "");
        node["metadata"]["labels"]["disk"] = json!("ssd");
        nodes.create(&node).await.unwrap();
        for (name, disk, phase) in [("ssd", "ssd", "Running"), ("hdd", "hdd", "Failed")] {
            let p = pods
                .create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                    "spec": {"nodeName": "n1", "nodeSelector": {"disk": disk},
                        "containers": [{"name": "c", "image": "docker.io/library/busybox:1.36"}]}}))
                .await
                .unwrap();
            desire(&p);
            manager.sync_pod(&uid(&p), Some(&p)).await.unwrap();
            let got = pods.get(name).await.unwrap();
            assert_eq!(got["status"]["phase"], phase, "{name}");
            if phase == "Failed" {
                assert_eq!(got["status"]["reason"], "NodeAffinity");
            }
        }

        // An unsafe sysctl the node does not allow (upstream's e2e "should not launch unsafe, but not explicitly
        // enabled sysctls on the node"); a safe one runs, its sysctl in the sandbox's configuration.
        for (name, sysctl, phase) in
            [("unsafe", "kernel.msgmax", "Failed"), ("safe", "kernel.shm_rmid_forced", "Running")]
        {
            let p = pods
                .create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                    "spec": {"nodeName": "n1", "securityContext": {"sysctls": [{"name": sysctl, "value": "1"}]},
                        "containers": [{"name": "c", "image": "docker.io/library/busybox:1.36"}]}}))
                .await
                .unwrap();
            desire(&p);
            manager.sync_pod(&uid(&p), Some(&p)).await.unwrap();
            let got = pods.get(name).await.unwrap();
            assert_eq!(got["status"]["phase"], phase, "{name}");
            if phase == "Failed" {
                assert_eq!(got["status"]["reason"], "SysctlForbidden");
                assert_eq!(
                    got["status"]["message"],
                    "Pod was rejected: forbidden sysctl: \"kernel.msgmax\" not allowlisted"
                );
            } else {
                let (sandbox, _) = manager.sandbox_config(&got, 0).unwrap();
                assert_eq!(sandbox.linux.unwrap().sysctls, HashMap::from([(sysctl.to_string(), "1".to_string())]));
            }
        }

        // The first pod goes away: its port is free for a newcomer.
        manager.desired.lock().unwrap().remove(&uid(&first));
        assert_eq!(manager.sync_pod(&uid(&first), None).await.unwrap(), Synced::Finished);
        let third = make("third", with_port).await;
        desire(&third);
        manager.sync_pod(&uid(&third), Some(&third)).await.unwrap();
        assert_eq!(pods.get("third").await.unwrap()["status"]["phase"], "Running");
        server.stop().await;
    }

    #[test]
    fn pull_backoff_doubles_to_five_minutes_and_expires() {
        let mut b = PullBackOff::default();
        let t0 = Instant::now();
        assert_eq!(b.holds("k", t0), None);
        b.next("k", t0, "ErrImagePull: e".into());
        assert_eq!(b.holds("k", t0 + Duration::from_secs(9)).as_deref(), Some("ErrImagePull: e"));
        assert_eq!(b.holds("k", t0 + Duration::from_secs(10)), None);
        assert_eq!(b.holds("other", t0), None);
        let mut now = t0;
        for expected in [20, 40, 80, 160, 300, 300] {
            now += Duration::from_secs(1);
            b.next("k", now, "e".into());
            assert_eq!(b.0["k"].1, Duration::from_secs(expected));
        }
        // Untouched for twice the maximum: forgotten, and the next failure starts over.
        let later = now + Duration::from_secs(601);
        assert_eq!(b.holds("k", later), None);
        b.gc(later);
        assert!(b.0.is_empty());
        b.next("k", later, "e".into());
        assert_eq!(b.0["k"].1, BACKOFF_START);
    }

    /// A failed pull is not retried at once: the container waits in ImagePullBackOff with the last pull error,
    /// and a Normal BackOff event says so (upstream's image manager).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn image_pull_back_off_as_upstream() {
        let server = TestApiserver::start().await;
        let pods = server.client.api("", "v1", "pods").unwrap().namespaced("default");
        let events = server.client.api("", "v1", "events").unwrap().namespaced("default");
        let image = "example.com/does-not-exist:1";
        let pod = pods
            .create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": image}]}}))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (manager, fake) = manager_on_fake(&server, dir.path());
        let uid = s(&pod, "/metadata/uid").to_string();
        let waiting =
            async || pods.get("p").await.unwrap()["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        manager.sync_pod(&uid, Some(&pod)).await.unwrap();
        let first = waiting().await;
        assert_eq!(first["reason"], "ErrImagePull");
        let pulls = || fake.calls.lock().unwrap().get("PullImage").copied().unwrap_or(0);
        let pulled = pulls();
        assert!(pulled > 0);
        manager.sync_pod(&uid, Some(&pod)).await.unwrap();
        assert_eq!(pulls(), pulled, "no pull during the back-off");
        let second = waiting().await;
        assert_eq!(second["reason"], "ImagePullBackOff");
        let pull_error = first["message"].as_str().unwrap();
        assert_eq!(second["message"], format!("Back-off pulling image \"{image}\": ErrImagePull: {pull_error}"));
        let e = event(&events, "BackOff", "p").await;
        assert_eq!(e["type"], "Normal");
        assert_eq!(e["message"], format!("Back-off pulling image \"{image}\""));
        assert_eq!(e["involvedObject"]["fieldPath"], "spec.containers{c}");
        server.stop().await;
    }

    /// After a restart the runtime's containers are seen before the API delivers the pods: a pod no source has
    /// delivered yet is not torn down until every source is ready (upstream's sourcesReady); then an orphan is.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pods_unknown_before_sources_ready_are_kept() {
        let server = TestApiserver::start().await;
        let pods = server.client.api("", "v1", "pods").unwrap().namespaced("default");
        let pod = pods
            .create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "docker.io/library/busybox:1.36"}]}}))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (manager, _fake) = manager_on_fake(&server, dir.path());
        let uid = s(&pod, "/metadata/uid").to_string();
        manager.sync_pod(&uid, Some(&pod)).await.unwrap();
        assert!(manager.running_container_id(&uid, "c").await.is_some());
        // As a restarted kubelet: the container is found, the API has not delivered its pods yet.
        manager.source_pending("api");
        manager.wake(&uid);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(manager.running_container_id(&uid, "c").await.is_some(), "torn down before the API delivered");
        // Every source delivered and the pod is not among them: an orphan, stopped.
        manager.source_ready("api");
        manager.wake(&uid);
        for _ in 0..50 {
            if manager.running_container_id(&uid, "c").await.is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(manager.running_container_id(&uid, "c").await.is_none(), "the orphan keeps running");
        server.stop().await;
    }

    /// `imagePullPolicy: Always` pulls even when the image is present, and a failed pull fails the container
    /// (ErrImagePull) rather than running the local copy, as upstream's image manager.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn always_pulls_and_a_failed_pull_is_an_error() {
        let server = TestApiserver::start().await;
        let pods = server.client.api("", "v1", "pods").unwrap().namespaced("default");
        let image = "example.com/does-not-exist:1";
        let pod = pods
            .create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": image, "imagePullPolicy": "Always"}]}}))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (manager, fake) = manager_with(&server, dir.path(), &[image], |_| {});
        manager.sync_pod(s(&pod, "/metadata/uid"), Some(&pod)).await.unwrap();
        assert_eq!(fake.calls.lock().unwrap().get("PullImage").copied(), Some(1), "pulled although present");
        let status = pods.get("p").await.unwrap()["status"]["containerStatuses"][0].clone();
        assert_eq!(status["state"]["waiting"]["reason"], "ErrImagePull", "{status}");
        assert_eq!(fake.calls.lock().unwrap().get("CreateContainer").copied(), None, "the local copy is not run");
        server.stop().await;
    }

    /// A pod whose resolver configuration exceeds the limits: cut, with upstream's DNSConfigForming warning on the
    /// pod when its sandbox is created.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dns_config_forming_as_upstream() {
        let server = TestApiserver::start().await;
        let pods = server.client.api("", "v1", "pods").unwrap().namespaced("default");
        let events = server.client.api("", "v1", "events").unwrap().namespaced("default");
        let pod = pods
            .create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                "spec": {"nodeName": "n1", "dnsPolicy": "Default", "dnsConfig": {"nameservers": ["10.0.0.3", "10.0.0.4"]},
                    "containers": [{"name": "c", "image": "docker.io/library/busybox:1.36"}]}}))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(&resolv, "nameserver 10.0.0.1\nnameserver 10.0.0.2\n").unwrap();
        let resolv_conf = resolv.display().to_string();
        let (manager, _fake) =
            manager_with(&server, dir.path(), crate::hollow::PRELOADED, |cfg| cfg.resolv_conf = resolv_conf);
        let uid = s(&pod, "/metadata/uid").to_string();
        let (sandbox, _) = manager.sandbox_config(&pod, 0).unwrap();
        assert_eq!(sandbox.dns_config.unwrap().servers, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        manager.sync_pod(&uid, Some(&pod)).await.unwrap();
        let e = event(&events, "DNSConfigForming", "p").await;
        assert_eq!(e["type"], "Warning");
        // dnsPolicy Default: no MissingClusterDNS although the kubelet has no clusterDNS.
        assert!(
            events.list(&client::ListParams::default()).await.unwrap()["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["reason"] != "MissingClusterDNS")
        );
        assert_eq!(
            e["message"],
            "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: 10.0.0.1 10.0.0.2 10.0.0.3"
        );
        assert_eq!(e["involvedObject"]["fieldPath"], Value::Null);
        // ClusterFirst (the default policy) without clusterDNS: MissingClusterDNS on the pod and on the node.
        let q = pods
            .create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q", "namespace": "default"},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "docker.io/library/busybox:1.36"}]}}))
            .await
            .unwrap();
        let quid = s(&q, "/metadata/uid").to_string();
        manager.sync_pod(&quid, Some(&q)).await.unwrap();
        let fallback = "kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.";
        let e = event(&events, "MissingClusterDNS", "q").await;
        assert_eq!(e["type"], "Warning");
        assert_eq!(e["message"], format!("pod: \"q_default({quid})\". {fallback}"));
        let e = event(&events, "MissingClusterDNS", "n1").await;
        assert_eq!((&e["involvedObject"]["kind"], &e["message"]), (&json!("Node"), &json!(fallback)));
        server.stop().await;
    }

    /// Events as upstream's kubelet records them: Pulled, Created, Started about the container (its field path),
    /// Unhealthy with the probe's output, BackOff for a crash loop, FailedMount for a volume that cannot be set up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pod_events_as_upstream() {
        let server = TestApiserver::start().await;
        let pods = server.client.api("", "v1", "pods").unwrap().namespaced("default");
        let events = server.client.api("", "v1", "events").unwrap().namespaced("default");
        let image = "docker.io/library/busybox:1.36";
        let pod = pods
            .create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": image,
                    "readinessProbe": {"tcpSocket": {"host": "127.0.0.1", "port": 1}, "periodSeconds": 1}}]}}))
            .await
            .unwrap();
        let mounted = pods
            .create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "m", "namespace": "default"},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": image, "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]}],
                    "volumes": [{"name": "cfg", "configMap": {"name": "absent"}}]}}))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (manager, fake) = manager_on_fake(&server, dir.path());
        let uid = s(&pod, "/metadata/uid").to_string();
        manager.sync_pod(&uid, Some(&pod)).await.unwrap();
        let find = async |reason: &str, object: &str| event(&events, reason, object).await;
        for (reason, message) in [
            ("Pulled", format!("Container image \"{image}\" already present on machine")),
            ("Created", "Created container: c".to_string()),
            ("Started", "Started container c".to_string()),
        ] {
            let e = find(reason, "p").await;
            assert_eq!(e["message"], message.as_str());
            assert_eq!(e["type"], "Normal");
            assert_eq!(e["involvedObject"]["fieldPath"], "spec.containers{c}");
            assert_eq!(e["involvedObject"]["kind"], "Pod");
            assert_eq!(e["involvedObject"]["uid"], uid.as_str());
            assert_eq!(e["source"], json!({"component": "kubelet", "host": "n1"}));
        }
        let unhealthy = find("Unhealthy", "p").await;
        assert_eq!(unhealthy["type"], "Warning");
        assert_eq!(unhealthy["message"], "Readiness probe failed: dial tcp 127.0.0.1:1: connect: connection refused");

        // A crash: restarted once at once, then held back with a BackOff event.
        for _ in 0..2 {
            fake.exit_container(&manager.running_container_id(&uid, "c").await.unwrap(), 1);
            manager.sync_pod(&uid, Some(&pod)).await.unwrap();
        }
        let backoff = find("BackOff", "p").await;
        assert_eq!(backoff["message"], format!("Back-off restarting failed container c in pod p_default({uid})"));
        let p = pods.get("p").await.unwrap();
        let state = &p["status"]["containerStatuses"][0]["state"]["waiting"];
        assert_eq!(state["reason"], "CrashLoopBackOff");
        assert_eq!(state["message"], format!("back-off 10s restarting failed container=c pod=p_default({uid})"));

        // A missing configMap: FailedMount, and the container waits to be created.
        let muid = s(&mounted, "/metadata/uid").to_string();
        manager.sync_pod(&muid, Some(&mounted)).await.unwrap();
        let failed = find("FailedMount", "m").await;
        assert_eq!(failed["message"], "MountVolume.SetUp failed for volume \"cfg\" : configmap \"absent\" not found");
        let m = pods.get("m").await.unwrap();
        assert_eq!(m["status"]["containerStatuses"][0]["state"], json!({"waiting": {"reason": "ContainerCreating"}}));
        server.stop().await;
    }

    #[test]
    fn durations_as_go_prints_them() {
        for (d, want) in [
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(80), "1m20s"),
            (Duration::from_secs(300), "5m0s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(3725), "1h2m5s"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(go_duration(d), want);
        }
    }

    #[test]
    fn log_tails_keep_80_lines_and_2_kib() {
        let log: String =
            (0..30).map(|i| format!("2024-01-01T00:00:00Z stderr F {}\n", "x".repeat(99) + &i.to_string())).collect();
        let tail = last_log_lines(&log);
        assert_eq!(tail.len(), 2048);
        assert!(tail.ends_with("x29\n"));
        assert_eq!(
            last_log_lines("2024-01-01T00:00:00Z stdout P par\n2024-01-01T00:00:00Z stdout F tial\n"),
            "partial\n"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_settled_pod_status_is_written_once() {
        let server = TestApiserver::start().await;
        let pods = server.client.api("", "v1", "pods").unwrap().namespaced("default");
        let pod = pods
            .create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "docker.io/library/busybox:1.36"}]}}))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let flags = crate::Flags {
            hostname_override: Some("n1".into()),
            root_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let mut cfg = Config::resolve(flags).unwrap();
        cfg.pod_logs_dir = dir.path().join("logs");
        let cri = Cri::local(FakeCri::with_images(crate::hollow::PRELOADED));
        let manager = PodManager::new(cri, server.new_client(), cfg).unwrap();
        let uid = s(&pod, "/metadata/uid").to_string();
        let patches = async || server.requests("PATCH", "pods", "resource").await;

        // The first sync starts the container and reports Running, with condition times of now.
        assert_eq!(manager.sync_pod(&uid, Some(&pod)).await.unwrap(), Synced::Settled);
        assert_eq!(patches().await, 1.0);
        let running = pods.get("p").await.unwrap();
        assert_eq!(running["status"]["phase"], "Running");
        // Another sync a second later from the informer's older copy (it has not seen the write yet) finds nothing
        // to change: the times continue from what was written.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(manager.sync_pod(&uid, Some(&pod)).await.unwrap(), Synced::Settled);
        assert_eq!(manager.sync_pod(&uid, Some(&running)).await.unwrap(), Synced::Settled);
        assert_eq!(patches().await, 1.0);
        assert_eq!(pods.get("p").await.unwrap()["metadata"]["resourceVersion"], running["metadata"]["resourceVersion"]);

        // Someone else overwrote the status: a copy newer than our write shows it, and the kubelet writes again.
        // Its own write coming back through the watch is not such a change.
        assert!(!manager.status_overwritten(&uid, &running));
        let overwritten =
            pods.patch_status("p", PatchType::Merge, &json!({"status": {"phase": "Pending"}})).await.unwrap();
        assert!(manager.status_overwritten(&uid, &overwritten));
        manager.sync_pod(&uid, Some(&overwritten)).await.unwrap();
        assert_eq!(patches().await, 3.0);
        assert_eq!(pods.get("p").await.unwrap()["status"]["phase"], "Running");

        // A condition another component owns (the taint manager's DisruptionTarget) survives the kubelet's writes.
        let target = json!({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager"});
        let marked = pods
            .patch_status(
                "p",
                PatchType::StrategicMerge,
                &json!({"status": {"phase": "Pending", "conditions": [target]}}),
            )
            .await
            .unwrap();
        manager.sync_pod(&uid, Some(&marked)).await.unwrap();
        let after = pods.get("p").await.unwrap();
        assert_eq!(after["status"]["phase"], "Running");
        let types: Vec<&str> =
            after["status"]["conditions"].as_array().unwrap().iter().filter_map(|c| c["type"].as_str()).collect();
        assert!(types.contains(&"DisruptionTarget") && types.contains(&"Ready"), "{types:?}");
        server.stop().await;
    }
}
