//! Measurements of the node and its pods: the Summary API (`/stats/summary`, the shape upstream's kubelet serves to
//! metrics-server), and the node's pressure conditions (MemoryPressure, DiskPressure, PIDPressure) from the
//! `evictionHard` thresholds, as upstream's eviction manager reports them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use proto::cri::{ListContainerStatsRequest, ListContainersRequest};
use serde_json::{Value, json};

use crate::options::Config;
use crate::pods::{LABEL_CONTAINER_NAME, LABEL_POD_UID, PodManager};

/// One look at the machine.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub memory_total: u64,
    pub memory_available: u64,
    pub memory_free: u64,
    pub inactive_file: u64,
    pub anon: u64,
    /// CPU time spent by all cores since boot, in nanoseconds.
    pub cpu_ns: u64,
    pub fs: Fs,
    pub pid_max: u64,
    pub processes: u64,
}

/// A filesystem's size and use (the one holding the kubelet's root directory).
#[derive(Debug, Clone, Default)]
pub struct Fs {
    pub capacity: u64,
    pub available: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

fn meminfo() -> HashMap<String, u64> {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let kb: u64 = v.split_whitespace().next()?.parse().ok()?;
            Some((k.to_string(), kb * 1024))
        })
        .collect()
}

/// Busy CPU time from the first line of /proc/stat (user, nice, system, irq, softirq, steal; USER_HZ is 100).
fn cpu_ns(stat: &str) -> u64 {
    let fields: Vec<u64> =
        stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    [0usize, 1, 2, 5, 6, 7].iter().filter_map(|i| fields.get(*i)).sum::<u64>() * 10_000_000
}

pub fn fs(path: &Path) -> Fs {
    match rustix::fs::statvfs(path) {
        Ok(s) => Fs {
            capacity: s.f_blocks * s.f_frsize,
            available: s.f_bavail * s.f_frsize,
            inodes: s.f_files,
            inodes_free: s.f_favail,
        },
        Err(_) => Fs::default(),
    }
}

/// Measures memory, CPU, the root directory's filesystem and process IDs.
pub fn measure(root: &Path) -> Machine {
    let m = meminfo();
    let get = |k: &str| m.get(k).copied().unwrap_or(0);
    let processes = std::fs::read_dir("/proc")
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit())).count())
        .unwrap_or(0) as u64;
    let dir = if root.exists() { root } else { Path::new("/") };
    Machine {
        memory_total: get("MemTotal"),
        memory_available: get("MemAvailable"),
        memory_free: get("MemFree"),
        inactive_file: get("Inactive(file)"),
        anon: get("AnonPages"),
        cpu_ns: cpu_ns(&std::fs::read_to_string("/proc/stat").unwrap_or_default()),
        fs: fs(dir),
        pid_max: std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(32768),
        processes,
    }
}

/// An eviction threshold: a quantity, or a percentage of the capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Bytes(u64),
    Percent(f64),
}

impl Threshold {
    fn parse(s: &str) -> Option<Self> {
        if let Some(p) = s.strip_suffix('%') {
            return p.trim().parse().ok().map(Threshold::Percent);
        }
        crate::node::bytes(s).map(|b| Threshold::Bytes(b.max(0) as u64))
    }

    /// Whether `available` out of `capacity` is below the threshold.
    fn crossed(&self, available: u64, capacity: u64) -> bool {
        match *self {
            Threshold::Bytes(b) => available < b,
            Threshold::Percent(p) => capacity > 0 && (available as f64) < capacity as f64 * p / 100.0,
        }
    }
}

/// The hard eviction thresholds in force: upstream's defaults (`memory.available<100Mi`, `nodefs.available<10%`,
/// `nodefs.inodesFree<5%`), each replaced by `evictionHard` when set there.
#[derive(Debug, Clone)]
pub struct Thresholds {
    pub memory_available: Threshold,
    pub nodefs_available: Threshold,
    pub nodefs_inodes_free: Threshold,
    pub pid_available: Option<Threshold>,
}

