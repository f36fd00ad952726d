//! Probes: liveness, readiness and startup, each exec (CRI ExecSync), httpGet, tcpSocket or grpc ([`grpc`]), with upstream's
//! timing fields (initialDelaySeconds, periodSeconds, timeoutSeconds, successThreshold, failureThreshold). One task
//! per probe of a running container (upstream's probe workers), sleeping its period between probes and ended when
//! the container stops or its pod goes away; results wake the pod worker, a failed liveness or startup probe kills
//! the container so its restart policy applies.

pub mod grpc;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::Cri;
use proto::cri::{ExecSyncRequest, StopContainerRequest};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a container's probes say now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub started: bool,
    pub ready: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

fn secs(p: &Value, field: &str, default: u64) -> u64 {
    p.get(field).and_then(Value::as_u64).unwrap_or(default)
}

/// The port of an httpGet/tcpSocket probe: a number, or a named container port.
fn port(spec: &Value, container: &Value) -> Option<u16> {
    match spec.get("port")? {
        Value::Number(n) => n.as_u64().map(|p| p as u16),
        Value::String(name) => name.parse().ok().or_else(|| {
            container
                .get("ports")
                .and_then(Value::as_array)?
                .iter()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
                .and_then(|p| p.get("containerPort"))
                .and_then(Value::as_u64)
                .map(|p| p as u16)
        }),
        _ => None,
    }
}

/// Runs one probe once: the outcome and what it said (an exec probe's output, an HTTP status, a connection
/// error), which upstream puts in the Unhealthy event.
pub async fn run_once(
    cri: &Cri,
    container_id: &str,
    probe: &Value,
    container: &Value,
    pod_ip: &str,
) -> (Outcome, String) {
    let timeout = Duration::from_secs(secs(probe, "timeoutSeconds", 1).max(1));
    let result: Result<String, String> = if let Some(exec) = probe.get("exec") {
        let cmd: Vec<String> = exec
            .get("command")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(String::from))
            .collect();
        let shown = format!("{cmd:?}");
        let req = ExecSyncRequest { container_id: container_id.into(), cmd, timeout: timeout.as_secs() as i64 };
        let mut rt = cri.runtime.clone();
        match tokio::time::timeout(timeout + Duration::from_secs(1), rt.exec_sync(req)).await {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                let output = format!("{}{}", String::from_utf8_lossy(&r.stdout), String::from_utf8_lossy(&r.stderr));
                if r.exit_code == 0 { Ok(output) } else { Err(output) }
            }
            Ok(Err(e)) => Err(e.message().to_string()),
            Err(_) => Err(format!("command {shown} timed out")),
        }
    } else if let Some(http) = probe.get("httpGet") {
        let host = http.get("host").and_then(Value::as_str).filter(|h| !h.is_empty()).unwrap_or(pod_ip).to_string();
        let path = http.get("path").and_then(Value::as_str).unwrap_or("/").to_string();
        let scheme = match http.get("scheme").and_then(Value::as_str) {
            Some(s) if s.eq_ignore_ascii_case("HTTPS") => Scheme::Https,
            _ => Scheme::Http,
        };
        let headers: Vec<(String, String)> = http
            .get("httpHeaders")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|h| Some((h.get("name")?.as_str()?.to_string(), h.get("value")?.as_str()?.to_string())))
            .collect();
        match port(http, container) {
            Some(p) => match tokio::time::timeout(timeout, http_get(scheme, &host, p, &path, &headers)).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "Get \"{}://{}{path}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                    scheme.as_str(),
                    join_host_port(&host, p)
                )),
            },
            None => Err("the probe's port is not a number or a named container port".into()),
        }
    } else if let Some(tcp) = probe.get("tcpSocket") {
        let host = tcp.get("host").and_then(Value::as_str).filter(|h| !h.is_empty()).unwrap_or(pod_ip).to_string();
        match port(tcp, container) {
            Some(p) => match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), p))).await {
                Ok(Ok(_)) => Ok(String::new()),
                Ok(Err(e)) => Err(format!("dial tcp {}: connect: {}", join_host_port(&host, p), os_error_text(&e))),
                Err(_) => Err(format!("dial tcp {}: i/o timeout", join_host_port(&host, p))),
            },
            None => Err("the probe's port is not a number or a named container port".into()),
        }
    } else if let Some(g) = probe.get("grpc") {
        // Only a number: the API has no named ports for gRPC probes.
        let service = g.get("service").and_then(Value::as_str).unwrap_or_default();
        match g.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()) {
            Some(p) => grpc::probe(pod_ip, service, p, timeout).await,
            None => Err("the probe's port is not a number".into()),
        }
    } else {
        Ok(String::new())
    };
    match result {
        Ok(out) => (Outcome::Success, out),
        Err(out) => (Outcome::Failure, out),
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// An I/O error as Go prints a syscall error: `connection refused`, not Rust's `Connection refused (os error 111)`.
fn os_error_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::TimedOut => "connection timed out".into(),
        _ => {
            let text = e.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text);
            let mut c = text.chars();
            c.next().map(|f| f.to_lowercase().collect::<String>() + c.as_str()).unwrap_or_default()
        }
    }
}

