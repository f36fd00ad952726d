//! A webhook's `rules` (upstream's `predicates/rules`): operations, apiGroups, apiVersions, resources (`*`, `*/*`,
//! `pods/*`, `*/status`) and scope, the other versions a request's resource is served at (matchPolicy
//! Equivalent), and the admission configuration kinds that no webhook ever sees.

use api_types::Resource;
use serde_json::Value;

use crate::admission::Request;
use crate::apiextensions::served::Snapshot;

/// One `RuleWithOperations`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rule {
    pub operations: Vec<String>,
    pub api_groups: Vec<String>,
    pub api_versions: Vec<String>,
    /// `resource/subresource` split at the first `/` (subresource "" for the main resource).
    pub resources: Vec<(String, String)>,
    /// `*` (the default), `Cluster` or `Namespaced`.
    pub scope: String,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect()
}

impl Rule {
    /// A rule from its JSON (`admissionregistration.k8s.io/v1` RuleWithOperations).
    pub fn from_json(v: &Value) -> Rule {
        let resources = strings(&v["resources"])
            .into_iter()
            .map(|r| match r.split_once('/') {
                Some((res, sub)) => (res.to_string(), sub.to_string()),
                None => (r, String::new()),
            })
            .collect();
        Rule {
            operations: strings(&v["operations"]),
            api_groups: strings(&v["apiGroups"]),
            api_versions: strings(&v["apiVersions"]),
            resources,
            scope: v["scope"].as_str().unwrap_or("*").to_string(),
        }
    }

    /// Whether a request is covered by the rule (upstream's `Matcher.Matches`).
    pub fn matches(&self, a: &Attrs<'_>) -> bool {
        self.scope(a) && self.operation(a) && self.group(a) && self.version(a) && self.resource(a)
    }

    fn scope(&self, a: &Attrs<'_>) -> bool {
        let namespace_object = a.group.is_empty() && a.version == "v1" && a.resource == "namespaces";
        match self.scope.as_str() {
            "" | "*" => true,
            // Namespaces are cluster-scoped, whatever namespace their requests carry.
            "Namespaced" => !namespace_object && !a.namespace.is_empty(),
            "Cluster" => namespace_object || a.namespace.is_empty(),
            _ => false,
        }
    }

    fn group(&self, a: &Attrs<'_>) -> bool {
        exact_or_wildcard(&self.api_groups, a.group)
    }

    fn version(&self, a: &Attrs<'_>) -> bool {
        exact_or_wildcard(&self.api_versions, a.version)
    }

    fn operation(&self, a: &Attrs<'_>) -> bool {
        self.operations.iter().any(|op| op == "*" || op == a.operation)
    }

    fn resource(&self, a: &Attrs<'_>) -> bool {
        self.resources
            .iter()
            .any(|(res, sub)| (res == "*" || res == a.resource) && (sub == "*" || sub == a.subresource))
    }
}

fn exact_or_wildcard(items: &[String], requested: &str) -> bool {
    items.iter().any(|i| i == "*" || i == requested)
}

/// What a rule looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct Attrs<'a> {
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: &'a str,
    pub group: &'a str,
    pub version: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    /// The request's namespace ("" for cluster-scoped requests).
    pub namespace: &'a str,
}

/// Writes of the admission configuration kinds themselves never go to webhooks, so a broken webhook cannot lock
/// out its own repair (upstream's `IsExemptAdmissionConfigurationResource`).
pub fn is_exempt(group: &str, kind: &str) -> bool {
    group == "admissionregistration.k8s.io"
        && matches!(
            kind,
            "ValidatingWebhookConfiguration"
                | "MutatingWebhookConfiguration"
                | "ValidatingAdmissionPolicy"
                | "ValidatingAdmissionPolicyBinding"
                | "MutatingAdmissionPolicy"
                | "MutatingAdmissionPolicyBinding"
        )
}