impl Thresholds {
    pub fn new(eviction_hard: &BTreeMap<String, String>) -> Self {
        let get = |k: &str, d: Threshold| eviction_hard.get(k).and_then(|v| Threshold::parse(v)).unwrap_or(d);
        Thresholds {
            memory_available: get("memory.available", Threshold::Bytes(100 << 20)),
            nodefs_available: get("nodefs.available", Threshold::Percent(10.0)),
            nodefs_inodes_free: get("nodefs.inodesFree", Threshold::Percent(5.0)),
            pid_available: eviction_hard.get("pid.available").and_then(|v| Threshold::parse(v)),
        }
    }
}

/// Which pressures the node is under.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

pub fn pressure(m: &Machine, t: &Thresholds) -> Pressure {
    Pressure {
        memory: t.memory_available.crossed(m.memory_available, m.memory_total),
        disk: t.nodefs_available.crossed(m.fs.available, m.fs.capacity)
            || t.nodefs_inodes_free.crossed(m.fs.inodes_free, m.fs.inodes),
        pid: t.pid_available.is_some_and(|p| p.crossed(m.pid_max.saturating_sub(m.processes), m.pid_max)),
    }
}

fn value(v: &Option<proto::cri::UInt64Value>) -> Option<u64> {
    v.as_ref().map(|v| v.value)
}

fn rfc3339(nanos: i64) -> String {
    jiff::Timestamp::from_nanosecond(nanos as i128)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| crate::node::now_rfc3339())
}

fn fs_json(f: &Fs, now: &str) -> Value {
    json!({
        "time": now,
        "availableBytes": f.available,
        "capacityBytes": f.capacity,
        "usedBytes": f.capacity.saturating_sub(f.available),
        "inodesFree": f.inodes_free,
        "inodes": f.inodes,
        "inodesUsed": f.inodes.saturating_sub(f.inodes_free),
    })
}

fn now_nanos() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

/// CPU use at a moment (upstream's `statsapi.CPUStats`); times in nanoseconds since the epoch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuStats {
    pub time: i64,
    pub usage_core_nano_seconds: Option<u64>,
    pub usage_nano_cores: Option<u64>,
}

/// Memory use at a moment (upstream's `statsapi.MemoryStats`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryStats {
    pub time: i64,
    pub available_bytes: Option<u64>,
    pub usage_bytes: Option<u64>,
    pub working_set_bytes: Option<u64>,
    pub rss_bytes: Option<u64>,
    pub page_faults: Option<u64>,
    pub major_page_faults: Option<u64>,
}

/// The writable layer of a container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RootFs {
    pub time: i64,
    pub used_bytes: u64,
    pub inodes_used: Option<u64>,
}

/// One container (upstream's `statsapi.ContainerStats`); `start_time` is when the runtime created it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerStats {
    pub name: String,
    pub start_time: i64,
    pub cpu: Option<CpuStats>,
    pub memory: Option<MemoryStats>,
    pub rootfs: Option<RootFs>,
}

/// One pod (upstream's `statsapi.PodStats`): its containers and their totals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodStats {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// `status.startTime` (else the creation time) as the API wrote it.
    pub start_time: Option<Value>,
    pub cpu: Option<CpuStats>,
    pub memory: Option<MemoryStats>,
    pub ephemeral_used_bytes: u64,
    pub containers: Vec<ContainerStats>,
}

/// The CPU and memory part of the Summary API (upstream's `GetCPUAndMemoryStats`), which `/metrics/resource`
/// renders; `/stats/summary` adds the filesystems and process counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub node_cpu: Option<CpuStats>,
    pub node_memory: Option<MemoryStats>,
    pub pods: Vec<PodStats>,
}

fn container_stats(name: &str, s: &proto::cri::ContainerStats, start_time: i64) -> ContainerStats {
    ContainerStats {
        name: name.to_string(),
        start_time,
        cpu: s.cpu.as_ref().map(|c| CpuStats {
            time: c.timestamp,
            usage_core_nano_seconds: value(&c.usage_core_nano_seconds),
            usage_nano_cores: value(&c.usage_nano_cores),
        }),
        memory: s.memory.as_ref().map(|m| MemoryStats {
            time: m.timestamp,
            available_bytes: None,
            usage_bytes: value(&m.usage_bytes),
            working_set_bytes: value(&m.working_set_bytes),
            rss_bytes: value(&m.rss_bytes),
            page_faults: value(&m.page_faults),
            major_page_faults: value(&m.major_page_faults),
        }),
        rootfs: s.writable_layer.as_ref().map(|w| RootFs {
            time: w.timestamp,
            used_bytes: value(&w.used_bytes).unwrap_or(0),
            inodes_used: value(&w.inodes_used),
        }),
    }
}

