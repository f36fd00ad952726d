//! The Node object: registration (capacity from the machine, allocatable after reservations, labels, addresses,
//! node info), the status loop (conditions every `nodeStatusUpdateFrequency`) and the Lease heartbeat in
//! `kube-node-lease` (40 s lease renewed every 10 s, as upstream).

use std::time::Duration;

use api_types::patch::PatchType;
use client::Client;
use serde_json::{Value, json};

use crate::options::Config;

pub const KUBELET_VERSION: &str = "v1.33.0";
/// upstream's nodeLeaseDurationSeconds.
pub const LEASE_DURATION_SECONDS: i64 = 40;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn now_micro() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

/// A CPU quantity in millicores (`2`, `500m`).
pub fn cpu_millis(q: &str) -> Option<i64> {
    match q.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => q.parse::<f64>().ok().map(|c| (c * 1000.0) as i64),
    }
}

/// A memory quantity in bytes (`128Mi`, `1G`, `1024`).
pub fn bytes(q: &str) -> Option<i64> {
    const UNITS: &[(&str, i64)] = &[
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, mult) in UNITS {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<f64>().ok().map(|n| (n * *mult as f64) as i64);
        }
    }
    q.parse().ok()
}

/// The machine's memory, read once (as upstream's cAdvisor machine info).
fn machine_memory() -> i64 {
    static MEMORY: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *MEMORY.get_or_init(|| {
        read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<i64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    })
}

