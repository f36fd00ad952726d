//! The statically defined rules every node gets for the resources the Node authorizer does not subdivide, as
//! upstream's `bootstrappolicy.NodeRules()` (1.33, default feature gates) evaluated with `rbac.RulesAllow`.

use crate::authorization::Attributes;

/// One policy rule: verbs, API groups and resources (`resource/subresource` for a subresource).
struct Rule {
    verbs: &'static [&'static str],
    groups: &'static [&'static str],
    resources: &'static [&'static str],
}

const READ: &[&str] = &["get", "list", "watch"];

const NODE_RULES: &[Rule] = &[
    // Needed to check API access. These creates are non-mutating.
    Rule { verbs: &["create"], groups: &["authentication.k8s.io"], resources: &["tokenreviews"] },
    Rule {
        verbs: &["create"],
        groups: &["authorization.k8s.io"],
        resources: &["subjectaccessreviews", "localsubjectaccessreviews"],
    },
    // Needed to build serviceLister, to populate env vars for services.
    Rule { verbs: READ, groups: &[""], resources: &["services"] },
    // Nodes can register Node API objects and report status (NodeRestriction limits them to their own).
    Rule { verbs: &["create", "get", "list", "watch"], groups: &[""], resources: &["nodes"] },
    Rule { verbs: &["update", "patch"], groups: &[""], resources: &["nodes/status"] },
    Rule { verbs: &["update", "patch"], groups: &[""], resources: &["nodes"] },
    Rule { verbs: &["create", "update", "patch"], groups: &[""], resources: &["events"] },
    Rule { verbs: READ, groups: &[""], resources: &["pods"] },
    // Mirror pods (NodeRestriction limits them to pods bound to the node).
    Rule { verbs: &["create", "delete"], groups: &[""], resources: &["pods"] },
    Rule { verbs: &["update", "patch"], groups: &[""], resources: &["pods/status"] },
    Rule { verbs: &["create"], groups: &[""], resources: &["pods/eviction"] },
    // The Node authorizer narrows these to the objects the node's pods use.
    Rule { verbs: &["get", "list", "watch"], groups: &[""], resources: &["secrets", "configmaps"] },
    Rule { verbs: &["get"], groups: &[""], resources: &["persistentvolumeclaims", "persistentvolumes"] },
    // Needed for glusterfs volumes.
    Rule { verbs: &["get"], groups: &[""], resources: &["endpoints"] },
    // Client certificate rotation.
    Rule {
        verbs: &["create", "get", "list", "watch"],
        groups: &["certificates.k8s.io"],
        resources: &["certificatesigningrequests"],
    },
    Rule {
        verbs: &["get", "create", "update", "patch", "delete"],
        groups: &["coordination.k8s.io"],
        resources: &["leases"],
    },
    Rule { verbs: &["get"], groups: &["storage.k8s.io"], resources: &["volumeattachments"] },
    Rule { verbs: &["create"], groups: &[""], resources: &["serviceaccounts/token"] },
    Rule { verbs: &["get", "update", "patch"], groups: &[""], resources: &["persistentvolumeclaims/status"] },
    Rule { verbs: &["get", "watch", "list"], groups: &["storage.k8s.io"], resources: &["csidrivers"] },
    Rule {
        verbs: &["get", "create", "update", "patch", "delete"],
        groups: &["storage.k8s.io"],
        resources: &["csinodes"],
    },
    Rule { verbs: &["get", "list", "watch"], groups: &["node.k8s.io"], resources: &["runtimeclasses"] },
];

fn matches(rule: &Rule, a: &Attributes) -> bool {
    let verb = rule.verbs.iter().any(|v| *v == "*" || *v == a.verb);
    let group = rule.groups.iter().any(|g| *g == "*" || *g == a.api_group);
    let combined =
        if a.subresource.is_empty() { a.resource.clone() } else { format!("{}/{}", a.resource, a.subresource) };
    let resource = rule.resources.iter().any(|r| {
        *r == "*"
            || *r == combined
            || (!a.subresource.is_empty() && r.strip_prefix("*/").is_some_and(|sub| sub == a.subresource))
    });
    verb && group && resource
}

/// Whether a static node rule allows the request. The rules name no non-resource URLs.
pub fn allow(a: &Attributes) -> bool {
    a.resource_request && NODE_RULES.iter().any(|rule| matches(rule, a))
}