fn opt(map: &mut serde_json::Map<String, Value>, key: &str, v: Option<u64>) {
    if let Some(v) = v {
        map.insert(key.to_string(), json!(v));
    }
}

impl CpuStats {
    fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("time".into(), json!(rfc3339(self.time)));
        opt(&mut m, "usageNanoCores", self.usage_nano_cores);
        opt(&mut m, "usageCoreNanoSeconds", self.usage_core_nano_seconds);
        Value::Object(m)
    }
}

impl MemoryStats {
    fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("time".into(), json!(rfc3339(self.time)));
        opt(&mut m, "availableBytes", self.available_bytes);
        opt(&mut m, "usageBytes", self.usage_bytes);
        opt(&mut m, "workingSetBytes", self.working_set_bytes);
        opt(&mut m, "rssBytes", self.rss_bytes);
        opt(&mut m, "pageFaults", self.page_faults);
        opt(&mut m, "majorPageFaults", self.major_page_faults);
        Value::Object(m)
    }
}

impl ContainerStats {
    fn to_json(&self) -> Value {
        let mut c = json!({"name": self.name, "startTime": rfc3339(self.start_time)});
        if let Some(cpu) = &self.cpu {
            c["cpu"] = cpu.to_json();
        }
        if let Some(mem) = &self.memory {
            c["memory"] = mem.to_json();
        }
        if let Some(w) = &self.rootfs {
            c["rootfs"] = json!({"time": rfc3339(w.time), "usedBytes": w.used_bytes});
            if let Some(i) = w.inodes_used {
                c["rootfs"]["inodesUsed"] = json!(i);
            }
        }
        c
    }
}

/// The node's previous CPU sample, for usageNanoCores.
#[derive(Default)]
pub struct CpuSampler(Mutex<Option<(std::time::Instant, u64)>>);

impl CpuSampler {
    /// Nanocores used since the previous call (None the first time).
    fn rate(&self, cpu_ns: u64) -> Option<u64> {
        let now = std::time::Instant::now();
        let mut prev = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let rate = prev.and_then(|(t, c)| {
            let secs = now.duration_since(t).as_secs_f64();
            (secs > 0.0).then(|| (cpu_ns.saturating_sub(c) as f64 / secs) as u64)
        });
        *prev = Some((now, cpu_ns));
        rate
    }
}

