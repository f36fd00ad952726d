//! Table tests mirroring upstream's `node_authorizer_test.go` (`TestNodeAuthorizer`,
//! `TestNodeAuthorizerSharedResources`) plus the populator's update and delete paths.

use super::*;
use serde_json::json;

fn user(name: &str) -> UserInfo {
    UserInfo::authenticated(name.to_string(), String::new(), vec![NODES_GROUP.to_string()])
}

/// Upstream's `generate` + `populate` with the options of `TestNodeAuthorizer`: 2 nodes, 2 namespaces, 2 pods
/// per node, one attachment per node, per pod one unique configmap, secret, PVC (with a PV whose flex secret
/// is `secret-<pv>`), claim, template claim without status and template claim with a generated claim, one
/// shared secret, and slices 0..=2 per node.
fn sample() -> NodeAuthorizer {
    let authz = NodeAuthorizer::new();
    for n in 0..2 {
        let node = format!("node{n}");
        for p in 0..2 {
            let name = format!("pod{p}-{node}");
            let ns = format!("ns{}", p % 2);
            let pv = format!("pv0-{name}-{ns}");
            let pvc = format!("pvc0-{name}");
            authz.apply(
                "pods",
                &json!({
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {
                        "nodeName": node,
                        "serviceAccountName": format!("svcacct{p}-{node}"),
                        "volumes": [
                            {"name": "s", "secret": {"secretName": format!("secret0-{name}")}},
                            {"name": "shared", "secret": {"secretName": "secret0-shared"}},
                            {"name": "c", "configMap": {"name": format!("configmap0-{name}")}},
                            {"name": "pvc", "persistentVolumeClaim": {"claimName": pvc}}
                        ],
                        "resourceClaims": [
                            {"name": "claim0", "resourceClaimName": format!("claim0-{name}-{ns}")},
                            {"name": "claimtemplate0", "resourceClaimTemplateName": format!("claimtemplate0-{name}-{ns}")},
                            {"name": "claimtemplate-with-claim0", "resourceClaimTemplateName": format!("claimtemplate0-{name}-{ns}")}
                        ]
                    },
                    "status": {"resourceClaimStatuses": [
                        {"name": "claimtemplate-with-claim0", "resourceClaimName": format!("generated-claim-{name}-{ns}-0")}
                    ]}
                }),
                false,
            );
            authz.apply(
                "persistentvolumes",
                &json!({"metadata": {"name": pv}, "spec": {
                    "flexVolume": {"driver": "d", "secretRef": {"name": format!("secret-{pv}")}},
                    "claimRef": {"name": pvc, "namespace": ns}
                }}),
                false,
            );
        }
        authz.apply(
            "volumeattachments",
            &json!({"metadata": {"name": format!("attachment0-{node}")}, "spec": {"nodeName": node}}),
            false,
        );
        for s in 0..=2 {
            authz.apply(
                "resourceslices",
                &json!({"metadata": {"name": format!("slice{s}-{node}")}, "spec": {"nodeName": node}}),
                false,
            );
        }
    }
    authz
}

#[derive(Clone, Copy, PartialEq)]
enum Gates {
    Both,
    SelectorsOff,
    SelectorsOn,
}

struct Case {
    name: &'static str,
    user: &'static str,
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    subresource: &'static str,
    namespace: &'static str,
    object: &'static str,
    selector: &'static str,
    expect: Decision,
    gates: Gates,
}

const N0: &str = "system:node:node0";

const fn case(
    name: &'static str,
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    namespace: &'static str,
    object: &'static str,
    expect: Decision,
) -> Case {
    Case {
        name,
        user: N0,
        verb,
        group,
        resource,
        subresource: "",
        namespace,
        object,
        selector: "",
        expect,
        gates: Gates::Both,
    }
}

const fn sub(mut c: Case, subresource: &'static str) -> Case {
    c.subresource = subresource;
    c
}

