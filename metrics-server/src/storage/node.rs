//! Node points (upstream's `pkg/storage/node.go`): the last two per node, newer points only.

use std::collections::BTreeMap;

use super::{MetricsBatch, MetricsPoint, NodeMetrics, resource_usage};

#[derive(Default)]
pub(super) struct NodeStorage {
    /// The points of the last scrape.
    last: BTreeMap<String, MetricsPoint>,
    /// The points before those, older than the corresponding `last`.
    prev: BTreeMap<String, MetricsPoint>,
}

impl NodeStorage {
    pub(super) fn ready(&self) -> bool {
        !self.prev.is_empty()
    }

    pub(super) fn points(&self) -> usize {
        self.prev.len()
    }

    pub(super) fn metrics<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<NodeMetrics> {
        let mut out = Vec::new();
        for name in names {
            let (Some(last), Some(prev)) = (self.last.get(name), self.prev.get(name)) else { continue };
            match resource_usage(last, prev) {
                Ok((usage, time)) => out.push(NodeMetrics { name: name.to_string(), time, usage }),
                Err(e) => tracing::error!(error = e, node = name, "Skipping node usage metric"),
            }
        }
        out
    }

    pub(super) fn store(&mut self, batch: &MetricsBatch) {
        let mut last = BTreeMap::new();
        let mut prev = BTreeMap::new();
        for (name, new) in &batch.nodes {
            last.insert(name.clone(), *new);
            let Some(stored) = self.last.get(name) else { continue };
            if new.timestamp > stored.timestamp {
                // A newer point: the stored one becomes the previous.
                prev.insert(name.clone(), *stored);
            } else if let Some(p) = self.prev.get(name) {
                if p.timestamp < new.timestamp {
                    prev.insert(name.clone(), *p);
                } else {
                    tracing::debug!(node = %name, "Found new node metrics point is older than stored previous, drop previous");
                }
            }
        }
        self.last = last;
        self.prev = prev;
    }
}

#[cfg(test)]
mod tests {
    //! Upstream's "Node storage" specs (node_test.go).

    use super::super::testing::*;
    use super::super::{Storage, TimeInfo, Usage, ZERO_TIME};
    use super::*;

    fn batch(nodes: &[(&str, MetricsPoint)]) -> MetricsBatch {
        MetricsBatch { nodes: nodes.iter().map(|(n, p)| (n.to_string(), *p)).collect(), ..Default::default() }
    }

    fn storage() -> Storage {
        Storage::new(std::time::Duration::from_secs(60))
    }

    fn empty(s: &Storage, name: &str) -> bool {
        s.node_metrics([name]).is_empty()
    }

    #[test]
    fn provides_node_metrics_from_stored_batches() {
        let s = storage();
        let start = now();
        s.store(&batch(&[("node1", point(start, start + 10 * SECOND, 10 * CORE_SECOND, 2 * MIB))]));
        assert!(!s.node_ready());
        assert!(empty(&s, "node1"));
        s.store(&batch(&[("node1", point(start, start + 20 * SECOND, 20 * CORE_SECOND, 3 * MIB))]));
        assert!(s.node_ready());
        assert_eq!(
            s.node_metrics(["node1"]),
            [NodeMetrics {
                name: "node1".into(),
                time: TimeInfo { timestamp: start + 20 * SECOND, window: 10 * SECOND },
                usage: Usage { cpu_nanocores: CORE_SECOND, memory_bytes: 3 * MIB },
            }]
        );
        assert!(empty(&s, "node2"));
        s.store(&batch(&[]));
        assert!(empty(&s, "node1"));
    }

    #[test]
    fn handles_a_repeated_point() {
        let s = storage();
        let start = now();
        let b = batch(&[("node1", point(start, start + 10 * SECOND, 10 * CORE_SECOND, 2 * MIB))]);
        s.store(&b);
        s.store(&b);
        assert!(empty(&s, "node1"));
        assert!(!s.node_ready());
    }

    #[test]
    fn counts_the_points_it_can_serve() {
        let s = storage();
        let start = now();
        s.store(&batch(&[("node1", point(start, start + 10 * SECOND, 10 * CORE_SECOND, 2 * MIB))]));
        assert_eq!(s.points(), (0, 0));
        s.store(&batch(&[("node1", point(start, start + 20 * SECOND, 21 * CORE_SECOND, 3 * MIB))]));
        assert_eq!(s.points(), (1, 0));
    }

    #[test]
    fn a_restarted_node_is_skipped() {
        let s = storage();
        let start = now();
        s.store(&batch(&[("node1", point(start, start + 10 * SECOND, 10 * CORE_SECOND, 2 * MIB))]));
        s.store(&batch(&[("node1", point(start + 15 * SECOND, start + 20 * SECOND, 5 * CORE_SECOND, 3 * MIB))]));
        assert!(empty(&s, "node1"));
    }

    #[test]
    fn a_decreased_cpu_counter_is_skipped() {
        let s = storage();
        let start = now();
        s.store(&batch(&[("node1", point(start, start + 15 * SECOND, 50 * CORE_SECOND, 3 * MIB))]));
        s.store(&batch(&[("node1", point(start, start + 25 * SECOND, 10 * CORE_SECOND, 5 * MIB))]));
        assert!(empty(&s, "node1"));
    }

    #[test]
    fn a_point_older_than_the_previous_drops_it() {
        let s = storage();
        let start = now();
        s.store(&batch(&[("node1", point(start, start + 15 * SECOND, 10 * CORE_SECOND, 3 * MIB))]));
        s.store(&batch(&[("node1", point(start, start + 35 * SECOND, 50 * CORE_SECOND, 5 * MIB))]));
        s.store(&batch(&[("node1", point(start, start + 5 * SECOND, 6 * CORE_SECOND, 2 * MIB))]));
        assert!(empty(&s, "node1"));
    }

    #[test]
    fn a_point_between_previous_and_last_keeps_the_previous() {
        let s = storage();
        let start = now();
        s.store(&batch(&[("node1", point(start, start + 15 * SECOND, 10 * CORE_SECOND, MIB))]));
        s.store(&batch(&[("node1", point(start, start + 35 * SECOND, 50 * CORE_SECOND, 4 * MIB))]));
        s.store(&batch(&[("node1", point(start, start + 25 * SECOND, 35 * CORE_SECOND, 2 * MIB))]));
        let m = s.node_metrics(["node1"]);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].time, TimeInfo { timestamp: start + 25 * SECOND, window: 10 * SECOND });
        assert_eq!(m[0].usage, Usage { cpu_nanocores: 2_500_000_000, memory_bytes: 2 * MIB });
    }

    #[test]
    fn a_zero_start_time_is_served() {
        let s = storage();
        let start = now();
        s.store(&batch(&[("node1", point(ZERO_TIME, start + 10 * SECOND, 10 * CORE_SECOND, 2 * MIB))]));
        assert!(!s.node_ready());
        s.store(&batch(&[("node1", point(ZERO_TIME, start + 20 * SECOND, 20 * CORE_SECOND, 3 * MIB))]));
        let m = s.node_metrics(["node1"]);
        assert_eq!(m[0].time, TimeInfo { timestamp: start + 20 * SECOND, window: 10 * SECOND });
        assert_eq!(m[0].usage, Usage { cpu_nanocores: CORE_SECOND, memory_bytes: 3 * MIB });
    }
}
