//! RBAC decision benchmark: 5,000 RoleBindings and 1,000 ClusterRoles (plus the bootstrap policy) loaded into the
//! RBAC authorizer, then decisions timed one by one for a mix of allowed and unanswered requests; an AlwaysAllow
//! authorizer is timed the same way in the same run as the baseline.
//! Run with `cargo bench -p kube-apiserver --bench rbac` (RBAC_DECISIONS sets the number of timed decisions).

use std::hint::black_box;
use std::time::{Duration, Instant};

use kube_apiserver::auth::UserInfo;
use kube_apiserver::authorization::rbac::RbacAuthorizer;
use kube_apiserver::authorization::{Attributes, Authorizer, Decision, NonResourceRule, ResourceRule, bootstrappolicy};
use serde_json::{Value, json};

const CLUSTER_ROLES: usize = 1_000;
const ROLE_BINDINGS: usize = 5_000;
const NAMESPACES: usize = 500;
const USERS: usize = 2_000;
const GROUPS: usize = 200;

const RESOURCES: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "configmaps"),
    ("", "secrets"),
    ("", "services"),
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("batch", "jobs"),
    ("networking.k8s.io", "ingresses"),
];
const VERBS: &[&str] = &["get", "list", "watch", "create", "update", "patch", "delete"];

/// The AlwaysAllow mode, the baseline.
struct AlwaysAllow;

impl Authorizer for AlwaysAllow {
    fn authorize(&self, _: &Attributes) -> (Decision, String) {
        (Decision::Allow, String::new())
    }

    fn rules_for(&self, _: &UserInfo, _: &str) -> (Vec<ResourceRule>, Vec<NonResourceRule>, bool) {
        (Vec::new(), Vec::new(), false)
    }
}

/// xorshift64*, enough to spread the workload deterministically.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn cluster_role(i: usize, rng: &mut Rng) -> Value {
    let rules: Vec<Value> = (0..5)
        .map(|_| {
            let (group, resource) = RESOURCES[rng.below(RESOURCES.len())];
            let verbs: Vec<&str> = (0..3).map(|_| VERBS[rng.below(VERBS.len())]).collect();
            json!({"verbs": verbs, "apiGroups": [group], "resources": [resource, format!("{resource}/status")]})
        })
        .collect();
    json!({"metadata": {"name": format!("role-{i}")}, "rules": rules})
}

fn role_binding(i: usize, rng: &mut Rng) -> Value {
    let ns = format!("ns-{}", i % NAMESPACES);
    let subjects = json!([
        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": format!("user-{}", rng.below(USERS))},
        {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": format!("group-{}", rng.below(GROUPS))},
        {"kind": "ServiceAccount", "name": format!("sa-{}", rng.below(10)), "namespace": ns},
    ]);
    json!({"metadata": {"name": format!("rb-{i}"), "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("role-{}", rng.below(CLUSTER_ROLES))},
        "subjects": subjects})
}

fn request(rng: &mut Rng) -> Attributes {
    let user = if rng.below(4) == 0 {
        let ns = rng.below(NAMESPACES);
        UserInfo {
            username: format!("system:serviceaccount:ns-{ns}:sa-{}", rng.below(10)),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:ns-{ns}"),
                "system:authenticated".into(),
            ],
            ..Default::default()
        }
    } else {
        UserInfo {
            username: format!("user-{}", rng.below(USERS)),
            groups: vec![format!("group-{}", rng.below(GROUPS)), "system:authenticated".into()],
            ..Default::default()
        }
    };
    let namespace = match &user.username {
        u if u.starts_with("system:serviceaccount:") => u.split(':').nth(2).unwrap().to_string(),
        _ => format!("ns-{}", rng.below(NAMESPACES)),
    };
    let (group, resource) = RESOURCES[rng.below(RESOURCES.len())];
    Attributes {
        user,
        verb: VERBS[rng.below(VERBS.len())].into(),
        resource_request: true,
        api_group: group.into(),
        api_version: "v1".into(),
        namespace,
        resource: resource.into(),
        name: format!("obj-{}", rng.below(100)),
        ..Default::default()
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let idx = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[idx]
}

/// Times each decision of `requests` on `a`; returns p50, p99 and how many were allowed.
fn measure(a: &dyn Authorizer, requests: &[Attributes]) -> (Duration, Duration, usize) {
    for r in requests.iter().take(10_000) {
        black_box(a.authorize(r));
    }
    let mut samples = Vec::with_capacity(requests.len());
    let mut allowed = 0;
    for r in requests {
        let start = Instant::now();
        let (decision, _) = black_box(a.authorize(black_box(r)));
        samples.push(start.elapsed());
        allowed += usize::from(decision == Decision::Allow);
    }
    (percentile(&mut samples, 0.50), percentile(&mut samples, 0.99), allowed)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let decisions: usize = std::env::var("RBAC_DECISIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);

    let rbac = RbacAuthorizer::new();
    let start = Instant::now();
    let mut roles = bootstrappolicy::cluster_roles();
    roles.extend((0..CLUSTER_ROLES).map(|i| cluster_role(i, &mut rng)));
    rbac.reset("clusterroles", roles);
    rbac.reset("clusterrolebindings", bootstrappolicy::cluster_role_bindings());
    rbac.reset("roles", bootstrappolicy::namespace_roles().into_iter().map(|(_, v)| v).collect());
    let mut bindings: Vec<Value> = bootstrappolicy::namespace_role_bindings().into_iter().map(|(_, v)| v).collect();
    bindings.extend((0..ROLE_BINDINGS).map(|i| role_binding(i, &mut rng)));
    rbac.reset("rolebindings", bindings);
    let load = start.elapsed();

    let requests: Vec<Attributes> = (0..decisions).map(|_| request(&mut rng)).collect();
    let (base_p50, base_p99, _) = measure(&AlwaysAllow, &requests);
    let (p50, p99, allowed) = measure(&rbac, &requests);

    println!(
        "RBAC with {CLUSTER_ROLES} ClusterRoles and {ROLE_BINDINGS} RoleBindings (+ bootstrap policy), loaded in {:.1} ms",
        load.as_secs_f64() * 1e3
    );
    println!("{decisions} decisions, {allowed} allowed");
    println!();
    println!("| authorizer | p50 (µs) | p99 (µs) |");
    println!("|---|---|---|");
    println!("| AlwaysAllow | {:.3} | {:.3} |", us(base_p50), us(base_p99));
    println!("| RBAC | {:.3} | {:.3} |", us(p50), us(p99));
    println!();
    println!(
        "RBAC / AlwaysAllow: p50 {:.1}x, p99 {:.1}x; p99 goal < 5 µs: {}",
        us(p50) / us(base_p50).max(1e-9),
        us(p99) / us(base_p99).max(1e-9),
        if p99 < Duration::from_micros(5) { "met" } else { "missed" }
    );
}
