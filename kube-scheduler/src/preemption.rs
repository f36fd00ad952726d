//! DefaultPreemption: when a pod fits nowhere, find nodes where evicting lower-priority pods would make it fit,
//! keep as few victims as possible (victims are reprieved highest priority first while the pod still fits, those
//! whose eviction would break a PodDisruptionBudget before the others), and pick the node as upstream does: fewest
//! budget violations, then lowest highest-victim priority, then smallest sum of victim priorities, then fewest
//! victims, then the latest start time of the highest-priority victims. Nodes whose failure eviction cannot
//! resolve (taints, affinity, node name) are skipped.

use std::collections::HashMap;
use std::sync::Arc;

use api_types::selector::LabelSelector;
use serde_json::Value;

use crate::cache::Snapshot;
use crate::config::Profile;
use crate::model::PodInfo;
use crate::plugins::{CycleState, Failure, filter};

#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<PodInfo>,
    /// Victims whose eviction breaks a PodDisruptionBudget.
    pub pdb_violations: usize,
}

/// Splits victims (most important first) into those whose eviction would break a PodDisruptionBudget and the
/// others (upstream's `filterPodsWithPDBViolation`): each victim spends one of `disruptionsAllowed` of every budget
/// in its namespace that selects it (a null or empty selector selects nothing; pods already in the budget's
/// `disruptedPods` are not counted again); a victim that takes a budget below zero violates it.
pub fn split_by_pdb(victims: Vec<PodInfo>, pdbs: &[Arc<Value>]) -> (Vec<PodInfo>, Vec<PodInfo>) {
    let selectors: Vec<Option<LabelSelector>> = pdbs
        .iter()
        .map(|b| b.pointer("/spec/selector").and_then(|s| LabelSelector::from_json(s).ok()).filter(|s| !s.is_empty()))
        .collect();
    let mut allowed: Vec<i64> =
        pdbs.iter().map(|b| b.pointer("/status/disruptionsAllowed").and_then(Value::as_i64).unwrap_or(0)).collect();
    let (mut violating, mut fine) = (Vec::new(), Vec::new());
    for v in victims {
        let labels = v.pod.pointer("/metadata/labels");
        let mut violates = false;
        for (i, pdb) in pdbs.iter().enumerate() {
            let Some(sel) = &selectors[i] else { continue };
            if runtime::namespace(pdb) != runtime::namespace(&v.pod) || !sel.matches_value(labels) {
                continue;
            }
            if pdb.pointer("/status/disruptedPods").and_then(|d| d.get(&v.name)).is_some() {
                continue;
            }
            allowed[i] -= 1;
            violates |= allowed[i] < 0;
        }
        if violates { violating.push(v) } else { fine.push(v) }
    }
    (violating, fine)
}

/// The outcome for the FailedScheduling message: the chosen candidate, or the per-node reasons preemption failed.
pub enum Outcome {
    Preempt(Candidate),
    NotHelpful(String),
}