/// The node's CPU and memory from `m`, and each pod's containers as the runtime measures them (CPU, memory,
/// writable layer; start time from the runtime's container records), with pod totals.
pub async fn cpu_and_memory(m: &Machine, manager: &PodManager, sampler: &CpuSampler) -> Summary {
    let now = now_nanos();
    let usage = m.memory_total.saturating_sub(m.memory_free);
    let node_cpu =
        CpuStats { time: now, usage_core_nano_seconds: Some(m.cpu_ns), usage_nano_cores: sampler.rate(m.cpu_ns) };
    let node_memory = MemoryStats {
        time: now,
        available_bytes: Some(m.memory_available),
        usage_bytes: Some(usage),
        working_set_bytes: Some(usage.saturating_sub(m.inactive_file)),
        rss_bytes: Some(m.anon),
        ..Default::default()
    };
    let mut rt = manager.cri.runtime.clone();
    let stats = rt
        .list_container_stats(ListContainerStatsRequest::default())
        .await
        .map(|r| r.into_inner().stats)
        .unwrap_or_default();
    // The runtime's creation time of each container: its start time in the Summary API, as upstream's CRI stats
    // provider reports it.
    let created: HashMap<String, i64> = rt
        .list_containers(ListContainersRequest::default())
        .await
        .map(|r| r.into_inner().containers.into_iter().map(|c| (c.id, c.created_at)).collect())
        .unwrap_or_default();
    // The newest attempt of each container, by pod UID and container name.
    let mut newest: HashMap<(String, String), &proto::cri::ContainerStats> = HashMap::new();
    for s in &stats {
        let Some(a) = &s.attributes else { continue };
        let (Some(uid), Some(name)) = (a.labels.get(LABEL_POD_UID), a.labels.get(LABEL_CONTAINER_NAME)) else {
            continue;
        };
        let attempt = |s: &proto::cri::ContainerStats| {
            s.attributes.as_ref().and_then(|a| a.metadata.as_ref()).map(|m| m.attempt).unwrap_or(0)
        };
        let key = (uid.clone(), name.clone());
        if newest.get(&key).is_none_or(|old| attempt(old) <= attempt(s)) {
            newest.insert(key, s);
        }
    }
    let mut pods = Vec::new();
    for p in manager.desired_pods() {
        let uid = p.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
        let mut containers: Vec<ContainerStats> = newest
            .iter()
            .filter(|((u, _), _)| u == uid)
            .map(|((_, name), s)| {
                let id = s.attributes.as_ref().map(|a| a.id.as_str()).unwrap_or_default();
                container_stats(name, s, created.get(id).copied().unwrap_or(now))
            })
            .collect();
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        let sum = |f: &dyn Fn(&ContainerStats) -> Option<u64>| containers.iter().filter_map(f).sum::<u64>();
        let cpu = CpuStats {
            time: now,
            usage_core_nano_seconds: Some(sum(&|c| c.cpu.as_ref()?.usage_core_nano_seconds)),
            usage_nano_cores: Some(sum(&|c| c.cpu.as_ref()?.usage_nano_cores)),
        };
        let memory = MemoryStats {
            time: now,
            working_set_bytes: Some(sum(&|c| c.memory.as_ref()?.working_set_bytes)),
            usage_bytes: Some(sum(&|c| c.memory.as_ref()?.usage_bytes)),
            rss_bytes: Some(sum(&|c| c.memory.as_ref()?.rss_bytes)),
            ..Default::default()
        };
        pods.push(PodStats {
            name: p.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string(),
            namespace: p.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_string(),
            uid: uid.to_string(),
            start_time: p.pointer("/status/startTime").or(p.pointer("/metadata/creationTimestamp")).cloned(),
            cpu: Some(cpu),
            memory: Some(memory),
            ephemeral_used_bytes: sum(&|c| Some(c.rootfs.as_ref()?.used_bytes)),
            containers,
        });
    }
    Summary { node_cpu: Some(node_cpu), node_memory: Some(node_memory), pods }
}