const fn sel(mut c: Case, selector: &'static str) -> Case {
    c.selector = selector;
    c
}

const fn gates(mut c: Case, gates: Gates) -> Case {
    c.gates = gates;
    c
}

const fn by(mut c: Case, user: &'static str) -> Case {
    c.user = user;
    c
}

use Decision::{Allow, NoOpinion as No};
use Gates::{SelectorsOff as Off, SelectorsOn as On};

const CO: &str = "coordination.k8s.io";
const ST: &str = "storage.k8s.io";
const RS: &str = "resource.k8s.io";
const NL: &str = NODE_LEASE_NAMESPACE;

#[rustfmt::skip]
const CASES: &[Case] = &[
    case("allowed configmap", "get", "", "configmaps", "ns0", "configmap0-pod0-node0", Allow),
    case("allowed secret via pod", "get", "", "secrets", "ns0", "secret0-pod0-node0", Allow),
    case("list allowed secret via pod", "list", "", "secrets", "ns0", "secret0-pod0-node0", Allow),
    case("watch allowed secret via pod", "watch", "", "secrets", "ns0", "secret0-pod0-node0", Allow),
    case("disallowed list many secrets", "list", "", "secrets", "ns0", "", No),
    case("disallowed watch many secrets", "watch", "", "secrets", "ns0", "", No),
    case("disallowed list secrets from all namespaces with name", "list", "", "secrets", "", "secret0-pod0-node0", No),
    case("allowed shared secret via pod", "get", "", "secrets", "ns0", "secret0-shared", Allow),
    case("allowed shared secret via pvc", "get", "", "secrets", "ns0", "secret-pv0-pod0-node0-ns0", Allow),
    case("allowed pvc", "get", "", "persistentvolumeclaims", "ns0", "pvc0-pod0-node0", Allow),
    case("allowed resource claim", "get", RS, "resourceclaims", "ns0", "claim0-pod0-node0-ns0", Allow),
    case("allowed resource claim with template", "get", RS, "resourceclaims", "ns0", "generated-claim-pod0-node0-ns0-0", Allow),
    case("allowed pv", "get", "", "persistentvolumes", "", "pv0-pod0-node0-ns0", Allow),
    case("disallowed configmap", "get", "", "configmaps", "ns0", "configmap0-pod0-node1", No),
    case("disallowed secret via pod", "get", "", "secrets", "ns0", "secret0-pod0-node1", No),
    case("disallowed shared secret via pvc", "get", "", "secrets", "ns0", "secret-pv0-pod0-node1-ns0", No),
    case("disallowed pvc", "get", "", "persistentvolumeclaims", "ns0", "pvc0-pod0-node1", No),
    case("disallowed resource claim, other node", "get", RS, "resourceclaims", "ns0", "claim0-pod0-node1-ns0", No),
    case("disallowed resource claim with template", "get", RS, "resourceclaims", "ns0", "pod0-node1-claimtemplate0", No),
    case("disallowed pv", "get", "", "persistentvolumes", "", "pv0-pod0-node1-ns0", No),
    case("allowed attachment", "get", ST, "volumeattachments", "", "attachment0-node0", Allow),
    case("disallowed attachment - no relationship", "get", ST, "volumeattachments", "", "attachment0-node1", No),
    sub(case("allowed svcacct token create", "create", "", "serviceaccounts", "ns0", "svcacct0-node0", Allow), "token"),
    sub(case("disallowed svcacct token create - serviceaccount not attached to node", "create", "", "serviceaccounts", "ns0", "svcacct0-node1", No), "token"),
    case("disallowed svcacct token create - no subresource", "create", "", "serviceaccounts", "ns0", "svcacct0-node0", No),
    sub(case("disallowed svcacct token create - non create", "update", "", "serviceaccounts", "ns0", "svcacct0-node0", No), "token"),
    // leases
    case("disallowed get lease in namespace other than kube-node-lease", "get", CO, "leases", "foo", "node0", No),
    case("disallowed create lease in namespace other than kube-node-lease", "create", CO, "leases", "foo", "node0", No),
    case("disallowed update lease in namespace other than kube-node-lease", "update", CO, "leases", "foo", "node0", No),
    case("disallowed patch lease in namespace other than kube-node-lease", "patch", CO, "leases", "foo", "node0", No),
    case("disallowed delete lease in namespace other than kube-node-lease", "delete", CO, "leases", "foo", "node0", No),
    case("disallowed get another node's lease", "get", CO, "leases", NL, "node1", No),
    case("disallowed update another node's lease", "update", CO, "leases", NL, "node1", No),
    case("disallowed patch another node's lease", "patch", CO, "leases", NL, "node1", No),
    case("disallowed delete another node's lease", "delete", CO, "leases", NL, "node1", No),
    case("disallowed list node leases", "list", CO, "leases", NL, "", No),
    case("disallowed watch node leases", "watch", CO, "leases", NL, "", No),
    case("allowed get node lease", "get", CO, "leases", NL, "node0", Allow),
    case("allowed create node lease", "create", CO, "leases", NL, "node0", Allow),
    case("allowed update node lease", "update", CO, "leases", NL, "node0", Allow),
    case("allowed patch node lease", "patch", CO, "leases", NL, "node0", Allow),
    case("allowed delete node lease", "delete", CO, "leases", NL, "node0", Allow),
    // CSINodes
    sub(case("disallowed CSINode with subresource", "get", ST, "csinodes", "", "node0", No), "csiDrivers"),
    case("disallowed get another node's CSINode", "get", ST, "csinodes", "", "node1", No),
    case("disallowed update another node's CSINode", "update", ST, "csinodes", "", "node1", No),
    case("disallowed patch another node's CSINode", "patch", ST, "csinodes", "", "node1", No),
    case("disallowed delete another node's CSINode", "delete", ST, "csinodes", "", "node1", No),
    case("disallowed list CSINodes", "list", ST, "csinodes", "", "", No),
    case("disallowed watch CSINodes", "watch", ST, "csinodes", "", "", No),
    case("allowed get CSINode", "get", ST, "csinodes", "", "node0", Allow),
    case("allowed create CSINode", "create", ST, "csinodes", "", "node0", Allow),
    case("allowed update CSINode", "update", ST, "csinodes", "", "node0", Allow),
    case("allowed patch CSINode", "patch", ST, "csinodes", "", "node0", Allow),
    case("allowed delete CSINode", "delete", ST, "csinodes", "", "node0", Allow),
    // ResourceSlices
    sub(case("disallowed ResourceSlice with subresource", "get", RS, "resourceslices", "", "slice0-node0", No), "status"),
    case("disallowed get another node's ResourceSlice", "get", RS, "resourceslices", "", "slice0-node1", No),
    case("disallowed update another node's ResourceSlice", "update", RS, "resourceslices", "", "slice0-node1", No),
    case("disallowed patch another node's ResourceSlice", "patch", RS, "resourceslices", "", "slice0-node1", No),
    case("disallowed delete another node's ResourceSlice", "delete", RS, "resourceslices", "", "slice0-node1", No),
    sel(case("allowed filtered list ResourceSlices", "list", RS, "resourceslices", "", "", Allow), "spec.nodeName==node0"),
    gates(case("allowed unfiltered list ResourceSlices - selector authz disabled", "list", RS, "resourceslices", "", "", Allow), Off),
    gates(case("disallowed unfiltered list ResourceSlices - selector authz enabled", "list", RS, "resourceslices", "", "", No), On),
    gates(sel(case("disallowed other node's list ResourceSlices - selector authz enabled", "list", RS, "resourceslices", "", "", No), "spec.nodeName=node1"), On),
    sel(case("allowed filtered watch ResourceSlices", "watch", RS, "resourceslices", "", "", Allow), "spec.nodeName==node0"),
    gates(case("allowed unfiltered watch ResourceSlices - selector authz disabled", "watch", RS, "resourceslices", "", "", Allow), Off),
    gates(case("disallowed unfiltered watch ResourceSlices - selector authz enabled", "watch", RS, "resourceslices", "", "", No), On),
    case("allowed get ResourceSlice", "get", RS, "resourceslices", "", "slice0-node0", Allow),
    case("allowed create ResourceSlice", "create", RS, "resourceslices", "", "slice0-node0", Allow),
    case("allowed update ResourceSlice", "update", RS, "resourceslices", "", "slice0-node0", Allow),
    case("allowed patch ResourceSlice", "patch", RS, "resourceslices", "", "slice0-node0", Allow),
    case("allowed delete ResourceSlice", "delete", RS, "resourceslices", "", "slice0-node0", Allow),
    // pods
    case("get related pod", "get", "", "pods", "ns0", "pod0-node0", Allow),
    gates(case("get unrelated pod - selector disabled", "get", "", "pods", "ns0", "pod0-node1", Allow), Off),
    gates(case("get unrelated pod - selector enabled", "get", "", "pods", "ns0", "pod0-node1", No), On),
    sel(case("list related pods", "list", "", "pods", "", "", Allow), "spec.nodeName=node0"),
    sel(case("list related pods - alternate selector", "list", "", "pods", "", "", Allow), "spec.nodeName==node0"),
    case("list single related pod", "list", "", "pods", "ns0", "pod0-node0", Allow),
    gates(case("list unrelated pods - selector disabled", "list", "", "pods", "", "", Allow), Off),
    gates(case("list unrelated pods - selector enabled", "list", "", "pods", "", "", No), On),
    sel(case("watch related pods", "watch", "", "pods", "", "", Allow), "spec.nodeName=node0"),
    sel(case("watch related pods - alternate selector", "watch", "", "pods", "", "", Allow), "spec.nodeName==node0"),
    case("watch single related pod", "watch", "", "pods", "ns0", "pod0-node0", Allow),
    gates(case("watch unrelated pods - selector disabled", "watch", "", "pods", "", "", Allow), Off),
    gates(case("watch unrelated pods - selector enabled", "watch", "", "pods", "", "", No), On),
    case("create unnamed pod", "create", "", "pods", "ns0", "", Allow),
    sub(case("create pod proxy subresource forbidden", "create", "", "pods", "ns0", "", No), "proxy"),
    case("delete related pod", "delete", "", "pods", "ns0", "pod0-node0", Allow),
    case("delete unrelated pod", "delete", "", "pods", "ns0", "pod0-node1", Allow),
    sub(case("delete pod proxy subresource forbidden", "delete", "", "pods", "ns0", "pod0-node0", No), "proxy"),
    sub(case("update related pod status", "update", "", "pods", "ns0", "pod0-node0", Allow), "status"),
    sub(case("update unrelated pod status", "update", "", "pods", "ns0", "pod0-node1", Allow), "status"),
    sub(case("patch related pod status", "patch", "", "pods", "ns0", "pod0-node0", Allow), "status"),
    sub(case("patch unrelated pod status", "patch", "", "pods", "ns0", "pod0-node1", Allow), "status"),
    sub(case("get pod status", "get", "", "pods", "ns0", "pod0-node0", No), "status"),
    sub(case("create related pod eviction", "create", "", "pods", "ns0", "pod0-node0", Allow), "eviction"),
    sub(case("create unrelated pod eviction", "create", "", "pods", "ns0", "pod0-node1", Allow), "eviction"),
    // nodes
    by(case("get related unregistered node", "get", "", "nodes", "", "nodeunregistered", Allow), "system:node:nodeunregistered"),
    case("get related node", "get", "", "nodes", "", "node0", Allow),
    gates(case("get unrelated node - selector disabled", "get", "", "nodes", "", "node1", Allow), Off),
    gates(case("get unrelated node - selector enabled", "get", "", "nodes", "", "node1", No), On),
    case("list single related node", "list", "", "nodes", "", "node0", Allow),
    gates(case("list single unrelated node - selector disabled", "list", "", "nodes", "", "node1", Allow), Off),
    gates(case("list single unrelated node - selector enabled", "list", "", "nodes", "", "node1", No), On),
    gates(case("list all nodes - selector disabled", "list", "", "nodes", "", "", Allow), Off),
    gates(case("list all nodes - selector enabled", "list", "", "nodes", "", "", No), On),
    case("watch single related node", "watch", "", "nodes", "", "node0", Allow),
    gates(case("watch single unrelated node - selector disabled", "watch", "", "nodes", "", "node1", Allow), Off),
    gates(case("watch single unrelated node - selector enabled", "watch", "", "nodes", "", "node1", No), On),
    gates(case("watch all nodes - selector disabled", "watch", "", "nodes", "", "", Allow), Off),
    gates(case("watch all nodes - selector enabled", "watch", "", "nodes", "", "", No), On),
    case("create node", "create", "", "nodes", "", "", Allow),
    case("update related node", "update", "", "nodes", "", "node0", Allow),
    case("update unrelated node", "update", "", "nodes", "", "node1", Allow),
    case("patch related node", "patch", "", "nodes", "", "node0", Allow),
    case("patch unrelated node", "patch", "", "nodes", "", "node1", Allow),
    sub(case("update related node status", "update", "", "nodes", "", "node0", Allow), "status"),
    sub(case("update unrelated node status", "update", "", "nodes", "", "node1", Allow), "status"),
    sub(case("patch related node status", "patch", "", "nodes", "", "node0", Allow), "status"),
    sub(case("patch unrelated node status", "patch", "", "nodes", "", "node1", Allow), "status"),
    case("delete node", "delete", "", "nodes", "", "node0", No),
    // the static node rules
    case("static rule: create events", "create", "", "events", "ns0", "", Allow),
    case("static rule: list services", "list", "", "services", "", "", Allow),
    case("static rule: create tokenreviews", "create", "authentication.k8s.io", "tokenreviews", "", "", Allow),
    case("static rule: watch csidrivers", "watch", ST, "csidrivers", "", "", Allow),
    case("static rule: create CSRs", "create", "certificates.k8s.io", "certificatesigningrequests", "", "", Allow),
    case("no rule: list endpoints", "list", "", "endpoints", "ns0", "", No),
    case("no rule: create secrets", "create", "", "secrets", "ns0", "", No),
    case("no rule: delete deployments", "delete", "apps", "deployments", "ns0", "x", No),
    // pvc status, for volume expansion
    sub(case("update related pvc status", "update", "", "persistentvolumeclaims", "ns0", "pvc0-pod0-node0", Allow), "status"),
    sub(case("update unrelated pvc status", "update", "", "persistentvolumeclaims", "ns0", "pvc0-pod0-node1", No), "status"),
    sub(case("get pvc status", "get", "", "persistentvolumeclaims", "ns0", "pvc0-pod0-node0", No), "status"),
    // who is a node
    by(case("not a node", "get", "", "secrets", "ns0", "secret0-pod0-node0", No), "system:nodex:node0"),
    by(case("unidentified node", "get", "", "nodes", "", "", No), "system:node:"),
];

