//! Indexed Jobs, as upstream's pkg/controller/job/indexed_job_utils.go: the compressed interval form of
//! `status.completedIndexes` / `status.failedIndexes` (`"1,3-5"`), a pod's completion index, and
//! `backoffLimitPerIndex`: the per-index failure counts pods carry in the `batch.kubernetes.io/job-index-failure-count`
//! and `batch.kubernetes.io/job-index-ignored-failure-count` annotations, and when an index has failed.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{FailureAction, failure_policy_action};

pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
pub const INDEX_IGNORED_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";

/// Parses an interval list (`"1,3-5,7"`); malformed intervals are skipped.
pub fn parse_indexes(s: &str) -> BTreeSet<i64> {
    parse_indexes_within(s, i64::MAX)
}

/// Upstream's `parseIndexesFromString`: the indexes below `completions` (an interval reaching past it is cut).
pub fn parse_indexes_within(s: &str, completions: i64) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i64>(), b.parse::<i64>()),
            None => (part.parse::<i64>(), part.parse::<i64>()),
        };
        if let (Ok(a), Ok(b)) = (a, b)
            && a >= 0
            && a < completions
        {
            out.extend(a..=b.min(completions.saturating_sub(1)));
        }
    }
    out
}

/// Formats indexes as upstream does: sorted, runs of consecutive indexes as `a-b`.
pub fn format_indexes(ix: &BTreeSet<i64>) -> String {
    let mut parts = Vec::new();
    let mut it = ix.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end += 1;
            it.next();
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
    }
    parts.join(",")
}

/// A pod's completion index, from its annotation (or label).
pub fn pod_index(pod: &Value) -> Option<i64> {
    let a = pod.pointer("/metadata/annotations").and_then(|a| a.get(COMPLETION_INDEX)).and_then(Value::as_str);
    let l = pod.pointer("/metadata/labels").and_then(|a| a.get(COMPLETION_INDEX)).and_then(Value::as_str);
    a.or(l)?.parse().ok()
}

fn annotation_count(pod: &Value, key: &str) -> i64 {
    pod.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The index's failures before this pod (its `job-index-failure-count`).
pub fn index_failure_count(pod: &Value) -> i64 {
    annotation_count(pod, INDEX_FAILURE_COUNT)
}

/// The index's failures before this pod that the pod failure policy ignored.
pub fn index_ignored_failure_count(pod: &Value) -> i64 {
    annotation_count(pod, INDEX_IGNORED_FAILURE_COUNT)
}

/// Upstream's `getNewIndexFailureCounts`: the counts for the pod replacing `replaced` (the index's last failed
/// pod): its counts plus its own failure, counted or (by an `Ignore` rule) ignored.
pub fn new_index_failure_counts(policy: Option<&Value>, replaced: Option<&Value>) -> (i64, i64) {
    let Some(p) = replaced else { return (0, 0) };
    let (failures, ignored) = (index_failure_count(p), index_ignored_failure_count(p));
    match failure_policy_action(policy, p).map(|(a, _)| a) {
        Some(FailureAction::Ignore) => (failures, ignored + 1),
        _ => (failures + 1, ignored),
    }
}

/// Upstream's `isIndexFailed`: a failed pod fails its index when a `FailIndex` rule matches it, or when its
/// failure counts and the index already failed `backoffLimitPerIndex` times before it.
pub fn is_index_failed(policy: Option<&Value>, backoff_limit_per_index: i64, pod: &Value) -> bool {
    match failure_policy_action(policy, pod).map(|(a, _)| a) {
        Some(FailureAction::FailIndex) => true,
        Some(FailureAction::Ignore) => false,
        _ => index_failure_count(pod) >= backoff_limit_per_index,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn intervals_round_trip_as_upstream() {
        let ix = parse_indexes("0,2-4,7");
        assert_eq!(ix.iter().copied().collect::<Vec<_>>(), vec![0, 2, 3, 4, 7]);
        assert_eq!(format_indexes(&ix), "0,2-4,7");
        assert_eq!(format_indexes(&BTreeSet::new()), "");
        assert_eq!(format_indexes(&[5, 6].into_iter().collect()), "5-6");
        assert_eq!(format_indexes(&[1, 3, 4, 5].into_iter().collect()), "1,3-5");
        // Cut at completions, malformed parts skipped.
        assert_eq!(format_indexes(&parse_indexes_within("1,3-9,x,12", 5)), "1,3-4");
        assert_eq!(format_indexes(&parse_indexes_within("a-b,2", 5)), "2");
    }

    fn failed(code: i64, failures: &str, ignored: Option<&str>) -> Value {
        let mut p = json!({"metadata": {"namespace": "ns", "name": "p",
                "annotations": {COMPLETION_INDEX: "1", INDEX_FAILURE_COUNT: failures}},
            "status": {"phase": "Failed",
                "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": code}}}]}});
        if let Some(i) = ignored {
            p["metadata"]["annotations"][INDEX_IGNORED_FAILURE_COUNT] = json!(i);
        }
        p
    }

    #[test]
    fn failure_counts_carry_over_to_the_replacement() {
        let policy = json!({"rules": [
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [42]}}]});
        assert_eq!(new_index_failure_counts(None, None), (0, 0));
        assert_eq!(new_index_failure_counts(None, Some(&failed(1, "0", None))), (1, 0));
        assert_eq!(new_index_failure_counts(Some(&policy), Some(&failed(1, "2", Some("1")))), (3, 1));
        assert_eq!(new_index_failure_counts(Some(&policy), Some(&failed(3, "2", Some("1")))), (2, 2));
        assert_eq!(pod_index(&failed(1, "0", None)), Some(1));
    }

    #[test]
    fn an_index_fails_past_its_limit_or_on_fail_index() {
        let policy = json!({"rules": [
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [42]}}]});
        // backoffLimitPerIndex 1: the first failure is retried, the second fails the index.
        assert!(!is_index_failed(None, 1, &failed(1, "0", None)));
        assert!(is_index_failed(None, 1, &failed(1, "1", None)));
        assert!(is_index_failed(None, 0, &failed(1, "0", None)));
        // FailIndex at once; ignored failures never.
        assert!(is_index_failed(Some(&policy), 5, &failed(42, "0", None)));
        assert!(!is_index_failed(Some(&policy), 0, &failed(3, "9", None)));
        assert!(is_index_failed(Some(&policy), 0, &failed(1, "0", None)));
    }
}
