//! The kubelet's `/metrics/resource` text into a [`MetricsBatch`] (upstream's `pkg/scraper/client/resource/
//! decode.go`): the node's and containers' CPU counters, working sets and start times, by the Prometheus text
//! exposition format (comments skipped, `name{labels} value [timestamp-ms]`); samples without a timestamp take
//! the request's time. A node or container missing its CPU or memory (or reporting zero) is left out, and so is
//! a pod with such a container.

use std::collections::BTreeMap;

use crate::storage::{MetricsBatch, MetricsPoint, PodMetricsPoint, PodRef};

const NODE_CPU: &str = "node_cpu_usage_seconds_total";
const NODE_MEMORY: &str = "node_memory_working_set_bytes";
const CONTAINER_CPU: &str = "container_cpu_usage_seconds_total";
const CONTAINER_MEMORY: &str = "container_memory_working_set_bytes";
const CONTAINER_START: &str = "container_start_time_seconds";

/// A line the text format does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed parsing metrics: line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// One sample line: metric name, labels, value, timestamp in milliseconds.
#[derive(Debug, PartialEq)]
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(&'a str, String)>,
    value: f64,
    timestamp: Option<i64>,
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

/// A Go `strconv.ParseFloat` number (also `NaN`, `+Inf`, `-Inf`).
fn float(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ if s.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')) => s.parse().ok(),
        _ => None,
    }
}

/// Parses a sample line of the text format.
fn sample(line: &str) -> Result<Sample<'_>, String> {
    let end = line.char_indices().find(|&(i, c)| !is_name_char(c, i == 0)).map(|(i, _)| i).unwrap_or(line.len());
    if end == 0 {
        return Err(format!("invalid metric name in {line:?}"));
    }
    let (name, mut rest) = line.split_at(end);
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after.trim_start();
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let end = rest.find(|c: char| !is_name_char(c, false)).unwrap_or(rest.len());
            let (label, after) = rest.split_at(end);
            let after = after.trim_start();
            let Some(after) = after
                .strip_prefix("=\"")
                .or_else(|| after.strip_prefix('=').map(str::trim_start).and_then(|a| a.strip_prefix('"')))
            else {
                return Err(format!("expected label value for {label:?}"));
            };
            if label.is_empty() {
                return Err("invalid label name".into());
            }
            let mut value = String::new();
            let mut chars = after.char_indices();
            let close = loop {
                match chars.next() {
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => return Err("unterminated label value".into()),
                    },
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".into()),
                }
            };
            labels.push((label, value));
            rest = after[close + 1..].trim_start();
            if let Some(after) = rest.strip_prefix(',') {
                rest = after.trim_start();
            } else if !rest.starts_with('}') {
                return Err("expected , or } after a label".into());
            }
        }
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = fields.next().and_then(float).ok_or_else(|| format!("invalid value in {line:?}"))?;
    let timestamp = match fields.next() {
        None => None,
        // Timestamps are digits: a negative one is refused, as Prometheus' lexer does.
        Some(t) if t.bytes().all(|b| b.is_ascii_digit()) => {
            Some(t.parse::<i64>().map_err(|_| format!("invalid timestamp {t:?}"))?)
        }
        Some(t) => return Err(format!("expected timestamp or new record, got {t:?}")),
    };
    if fields.next().is_some() {
        return Err(format!("unexpected text after the timestamp in {line:?}"));
    }
    Ok(Sample { name, labels, value, timestamp })
}

/// The samples of an exposition, in order.
fn samples(text: &str) -> Result<Vec<Sample<'_>>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(sample(line).map_err(|message| ParseError { line: i + 1, message })?);
    }
    Ok(out)
}

fn label<'a>(s: &'a Sample<'_>, name: &str) -> &'a str {
    s.labels.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str()).unwrap_or_default()
}

/// The point of the container a sample is about (by its `container`, `pod` and `namespace` labels).
fn container_point<'a>(pods: &'a mut BTreeMap<PodRef, PodMetricsPoint>, s: &Sample<'_>) -> &'a mut MetricsPoint {
    let pod = (label(s, "namespace").to_string(), label(s, "pod").to_string());
    pods.entry(pod).or_default().containers.entry(label(s, "container").to_string()).or_default()
}

