//! KubeSchedulerConfiguration (`kubescheduler.config.k8s.io/v1`): profiles with their filter and score plugins
//! (enabled/disabled per extension point or `multiPoint`, score weights), NodeResourcesFit's scoring strategy,
//! `percentageOfNodesToScore`, `parallelism`, backoff and leader election. Defaults are upstream's.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// The filter plugins, in upstream's default order.
pub const DEFAULT_FILTERS: &[&str] = &[
    "NodeUnschedulable",
    "NodeName",
    "TaintToleration",
    "NodeAffinity",
    "NodePorts",
    "NodeResourcesFit",
    "PodTopologySpread",
    "InterPodAffinity",
];

/// The score plugins and their default weights.
pub const DEFAULT_SCORES: &[(&str, i64)] = &[
    ("TaintToleration", 3),
    ("NodeAffinity", 2),
    ("NodeResourcesFit", 1),
    ("PodTopologySpread", 2),
    ("InterPodAffinity", 2),
    ("NodeResourcesBalancedAllocation", 1),
    ("ImageLocality", 1),
];

/// How NodeResourcesFit scores.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoringStrategy {
    pub most_allocated: bool,
    /// Resource names and weights (cpu and memory, 1 each, by default).
    pub resources: Vec<(String, i64)>,
}

impl Default for ScoringStrategy {
    fn default() -> Self {
        ScoringStrategy { most_allocated: false, resources: vec![("cpu".into(), 1), ("memory".into(), 1)] }
    }
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub scheduler_name: String,
    pub filters: Vec<String>,
    pub scores: Vec<(String, i64)>,
    pub percentage_of_nodes_to_score: Option<u32>,
    pub strategy: ScoringStrategy,
    pub preemption: bool,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            scheduler_name: "default-scheduler".into(),
            filters: DEFAULT_FILTERS.iter().map(|s| s.to_string()).collect(),
            scores: DEFAULT_SCORES.iter().map(|(s, w)| (s.to_string(), *w)).collect(),
            percentage_of_nodes_to_score: None,
            strategy: ScoringStrategy::default(),
            preemption: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LeaderElection {
    pub leader_elect: bool,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    pub resource_name: String,
    pub resource_namespace: String,
}

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub kubeconfig: Option<PathBuf>,
    pub profiles: Vec<Profile>,
    /// 0 means upstream's adaptive default.
    pub percentage_of_nodes_to_score: u32,
    pub parallelism: usize,
    pub pod_initial_backoff: Duration,
    pub pod_max_backoff: Duration,
    pub leader_election: LeaderElection,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            kubeconfig: None,
            profiles: vec![Profile::default()],
            percentage_of_nodes_to_score: 0,
            parallelism: 16,
            pod_initial_backoff: Duration::from_secs(1),
            pod_max_backoff: Duration::from_secs(10),
            leader_election: LeaderElection {
                leader_elect: true,
                lease_duration: Duration::from_secs(15),
                renew_deadline: Duration::from_secs(10),
                retry_period: Duration::from_secs(2),
                resource_name: "kube-scheduler".into(),
                resource_namespace: "kube-system".into(),
            },
        }
    }
}

fn names(v: Option<&Value>) -> Vec<(String, Option<i64>)> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p.get("name")?.as_str()?.to_string(), p.get("weight").and_then(Value::as_i64))))
        .collect()
}

fn duration(v: Option<&Value>, default: Duration) -> Result<Duration, String> {
    match v.and_then(Value::as_str) {
        None => Ok(default),
        Some(s) => api_types::duration::parse(s).ok_or_else(|| format!("invalid duration {s:?}")),
    }
}

/// Applies one extension point's enabled/disabled lists to `current`.
fn apply(
    current: &mut Vec<(String, i64)>,
    point: Option<&Value>,
    known: &[&str],
    default_weight: i64,
) -> Result<(), String> {
    let Some(point) = point else { return Ok(()) };
    for (name, _) in names(point.get("disabled")) {
        if name == "*" {
            current.clear();
        } else {
            current.retain(|(n, _)| *n != name);
        }
    }
    for (name, weight) in names(point.get("enabled")) {
        if !known.contains(&name.as_str()) {
            return Err(format!("unknown plugin {name:?} (known: {})", known.join(", ")));
        }
        let w = weight.unwrap_or(default_weight);
        match current.iter_mut().find(|(n, _)| *n == name) {
            Some(e) => e.1 = w,
            None => current.push((name, w)),
        }
    }
    Ok(())
}

