//! Job spec validation, as upstream's pkg/apis/batch/validation `validateJobSpec`: non-negative counts,
//! `completionMode`, `backoffLimitPerIndex` / `maxFailedIndexes` (Indexed only), `podFailurePolicy` rules (the
//! `FailIndex` action needs `backoffLimitPerIndex`), `successPolicy` rules (Indexed only, `succeededIndexes` in
//! interval form), `podReplacementPolicy`, and the fields immutable on update; upstream's paths and messages.

use api_types::Cause;
use serde_json::{Value, json};

const MAX_PARALLELISM_FOR_INDEXED_JOB: i64 = 100_000;
const MAX_FAILED_INDEXES_FOR_INDEXED_JOB: i64 = 100_000;
const COMPLETIONS_SOFT_LIMIT: i64 = 100_000;
const PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS: i64 = 10_000;
const MAX_FAILED_INDEXES_LIMIT_FOR_HIGH_COMPLETIONS: i64 = 10_000;
const MAX_POD_FAILURE_POLICY_RULES: usize = 20;
const MAX_SUCCESS_POLICY_RULES: usize = 20;
const MAX_ON_EXIT_CODES_VALUES: usize = 255;
const MAX_ON_POD_CONDITIONS_PATTERNS: usize = 20;
const MAX_SUCCEEDED_INDEXES_LENGTH: usize = 64 * 1024;
const ACTIONS: [&str; 4] = ["Count", "FailIndex", "FailJob", "Ignore"];

fn required(field: String, detail: &str) -> Cause {
    Cause { reason: "FieldValueRequired", field, message: format!("Required value: {detail}") }
}

/// An Invalid cause without the value (upstream's `field.OmitValueType`).
fn invalid_no_value(field: String, detail: &str) -> Cause {
    Cause { reason: "FieldValueInvalid", field, message: format!("Invalid value: {detail}") }
}

fn too_many(field: String, actual: usize, max: usize) -> Cause {
    Cause { reason: "FieldValueTooMany", field, message: format!("Too many: {actual}: must have at most {max} items") }
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn quoted_list(v: &[&str]) -> String {
    format!("[{}]", v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" "))
}

/// Upstream's `validateIndexesFormat`: the number of indexes, or the parse error.
pub fn validate_indexes_format(s: &str, completions: i64) -> Result<i64, String> {
    if s.is_empty() {
        return Ok(0);
    }
    let mut last: Option<i64> = None;
    let mut total = 0;
    for interval in s.split(',') {
        let (x, y) = parse_index_interval(interval, completions)?;
        if let Some(l) = last
            && l >= x
        {
            return Err(format!("non-increasing order, previous: {l}, current: {x}"));
        }
        total += y - x + 1;
        last = Some(y);
    }
    Ok(total)
}

fn parse_index_interval(s: &str, completions: i64) -> Result<(i64, i64), String> {
    let parts: Vec<&str> = s.split('-').collect();
    if parts.len() > 2 {
        return Err(format!(
            "the fragment {s:?} violates the requirement that an index interval can have at most two parts separated by '-'"
        ));
    }
    let num = |p: &str| -> Result<i64, String> {
        let v: i64 = p.parse().map_err(|_| format!("cannot convert string to integer for index: {p:?}"))?;
        if v >= completions {
            return Err(format!("too large index: {p:?}"));
        }
        Ok(v)
    };
    let x = num(parts[0])?;
    if let Some(p) = parts.get(1) {
        let y = num(p)?;
        if x >= y {
            return Err(format!("non-increasing order, previous: {x}, current: {y}"));
        }
        return Ok((x, y));
    }
    Ok((x, x))
}