fn attributes(c: &Case) -> Attributes {
    Attributes {
        user: user(c.user),
        verb: c.verb.into(),
        resource_request: true,
        api_group: c.group.into(),
        api_version: "v1".into(),
        namespace: c.namespace.into(),
        resource: c.resource.into(),
        subresource: c.subresource.into(),
        name: c.object.into(),
        ..Default::default()
    }
}

#[test]
fn node_authorizer_table() {
    let enabled = sample();
    let disabled = sample().with_selector_authorization(false);
    for c in CASES {
        let selector = FieldSelector::parse(c.selector).unwrap();
        let selector = (!c.selector.is_empty()).then_some(&selector);
        for (authz, suffix, gate) in [(&disabled, "selector_disabled", Off), (&enabled, "selector_enabled", On)] {
            if c.gates != Gates::Both && c.gates != gate {
                continue;
            }
            let (decision, reason) = authz.authorize_with_field_selector(&attributes(c), selector);
            assert_eq!(decision, c.expect, "{}_{suffix}: {reason}", c.name);
        }
    }
}

#[test]
fn deny_reasons_are_upstreams() {
    let authz = sample();
    let reason = |verb: &str, group: &str, resource: &str, sub: &str, ns: &str, name: &str| {
        let c = Case {
            name: "",
            user: N0,
            verb: "",
            group: "",
            resource: "",
            subresource: "",
            namespace: "",
            object: "",
            selector: "",
            expect: No,
            gates: Gates::Both,
        };
        let mut a = attributes(&c);
        (a.verb, a.api_group, a.resource, a.subresource, a.namespace, a.name) =
            (verb.into(), group.into(), resource.into(), sub.into(), ns.into(), name.into());
        let (decision, reason) = authz.authorize(&a);
        assert_eq!(decision, No, "{verb} {resource}");
        reason
    };
    assert_eq!(
        reason("get", "", "secrets", "", "ns0", "secret0-pod0-node1"),
        "no relationship found between node 'node0' and this object"
    );
    assert_eq!(reason("delete", "", "secrets", "", "ns0", "x"), "can only read resources of this type");
    assert_eq!(reason("get", "", "secrets", "status", "ns0", "x"), "cannot read subresource");
    assert_eq!(reason("get", "", "secrets", "", "", "x"), "can only read namespaced object of this type");
    assert_eq!(reason("list", "", "secrets", "", "ns0", ""), "No Object name found");
    assert_eq!(reason("list", "", "persistentvolumes", "", "", ""), "can only get individual resources of this type");
    assert_eq!(reason("get", "", "persistentvolumes", "status", "", "x"), "cannot get subresource");
    assert_eq!(
        reason("get", "", "persistentvolumeclaims", "status", "ns0", "x"),
        "can only get/update/patch this type"
    );
    assert_eq!(
        reason("get", "", "serviceaccounts", "token", "ns0", "sa"),
        "can only create tokens for individual service accounts"
    );
    assert_eq!(
        reason("create", "", "serviceaccounts", "", "ns0", "sa"),
        "can only create token subresource of serviceaccount"
    );
    assert_eq!(reason("list", CO, "leases", "", NL, ""), "can only get, create, update, patch, or delete a node lease");
    assert_eq!(
        reason("get", CO, "leases", "", "default", "node0"),
        "can only access leases in the \"kube-node-lease\" system namespace"
    );
    assert_eq!(
        reason("get", CO, "leases", "", NL, "node1"),
        "can only access node lease with the same name as the requesting node"
    );
    assert_eq!(reason("list", ST, "csinodes", "", "", ""), "can only get, create, update, patch, or delete a CSINode");
    assert_eq!(reason("get", ST, "csinodes", "x", "", "node0"), "cannot authorize CSINode subresources");
    assert_eq!(
        reason("get", ST, "csinodes", "", "", "node1"),
        "can only access CSINode with the same name as the requesting node"
    );
    assert_eq!(reason("get", RS, "resourceslices", "status", "", "s"), "cannot authorize ResourceSlice subresources");
    assert_eq!(
        reason("list", RS, "resourceslices", "", "", ""),
        "can only list/watch/deletecollection resourceslices with nodeName field selector"
    );
    assert_eq!(
        reason("escalate", RS, "resourceslices", "", "", ""),
        "only the following verbs are allowed for a ResourceSlice: get, watch, list, create, update, patch, delete, deletecollection"
    );
    assert_eq!(reason("list", "", "pods", "", "", ""), "can only list/watch pods with spec.nodeName field selector");
    assert_eq!(reason("list", "", "nodes", "", "", ""), "node 'node0' cannot read all nodes, only its own Node object");
    assert_eq!(
        reason("get", "", "nodes", "", "", "node1"),
        "node 'node0' cannot read 'node1', only its own Node object"
    );
    let mut nameless = attributes(&CASES[0]);
    nameless.user = user("system:node:");
    assert_eq!(authz.authorize(&nameless).1, "unknown node for user \"system:node:\"");
}

