//! The metric points metrics-server keeps (upstream's `pkg/storage`): for every node and container the last two
//! scraped points, from which a usage is computed: CPU as the rate of the cumulative counter between the two
//! points, memory as the last working set, over the window between their timestamps.

mod node;
mod pod;

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::Duration;

/// Go's zero `time.Time`: before every real time (a missing start time or timestamp). Times are nanoseconds
/// since the epoch.
pub const ZERO_TIME: i64 = i64::MIN;

/// One node's or container's measurement (upstream's `MetricsPoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsPoint {
    /// When the node or container started: its cumulative CPU was zero then.
    pub start_time: i64,
    /// When it was measured.
    pub timestamp: i64,
    /// CPU time used since `start_time`, in nanocore-seconds (nanoseconds of one core).
    pub cumulative_cpu_used: u64,
    /// The working set, in bytes.
    pub memory_usage: u64,
}

impl Default for MetricsPoint {
    fn default() -> Self {
        MetricsPoint { start_time: ZERO_TIME, timestamp: ZERO_TIME, cumulative_cpu_used: 0, memory_usage: 0 }
    }
}

/// A pod's containers' points, by container name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodMetricsPoint {
    pub containers: BTreeMap<String, MetricsPoint>,
}

/// A pod's namespace and name.
pub type PodRef = (String, String);

/// What one scrape brought (upstream's `MetricsBatch`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsBatch {
    pub nodes: BTreeMap<String, MetricsPoint>,
    pub pods: BTreeMap<PodRef, PodMetricsPoint>,
}

/// CPU in nanocores and memory in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub cpu_nanocores: u64,
    pub memory_bytes: u64,
}

/// When a usage was measured (the last point's timestamp; for a pod, its earliest container's) and over how
/// long the CPU rate was taken, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeInfo {
    pub timestamp: i64,
    pub window: i64,
}

impl Default for TimeInfo {
    fn default() -> Self {
        TimeInfo { timestamp: ZERO_TIME, window: 0 }
    }
}

/// A node's usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeMetrics {
    pub name: String,
    pub time: TimeInfo,
    pub usage: Usage,
}

/// A container's usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMetrics {
    pub name: String,
    pub usage: Usage,
}

/// A pod's containers' usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMetrics {
    pub namespace: String,
    pub name: String,
    pub time: TimeInfo,
    pub containers: Vec<ContainerMetrics>,
}

/// The usage between two points of a node or container (upstream's `resourceUsage`).
fn resource_usage(last: &MetricsPoint, prev: &MetricsPoint) -> Result<(Usage, TimeInfo), &'static str> {
    if last.start_time < prev.start_time {
        return Err("unexpected decrease in startTime of node/container");
    }
    if last.cumulative_cpu_used < prev.cumulative_cpu_used {
        return Err("unexpected decrease in cumulative CPU usage value");
    }
    let window = last.timestamp.saturating_sub(prev.timestamp);
    let cpu = (last.cumulative_cpu_used - prev.cumulative_cpu_used) as f64 / (window as f64 / 1e9);
    Ok((
        Usage { cpu_nanocores: cpu as u64, memory_bytes: last.memory_usage },
        TimeInfo { timestamp: last.timestamp, window },
    ))
}

/// Both stores behind one lock (upstream's `storage`).
pub struct Storage {
    inner: RwLock<Inner>,
}

struct Inner {
    nodes: node::NodeStorage,
    pods: pod::PodStorage,
}

impl Storage {
    /// A storage for points scraped every `metric_resolution`.
    pub fn new(metric_resolution: Duration) -> Self {
        Storage {
            inner: RwLock::new(Inner {
                nodes: node::NodeStorage::default(),
                pods: pod::PodStorage::new(metric_resolution),
            }),
        }
    }

    /// Keeps a scrape's points: each replaces the last one, which becomes the previous one.
    pub fn store(&self, batch: &MetricsBatch) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let was = (inner.nodes.ready(), inner.pods.ready());
        inner.nodes.store(batch);
        inner.pods.store(batch);
        let now = (inner.nodes.ready(), inner.pods.ready());
        if was != now {
            match now {
                (true, true) => tracing::info!("Metric storage is ready"),
                (true, false) => tracing::info!(
                    "Metric storage is not ready, pod metrics are missing, this may indicate a container-runtime or kubelet issue"
                ),
                (false, true) => {
                    tracing::info!(
                        "Metric storage is not ready, node metrics are missing, this may indicate a kubelet issue"
                    )
                }
                (false, false) => tracing::info!("Metric storage is not ready"),
            }
        }
    }

    /// Whether both node and pod metrics can be served (upstream's readiness: `metric-storage-ready`).
    pub fn ready(&self) -> bool {
        self.node_ready() && self.pod_ready()
    }

    pub fn node_ready(&self) -> bool {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).nodes.ready()
    }

    pub fn pod_ready(&self) -> bool {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).pods.ready()
    }

    /// The usage of the named nodes that have two points.
    pub fn node_metrics<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<NodeMetrics> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).nodes.metrics(names)
    }

    /// The usage of the given pods whose containers all have two points.
    pub fn pod_metrics<'a>(&self, pods: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<PodMetrics> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).pods.metrics(pods)
    }

    /// How many nodes and containers have two points (`metrics_server_storage_points`).
    pub fn points(&self) -> (usize, usize) {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        (inner.nodes.points(), inner.pods.points())
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Upstream's storage test helpers (storage_test.go).

    use super::*;

    pub const MIB: u64 = 1024 * 1024;
    pub const CORE_SECOND: u64 = 1_000_000_000;
    pub const SECOND: i64 = 1_000_000_000;

    pub fn point(start_time: i64, timestamp: i64, cpu: u64, memory: u64) -> MetricsPoint {
        MetricsPoint { start_time, timestamp, cumulative_cpu_used: cpu, memory_usage: memory }
    }

    pub fn now() -> i64 {
        jiff::Timestamp::now().as_nanosecond() as i64
    }
}