fn os_image() -> String {
    read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The size of the filesystem holding `dir` (or its nearest existing ancestor).
fn root_filesystem_bytes(dir: &std::path::Path) -> i64 {
    dir.ancestors().find(|d| d.exists()).map(|d| crate::stats::fs(d).capacity as i64).unwrap_or(0)
}

/// Capacity and allocatable (capacity less kube-reserved, system-reserved and the hard eviction threshold).
pub fn resources(cfg: &Config) -> (Value, Value) {
    let cpus = std::thread::available_parallelism().map(|n| n.get() as i64).unwrap_or(1);
    let memory = machine_memory();
    let reserved = |name: &str, parse: fn(&str) -> Option<i64>| -> i64 {
        [&cfg.kube_reserved, &cfg.system_reserved].iter().filter_map(|m| m.get(name)).filter_map(|q| parse(q)).sum()
    };
    let eviction_memory = cfg.eviction_hard.get("memory.available").and_then(|q| bytes(q)).unwrap_or(100 << 20);
    let alloc_cpu = (cpus * 1000 - reserved("cpu", cpu_millis)).max(0);
    let alloc_mem = (memory - reserved("memory", bytes) - eviction_memory).max(0);
    // Ephemeral storage: the filesystem of the kubelet's root directory, less reservations and the hard
    // nodefs.available threshold (10% by default).
    let storage = root_filesystem_bytes(&cfg.root_dir);
    let eviction_storage = match cfg.eviction_hard.get("nodefs.available").map(String::as_str).unwrap_or("10%") {
        pct if pct.ends_with('%') => {
            pct.trim_end_matches('%').parse::<f64>().map(|p| (storage as f64 * p / 100.0) as i64).unwrap_or(0)
        }
        q => bytes(q).unwrap_or(0),
    };
    let alloc_storage = (storage - reserved("ephemeral-storage", bytes) - eviction_storage).max(0);
    let capacity = json!({"cpu": cpus.to_string(), "memory": format!("{}Ki", memory / 1024),
        "ephemeral-storage": format!("{}Ki", storage / 1024), "pods": cfg.max_pods.to_string()});
    let allocatable = json!({"cpu": format!("{alloc_cpu}m"), "memory": format!("{}Ki", alloc_mem / 1024),
        "ephemeral-storage": alloc_storage.to_string(), "pods": cfg.max_pods.to_string()});
    (capacity, allocatable)
}

/// The node's conditions; a condition keeps its lastTransitionTime from `previous` while its status stays.
pub fn conditions(ready: bool, p: crate::stats::Pressure, previous: &Value) -> Value {
    let now = now_rfc3339();
    let c = |t: &str, (status, reason, msg): (&str, &str, &str)| {
        let since = previous
            .as_array()
            .and_then(|a| a.iter().find(|c| c["type"] == t && c["status"] == status))
            .and_then(|c| c["lastTransitionTime"].as_str())
            .unwrap_or(&now)
            .to_string();
        json!({"type": t, "status": status, "reason": reason, "message": msg, "lastHeartbeatTime": now, "lastTransitionTime": since})
    };
    json!([
        c(
            "MemoryPressure",
            if p.memory {
                ("True", "KubeletHasInsufficientMemory", "kubelet has insufficient memory available")
            } else {
                ("False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available")
            }
        ),
        c(
            "DiskPressure",
            if p.disk {
                ("True", "KubeletHasDiskPressure", "kubelet has disk pressure")
            } else {
                ("False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure")
            }
        ),
        c(
            "PIDPressure",
            if p.pid {
                ("True", "KubeletHasInsufficientPID", "kubelet has insufficient PID available")
            } else {
                ("False", "KubeletHasSufficientPID", "kubelet has sufficient PID available")
            }
        ),
        c(
            "Ready",
            if ready {
                ("True", "KubeletReady", "kubelet is posting ready status")
            } else {
                ("False", "KubeletNotReady", "container runtime is not ready")
            }
        ),
    ])
}

/// The pressures measured now (hollow nodes, which serve no API, measure nothing: they share one machine).
fn current_pressure(cfg: &Config, thresholds: &crate::stats::Thresholds) -> crate::stats::Pressure {
    if !cfg.serve_api {
        return crate::stats::Pressure::default();
    }
    crate::stats::pressure(&crate::stats::measure(&cfg.root_dir), thresholds)
}

/// The Node this kubelet registers.
pub fn node_object(cfg: &Config, runtime_version: &str) -> Value {
    let mut labels = json!({
        "kubernetes.io/hostname": cfg.node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch(),
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": arch(),
    });
    for (k, v) in &cfg.node_labels {
        labels[k] = json!(v);
    }
    let (capacity, allocatable) = resources(cfg);
    let mut spec = json!({});
    if !cfg.taints.is_empty() {
        spec["taints"] = json!(cfg.taints);
    }
    if let Some(cidr) = &cfg.pod_cidr {
        spec["podCIDR"] = json!(cidr);
        spec["podCIDRs"] = json!([cidr]);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": cfg.node_name, "labels": labels, "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": spec,
        "status": {
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": conditions(true, current_pressure(cfg, &crate::stats::Thresholds::new(&cfg.eviction_hard)), &Value::Null),
            "addresses": [{"type": "InternalIP", "address": cfg.node_ip}, {"type": "Hostname", "address": cfg.node_name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": cfg.port}},
            "nodeInfo": {
                "machineID": Some(read("/etc/machine-id")).filter(|id| !id.is_empty()).unwrap_or_else(|| read("/var/lib/dbus/machine-id")),
                "systemUUID": read("/sys/class/dmi/id/product_uuid"),
                "bootID": read("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": read("/proc/sys/kernel/osrelease"),
                "osImage": os_image(),
                "containerRuntimeVersion": runtime_version,
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": arch(),
            },
        },
    })
}

/// The runtime's features in the Node's `status.features` (upstream's NodeFeatures, from CRI `Status`): absent
/// when the runtime reports none.
pub fn set_features(node: &mut Value, features: Option<&proto::cri::RuntimeFeatures>) {
    if let Some(f) = features {
        node["status"]["features"] = json!({"supplementalGroupsPolicy": f.supplemental_groups_policy});
    }
}

/// Registers the node (an existing one keeps its spec; labels and status are brought up to date).
pub async fn register(
    client: &Client,
    cfg: &Config,
    runtime_version: &str,
    features: Option<&proto::cri::RuntimeFeatures>,
) -> Result<(), client::Error> {
    let nodes = client.api("", "v1", "nodes")?;
    let mut node = node_object(cfg, runtime_version);
    set_features(&mut node, features);
    match nodes.create(&node).await {
        Ok(_) => tracing::info!(node = %cfg.node_name, "registered node"),
        Err(e) if e.code() == Some(409) => {
            nodes
                .patch(&cfg.node_name, PatchType::Merge, &json!({"metadata": {"labels": node["metadata"]["labels"]}}))
                .await?;
            nodes.patch_status(&cfg.node_name, PatchType::StrategicMerge, &json!({"status": node["status"]})).await?;
            tracing::info!(node = %cfg.node_name, "node already registered; status updated");
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// The conditions as they matter for reporting: without the heartbeat times.
fn without_heartbeats(conditions: &Value) -> Value {
    let mut c = conditions.clone();
    for cond in c.as_array_mut().into_iter().flatten() {
        if let Some(o) = cond.as_object_mut() {
            o.remove("lastHeartbeatTime");
        }
    }
    c
}

/// Whether the status computed now is posted: when it changed (heartbeat times aside) or when
/// `nodeStatusReportFrequency` has passed since the last post (upstream's kubelet with node leases).
pub fn should_report(last: &Value, now: &Value, since_last: Option<Duration>, report_every: Duration) -> bool {
    since_last.is_none_or(|d| d >= report_every) || without_heartbeats(last) != without_heartbeats(now)
}

/// Every `nodeStatusUpdateFrequency` computes the node's conditions and images and posts them when they changed or
/// `nodeStatusReportFrequency` has passed; renews the Lease every 10 s; until `stop`.
pub async fn heartbeat(
    client: Client,
    cfg: Config,
    cri: Option<proto::Cri>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Ok(nodes) = client.api("", "v1", "nodes") else { return };
    let Ok(leases) = client.api("coordination.k8s.io", "v1", "leases").map(|l| l.namespaced("kube-node-lease")) else {
        return;
    };
    let renew = Duration::from_secs((LEASE_DURATION_SECONDS / 4) as u64);
    let mut status_tick = tokio::time::interval(cfg.node_status_update_frequency);
    let mut lease_tick = tokio::time::interval(renew);
    let thresholds = crate::stats::Thresholds::new(&cfg.eviction_hard);
    let mut last = Value::Null;
    let mut reported: Option<tokio::time::Instant> = None;
    let mut lease: Option<Value> = None;
    let events = if cfg.record_events {
        crate::events::Events::new(&client, &cfg.node_name).unwrap_or_default()
    } else {
        crate::events::Events::disabled()
    };
    let mut computed = Value::Null;
    let mut last_images = Value::Null;
    loop {
        tokio::select! {
            _ = status_tick.tick() => {
                let images = match &cri {
                    Some(cri) => match cri.image.clone().list_images(proto::cri::ListImagesRequest::default()).await {
                        Ok(r) => images_status(&r.into_inner().images, cfg.node_status_max_images),
                        Err(e) => {
                            tracing::warn!(error = %e.message(), "listing images for the node status");
                            last_images.clone()
                        }
                    },
                    None => Value::Null,
                };
                let now = conditions(true, current_pressure(&cfg, &thresholds), &last);
                for event in condition_events(&computed, &now) {
                    events.node_status(event);
                }
                computed = now.clone();
                for c in now.as_array().into_iter().flatten() {
                    let before = last.as_array().and_then(|a| a.iter().find(|p| p["type"] == c["type"]));
                    if c["type"] != "Ready" && before.is_none_or(|b| b["status"] != c["status"]) && c["status"] == "True" {
                        tracing::warn!(condition = %c["type"], message = %c["message"], "node under pressure");
                    }
                }
                if images == last_images
                    && !should_report(&last, &now, reported.map(|t| t.elapsed()), cfg.node_status_report_frequency)
                {
                    continue;
                }
                let mut patch = json!({"status": {"conditions": now.clone()}});
                if !images.is_null() {
                    patch["status"]["images"] = images.clone();
                }
                match nodes.patch_status(&cfg.node_name, PatchType::StrategicMerge, &patch).await {
                    Ok(_) => {
                        last_images = images;
                        last = now;
                        reported = Some(tokio::time::Instant::now());
                    }
                    Err(e) => tracing::warn!(error = %e, "updating node status"),
                }
            }
            _ = lease_tick.tick() => {
                match renew_lease(&leases, &cfg.node_name, lease.take()).await {
                    Ok(l) => lease = Some(l),
                    Err(e) => tracing::warn!(error = %e, "renewing the node lease"),
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Upstream's MaxNamesPerImageInNodeStatus.
const MAX_NAMES_PER_IMAGE: usize = 5;

/// `status.images` as upstream's images setter: the largest images first (ties by ID), at most `max` of them
/// (`nodeStatusMaxImages`, -1 for all), each with its digests then tags (at most 5 names) and its size.
pub fn images_status(images: &[proto::cri::Image], max: i64) -> Value {
    let mut sorted: Vec<&proto::cri::Image> = images.iter().collect();
    sorted.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| b.id.cmp(&a.id)));
    if max >= 0 {
        sorted.truncate(max as usize);
    }
    Value::Array(
        sorted
            .into_iter()
            .map(|i| {
                let names: Vec<&String> = i.repo_digests.iter().chain(&i.repo_tags).take(MAX_NAMES_PER_IMAGE).collect();
                json!({"names": names, "sizeBytes": i.size})
            })
            .collect(),
    )
}

/// The node status events (upstream's "Node <name> status is now: <event>") of the conditions that changed since
/// `before` (all of them the first time).
pub fn condition_events(before: &Value, now: &Value) -> Vec<&'static str> {
    let mut out = Vec::new();
    for c in now.as_array().into_iter().flatten() {
        let kind = c["type"].as_str().unwrap_or_default();
        let status = c["status"].as_str().unwrap_or_default();
        let previous = before.as_array().and_then(|a| a.iter().find(|p| p["type"] == kind)).map(|p| &p["status"]);
        if previous.is_some_and(|p| p == status) {
            continue;
        }
        let event = match (kind, status == "True") {
            ("MemoryPressure", false) => "NodeHasSufficientMemory",
            ("MemoryPressure", true) => "NodeHasInsufficientMemory",
            ("DiskPressure", false) => "NodeHasNoDiskPressure",
            ("DiskPressure", true) => "NodeHasDiskPressure",
            ("PIDPressure", false) => "NodeHasSufficientPID",
            ("PIDPressure", true) => "NodeHasInsufficientPID",
            ("Ready", true) => "NodeReady",
            ("Ready", false) => "NodeNotReady",
            _ => continue,
        };
        out.push(event);
    }
    out
}

/// Renews the node's Lease and returns it as written. The Lease written last time is updated in place (one
/// request, as upstream's lease controller); without one, or when that update fails, the Lease is read first.
async fn renew_lease(leases: &client::Api, node: &str, last: Option<Value>) -> Result<Value, client::Error> {
    let spec =
        json!({"holderIdentity": node, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": now_micro()});
    let renew = |mut lease: Value| {
        lease["spec"]["renewTime"] = spec["renewTime"].clone();
        lease["spec"]["holderIdentity"] = spec["holderIdentity"].clone();
        lease
    };
    if let Some(lease) = last
        && let Ok(written) = leases.replace(node, &renew(lease)).await
    {
        return Ok(written);
    }
    match leases.get(node).await {
        Ok(lease) => leases.replace(node, &renew(lease)).await,
        Err(e) if e.code() == Some(404) => {
            let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": node, "namespace": "kube-node-lease"}, "spec": spec});
            leases.create(&lease).await
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_reported_on_change_or_after_the_report_frequency() {
        let ready = |status: &str, heartbeat: &str| json!([{"type": "Ready", "status": status, "lastHeartbeatTime": heartbeat, "lastTransitionTime": "t0"}]);
        let every = Duration::from_secs(300);
        // Never posted yet.
        assert!(should_report(&Value::Null, &ready("True", "h1"), None, every));
        // Only the heartbeat moved: not posted until the report frequency has passed.
        assert!(!should_report(&ready("True", "h1"), &ready("True", "h2"), Some(Duration::from_secs(10)), every));
        assert!(should_report(&ready("True", "h1"), &ready("True", "h2"), Some(Duration::from_secs(300)), every));
        // A changed condition is posted at once.
        assert!(should_report(&ready("True", "h1"), &ready("False", "h2"), Some(Duration::from_secs(10)), every));
    }

    #[test]
    fn node_status_events_on_start_and_on_change() {
        let quiet = crate::stats::Pressure::default();
        let first = conditions(true, quiet, &Value::Null);
        assert_eq!(
            condition_events(&Value::Null, &first),
            ["NodeHasSufficientMemory", "NodeHasNoDiskPressure", "NodeHasSufficientPID", "NodeReady"]
        );
        assert!(condition_events(&first, &conditions(true, quiet, &first)).is_empty());
        let pressed = crate::stats::Pressure { memory: true, ..quiet };
        assert_eq!(condition_events(&first, &conditions(true, pressed, &first)), ["NodeHasInsufficientMemory"]);
        assert_eq!(condition_events(&first, &conditions(false, quiet, &first)), ["NodeNotReady"]);
    }

    #[test]
    fn images_largest_first_with_digests_then_tags() {
        let image = |id: &str, size: u64, tags: &[&str], digests: &[&str]| proto::cri::Image {
            id: id.into(),
            size,
            repo_tags: tags.iter().map(|t| t.to_string()).collect(),
            repo_digests: digests.iter().map(|d| d.to_string()).collect(),
            ..Default::default()
        };
        let many: Vec<String> = (0..7).map(|i| format!("r/x:{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let images = [
            image("sha256:a", 100, &["busybox:1.36"], &["busybox@sha256:aaa"]),
            image("sha256:b", 300, &["pause:3.10"], &[]),
            image("sha256:c", 100, &["c:1"], &[]),
            image("sha256:d", 200, &many, &[]),
        ];
        let status = images_status(&images, 50);
        assert_eq!(
            status,
            json!([
                {"names": ["pause:3.10"], "sizeBytes": 300},
                {"names": ["r/x:0", "r/x:1", "r/x:2", "r/x:3", "r/x:4"], "sizeBytes": 200},
                {"names": ["c:1"], "sizeBytes": 100},
                {"names": ["busybox@sha256:aaa", "busybox:1.36"], "sizeBytes": 100},
            ])
        );
        assert_eq!(images_status(&images, 2).as_array().unwrap().len(), 2);
        assert_eq!(images_status(&images, -1).as_array().unwrap().len(), 4);
    }

    #[test]
    fn quantities() {
        assert_eq!(cpu_millis("500m"), Some(500));
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(bytes("128Mi"), Some(128 << 20));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("1024"), Some(1024));
    }

    #[test]
    fn allocatable_subtracts_reservations() {
        let flags = crate::options::Flags { hostname_override: Some("n".into()), ..Default::default() };
        let mut cfg = Config::resolve(flags).unwrap();
        cfg.kube_reserved.insert("cpu".into(), "500m".into());
        cfg.system_reserved.insert("memory".into(), "1Gi".into());
        let (cap, alloc) = resources(&cfg);
        let cap_cpu = cpu_millis(cap["cpu"].as_str().unwrap()).unwrap();
        assert_eq!(cpu_millis(alloc["cpu"].as_str().unwrap()).unwrap(), cap_cpu - 500);
        let cap_mem = bytes(cap["memory"].as_str().unwrap()).unwrap();
        let alloc_mem = bytes(alloc["memory"].as_str().unwrap()).unwrap();
        assert!(cap_mem - alloc_mem >= (1 << 30) + (100 << 20) - 2048);
        assert_eq!(alloc["pods"], "110");
        // Ephemeral storage: the root directory's filesystem less the 10% hard eviction threshold.
        let cap_storage = bytes(cap["ephemeral-storage"].as_str().unwrap()).unwrap();
        let alloc_storage = bytes(alloc["ephemeral-storage"].as_str().unwrap()).unwrap();
        assert!(cap_storage > 0 && (alloc_storage - cap_storage * 9 / 10).abs() < 4096, "{cap} {alloc}");
        let mut node = node_object(&cfg, "containerd://1.6");
        assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], "n");
        assert_eq!(node["status"]["conditions"][3]["type"], "Ready");
        set_features(&mut node, None);
        assert!(node["status"].get("features").is_none(), "no features from a runtime that reports none");
        set_features(&mut node, Some(&proto::cri::RuntimeFeatures { supplemental_groups_policy: true }));
        assert_eq!(node["status"]["features"], json!({"supplementalGroupsPolicy": true}));
    }
}
