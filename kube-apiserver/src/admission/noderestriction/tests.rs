//! Table tests mirroring upstream's `admission_test.go` (`Test_nodePlugin_Admit`,
//! `Test_nodePlugin_Admit_OwnerReference`) and the PVC status and ResourceSlice cases.

use std::collections::{HashMap, HashSet};

use super::*;
use serde_json::json;

/// Stored objects and the audiences the fake authorizer grants.
#[derive(Default)]
struct Fake {
    objects: HashMap<(String, String, String), Value>,
    granted_audiences: HashSet<String>,
}

impl Fake {
    fn with(mut self, resource: &str, obj: Value) -> Fake {
        let ns = str_at(&obj, "/metadata/namespace").to_string();
        let name = str_at(&obj, "/metadata/name").to_string();
        self.objects.insert((resource.into(), ns, name), obj);
        self
    }
}

impl Lookup for Fake {
    fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.objects.get(&(resource.into(), namespace.into(), name.into())).cloned()
    }

    fn authorize(&self, a: &Attributes) -> Decision {
        let grant = a.verb == "request-serviceaccounts-token-audience" && self.granted_audiences.contains(&a.resource);
        if grant { Decision::Allow } else { Decision::NoOpinion }
    }
}

fn mynode() -> UserInfo {
    UserInfo::authenticated("system:node:mynode".into(), String::new(), vec!["system:nodes".into()])
}

fn bob() -> UserInfo {
    UserInfo::authenticated("bob".into(), String::new(), vec![])
}

/// Upstream's `makeTestPod`: uid `pod-uid`; a mirror pod has the annotation and a controller owner reference
/// to its node (uid `<node>-uid`).
fn pod(name: &str, node: &str, mirror: bool) -> Value {
    let mut pod = json!({"metadata": {"name": name, "namespace": "ns", "uid": "pod-uid"}, "spec": {"nodeName": node}});
    if mirror {
        pod["metadata"]["annotations"] = json!({MIRROR_POD_ANNOTATION: "true"});
        pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Node", "name": node, "uid": format!("{node}-uid"), "controller": true}]);
    }
    pod
}

fn eviction(name: &str) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "ns"}})
}

fn token_request(pod: &str, uid: &str, audiences: &[&str]) -> Value {
    let mut tr = json!({"metadata": {"namespace": "ns"}, "spec": {"audiences": audiences}});
    if !pod.is_empty() {
        tr["spec"]["boundObjectRef"] = json!({"kind": "Pod", "apiVersion": "v1", "name": pod, "uid": uid});
    }
    tr
}

fn with_volumes(mut pod: Value, volumes: Value) -> Value {
    pod["spec"]["volumes"] = volumes;
    pod
}

/// The cluster of upstream's test: the six pods, the audience pods, `mynode`, a CSI driver and a migrated
/// Azure File driver requesting audience `foo`, PVCs bound to a CSI PV and an in-tree Azure File PV.
fn cluster() -> Fake {
    let mut fake = Fake::default()
        .with("nodes", json!({"metadata": {"name": "mynode", "uid": "mynode-uid"}}))
        .with("csidrivers", json!({"metadata": {"name": "com.example.csi.mydriver"}, "spec": {"tokenRequests": [{"audience": "foo"}]}}))
        .with("csidrivers", json!({"metadata": {"name": "file.csi.azure.com"}, "spec": {"tokenRequests": [{"audience": "foo"}]}}))
        .with("persistentvolumeclaims", json!({"metadata": {"name": "pvclaim", "namespace": "ns"}, "spec": {"volumeName": "pvname"}}))
        .with("persistentvolumeclaims", json!({"metadata": {"name": "pvclaim-azurefile", "namespace": "ns"}, "spec": {"volumeName": "pvname-azurefile"}}))
        .with("persistentvolumeclaims", json!({"metadata": {"name": "myephemeralpod-myvol", "namespace": "ns"}, "spec": {"volumeName": "pvname"}}))
        .with("persistentvolumes", json!({"metadata": {"name": "pvname"}, "spec": {"csi": {"driver": "com.example.csi.mydriver"}}}))
        .with("persistentvolumes", json!({"metadata": {"name": "pvname-azurefile"}, "spec": {
            "claimRef": {"namespace": "ns"}, "azureFile": {"shareName": "default", "secretName": "secret"}}}));
    for (name, node, mirror) in [
        ("mymirrorpod", "mynode", true),
        ("othermirrorpod", "othernode", true),
        ("unboundmirrorpod", "", true),
        ("mypod", "mynode", false),
        ("otherpod", "othernode", false),
        ("unboundpod", "", false),
    ] {
        fake = fake.with("pods", pod(name, node, mirror));
    }
    let audience_pods = [
        (
            "mysapod",
            json!([{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"audience": "foo", "path": "t"}}]}}]),
        ),
        (
            "myemptyaudiencepod",
            json!([{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}]),
        ),
        ("mycsipod", json!([{"name": "v", "csi": {"driver": "com.example.csi.mydriver"}}])),
        ("mypvcpod", json!([{"name": "v", "persistentVolumeClaim": {"claimName": "pvclaim"}}])),
        ("myephemeralpod", json!([{"name": "myvol", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}])),
        (
            "mypvcandcsipod",
            json!([
                {"name": "a", "persistentVolumeClaim": {"claimName": "pvclaim"}},
                {"name": "b", "csi": {"driver": "com.example.csi.mydriver"}}
            ]),
        ),
        (
            "myintreeinlinevoltocsipod",
            json!([{"name": "v", "azureFile": {"shareName": "default", "secretName": "secret"}}]),
        ),
        ("myintreepvtocsipod", json!([{"name": "v", "persistentVolumeClaim": {"claimName": "pvclaim-azurefile"}}])),
    ];
    for (name, volumes) in audience_pods {
        fake = fake.with("pods", with_volumes(pod(name, "mynode", false), volumes));
    }
    fake
}

