//! RBAC policy rules: matching a request against a rule (upstream's `pkg/apis/rbac/v1/evaluation_helpers.go` and
//! `RuleAllows`), one rule set covering another (`component-helpers/auth/rbac/validation.Covers`, with
//! `BreakdownRule`), the compaction of uncovered rules (`validation.CompactRules`) and their compact text
//! (`CompactString`) used in escalation messages.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::authorization::Attributes;

/// A `PolicyRule` of a Role or ClusterRole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PolicyRule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

fn strings(v: &Value, field: &str) -> Vec<String> {
    v.get(field)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn has(set: &[String], ele: &str) -> bool {
    set.iter().any(|s| s == ele)
}

fn has_all(set: &[String], contains: &[String]) -> bool {
    contains.iter().all(|c| has(set, c))
}

impl PolicyRule {
    /// Reads one element of `rules` as stored.
    pub fn from_value(v: &Value) -> PolicyRule {
        PolicyRule {
            verbs: strings(v, "verbs"),
            api_groups: strings(v, "apiGroups"),
            resources: strings(v, "resources"),
            resource_names: strings(v, "resourceNames"),
            non_resource_urls: strings(v, "nonResourceURLs"),
        }
    }

    /// The rules of a Role or ClusterRole object.
    pub fn list_from(obj: &Value) -> Vec<PolicyRule> {
        obj.get("rules")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(PolicyRule::from_value).collect())
            .unwrap_or_default()
    }

    /// The rule as JSON, fields in upstream's order and empty lists left out (`verbs` is always written).
    pub fn to_value(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("verbs".into(), json!(self.verbs));
        for (k, v) in [
            ("apiGroups", &self.api_groups),
            ("resources", &self.resources),
            ("resourceNames", &self.resource_names),
            ("nonResourceURLs", &self.non_resource_urls),
        ] {
            if !v.is_empty() {
                m.insert(k.into(), json!(v));
            }
        }
        Value::Object(m)
    }

    pub fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == "*" || v == verb)
    }

    pub fn api_group_matches(&self, group: &str) -> bool {
        self.api_groups.iter().any(|g| g == "*" || g == group)
    }

    /// `combined` is `resource` or `resource/subresource`; a rule matches by `*`, exactly, or by `*/subresource`.
    pub fn resource_matches(&self, combined: &str, subresource: &str) -> bool {
        self.resources.iter().any(|r| {
            r == "*"
                || r == combined
                || (!subresource.is_empty()
                    && r.len() == subresource.len() + 2
                    && r.starts_with("*/")
                    && r.ends_with(subresource))
        })
    }

    pub fn resource_name_matches(&self, name: &str) -> bool {
        self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == name)
    }

    /// `*`, an exact path, or a prefix given as `/foo/*`.
    pub fn non_resource_url_matches(&self, path: &str) -> bool {
        self.non_resource_urls.iter().any(|u| u == "*" || u == path || url_prefix_matches(u, path))
    }

    /// Upstream's `RuleAllows`.
    pub fn allows(&self, a: &Attributes) -> bool {
        if a.resource_request {
            if !self.verb_matches(&a.verb) || !self.api_group_matches(&a.api_group) {
                return false;
            }
            let (res, sub) = (a.resource.as_str(), a.subresource.as_str());
            // resource_matches on `resource/subresource`, without building that string
            let matched = self.resources.iter().any(|r| {
                r == "*"
                    || if sub.is_empty() {
                        r == res
                    } else {
                        (r.len() == res.len() + 1 + sub.len()
                            && r.starts_with(res)
                            && r.as_bytes()[res.len()] == b'/'
                            && r.ends_with(sub))
                            || (r.len() == sub.len() + 2 && r.starts_with("*/") && r.ends_with(sub))
                    }
            });
            matched && self.resource_name_matches(&a.name)
        } else {
            self.verb_matches(&a.verb) && self.non_resource_url_matches(&a.path)
        }
    }

    /// Upstream's `CompactString`: `{APIGroups:[""], Resources:["pods"], Verbs:["get"]}`, each list as Go's `%q`.
    pub fn compact_string(&self) -> String {
        let mut parts = Vec::new();
        for (label, list) in [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ] {
            if !list.is_empty() {
                parts.push(format!("{label}:{}", go_quote_list(list)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }
}

/// A rule URL ending in `*` matches every path starting with it less its trailing `*`s.
fn url_prefix_matches(rule_url: &str, path: &str) -> bool {
    rule_url.ends_with('*') && path.starts_with(rule_url.trim_end_matches('*'))
}

/// Whether any rule allows the request.
pub fn rules_allow(a: &Attributes, rules: &[PolicyRule]) -> bool {
    rules.iter().any(|r| r.allows(a))
}

/// Upstream's `BreakdownRule`: one rule per (group, resource, verb[, name]) and per (URL, verb).
pub fn breakdown_rule(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    for group in &rule.api_groups {
        for resource in &rule.resources {
            for verb in &rule.verbs {
                let base = PolicyRule {
                    api_groups: vec![group.clone()],
                    resources: vec![resource.clone()],
                    verbs: vec![verb.clone()],
                    ..Default::default()
                };
                if rule.resource_names.is_empty() {
                    out.push(base);
                } else {
                    for name in &rule.resource_names {
                        out.push(PolicyRule { resource_names: vec![name.clone()], ..base.clone() });
                    }
                }
            }
        }
    }
    for url in &rule.non_resource_urls {
        for verb in &rule.verbs {
            out.push(PolicyRule {
                non_resource_urls: vec![url.clone()],
                verbs: vec![verb.clone()],
                ..Default::default()
            });
        }
    }
    out
}

fn resource_covers_all(owner: &[String], covers: &[String]) -> bool {
    if has(owner, "*") || has_all(owner, covers) {
        return true;
    }
    covers.iter().all(|path| {
        if has(owner, path) {
            return true;
        }
        match path.split_once('/') {
            Some((_, sub)) => has(owner, &format!("*/{sub}")),
            None => false,
        }
    })
}

fn non_resource_urls_cover_all(owner: &[String], covers: &[String]) -> bool {
    covers.iter().all(|path| owner.iter().any(|o| o == path || url_prefix_matches(o, path)))
}

/// Whether `owner` covers `sub` (a rule with at most one verb, resource and resource name).
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, "*") || has_all(&owner.verbs, &sub.verbs);
    let groups = has(&owner.api_groups, "*") || has_all(&owner.api_groups, &sub.api_groups);
    let resources = resource_covers_all(&owner.resources, &sub.resources);
    let urls = non_resource_urls_cover_all(&owner.non_resource_urls, &sub.non_resource_urls);
    let names = if sub.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &sub.resource_names)
    };
    verbs && groups && resources && names && urls
}

