//! `spec.successPolicy` of Indexed Jobs, as upstream's pkg/controller/job/success_policy.go: the first rule whose
//! `succeededIndexes` (all of them, or at least `succeededCount` of them) or bare `succeededCount` the succeeded
//! indexes satisfy declares the Job succeeded (`SuccessCriteriaMet`, reason `SuccessPolicy`).

use std::collections::BTreeSet;

use serde_json::Value;

use super::indexed_job_utils::parse_indexes_within;

/// The reason of the `SuccessCriteriaMet` and `Complete` conditions a success policy rule sets.
pub const REASON: &str = "SuccessPolicy";

/// Upstream's `matchSuccessPolicy`: upstream's message ("Matched rules at index N") for the first matching rule.
pub fn match_success_policy(policy: Option<&Value>, completions: i64, succeeded: &BTreeSet<i64>) -> Option<String> {
    let rules = policy?.get("rules")?.as_array()?;
    if succeeded.is_empty() {
        return None;
    }
    for (i, rule) in rules.iter().enumerate() {
        let count = rule.get("succeededCount").and_then(Value::as_i64);
        let matched = match rule.get("succeededIndexes").and_then(Value::as_str) {
            Some(s) => {
                let required = parse_indexes_within(s, completions);
                // A rule whose indexes do not parse matches nothing.
                if required.is_empty() {
                    continue;
                }
                let hit = required.intersection(succeeded).count() as i64;
                match count {
                    Some(c) => hit >= c,
                    None => hit == required.len() as i64,
                }
            }
            None => count.is_some_and(|c| succeeded.len() as i64 >= c),
        };
        if matched {
            return Some(format!("Matched rules at index {i}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(v: &[i64]) -> BTreeSet<i64> {
        v.iter().copied().collect()
    }

    #[test]
    fn rules_match_indexes_counts_and_both_in_order() {
        let p = json!({"rules": [{"succeededIndexes": "0,2-3"}, {"succeededCount": 2}]});
        assert_eq!(match_success_policy(Some(&p), 5, &set(&[])), None);
        assert_eq!(match_success_policy(Some(&p), 5, &set(&[0])), None);
        assert_eq!(match_success_policy(Some(&p), 5, &set(&[0, 4])).as_deref(), Some("Matched rules at index 1"));
        assert_eq!(match_success_policy(Some(&p), 5, &set(&[0, 2, 3])).as_deref(), Some("Matched rules at index 0"));
        // Both fields: at least succeededCount of the listed indexes.
        let p = json!({"rules": [{"succeededIndexes": "1-3", "succeededCount": 2}]});
        assert_eq!(match_success_policy(Some(&p), 5, &set(&[0, 1, 4])), None);
        assert_eq!(match_success_policy(Some(&p), 5, &set(&[1, 3])).as_deref(), Some("Matched rules at index 0"));
        // Indexes beyond completions do not parse: the rule never matches.
        let p = json!({"rules": [{"succeededIndexes": "7"}]});
        assert_eq!(match_success_policy(Some(&p), 5, &set(&[0, 1, 2, 3, 4])), None);
        assert_eq!(match_success_policy(None, 5, &set(&[0])), None);
    }
}