/// What a request was matched as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    /// Its own resource.
    Own,
    /// Another version of it (matchPolicy Equivalent); the objects are converted to it.
    Equivalent(&'static Resource),
}

impl Matched {
    /// The resource the request was matched as.
    pub fn resource<'a>(self, r: &Request<'a>) -> &'a Resource {
        match self {
            Matched::Own => r.resource,
            Matched::Equivalent(e) => e,
        }
    }
}

/// The other group-versions the same objects are served at (upstream `EquivalentResourcesFor`): built-ins
/// sharing the storage (events, HorizontalPodAutoscalers), the other served versions of a custom resource.
pub fn equivalents(served: &Snapshot, res: &Resource) -> Vec<&'static Resource> {
    if res.custom {
        let mut out = Vec::new();
        for (group, versions) in served.groups() {
            if group != res.group {
                continue;
            }
            for v in versions {
                if v != res.version
                    && let Some(other) = served.find(group, v, res.plural)
                {
                    out.push(other);
                }
            }
        }
        return out;
    }
    api_types::resources::RESOURCES
        .iter()
        .filter(|x| x.storage == res.storage && !(x.group == res.group && x.version == res.version))
        .collect()
}

#[cfg(test)]
mod tests {
    //! Upstream's `rules_test.go` tables.
    use super::*;
    use serde_json::json;