/// Upstream's `Covers`: whether `owner` rules grant everything `servant` rules do, and the broken-down rules they
/// do not.
pub fn covers(owner: &[PolicyRule], servant: &[PolicyRule]) -> (bool, Vec<PolicyRule>) {
    let uncovered: Vec<PolicyRule> =
        servant.iter().flat_map(breakdown_rule).filter(|sub| !owner.iter().any(|o| rule_covers(o, sub))).collect();
    (uncovered.is_empty(), uncovered)
}

/// Upstream's `CompactRules`: rules holding only one group, one resource, at most one resource name and verbs are
/// merged by (group, resource, name), their verbs appended in order; other rules are kept as they are.
pub fn compact_rules(rules: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    let mut simple: Vec<PolicyRule> = Vec::new();
    let mut index: HashMap<(String, String, Option<String>), usize> = HashMap::new();
    for rule in rules {
        let is_simple = rule.resource_names.len() <= 1
            && rule.non_resource_urls.is_empty()
            && rule.api_groups.len() == 1
            && rule.resources.len() == 1;
        if !is_simple {
            out.push(rule.clone());
            continue;
        }
        let key = (rule.api_groups[0].clone(), rule.resources[0].clone(), rule.resource_names.first().cloned());
        match index.get(&key) {
            Some(&i) => simple[i].verbs.extend(rule.verbs.iter().cloned()),
            None => {
                index.insert(key, simple.len());
                simple.push(rule.clone());
            }
        }
    }
    out.extend(simple);
    out
}

/// Go's `strconv.Quote` (what `%q` prints for a string).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint` for what follows ASCII: control and format characters and the
/// separators other than U+0020 are not printable.
fn is_go_printable(c: char) -> bool {
    !(c.is_control()
        || matches!(c as u32, 0x80..=0x9f | 0xad | 0x2028 | 0x2029 | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x206f | 0xfeff)
        || (c.is_whitespace() && c != ' '))
}