fn profile(p: &Value) -> Result<Profile, String> {
    let mut out = Profile::default();
    if let Some(n) = p.get("schedulerName").and_then(Value::as_str) {
        out.scheduler_name = n.to_string();
    }
    out.percentage_of_nodes_to_score = p.get("percentageOfNodesToScore").and_then(Value::as_u64).map(|v| v as u32);
    let plugins = p.get("plugins");
    let filter_names: Vec<&str> = DEFAULT_FILTERS.to_vec();
    let score_names: Vec<&str> = DEFAULT_SCORES.iter().map(|(n, _)| *n).collect();
    let mut filters: Vec<(String, i64)> = out.filters.iter().map(|f| (f.clone(), 0)).collect();
    let mut scores = out.scores.clone();
    for point in ["multiPoint", "filter"] {
        let v = plugins.and_then(|p| p.get(point));
        // multiPoint lists also name score-only plugins; keep filters to filter plugins.
        let mut tmp = filters.clone();
        let mut known = filter_names.clone();
        if point == "multiPoint" {
            known.extend(score_names.iter().copied());
            known.push("DefaultPreemption");
        }
        apply(&mut tmp, v, &known, 0)?;
        tmp.retain(|(n, _)| filter_names.contains(&n.as_str()));
        filters = tmp;
    }
    for point in ["multiPoint", "score"] {
        let v = plugins.and_then(|p| p.get(point));
        let mut known = score_names.clone();
        if point == "multiPoint" {
            known.extend(filter_names.iter().copied());
            known.push("DefaultPreemption");
        }
        apply(&mut scores, v, &known, 1)?;
        scores.retain(|(n, _)| score_names.contains(&n.as_str()));
    }
    for point in ["multiPoint", "postFilter"] {
        if let Some(v) = plugins.and_then(|p| p.get(point)) {
            for (name, _) in names(v.get("disabled")) {
                if name == "*" || name == "DefaultPreemption" {
                    out.preemption = false;
                }
            }
        }
    }
    out.filters = filters.into_iter().map(|(n, _)| n).collect();
    out.scores = scores;
    for pc in p.get("pluginConfig").and_then(Value::as_array).into_iter().flatten() {
        if pc.get("name").and_then(Value::as_str) != Some("NodeResourcesFit") {
            continue;
        }
        let Some(s) = pc.pointer("/args/scoringStrategy") else { continue };
        match s.get("type").and_then(Value::as_str).unwrap_or("LeastAllocated") {
            "LeastAllocated" => out.strategy.most_allocated = false,
            "MostAllocated" => out.strategy.most_allocated = true,
            other => return Err(format!("scoringStrategy type {other:?} is not supported")),
        }
        let res = names(s.get("resources"));
        if !res.is_empty() {
            out.strategy.resources = res.into_iter().map(|(n, w)| (n, w.unwrap_or(1))).collect();
        }
    }
    Ok(out)
}

impl SchedulerConfig {
    /// Parses a KubeSchedulerConfiguration document (YAML or JSON).
    pub fn parse(text: &str) -> Result<Self, String> {
        let v: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("parsing the configuration: {e}"))?;
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind != "KubeSchedulerConfiguration" {
            return Err(format!("kind {kind:?} is not KubeSchedulerConfiguration"));
        }
        let mut c = SchedulerConfig::default();
        if let Some(k) = v.pointer("/clientConnection/kubeconfig").and_then(Value::as_str).filter(|k| !k.is_empty()) {
            c.kubeconfig = Some(PathBuf::from(k));
        }
        if let Some(p) = v.get("percentageOfNodesToScore").and_then(Value::as_u64) {
            if p > 100 {
                return Err(format!("percentageOfNodesToScore {p} is not between 0 and 100"));
            }
            c.percentage_of_nodes_to_score = p as u32;
        }
        if let Some(p) = v.get("parallelism").and_then(Value::as_u64) {
            c.parallelism = p.max(1) as usize;
        }
        if let Some(s) = v.get("podInitialBackoffSeconds").and_then(Value::as_u64) {
            c.pod_initial_backoff = Duration::from_secs(s);
        }
        if let Some(s) = v.get("podMaxBackoffSeconds").and_then(Value::as_u64) {
            c.pod_max_backoff = Duration::from_secs(s);
        }
        if let Some(le) = v.get("leaderElection") {
            let d = c.leader_election.clone();
            c.leader_election = LeaderElection {
                leader_elect: le.get("leaderElect").and_then(Value::as_bool).unwrap_or(d.leader_elect),
                lease_duration: duration(le.get("leaseDuration"), d.lease_duration)?,
                renew_deadline: duration(le.get("renewDeadline"), d.renew_deadline)?,
                retry_period: duration(le.get("retryPeriod"), d.retry_period)?,
                resource_name: le.get("resourceName").and_then(Value::as_str).unwrap_or(&d.resource_name).to_string(),
                resource_namespace: le
                    .get("resourceNamespace")
                    .and_then(Value::as_str)
                    .unwrap_or(&d.resource_namespace)
                    .to_string(),
            };
        }
        if let Some(profiles) = v.get("profiles").and_then(Value::as_array).filter(|p| !p.is_empty()) {
            c.profiles = profiles.iter().map(profile).collect::<Result<_, _>>()?;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_a_profile_with_most_allocated() {
        let c = SchedulerConfig::default();
        assert_eq!(c.profiles[0].filters.len(), 8);
        assert_eq!(c.profiles[0].scores.iter().find(|(n, _)| n == "TaintToleration").unwrap().1, 3);
        let c = SchedulerConfig::parse(
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\npercentageOfNodesToScore: 30\nleaderElection: {leaderElect: false}\nprofiles:\n- schedulerName: packer\n  plugins:\n    score:\n      disabled: [{name: ImageLocality}]\n      enabled: [{name: NodeResourcesFit, weight: 5}]\n    filter:\n      disabled: [{name: NodePorts}]\n  pluginConfig:\n  - name: NodeResourcesFit\n    args: {scoringStrategy: {type: MostAllocated, resources: [{name: cpu, weight: 2}]}}\n",
        )
        .unwrap();
        assert_eq!(c.percentage_of_nodes_to_score, 30);
        assert!(!c.leader_election.leader_elect);
        let p = &c.profiles[0];
        assert_eq!(p.scheduler_name, "packer");
        assert!(!p.filters.contains(&"NodePorts".to_string()));
        assert!(!p.scores.iter().any(|(n, _)| n == "ImageLocality"));
        assert_eq!(p.scores.iter().find(|(n, _)| n == "NodeResourcesFit").unwrap().1, 5);
        assert!(p.strategy.most_allocated);
        assert_eq!(p.strategy.resources, vec![("cpu".to_string(), 2)]);
        assert!(
            SchedulerConfig::parse(
                "kind: KubeSchedulerConfiguration\nprofiles:\n- plugins: {score: {enabled: [{name: Nope}]}}\n"
            )
            .is_err()
        );
    }
}