pub fn preempt(
    profile: &Profile,
    st: &CycleState,
    snap: &Snapshot,
    failures: &HashMap<String, Failure>,
    pdbs: &[Arc<Value>],
) -> Outcome {
    let pod = &st.pod;
    let n = snap.nodes.len();
    if !profile.preemption || pod.pod.pointer("/spec/preemptionPolicy").and_then(Value::as_str) == Some("Never") {
        return Outcome::NotHelpful(String::new());
    }
    let (mut not_helpful, mut no_victims) = (0usize, 0usize);
    let mut candidates = Vec::new();
    for node in &snap.nodes {
        match failures.get(&node.name) {
            Some(f) if f.resolvable => {}
            _ => {
                not_helpful += 1;
                continue;
            }
        }
        let mut lower: Vec<PodInfo> = node.pods.iter().filter(|p| p.priority < pod.priority).cloned().collect();
        if lower.is_empty() {
            no_victims += 1;
            continue;
        }
        let mut trial = (**node).clone();
        for p in &lower {
            trial.remove_pod(&p.uid);
        }
        if filter(profile, st, &trial).is_err() {
            no_victims += 1;
            continue;
        }
        lower.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.start_time.cmp(&b.start_time)));
        let (violating, fine) = split_by_pdb(lower, pdbs);
        let (mut victims, mut pdb_violations) = (Vec::new(), 0);
        for (p, violates) in violating.into_iter().map(|p| (p, true)).chain(fine.into_iter().map(|p| (p, false))) {
            trial.add_pod(p.clone());
            if filter(profile, st, &trial).is_err() {
                trial.remove_pod(&p.uid);
                pdb_violations += usize::from(violates);
                victims.push(p);
            }
        }
        candidates.push(Candidate { node: node.name.clone(), victims, pdb_violations });
    }
    let best = candidates.into_iter().min_by(|a, b| {
        let top = |c: &Candidate| c.victims.iter().map(|v| v.priority).max().unwrap_or(i64::MIN);
        let sum = |c: &Candidate| c.victims.iter().map(|v| v.priority as i128 + (1i128 << 31)).sum::<i128>();
        let latest = |c: &Candidate| {
            let t = top(c);
            c.victims.iter().filter(|v| v.priority == t).map(|v| v.start_time.clone()).min().unwrap_or_default()
        };
        a.pdb_violations
            .cmp(&b.pdb_violations)
            .then(top(a).cmp(&top(b)))
            .then(sum(a).cmp(&sum(b)))
            .then(a.victims.len().cmp(&b.victims.len()))
            .then(latest(b).cmp(&latest(a)))
    });
    match best {
        Some(c) => Outcome::Preempt(c),
        None => {
            let mut parts = Vec::new();
            if no_victims > 0 {
                parts.push(format!("{no_victims} No preemption victims found for incoming pod"));
            }
            if not_helpful > 0 {
                parts.push(format!("{not_helpful} Preemption is not helpful for scheduling"));
            }
            parts.sort();
            Outcome::NotHelpful(format!("preemption: 0/{n} nodes are available: {}.", parts.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::{node, pod};
    use serde_json::json;
    use std::sync::Arc;

    fn with_priority(mut p: Value, prio: i64, node: &str) -> PodInfo {
        p["spec"]["priority"] = json!(prio);
        if !node.is_empty() {
            p["spec"]["nodeName"] = json!(node);
        }
        PodInfo::new(Arc::new(p))
    }

    fn labelled(name: &str, cpu: &str, prio: i64, node: &str, app: &str) -> PodInfo {
        let mut p = pod(name, cpu, "1Mi");
        p["metadata"]["labels"] = json!({"app": app});
        p["metadata"]["namespace"] = json!("default");
        with_priority(p, prio, node)
    }

    fn pdb(app: &str, allowed: i64) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": app, "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": app}}}, "status": {"disruptionsAllowed": allowed}}))
    }

    #[test]
    fn budgets_are_spent_in_order_and_empty_selectors_match_nothing() {
        let v = vec![
            labelled("a", "1", 5, "n", "web"),
            labelled("b", "1", 4, "n", "web"),
            labelled("c", "1", 3, "n", "db"),
        ];
        let mut everything = (*pdb("x", 0)).clone();
        everything["spec"]["selector"] = json!({});
        let (violating, fine) = split_by_pdb(v, &[pdb("web", 1), Arc::new(everything)]);
        let names = |v: &[PodInfo]| v.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        // web allows one disruption: the first web pod spends it, the second breaks the budget.
        assert_eq!(names(&violating), ["b"]);
        assert_eq!(names(&fine), ["a", "c"]);
    }

    #[test]
    fn a_node_whose_victims_break_no_budget_is_preferred() {
        // n1's victim is the cheapest by priority but protected by a budget that allows no disruption.
        let mut n1 = node("n1", "1", "4Gi");
        n1.add_pod(labelled("guarded", "1", 1, "n1", "web"));
        let mut n2 = node("n2", "1", "4Gi");
        n2.add_pod(labelled("free", "1", 10, "n2", "batch"));
        let snap = Snapshot { nodes: vec![Arc::new(n1), Arc::new(n2)], have_anti_affinity: false };
        let st = CycleState::new(labelled("hi", "1", 1000, "", "x"), &snap, &Profile::default());
        let failures: HashMap<String, Failure> =
            snap.nodes.iter().map(|n| (n.name.clone(), filter(&Profile::default(), &st, n).unwrap_err())).collect();
        let Outcome::Preempt(c) = preempt(&Profile::default(), &st, &snap, &failures, &[pdb("web", 0)]) else {
            panic!("no candidate")
        };
        assert_eq!((c.node.as_str(), c.pdb_violations), ("n2", 0));
        // Without the budget, n1's lower-priority victim wins.
        let Outcome::Preempt(c) = preempt(&Profile::default(), &st, &snap, &failures, &[]) else { panic!() };
        assert_eq!(c.node, "n1");
    }

    #[test]
    fn fewest_and_lowest_victims_on_the_best_node() {
        let mut n1 = node("n1", "2", "4Gi");
        n1.add_pod(with_priority(pod("a", "1", "1Mi"), 100, "n1"));
        n1.add_pod(with_priority(pod("b", "1", "1Mi"), 1, "n1"));
        let mut n2 = node("n2", "2", "4Gi");
        n2.add_pod(with_priority(pod("c", "2", "1Mi"), 50, "n2"));
        let snap = Snapshot { nodes: vec![Arc::new(n1), Arc::new(n2)], have_anti_affinity: false };
        let incoming = with_priority(pod("hi", "1", "1Mi"), 1000, "");
        let st = CycleState::new(incoming, &snap, &Profile::default());
        let failures: HashMap<String, Failure> =
            snap.nodes.iter().map(|n| (n.name.clone(), filter(&Profile::default(), &st, n).unwrap_err())).collect();
        let Outcome::Preempt(c) = preempt(&Profile::default(), &st, &snap, &failures, &[]) else {
            panic!("no candidate")
        };
        // n1 needs only b (priority 1) evicted; n2 would lose a priority-50 pod.
        assert_eq!(c.node, "n1");
        assert_eq!(c.victims.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), vec!["b"]);
        // A pod that does not outrank anyone preempts nothing.
        let low = CycleState::new(with_priority(pod("lo", "1", "1Mi"), 0, ""), &snap, &Profile::default());
        let Outcome::NotHelpful(msg) = preempt(&Profile::default(), &low, &snap, &failures, &[]) else { panic!() };
        assert_eq!(msg, "preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.");
    }
}
