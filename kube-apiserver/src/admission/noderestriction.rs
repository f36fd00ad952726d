//! The NodeRestriction admission plugin, as upstream's `plugin/pkg/admission/noderestriction` (1.33): a kubelet
//! (user `system:node:<name>` in `system:nodes`) may create only mirror pods bound to itself that reference no
//! other API objects, delete and evict only pods bound to itself, update only the status of its own pods,
//! create and update only its own Node (without touching its taints, owner references, config source or
//! restricted labels), update only PVC status, request service account tokens only bound to its own pods and
//! for audiences those pods use, and touch only its own Lease, CSINode, ResourceSlices and node CSRs. The Node
//! authorizer lets these writes through on the understanding that this plugin narrows them.
//!
//! Refusals are 403 Forbidden in upstream's `admission.NewForbidden` form:
//! `pods "x" is forbidden: node "a" can only create pods with spec.nodeName set to itself`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use api_types::ApiError;
use base64::Engine;
use serde_json::{Map, Value, json};

use crate::auth::UserInfo;
use crate::authorization::node::graph::MIRROR_POD_ANNOTATION;
use crate::authorization::node::{NODE_LEASE_NAMESPACE, node_identity, references};
use crate::authorization::{Attributes, Decision};

/// The admission operations NodeRestriction handles (upstream registers for CREATE, UPDATE and DELETE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        })
    }
}

/// A write as admission sees it (upstream's `admission.Attributes`).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub user: &'a UserInfo,
    pub operation: Operation,
    pub api_group: &'a str,
    /// The plural, e.g. `pods`, `nodes`, `serviceaccounts`.
    pub resource: &'a str,
    /// e.g. `status`, `eviction`, `token`; empty for the object itself.
    pub subresource: &'a str,
    pub namespace: &'a str,
    /// The object's name: from the URL, or for a create from the object's `metadata.name`.
    pub name: &'a str,
    /// The new object (create, update), or the subresource body (Eviction, TokenRequest); none for delete.
    pub object: Option<&'a Value>,
    /// The stored object (update, delete); none for create.
    pub old_object: Option<&'a Value>,
}

/// What the plugin reads besides the request, as upstream's informer listers: stored objects by plural
/// (`pods`, `nodes`, `persistentvolumeclaims`, `persistentvolumes`, `csidrivers`), and the authorizer for the
/// virtual `request-serviceaccounts-token-audience` check.
pub trait Lookup {
    /// The stored object, or `None` when there is none. `namespace` is empty for cluster-scoped resources.
    fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value>;

    /// The authorization chain's decision (NoOpinion when none is wired).
    fn authorize(&self, _attributes: &Attributes) -> Decision {
        Decision::NoOpinion
    }
}

/// The feature gates the plugin consults, at their 1.33 defaults.
#[derive(Debug, Clone, Copy)]
pub struct Features {
    /// `ServiceAccountNodeAudienceRestriction` (beta, on): token audiences must be used by the pod.
    pub service_account_node_audience_restriction: bool,
    /// `AllowInsecureKubeletCertificateSigningRequests` (off): skip the node CSR common-name check.
    pub allow_insecure_kubelet_certificate_signing_requests: bool,
    /// `RecoverVolumeExpansionFailure` (beta, on): nodes may also set the PVC's allocated resources.
    pub recover_volume_expansion_failure: bool,
}

impl Default for Features {
    fn default() -> Self {
        Features {
            service_account_node_audience_restriction: true,
            allow_insecure_kubelet_certificate_signing_requests: false,
            recover_volume_expansion_failure: true,
        }
    }
}

/// The plugin's name in `--enable-admission-plugins`.
pub const NAME: &str = "NodeRestriction";

/// Signers whose certificates carry a node identity.
const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
const KUBE_APISERVER_CLIENT_KUBELET_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// Labels kubelets may set on their own Node (upstream's `kubeletapis.KubeletLabels()`).
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];