/// `%q` of a Go `[]string`: `["a" "b"]`.
pub fn go_quote_list(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", items.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        PolicyRule {
            verbs: v(verbs),
            api_groups: v(groups),
            resources: v(resources),
            resource_names: v(names),
            non_resource_urls: vec![],
        }
    }

    fn url_rule(verbs: &[&str], urls: &[&str]) -> PolicyRule {
        PolicyRule {
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            non_resource_urls: urls.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn res(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    fn url(verb: &str, path: &str) -> Attributes {
        Attributes { verb: verb.into(), path: path.into(), ..Default::default() }
    }

    // Mirrors upstream's TestRuleMatches (plugin/pkg/auth/authorizer/rbac/rbac_test.go).
    #[test]
    fn rule_matches_table() {
        let cases: Vec<(&str, PolicyRule, Vec<Attributes>, Vec<Attributes>)> = vec![
            (
                "star verb, exact match other",
                rule(&["*"], &["group1"], &["resource1"], &[]),
                vec![
                    res("get", "group1", "resource1", "", ""),
                    res("update", "group1", "resource1", "", ""),
                    res("anything", "group1", "resource1", "", ""),
                ],
                vec![
                    res("get", "group2", "resource1", "", ""),
                    res("get", "group1", "resource2", "", ""),
                    res("get", "group1", "resource1", "sub", ""),
                ],
            ),
            (
                "star group, exact match other",
                rule(&["get"], &["*"], &["resource1"], &[]),
                vec![res("get", "group1", "resource1", "", ""), res("get", "group2", "resource1", "", "")],
                vec![res("update", "group1", "resource1", "", ""), res("get", "group1", "resource2", "", "")],
            ),
            (
                "star resource, exact match other",
                rule(&["get"], &["group1"], &["*"], &[]),
                vec![
                    res("get", "group1", "resource1", "", ""),
                    res("get", "group1", "resource2", "", ""),
                    res("get", "group1", "resource1", "sub", ""),
                ],
                vec![res("update", "group1", "resource1", "", ""), res("get", "group2", "resource1", "", "")],
            ),
            (
                "tuple expansion",
                rule(&["get", "update"], &["group1", "group2"], &["resource1", "resource2"], &[]),
                vec![
                    res("get", "group1", "resource1", "", ""),
                    res("update", "group2", "resource2", "", ""),
                    res("get", "group2", "resource1", "", ""),
                ],
                vec![res("get", "group3", "resource1", "", ""), res("delete", "group1", "resource1", "", "")],
            ),
            (
                "subresource expansion",
                rule(&["*"], &["*"], &["resource1/subresource1"], &[]),
                vec![res("get", "group1", "resource1", "subresource1", "")],
                vec![res("get", "group1", "resource1", "", ""), res("get", "group1", "resource1", "subresource2", "")],
            ),
            (
                "star nonresource, exact match other",
                url_rule(&["get"], &["*"]),
                vec![url("get", "/foo"), url("get", "/foo/bar"), url("get", "/")],
                vec![url("put", "/foo"), res("get", "", "pods", "", "")],
            ),
            (
                "star nonresource subpath",
                url_rule(&["get"], &["/foo/*"]),
                vec![url("get", "/foo/"), url("get", "/foo/bar"), url("get", "/foo/bar/baz")],
                vec![url("get", "/foo"), url("get", "/bar/foo"), url("put", "/foo/bar")],
            ),
            (
                "star verb, exact nonresource",
                url_rule(&["*"], &["/foo", "/foo/bar/one"]),
                vec![url("get", "/foo"), url("put", "/foo/bar/one")],
                vec![url("get", "/foo/bar"), url("get", "/foo/bar/two")],
            ),
            (
                "*/subresource matches any resource's subresource",
                rule(&["get"], &[""], &["*/status"], &[]),
                vec![res("get", "", "pods", "status", ""), res("get", "", "nodes", "status", "")],
                vec![
                    res("get", "", "pods", "", ""),
                    res("get", "", "pods", "log", ""),
                    res("get", "", "pods", "xstatus", ""),
                ],
            ),
            (
                "resourceNames restrict by name",
                rule(&["get"], &[""], &["secrets"], &["a"]),
                vec![res("get", "", "secrets", "", "a")],
                vec![
                    res("get", "", "secrets", "", "b"),
                    res("get", "", "secrets", "", ""),
                    res("list", "", "secrets", "", ""),
                ],
            ),
        ];
        for (name, r, allowed, denied) in cases {
            for a in &allowed {
                assert!(r.allows(a), "{name}: expected {a:?} allowed");
            }
            for a in &denied {
                assert!(!r.allows(a), "{name}: expected {a:?} denied");
            }
        }
    }

    // Mirrors upstream's policy_comparator_test.go cases.
    #[test]
    fn covers_table() {
        struct Case {
            name: &'static str,
            owner: Vec<PolicyRule>,
            servant: Vec<PolicyRule>,
            covered: bool,
            uncovered: Vec<PolicyRule>,
        }
        let cases = vec![
            Case {
                name: "exact match",
                owner: vec![rule(&["get", "list", "watch"], &["v1"], &["builds"], &[])],
                servant: vec![rule(&["get", "list", "watch"], &["v1"], &["builds"], &[])],
                covered: true,
                uncovered: vec![],
            },
            Case {
                name: "partial match",
                owner: vec![rule(&["get", "list", "watch"], &["v1"], &["builds"], &[])],
                servant: vec![rule(&["get", "list", "watch", "create"], &["v1"], &["builds"], &[])],
                covered: false,
                uncovered: vec![rule(&["create"], &["v1"], &["builds"], &[])],
            },
            Case {
                name: "star verb",
                owner: vec![rule(&["*"], &["v1"], &["builds"], &[])],
                servant: vec![rule(&["get", "list", "watch", "create"], &["v1"], &["builds"], &[])],
                covered: true,
                uncovered: vec![],
            },
            Case {
                name: "star resource, owner has subresource form",
                owner: vec![rule(&["get"], &["v1"], &["*/status"], &[])],
                servant: vec![rule(&["get"], &["v1"], &["pods/status", "nodes/status"], &[])],
                covered: true,
                uncovered: vec![],
            },
            Case {
                name: "star resource does not cover a subresource-less servant by */sub",
                owner: vec![rule(&["get"], &["v1"], &["*/status"], &[])],
                servant: vec![rule(&["get"], &["v1"], &["pods"], &[])],
                covered: false,
                uncovered: vec![rule(&["get"], &["v1"], &["pods"], &[])],
            },
            Case {
                name: "resource names: owner without names covers named",
                owner: vec![rule(&["get"], &[""], &["secrets"], &[])],
                servant: vec![rule(&["get"], &[""], &["secrets"], &["a", "b"])],
                covered: true,
                uncovered: vec![],
            },
            Case {
                name: "resource names: owner with names does not cover unnamed",
                owner: vec![rule(&["get"], &[""], &["secrets"], &["a"])],
                servant: vec![
                    rule(&["get"], &[""], &["secrets"], &[]),
                    rule(&["get"], &[""], &["secrets"], &["a", "b"]),
                ],
                covered: false,
                uncovered: vec![rule(&["get"], &[""], &["secrets"], &[]), rule(&["get"], &[""], &["secrets"], &["b"])],
            },
            Case {
                name: "non-resource url prefix",
                owner: vec![url_rule(&["get"], &["/api/*"])],
                servant: vec![url_rule(&["get"], &["/api/v1", "/apis"])],
                covered: false,
                uncovered: vec![url_rule(&["get"], &["/apis"])],
            },
            Case {
                name: "star group",
                owner: vec![rule(&["get"], &["*"], &["*"], &[]), url_rule(&["*"], &["*"])],
                servant: vec![
                    rule(&["get"], &["apps"], &["deployments/scale"], &[]),
                    url_rule(&["get"], &["/healthz"]),
                ],
                covered: true,
                uncovered: vec![],
            },
        ];
        for c in cases {
            let (ok, missing) = covers(&c.owner, &c.servant);
            assert_eq!(ok, c.covered, "{}", c.name);
            assert_eq!(missing, c.uncovered, "{}", c.name);
        }
    }

    #[test]
    fn compact_string_as_go_prints_it() {
        assert_eq!(
            rule(&["get"], &[""], &["pods"], &[]).compact_string(),
            r#"{APIGroups:[""], Resources:["pods"], Verbs:["get"]}"#
        );
        assert_eq!(
            rule(&["get", "list"], &["apps"], &["deployments"], &["a"]).compact_string(),
            r#"{APIGroups:["apps"], Resources:["deployments"], ResourceNames:["a"], Verbs:["get" "list"]}"#
        );
        assert_eq!(
            url_rule(&["get"], &["/healthz"]).compact_string(),
            r#"{NonResourceURLs:["/healthz"], Verbs:["get"]}"#
        );
        assert_eq!(go_quote("a\"b\\c\n\u{1}é"), r#""a\"b\\c\n\x01é""#);
    }

    #[test]
    fn compact_rules_merges_simple_rules_by_verbs() {
        let missing = vec![
            rule(&["get"], &[""], &["pods"], &[]),
            rule(&["list"], &[""], &["pods"], &[]),
            rule(&["get"], &[""], &["secrets"], &["a"]),
            rule(&["list"], &[""], &["secrets"], &["a"]),
            rule(&["get"], &[""], &["secrets"], &["b"]),
            url_rule(&["get"], &["/x"]),
        ];
        let got = compact_rules(&missing);
        assert_eq!(
            got,
            vec![
                url_rule(&["get"], &["/x"]),
                rule(&["get", "list"], &[""], &["pods"], &[]),
                rule(&["get", "list"], &[""], &["secrets"], &["a"]),
                rule(&["get"], &[""], &["secrets"], &["b"]),
            ]
        );
    }
}