/// Runs a lifecycle handler (postStart/preStop): exec, httpGet, tcpSocket or sleep, within `timeout_secs`.
pub async fn run_handler(
    cri: &Cri,
    container_id: &str,
    handler: &Value,
    container: &Value,
    pod_ip: &str,
    timeout_secs: u64,
) -> bool {
    if let Some(secs) = handler.pointer("/sleep/seconds").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_secs(secs.min(timeout_secs))).await;
        return true;
    }
    let mut probe = handler.clone();
    if let Some(o) = probe.as_object_mut() {
        o.insert("timeoutSeconds".into(), serde_json::json!(timeout_secs.max(1)));
    }
    run_once(cri, container_id, &probe, container, pod_ip).await.0 == Outcome::Success
}

/// An HTTP GET with upstream's rule: 200 <= status < 400 is success; the failure as upstream's message.
/// An httpGet probe's `scheme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The TLS configuration of HTTPS probes: as upstream's prober, the server's certificate is not verified (probes
/// check that something answers, not who).
fn probe_tls() -> Result<tokio_rustls::TlsConnector, String> {
    static TLS: std::sync::OnceLock<Result<tokio_rustls::TlsConnector, String>> = std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        let cfg = client::Config { insecure_skip_tls_verify: true, ..Default::default() };
        let tls = client::rustls_config(&cfg).map_err(|e| e.to_string())?;
        Ok(tokio_rustls::TlsConnector::from(Arc::new(tls)))
    })
    .clone()
}

/// One GET over HTTP/1.0 (HTTP or HTTPS), with upstream's probe headers plus the probe's `httpHeaders`: any status
/// in [200, 400) succeeds.
async fn http_get(
    scheme: Scheme,
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> Result<String, String> {
    let url = format!("{}://{}{path}", scheme.as_str(), join_host_port(host, port));
    let tcp = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| {
        format!("Get \"{url}\": dial tcp {}: connect: {}", join_host_port(host, port), os_error_text(&e))
    })?;
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n", join_host_port(host, port));
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("User-Agent") {
        req.push_str("User-Agent: kube-probe/1.33\r\n");
    }
    if !has("Accept") {
        req.push_str("Accept: */*\r\n");
    }
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let head = match scheme {
        Scheme::Http => exchange(tcp, &req).await,
        Scheme::Https => {
            let name =
                rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| format!("Get \"{url}\": {e}"))?;
            let tls = probe_tls()?.connect(name, tcp).await.map_err(|e| format!("Get \"{url}\": {e}"))?;
            exchange(tls, &req).await
        }
    }
    .map_err(|e| format!("Get \"{url}\": {e}"))?;
    match head.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok()) {
        Some(code) if (200..400).contains(&code) => Ok(String::new()),
        Some(code) => Err(format!("HTTP probe failed with statuscode: {code}")),
        None => Err(format!("Get \"{url}\": malformed HTTP response")),
    }
}