/// Label namespaces (and their subdomains) kubelets may set (upstream's `KubeletLabelNamespaces()`).
const KUBELET_LABEL_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

/// The label namespace reserved for labels only administrators set, to steer workloads to nodes.
const NODE_RESTRICTION_LABEL_NAMESPACE: &str = "node-restriction.kubernetes.io";

/// CSI drivers of in-tree volume plugins migrated to CSI (csi-translation-lib), by volume source field.
const MIGRATED_DRIVERS: &[(&str, &str)] = &[
    ("awsElasticBlockStore", "ebs.csi.aws.com"),
    ("gcePersistentDisk", "pd.csi.storage.gke.io"),
    ("azureDisk", "disk.csi.azure.com"),
    ("azureFile", "file.csi.azure.com"),
    ("cinder", "cinder.csi.openstack.org"),
    ("vsphereVolume", "csi.vsphere.vmware.com"),
    ("portworxVolume", "pxd.portworx.com"),
];

/// Admits `req` with the 1.33 default feature gates. Requests from users other than nodes pass untouched.
pub fn admit(req: &Request<'_>, lookup: &dyn Lookup) -> Result<(), ApiError> {
    admit_with(Features::default(), req, lookup)
}

/// [`admit`] with explicit feature gates.
pub fn admit_with(features: Features, req: &Request<'_>, lookup: &dyn Lookup) -> Result<(), ApiError> {
    let Some(node) = node_identity(req.user) else {
        return Ok(());
    };
    let p = Plugin { features, req, lookup, node };
    if node.is_empty() {
        return Err(p.forbidden(format!("could not determine node from user {:?}", req.user.username)));
    }
    match (req.api_group, req.resource) {
        ("", "pods") => match req.subresource {
            "" => p.pod(),
            "status" => p.pod_status(),
            "eviction" => p.pod_eviction(),
            other => Err(
                p.forbidden(format!("unexpected pod subresource {other:?}, only 'status' and 'eviction' are allowed"))
            ),
        },
        ("", "nodes") => p.node_object(),
        ("", "persistentvolumeclaims") => match req.subresource {
            "status" => p.pvc_status(),
            _ => Err(p.forbidden("may only update PVC status")),
        },
        ("", "serviceaccounts") => p.service_account(),
        ("coordination.k8s.io", "leases") => p.lease(),
        ("storage.k8s.io", "csinodes") => p.csi_node(),
        ("resource.k8s.io", "resourceslices") => p.resource_slice(),
        ("certificates.k8s.io", "certificatesigningrequests") => {
            if features.allow_insecure_kubelet_certificate_signing_requests { Ok(()) } else { p.csr() }
        }
        _ => Ok(()),
    }
}

struct Plugin<'a> {
    features: Features,
    req: &'a Request<'a>,
    lookup: &'a dyn Lookup,
    node: &'a str,
}

fn str_at<'v>(v: &'v Value, pointer: &str) -> &'v str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// A lister's NotFound (`pod "x" not found`; listers name the resource in the singular).
fn not_found(group: &str, singular: &str, name: &str) -> ApiError {
    ApiError::not_found(group, singular, name)
}

/// Drops nulls and empty maps and lists, which upstream's semantic equality treats as unset.
fn prune(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for value in m.values_mut() {
                prune(value);
            }
            m.retain(|_, value| !is_unset(value));
        }
        Value::Array(items) => items.iter_mut().for_each(prune),
        _ => {}
    }
}

fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Upstream's `apiequality.Semantic.DeepEqual` on JSON: unset, null and empty compare equal.
fn semantic_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    let normal = |v: Option<&Value>| {
        let mut v = v.cloned().unwrap_or(Value::Null);
        prune(&mut v);
        if is_unset(&v) { Value::Null } else { v }
    };
    normal(a) == normal(b)
}

