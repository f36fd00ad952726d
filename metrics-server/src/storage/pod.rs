//! Container points by pod (upstream's `pkg/storage/pod.go`): the last two per container, newer points of the
//! same container run only; a container that started less than a resolution ago (but at least 10 s) gets a first
//! point at its start time with no CPU used, so that its pod is served after one scrape.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{ContainerMetrics, MetricsBatch, PodMetrics, PodMetricsPoint, PodRef, TimeInfo, ZERO_TIME, resource_usage};

/// A fresh container's shortest time between its start and its point for the start to count as a point
/// (upstream's `freshContainerMinMetricsResolution`): shorter ones give inaccurate rates.
const FRESH_CONTAINER_MIN_METRICS_RESOLUTION: i64 = 10_000_000_000;

pub(super) struct PodStorage {
    last: BTreeMap<PodRef, PodMetricsPoint>,
    /// Older than the corresponding `last` points, of the same container run.
    prev: BTreeMap<PodRef, PodMetricsPoint>,
    /// metrics-server's scrape period, in nanoseconds.
    metric_resolution: i64,
}

impl PodStorage {
    pub(super) fn new(metric_resolution: Duration) -> Self {
        PodStorage {
            last: BTreeMap::new(),
            prev: BTreeMap::new(),
            metric_resolution: metric_resolution.as_nanos().min(i64::MAX as u128) as i64,
        }
    }

    pub(super) fn ready(&self) -> bool {
        !self.prev.is_empty()
    }

    pub(super) fn points(&self) -> usize {
        self.prev.values().map(|p| p.containers.len()).sum()
    }

    pub(super) fn metrics<'a>(&self, pods: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<PodMetrics> {
        let mut out = Vec::new();
        for (namespace, name) in pods {
            let key = (namespace.to_string(), name.to_string());
            let (Some(last), Some(prev)) = (self.last.get(&key), self.prev.get(&key)) else { continue };
            let mut containers = Vec::with_capacity(last.containers.len());
            let mut earliest = TimeInfo::default();
            let mut all_present = true;
            for (container, l) in &last.containers {
                let Some(p) = prev.containers.get(container) else {
                    all_present = false;
                    break;
                };
                match resource_usage(l, p) {
                    Ok((usage, time)) => {
                        containers.push(ContainerMetrics { name: container.clone(), usage });
                        if earliest.timestamp == ZERO_TIME || earliest.timestamp > time.timestamp {
                            earliest = time;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = e, container, pod = %format!("{namespace}/{name}"), "Skipping container usage metric")
                    }
                }
            }
            if all_present {
                out.push(PodMetrics {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    time: earliest,
                    containers,
                });
            }
        }
        out
    }

    pub(super) fn store(&mut self, batch: &MetricsBatch) {
        let mut last_pods = BTreeMap::new();
        let mut prev_pods = BTreeMap::new();
        for (pod, new_pod) in &batch.pods {
            let mut new_last = PodMetricsPoint::default();
            let mut new_prev = PodMetricsPoint::default();
            for (container, new) in &new_pod.containers {
                new_last.containers.insert(container.clone(), *new);
                let since_start = new.timestamp.saturating_sub(new.start_time);
                if new.start_time < new.timestamp
                    && since_start < self.metric_resolution
                    && since_start >= FRESH_CONTAINER_MIN_METRICS_RESOLUTION
                {
                    let mut at_start = *new;
                    at_start.timestamp = new.start_time;
                    at_start.cumulative_cpu_used = 0;
                    new_prev.containers.insert(container.clone(), at_start);
                } else if let Some(stored) = self.last.get(pod).and_then(|p| p.containers.get(container))
                    // Not restarted since the stored point.
                    && new.start_time < stored.timestamp
                {
                    if new.timestamp > stored.timestamp {
                        new_prev.containers.insert(container.clone(), *stored);
                    } else if let Some(p) = self.prev.get(pod).and_then(|p| p.containers.get(container)) {
                        if p.timestamp < new.timestamp {
                            new_prev.containers.insert(container.clone(), *p);
                        } else {
                            tracing::debug!(container, pod = ?pod, "Found new containerName metrics point is older than stored previous , drop previous");
                        }
                    }
                }
            }
            if !new_prev.containers.is_empty() {
                prev_pods.insert(pod.clone(), new_prev);
            }
            last_pods.insert(pod.clone(), new_last);
        }
        self.last = last_pods;
        self.prev = prev_pods;
    }
}

