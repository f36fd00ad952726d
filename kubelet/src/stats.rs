//! Measurements of the node and its pods: the Summary API (`/stats/summary`, the shape upstream's kubelet serves to
//! metrics-server), and the node's pressure conditions (MemoryPressure, DiskPressure, PIDPressure) from the
//! `evictionHard` thresholds, as upstream's eviction manager reports them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use proto::cri::{ContainerStats, ListContainerStatsRequest};
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

fn container_json(name: &str, s: &ContainerStats, now: &str) -> Value {
    let cpu = s.cpu.as_ref();
    let mem = s.memory.as_ref();
    let mut c = json!({"name": name, "startTime": now});
    if let Some(cpu) = cpu {
        c["cpu"] = json!({"time": rfc3339(cpu.timestamp)});
        if let Some(v) = value(&cpu.usage_core_nano_seconds) {
            c["cpu"]["usageCoreNanoSeconds"] = json!(v);
        }
        if let Some(v) = value(&cpu.usage_nano_cores) {
            c["cpu"]["usageNanoCores"] = json!(v);
        }
    }
    if let Some(mem) = mem {
        c["memory"] = json!({"time": rfc3339(mem.timestamp)});
        for (k, v) in [
            ("workingSetBytes", &mem.working_set_bytes),
            ("usageBytes", &mem.usage_bytes),
            ("rssBytes", &mem.rss_bytes),
            ("pageFaults", &mem.page_faults),
            ("majorPageFaults", &mem.major_page_faults),
        ] {
            if let Some(v) = value(v) {
                c["memory"][k] = json!(v);
            }
        }
    }
    if let Some(w) = &s.writable_layer {
        c["rootfs"] = json!({"time": rfc3339(w.timestamp), "usedBytes": value(&w.used_bytes).unwrap_or(0)});
        if let Some(i) = value(&w.inodes_used) {
            c["rootfs"]["inodesUsed"] = json!(i);
        }
    }
    c
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

/// `/stats/summary`: the node (CPU, memory, filesystem, image filesystem, processes) and each pod's containers as
/// the runtime measures them (CPU, memory, writable layer), with pod totals.
pub async fn summary(cfg: &Config, manager: &PodManager, sampler: &CpuSampler) -> Value {
    let now = crate::node::now_rfc3339();
    let m = measure(&cfg.root_dir);
    let mut node_cpu = json!({"time": now, "usageCoreNanoSeconds": m.cpu_ns});
    if let Some(rate) = sampler.rate(m.cpu_ns) {
        node_cpu["usageNanoCores"] = json!(rate);
    }
    let usage = m.memory_total.saturating_sub(m.memory_free);
    let node = json!({
        "nodeName": cfg.node_name,
        "startTime": now,
        "cpu": node_cpu,
        "memory": {
            "time": now,
            "availableBytes": m.memory_available,
            "usageBytes": usage,
            "workingSetBytes": usage.saturating_sub(m.inactive_file),
            "rssBytes": m.anon,
        },
        "fs": fs_json(&m.fs, &now),
        "runtime": {"imageFs": fs_json(&m.fs, &now)},
        "rlimit": {"time": now, "maxpid": m.pid_max, "curproc": m.processes},
    });
    let mut rt = manager.cri.runtime.clone();
    let stats = rt
        .list_container_stats(ListContainerStatsRequest::default())
        .await
        .map(|r| r.into_inner().stats)
        .unwrap_or_default();
    // The newest attempt of each container, by pod UID and container name.
    let mut newest: HashMap<(String, String), &ContainerStats> = HashMap::new();
    for s in &stats {
        let Some(a) = &s.attributes else { continue };
        let (Some(uid), Some(name)) = (a.labels.get(LABEL_POD_UID), a.labels.get(LABEL_CONTAINER_NAME)) else {
            continue;
        };
        let attempt = |s: &ContainerStats| {
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
        let mut containers: Vec<Value> =
            newest.iter().filter(|((u, _), _)| u == uid).map(|((_, name), s)| container_json(name, s, &now)).collect();
        containers.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let sum = |path: &str| containers.iter().filter_map(|c| c.pointer(path).and_then(Value::as_u64)).sum::<u64>();
        let pod = json!({
            "podRef": {
                "name": p.pointer("/metadata/name"),
                "namespace": p.pointer("/metadata/namespace"),
                "uid": uid,
            },
            "startTime": p.pointer("/status/startTime").or(p.pointer("/metadata/creationTimestamp")),
            "cpu": {"time": now, "usageCoreNanoSeconds": sum("/cpu/usageCoreNanoSeconds"), "usageNanoCores": sum("/cpu/usageNanoCores")},
            "memory": {"time": now, "workingSetBytes": sum("/memory/workingSetBytes"), "usageBytes": sum("/memory/usageBytes"), "rssBytes": sum("/memory/rssBytes")},
            "ephemeral-storage": {"time": now, "usedBytes": sum("/rootfs/usedBytes")},
            "process_stats": {},
            "containers": containers,
        });
        pods.push(pod);
    }
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

    #[test]
    fn the_machine_is_measured() {
        let m = measure(Path::new("/"));
        assert!(m.memory_total > 0 && m.memory_available > 0 && m.memory_available <= m.memory_total);
        assert!(m.cpu_ns > 0);
        assert!(m.fs.capacity > 0 && m.fs.available <= m.fs.capacity);
        assert!(m.processes > 1 && m.pid_max > m.processes);
    }
}
