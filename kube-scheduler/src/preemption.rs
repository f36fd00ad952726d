//! DefaultPreemption: when a pod fits nowhere, find nodes where evicting lower-priority pods would make it fit,
//! keep as few victims as possible (victims are reprieved highest priority first while the pod still fits), and
//! pick the node as upstream does: lowest highest-victim priority, then smallest sum of victim priorities, then
//! fewest victims, then the latest start time of the highest-priority victims. Nodes whose failure eviction
//! cannot resolve (taints, affinity, node name) are skipped. PodDisruptionBudgets are not weighed yet.

use std::collections::HashMap;

use serde_json::Value;

use crate::cache::Snapshot;
use crate::config::Profile;
use crate::model::PodInfo;
use crate::plugins::{CycleState, Failure, filter};

#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<PodInfo>,
}

/// The outcome for the FailedScheduling message: the chosen candidate, or the per-node reasons preemption failed.
pub enum Outcome {
    Preempt(Candidate),
    NotHelpful(String),
}

pub fn preempt(profile: &Profile, st: &CycleState, snap: &Snapshot, failures: &HashMap<String, Failure>) -> Outcome {
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
        let mut victims = Vec::new();
        for p in lower {
            trial.add_pod(p.clone());
            if filter(profile, st, &trial).is_err() {
                trial.remove_pod(&p.uid);
                victims.push(p);
            }
        }
        candidates.push(Candidate { node: node.name.clone(), victims });
    }
    let best = candidates.into_iter().min_by(|a, b| {
        let top = |c: &Candidate| c.victims.iter().map(|v| v.priority).max().unwrap_or(i64::MIN);
        let sum = |c: &Candidate| c.victims.iter().map(|v| v.priority as i128 + (1i128 << 31)).sum::<i128>();
        let latest = |c: &Candidate| {
            let t = top(c);
            c.victims.iter().filter(|v| v.priority == t).map(|v| v.start_time.clone()).min().unwrap_or_default()
        };
        top(a)
            .cmp(&top(b))
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
        let Outcome::Preempt(c) = preempt(&Profile::default(), &st, &snap, &failures) else { panic!("no candidate") };
        // n1 needs only b (priority 1) evicted; n2 would lose a priority-50 pod.
        assert_eq!(c.node, "n1");
        assert_eq!(c.victims.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), vec!["b"]);
        // A pod that does not outrank anyone preempts nothing.
        let low = CycleState::new(with_priority(pod("lo", "1", "1Mi"), 0, ""), &snap, &Profile::default());
        let Outcome::NotHelpful(msg) = preempt(&Profile::default(), &low, &snap, &failures) else { panic!() };
        assert_eq!(msg, "preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.");
    }
}