/// The batch of one kubelet's answer: its node under `node_name`, and its pods; `default_time` (nanoseconds
/// since the epoch) stands in for missing timestamps.
pub fn decode_batch(text: &str, default_time: i64, node_name: &str) -> Result<MetricsBatch, ParseError> {
    let mut node = MetricsPoint::default();
    let mut pods: BTreeMap<PodRef, PodMetricsPoint> = BTreeMap::new();
    let default_ms = default_time.div_euclid(1_000_000);
    for s in samples(text)? {
        let ts = s.timestamp.unwrap_or(default_ms).saturating_mul(1_000_000);
        match s.name {
            NODE_CPU => {
                node.cumulative_cpu_used = (s.value * 1e9) as u64;
                node.timestamp = ts;
            }
            NODE_MEMORY => {
                node.memory_usage = s.value as u64;
                node.timestamp = ts;
            }
            CONTAINER_CPU => {
                let c = container_point(&mut pods, &s);
                c.cumulative_cpu_used = (s.value * 1e9) as u64;
                c.timestamp = ts;
            }
            CONTAINER_MEMORY => {
                let c = container_point(&mut pods, &s);
                c.memory_usage = s.value as u64;
                c.timestamp = ts;
            }
            CONTAINER_START => container_point(&mut pods, &s).start_time = (s.value * 1e9) as i64,
            _ => {}
        }
    }
    let mut batch = MetricsBatch::default();
    if node.timestamp == crate::storage::ZERO_TIME || node.cumulative_cpu_used == 0 || node.memory_usage == 0 {
        tracing::debug!(node = node_name, metric = ?node, "Failed getting complete node metric");
    } else {
        batch.nodes.insert(node_name.to_string(), node);
    }
    for (pod, point) in pods {
        if point.containers.is_empty() {
            continue;
        }
        // Points with nothing measured are skipped; a container missing its CPU or memory drops the pod.
        let measured: BTreeMap<String, MetricsPoint> =
            point.containers.into_iter().filter(|(_, c)| *c != MetricsPoint::default()).collect();
        if measured.values().any(|c| c.cumulative_cpu_used == 0 || c.memory_usage == 0) {
            tracing::debug!(pod = ?pod, "Failed getting complete Pod metric");
            continue;
        }
        batch.pods.insert(pod, PodMetricsPoint { containers: measured });
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    //! Upstream's `TestDecode` cases (decode_test.go).

    use super::*;

    /// 2021-10-03T09:36:49.72Z and the other times of upstream's cases, in nanoseconds.
    fn at(rfc3339: &str) -> i64 {
        rfc3339.parse::<jiff::Timestamp>().unwrap().as_nanosecond() as i64
    }

    fn node1() -> BTreeMap<String, MetricsPoint> {
        BTreeMap::from([(
            "node1".to_string(),
            MetricsPoint {
                start_time: crate::storage::ZERO_TIME,
                timestamp: at("2021-10-03T09:36:49.72Z"),
                cumulative_cpu_used: 357354910000,
                memory_usage: 1616273408,
            },
        )])
    }

    fn coredns(timestamp: i64) -> BTreeMap<PodRef, PodMetricsPoint> {
        BTreeMap::from([(
            ("kube-system".to_string(), "coredns-558bd4d5db-4dpjz".to_string()),
            PodMetricsPoint {
                containers: BTreeMap::from([(
                    "coredns".to_string(),
                    MetricsPoint {
                        start_time: at("2021-10-03T09:18:32Z"),
                        timestamp,
                        cumulative_cpu_used: 4710169000,
                        memory_usage: 12533760,
                    },
                )]),
            },
        )])
    }

    fn decode(text: &str) -> Result<MetricsBatch, ParseError> {
        decode_batch(text, crate::storage::ZERO_TIME, "node1")
    }

    const CONTAINER: &str = r#"container="coredns",namespace="kube-system",pod="coredns-558bd4d5db-4dpjz""#;

    #[test]
    fn normal() {
        let text = format!(
            r#"
# HELP container_cpu_usage_seconds_total [ALPHA] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{{{CONTAINER}}} 4.710169 1633253812125
# HELP container_memory_working_set_bytes [ALPHA] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{{{CONTAINER}}} 1.253376e+07 1633253812125
# TYPE container_start_time_seconds gauge
container_start_time_seconds{{{CONTAINER}}} 1.633252712e+9 1633253812125
# HELP node_cpu_usage_seconds_total [ALPHA] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 357.35491 1633253809720
# HELP node_memory_working_set_bytes [ALPHA] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1.616273408e+09 1633253809720
# HELP pod_cpu_usage_seconds_total [ALPHA] Cumulative cpu time consumed by the pod in core-seconds
# TYPE pod_cpu_usage_seconds_total counter
pod_cpu_usage_seconds_total{{namespace="kube-system",pod="coredns-558bd4d5db-4dpjz"}} 4.67812 1633253803935
# HELP pod_memory_working_set_bytes [ALPHA] Current working set of the pod in bytes
# TYPE pod_memory_working_set_bytes gauge
pod_memory_working_set_bytes{{namespace="kube-system",pod="coredns-558bd4d5db-4dpjz"}} 1.2627968e+07 1633253803935
# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE scrape_error gauge
scrape_error 0
"#
        );
        assert_eq!(
            decode(&text).unwrap(),
            MetricsBatch { nodes: node1(), pods: coredns(at("2021-10-03T09:36:52.125Z")) }
        );
    }

    #[test]
    fn without_timestamp_uses_default_time() {
        let text = format!(
            r#"
container_cpu_usage_seconds_total{{{CONTAINER}}} 4.710169
container_memory_working_set_bytes{{{CONTAINER}}} 1.253376e+07
container_start_time_seconds{{{CONTAINER}}} 1.633252712e+9
node_cpu_usage_seconds_total 357.35491
node_memory_working_set_bytes 1.616273408e+09
"#
        );
        let default = at("2077-07-07T07:07:07Z");
        let mut nodes = node1();
        nodes.get_mut("node1").unwrap().timestamp = default;
        assert_eq!(decode_batch(&text, default, "node1").unwrap(), MetricsBatch { nodes, pods: coredns(default) });
    }

    #[test]
    fn single_pod_and_single_node() {
        let text = format!(
            r#"
container_cpu_usage_seconds_total{{{CONTAINER}}} 4.710169 1633253812125
container_memory_working_set_bytes{{{CONTAINER}}} 1.253376e+07 1633253812125
container_start_time_seconds{{{CONTAINER}}} 1.633252712e+9 1633253812125
"#
        );
        assert_eq!(
            decode(&text).unwrap(),
            MetricsBatch { nodes: BTreeMap::new(), pods: coredns(at("2021-10-03T09:36:52.125Z")) }
        );
        let text = "node_cpu_usage_seconds_total 357.35491 1633253809720\nnode_memory_working_set_bytes 1.616273408e+09 1633253809720\n";
        assert_eq!(decode(text).unwrap(), MetricsBatch { nodes: node1(), pods: BTreeMap::new() });
    }

    #[test]
    fn incomplete_containers_and_nodes_are_dropped() {
        for text in [
            format!("container_memory_working_set_bytes{{{CONTAINER}}} 1.253376e+07 1633253812125"),
            format!(
                "container_cpu_usage_seconds_total{{{CONTAINER}}} 0 1633253812125\ncontainer_memory_working_set_bytes{{{CONTAINER}}} 1.253376e+07 1633253812125"
            ),
            format!("container_cpu_usage_seconds_total{{{CONTAINER}}} 4.710169 1633253812125"),
            format!(
                "container_cpu_usage_seconds_total{{{CONTAINER}}} 4.710169 1633253812125\ncontainer_memory_working_set_bytes{{{CONTAINER}}} 0 1633253812125"
            ),
            "node_memory_working_set_bytes 1.616273408e+09 1633253809720".into(),
            "node_cpu_usage_seconds_total 0 1633253809720\nnode_memory_working_set_bytes 1.616273408e+09 1633253809720"
                .into(),
            "node_cpu_usage_seconds_total 357.35491 1633253809720".into(),
            "node_cpu_usage_seconds_total 357.35491 1633253809720\nnode_memory_working_set_bytes 0 1633253809720"
                .into(),
        ] {
            assert_eq!(decode(&text).unwrap(), MetricsBatch::default(), "{text}");
        }
    }

    #[test]
    fn an_incorrect_timestamp_is_an_error() {
        let text = r#"
# HELP container_start_time_seconds [ALPHA] Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container="metrics-server",namespace="kubernetes-dashboard",pod="kubernetes-dashboard-metrics-server-77db45cdf4-fppzx"} -6.7953645788713455e+09 -62135596800000
container_start_time_seconds{container="metrics-server",namespace="kubernetes-dashboard",pod="kubernetes-dashboard-metrics-server-77db45cdf4-tpx4v"} 1.6509742024191372e+09 1650974202419
"#;
        assert!(decode(text).is_err());
    }

    /// Upstream's fuzz property: any values with a non-negative timestamp decode (as Go's `%f`, `%e`, `%E` write
    /// them); random text never panics.
    #[test]
    fn values_in_every_go_format_decode() {
        for (v, ts) in [(0.0, 0i64), (-10000.0, 10000), (0.5, 5), (-0.000000001, 0), (1e100, 1), (-1e100, 10000)] {
            let text = format!(
                "container_cpu_usage_seconds_total{{{CONTAINER}}} {v:.6} {ts}\ncontainer_memory_working_set_bytes{{{CONTAINER}}} {v:e} {ts}\ncontainer_start_time_seconds{{{CONTAINER}}} {} {ts}",
                format!("{v:e}").to_uppercase()
            );
            assert!(decode(&text).is_ok(), "{text}");
        }
        for junk in ["abc", "!@~#$%^&*()[]{}\"',.?/\\`", "x{a=\"", "x{a=\"b\"} 1 2 3", "{} 1", "_ab 1 -1", ""] {
            let _ = decode(junk);
        }
        assert_eq!(decode("").unwrap(), MetricsBatch::default());
    }

    #[test]
    fn escaped_label_values() {
        let s = sample(r#"m{a="x\"y\\z\n", b = "2",} 3 4"#).unwrap();
        assert_eq!(s.labels, [("a", "x\"y\\z\n".to_string()), ("b", "2".to_string())]);
        assert_eq!((s.value, s.timestamp), (3.0, Some(4)));
    }
}