/// One request, built up from defaults.
#[derive(Clone)]
struct R {
    user: UserInfo,
    op: Operation,
    group: &'static str,
    resource: &'static str,
    sub: &'static str,
    ns: String,
    name: String,
    obj: Option<Value>,
    old: Option<Value>,
}

fn r(op: Operation, group: &'static str, resource: &'static str, sub: &'static str) -> R {
    R { user: mynode(), op, group, resource, sub, ns: String::new(), name: String::new(), obj: None, old: None }
}

impl R {
    fn named(mut self, ns: &str, name: &str) -> R {
        (self.ns, self.name) = (ns.into(), name.into());
        self
    }
    fn obj(mut self, obj: &Value) -> R {
        self.obj = Some(obj.clone());
        self
    }
    fn old(mut self, old: &Value) -> R {
        self.old = Some(old.clone());
        self
    }
    fn by(mut self, user: UserInfo) -> R {
        self.user = user;
        self
    }
    fn run_with(&self, features: Features, lookup: &dyn Lookup) -> Result<(), ApiError> {
        let req = Request {
            user: &self.user,
            operation: self.op,
            api_group: self.group,
            resource: self.resource,
            subresource: self.sub,
            namespace: &self.ns,
            name: &self.name,
            object: self.obj.as_ref(),
            old_object: self.old.as_ref(),
        };
        admit_with(features, &req, lookup)
    }
}

/// Checks the outcome: `err` empty for admitted, else a substring of the error's `Error()` text (upstream's
/// `strings.Contains(err.Error(), tt.err)`; Go's text of a StatusError is its message).
fn expect(case: &str, result: Result<(), ApiError>, err: &str) {
    match (result, err) {
        (Ok(()), "") => {}
        (Ok(()), _) => panic!("{case}: admitted, expected {err:?}"),
        (Err(e), "") => panic!("{case}: refused: {}", e.message),
        (Err(e), _) => assert!(e.message.contains(err), "{case}: {:?} does not contain {err:?}", e.message),
    }
}

use Operation::{Create, Delete, Update};

fn pods(op: Operation, sub: &'static str) -> R {
    r(op, "", "pods", sub)
}