#[test]
fn shared_resources() {
    let authz = NodeAuthorizer::new();
    let pod = |name: &str, node: &str, secrets: &[&str]| {
        let volumes: Vec<Value> = secrets.iter().map(|s| json!({"name": s, "secret": {"secretName": s}})).collect();
        json!({"metadata": {"name": name, "namespace": "ns1"}, "spec": {"nodeName": node, "volumes": volumes}})
    };
    authz.apply("pods", &pod("pod1-node1", "node1", &["node1-only", "node1-node2-only", "shared-all"]), false);
    authz.apply("pods", &pod("pod2-node2", "node2", &["node1-node2-only", "shared-all"]), false);
    authz.apply("pods", &pod("pod3-node3", "node3", &["shared-all"]), false);
    let get = |node: &str, secret: &str| {
        let a = Attributes {
            user: user(&format!("system:node:{node}")),
            verb: "get".into(),
            resource_request: true,
            resource: "secrets".into(),
            namespace: "ns1".into(),
            name: secret.into(),
            ..Default::default()
        };
        authz.authorize(&a).0
    };
    for (node, secret, expect) in [
        ("node1", "node1-only", Allow),
        ("node1", "node1-node2-only", Allow),
        ("node1", "shared-all", Allow),
        ("node2", "node1-only", No),
        ("node2", "node1-node2-only", Allow),
        ("node2", "shared-all", Allow),
        ("node3", "node1-only", No),
        ("node3", "node1-node2-only", No),
        ("node3", "shared-all", Allow),
    ] {
        assert_eq!(get(node, secret), expect, "{node} {secret}");
    }
    // an update that drops the volume drops the access
    authz.apply("pods", &pod("pod3-node3", "node3", &[]), false);
    assert_eq!(get("node3", "shared-all"), No);
    assert_eq!(get("node1", "shared-all"), Allow);
}