#[cfg(test)]
mod tests {
    //! Upstream's "Pod storage" specs (pod_test.go).

    use super::super::testing::*;
    use super::super::{MetricsPoint, Storage, Usage};
    use super::*;

    /// A pod's namespace and name, and its containers' points.
    type PodPoints<'a> = ((&'a str, &'a str), &'a [(&'a str, MetricsPoint)]);

    fn batch(pods: &[PodPoints<'_>]) -> MetricsBatch {
        MetricsBatch {
            pods: pods
                .iter()
                .map(|((ns, name), cs)| {
                    let containers = cs.iter().map(|(c, p)| (c.to_string(), *p)).collect();
                    ((ns.to_string(), name.to_string()), PodMetricsPoint { containers })
                })
                .collect(),
            ..Default::default()
        }
    }

    const POD: (&str, &str) = ("ns1", "pod1");

    fn storage() -> Storage {
        Storage::new(Duration::from_secs(60))
    }

    fn get(s: &Storage) -> Vec<PodMetrics> {
        s.pod_metrics([POD])
    }

    fn one(cpu: u64, memory: u64) -> Vec<ContainerMetrics> {
        vec![ContainerMetrics { name: "container1".into(), usage: Usage { cpu_nanocores: cpu, memory_bytes: memory } }]
    }

    #[test]
    fn provides_pod_metrics_from_stored_batches() {
        let s = storage();
        let start = now();
        s.store(&batch(&[(POD, &[("container1", point(start, start + 120 * SECOND, CORE_SECOND, 4 * MIB))])]));
        assert!(!s.pod_ready());
        assert!(get(&s).is_empty());
        s.store(&batch(&[(POD, &[("container1", point(start, start + 125 * SECOND, 6 * CORE_SECOND, 5 * MIB))])]));
        assert!(s.pod_ready());
        let m = get(&s);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].time, TimeInfo { timestamp: start + 125 * SECOND, window: 5 * SECOND });
        assert_eq!(m[0].containers, one(CORE_SECOND, 5 * MIB));
        assert!(s.pod_metrics([("ns1", "pod2")]).is_empty());
        s.store(&batch(&[]));
        assert!(get(&s).is_empty());
    }

    #[test]
    fn the_timestamp_is_the_earliest_containers() {
        let s = storage();
        let start = now();
        s.store(&batch(&[(
            POD,
            &[
                ("container1", point(start, start + 110 * SECOND, CORE_SECOND, 4 * MIB)),
                ("container2", point(start, start + 115 * SECOND, 2 * CORE_SECOND, 5 * MIB)),
            ],
        )]));
        s.store(&batch(&[(
            POD,
            &[
                ("container1", point(start, start + 120 * SECOND, 6 * CORE_SECOND, 6 * MIB)),
                ("container2", point(start, start + 125 * SECOND, 7 * CORE_SECOND, 7 * MIB)),
            ],
        )]));
        assert_eq!(s.points(), (0, 2));
        let m = get(&s);
        assert_eq!(m[0].time, TimeInfo { timestamp: start + 120 * SECOND, window: 10 * SECOND });
        assert_eq!(m[0].containers.len(), 2);
    }

    #[test]
    fn handles_a_repeated_point() {
        let s = storage();
        let start = now();
        let b = batch(&[(POD, &[("container1", point(start, start + 110 * SECOND, CORE_SECOND, 4 * MIB))])]);
        s.store(&b);
        s.store(&b);
        assert!(!s.pod_ready());
        assert!(get(&s).is_empty());
    }

    #[test]
    fn a_restarted_container_is_measured_from_its_start() {
        let s = storage();
        let start = now();
        s.store(&batch(&[(POD, &[("container1", point(start, start + 10 * SECOND, CORE_SECOND, 4 * MIB))])]));
        s.store(&batch(&[(
            POD,
            &[("container1", point(start + 15 * SECOND, start + 25 * SECOND, 5 * CORE_SECOND, 5 * MIB))],
        )]));
        let m = get(&s);
        assert_eq!(m[0].time, TimeInfo { timestamp: start + 25 * SECOND, window: 10 * SECOND });
        assert_eq!(m[0].containers, one(500_000_000, 5 * MIB));
    }

    #[test]
    fn a_decreased_cpu_counter_serves_the_pod_without_the_container() {
        let s = storage();
        let start = now();
        s.store(&batch(&[(POD, &[("container1", point(start, start + 110 * SECOND, 20 * CORE_SECOND, 4 * MIB))])]));
        s.store(&batch(&[(POD, &[("container1", point(start, start + 120 * SECOND, 10 * CORE_SECOND, 4 * MIB))])]));
        let m = get(&s);
        assert_eq!(m.len(), 1);
        assert!(m[0].containers.is_empty());
    }

    #[test]
    fn a_point_older_than_the_previous_drops_it() {
        let s = storage();
        let start = now();
        s.store(&batch(&[(POD, &[("container1", point(start, start + 1115 * SECOND, 20 * CORE_SECOND, 4 * MIB))])]));
        s.store(&batch(&[(POD, &[("container1", point(start, start + 1125 * SECOND, 40 * CORE_SECOND, 4 * MIB))])]));
        s.store(&batch(&[(POD, &[("container1", point(start, start + 115 * SECOND, 10 * CORE_SECOND, 4 * MIB))])]));
        assert!(get(&s).is_empty());
    }

    #[test]
    fn a_point_between_previous_and_last_keeps_the_previous() {
        let s = storage();
        let start = now();
        s.store(&batch(&[(POD, &[("container1", point(start, start + 115 * SECOND, 10 * CORE_SECOND, 4 * MIB))])]));
        s.store(&batch(&[(POD, &[("container1", point(start, start + 125 * SECOND, 50 * CORE_SECOND, 5 * MIB))])]));
        s.store(&batch(&[(POD, &[("container1", point(start, start + 120 * SECOND, 35 * CORE_SECOND, 5 * MIB))])]));
        let m = get(&s);
        assert_eq!(m[0].time, TimeInfo { timestamp: start + 120 * SECOND, window: 5 * SECOND });
        assert_eq!(m[0].containers, one(5 * CORE_SECOND, 5 * MIB));
    }

    #[test]
    fn a_long_running_container_needs_two_points() {
        let s = storage();
        let start = now();
        s.store(&batch(&[(POD, &[("container1", point(start, start + 120 * SECOND, CORE_SECOND, 4 * MIB))])]));
        assert!(!s.pod_ready());
        assert!(get(&s).is_empty());
    }

    #[test]
    fn a_fresh_container_is_served_after_one_point() {
        let s = storage();
        let start = now();
        s.store(&batch(&[(POD, &[("container1", point(start, start + 10 * SECOND, 10 * CORE_SECOND, 4 * MIB))])]));
        assert!(s.pod_ready());
        let m = get(&s);
        assert_eq!(m[0].time, TimeInfo { timestamp: start + 10 * SECOND, window: 10 * SECOND });
        assert_eq!(m[0].containers, one(CORE_SECOND, 4 * MIB));
    }

    #[test]
    fn a_fresh_container_measured_before_its_start_or_within_10s_needs_two_points() {
        for offset in [-10 * SECOND, 9 * SECOND] {
            let s = storage();
            let start = now();
            s.store(&batch(&[(POD, &[("container1", point(start, start + offset, 10 * CORE_SECOND, 4 * MIB))])]));
            assert!(!s.pod_ready(), "{offset}");
            assert!(get(&s).is_empty(), "{offset}");
        }
    }

    #[test]
    fn a_zero_start_time_is_served() {
        let s = storage();
        let start = now();
        s.store(&batch(&[(POD, &[("container1", point(ZERO_TIME, start + 120 * SECOND, CORE_SECOND, 4 * MIB))])]));
        assert!(!s.pod_ready());
        s.store(&batch(&[(POD, &[("container1", point(ZERO_TIME, start + 125 * SECOND, 6 * CORE_SECOND, 5 * MIB))])]));
        let m = get(&s);
        assert_eq!(m[0].time, TimeInfo { timestamp: start + 125 * SECOND, window: 5 * SECOND });
        assert_eq!(m[0].containers, one(CORE_SECOND, 5 * MIB));
    }

    #[test]
    fn a_pod_is_served_only_when_all_its_containers_have_two_points() {
        let s = storage();
        let start = now();
        s.store(&batch(&[(POD, &[("container1", point(start, start + 110 * SECOND, CORE_SECOND, 4 * MIB))])]));
        s.store(&batch(&[(
            POD,
            &[
                ("container1", point(start, start + 120 * SECOND, 6 * CORE_SECOND, 6 * MIB)),
                ("container2", point(start, start + 120 * SECOND, 8 * CORE_SECOND, 5 * MIB)),
            ],
        )]));
        assert!(get(&s).is_empty());
    }
}