/// Sends a request and reads the start of the answer (enough for its status line).
async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    req: &str,
) -> std::io::Result<String> {
    s.write_all(req.as_bytes()).await?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    // A TLS record or a slow server may hand the status line over in pieces.
    while n < buf.len() {
        let got = s.read(&mut buf[n..]).await?;
        if got == 0 || buf[..n + got].windows(2).any(|w| w == b"\r\n") {
            n += got;
            break;
        }
        n += got;
    }
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Tracks consecutive results against the thresholds.
#[derive(Debug, Default)]
pub struct Counter {
    successes: u64,
    failures: u64,
}

impl Counter {
    /// Records a result; returns Some(new verdict) when a threshold is crossed.
    pub fn record(&mut self, outcome: Outcome, probe: &Value) -> Option<bool> {
        match outcome {
            Outcome::Success => {
                self.failures = 0;
                self.successes += 1;
                (self.successes == secs(probe, "successThreshold", 1).max(1)).then_some(true)
            }
            Outcome::Failure => {
                self.successes = 0;
                self.failures += 1;
                (self.failures == secs(probe, "failureThreshold", 3).max(1)).then_some(false)
            }
        }
    }
}

/// The kinds of probe, in upstream's names (`Liveness`, `Readiness`, `Startup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    /// Upstream's probe type name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }

    pub fn field(self) -> &'static str {
        match self {
            Kind::Startup => "startupProbe",
            Kind::Liveness => "livenessProbe",
            Kind::Readiness => "readinessProbe",
        }
    }
}

/// What a container's probers need to know about it.
#[derive(Debug, Clone)]
pub struct Target {
    pub pod_uid: String,
    pub container_id: String,
    /// The container's spec (probes, named ports).
    pub spec: Value,
    pub pod_ip: String,
    /// The pod's termination grace period, for a container killed by a failed liveness or startup probe.
    pub grace: i64,
    /// When the container started (CRI nanoseconds): initialDelaySeconds counts from there, as upstream.
    pub started_at: i64,
    /// The pod (for its events) and where they go.
    pub pod: Arc<Value>,
    pub events: crate::events::Events,
}

/// One running container's probe state.
struct Entry {
    pod_uid: String,
    health: Health,
    /// Dropped with the entry: every probe task of the container sees its receiver end and returns.
    _stop: tokio::sync::watch::Sender<()>,
}

/// The probers of a node's running containers: one task per probe a running container declares (upstream's probe
/// workers), ended when the container stops running or its pod goes away (the entry is removed, which drops the
/// stop channel). Tasks sleep on their period between probes; [`Probers::live`] counts them for `/metrics`.
#[derive(Default)]
pub struct Probers {
    containers: Mutex<HashMap<String, Entry>>,
    live: Arc<AtomicUsize>,
}

/// Counts a probe task as live for as long as it exists.
struct LiveGuard(Arc<AtomicUsize>);