#[test]
fn populator_follows_binding_updates_and_deletes() {
    let authz = NodeAuthorizer::new();
    let get_secret = |name: &str| {
        let a = Attributes {
            user: user(N0),
            verb: "get".into(),
            resource_request: true,
            resource: "secrets".into(),
            namespace: "ns".into(),
            name: name.into(),
            ..Default::default()
        };
        authz.authorize(&a).0
    };
    let mut pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {
        "containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "env"}}]}]
    }});
    authz.apply("pods", &pod, false);
    assert_eq!(get_secret("env"), No, "an unscheduled pod grants nothing");
    pod["spec"]["nodeName"] = json!("node0");
    authz.apply("pods", &pod, false);
    assert_eq!(get_secret("env"), Allow);
    // ephemeral containers can add references to a running pod
    pod["spec"]["ephemeralContainers"] =
        json!([{"name": "debug", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "debug"}}}]}]);
    authz.apply("pods", &pod, false);
    assert_eq!(get_secret("debug"), Allow);
    authz.apply("pods", &pod, true);
    assert_eq!(get_secret("env"), No);
    assert_eq!(get_secret("debug"), No);
    // other resources are ignored
    authz.apply("configmaps", &json!({"metadata": {"name": "x"}}), false);
}

#[test]
fn rules_for_nodes_are_incomplete() {
    let authz = NodeAuthorizer::new();
    assert!(authz.rules_for(&user(N0), "ns").2);
    assert!(!authz.rules_for(&UserInfo::authenticated("bob".into(), String::new(), vec![]), "ns").2);
}