/// Upstream's `validateJobSpec` for the fields of `spec` (at `path`) this file covers.
pub fn job_spec(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let int = |k: &str| spec.get(k).and_then(Value::as_i64);
    let f = |k: &str| format!("{path}.{k}");
    for k in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        if let Some(v) = int(k)
            && v < 0
        {
            causes.push(Cause::invalid(f(k), &json!(v), "must be greater than or equal to 0"));
        }
    }
    let per_index = int("backoffLimitPerIndex");
    let max_failed = int("maxFailedIndexes");
    let completions = int("completions");
    if max_failed.is_some() && per_index.is_none() {
        causes.push(required(f("backoffLimitPerIndex"), "when maxFailedIndexes is specified"));
    }
    let mode = spec.get("completionMode").and_then(Value::as_str);
    if let Some(m) = mode
        && m != "NonIndexed"
        && m != "Indexed"
    {
        causes.push(Cause::not_supported(f("completionMode"), &json!(m), &["NonIndexed", "Indexed"]));
    }
    let indexed = mode == Some("Indexed");
    if indexed {
        if completions.is_none() {
            causes.push(required(f("completions"), "when completion mode is Indexed"));
        }
        if let Some(p) = int("parallelism")
            && p > MAX_PARALLELISM_FOR_INDEXED_JOB
        {
            let msg = format!(
                "must be less than or equal to {MAX_PARALLELISM_FOR_INDEXED_JOB} when completion mode is Indexed"
            );
            causes.push(Cause::invalid(f("parallelism"), &json!(p), msg));
        }
        if let (Some(c), Some(m)) = (completions, max_failed)
            && m > c
        {
            causes.push(Cause::invalid(f("maxFailedIndexes"), &json!(m), "must be less than or equal to completions"));
        }
        if let Some(m) = max_failed
            && m > MAX_FAILED_INDEXES_FOR_INDEXED_JOB
        {
            let msg = format!("must be less than or equal to {MAX_FAILED_INDEXES_FOR_INDEXED_JOB}");
            causes.push(Cause::invalid(f("maxFailedIndexes"), &json!(m), msg));
        }
        if completions.is_some_and(|c| c > COMPLETIONS_SOFT_LIMIT) && per_index.is_some() {
            if max_failed.is_none() {
                let msg = format!("must be specified when completions is above {COMPLETIONS_SOFT_LIMIT}");
                causes.push(required(f("maxFailedIndexes"), &msg));
            }
            let high =
                format!("when completions are above {COMPLETIONS_SOFT_LIMIT} and used with backoff limit per index");
            if let Some(p) = int("parallelism")
                && p > PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS
            {
                let msg = format!("must be less than or equal to {PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS} {high}");
                causes.push(Cause::invalid(f("parallelism"), &json!(p), msg));
            }
            if let Some(m) = max_failed
                && m > MAX_FAILED_INDEXES_LIMIT_FOR_HIGH_COMPLETIONS
            {
                let msg =
                    format!("must be less than or equal to {MAX_FAILED_INDEXES_LIMIT_FOR_HIGH_COMPLETIONS} {high}");
                causes.push(Cause::invalid(f("maxFailedIndexes"), &json!(m), msg));
            }
        }
    } else {
        if let Some(v) = per_index {
            causes.push(Cause::invalid(f("backoffLimitPerIndex"), &json!(v), "requires indexed completion mode"));
        }
        if let Some(v) = max_failed {
            causes.push(Cause::invalid(f("maxFailedIndexes"), &json!(v), "requires indexed completion mode"));
        }
    }
    let policy = spec.get("podFailurePolicy").filter(|v| !v.is_null());
    if let Some(p) = policy {
        pod_failure_policy(spec, p, &f("podFailurePolicy"), causes);
    }
    if let Some(sp) = spec.get("successPolicy").filter(|v| !v.is_null()) {
        if indexed {
            success_policy(sp, completions.unwrap_or(0), &f("successPolicy"), causes);
        } else {
            causes.push(Cause::invalid(f("successPolicy"), sp, "requires indexed completion mode"));
        }
    }
    if let Some(rp) = spec.get("podReplacementPolicy").and_then(Value::as_str) {
        if policy.is_some() {
            if rp != "Failed" {
                causes.push(Cause::not_supported(f("podReplacementPolicy"), &json!(rp), &["Failed"]));
            }
        } else if rp != "Failed" && rp != "TerminatingOrFailed" {
            causes.push(Cause::not_supported(
                f("podReplacementPolicy"),
                &json!(rp),
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    if policy.is_some()
        && let Some(rp) = spec.pointer("/template/spec/restartPolicy").and_then(Value::as_str)
        && rp == "OnFailure"
    {
        causes.push(Cause::invalid(
            f("template.spec.restartPolicy"),
            &json!(rp),
            "only \"Never\" is supported when podFailurePolicy is specified",
        ));
    }
}

fn pod_failure_policy(spec: &Value, policy: &Value, path: &str, causes: &mut Vec<Cause>) {
    let rules = policy.get("rules").and_then(Value::as_array).cloned().unwrap_or_default();
    let rules_path = format!("{path}.rules");
    if rules.len() > MAX_POD_FAILURE_POLICY_RULES {
        causes.push(too_many(rules_path.clone(), rules.len(), MAX_POD_FAILURE_POLICY_RULES));
    }
    let containers: Vec<&str> = ["/template/spec/containers", "/template/spec/initContainers"]
        .iter()
        .filter_map(|p| spec.pointer(p).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    for (i, rule) in rules.iter().enumerate() {
        let rp = format!("{rules_path}[{i}]");
        match rule.get("action").and_then(Value::as_str).unwrap_or_default() {
            "" => causes.push(required(format!("{rp}.action"), &format!("valid values: {}", quoted_list(&ACTIONS)))),
            "FailIndex" if spec.get("backoffLimitPerIndex").is_none_or(Value::is_null) => causes.push(Cause::invalid(
                format!("{rp}.action"),
                &json!("FailIndex"),
                "requires the backoffLimitPerIndex to be set",
            )),
            a if !ACTIONS.contains(&a) => {
                causes.push(Cause::not_supported(format!("{rp}.action"), &json!(a), &ACTIONS))
            }
            _ => {}
        }
        let on_exit = rule.get("onExitCodes").filter(|v| !v.is_null());
        let on_conds = rule.get("onPodConditions").and_then(Value::as_array).filter(|a| !a.is_empty());
        if let Some(oe) = on_exit {
            on_exit_codes(oe, &containers, &format!("{rp}.onExitCodes"), causes);
        }
        if let Some(pc) = on_conds {
            let pp = format!("{rp}.onPodConditions");
            if pc.len() > MAX_ON_POD_CONDITIONS_PATTERNS {
                causes.push(too_many(pp.clone(), pc.len(), MAX_ON_POD_CONDITIONS_PATTERNS));
            }
            for (j, pattern) in pc.iter().enumerate() {
                let statuses = ["False", "True", "Unknown"];
                match pattern.get("status").and_then(Value::as_str).unwrap_or_default() {
                    "" => causes.push(required(
                        format!("{pp}[{j}].status"),
                        &format!("valid values: {}", quoted_list(&statuses)),
                    )),
                    s if !statuses.contains(&s) => {
                        causes.push(Cause::not_supported(format!("{pp}[{j}].status"), &json!(s), &statuses))
                    }
                    _ => {}
                }
            }
        }
        if on_exit.is_some() && on_conds.is_some() {
            causes
                .push(invalid_no_value(rp.clone(), "specifying both OnExitCodes and OnPodConditions is not supported"));
        }
        if on_exit.is_none() && on_conds.is_none() {
            causes.push(invalid_no_value(rp, "specifying one of OnExitCodes and OnPodConditions is required"));
        }
    }
}

fn on_exit_codes(oe: &Value, containers: &[&str], path: &str, causes: &mut Vec<Cause>) {
    let op = oe.get("operator").and_then(Value::as_str).unwrap_or_default();
    match op {
        "" => causes
            .push(required(format!("{path}.operator"), &format!("valid values: {}", quoted_list(&["In", "NotIn"])))),
        "In" | "NotIn" => {}
        o => causes.push(Cause::not_supported(format!("{path}.operator"), &json!(o), &["In", "NotIn"])),
    }
    if let Some(c) = oe.get("containerName").and_then(Value::as_str)
        && !containers.contains(&c)
    {
        causes.push(Cause::invalid(
            format!("{path}.containerName"),
            &json!(c),
            "must be one of the container or initContainer names in the pod template",
        ));
    }
    let values: Vec<i64> = oe
        .get("values")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    let vp = format!("{path}.values");
    if values.is_empty() {
        causes.push(Cause::invalid(vp.clone(), &json!([]), "at least one value is required"));
    } else if values.len() > MAX_ON_EXIT_CODES_VALUES {
        causes.push(too_many(vp.clone(), values.len(), MAX_ON_EXIT_CODES_VALUES));
    }
    let mut seen = std::collections::HashSet::new();
    for (j, v) in values.iter().enumerate() {
        if op == "In" && *v == 0 {
            causes.push(Cause::invalid(format!("{vp}[{j}]"), &json!(v), "must not be 0 for the In operator"));
        }
        if !seen.insert(*v) {
            causes.push(Cause::duplicate(format!("{vp}[{j}]"), &json!(v)));
        }
    }
    if values.windows(2).any(|w| w[0] > w[1]) {
        causes.push(Cause::invalid(vp, &json!(values), "must be ordered"));
    }
}

fn success_policy(sp: &Value, completions: i64, path: &str, causes: &mut Vec<Cause>) {
    let rules = sp.get("rules").and_then(Value::as_array).cloned().unwrap_or_default();
    let rules_path = format!("{path}.rules");
    if rules.is_empty() {
        causes.push(required(
            rules_path.clone(),
            "at least one rules must be specified when the successPolicy is specified",
        ));
    }
    if rules.len() > MAX_SUCCESS_POLICY_RULES {
        causes.push(too_many(rules_path.clone(), rules.len(), MAX_SUCCESS_POLICY_RULES));
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = format!("{rules_path}[{i}]");
        let indexes = rule.get("succeededIndexes").and_then(Value::as_str);
        let count = rule.get("succeededCount").and_then(Value::as_i64);
        if indexes.is_none() && count.is_none() {
            causes.push(required(rp.clone(), "at least one of succeededCount or succeededIndexes must be specified"));
        }
        let mut total = 0;
        if let Some(s) = indexes {
            let ip = format!("{rp}.succeededIndexes");
            if s.len() > MAX_SUCCEEDED_INDEXES_LENGTH {
                causes.push(Cause {
                    reason: "FieldValueTooLong",
                    field: ip.clone(),
                    message: format!("Too long: may not be more than {MAX_SUCCEEDED_INDEXES_LENGTH} bytes"),
                });
            }
            match validate_indexes_format(s, completions) {
                Ok(t) => total = t,
                Err(e) => causes.push(Cause::invalid(ip, &json!(s), format!("error parsing succeededIndexes: {e}"))),
            }
        }
        if let Some(c) = count {
            let cp = format!("{rp}.succeededCount");
            if c < 0 {
                causes.push(Cause::invalid(cp.clone(), &json!(c), "must be greater than or equal to 0"));
            }
            if c > completions {
                let msg = format!("must be less than or equal to {completions} (the number of specified completions)");
                causes.push(Cause::invalid(cp.clone(), &json!(c), msg));
            }
            if indexes.is_some() && c > total {
                let msg = format!(
                    "must be less than or equal to {total} (the number of indexes in the specified succeededIndexes field)"
                );
                causes.push(Cause::invalid(cp, &json!(c), msg));
            }
        }
    }
}

/// The Job spec fields upstream's `ValidateJobSpecUpdate` keeps immutable (besides the selector and template).
pub fn job_spec_update(spec: &Value, old: &Value, path: &str, causes: &mut Vec<Cause>) {
    for k in ["completionMode", "podFailurePolicy", "backoffLimitPerIndex", "managedBy", "successPolicy"] {
        let (new, was) = (spec.get(k).unwrap_or(&Value::Null), old.get(k).unwrap_or(&Value::Null));
        if new != was {
            causes.push(Cause::invalid(format!("{path}.{k}"), new, "field is immutable"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(spec: Value) -> Vec<String> {
        let mut causes = Vec::new();
        job_spec(&spec, "spec", &mut causes);
        causes.into_iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    const TEMPLATE: &str = r#"{"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}"#;

    fn spec(extra: Value) -> Value {
        let mut s = json!({"template": serde_json::from_str::<Value>(TEMPLATE).unwrap(), "completions": 4});
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        s
    }

    #[test]
    fn indexes_format_as_upstream() {
        assert_eq!(validate_indexes_format("", 5), Ok(0));
        assert_eq!(validate_indexes_format("0,2-4", 5), Ok(4));
        assert_eq!(validate_indexes_format("5", 5), Err("too large index: \"5\"".into()));
        assert_eq!(validate_indexes_format("3-1", 5), Err("non-increasing order, previous: 3, current: 1".into()));
        assert_eq!(validate_indexes_format("2,1", 5), Err("non-increasing order, previous: 2, current: 1".into()));
        assert_eq!(validate_indexes_format("a", 5), Err("cannot convert string to integer for index: \"a\"".into()));
        assert!(validate_indexes_format("1-2-3", 5).unwrap_err().contains("at most two parts separated by '-'"));
    }

    #[test]
    fn per_index_fields_need_an_indexed_job() {
        let e = errors(spec(json!({"backoffLimitPerIndex": 1, "maxFailedIndexes": 1})));
        assert_eq!(
            e,
            vec![
                "spec.backoffLimitPerIndex: Invalid value: 1: requires indexed completion mode",
                "spec.maxFailedIndexes: Invalid value: 1: requires indexed completion mode",
            ]
        );
        let e = errors(spec(json!({"completionMode": "Indexed", "maxFailedIndexes": 5})));
        assert_eq!(
            e,
            vec![
                "spec.backoffLimitPerIndex: Required value: when maxFailedIndexes is specified",
                "spec.maxFailedIndexes: Invalid value: 5: must be less than or equal to completions",
            ]
        );
        assert!(
            errors(spec(json!({"completionMode": "Indexed", "backoffLimitPerIndex": 1, "maxFailedIndexes": 2})))
                .is_empty()
        );
        assert_eq!(
            errors(spec(json!({"completionMode": "Indexed", "backoffLimitPerIndex": -1}))),
            vec!["spec.backoffLimitPerIndex: Invalid value: -1: must be greater than or equal to 0"]
        );
    }

    #[test]
    fn fail_index_needs_backoff_limit_per_index() {
        let rule = json!({"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1]}}]});
        let e = errors(spec(json!({"completionMode": "Indexed", "podFailurePolicy": rule})));
        assert_eq!(
            e,
            vec![
                "spec.podFailurePolicy.rules[0].action: Invalid value: \"FailIndex\": requires the backoffLimitPerIndex to be set"
            ]
        );
        let ok = spec(json!({"completionMode": "Indexed", "backoffLimitPerIndex": 1, "podFailurePolicy": rule}));
        assert!(errors(ok).is_empty());
        let bad = json!({"rules": [
            {"action": "Retry", "onExitCodes": {"operator": "In", "values": [0, 2, 1, 1]}},
            {"action": "Ignore"}]});
        let e = errors(spec(json!({"podFailurePolicy": bad, "podReplacementPolicy": "TerminatingOrFailed"})));
        assert_eq!(
            e,
            vec![
                "spec.podFailurePolicy.rules[0].action: Unsupported value: \"Retry\": supported values: \"Count\", \"FailIndex\", \"FailJob\", \"Ignore\"",
                "spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator",
                "spec.podFailurePolicy.rules[0].onExitCodes.values[3]: Duplicate value: 1",
                "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: [0,2,1,1]: must be ordered",
                "spec.podFailurePolicy.rules[1]: Invalid value: specifying one of OnExitCodes and OnPodConditions is required",
                "spec.podReplacementPolicy: Unsupported value: \"TerminatingOrFailed\": supported values: \"Failed\"",
            ]
        );
    }

    #[test]
    fn success_policy_rules_as_upstream() {
        let sp = json!({"rules": [{"succeededIndexes": "0"}]});
        assert_eq!(
            errors(spec(json!({"successPolicy": sp}))),
            vec![format!("spec.successPolicy: Invalid value: {sp}: requires indexed completion mode")]
        );
        assert!(errors(spec(json!({"completionMode": "Indexed", "successPolicy": sp}))).is_empty());
        let sp = json!({"rules": [{}, {"succeededIndexes": "1-7"}, {"succeededIndexes": "1-2", "succeededCount": 3}]});
        assert_eq!(
            errors(spec(json!({"completionMode": "Indexed", "successPolicy": sp}))),
            vec![
                "spec.successPolicy.rules[0]: Required value: at least one of succeededCount or succeededIndexes must be specified",
                "spec.successPolicy.rules[1].succeededIndexes: Invalid value: \"1-7\": error parsing succeededIndexes: too large index: \"7\"",
                "spec.successPolicy.rules[2].succeededCount: Invalid value: 3: must be less than or equal to 2 (the number of indexes in the specified succeededIndexes field)",
            ]
        );
        let sp = json!({"rules": [{"succeededCount": 5}]});
        assert_eq!(
            errors(spec(json!({"completionMode": "Indexed", "successPolicy": sp}))),
            vec![
                "spec.successPolicy.rules[0].succeededCount: Invalid value: 5: must be less than or equal to 4 (the number of specified completions)"
            ]
        );
        assert_eq!(
            errors(spec(json!({"completionMode": "Indexed", "successPolicy": {"rules": []}}))),
            vec![
                "spec.successPolicy.rules: Required value: at least one rules must be specified when the successPolicy is specified"
            ]
        );
    }

    #[test]
    fn policies_are_immutable() {
        let mut causes = Vec::new();
        let old = json!({"backoffLimitPerIndex": 1, "successPolicy": {"rules": [{"succeededCount": 1}]}});
        job_spec_update(
            &json!({"backoffLimitPerIndex": 2, "successPolicy": old["successPolicy"]}),
            &old,
            "spec",
            &mut causes,
        );
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.backoffLimitPerIndex");
        assert_eq!(causes[0].message, "Invalid value: 2: field is immutable");
    }
}
