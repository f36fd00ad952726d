//! `/metrics/resource`: the node's, pods' and containers' CPU and memory from the Summary API ([`crate::stats`])
//! in Prometheus text, as upstream's resource metrics collector (`pkg/kubelet/metrics/collectors/
//! resource_metrics.go`) writes them for metrics-server: its STABLE families with their HELP and TYPE lines,
//! samples with millisecond timestamps, families and samples in the order client_golang's registry gathers them
//! (by name, then by label values), numbers as Go formats them.

use crate::stats::Summary;

/// A metric family of the collector: name, help (with upstream's stability prefix), type, label names.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
}

const NODE_CPU: Family = Family {
    name: "node_cpu_usage_seconds_total",
    help: "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
    kind: "counter",
};
const NODE_MEMORY: Family = Family {
    name: "node_memory_working_set_bytes",
    help: "[STABLE] Current working set of the node in bytes",
    kind: "gauge",
};
const CONTAINER_CPU: Family = Family {
    name: "container_cpu_usage_seconds_total",
    help: "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
    kind: "counter",
};
const CONTAINER_MEMORY: Family = Family {
    name: "container_memory_working_set_bytes",
    help: "[STABLE] Current working set of the container in bytes",
    kind: "gauge",
};
const CONTAINER_START: Family = Family {
    name: "container_start_time_seconds",
    help: "[STABLE] Start time of the container since unix epoch in seconds",
    kind: "gauge",
};
const POD_CPU: Family = Family {
    name: "pod_cpu_usage_seconds_total",
    help: "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
    kind: "counter",
};
const POD_MEMORY: Family = Family {
    name: "pod_memory_working_set_bytes",
    help: "[STABLE] Current working set of the pod in bytes",
    kind: "gauge",
};
const SCRAPE_ERROR: Family = Family {
    name: "resource_scrape_error",
    help: "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise",
    kind: "gauge",
};

/// One sample: its family, label pairs (sorted by name), value and timestamp in milliseconds.
struct Sample {
    family: &'static Family,
    labels: Vec<(&'static str, String)>,
    value: f64,
    timestamp_ms: Option<i64>,
}

/// Milliseconds since the epoch of a time in nanoseconds (client_golang's `TimestampMs`).
fn millis(nanos: i64) -> i64 {
    nanos.div_euclid(1_000_000)
}

/// A float as Go's `strconv.FormatFloat(f, 'g', -1, 64)` writes it (client_golang's text format): the shortest
/// digits that read back, `%e` form with a two-digit exponent when the exponent is below -4 or at least 6.
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if f == 0.0 {
        return "0".into();
    }
    let e = format!("{f:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.unsigned_abs());
    }
    format!("{f}")
}

/// A label value escaped as the text format requires.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

/// The collector's samples for a summary (upstream's `CollectWithStability`): what the summary lacks is left out.
fn samples(summary: &Summary) -> Vec<Sample> {
    let mut out = Vec::new();
    let secs = |ns: u64| ns as f64 / 1e9;
    if let Some(cpu) = &summary.node_cpu
        && let Some(v) = cpu.usage_core_nano_seconds
    {
        out.push(Sample { family: &NODE_CPU, labels: vec![], value: secs(v), timestamp_ms: Some(millis(cpu.time)) });
    }
    if let Some(mem) = &summary.node_memory
        && let Some(v) = mem.working_set_bytes
    {
        out.push(Sample {
            family: &NODE_MEMORY,
            labels: vec![],
            value: v as f64,
            timestamp_ms: Some(millis(mem.time)),
        });
    }
    for pod in &summary.pods {
        for c in &pod.containers {
            let labels =
                || vec![("container", c.name.clone()), ("namespace", pod.namespace.clone()), ("pod", pod.name.clone())];
            // Go's `StartTime.Unix() <= 0`: before 1970-01-01T00:00:01Z.
            if c.start_time.div_euclid(1_000_000_000) > 0 {
                out.push(Sample {
                    family: &CONTAINER_START,
                    labels: labels(),
                    value: c.start_time as f64 / 1e9,
                    timestamp_ms: None,
                });
            }
            if let Some(cpu) = &c.cpu
                && let Some(v) = cpu.usage_core_nano_seconds
            {
                out.push(Sample {
                    family: &CONTAINER_CPU,
                    labels: labels(),
                    value: secs(v),
                    timestamp_ms: Some(millis(cpu.time)),
                });
            }
            if let Some(mem) = &c.memory
                && let Some(v) = mem.working_set_bytes
            {
                out.push(Sample {
                    family: &CONTAINER_MEMORY,
                    labels: labels(),
                    value: v as f64,
                    timestamp_ms: Some(millis(mem.time)),
                });
            }
        }
        let labels = || vec![("namespace", pod.namespace.clone()), ("pod", pod.name.clone())];
        if let Some(cpu) = &pod.cpu
            && let Some(v) = cpu.usage_core_nano_seconds
        {
            out.push(Sample {
                family: &POD_CPU,
                labels: labels(),
                value: secs(v),
                timestamp_ms: Some(millis(cpu.time)),
            });
        }
        if let Some(mem) = &pod.memory
            && let Some(v) = mem.working_set_bytes
        {
            out.push(Sample {
                family: &POD_MEMORY,
                labels: labels(),
                value: v as f64,
                timestamp_ms: Some(millis(mem.time)),
            });
        }
    }
    out
}

