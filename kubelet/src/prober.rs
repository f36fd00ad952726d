//! Probes: liveness, readiness and startup, each exec (CRI ExecSync), httpGet or tcpSocket, with upstream's
//! timing fields (initialDelaySeconds, periodSeconds, timeoutSeconds, successThreshold, failureThreshold). One task
//! per running container; results wake the pod worker, a failed liveness or startup probe kills the container so
//! its restart policy applies.

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

/// Runs one probe once.
pub async fn run_once(cri: &Cri, container_id: &str, probe: &Value, container: &Value, pod_ip: &str) -> Outcome {
    let timeout = Duration::from_secs(secs(probe, "timeoutSeconds", 1).max(1));
    let ok = if let Some(exec) = probe.get("exec") {
        let cmd: Vec<String> = exec
            .get("command")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(String::from))
            .collect();
        let req = ExecSyncRequest { container_id: container_id.into(), cmd, timeout: timeout.as_secs() as i64 };
        let mut rt = cri.runtime.clone();
        matches!(tokio::time::timeout(timeout + Duration::from_secs(1), rt.exec_sync(req)).await, Ok(Ok(r)) if r.get_ref().exit_code == 0)
    } else if let Some(http) = probe.get("httpGet") {
        let host = http.get("host").and_then(Value::as_str).filter(|h| !h.is_empty()).unwrap_or(pod_ip).to_string();
        let path = http.get("path").and_then(Value::as_str).unwrap_or("/").to_string();
        match port(http, container) {
            Some(p) => tokio::time::timeout(timeout, http_get(&host, p, &path)).await.unwrap_or(false),
            None => false,
        }
    } else if let Some(tcp) = probe.get("tcpSocket") {
        let host = tcp.get("host").and_then(Value::as_str).filter(|h| !h.is_empty()).unwrap_or(pod_ip).to_string();
        match port(tcp, container) {
            Some(p) => matches!(
                tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), p))).await,
                Ok(Ok(_))
            ),
            None => false,
        }
    } else {
        true
    };
    if ok { Outcome::Success } else { Outcome::Failure }
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
    run_once(cri, container_id, &probe, container, pod_ip).await == Outcome::Success
}

/// An HTTP GET with upstream's rule: 200 <= status < 400 is success.
async fn http_get(host: &str, port: u16, path: &str) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect((host, port)).await else { return false };
    let req =
        format!("GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = vec![0u8; 64];
    let Ok(n) = s.read(&mut buf).await else { return false };
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok()).is_some_and(|c| (200..400).contains(&c))
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

/// Probes one running container until it stops running (the `running` receiver turns false) and reports health
/// changes through `report`. Kills the container when liveness or startup fails.
pub async fn run(
    cri: Cri,
    container_id: String,
    container: Value,
    pod_ip: String,
    grace: i64,
    report: impl Fn(Health) + Send + 'static,
    mut running: tokio::sync::watch::Receiver<bool>,
) {
    let startup = container.get("startupProbe").cloned();
    let liveness = container.get("livenessProbe").cloned();
    let readiness = container.get("readinessProbe").cloned();
    let mut health = Health { started: startup.is_none(), ready: readiness.is_none() };
    report(health);
    if startup.is_none() && liveness.is_none() && readiness.is_none() {
        return;
    }
    let start = tokio::time::Instant::now();
    let (mut s_count, mut l_count, mut r_count) = (Counter::default(), Counter::default(), Counter::default());
    let mut next = [start, start, start];
    let delay =
        |p: &Option<Value>| Duration::from_secs(p.as_ref().map(|p| secs(p, "initialDelaySeconds", 0)).unwrap_or(0));
    next[0] += delay(&startup);
    next[1] += delay(&liveness);
    next[2] += delay(&readiness);
    loop {
        let wake = *next.iter().min().unwrap_or(&start);
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = running.changed() => {
                if !*running.borrow() { return; }
                continue;
            }
        }
        if !*running.borrow() {
            return;
        }
        let now = tokio::time::Instant::now();
        let mut kill = false;
        for (i, probe) in [&startup, &liveness, &readiness].into_iter().enumerate() {
            let Some(p) = probe else { continue };
            if now < next[i] {
                continue;
            }
            next[i] = now + Duration::from_secs(secs(p, "periodSeconds", 10).max(1));
            // Until the startup probe succeeds, the others wait.
            if i > 0 && !health.started {
                continue;
            }
            if i == 0 && health.started {
                next[0] = now + Duration::from_secs(3600 * 24);
                continue;
            }
            let outcome = run_once(&cri, &container_id, p, &container, &pod_ip).await;
            let counter = match i {
                0 => &mut s_count,
                1 => &mut l_count,
                _ => &mut r_count,
            };
            match (i, counter.record(outcome, p)) {
                (0, Some(true)) => health.started = true,
                (0, Some(false)) | (1, Some(false)) => kill = true,
                (2, Some(v)) => health.ready = v,
                _ => {}
            }
        }
        report(health);
        if kill {
            tracing::info!(container = %container_id, "probe failed; killing the container so it restarts");
            let mut rt = cri.runtime.clone();
            let _ =
                rt.stop_container(StopContainerRequest { container_id: container_id.clone(), timeout: grace }).await;
            return;
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
        assert!(http_get("127.0.0.1", port, "/healthy").await);
        assert!(!http_get("127.0.0.1", port, "/broken").await);
        assert!(!http_get("127.0.0.1", 1, "/").await);
    }
}