impl LiveGuard {
    fn new(live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        LiveGuard(live.clone())
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Probers {
    /// How many probe tasks run now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// The probe verdicts of a container; one without probers (not running, or none started yet) counts as
    /// started and ready, as upstream's status for a container without probes.
    pub fn health(&self, container_id: &str) -> Health {
        self.containers
            .lock()
            .ok()
            .and_then(|m| m.get(container_id).map(|e| e.health))
            .unwrap_or(Health { started: true, ready: true })
    }

    /// Whether this container has probers.
    pub fn has(&self, container_id: &str) -> bool {
        self.containers.lock().is_ok_and(|m| m.contains_key(container_id))
    }

    /// Ends the probers of a pod's containers that are not in `running` (all of them for an empty list).
    pub fn retain(&self, pod_uid: &str, running: &[&str]) {
        if let Ok(mut m) = self.containers.lock() {
            m.retain(|id, e| e.pod_uid != pod_uid || running.contains(&id.as_str()));
        }
    }

    /// Ends every prober of a pod (upstream's RemovePod).
    pub fn remove_pod(&self, pod_uid: &str) {
        self.retain(pod_uid, &[]);
    }

    /// Changes a container's health; true when it changed.
    fn update(&self, container_id: &str, f: impl FnOnce(&mut Health)) -> bool {
        let Ok(mut m) = self.containers.lock() else { return false };
        let Some(e) = m.get_mut(container_id) else { return false };
        let before = e.health;
        f(&mut e.health);
        before != e.health
    }

    /// Starts the probers of a running container unless it has them; `changed` is told when its health changes.
    pub fn start(self: &Arc<Self>, cri: &Cri, target: Target, changed: Option<Arc<tokio::sync::Notify>>) {
        let kinds: Vec<Kind> = [Kind::Startup, Kind::Liveness, Kind::Readiness]
            .into_iter()
            .filter(|k| target.spec.get(k.field()).is_some_and(|p| p.is_object()))
            .collect();
        let (tx, rx) = tokio::sync::watch::channel(());
        {
            let Ok(mut m) = self.containers.lock() else { return };
            if m.contains_key(&target.container_id) {
                return;
            }
            let health = Health { started: !kinds.contains(&Kind::Startup), ready: !kinds.contains(&Kind::Readiness) };
            m.insert(target.container_id.clone(), Entry { pod_uid: target.pod_uid.clone(), health, _stop: tx });
        }
        for kind in kinds {
            let worker = Worker {
                kind,
                probers: self.clone(),
                cri: cri.clone(),
                target: target.clone(),
                changed: changed.clone(),
                _live: LiveGuard::new(&self.live),
            };
            tokio::spawn(worker.run(rx.clone()));
        }
    }
}

/// One probe of one container.
struct Worker {
    kind: Kind,
    probers: Arc<Probers>,
    cri: Cri,
    target: Target,
    changed: Option<Arc<tokio::sync::Notify>>,
    _live: LiveGuard,
}

impl Worker {
    /// Probes every `periodSeconds` (at least 1 s) after `initialDelaySeconds`, until the stop channel closes.
    async fn run(self, mut stop: tokio::sync::watch::Receiver<()>) {
        let Some(probe) = self.target.spec.get(self.kind.field()).cloned() else { return };
        let id = self.target.container_id.clone();
        // initialDelaySeconds counts from the container's start.
        let since_start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|now| now.checked_sub(Duration::from_nanos(self.target.started_at.max(0) as u64)))
            .unwrap_or_default();
        let delay = Duration::from_secs(secs(&probe, "initialDelaySeconds", 0)).saturating_sub(since_start);
        let period = Duration::from_secs(secs(&probe, "periodSeconds", 10).max(1));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + delay, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut counter = Counter::default();
        loop {
            // The sender is never used: any wake of `changed` is the entry going away.
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.changed() => return,
            }
            let started = self.probers.health(&id).started;
            match self.kind {
                // Until the startup probe succeeds, the others wait; once it has, it is done.
                Kind::Startup if started => return,
                Kind::Liveness | Kind::Readiness if !started => continue,
                _ => {}
            }
            let (outcome, output) = tokio::select! {
                o = run_once(&self.cri, &id, &probe, &self.target.spec, &self.target.pod_ip) => o,
                _ = stop.changed() => return,
            };
            let container = self.target.spec.get("name").and_then(Value::as_str).unwrap_or_default();
            if outcome == Outcome::Failure {
                let message = format!("{} probe failed: {output}", self.kind.name());
                self.target.events.container(&self.target.pod, container, crate::events::Warning, "Unhealthy", message);
            }
            let Some(verdict) = counter.record(outcome, &probe) else { continue };
            let changed = match self.kind {
                Kind::Readiness => self.probers.update(&id, |h| h.ready = verdict),
                Kind::Startup if verdict => self.probers.update(&id, |h| h.started = true),
                _ => false,
            };
            if changed && let Some(n) = &self.changed {
                n.notify_one();
            }
            if !verdict && matches!(self.kind, Kind::Liveness | Kind::Startup) {
                tracing::info!(container = %id, probe = ?self.kind, "probe failed; killing the container so it restarts");
                let message = format!(
                    "Container {container} failed {} probe, will be restarted",
                    self.kind.name().to_lowercase()
                );
                self.target.events.container(&self.target.pod, container, crate::events::Normal, "Killing", message);
                let mut rt = self.cri.runtime.clone();
                let req = StopContainerRequest { container_id: id.clone(), timeout: self.target.grace };
                let _ = rt.stop_container(req).await;
                if let Some(n) = &self.changed {
                    n.notify_one();
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thresholds() {
        let p = json!({"successThreshold": 2, "failureThreshold": 2});
        let mut c = Counter::default();
        assert_eq!(c.record(Outcome::Success, &p), None);
        assert_eq!(c.record(Outcome::Success, &p), Some(true));
        assert_eq!(c.record(Outcome::Failure, &p), None);
        assert_eq!(c.record(Outcome::Failure, &p), Some(false));
    }

    #[test]
    fn named_ports() {
        let c = json!({"ports": [{"name": "http", "containerPort": 8080}]});
        assert_eq!(port(&json!({"port": "http"}), &c), Some(8080));
        assert_eq!(port(&json!({"port": 81}), &c), Some(81));
        assert_eq!(port(&json!({"port": "nope"}), &c), None);
    }

    /// CPU time (user + system, in clock ticks) the calling thread has used.
    fn thread_cpu_ticks() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    fn exec_calls(fake: &proto::fake::FakeCri) -> u64 {
        fake.calls.lock().unwrap().get("ExecSync").copied().unwrap_or(0)
    }

    fn target(id: &str, spec: Value) -> Target {
        Target {
            pod_uid: "pod-1".into(),
            container_id: id.into(),
            spec,
            pod_ip: "127.0.0.1".into(),
            grace: 1,
            started_at: 0,
            pod: Arc::new(json!({"metadata": {"name": "p", "namespace": "default", "uid": "pod-1"}})),
            events: crate::events::Events::disabled(),
        }
    }

    /// Probe workers sleep their period between probes (the idle kubelet stays idle), and end when their
    /// container's probers are removed. Everything runs on this thread, so its CPU time is theirs.
    #[test]
    fn probe_workers_sleep_between_probes_and_end_with_their_container() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let fake = proto::fake::FakeCri::default();
            let cri = Cri::local(fake.clone());
            let probers = Arc::new(Probers::default());
            let notify = Arc::new(tokio::sync::Notify::new());
            // Only a readiness probe: the kinds it lacks must not make the worker spin.
            let spec = json!({"name": "c", "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}});
            probers.start(&cri, target("c1", spec.clone()), Some(notify.clone()));
            probers.start(&cri, target("c1", spec), Some(notify.clone()));
            assert_eq!(probers.live(), 1, "one worker per probe, started once");
            assert!(!probers.health("c1").ready, "not ready before the first probe");
            tokio::time::timeout(Duration::from_secs(2), notify.notified()).await.expect("readiness reported");
            assert!(probers.health("c1").ready);
            let before = thread_cpu_ticks();
            tokio::time::sleep(Duration::from_millis(2500)).await;
            let used = thread_cpu_ticks() - before;
            assert!(used < 25, "probe workers used {used} ticks of CPU in 2.5 s");
            let calls = exec_calls(&fake);
            assert!((2..=5).contains(&calls), "one probe per period: {calls} in ~2.5 s");

            // The container stops running: its worker ends and probes no more.
            probers.retain("pod-1", &[]);
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(probers.live(), 0);
            let calls = exec_calls(&fake);
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert_eq!(exec_calls(&fake), calls, "no probes after the end");
        });
    }

    /// Startup gates the other probes and its worker ends once it succeeds; removing a pod ends all its workers.
    #[test]
    fn startup_probe_gates_the_others_and_pods_take_their_workers_along() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let cri = Cri::local(proto::fake::FakeCri::default());
            let probers = Arc::new(Probers::default());
            let probe = json!({"exec": {"command": ["true"]}, "periodSeconds": 1});
            let spec = json!({"name": "c", "startupProbe": probe, "livenessProbe": probe, "readinessProbe": probe});
            probers.start(&cri, target("c1", spec.clone()), None);
            let mut other = target("c2", json!({"name": "d", "livenessProbe": probe}));
            other.pod_uid = "pod-2".into();
            probers.start(&cri, other, None);
            assert_eq!(probers.live(), 4);
            assert_eq!(probers.health("c1"), Health { started: false, ready: false });
            tokio::time::sleep(Duration::from_millis(2300)).await;
            assert_eq!(probers.health("c1"), Health { started: true, ready: true });
            assert_eq!(probers.live(), 3, "the startup worker is done once the container started");
            probers.remove_pod("pod-1");
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(probers.live(), 1, "the other pod's prober stays");
            assert_eq!(probers.health("c1"), Health { started: true, ready: true }, "no probers: nothing to report");
            probers.remove_pod("pod-2");
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(probers.live(), 0);
        });
    }