/// The string map at `pointer` (labels, annotations).
fn string_map<'v>(v: Option<&'v Value>, pointer: &str) -> BTreeMap<&'v str, &'v str> {
    v.and_then(|v| v.pointer(pointer))
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
        .collect()
}

/// Upstream's `getModifiedLabels`: keys added, removed or changed.
fn modified_labels<'v>(a: &BTreeMap<&'v str, &'v str>, b: &BTreeMap<&'v str, &'v str>) -> BTreeSet<&'v str> {
    let mut out = BTreeSet::new();
    for (k, v) in a {
        if b.get(k) != Some(v) {
            out.insert(*k);
        }
    }
    for (k, v) in b {
        if a.get(k) != Some(v) {
            out.insert(*k);
        }
    }
    out
}

fn label_namespace(key: &str) -> &str {
    key.split_once('/').map(|(ns, _)| ns).unwrap_or("")
}

fn in_namespace(namespace: &str, domain: &str) -> bool {
    namespace == domain || namespace.strip_suffix(domain).is_some_and(|rest| rest.ends_with('.'))
}

fn is_kubelet_label(key: &str) -> bool {
    KUBELET_LABELS.contains(&key) || KUBELET_LABEL_NAMESPACES.iter().any(|ns| in_namespace(label_namespace(key), ns))
}

/// Upstream's `getForbiddenLabels`: node-restriction labels, and `kubernetes.io`/`k8s.io` labels outside the
/// kubelet's set; sorted.
fn forbidden_labels<'v>(modified: &BTreeSet<&'v str>) -> Vec<&'v str> {
    modified
        .iter()
        .copied()
        .filter(|key| {
            let ns = label_namespace(key);
            let kubernetes = in_namespace(ns, "kubernetes.io") || in_namespace(ns, "k8s.io");
            in_namespace(ns, NODE_RESTRICTION_LABEL_NAMESPACE) || (kubernetes && !is_kubelet_label(key))
        })
        .collect()
}

/// Paths whose values differ between two JSON documents, for the PVC status refusal (upstream prints a
/// `cmp.Diff`).
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let sub = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                diff(&sub, x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null), out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} -> {b}")),
        _ => {}
    }
}