#[test]
fn pods_and_evictions() {
    let fake = cluster();
    let none = Fake::default().with("nodes", json!({"metadata": {"name": "mynode", "uid": "mynode-uid"}}));
    let run =
        |case: &str, req: R, lookup: &Fake, err: &str| expect(case, req.run_with(Features::default(), lookup), err);
    let unexpected = "forbidden: unexpected operation";
    let itself = "spec.nodeName set to itself";
    for (who, node) in [
        ("mirror pod bound to self", "mynode"),
        ("mirror pod bound to another", "othernode"),
        ("mirror pod unbound", ""),
    ] {
        let name = match node {
            "mynode" => "mymirrorpod",
            "othernode" => "othermirrorpod",
            _ => "unboundmirrorpod",
        };
        let mine = node == "mynode";
        let p = pod(name, node, true);
        let ok_or = |e: &'static str| if mine { "" } else { e };
        run(&format!("create {who}"), pods(Create, "").named("ns", name).obj(&p), &none, ok_or(itself));
        run(&format!("update {who}"), pods(Update, "").named("ns", name).obj(&p).old(&p), &fake, unexpected);
        run(&format!("delete {who}"), pods(Delete, "").named("ns", name), &fake, ok_or(itself));
        run(&format!("create status of {who}"), pods(Create, "status").named("ns", name).obj(&p), &none, unexpected);
        run(
            &format!("update status of {who}"),
            pods(Update, "status").named("ns", name).obj(&p).old(&p),
            &fake,
            ok_or(itself),
        );
        run(&format!("delete status of {who}"), pods(Delete, "status").named("ns", name), &fake, unexpected);
        let ev = eviction(name);
        run(
            &format!("create eviction of {who}"),
            pods(Create, "eviction").named("ns", name).obj(&ev),
            &fake,
            ok_or(itself),
        );
        run(
            &format!("update eviction of {who}"),
            pods(Update, "eviction").named("ns", name).obj(&ev),
            &fake,
            unexpected,
        );
        run(
            &format!("delete eviction of {who}"),
            pods(Delete, "eviction").named("ns", name).obj(&ev),
            &fake,
            unexpected,
        );
        run(
            &format!("create unnamed eviction of {who}"),
            pods(Create, "eviction").named("ns", name).obj(&eviction("")),
            &fake,
            ok_or(itself),
        );
    }
    // normal pods
    let mypod = pod("mypod", "mynode", false);
    run(
        "forbid create of normal pod bound to self",
        pods(Create, "").named("ns", "mypod").obj(&mypod),
        &none,
        "can only create mirror pods",
    );
    run("allow delete of normal pod bound to self", pods(Delete, "").named("ns", "mypod"), &fake, "");
    run(
        "allow update of normal pod status bound to self",
        pods(Update, "status").named("ns", "mypod").obj(&mypod).old(&mypod),
        &fake,
        "",
    );
    run(
        "allow eviction of normal pod bound to self",
        pods(Create, "eviction").named("ns", "mypod").obj(&eviction("mypod")),
        &fake,
        "",
    );
    run("forbid delete of normal pod bound to another", pods(Delete, "").named("ns", "otherpod"), &fake, itself);
    let other = pod("otherpod", "othernode", false);
    run(
        "forbid update of normal pod status bound to another",
        pods(Update, "status").named("ns", "otherpod").obj(&other).old(&other),
        &fake,
        itself,
    );
    run(
        "forbid eviction of normal pod unbound",
        pods(Create, "eviction").named("ns", "unboundpod").obj(&eviction("unboundpod")),
        &fake,
        itself,
    );
    // missing pods
    run("forbid delete of unknown pod", pods(Delete, "").named("ns", "unboundpod"), &none, "not found");
    run(
        "forbid create of eviction for unknown pod",
        pods(Create, "eviction").named("ns", "mypod").obj(&eviction("mypod")),
        &none,
        "not found",
    );
    run(
        "forbid create of unnamed eviction for unknown pod",
        pods(Create, "eviction").named("ns", "mypod").obj(&eviction("")),
        &none,
        "not found",
    );
    // the eviction's own name when the URL has none
    run(
        "allow create of eviction for unnamed pod",
        pods(Create, "eviction").named("ns", "").obj(&eviction("mypod")),
        &fake,
        "",
    );
    run(
        "forbid create of unnamed eviction for unnamed pod",
        pods(Create, "eviction").named("ns", "").obj(&eviction("")),
        &fake,
        "could not determine pod from request data",
    );
    // pods referencing other objects
    let mirror = |name: &str, extra: Value| {
        let mut p = pod(name, "mynode", true);
        for (k, v) in extra.as_object().unwrap() {
            p["spec"][k] = v.clone();
        }
        p
    };
    for (case, p, err) in [
        ("service account", mirror("mysapod", json!({"serviceAccountName": "foo"})), "reference a service account"),
        (
            "secret",
            mirror("mysecretpod", json!({"volumes": [{"name": "v", "secret": {"secretName": "foo"}}]})),
            "reference secrets",
        ),
        (
            "env secret",
            mirror(
                "myenvpod",
                json!({"containers": [{"name": "c", "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}]}),
            ),
            "reference secrets",
        ),
        (
            "configmap",
            mirror("myconfigmappod", json!({"volumes": [{"name": "v", "configMap": {"name": "foo"}}]})),
            "reference configmaps",
        ),
        (
            "clustertrustbundle",
            mirror(
                "myctbpod",
                json!({"volumes": [{"name": "v", "projected": {"sources": [{"clusterTrustBundle": {"name": "foo", "path": "p"}}]}}]}),
            ),
            "reference clustertrustbundles",
        ),
        (
            "persistentvolumeclaim",
            mirror("mypvcpod", json!({"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "foo"}}]})),
            "reference persistentvolumeclaims",
        ),
    ] {
        let name = p["metadata"]["name"].as_str().unwrap().to_string();
        run(
            &format!("forbid create of pod referencing {case}"),
            pods(Create, "").named("ns", &name).obj(&p),
            &none,
            err,
        );
    }
    run(
        "forbid an unknown pod subresource",
        pods(Create, "exec").named("ns", "mypod"),
        &fake,
        "unexpected pod subresource \"exec\", only 'status' and 'eviction' are allowed",
    );
}

#[test]
fn pod_status_may_not_relabel_or_change_claims() {
    let fake = cluster();
    let mypod = pod("mypod", "mynode", false);
    let mut a = mypod.clone();
    a["metadata"]["labels"] = json!({"label-a": "value-a"});
    let mut ab = mypod.clone();
    ab["metadata"]["labels"] = json!({"label-a": "value-a", "label-b": "value-b"});
    let status = |obj: &Value, old: &Value| {
        pods(Update, "status").named("ns", "mypod").obj(obj).old(old).run_with(Features::default(), &fake)
    };
    let labels = "cannot update labels through pod status";
    expect("add labels", status(&a, &mypod), labels);
    expect("remove labels", status(&mypod, &a), labels);
    expect("change labels", status(&ab, &a), labels);
    expect("same labels", status(&ab, &ab), "");
    let mut claimed = mypod.clone();
    claimed["status"] = json!({"resourceClaimStatuses": [{"name": "c", "resourceClaimName": "pod-c"}]});
    expect("claim statuses", status(&claimed, &mypod), "node \"mynode\" cannot update resource claim statues");
    expect("same claim statuses", status(&claimed, &claimed), "");
}

#[test]
fn mirror_pod_owner_references() {
    let valid = json!({"apiVersion": "v1", "kind": "Node", "name": "mynode", "uid": "mynode-uid", "controller": true});
    let variant = |field: &str, value: Value| {
        let mut o = valid.clone();
        if value.is_null() {
            o.as_object_mut().unwrap().remove(field);
        } else {
            o[field] = value;
        }
        o
    };
    let expected = Fake::default().with("nodes", json!({"metadata": {"name": "mynode", "uid": "mynode-uid"}}));
    let unexpected =
        Fake::default().with("nodes", json!({"metadata": {"name": "mynode", "uid": "mynode-unexpected-uid"}}));
    let no_nodes = Fake::default();
    let cases = [
        (
            "no owner",
            json!(null),
            &expected,
            "pods \"test\" is forbidden: node \"mynode\" can only create pods with an owner reference set to itself",
        ),
        ("valid owner", json!([valid]), &expected, ""),
        (
            "duplicate owner",
            json!([valid, valid]),
            &expected,
            "can only create pods with a single owner reference set to itself",
        ),
        (
            "invalid name",
            json!([variant("name", json!("other"))]),
            &expected,
            "can only create pods with an owner reference set to itself",
        ),
        (
            "invalid UID",
            json!([valid]),
            &unexpected,
            "node mynode UID mismatch: expected mynode-uid got mynode-unexpected-uid",
        ),
        ("node not found", json!([valid]), &no_nodes, "node \"mynode\" not found"),
        (
            "invalid API version",
            json!([variant("apiVersion", json!("v2"))]),
            &expected,
            "can only create pods with an owner reference set to itself",
        ),
        (
            "invalid kind",
            json!([variant("kind", json!("Pod"))]),
            &expected,
            "can only create pods with an owner reference set to itself",
        ),
        (
            "nil controller",
            json!([variant("controller", Value::Null)]),
            &expected,
            "can only create pods with a controller owner reference set to itself",
        ),
        (
            "false controller",
            json!([variant("controller", json!(false))]),
            &expected,
            "can only create pods with a controller owner reference set to itself",
        ),
        (
            "invalid blockOwnerDeletion",
            json!([variant("blockOwnerDeletion", json!(true))]),
            &expected,
            "must not set blockOwnerDeletion on an owner reference",
        ),
    ];
    for (case, owners, lookup, err) in cases {
        let mut p = pod("test", "mynode", true);
        p["metadata"]["ownerReferences"] = owners;
        expect(case, pods(Create, "").named("ns", "test").obj(&p).run_with(Features::default(), lookup), err);
    }
}

/// Upstream's label helpers: labels a kubelet may set, and those it may not.
fn allowed_labels(value: &str) -> Value {
    let mut labels = json!({"foo": value, "example.com/foo": value});
    for key in KUBELET_LABELS {
        labels[*key] = json!(value);
    }
    for ns in KUBELET_LABEL_NAMESPACES {
        labels[format!("{ns}/foo")] = json!(value);
        labels[format!("foo.{ns}/foo")] = json!(value);
    }
    labels
}

fn forbidden_node_labels(value: &str) -> Value {
    json!({
        "node-restriction.kubernetes.io/foo": value,
        "foo.node-restriction.kubernetes.io/foo": value,
        "other.kubernetes.io/foo": value,
        "other.k8s.io/foo": value
    })
}

fn node_with(name: &str, labels: Value, spec: Value) -> Value {
    json!({"metadata": {"name": name, "uid": format!("{name}-uid"), "labels": labels}, "spec": spec})
}

fn merged(a: &Value, b: &Value) -> Value {
    let mut out = a.clone();
    for (k, v) in b.as_object().unwrap() {
        out[k] = v.clone();
    }
    out
}

#[test]
fn node_objects() {
    let fake = cluster();
    let nodes = |op: Operation, sub: &'static str| r(op, "", "nodes", sub);
    let run = |case: &str, req: R, err: &str| expect(case, req.run_with(Features::default(), &fake), err);
    let plain = node_with("mynode", json!({}), json!({}));
    let config_a = node_with(
        "mynode",
        json!({}),
        json!({"configSource": {"configMap": {"name": "foo", "namespace": "bar", "uid": "fooUID", "kubeletConfigKey": "kubelet"}}}),
    );
    let config_b = node_with(
        "mynode",
        json!({}),
        json!({"configSource": {"configMap": {"name": "qux", "namespace": "bar", "uid": "quxUID", "kubeletConfigKey": "kubelet"}}}),
    );
    let taint_a =
        node_with("mynode", json!({}), json!({"taints": [{"key": "mykey", "value": "A", "effect": "NoSchedule"}]}));
    let taint_b =
        node_with("mynode", json!({}), json!({"taints": [{"key": "mykey", "value": "B", "effect": "NoSchedule"}]}));
    let allowed = node_with("mynode", allowed_labels("value"), json!({}));
    let forbidden = node_with("mynode", forbidden_node_labels("value"), json!({}));
    let all = node_with("mynode", merged(&allowed_labels("value"), &forbidden_node_labels("value")), json!({}));
    let upd = |obj: &Value, old: &Value| nodes(Update, "").named("", "mynode").obj(obj).old(old);
    let forbidden_list = "foo.node-restriction.kubernetes.io/foo, node-restriction.kubernetes.io/foo, other.k8s.io/foo, other.kubernetes.io/foo";

    run("allow create of my node", nodes(Create, "").named("", "mynode").obj(&plain), "");
    run("allow create of my node with taints", nodes(Create, "").named("", "mynode").obj(&taint_a), "");
    run("allow create of my node with labels", nodes(Create, "").named("", "mynode").obj(&allowed), "");
    run(
        "forbid create of my node with forbidden labels",
        nodes(Create, "").named("", "mynode").obj(&forbidden),
        &format!("node \"mynode\" is not allowed to set the following labels: {forbidden_list}"),
    );
    run("allow update of my node", upd(&plain, &plain), "");
    run("allow delete of my node", nodes(Delete, "").named("", "mynode"), "");
    run("allow update of my node status", nodes(Update, "status").named("", "mynode").obj(&plain).old(&plain), "");
    run(
        "forbid create of my node with non-nil configSource",
        nodes(Create, "").named("", "mynode").obj(&config_a),
        "is not allowed to create pods with a non-nil configSource",
    );
    run(
        "forbid update: nil configSource to non-nil",
        upd(&config_a, &plain),
        "update configSource to a new non-nil configSource",
    );
    run(
        "forbid update: non-nil configSource to another",
        upd(&config_b, &config_a),
        "update configSource to a new non-nil configSource",
    );
    run("allow update: configSource unchanged", upd(&config_a, &config_a), "");
    run("allow update: configSource to nil", upd(&plain, &config_a), "");
    run("allow update: no change to taints", upd(&taint_a, &taint_a), "");
    run("allow update: add allowed labels", upd(&allowed, &plain), "");
    run("allow update: remove allowed labels", upd(&plain, &allowed), "");
    run(
        "allow update: modify allowed labels",
        upd(&node_with("mynode", allowed_labels("b"), json!({})), &node_with("mynode", allowed_labels("a"), json!({}))),
        "",
    );
    run("allow update: no change to labels", upd(&all, &all), "");
    run("allow update: add allowed labels while forbidden labels exist unmodified", upd(&all, &forbidden), "");
    run("allow update: remove allowed labels while forbidden labels exist unmodified", upd(&forbidden, &all), "");
    run("forbid update: add taints", upd(&taint_a, &plain), "node \"mynode\" is not allowed to modify taints");
    run("forbid update: remove taints", upd(&plain, &taint_a), "is not allowed to modify taints");
    run("forbid update: change taints", upd(&taint_a, &taint_b), "is not allowed to modify taints");
    run(
        "forbid update: add labels",
        upd(&forbidden, &plain),
        &format!("nodes \"mynode\" is forbidden: is not allowed to modify labels: {forbidden_list}"),
    );
    run(
        "forbid update: remove labels",
        upd(&plain, &forbidden),
        &format!("is not allowed to modify labels: {forbidden_list}"),
    );
    run(
        "forbid update: change labels",
        upd(
            &node_with("mynode", forbidden_node_labels("new"), json!({})),
            &node_with("mynode", forbidden_node_labels("old"), json!({})),
        ),
        &format!("is not allowed to modify labels: {forbidden_list}"),
    );
    let mut owned = plain.clone();
    owned["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Node", "name": "x", "uid": "x"}]);
    run(
        "forbid update: add owner references",
        upd(&owned, &plain),
        "node \"mynode\" is not allowed to modify ownerReferences",
    );
    let other = node_with("othernode", json!({}), json!({}));
    run(
        "forbid create of other node",
        nodes(Create, "").named("", "othernode").obj(&other),
        "node \"mynode\" is not allowed to modify node \"othernode\"",
    );
    run(
        "forbid create of other node pulling name from object",
        nodes(Create, "").named("", "").obj(&other),
        "is not allowed to modify node",
    );
    run(
        "forbid update of other node",
        nodes(Update, "").named("", "othernode").obj(&other).old(&other),
        "is not allowed to modify node",
    );
    run("forbid delete of other node", nodes(Delete, "").named("", "othernode"), "is not allowed to modify node");
    run(
        "forbid update of other node status",
        nodes(Update, "status").named("", "othernode").obj(&other).old(&other),
        "is not allowed to modify node",
    );
}

#[test]
fn service_account_tokens() {
    let fake = cluster();
    let token = |tr: Value| r(Create, "", "serviceaccounts", "token").named("ns", "mysa").obj(&tr);
    let restricted = Features::default();
    let unrestricted = Features { service_account_node_audience_restriction: false, ..Features::default() };
    let no_csi_drivers = {
        let mut f = cluster();
        f.objects.retain(|k, _| k.0 != "csidrivers");
        f
    };
    let no_pvcs = {
        let mut f = cluster();
        f.objects.retain(|k, _| k.0 != "persistentvolumeclaims");
        f
    };
    let no_pvs = {
        let mut f = cluster();
        f.objects.retain(|k, _| k.0 != "persistentvolumes");
        f
    };
    let granted = Fake { granted_audiences: ["bar".to_string()].into(), ..cluster() };
    let cases: Vec<(&str, Value, Features, &Fake, &str)> = vec![
        ("forbid create of unbound token", token_request("", "", &["foo"]), unrestricted, &fake, "not bound to a pod"),
        (
            "forbid create of token bound to nonexistant pod",
            token_request("nopod", "someuid", &["foo"]),
            unrestricted,
            &fake,
            "pod \"nopod\" not found",
        ),
        (
            "forbid create of token bound to pod without uid",
            token_request("mypod", "", &["foo"]),
            unrestricted,
            &fake,
            "pod binding without a uid",
        ),
        (
            "forbid create of token bound to pod with another uid",
            token_request("mypod", "other-uid", &["foo"]),
            unrestricted,
            &fake,
            "the UID in the bound object reference (other-uid) does not match the UID in record. The object might have been deleted and then recreated",
        ),
        (
            "forbid create of token bound to pod scheduled on another node",
            token_request("otherpod", "pod-uid", &["foo"]),
            unrestricted,
            &fake,
            "pod scheduled on a different node",
        ),
        (
            "allow create of token bound to pod scheduled this node",
            token_request("mypod", "pod-uid", &["foo"]),
            unrestricted,
            &fake,
            "",
        ),
        // audience restriction
        ("allow: audience in PSAT volume", token_request("mysapod", "pod-uid", &["foo"]), restricted, &fake, ""),
        (
            "allow: empty audience in PSAT volume",
            token_request("myemptyaudiencepod", "pod-uid", &[]),
            restricted,
            &fake,
            "",
        ),
        (
            "forbid: multiple audiences",
            token_request("mysapod", "pod-uid", &["foo", "bar"]),
            restricted,
            &fake,
            "node may only request 0 or 1 audiences",
        ),
        (
            "forbid: audience not in pod spec",
            token_request("mypod", "pod-uid", &["foo"]),
            restricted,
            &fake,
            "serviceaccounts \"mysa\" is forbidden: audience \"foo\" not found in pod spec volume, system:node:mynode is not authorized to request tokens for this audience",
        ),
        (
            "allow: pod -> csi -> driver with audience",
            token_request("mycsipod", "pod-uid", &["foo"]),
            restricted,
            &fake,
            "",
        ),
        (
            "forbid: pod -> csi -> driver without audience",
            token_request("mycsipod", "pod-uid", &["bar"]),
            restricted,
            &fake,
            "audience \"bar\" not found in pod spec volume",
        ),
        (
            "forbid: csidriver not found",
            token_request("mycsipod", "pod-uid", &["foo"]),
            restricted,
            &no_csi_drivers,
            "error validating audience \"foo\": csidriver.storage.k8s.io \"com.example.csi.mydriver\" not found",
        ),
        (
            "allow: pod -> pvc -> pv -> csi -> driver with audience",
            token_request("mypvcpod", "pod-uid", &["foo"]),
            restricted,
            &fake,
            "",
        ),
        (
            "forbid: pod -> pvc -> pv -> csi -> driver without audience",
            token_request("mypvcpod", "pod-uid", &["bar"]),
            restricted,
            &fake,
            "audience \"bar\" not found in pod spec volume",
        ),
        (
            "forbid: pvc not found",
            token_request("mypvcpod", "pod-uid", &["foo"]),
            restricted,
            &no_pvcs,
            "error validating audience \"foo\": persistentvolumeclaim \"pvclaim\" not found",
        ),
        (
            "forbid: pv not found",
            token_request("mypvcpod", "pod-uid", &["foo"]),
            restricted,
            &no_pvs,
            "error validating audience \"foo\": persistentvolume \"pvname\" not found",
        ),
        (
            "allow: pod -> ephemeral -> pvc -> pv -> csi -> driver with audience",
            token_request("myephemeralpod", "pod-uid", &["foo"]),
            restricted,
            &fake,
            "",
        ),
        (
            "allow: pvc lookup fails but the inline csi volume has the audience",
            token_request("mypvcandcsipod", "pod-uid", &["foo"]),
            restricted,
            &no_pvs,
            "",
        ),
        (
            "allow: restriction disabled, pv not checked",
            token_request("mypvcandcsipod", "pod-uid", &["foo"]),
            unrestricted,
            &no_pvs,
            "",
        ),
        (
            "allow: restriction disabled, csidriver not checked",
            token_request("mycsipod", "pod-uid", &["foo"]),
            unrestricted,
            &no_csi_drivers,
            "",
        ),
        (
            "allow: intree pv migrated to csi",
            token_request("myintreepvtocsipod", "pod-uid", &["foo"]),
            restricted,
            &fake,
            "",
        ),
        (
            "allow: intree inline volume migrated to csi",
            token_request("myintreeinlinevoltocsipod", "pod-uid", &["foo"]),
            restricted,
            &fake,
            "",
        ),
        (
            "allow: audience granted by the authorizer",
            token_request("mypod", "pod-uid", &["bar"]),
            restricted,
            &granted,
            "",
        ),
        (
            "forbid: another audience than the one granted",
            token_request("mypod", "pod-uid", &["baz"]),
            restricted,
            &granted,
            "audience \"baz\" not found in pod spec volume",
        ),
    ];
    for (case, tr, features, lookup, err) in cases {
        expect(case, token(tr).run_with(features, lookup), err);
    }
    // other service account writes are not the plugin's business
    let sa = json!({"metadata": {"name": "mysa", "namespace": "ns"}});
    expect(
        "service account update",
        r(Update, "", "serviceaccounts", "").named("ns", "mysa").obj(&sa).old(&sa).run_with(restricted, &fake),
        "",
    );
}

#[test]
fn leases_csinodes_slices_and_unrelated_objects() {
    let fake = cluster();
    let run = |case: &str, req: R, err: &str| expect(case, req.run_with(Features::default(), &fake), err);
    let leases = |op: Operation| r(op, "coordination.k8s.io", "leases", "");
    let lease = |ns: &str, name: &str| json!({"metadata": {"name": name, "namespace": ns}, "spec": {"holderIdentity": "mynode"}});
    let (good, wrong_ns, wrong_name) =
        (lease(NODE_LEASE_NAMESPACE, "mynode"), lease("foo", "mynode"), lease(NODE_LEASE_NAMESPACE, "foo"));
    let ns_err = "leases.coordination.k8s.io \"mynode\" is forbidden: can only access leases in the \"kube-node-lease\" system namespace";
    let name_err = "can only access node lease with the same name as the requesting node";
    run(
        "disallowed create lease in namespace other than kube-node-lease",
        leases(Create).named("foo", "mynode").obj(&wrong_ns),
        ns_err,
    );
    run(
        "disallowed update lease in namespace other than kube-node-lease",
        leases(Update).named("foo", "mynode").obj(&wrong_ns).old(&wrong_ns),
        ns_err,
    );
    run(
        "disallowed delete lease in namespace other than kube-node-lease",
        leases(Delete).named("foo", "mynode"),
        ns_err,
    );
    run(
        "disallowed create another node's lease",
        leases(Create).named(NODE_LEASE_NAMESPACE, "").obj(&wrong_name),
        name_err,
    );
    run(
        "disallowed update another node's lease",
        leases(Update).named(NODE_LEASE_NAMESPACE, "foo").obj(&wrong_name).old(&wrong_name),
        name_err,
    );
    run("disallowed delete another node's lease", leases(Delete).named(NODE_LEASE_NAMESPACE, "foo"), name_err);
    run("allowed create node lease", leases(Create).named(NODE_LEASE_NAMESPACE, "mynode").obj(&good), "");
    run("allowed update node lease", leases(Update).named(NODE_LEASE_NAMESPACE, "mynode").obj(&good).old(&good), "");
    run("allowed delete node lease", leases(Delete).named(NODE_LEASE_NAMESPACE, "mynode"), "");

    let csinodes = |op: Operation| r(op, "storage.k8s.io", "csinodes", "");
    let info = |name: &str| json!({"metadata": {"name": name}, "spec": {"drivers": [{"name": "com.example.csi/mydriver", "nodeID": format!("com.example.csi/{name}")}]}});
    let csi_err = "csinodes.storage.k8s.io \"foo\" is forbidden: can only access CSINode with the same name as the requesting node";
    run("disallowed create another node's CSINode", csinodes(Create).named("", "").obj(&info("foo")), csi_err);
    run(
        "disallowed update another node's CSINode",
        csinodes(Update).named("", "foo").obj(&info("foo")).old(&info("foo")),
        csi_err,
    );
    run("disallowed delete another node's CSINode", csinodes(Delete).named("", "foo"), csi_err);
    run("allowed create node CSINode", csinodes(Create).named("", "mynode").obj(&info("mynode")), "");
    run(
        "allowed update node CSINode",
        csinodes(Update).named("", "mynode").obj(&info("mynode")).old(&info("mynode")),
        "",
    );
    run("allowed delete node CSINode", csinodes(Delete).named("", "mynode"), "");

    let slices = |op: Operation| r(op, "resource.k8s.io", "resourceslices", "");
    let slice = |node: &str| json!({"metadata": {"name": format!("slice-{node}")}, "spec": {"nodeName": node, "driver": "d", "pool": {"name": "p", "resourceSliceCount": 1}}});
    run("allowed create of own ResourceSlice", slices(Create).named("", "slice-mynode").obj(&slice("mynode")), "");
    run(
        "disallowed create of other node's ResourceSlice",
        slices(Create).named("", "slice-othernode").obj(&slice("othernode")),
        "can only create ResourceSlice with the same NodeName as the requesting node",
    );
    run("allowed delete of own ResourceSlice", slices(Delete).named("", "slice-mynode").old(&slice("mynode")), "");
    run(
        "disallowed delete of other node's ResourceSlice",
        slices(Delete).named("", "slice-othernode").old(&slice("othernode")),
        "can only delete ResourceSlice with the same NodeName as the requesting node",
    );
    run(
        "update of a ResourceSlice is the authorizer's business",
        slices(Update).named("", "slice-othernode").obj(&slice("othernode")).old(&slice("othernode")),
        "",
    );

    let cm = json!({"metadata": {"name": "mycm", "namespace": "myns"}});
    run("allow create of unrelated object", r(Create, "", "configmaps", "").named("myns", "mycm").obj(&cm), "");
    run(
        "allow update of unrelated object",
        r(Update, "", "configmaps", "").named("myns", "mycm").obj(&cm).old(&cm),
        "",
    );
    run("allow delete of unrelated object", r(Delete, "", "configmaps", "").named("myns", "mycm"), "");

    let unbound = pod("unboundpod", "", false);
    run(
        "allow unrelated user creating a normal pod unbound",
        pods(Create, "").named("ns", "unboundpod").obj(&unbound).by(bob()),
        "",
    );
    run(
        "allow unrelated user update of normal pod unbound",
        pods(Update, "").named("ns", "unboundpod").obj(&unbound).old(&unbound).by(bob()),
        "",
    );
    run("allow unrelated user delete of normal pod unbound", pods(Delete, "").named("ns", "unboundpod").by(bob()), "");
    run(
        "allow unrelated user create of normal pod status unbound",
        pods(Create, "status").named("ns", "unboundpod").obj(&unbound).by(bob()),
        "",
    );
    run(
        "allow unrelated user update of normal pod status unbound",
        pods(Update, "status").named("ns", "unboundpod").obj(&unbound).old(&unbound).by(bob()),
        "",
    );
    run(
        "allow unrelated user delete of normal pod status unbound",
        pods(Delete, "status").named("ns", "unboundpod").by(bob()),
        "",
    );
    let nameless = UserInfo::authenticated("system:node:".into(), String::new(), vec!["system:nodes".into()]);
    run(
        "forbid a node user without a node name",
        r(Delete, "", "configmaps", "").named("myns", "mycm").by(nameless),
        "configmaps \"mycm\" is forbidden: could not determine node from user \"system:node:\"",
    );
}

#[test]
fn pvc_status() {
    let fake = cluster();
    let pvc = json!({"metadata": {"name": "claim", "namespace": "ns", "resourceVersion": "1"},
                     "spec": {"volumeName": "pv", "resources": {"requests": {"storage": "1Gi"}}},
                     "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}});
    let run = |case: &str, features: Features, req: R, err: &str| expect(case, req.run_with(features, &fake), err);
    let status =
        |obj: &Value| r(Update, "", "persistentvolumeclaims", "status").named("ns", "claim").obj(obj).old(&pvc);
    let mut grown = pvc.clone();
    grown["metadata"]["resourceVersion"] = json!("");
    grown["status"]["capacity"] = json!({"storage": "2Gi"});
    grown["status"]["conditions"] = json!([{"type": "FileSystemResizePending", "status": "True"}]);
    run("allow capacity and conditions", Features::default(), status(&grown), "");
    let mut allocated = pvc.clone();
    allocated["status"]["allocatedResources"] = json!({"storage": "2Gi"});
    allocated["status"]["allocatedResourceStatuses"] = json!({"storage": "NodeResizePending"});
    run("allow allocated resources with expansion recovery", Features::default(), status(&allocated), "");
    let no_recovery = Features { recover_volume_expansion_failure: false, ..Features::default() };
    run(
        "forbid allocated resources without expansion recovery",
        no_recovery,
        status(&allocated),
        "node \"mynode\" is not allowed to update fields other than status.quantity and status.conditions",
    );
    let mut relabeled = pvc.clone();
    relabeled["metadata"]["labels"] = json!({"a": "b"});
    run(
        "forbid labels",
        Features::default(),
        status(&relabeled),
        "persistentvolumeclaims \"claim\" is forbidden: node \"mynode\" is not allowed to update fields other than status.quantity and status.conditions: metadata.labels",
    );
    let mut phase = pvc.clone();
    phase["status"]["phase"] = json!("Lost");
    run("forbid phase", Features::default(), status(&phase), "status.phase: \"Bound\" -> \"Lost\"");
    run(
        "forbid writes to the claim itself",
        Features::default(),
        r(Update, "", "persistentvolumeclaims", "").named("ns", "claim").obj(&pvc).old(&pvc),
        "may only update PVC status",
    );
    run(
        "forbid create of pvc status",
        Features::default(),
        r(Create, "", "persistentvolumeclaims", "status").named("ns", "claim").obj(&pvc),
        "unexpected operation \"CREATE\"",
    );
}

#[test]
fn node_csrs() {
    let fake = cluster();
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = |cn: &str, signer: &str, valid: bool| {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let pem = if valid {
            params.serialize_request(&key).unwrap().pem().unwrap()
        } else {
            "-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n".to_string()
        };
        json!({"metadata": {"name": "csr"}, "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(pem), "signerName": signer,
            "usages": ["digital signature"]
        }})
    };
    let create = |obj: Value, features: Features| {
        r(Create, "certificates.k8s.io", "certificatesigningrequests", "")
            .named("", "csr")
            .obj(&obj)
            .run_with(features, &fake)
    };
    let d = Features::default();
    expect(
        "allowed CSR create correct node serving",
        create(csr("system:node:mynode", KUBELET_SERVING_SIGNER, true), d),
        "",
    );
    expect(
        "allowed CSR create correct node client",
        create(csr("system:node:mynode", KUBE_APISERVER_CLIENT_KUBELET_SIGNER, true), d),
        "",
    );
    expect(
        "allowed CSR create non-node CSR",
        create(csr("some-other-identity", "kubernetes.io/kube-apiserver-client", true), d),
        "",
    );
    expect(
        "deny CSR create incorrect node",
        create(csr("system:node:othernode", KUBELET_SERVING_SIGNER, true), d),
        "certificatesigningrequests.certificates.k8s.io \"csr\" is forbidden: can only create a node CSR with CN=system:node:mynode",
    );
    let insecure = Features { allow_insecure_kubelet_certificate_signing_requests: true, ..d };
    expect(
        "allow CSR create incorrect node with feature gate disabled",
        create(csr("system:node:othernode", KUBELET_SERVING_SIGNER, true), insecure),
        "",
    );
    expect(
        "deny CSR create invalid",
        create(csr("system:node:mynode", KUBELET_SERVING_SIGNER, false), d),
        "forbidden: unable to parse csr: ",
    );
}

#[test]
fn forbidden_is_upstreams_status() {
    let fake = cluster();
    let other = pod("othermirrorpod", "othernode", true);
    let err = pods(Create, "").named("ns", "").obj(&other).run_with(Features::default(), &fake).unwrap_err();
    assert_eq!((err.code, err.reason), (403, "Forbidden"));
    assert_eq!(
        err.message,
        "pods \"othermirrorpod\" is forbidden: node \"mynode\" can only create pods with spec.nodeName set to itself"
    );
    assert_eq!(err.to_status()["details"], json!({"name": "othermirrorpod", "kind": "pods"}));
    let err = pods(Create, "")
        .obj(&json!({"metadata": {"generateName": "gen-"}}))
        .run_with(Features::default(), &fake)
        .unwrap_err();
    assert!(
        err.message
            .starts_with("pods \"gen-\" is forbidden: pod does not have \"kubernetes.io/config.mirror\" annotation"),
        "{}",
        err.message
    );
    let err = pods(Update, "").run_with(Features::default(), &fake).unwrap_err();
    assert_eq!(
        err.message,
        "pods \"Unknown\" is forbidden: unexpected operation \"UPDATE\", node \"mynode\" can only create and delete mirror pods"
    );
    let err = r(Delete, "coordination.k8s.io", "leases", "")
        .named("foo", "x")
        .run_with(Features::default(), &fake)
        .unwrap_err();
    assert_eq!(err.to_status()["details"], json!({"name": "x", "group": "coordination.k8s.io", "kind": "leases"}));
    let err = pods(Delete, "").named("ns", "gone").run_with(Features::default(), &fake).unwrap_err();
    assert_eq!((err.code, err.message.as_str()), (404, "pod \"gone\" not found"));
}