    #[tokio::test]
    async fn http_and_tcp_probes_against_a_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let code = if req.starts_with("GET /healthy ") { "200 OK" } else { "500 Internal Server Error" };
                let _ = s.write_all(format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
            }
        });
        let get = |path: &'static str, port: u16| http_get(Scheme::Http, "127.0.0.1", port, path, &[]);
        assert!(get("/healthy", port).await.is_ok());
        assert_eq!(get("/broken", port).await, Err("HTTP probe failed with statuscode: 500".into()));
        assert_eq!(
            get("/", 1).await,
            Err("Get \"http://127.0.0.1:1/\": dial tcp 127.0.0.1:1: connect: connection refused".into())
        );
        let tcp = json!({"tcpSocket": {"port": 1}});
        let cri = Cri::local(proto::fake::FakeCri::default());
        assert_eq!(
            run_once(&cri, "c", &tcp, &json!({}), "127.0.0.1").await,
            (Outcome::Failure, "dial tcp 127.0.0.1:1: connect: connection refused".into())
        );
    }

    /// A `grpc` probe calls the health service on the pod's IP: SERVING succeeds, NOT_SERVING fails.
    #[tokio::test]
    async fn grpc_probes_call_the_health_service_on_the_pod_ip() {
        use tonic_health::ServingStatus;
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter.set_service_status("ready", ServingStatus::Serving).await;
        reporter.set_service_status("down", ServingStatus::NotServing).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming));
        let cri = Cri::local(proto::fake::FakeCri::default());
        let probe = |service: &str| json!({"grpc": {"port": port, "service": service}, "timeoutSeconds": 2});
        assert_eq!(
            run_once(&cri, "c", &probe("ready"), &json!({}), "127.0.0.1").await,
            (Outcome::Success, "service healthy".into())
        );
        assert_eq!(
            run_once(&cri, "c", &probe("down"), &json!({}), "127.0.0.1").await,
            (Outcome::Failure, "service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        let no_service = json!({"grpc": {"port": port}});
        assert_eq!(run_once(&cri, "c", &no_service, &json!({}), "127.0.0.1").await.0, Outcome::Success);
        drop(reporter);
    }

    /// kubeadm's control-plane probes: `scheme: HTTPS` against a self-signed server (not verified, as upstream),
    /// with the probe's `httpHeaders` sent.
    #[tokio::test]
    async fn https_probes_skip_verification_and_send_headers() {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(mut s) = acceptor.accept(tcp).await else { continue };
                let mut buf = [0u8; 512];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let ok = req.starts_with("GET /livez ") && req.contains("\r\nX-Probe: yes\r\n");
                let code = if ok { "200 OK" } else { "403 Forbidden" };
                let _ = s.write_all(format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        let cri = Cri::local(proto::fake::FakeCri::default());
        let probe = |path: &str, headers: Value| json!({"httpGet": {"host": "127.0.0.1", "port": port, "path": path, "scheme": "HTTPS", "httpHeaders": headers}});
        let header = json!([{"name": "X-Probe", "value": "yes"}]);
        assert_eq!(
            run_once(&cri, "c", &probe("/livez", header.clone()), &json!({}), "10.0.0.1").await.0,
            Outcome::Success
        );
        assert_eq!(
            run_once(&cri, "c", &probe("/livez", json!([])), &json!({}), "10.0.0.1").await,
            (Outcome::Failure, "HTTP probe failed with statuscode: 403".into())
        );
        // Plain HTTP to a TLS port fails, as upstream's would.
        let plain = json!({"httpGet": {"host": "127.0.0.1", "port": port, "path": "/livez", "httpHeaders": header}});
        assert_eq!(run_once(&cri, "c", &plain, &json!({}), "10.0.0.1").await.0, Outcome::Failure);
    }
}