impl Plugin<'_> {
    /// Upstream's `admission.NewForbidden`: `<resource>[.<group>] "<name>" is forbidden: <why>`, the name from
    /// the request, else from the object (`Unknown` without one).
    fn forbidden(&self, why: impl fmt::Display) -> ApiError {
        let req = self.req;
        let from_object = |field: &str| req.object.map(|o| str_at(o, field)).filter(|n| !n.is_empty());
        let name = Some(req.name)
            .filter(|n| !n.is_empty())
            .or_else(|| from_object("/metadata/name"))
            .or_else(|| from_object("/metadata/generateName"))
            .unwrap_or("Unknown");
        let qualified = if req.api_group.is_empty() {
            req.resource.to_string()
        } else {
            format!("{}.{}", req.resource, req.api_group)
        };
        let mut details = Map::new();
        details.insert("name".into(), json!(name));
        if !req.api_group.is_empty() {
            details.insert("group".into(), json!(req.api_group));
        }
        details.insert("kind".into(), json!(req.resource));
        ApiError {
            details: Some(Box::new(Value::Object(details))),
            ..ApiError::forbidden(format!("{qualified} {name:?} is forbidden: {why}"))
        }
    }

    /// The request's object, or upstream's `unexpected type <nil>` refusal.
    fn object(&self) -> Result<&Value, ApiError> {
        self.req.object.ok_or_else(|| self.forbidden("unexpected type <nil>"))
    }

    fn old_object(&self) -> Result<&Value, ApiError> {
        self.req.old_object.ok_or_else(|| self.forbidden("unexpected type <nil>"))
    }

    /// A stored pod, or the lister's NotFound.
    fn existing_pod(&self, name: &str) -> Result<Value, ApiError> {
        self.lookup.get("pods", self.req.namespace, name).ok_or_else(|| not_found("", "pod", name))
    }

    /// Upstream's `admitPod`: create mirror pods, delete pods bound to the node.
    fn pod(&self) -> Result<(), ApiError> {
        let node = self.node;
        match self.req.operation {
            Operation::Create => self.pod_create(),
            Operation::Delete => {
                let existing = self.existing_pod(self.req.name)?;
                if str_at(&existing, "/spec/nodeName") != node {
                    return Err(
                        self.forbidden(format!("node {node:?} can only delete pods with spec.nodeName set to itself"))
                    );
                }
                Ok(())
            }
            op => Err(self.forbidden(format!(
                "unexpected operation {:?}, node {node:?} can only create and delete mirror pods",
                op.to_string()
            ))),
        }
    }

    /// Upstream's `admitPodCreate`.
    fn pod_create(&self) -> Result<(), ApiError> {
        let node = self.node;
        let pod = self.object()?;
        let forbid = |why: String| Err(self.forbidden(why));
        let mirror = pod.pointer("/metadata/annotations").and_then(|a| a.get(MIRROR_POD_ANNOTATION)).is_some();
        if !mirror {
            return forbid(format!(
                "pod does not have {MIRROR_POD_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"
            ));
        }
        if str_at(pod, "/spec/nodeName") != node {
            return forbid(format!("node {node:?} can only create pods with spec.nodeName set to itself"));
        }
        let owners =
            pod.pointer("/metadata/ownerReferences").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        match owners {
            [] => return forbid(format!("node {node:?} can only create pods with an owner reference set to itself")),
            [owner] => {
                if str_at(owner, "/apiVersion") != "v1"
                    || str_at(owner, "/kind") != "Node"
                    || str_at(owner, "/name") != node
                {
                    return forbid(format!("node {node:?} can only create pods with an owner reference set to itself"));
                }
                if owner.get("controller").and_then(Value::as_bool) != Some(true) {
                    return forbid(format!(
                        "node {node:?} can only create pods with a controller owner reference set to itself"
                    ));
                }
                if owner.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true) {
                    return forbid(format!("node {node:?} must not set blockOwnerDeletion on an owner reference"));
                }
                let stored = self.lookup.get("nodes", "", node).ok_or_else(|| not_found("", "node", node))?;
                let (expected, got) = (str_at(owner, "/uid"), str_at(&stored, "/metadata/uid"));
                if expected != got {
                    return forbid(format!("node {node} UID mismatch: expected {expected} got {got}"));
                }
            }
            _ => {
                return forbid(format!(
                    "node {node:?} can only create pods with a single owner reference set to itself"
                ));
            }
        }
        // A node must not create a pod that references other API objects: that would grant it access to them.
        if !str_at(pod, "/spec/serviceAccountName").is_empty() {
            return forbid(format!("node {node:?} can not create pods that reference a service account"));
        }
        if !references::pod_secret_names(pod).is_empty() {
            return forbid(format!("node {node:?} can not create pods that reference secrets"));
        }
        if !references::pod_configmap_names(pod).is_empty() {
            return forbid(format!("node {node:?} can not create pods that reference configmaps"));
        }
        let volumes = || pod.pointer("/spec/volumes").and_then(Value::as_array).into_iter().flatten();
        let trust_bundle = volumes().any(|v| {
            v.pointer("/projected/sources")
                .and_then(Value::as_array)
                .is_some_and(|sources| sources.iter().any(|s| s.get("clusterTrustBundle").is_some()))
        });
        if trust_bundle {
            return forbid(format!("node {node:?} can not create pods that reference clustertrustbundles"));
        }
        if volumes().any(|v| v.get("persistentVolumeClaim").is_some()) {
            return forbid(format!("node {node:?} can not create pods that reference persistentvolumeclaims"));
        }
        Ok(())
    }

    /// Upstream's `admitPodStatus`: the node's own pods, without relabelling them or changing their claims.
    fn pod_status(&self) -> Result<(), ApiError> {
        let node = self.node;
        if self.req.operation != Operation::Update {
            return Err(self.forbidden(format!("unexpected operation {:?}", self.req.operation.to_string())));
        }
        let old = self.old_object()?;
        if str_at(old, "/spec/nodeName") != node {
            return Err(self.forbidden(format!(
                "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
            )));
        }
        let new = self.object()?;
        if string_map(Some(old), "/metadata/labels") != string_map(Some(new), "/metadata/labels") {
            return Err(self.forbidden(format!("node {node:?} cannot update labels through pod status")));
        }
        if !claim_statuses_equal(old, new) {
            return Err(self.forbidden(format!("node {node:?} cannot update resource claim statues")));
        }
        Ok(())
    }

    /// Upstream's `admitPodEviction`: evictions of pods bound to the node.
    fn pod_eviction(&self) -> Result<(), ApiError> {
        let node = self.node;
        if self.req.operation != Operation::Create {
            return Err(self.forbidden(format!("unexpected operation {}", self.req.operation)));
        }
        let eviction = self.object()?;
        // the pod named in the URL, else the one named by the submitted Eviction
        let mut pod_name = self.req.name;
        if pod_name.is_empty() {
            pod_name = str_at(eviction, "/metadata/name");
            if pod_name.is_empty() {
                return Err(self.forbidden("could not determine pod from request data"));
            }
        }
        let existing = self.existing_pod(pod_name)?;
        if str_at(&existing, "/spec/nodeName") != node {
            return Err(self.forbidden(format!("node {node} can only evict pods with spec.nodeName set to itself")));
        }
        Ok(())
    }

    /// Upstream's `admitPVCStatus`: only `status.capacity`, `status.conditions` (and with volume expansion
    /// recovery the allocated resources) may change.
    fn pvc_status(&self) -> Result<(), ApiError> {
        let node = self.node;
        if self.req.operation != Operation::Update {
            return Err(self.forbidden(format!("unexpected operation {:?}", self.req.operation.to_string())));
        }
        let (old, new) = (self.old_object()?, self.object()?);
        let strip = |pvc: &Value| {
            let mut pvc = pvc.clone();
            if let Some(o) = pvc.as_object_mut() {
                o.remove("apiVersion");
                o.remove("kind");
            }
            if let Some(meta) = pvc.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("resourceVersion");
                meta.remove("managedFields");
            }
            if let Some(status) = pvc.get_mut("status").and_then(Value::as_object_mut) {
                status.remove("capacity");
                status.remove("conditions");
                if self.features.recover_volume_expansion_failure {
                    status.remove("allocatedResourceStatuses");
                    status.remove("allocatedResources");
                }
            }
            prune(&mut pvc);
            pvc
        };
        let (old, new) = (strip(old), strip(new));
        if old != new {
            let mut changes = Vec::new();
            diff("", &old, &new, &mut changes);
            return Err(self.forbidden(format!(
                "node {node:?} is not allowed to update fields other than status.quantity and status.conditions: {}",
                changes.join("; ")
            )));
        }
        Ok(())
    }

    /// Upstream's `admitNode`: only its own Node; no config source, taint, owner reference or restricted label
    /// changes.
    fn node_object(&self) -> Result<(), ApiError> {
        let node = self.node;
        let requested = self.req.name;
        if requested != node {
            return Err(self.forbidden(format!("node {node:?} is not allowed to modify node {requested:?}")));
        }
        match self.req.operation {
            Operation::Create => {
                let obj = self.object()?;
                if !semantic_eq(obj.pointer("/spec/configSource"), None) {
                    return Err(self.forbidden(format!(
                        "node {node:?} is not allowed to create pods with a non-nil configSource"
                    )));
                }
                let labels = string_map(Some(obj), "/metadata/labels");
                let forbidden = forbidden_labels(&modified_labels(&labels, &BTreeMap::new()));
                if !forbidden.is_empty() {
                    return Err(self.forbidden(format!(
                        "node {node:?} is not allowed to set the following labels: {}",
                        forbidden.join(", ")
                    )));
                }
            }
            Operation::Update => {
                let (obj, old) = (self.object()?, self.old_object()?);
                let config = obj.pointer("/spec/configSource");
                if !semantic_eq(config, None) && !semantic_eq(config, old.pointer("/spec/configSource")) {
                    return Err(self.forbidden(format!(
                        "node {node:?} is not allowed to update configSource to a new non-nil configSource"
                    )));
                }
                if !semantic_eq(obj.pointer("/spec/taints"), old.pointer("/spec/taints")) {
                    return Err(self.forbidden(format!("node {node:?} is not allowed to modify taints")));
                }
                if !semantic_eq(obj.pointer("/metadata/ownerReferences"), old.pointer("/metadata/ownerReferences")) {
                    return Err(self.forbidden(format!("node {node:?} is not allowed to modify ownerReferences")));
                }
                let (new_labels, old_labels) =
                    (string_map(Some(obj), "/metadata/labels"), string_map(Some(old), "/metadata/labels"));
                let forbidden = forbidden_labels(&modified_labels(&new_labels, &old_labels));
                if !forbidden.is_empty() {
                    return Err(self.forbidden(format!("is not allowed to modify labels: {}", forbidden.join(", "))));
                }
            }
            Operation::Delete => {}
        }
        Ok(())
    }

    /// Upstream's `admitServiceAccount`: token requests bound to a pod on the node, for an audience the pod uses.
    fn service_account(&self) -> Result<(), ApiError> {
        let node = self.node;
        if self.req.operation != Operation::Create || self.req.subresource != "token" {
            return Ok(());
        }
        let tr = self.object()?;
        let bound = tr.pointer("/spec/boundObjectRef").filter(|r| r.is_object());
        let Some(bound) = bound.filter(|r| {
            str_at(r, "/apiVersion") == "v1" && str_at(r, "/kind") == "Pod" && !str_at(r, "/name").is_empty()
        }) else {
            return Err(self.forbidden("node requested token not bound to a pod"));
        };
        let uid = str_at(bound, "/uid");
        if uid.is_empty() {
            return Err(self.forbidden("node requested token with a pod binding without a uid"));
        }
        let pod = self.existing_pod(str_at(bound, "/name"))?;
        if uid != str_at(&pod, "/metadata/uid") {
            return Err(self.forbidden(format!(
                "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
            )));
        }
        if str_at(&pod, "/spec/nodeName") != node {
            return Err(self.forbidden("node requested token bound to a pod scheduled on a different node"));
        }
        if self.features.service_account_node_audience_restriction {
            self.token_audience(tr, &pod)?;
        }
        Ok(())
    }

    /// Upstream's `validateNodeServiceAccountAudience`: at most one audience, used by a projected token or a
    /// CSI driver of the pod's volumes, or else explicitly granted with `request-serviceaccounts-token-audience`.
    fn token_audience(&self, tr: &Value, pod: &Value) -> Result<(), ApiError> {
        let audiences: Vec<&str> = tr
            .pointer("/spec/audiences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|a| a.as_str().unwrap_or(""))
            .collect();
        let audience = match audiences.as_slice() {
            [] => "",
            [one] => one,
            _ => return Err(self.forbidden("node may only request 0 or 1 audiences")),
        };
        match self.pod_references_audience(pod, audience) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(why) => return Err(self.forbidden(format!("error validating audience {audience:?}: {why}"))),
        }
        let check = Attributes {
            user: self.req.user.clone(),
            verb: "request-serviceaccounts-token-audience".into(),
            resource_request: true,
            api_group: String::new(),
            api_version: "v1".into(),
            namespace: self.req.namespace.into(),
            resource: audience.into(),
            name: self.req.name.into(),
            ..Default::default()
        };
        if self.lookup.authorize(&check) != Decision::Allow {
            return Err(self.forbidden(format!(
                "audience {audience:?} not found in pod spec volume, {} is not authorized to request tokens for this audience",
                self.req.user.username
            )));
        }
        Ok(())
    }

    /// Whether a projected service account token of the pod, or a CSI driver its volumes use (inline, through a
    /// PVC's PV, or a migrated in-tree plugin), names `audience`. Lookup failures are reported only when no
    /// volume names the audience.
    fn pod_references_audience(&self, pod: &Value, audience: &str) -> Result<bool, String> {
        let namespace = str_at(pod, "/metadata/namespace");
        let mut errors: Vec<String> = Vec::new();
        for volume in pod.pointer("/spec/volumes").and_then(Value::as_array).into_iter().flatten() {
            let sources = volume.pointer("/projected/sources").and_then(Value::as_array).into_iter().flatten();
            for source in sources {
                if let Some(token) = source.get("serviceAccountToken")
                    && str_at(token, "/audience") == audience
                {
                    return Ok(true);
                }
            }
            let driver = if volume.pointer("/ephemeral/volumeClaimTemplate").is_some() {
                self.csi_driver_of_claim(namespace, &references::ephemeral_claim_name(pod, volume))
            } else if volume.get("persistentVolumeClaim").is_some() {
                self.csi_driver_of_claim(namespace, str_at(volume, "/persistentVolumeClaim/claimName"))
            } else if volume.get("csi").is_some() {
                Ok(str_at(volume, "/csi/driver").to_string())
            } else {
                Ok(migrated_driver(volume).to_string())
            };
            let driver = match driver {
                Ok(driver) if driver.is_empty() => continue,
                Ok(driver) => driver,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            match self.lookup.get("csidrivers", "", &driver) {
                None => errors.push(not_found("storage.k8s.io", "csidriver", &driver).message),
                Some(csi) => {
                    let requests = csi.pointer("/spec/tokenRequests").and_then(Value::as_array);
                    if requests.into_iter().flatten().any(|r| str_at(r, "/audience") == audience) {
                        return Ok(true);
                    }
                }
            }
        }
        errors.dedup();
        match errors.as_slice() {
            [] => Ok(false),
            [one] => Err(one.clone()),
            many => Err(format!("[{}]", many.join(", "))),
        }
    }

    /// The CSI driver of the PV bound to a claim (a migrated in-tree source counts as its CSI driver).
    fn csi_driver_of_claim(&self, namespace: &str, claim: &str) -> Result<String, String> {
        let pvc = self
            .lookup
            .get("persistentvolumeclaims", namespace, claim)
            .ok_or_else(|| not_found("", "persistentvolumeclaim", claim).message)?;
        let volume_name = str_at(&pvc, "/spec/volumeName");
        let pv = self
            .lookup
            .get("persistentvolumes", "", volume_name)
            .ok_or_else(|| not_found("", "persistentvolume", volume_name).message)?;
        let spec = pv.get("spec").unwrap_or(&Value::Null);
        if spec.get("csi").is_some() {
            return Ok(str_at(spec, "/csi/driver").to_string());
        }
        Ok(migrated_driver(spec).to_string())
    }

    /// Upstream's `admitLease`: the node's own lease in `kube-node-lease`.
    fn lease(&self) -> Result<(), ApiError> {
        if self.req.namespace != NODE_LEASE_NAMESPACE {
            return Err(
                self.forbidden(format!("can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"))
            );
        }
        let name = match self.req.operation {
            Operation::Create => str_at(self.object()?, "/metadata/name"),
            _ => self.req.name,
        };
        if name != self.node {
            return Err(self.forbidden("can only access node lease with the same name as the requesting node"));
        }
        Ok(())
    }

    /// Upstream's `admitCSINode`: the node's own CSINode.
    fn csi_node(&self) -> Result<(), ApiError> {
        let name = match self.req.operation {
            Operation::Create => {
                let obj = self.req.object.ok_or_else(|| self.forbidden("unable to access the object name"))?;
                str_at(obj, "/metadata/name")
            }
            _ => self.req.name,
        };
        if name != self.node {
            return Err(self.forbidden("can only access CSINode with the same name as the requesting node"));
        }
        Ok(())
    }

    /// Upstream's `admitResourceSlice`: create and delete only slices of the node (the authorizer checks the
    /// rest through the graph).
    fn resource_slice(&self) -> Result<(), ApiError> {
        match self.req.operation {
            Operation::Create => {
                if str_at(self.object()?, "/spec/nodeName") != self.node {
                    return Err(
                        self.forbidden("can only create ResourceSlice with the same NodeName as the requesting node")
                    );
                }
            }
            Operation::Delete => {
                if str_at(self.old_object()?, "/spec/nodeName") != self.node {
                    return Err(
                        self.forbidden("can only delete ResourceSlice with the same NodeName as the requesting node")
                    );
                }
            }
            Operation::Update => {}
        }
        Ok(())
    }

    /// Upstream's `admitCSR`: a node's serving and client CSRs must be for `CN=system:node:<itself>`.
    fn csr(&self) -> Result<(), ApiError> {
        if self.req.operation != Operation::Create {
            return Ok(());
        }
        let csr = self.object()?;
        let signer = str_at(csr, "/spec/signerName");
        if signer != KUBELET_SERVING_SIGNER && signer != KUBE_APISERVER_CLIENT_KUBELET_SIGNER {
            return Ok(());
        }
        let common_name = csr_common_name(str_at(csr, "/spec/request"))
            .map_err(|e| self.forbidden(format!("unable to parse csr: {e}")))?;
        let expected = format!("system:node:{}", self.node);
        if common_name != expected {
            return Err(self.forbidden(format!("can only create a node CSR with CN={expected}")));
        }
        Ok(())
    }
}

