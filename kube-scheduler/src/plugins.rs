//! The filter and score plugins, with upstream's names, reasons and default weights. Per pod, [`CycleState::new`]
//! computes what the plugins share across nodes (affinity counts, topology spread counts); then [`filter`] runs
//! the profile's filters on one node (stopping at the first that fails, as upstream) and [`score`] gives each
//! feasible node its weighted, normalized total.

use std::collections::{BTreeMap, HashMap, HashSet};

use runtime::array;
use serde_json::Value;

use crate::cache::Snapshot;
use crate::config::Profile;
use crate::model::{NodeInfo, PodInfo, node_selector_term_matches, selector_matches, string_map};

pub const MAX_NODE_SCORE: i64 = 100;

/// Why a node does not fit; `resolvable` says whether preempting pods could change that.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reasons: Vec<String>,
    pub resolvable: bool,
}

impl Failure {
    fn hard(reason: impl Into<String>) -> Self {
        Failure { reasons: vec![reason.into()], resolvable: false }
    }
    fn soft(reasons: Vec<String>) -> Self {
        Failure { reasons, resolvable: true }
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

/// Whether a toleration tolerates a taint (upstream's ToleratesTaint).
pub fn tolerates(t: &Value, taint: &Value) -> bool {
    let effect = s(t, "effect");
    if !effect.is_empty() && effect != s(taint, "effect") {
        return false;
    }
    let key = s(t, "key");
    match s(t, "operator") {
        "Exists" => key.is_empty() || key == s(taint, "key"),
        "" | "Equal" => key == s(taint, "key") && s(t, "value") == s(taint, "value"),
        _ => false,
    }
}

/// An affinity term resolved: which pods it selects, over which topology.
#[derive(Debug, Clone)]
struct Term {
    selector: Value,
    namespaces: Option<HashSet<String>>,
    topology_key: String,
    weight: i64,
}

impl Term {
    fn new(term: &Value, pod_ns: &str, weight: i64) -> Self {
        let mut namespaces: HashSet<String> =
            array(term, "/namespaces").iter().filter_map(Value::as_str).map(str::to_string).collect();
        // An empty namespaceSelector selects every namespace; a non-empty one is not evaluated here (no
        // namespace labels in the snapshot) and also selects every namespace.
        let all = term.get("namespaceSelector").is_some_and(|s| !s.is_null());
        if namespaces.is_empty() && !all {
            namespaces.insert(pod_ns.to_string());
        }
        Term {
            selector: term.get("labelSelector").cloned().unwrap_or(Value::Null),
            namespaces: if all { None } else { Some(namespaces) },
            topology_key: s(term, "topologyKey").to_string(),
            weight,
        }
    }

    fn matches(&self, p: &PodInfo) -> bool {
        self.namespaces.as_ref().is_none_or(|n| n.contains(&p.namespace))
            && selector_matches(Some(&self.selector), &p.labels)
    }
}

fn terms(pod: &Value, path: &str, ns: &str) -> Vec<Term> {
    array(pod, path).iter().map(|t| Term::new(t, ns, 1)).collect()
}

fn weighted_terms(pod: &Value, path: &str, ns: &str) -> Vec<Term> {
    array(pod, path)
        .iter()
        .filter_map(|w| {
            Some(Term::new(w.get("podAffinityTerm")?, ns, w.get("weight").and_then(Value::as_i64).unwrap_or(0)))
        })
        .collect()
}

/// One topology spread constraint with its pod counts per domain.
#[derive(Debug, Clone)]
struct Spread {
    max_skew: i64,
    key: String,
    hard: bool,
    self_match: i64,
    counts: HashMap<String, i64>,
    min: i64,
}

/// What the plugins precompute for one pod in one cycle.
pub struct CycleState {
    pub pod: PodInfo,
    /// The pod's `spec.nodeName` (empty when unset).
    node_name: String,
    /// Whether the pod tolerates the `node.kubernetes.io/unschedulable` taint.
    tolerates_unschedulable: bool,
    tolerations: Vec<Value>,
    node_selector: BTreeMap<String, String>,
    required_node_terms: Option<Vec<Value>>,
    preferred_node_terms: Vec<(i64, Value)>,
    /// Required affinity terms with the topology values where matching pods are.
    affinity: Vec<(Term, HashSet<String>)>,
    /// Whether the pod matches all its own affinity terms (the first pod of a group may land anywhere).
    affinity_self_match: bool,
    anti_affinity: Vec<(Term, HashSet<String>)>,
    /// (topologyKey, value) where existing pods' required anti-affinity forbids this pod.
    existing_anti: HashSet<(String, String)>,
    /// Preferred (anti-)affinity score per (topologyKey, value).
    affinity_scores: HashMap<(String, String), i64>,
    spread: Vec<Spread>,
    /// The pod's images (normalized) and how many nodes have each, for ImageLocality.
    images: Vec<String>,
    image_spread: HashMap<String, usize>,
    total_nodes: usize,
}

fn images(pod: &Value) -> Vec<String> {
    array(pod, "/spec/containers").iter().map(|c| normalize_image(s(c, "image"))).collect()
}

/// `busybox` -> `docker.io/library/busybox:latest`, as node status lists images.
pub fn normalize_image(image: &str) -> String {
    let mut name = image.to_string();
    let last = name.rsplit('/').next().unwrap_or_default();
    if !last.contains(':') && !last.contains('@') {
        name.push_str(":latest");
    }
    let first = name.split('/').next().unwrap_or_default();
    if !name.contains('/') {
        format!("docker.io/library/{name}")
    } else if !(first.contains('.') || first.contains(':') || first == "localhost") {
        format!("docker.io/{name}")
    } else {
        name
    }
}

impl CycleState {
    pub fn new(pod: PodInfo, snap: &Snapshot, profile: &Profile) -> Self {
        let p = pod.pod.clone();
        let ns = pod.namespace.clone();
        let required_node_terms = p
            .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
            .and_then(Value::as_array)
            .cloned();
        let preferred_node_terms =
            array(&p, "/spec/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution")
                .iter()
                .filter_map(|t| {
                    Some((t.get("weight").and_then(Value::as_i64).unwrap_or(0), t.get("preference")?.clone()))
                })
                .collect();
        let tolerations = array(&p, "/spec/tolerations").to_vec();
        let unschedulable = serde_json::json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"});
        let mut st = CycleState {
            node_name: p.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default().to_string(),
            tolerates_unschedulable: tolerations.iter().any(|t| tolerates(t, &unschedulable)),
            tolerations,
            node_selector: string_map(p.pointer("/spec/nodeSelector")),
            required_node_terms,
            preferred_node_terms,
            affinity: Vec::new(),
            affinity_self_match: false,
            anti_affinity: Vec::new(),
            existing_anti: HashSet::new(),
            affinity_scores: HashMap::new(),
            spread: Vec::new(),
            images: Vec::new(),
            image_spread: HashMap::new(),
            total_nodes: snap.nodes.len(),
            pod,
        };
        let uses =
            |name: &str| profile.filters.iter().any(|f| f == name) || profile.scores.iter().any(|(f, _)| f == name);
        if uses("InterPodAffinity") {
            st.inter_pod_affinity(snap, &ns);
        }
        if uses("PodTopologySpread") {
            st.topology_spread(snap, &ns);
        }
        if uses("ImageLocality") {
            st.images = images(&p);
            let wanted: HashSet<String> = st.images.iter().cloned().collect();
            for n in &snap.nodes {
                for img in &wanted {
                    if n.images.contains_key(img) {
                        *st.image_spread.entry(img.clone()).or_default() += 1;
                    }
                }
            }
        }
        st
    }

    fn inter_pod_affinity(&mut self, snap: &Snapshot, ns: &str) {
        let p = self.pod.pod.clone();
        let base = "/spec/affinity/podAffinity";
        let anti = "/spec/affinity/podAntiAffinity";
        let req_aff = terms(&p, &format!("{base}/requiredDuringSchedulingIgnoredDuringExecution"), ns);
        let req_anti = terms(&p, &format!("{anti}/requiredDuringSchedulingIgnoredDuringExecution"), ns);
        let pref_aff = weighted_terms(&p, &format!("{base}/preferredDuringSchedulingIgnoredDuringExecution"), ns);
        let pref_anti = weighted_terms(&p, &format!("{anti}/preferredDuringSchedulingIgnoredDuringExecution"), ns);
        let nothing = req_aff.is_empty() && req_anti.is_empty() && pref_aff.is_empty() && pref_anti.is_empty();
        if nothing && !snap.have_anti_affinity {
            return;
        }
        self.affinity_self_match = !req_aff.is_empty() && req_aff.iter().all(|t| t.matches(&self.pod));
        self.affinity = req_aff.into_iter().map(|t| (t, HashSet::new())).collect();
        self.anti_affinity = req_anti.into_iter().map(|t| (t, HashSet::new())).collect();
        for node in &snap.nodes {
            for existing in &node.pods {
                for (t, vals) in self.affinity.iter_mut().chain(self.anti_affinity.iter_mut()) {
                    if let Some(v) = node.labels.get(&t.topology_key)
                        && t.matches(existing)
                    {
                        vals.insert(v.clone());
                    }
                }
                for (t, sign) in pref_aff.iter().map(|t| (t, 1)).chain(pref_anti.iter().map(|t| (t, -1))) {
                    if let Some(v) = node.labels.get(&t.topology_key)
                        && t.matches(existing)
                    {
                        *self.affinity_scores.entry((t.topology_key.clone(), v.clone())).or_default() +=
                            sign * t.weight;
                    }
                }
                if existing.has_required_anti_affinity {
                    let their = terms(
                        &existing.pod,
                        &format!("{anti}/requiredDuringSchedulingIgnoredDuringExecution"),
                        &existing.namespace,
                    );
                    for t in their {
                        if let Some(v) = node.labels.get(&t.topology_key)
                            && t.matches(&self.pod)
                        {
                            self.existing_anti.insert((t.topology_key.clone(), v.clone()));
                        }
                    }
                }
            }
        }
    }

    fn node_affinity_ok(&self, node: &NodeInfo) -> bool {
        if !self.node_selector.iter().all(|(k, v)| node.labels.get(k) == Some(v)) {
            return false;
        }
        match &self.required_node_terms {
            Some(terms) => terms.iter().any(|t| node_selector_term_matches(t, node)),
            None => true,
        }
    }

    fn topology_spread(&mut self, snap: &Snapshot, ns: &str) {
        let p = self.pod.pod.clone();
        for c in array(&p, "/spec/topologySpreadConstraints") {
            let key = s(c, "topologyKey").to_string();
            let selector = c.get("labelSelector").cloned().unwrap_or(Value::Null);
            let mut counts: HashMap<String, i64> = HashMap::new();
            let honor_affinity = s(c, "nodeAffinityPolicy") != "Ignore";
            for node in &snap.nodes {
                let Some(v) = node.labels.get(&key) else { continue };
                if honor_affinity && !self.node_affinity_ok(node) {
                    continue;
                }
                let n = node
                    .pods
                    .iter()
                    .filter(|e| e.namespace == ns && e.pod.pointer("/metadata/deletionTimestamp").is_none())
                    .filter(|e| selector_matches(Some(&selector), &e.labels))
                    .count() as i64;
                *counts.entry(v.clone()).or_default() += n;
            }
            let min_domains = c.get("minDomains").and_then(Value::as_i64).unwrap_or(1);
            let min = if (counts.len() as i64) < min_domains { 0 } else { counts.values().copied().min().unwrap_or(0) };
            self.spread.push(Spread {
                max_skew: c.get("maxSkew").and_then(Value::as_i64).unwrap_or(1),
                key,
                hard: s(c, "whenUnsatisfiable") != "ScheduleAnyway",
                self_match: selector_matches(Some(&selector), &self.pod.labels) as i64,
                counts,
                min,
            });
        }
    }
}

/// Runs the profile's filters on one node; the first failure is the node's.
pub fn filter(profile: &Profile, st: &CycleState, node: &NodeInfo) -> Result<(), Failure> {
    for f in &profile.filters {
        match f.as_str() {
            "NodeUnschedulable" if node.unschedulable && !st.tolerates_unschedulable => {
                return Err(Failure::hard("node(s) were unschedulable"));
            }
            "NodeName" => {
                let want = &st.node_name;
                if !want.is_empty() && *want != node.name {
                    return Err(Failure::hard("node(s) didn't match the requested node name"));
                }
            }
            "TaintToleration" => {
                for taint in &node.taints {
                    let effect = s(taint, "effect");
                    if (effect == "NoSchedule" || effect == "NoExecute")
                        && !st.tolerations.iter().any(|t| tolerates(t, taint))
                    {
                        return Err(Failure::hard(format!(
                            "node(s) had untolerated taint {{{}: {}}}",
                            s(taint, "key"),
                            s(taint, "value")
                        )));
                    }
                }
            }
            "NodeAffinity" if !st.node_affinity_ok(node) => {
                return Err(Failure::hard("node(s) didn't match Pod's node affinity/selector"));
            }
            "NodePorts" => {
                for (proto, ip, port) in &st.pod.host_ports {
                    let clash = node.pods.iter().flat_map(|p| p.host_ports.iter()).any(|(p2, ip2, port2)| {
                        p2 == proto && port2 == port && (ip == ip2 || ip == "0.0.0.0" || ip2 == "0.0.0.0")
                    });
                    if clash {
                        return Err(Failure::soft(vec![
                            "node(s) didn't have free ports for the requested pod ports".into(),
                        ]));
                    }
                }
            }
            "NodeResourcesFit" => {
                let reasons = insufficient(&st.pod, node);
                if !reasons.is_empty() {
                    return Err(Failure::soft(reasons));
                }
            }
            "PodTopologySpread" => {
                for c in st.spread.iter().filter(|c| c.hard) {
                    let Some(v) = node.labels.get(&c.key) else {
                        return Err(Failure::hard(
                            "node(s) didn't match pod topology spread constraints (missing required label)",
                        ));
                    };
                    let count = c.counts.get(v).copied().unwrap_or(0);
                    if count + c.self_match - c.min > c.max_skew {
                        return Err(Failure::soft(vec!["node(s) didn't match pod topology spread constraints".into()]));
                    }
                }
            }
            "InterPodAffinity" => {
                for (key, v) in &st.existing_anti {
                    if node.labels.get(key) == Some(v) {
                        return Err(Failure::soft(vec![
                            "node(s) didn't satisfy existing pods anti-affinity rules".into(),
                        ]));
                    }
                }
                for (t, vals) in &st.anti_affinity {
                    if node.labels.get(&t.topology_key).is_some_and(|v| vals.contains(v)) {
                        return Err(Failure::soft(vec!["node(s) didn't match pod anti-affinity rules".into()]));
                    }
                }
                if !st.affinity.is_empty() {
                    let none_anywhere = st.affinity.iter().all(|(_, vals)| vals.is_empty());
                    let ok = st
                        .affinity
                        .iter()
                        .all(|(t, vals)| node.labels.get(&t.topology_key).is_some_and(|v| vals.contains(v)))
                        || (none_anywhere
                            && st.affinity_self_match
                            && st.affinity.iter().all(|(t, _)| node.labels.contains_key(&t.topology_key)));
                    if !ok {
                        return Err(Failure::hard("node(s) didn't match pod affinity rules"));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// NodeResourcesFit's reasons: "Too many pods", "Insufficient cpu", ...
pub fn insufficient(pod: &PodInfo, node: &NodeInfo) -> Vec<String> {
    let mut out = Vec::new();
    if node.allocatable.pods > 0 && node.pods.len() as i64 + 1 > node.allocatable.pods {
        out.push("Too many pods".to_string());
    }
    let r = &pod.requests;
    let (a, u) = (&node.allocatable, &node.requested);
    if r.milli_cpu > 0 && r.milli_cpu > a.milli_cpu - u.milli_cpu {
        out.push("Insufficient cpu".into());
    }
    if r.memory > 0 && r.memory > a.memory - u.memory {
        out.push("Insufficient memory".into());
    }
    if r.ephemeral_storage > 0 && r.ephemeral_storage > a.ephemeral_storage - u.ephemeral_storage {
        out.push("Insufficient ephemeral-storage".into());
    }
    for (k, v) in &r.scalar {
        if *v > 0 && *v > a.get(k) - u.get(k) {
            out.push(format!("Insufficient {k}"));
        }
    }
    out
}

fn resource_score(profile: &Profile, st: &CycleState, node: &NodeInfo) -> i64 {
    let (mut total, mut weights) = (0i64, 0i64);
    for (name, w) in &profile.strategy.resources {
        let alloc = node.allocatable.get(name);
        let req = node.non_zero_requested.get(name) + st.pod.non_zero.get(name);
        let s = if alloc == 0 {
            0
        } else if profile.strategy.most_allocated {
            req.min(alloc) * MAX_NODE_SCORE / alloc
        } else if req > alloc {
            0
        } else {
            (alloc - req) * MAX_NODE_SCORE / alloc
        };
        total += s * w;
        weights += w;
    }
    if weights == 0 { 0 } else { total / weights }
}

fn balanced_score(st: &CycleState, node: &NodeInfo) -> i64 {
    let frac = |name: &str| {
        let alloc = node.allocatable.get(name);
        if alloc == 0 {
            return 1.0;
        }
        ((node.non_zero_requested.get(name) + st.pod.non_zero.get(name)) as f64 / alloc as f64).min(1.0)
    };
    let (c, m) = (frac("cpu"), frac("memory"));
    let std = (c - m).abs() / 2.0;
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

const MIN_IMAGE_THRESHOLD: i64 = 23 * 1024 * 1024;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * 1024 * 1024;

fn image_score(st: &CycleState, node: &NodeInfo) -> i64 {
    let wanted = &st.images;
    let mut sum = 0i64;
    for img in wanted {
        if let Some(size) = node.images.get(img) {
            let spread = st.image_spread.get(img).copied().unwrap_or(0) as f64 / st.total_nodes.max(1) as f64;
            sum += (*size as f64 * spread) as i64;
        }
    }
    let max = MAX_CONTAINER_THRESHOLD * wanted.len().max(1) as i64;
    let sum = sum.clamp(MIN_IMAGE_THRESHOLD, max);
    MAX_NODE_SCORE * (sum - MIN_IMAGE_THRESHOLD) / (max - MIN_IMAGE_THRESHOLD)
}

/// Scales raw scores to 0..100 by the maximum (reversed: the lowest raw score gets 100).
fn normalize_max(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    for s in scores.iter_mut() {
        *s = if max == 0 {
            if reverse { MAX_NODE_SCORE } else { 0 }
        } else {
            let v = *s * MAX_NODE_SCORE / max;
            if reverse { MAX_NODE_SCORE - v } else { v }
        };
    }
}

/// Scales raw scores (possibly negative) to 0..100 between their minimum and maximum.
fn normalize_min_max(scores: &mut [i64], reverse: bool) {
    let (min, max) = (scores.iter().copied().min().unwrap_or(0), scores.iter().copied().max().unwrap_or(0));
    for s in scores.iter_mut() {
        let v = if max == min { 0 } else { (*s - min) * MAX_NODE_SCORE / (max - min) };
        *s = if reverse { MAX_NODE_SCORE - v } else { v };
    }
}

/// The weighted total of every score plugin for each of `nodes`.
pub fn score(profile: &Profile, st: &CycleState, nodes: &[&NodeInfo]) -> Vec<i64> {
    let mut total = vec![0i64; nodes.len()];
    for (name, weight) in &profile.scores {
        let mut s: Vec<i64> = match name.as_str() {
            "NodeResourcesFit" => nodes.iter().map(|n| resource_score(profile, st, n)).collect(),
            "NodeResourcesBalancedAllocation" => nodes.iter().map(|n| balanced_score(st, n)).collect(),
            "ImageLocality" => nodes.iter().map(|n| image_score(st, n)).collect(),
            "TaintToleration" => {
                let mut s: Vec<i64> = nodes
                    .iter()
                    .map(|n| {
                        n.taints
                            .iter()
                            .filter(|t| s(t, "effect") == "PreferNoSchedule")
                            .filter(|t| !st.tolerations.iter().any(|tol| tolerates(tol, t)))
                            .count() as i64
                    })
                    .collect();
                normalize_max(&mut s, true);
                s
            }
            "NodeAffinity" => {
                let mut s: Vec<i64> = nodes
                    .iter()
                    .map(|n| {
                        st.preferred_node_terms
                            .iter()
                            .filter(|(_, t)| node_selector_term_matches(t, n))
                            .map(|(w, _)| *w)
                            .sum()
                    })
                    .collect();
                normalize_max(&mut s, false);
                s
            }
            "InterPodAffinity" => {
                if st.affinity_scores.is_empty() {
                    continue;
                }
                let mut s: Vec<i64> = nodes
                    .iter()
                    .map(|n| {
                        n.labels
                            .iter()
                            .map(|(k, v)| st.affinity_scores.get(&(k.clone(), v.clone())).copied().unwrap_or(0))
                            .sum()
                    })
                    .collect();
                normalize_min_max(&mut s, false);
                s
            }
            "PodTopologySpread" => {
                let soft: Vec<&Spread> = st.spread.iter().filter(|c| !c.hard).collect();
                if soft.is_empty() {
                    continue;
                }
                let mut s: Vec<i64> = nodes
                    .iter()
                    .map(|n| {
                        soft.iter()
                            .map(|c| n.labels.get(&c.key).map(|v| c.counts.get(v).copied().unwrap_or(0)).unwrap_or(0))
                            .sum()
                    })
                    .collect();
                normalize_min_max(&mut s, true);
                s
            }
            _ => continue,
        };
        for (t, v) in total.iter_mut().zip(s.iter_mut()) {
            *t += *v * weight;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Snapshot;
    use crate::model::testing::{node, pod};
    use serde_json::json;
    use std::sync::Arc;

    fn snap(nodes: Vec<NodeInfo>) -> Snapshot {
        let have_anti_affinity = nodes.iter().any(|n| n.pods.iter().any(|p| p.has_required_anti_affinity));
        Snapshot { nodes: nodes.into_iter().map(Arc::new).collect(), have_anti_affinity }
    }

    fn state(p: Value, s: &Snapshot) -> CycleState {
        CycleState::new(PodInfo::new(Arc::new(p)), s, &Profile::default())
    }

    fn placed(mut n: NodeInfo, p: Value) -> NodeInfo {
        let mut p = p;
        p["spec"]["nodeName"] = json!(n.name.clone());
        n.add_pod(PodInfo::new(Arc::new(p)));
        n
    }

    #[test]
    fn resources_fit_with_upstream_reasons() {
        let full = placed(node("n1", "1", "1Gi"), pod("a", "800m", "512Mi"));
        let s = snap(vec![full.clone()]);
        let st = state(pod("b", "300m", "600Mi"), &s);
        let f = filter(&Profile::default(), &st, &full).unwrap_err();
        assert_eq!(f.reasons, vec!["Insufficient cpu", "Insufficient memory"]);
        assert!(f.resolvable);
        let st = state(pod("c", "100m", "100Mi"), &s);
        assert!(filter(&Profile::default(), &st, &full).is_ok());
    }

    #[test]
    fn taints_tolerations_unschedulable_and_node_selector() {
        let mut n = node("n1", "4", "4Gi");
        n.taints = vec![json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"})];
        let s = snap(vec![n.clone()]);
        let err = filter(&Profile::default(), &state(pod("a", "1", "1Mi"), &s), &n).unwrap_err();
        assert_eq!(err.reasons, vec!["node(s) had untolerated taint {dedicated: gpu}"]);
        assert!(!err.resolvable);
        let mut p = pod("a", "1", "1Mi");
        p["spec"]["tolerations"] = json!([{"key": "dedicated", "operator": "Exists"}]);
        assert!(filter(&Profile::default(), &state(p.clone(), &s), &n).is_ok());
        n.unschedulable = true;
        assert_eq!(
            filter(&Profile::default(), &state(p.clone(), &s), &n).unwrap_err().reasons,
            vec!["node(s) were unschedulable"]
        );
        n.unschedulable = false;
        p["spec"]["nodeSelector"] = json!({"disk": "ssd"});
        assert_eq!(
            filter(&Profile::default(), &state(p.clone(), &s), &n).unwrap_err().reasons,
            vec!["node(s) didn't match Pod's node affinity/selector"]
        );
        n.labels.insert("disk".into(), "ssd".into());
        assert!(filter(&Profile::default(), &state(p, &s), &n).is_ok());
    }

    #[test]
    fn host_ports_conflict() {
        let mut a = pod("a", "1m", "1Mi");
        a["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 8080}]);
        let n = placed(node("n1", "4", "4Gi"), a.clone());
        let s = snap(vec![n.clone()]);
        a["metadata"]["uid"] = json!("other");
        assert!(filter(&Profile::default(), &state(a, &s), &n).is_err());
    }

    #[test]
    fn pod_anti_affinity_and_affinity_by_hostname() {
        let mut web = pod("web-1", "1m", "1Mi");
        web["metadata"]["labels"] = json!({"app": "web"});
        let n1 = placed(node("n1", "4", "4Gi"), web.clone());
        let n2 = node("n2", "4", "4Gi");
        let s = snap(vec![n1.clone(), n2.clone()]);
        let mut next = pod("web-2", "1m", "1Mi");
        next["metadata"]["labels"] = json!({"app": "web"});
        next["spec"]["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}});
        let st = state(next.clone(), &s);
        assert_eq!(
            filter(&Profile::default(), &st, &n1).unwrap_err().reasons,
            vec!["node(s) didn't match pod anti-affinity rules"]
        );
        assert!(filter(&Profile::default(), &st, &n2).is_ok());
        // An existing pod's anti-affinity keeps matching pods away from it.
        let n1 = placed(node("n1", "4", "4Gi"), next.clone());
        let s = snap(vec![n1.clone(), n2.clone()]);
        let st = state(web, &s);
        assert_eq!(
            filter(&Profile::default(), &st, &n1).unwrap_err().reasons,
            vec!["node(s) didn't satisfy existing pods anti-affinity rules"]
        );
        // Affinity: only where a matching pod is.
        let mut cache = pod("cache", "1m", "1Mi");
        cache["spec"]["affinity"] = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}});
        let st = state(cache, &s);
        assert!(filter(&Profile::default(), &st, &n1).is_ok());
        assert_eq!(
            filter(&Profile::default(), &st, &n2).unwrap_err().reasons,
            vec!["node(s) didn't match pod affinity rules"]
        );
    }

    #[test]
    fn topology_spread_do_not_schedule() {
        let mut p = pod("s-1", "1m", "1Mi");
        p["metadata"]["labels"] = json!({"app": "s"});
        let n1 = placed(placed(node("n1", "4", "4Gi"), p.clone()), {
            let mut q = p.clone();
            q["metadata"]["uid"] = json!("u2");
            q
        });
        let n2 = node("n2", "4", "4Gi");
        let s = snap(vec![n1.clone(), n2.clone()]);
        let mut new = p.clone();
        new["metadata"]["uid"] = json!("u3");
        new["spec"]["topologySpreadConstraints"] = json!([{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "s"}}}]);
        let st = state(new, &s);
        assert!(filter(&Profile::default(), &st, &n1).is_err());
        assert!(filter(&Profile::default(), &st, &n2).is_ok());
    }

    #[test]
    fn scores_prefer_the_emptier_node_and_most_allocated_packs() {
        let busy = placed(node("busy", "4", "8Gi"), pod("a", "3", "6Gi"));
        let idle = node("idle", "4", "8Gi");
        let s = snap(vec![busy.clone(), idle.clone()]);
        let st = state(pod("b", "500m", "1Gi"), &s);
        let sc = score(&Profile::default(), &st, &[&busy, &idle]);
        assert!(sc[1] > sc[0], "{sc:?}");
        let mut packer = Profile::default();
        packer.strategy.most_allocated = true;
        packer.scores = vec![("NodeResourcesFit".into(), 1)];
        let sc = score(&packer, &st, &[&busy, &idle]);
        assert!(sc[0] > sc[1], "{sc:?}");
        // PreferNoSchedule taints lower a node's score.
        let mut tainted = node("t", "4", "8Gi");
        tainted.taints = vec![json!({"key": "k", "effect": "PreferNoSchedule"})];
        let only_taints = Profile { scores: vec![("TaintToleration".into(), 3)], ..Profile::default() };
        let sc = score(&only_taints, &st, &[&tainted, &idle]);
        assert_eq!(sc, vec![0, 300]);
    }

    #[test]
    fn images_are_normalized_as_node_status_lists_them() {
        assert_eq!(normalize_image("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize_image("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(normalize_image("registry.k8s.io/pause:3.10"), "registry.k8s.io/pause:3.10");
        assert_eq!(normalize_image("me/app"), "docker.io/me/app:latest");
    }
}