/// `/stats/summary`: the node (CPU, memory, filesystem, image filesystem, processes) and each pod's containers as
/// the runtime measures them (CPU, memory, writable layer), with pod totals.
pub async fn summary(cfg: &Config, manager: &PodManager, sampler: &CpuSampler) -> Value {
    let m = measure(&cfg.root_dir);
    let s = cpu_and_memory(&m, manager, sampler).await;
    let now = crate::node::now_rfc3339();
    let mut node = json!({
        "nodeName": cfg.node_name,
        "startTime": now,
        "fs": fs_json(&m.fs, &now),
        "runtime": {"imageFs": fs_json(&m.fs, &now)},
        "rlimit": {"time": now, "maxpid": m.pid_max, "curproc": m.processes},
    });
    if let Some(cpu) = &s.node_cpu {
        node["cpu"] = cpu.to_json();
    }
    if let Some(mem) = &s.node_memory {
        node["memory"] = mem.to_json();
    }
    let pods: Vec<Value> = s
        .pods
        .iter()
        .map(|p| {
            let mut pod = json!({
                "podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
                "startTime": p.start_time,
                "ephemeral-storage": {"time": now, "usedBytes": p.ephemeral_used_bytes},
                "process_stats": {},
                "containers": p.containers.iter().map(ContainerStats::to_json).collect::<Vec<_>>(),
            });
            if let Some(cpu) = &p.cpu {
                pod["cpu"] = cpu.to_json();
            }
            if let Some(mem) = &p.memory {
                pod["memory"] = mem.to_json();
            }
            pod
        })
        .collect();
    json!({"node": node, "pods": pods})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_cpu_time_from_proc_stat() {
        // user nice system idle iowait irq softirq steal
        let stat = "cpu  100 5 50 9000 30 1 2 3 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(cpu_ns(stat), (100 + 5 + 50 + 1 + 2 + 3) * 10_000_000);
    }

    #[test]
    fn thresholds_default_and_override_and_decide_pressure() {
        let t = Thresholds::new(&BTreeMap::new());
        assert_eq!(t.memory_available, Threshold::Bytes(100 << 20));
        assert_eq!(t.nodefs_available, Threshold::Percent(10.0));
        let fine = Machine {
            memory_total: 8 << 30,
            memory_available: 4 << 30,
            fs: Fs { capacity: 100, available: 50, inodes: 100, inodes_free: 90 },
            pid_max: 1000,
            processes: 100,
            ..Default::default()
        };
        assert_eq!(pressure(&fine, &t), Pressure::default());
        let tight = Machine { memory_available: 50 << 20, fs: Fs { available: 5, ..fine.fs.clone() }, ..fine.clone() };
        assert_eq!(pressure(&tight, &t), Pressure { memory: true, disk: true, pid: false });
        let custom = Thresholds::new(&BTreeMap::from([
            ("memory.available".to_string(), "5Gi".to_string()),
            ("nodefs.inodesFree".to_string(), "20%".to_string()),
            ("pid.available".to_string(), "95%".to_string()),
        ]));
        let inodes = Machine { fs: Fs { inodes_free: 10, ..fine.fs.clone() }, ..fine.clone() };
        assert_eq!(pressure(&inodes, &custom), Pressure { memory: true, disk: true, pid: true });
    }

    /// A pod running on the fake runtime (hollow nodes' runtime): its containers' synthetic CPU and memory, start
    /// times from the runtime's records, pod totals, and the same numbers in `/metrics/resource`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pods_on_the_fake_runtime_have_cpu_and_memory() {
        use kube_apiserver::testing::{TestApiserver, eventually};
        let server = TestApiserver::start().await;
        let pods = server.client.api("", "v1", "pods").unwrap().namespaced("default");
        let image = "docker.io/library/busybox:1.36";
        let pod = pods
            .create(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                "spec": {"nodeName": "n1", "containers": [{"name": "a", "image": image}, {"name": "b", "image": image}]}}))
            .await
            .unwrap();
        let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
        let dir = tempfile::tempdir().unwrap();
        let (manager, _fake) = crate::pods::tests::manager_on_fake(&server, dir.path());
        let before = now_nanos();
        manager.update(&uid, Some(std::sync::Arc::new(pod)));
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let (manager, uid, running) = (manager.clone(), uid.clone(), running.clone());
            tokio::spawn(async move {
                while !(manager.container_running(&uid, "a").await && manager.container_running(&uid, "b").await) {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                running.store(true, std::sync::atomic::Ordering::SeqCst);
            });
        }
        eventually(10, "containers running", || running.load(std::sync::atomic::Ordering::SeqCst)).await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let s = cpu_and_memory(&measure(dir.path()), &manager, &CpuSampler::default()).await;
        let p = s.pods.iter().find(|p| p.name == "p").expect("pod p");
        assert_eq!(p.containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        for c in &p.containers {
            assert!(c.start_time >= before && c.start_time <= now_nanos(), "{c:?}");
            assert!(c.cpu.as_ref().unwrap().usage_core_nano_seconds.unwrap() > 0, "{c:?}");
            assert!(c.memory.as_ref().unwrap().working_set_bytes.unwrap() >= 4 << 20, "{c:?}");
        }
        let working_set = |c: &ContainerStats| c.memory.as_ref().unwrap().working_set_bytes.unwrap();
        assert_eq!(
            p.memory.as_ref().unwrap().working_set_bytes,
            Some(working_set(&p.containers[0]) + working_set(&p.containers[1]))
        );
        let text = crate::resource_metrics::render(Ok(&s));
        for family in
            ["container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "container_start_time_seconds"]
        {
            assert!(text.contains(&format!("{family}{{container=\"a\",namespace=\"default\",pod=\"p\"}} ")), "{text}");
        }
        assert!(text.contains(&format!(
            "pod_memory_working_set_bytes{{namespace=\"default\",pod=\"p\"}} {} ",
            crate::resource_metrics::go_float(p.memory.as_ref().unwrap().working_set_bytes.unwrap() as f64)
        )));
        manager.update(&uid, None);
        server.stop().await;
    }

    #[test]
    fn the_machine_is_measured() {
        let m = measure(Path::new("/"));
        assert!(m.memory_total > 0 && m.memory_available > 0 && m.memory_available <= m.memory_total);
        assert!(m.cpu_ns > 0);
        assert!(m.fs.capacity > 0 && m.fs.available <= m.fs.capacity);
        assert!(m.processes > 1 && m.pid_max > m.processes);
    }
}