    fn a<'a>(group: &'a str, version: &'a str, resource: &'a str, sub: &'a str, op: &'a str) -> Attrs<'a> {
        Attrs { operation: op, group, version, resource, subresource: sub, namespace: "ns" }
    }

    fn cluster<'a>(group: &'a str, version: &'a str, resource: &'a str, sub: &'a str) -> Attrs<'a> {
        Attrs { namespace: "", ..a(group, version, resource, sub, "CREATE") }
    }

    fn check(rule: Value, part: fn(&Rule, &Attrs<'_>) -> bool, matching: &[Attrs<'_>], not_matching: &[Attrs<'_>]) {
        let rule = Rule::from_json(&rule);
        for m in matching {
            assert!(part(&rule, m), "{rule:?} should match {m:?}");
        }
        for m in not_matching {
            assert!(!part(&rule, m), "{rule:?} should not match {m:?}");
        }
    }

    #[test]
    fn group() {
        check(json!({"apiGroups": ["*"]}), Rule::group, &[a("g", "v", "r", "", "CREATE")], &[]);
        check(
            json!({"apiGroups": ["g1", "g2"]}),
            Rule::group,
            &[a("g1", "v", "r", "", "CREATE"), a("g2", "v2", "r3", "", "CREATE")],
            &[a("g3", "v", "r", "", "CREATE"), a("g4", "v", "r", "", "CREATE")],
        );
    }

    #[test]
    fn version() {
        check(json!({"apiVersions": ["*"]}), Rule::version, &[a("g", "v", "r", "", "CREATE")], &[]);
        check(
            json!({"apiVersions": ["v1", "v2"]}),
            Rule::version,
            &[a("g1", "v1", "r", "", "CREATE"), a("g2", "v2", "r", "", "CREATE")],
            &[a("g1", "v3", "r", "", "CREATE"), a("g2", "v4", "r", "", "CREATE")],
        );
    }

    #[test]
    fn operation() {
        let all = ["CREATE", "UPDATE", "DELETE", "CONNECT"].map(|op| a("g", "v", "r", "", op));
        check(json!({"operations": ["*"]}), Rule::operation, &all, &[]);
        for (i, op) in ["CREATE", "UPDATE", "DELETE", "CONNECT"].iter().enumerate() {
            let others: Vec<_> = all.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, x)| *x).collect();
            check(json!({"operations": [op]}), Rule::operation, &all[i..=i], &others);
        }
        check(json!({"operations": ["UPDATE", "DELETE"]}), Rule::operation, &[all[1], all[2]], &[all[0], all[3]]);
    }

    #[test]
    fn resource() {
        let c = "CREATE";
        check(
            json!({"resources": ["*"]}),
            Rule::resource,
            &[a("g", "v", "r", "", c), a("2", "v", "r2", "", c)],
            &[a("g", "v", "r", "exec", c), a("2", "v", "r2", "proxy", c)],
        );
        check(
            json!({"resources": ["r/*"]}),
            Rule::resource,
            &[a("g", "v", "r", "", c), a("g", "v", "r", "exec", c)],
            &[a("2", "v", "r2", "", c), a("2", "v", "r2", "proxy", c)],
        );
        check(
            json!({"resources": ["r/*", "r2"]}),
            Rule::resource,
            &[a("g", "v", "r", "", c), a("g", "v", "r", "exec", c), a("2", "v", "r2", "", c)],
            &[a("2", "v", "r2", "proxy", c)],
        );
        check(
            json!({"resources": ["*/proxy", "*/exec"]}),
            Rule::resource,
            &[a("g", "v", "r", "exec", c), a("2", "v", "r2", "proxy", c), a("2", "v", "r3", "proxy", c)],
            &[a("g", "v", "r", "", c), a("2", "v", "r2", "", c), a("2", "v", "r4", "scale", c)],
        );
        check(
            json!({"resources": ["*/status"]}),
            Rule::resource,
            &[a("apps", "v1", "deployments", "status", c)],
            &[a("apps", "v1", "deployments", "", c), a("apps", "v1", "deployments", "scale", c)],
        );
    }

    #[test]
    fn scope() {
        let namespaced = |g, v, r, s| a(g, v, r, s, "CREATE");
        check(
            json!({"resources": ["*"], "scope": "Cluster"}),
            Rule::scope,
            &[
                cluster("g", "v", "r", ""),
                cluster("g", "v", "r", "exec"),
                cluster("", "v1", "namespaces", ""),
                cluster("", "v1", "namespaces", "finalize"),
                namespaced("", "v1", "namespaces", ""),
                namespaced("", "v1", "namespaces", "finalize"),
            ],
            &[namespaced("g", "v", "r", ""), namespaced("g", "v", "r", "exec")],
        );
        check(
            json!({"resources": ["*"], "scope": "Namespaced"}),
            Rule::scope,
            &[namespaced("g", "v", "r", ""), namespaced("g", "v", "r", "exec")],
            &[
                cluster("", "v1", "namespaces", ""),
                cluster("", "v1", "namespaces", "finalize"),
                namespaced("", "v1", "namespaces", ""),
                namespaced("", "v1", "namespaces", "finalize"),
                cluster("g", "v", "r", ""),
                cluster("g", "v", "r", "exec"),
            ],
        );
        check(
            json!({"resources": ["*"], "scope": "*"}),
            Rule::scope,
            &[
                namespaced("g", "v", "r", ""),
                namespaced("g", "v", "r", "exec"),
                cluster("g", "v", "r", ""),
                cluster("g", "v", "r", "exec"),
                cluster("", "v1", "namespaces", ""),
                cluster("", "v1", "namespaces", "finalize"),
                namespaced("", "v1", "namespaces", ""),
                namespaced("", "v1", "namespaces", "finalize"),
            ],
            &[],
        );
    }

    #[test]
    fn whole_rule_and_exemptions() {
        let rule = Rule::from_json(&json!({"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
            "resources": ["pods"], "scope": "Namespaced"}));
        assert!(rule.matches(&a("", "v1", "pods", "", "CREATE")));
        assert!(!rule.matches(&a("", "v1", "pods", "", "UPDATE")));
        assert!(!rule.matches(&a("", "v1", "pods", "status", "CREATE")));
        assert!(!rule.matches(&a("apps", "v1", "pods", "", "CREATE")));
        assert!(is_exempt("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"));
        assert!(is_exempt("admissionregistration.k8s.io", "MutatingWebhookConfiguration"));
        assert!(!is_exempt("", "Pod"));
    }
}