/// The exposition of `/metrics/resource` for a summary, or for the error of getting one (then only
/// `resource_scrape_error 1`).
pub fn render(summary: Result<&Summary, &str>) -> String {
    let (mut samples, error) = match summary {
        Ok(s) => (samples(s), 0.0),
        Err(e) => {
            tracing::error!(error = e, "Error getting summary for resourceMetric prometheus endpoint");
            (Vec::new(), 1.0)
        }
    };
    samples.push(Sample { family: &SCRAPE_ERROR, labels: vec![], value: error, timestamp_ms: None });
    samples.sort_by(|a, b| {
        a.family.name.cmp(b.family.name).then_with(|| {
            let values = |s: &Sample| s.labels.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>();
            values(a).cmp(&values(b))
        })
    });
    let mut out = String::new();
    let mut last = "";
    for s in &samples {
        if s.family.name != last {
            out.push_str(&format!(
                "# HELP {} {}\n# TYPE {} {}\n",
                s.family.name, s.family.help, s.family.name, s.family.kind
            ));
            last = s.family.name;
        }
        out.push_str(s.family.name);
        if !s.labels.is_empty() {
            let pairs: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            out.push_str(&format!("{{{}}}", pairs.join(",")));
        }
        out.push(' ');
        out.push_str(&go_float(s.value));
        if let Some(ts) = s.timestamp_ms {
            out.push_str(&format!(" {ts}"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    //! Upstream's `TestCollectResourceMetrics` cases (resource_metrics_test.go), less the ALPHA families this
    //! kubelet does not measure (swap, Windows commit bytes) and the `scrape_error` alias hidden since 1.29.

    use super::*;
    use crate::stats::{ContainerStats, CpuStats, MemoryStats, PodStats};

    /// 2021-06-23 05:11:18.302091597 +0800, upstream's static timestamp.
    const T: i64 = 1624396278302091597;

    fn cpu(v: Option<u64>) -> Option<CpuStats> {
        Some(CpuStats { time: T, usage_core_nano_seconds: v, usage_nano_cores: None })
    }

    fn mem(v: Option<u64>) -> Option<MemoryStats> {
        Some(MemoryStats { time: T, working_set_bytes: v, usage_bytes: Some(2000), ..Default::default() })
    }

    fn container(name: &str, start: i64, c: Option<u64>, m: Option<u64>) -> ContainerStats {
        ContainerStats { name: name.into(), start_time: start, cpu: cpu(c), memory: mem(m), rootfs: None }
    }

    fn pod(name: &str, ns: &str, containers: Vec<ContainerStats>) -> PodStats {
        PodStats { name: name.into(), namespace: ns.into(), containers, ..Default::default() }
    }

    /// Upstream's expectation text, its indentation removed.
    fn expect(text: &str) -> String {
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| format!("{l}\n")).collect()
    }

    const NO_ERROR: &str = "
        # HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise
        # TYPE resource_scrape_error gauge
        resource_scrape_error 0";

    #[test]
    fn error_getting_summary() {
        assert_eq!(
            render(Err("failed to get summary")),
            expect(
                "# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise
                # TYPE resource_scrape_error gauge
                resource_scrape_error 1"
            )
        );
    }

    #[test]
    fn arbitrary_node_metrics() {
        let s = Summary { node_cpu: cpu(Some(10_000_000_000)), node_memory: mem(Some(1000)), pods: vec![] };
        assert_eq!(
            render(Ok(&s)),
            expect(&format!(
                "# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
                # TYPE node_cpu_usage_seconds_total counter
                node_cpu_usage_seconds_total 10 1624396278302
                # HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
                # TYPE node_memory_working_set_bytes gauge
                node_memory_working_set_bytes 1000 1624396278302
                {NO_ERROR}"
            ))
        );
    }

    #[test]
    fn nil_node_metrics() {
        let s = Summary { node_cpu: cpu(None), node_memory: mem(None), pods: vec![] };
        assert_eq!(render(Ok(&s)), expect(NO_ERROR));
    }

    #[test]
    fn arbitrary_container_metrics_for_different_containers_pods_and_namespaces() {
        let s = Summary {
            pods: vec![
                pod(
                    "pod_a",
                    "namespace_a",
                    vec![
                        container("container_a", T - 30_000_000_000, Some(10_000_000_000), Some(1000)),
                        container("container_b", T - 120_000_000_000, Some(10_000_000_000), Some(1000)),
                    ],
                ),
                pod(
                    "pod_b",
                    "namespace_b",
                    vec![container("container_a", T - 600_000_000_000, Some(10_000_000_000), Some(1000))],
                ),
            ],
            ..Default::default()
        };
        assert_eq!(
            render(Ok(&s)),
            expect(&format!(
                r#"# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
                # TYPE container_cpu_usage_seconds_total counter
                container_cpu_usage_seconds_total{{container="container_a",namespace="namespace_a",pod="pod_a"}} 10 1624396278302
                container_cpu_usage_seconds_total{{container="container_a",namespace="namespace_b",pod="pod_b"}} 10 1624396278302
                container_cpu_usage_seconds_total{{container="container_b",namespace="namespace_a",pod="pod_a"}} 10 1624396278302
                # HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
                # TYPE container_memory_working_set_bytes gauge
                container_memory_working_set_bytes{{container="container_a",namespace="namespace_a",pod="pod_a"}} 1000 1624396278302
                container_memory_working_set_bytes{{container="container_a",namespace="namespace_b",pod="pod_b"}} 1000 1624396278302
                container_memory_working_set_bytes{{container="container_b",namespace="namespace_a",pod="pod_a"}} 1000 1624396278302
                # HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
                # TYPE container_start_time_seconds gauge
                container_start_time_seconds{{container="container_a",namespace="namespace_a",pod="pod_a"}} 1.6243962483020916e+09
                container_start_time_seconds{{container="container_a",namespace="namespace_b",pod="pod_b"}} 1.6243956783020916e+09
                container_start_time_seconds{{container="container_b",namespace="namespace_a",pod="pod_a"}} 1.6243961583020916e+09
                {NO_ERROR}"#
            ))
        );
    }

    #[test]
    fn container_metrics_with_a_negative_start_time() {
        let s = Summary {
            pods: vec![pod(
                "pod_a",
                "namespace_a",
                vec![container("container_a", -1624396278302091597, Some(10_000_000_000), Some(1000))],
            )],
            ..Default::default()
        };
        assert_eq!(
            render(Ok(&s)),
            expect(&format!(
                r#"# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
                # TYPE container_cpu_usage_seconds_total counter
                container_cpu_usage_seconds_total{{container="container_a",namespace="namespace_a",pod="pod_a"}} 10 1624396278302
                # HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
                # TYPE container_memory_working_set_bytes gauge
                container_memory_working_set_bytes{{container="container_a",namespace="namespace_a",pod="pod_a"}} 1000 1624396278302
                {NO_ERROR}"#
            ))
        );
    }

    #[test]
    fn nil_container_metrics() {
        let s = Summary {
            pods: vec![
                pod("pod_a", "namespace_a", vec![container("container_a", T - 30_000_000_000, None, None)]),
                pod(
                    "pod_b",
                    "namespace_b",
                    vec![container("container_a", T - 600_000_000_000, Some(10_000_000_000), Some(1000))],
                ),
            ],
            ..Default::default()
        };
        assert_eq!(
            render(Ok(&s)),
            expect(&format!(
                r#"# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
                # TYPE container_cpu_usage_seconds_total counter
                container_cpu_usage_seconds_total{{container="container_a",namespace="namespace_b",pod="pod_b"}} 10 1624396278302
                # HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
                # TYPE container_memory_working_set_bytes gauge
                container_memory_working_set_bytes{{container="container_a",namespace="namespace_b",pod="pod_b"}} 1000 1624396278302
                # HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
                # TYPE container_start_time_seconds gauge
                container_start_time_seconds{{container="container_a",namespace="namespace_a",pod="pod_a"}} 1.6243962483020916e+09
                container_start_time_seconds{{container="container_a",namespace="namespace_b",pod="pod_b"}} 1.6243956783020916e+09
                {NO_ERROR}"#
            ))
        );
    }

    #[test]
    fn arbitrary_pod_metrics() {
        let s = Summary {
            pods: vec![PodStats {
                name: "pod_a".into(),
                namespace: "namespace_a".into(),
                cpu: cpu(Some(10_000_000_000)),
                memory: mem(Some(1000)),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            render(Ok(&s)),
            expect(&format!(
                r#"# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds
                # TYPE pod_cpu_usage_seconds_total counter
                pod_cpu_usage_seconds_total{{namespace="namespace_a",pod="pod_a"}} 10 1624396278302
                # HELP pod_memory_working_set_bytes [STABLE] Current working set of the pod in bytes
                # TYPE pod_memory_working_set_bytes gauge
                pod_memory_working_set_bytes{{namespace="namespace_a",pod="pod_a"}} 1000 1624396278302
                {NO_ERROR}"#
            ))
        );
    }

    #[test]
    fn nil_pod_metrics() {
        let s = Summary {
            pods: vec![PodStats {
                name: "pod_a".into(),
                namespace: "namespace_a".into(),
                cpu: cpu(None),
                memory: mem(None),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(render(Ok(&s)), expect(NO_ERROR));
    }

    /// Go's shortest `%g`: fixed below 1e6 and down to 1e-4, exponent form otherwise.
    #[test]
    fn floats_as_go_writes_them() {
        for (f, want) in [
            (10.0, "10"),
            (1000.0, "1000"),
            (4.710169, "4.710169"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1.616273408e9, "1.616273408e+09"),
            (12533760.0, "1.253376e+07"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (1.0, "1"),
            (f64::INFINITY, "+Inf"),
        ] {
            assert_eq!(go_float(f), want, "{f}");
        }
    }
}