/// Upstream's comparison of `status.resourceClaimStatuses`: same names and claim names, in order.
fn claim_statuses_equal(old: &Value, new: &Value) -> bool {
    let statuses = |pod: &Value| -> Vec<(String, Option<String>)> {
        pod.pointer("/status/resourceClaimStatuses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|s| {
                let claim = s.get("resourceClaimName").and_then(Value::as_str).map(str::to_string);
                (str_at(s, "/name").to_string(), claim)
            })
            .collect()
    };
    statuses(old) == statuses(new)
}

/// The CSI driver an in-tree volume source migrates to, or "".
fn migrated_driver(source: &Value) -> &'static str {
    MIGRATED_DRIVERS.iter().find(|(field, _)| source.get(*field).is_some()).map(|(_, d)| *d).unwrap_or("")
}

/// The subject common name of a CSR's `spec.request` (base64 of a PEM `CERTIFICATE REQUEST`; the last CN
/// attribute wins, as Go's `pkix.Name`).
fn csr_common_name(request: &str) -> Result<String, String> {
    let pem_bytes = base64::engine::general_purpose::STANDARD.decode(request).map_err(|e| e.to_string())?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem_bytes)
        .map_err(|_| "PEM block type must be CERTIFICATE REQUEST".to_string())?;
    if pem.label != "CERTIFICATE REQUEST" {
        return Err("PEM block type must be CERTIFICATE REQUEST".into());
    }
    use x509_parser::prelude::FromDer;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
        .map_err(|e| e.to_string())?;
    let subject = &csr.certification_request_info.subject;
    Ok(subject.iter_common_name().filter_map(|cn| cn.as_str().ok()).last().unwrap_or("").to_string())
}

#[cfg(test)]
mod tests;
