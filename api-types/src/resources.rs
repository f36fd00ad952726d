//! The static resource table: every built-in resource the apiserver serves, with what discovery, routing,
//! storage keys, tables and the client need to know about it. One table drives them all.

/// A subresource of a resource (`pods/status`, `deployments/scale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subresource {
    pub name: &'static str,
    /// Kind of the subresource's body, with its group and version ("" = same as the parent's).
    pub kind: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub verbs: &'static [&'static str],
}

/// One served resource at one group-version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The URL segment: `pods`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// The storage key segment under `/registry/` (upstream's, e.g. `minions` for nodes).
    pub storage: &'static str,
    /// Served from a CustomResourceDefinition (JSON only, no protobuf; rows built at run time by the apiserver).
    pub custom: bool,
    /// A custom resource's `selectableFields` (`spec.color`): field selectors beyond `metadata.name` and
    /// `metadata.namespace`.
    pub selectable_fields: &'static [&'static str],
}

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// `pods` or `deployments.apps`, as upstream names resources in messages (`deployments.apps "web" not found`).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }

    /// Whether objects of this resource are stored (the review resources are create-only and never stored).
    pub fn stored(&self) -> bool {
        self.verbs.contains(&"get")
    }

    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }
}

/// The standard verbs of a stored resource.
pub const CRUD: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
/// Create-only resources (reviews).
pub const CREATE_ONLY: &[&str] = &["create"];
const GPU: &[&str] = &["get", "patch", "update"];
const CREATE: &[&str] = &["create"];
const GET: &[&str] = &["get"];
const PROXY: &[&str] = &["create", "delete", "get", "patch", "update"];

pub const fn status(kind: &'static str) -> Subresource {
    Subresource { name: "status", kind, group: "", version: "", verbs: GPU }
}
pub const fn scale() -> Subresource {
    Subresource { name: "scale", kind: "Scale", group: "autoscaling", version: "v1", verbs: GPU }
}

macro_rules! res {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $ns:expr,
     short: [$($short:expr),*], cat: [$($cat:expr),*], verbs: $verbs:expr, sub: [$($sub:expr),*], storage: $storage:expr) => {
        Resource {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $ns,
            short_names: &[$($short),*],
            categories: &[$($cat),*],
            verbs: $verbs,
            subresources: &[$($sub),*],
            storage: $storage,
            custom: false,
            selectable_fields: &[],
        }
    };
}

const NS: bool = true;
const CLUSTER: bool = false;

/// Every served resource. Groups appear in discovery in the order of their first resource here; a group with
/// several versions lists its preferred version first.
pub static RESOURCES: &[Resource] = &[
    // core/v1
    res!("", "v1", "Binding", "bindings", "binding", NS, short: [], cat: [], verbs: CREATE, sub: [], storage: "bindings"),
    res!("", "v1", "ComponentStatus", "componentstatuses", "componentstatus", CLUSTER, short: ["cs"], cat: [], verbs: &["get", "list"], sub: [], storage: "componentstatuses"),
    res!("", "v1", "ConfigMap", "configmaps", "configmap", NS, short: ["cm"], cat: [], verbs: CRUD, sub: [], storage: "configmaps"),
    res!("", "v1", "Endpoints", "endpoints", "endpoints", NS, short: ["ep"], cat: [], verbs: CRUD, sub: [], storage: "services/endpoints"),
    res!("", "v1", "Event", "events", "event", NS, short: ["ev"], cat: [], verbs: CRUD, sub: [], storage: "events"),
    res!("", "v1", "LimitRange", "limitranges", "limitrange", NS, short: ["limits"], cat: [], verbs: CRUD, sub: [], storage: "limitranges"),
    res!("", "v1", "Namespace", "namespaces", "namespace", CLUSTER, short: ["ns"], cat: [], verbs: &["create", "delete", "get", "list", "patch", "update", "watch"],
         sub: [status("Namespace"), Subresource { name: "finalize", kind: "Namespace", group: "", version: "", verbs: &["update"] }], storage: "namespaces"),
    res!("", "v1", "Node", "nodes", "node", CLUSTER, short: ["no"], cat: [], verbs: CRUD,
         sub: [status("Node"), Subresource { name: "proxy", kind: "NodeProxyOptions", group: "", version: "", verbs: PROXY }], storage: "minions"),
    res!("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", NS, short: ["pvc"], cat: [], verbs: CRUD, sub: [status("PersistentVolumeClaim")], storage: "persistentvolumeclaims"),
    res!("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", CLUSTER, short: ["pv"], cat: [], verbs: CRUD, sub: [status("PersistentVolume")], storage: "persistentvolumes"),
    res!("", "v1", "Pod", "pods", "pod", NS, short: ["po"], cat: ["all"], verbs: CRUD, sub: [
        Subresource { name: "attach", kind: "PodAttachOptions", group: "", version: "", verbs: &["create", "get"] },
        Subresource { name: "binding", kind: "Binding", group: "", version: "", verbs: CREATE },
        Subresource { name: "ephemeralcontainers", kind: "Pod", group: "", version: "", verbs: GPU },
        Subresource { name: "eviction", kind: "Eviction", group: "policy", version: "v1", verbs: CREATE },
        Subresource { name: "exec", kind: "PodExecOptions", group: "", version: "", verbs: &["create", "get"] },
        Subresource { name: "log", kind: "Pod", group: "", version: "", verbs: GET },
        Subresource { name: "portforward", kind: "PodPortForwardOptions", group: "", version: "", verbs: &["create", "get"] },
        Subresource { name: "proxy", kind: "PodProxyOptions", group: "", version: "", verbs: PROXY },
        status("Pod")
    ], storage: "pods"),
    res!("", "v1", "PodTemplate", "podtemplates", "podtemplate", NS, short: [], cat: [], verbs: CRUD, sub: [], storage: "podtemplates"),
    res!("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", NS, short: ["rc"], cat: ["all"], verbs: CRUD, sub: [scale(), status("ReplicationController")], storage: "controllers"),
    res!("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", NS, short: ["quota"], cat: [], verbs: CRUD, sub: [status("ResourceQuota")], storage: "resourcequotas"),
    res!("", "v1", "Secret", "secrets", "secret", NS, short: [], cat: [], verbs: CRUD, sub: [], storage: "secrets"),
    res!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", NS, short: ["sa"], cat: [], verbs: CRUD,
         sub: [Subresource { name: "token", kind: "TokenRequest", group: "authentication.k8s.io", version: "v1", verbs: CREATE }], storage: "serviceaccounts"),
    res!("", "v1", "Service", "services", "service", NS, short: ["svc"], cat: ["all"], verbs: &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
         sub: [Subresource { name: "proxy", kind: "ServiceProxyOptions", group: "", version: "", verbs: PROXY }, status("Service")], storage: "services/specs"),
    // apiregistration.k8s.io/v1 (first of the named groups, as upstream's priorities order them)
    res!("apiregistration.k8s.io", "v1", "APIService", "apiservices", "apiservice", CLUSTER, short: [], cat: ["api-extensions"], verbs: CRUD, sub: [status("APIService")], storage: "apiregistration.k8s.io/apiservices"),
    // apps/v1
    res!("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", NS, short: [], cat: [], verbs: CRUD, sub: [], storage: "controllerrevisions"),
    res!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", NS, short: ["ds"], cat: ["all"], verbs: CRUD, sub: [status("DaemonSet")], storage: "daemonsets"),
    res!("apps", "v1", "Deployment", "deployments", "deployment", NS, short: ["deploy"], cat: ["all"], verbs: CRUD, sub: [scale(), status("Deployment")], storage: "deployments"),
    res!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", NS, short: ["rs"], cat: ["all"], verbs: CRUD, sub: [scale(), status("ReplicaSet")], storage: "replicasets"),
    res!("apps", "v1", "StatefulSet", "statefulsets", "statefulset", NS, short: ["sts"], cat: ["all"], verbs: CRUD, sub: [scale(), status("StatefulSet")], storage: "statefulsets"),
    // events.k8s.io/v1 (same storage as core events)
    res!("events.k8s.io", "v1", "Event", "events", "event", NS, short: ["ev"], cat: [], verbs: CRUD, sub: [], storage: "events"),
    // authentication.k8s.io/v1
    res!("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview", CLUSTER, short: [], cat: [], verbs: CREATE_ONLY, sub: [], storage: ""),
    res!("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", "tokenreview", CLUSTER, short: [], cat: [], verbs: CREATE_ONLY, sub: [], storage: ""),
    // authorization.k8s.io/v1
    res!("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews", "localsubjectaccessreview", NS, short: [], cat: [], verbs: CREATE_ONLY, sub: [], storage: ""),
    res!("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", "selfsubjectaccessreview", CLUSTER, short: [], cat: [], verbs: CREATE_ONLY, sub: [], storage: ""),
    res!("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", "selfsubjectrulesreview", CLUSTER, short: [], cat: [], verbs: CREATE_ONLY, sub: [], storage: ""),
    res!("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", "subjectaccessreview", CLUSTER, short: [], cat: [], verbs: CREATE_ONLY, sub: [], storage: ""),
    // autoscaling/v2 (preferred) and v1
    res!("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", NS, short: ["hpa"], cat: ["all"], verbs: CRUD, sub: [status("HorizontalPodAutoscaler")], storage: "horizontalpodautoscalers"),
    res!("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", NS, short: ["hpa"], cat: ["all"], verbs: CRUD, sub: [status("HorizontalPodAutoscaler")], storage: "horizontalpodautoscalers"),
    // batch/v1
    res!("batch", "v1", "CronJob", "cronjobs", "cronjob", NS, short: ["cj"], cat: ["all"], verbs: CRUD, sub: [status("CronJob")], storage: "cronjobs"),
    res!("batch", "v1", "Job", "jobs", "job", NS, short: [], cat: ["all"], verbs: CRUD, sub: [status("Job")], storage: "jobs"),
    // certificates.k8s.io/v1
    res!("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", "certificatesigningrequest", CLUSTER, short: ["csr"], cat: [], verbs: CRUD,
         sub: [Subresource { name: "approval", kind: "CertificateSigningRequest", group: "", version: "", verbs: GPU }, status("CertificateSigningRequest")], storage: "certificatesigningrequests"),
    // networking.k8s.io/v1
    res!("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", CLUSTER, short: [], cat: [], verbs: CRUD, sub: [], storage: "ingressclasses"),
    res!("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", NS, short: ["ing"], cat: [], verbs: CRUD, sub: [status("Ingress")], storage: "ingress"),
    res!("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", NS, short: ["netpol"], cat: [], verbs: CRUD, sub: [], storage: "networkpolicies"),
    // policy/v1
    res!("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", NS, short: ["pdb"], cat: [], verbs: CRUD, sub: [status("PodDisruptionBudget")], storage: "poddisruptionbudgets"),
    // rbac.authorization.k8s.io/v1
    res!("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", CLUSTER, short: [], cat: [], verbs: CRUD, sub: [], storage: "clusterrolebindings"),
    res!("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", CLUSTER, short: [], cat: [], verbs: CRUD, sub: [], storage: "clusterroles"),
    res!("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", NS, short: [], cat: [], verbs: CRUD, sub: [], storage: "rolebindings"),
    res!("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", NS, short: [], cat: [], verbs: CRUD, sub: [], storage: "roles"),
    // storage.k8s.io/v1
    res!("storage.k8s.io", "v1", "CSIDriver", "csidrivers", "csidriver", CLUSTER, short: [], cat: [], verbs: CRUD, sub: [], storage: "csidrivers"),
    res!("storage.k8s.io", "v1", "CSINode", "csinodes", "csinode", CLUSTER, short: [], cat: [], verbs: CRUD, sub: [], storage: "csinodes"),
    res!("storage.k8s.io", "v1", "CSIStorageCapacity", "csistoragecapacities", "csistoragecapacity", NS, short: [], cat: [], verbs: CRUD, sub: [], storage: "csistoragecapacities"),
    res!("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", CLUSTER, short: ["sc"], cat: [], verbs: CRUD, sub: [], storage: "storageclasses"),
    res!("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", "volumeattachment", CLUSTER, short: [], cat: [], verbs: CRUD, sub: [status("VolumeAttachment")], storage: "volumeattachments"),
    // admissionregistration.k8s.io/v1
    res!("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", "mutatingwebhookconfiguration", CLUSTER, short: [], cat: ["api-extensions"], verbs: CRUD, sub: [], storage: "mutatingwebhookconfigurations"),
    res!("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy", "validatingadmissionpolicies", "validatingadmissionpolicy", CLUSTER, short: [], cat: ["api-extensions"], verbs: CRUD, sub: [status("ValidatingAdmissionPolicy")], storage: "validatingadmissionpolicies"),
    res!("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding", "validatingadmissionpolicybindings", "validatingadmissionpolicybinding", CLUSTER, short: [], cat: ["api-extensions"], verbs: CRUD, sub: [], storage: "validatingadmissionpolicybindings"),
    res!("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", "validatingwebhookconfiguration", CLUSTER, short: [], cat: ["api-extensions"], verbs: CRUD, sub: [], storage: "validatingwebhookconfigurations"),
    // apiextensions.k8s.io/v1
    res!("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", "customresourcedefinition", CLUSTER, short: ["crd", "crds"], cat: ["api-extensions"], verbs: CRUD, sub: [status("CustomResourceDefinition")], storage: "apiextensions.k8s.io/customresourcedefinitions"),
    // coordination.k8s.io/v1
    res!("coordination.k8s.io", "v1", "Lease", "leases", "lease", NS, short: [], cat: [], verbs: CRUD, sub: [], storage: "leases"),
    // discovery.k8s.io/v1
    res!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", NS, short: [], cat: [], verbs: CRUD, sub: [], storage: "endpointslices"),
    // flowcontrol.apiserver.k8s.io/v1
    res!("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema", "flowschemas", "flowschema", CLUSTER, short: [], cat: [], verbs: CRUD, sub: [status("FlowSchema")], storage: "flowschemas"),
    res!("flowcontrol.apiserver.k8s.io", "v1", "PriorityLevelConfiguration", "prioritylevelconfigurations", "prioritylevelconfiguration", CLUSTER, short: [], cat: [], verbs: CRUD, sub: [status("PriorityLevelConfiguration")], storage: "prioritylevelconfigurations"),
    // node.k8s.io/v1
    res!("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", "runtimeclass", CLUSTER, short: [], cat: [], verbs: CRUD, sub: [], storage: "runtimeclasses"),
    // scheduling.k8s.io/v1
    res!("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", CLUSTER, short: ["pc"], cat: [], verbs: CRUD, sub: [], storage: "priorityclasses"),
];

/// The resource served at `group`/`version` under `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of a kind at an apiVersion (`apps/v1`, `Deployment`).
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    let (group, version) = split_api_version(api_version);
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// `apps/v1` -> (`apps`, `v1`); `v1` -> (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// The groups in discovery order, each with its versions (preferred first).
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) => {
                if !versions.contains(&r.version) {
                    versions.push(r.version);
                }
            }
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

/// The resources of one group-version, in table order.
pub fn in_group_version<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static Resource> + 'a {
    RESOURCES.iter().filter(move |r| r.group == group && r.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let deploy = find("apps", "v1", "deployments").unwrap();
        assert_eq!(deploy.kind, "Deployment");
        assert_eq!(deploy.qualified(), "deployments.apps");
        assert_eq!(deploy.subresource("scale").unwrap().kind, "Scale");
        assert_eq!(by_kind("v1", "Node").unwrap().storage, "minions");
        assert!(find("", "v1", "nosuch").is_none());
        assert!(!find("authorization.k8s.io", "v1", "selfsubjectaccessreviews").unwrap().stored());
    }

    #[test]
    fn groups_list_preferred_version_first() {
        let groups = groups();
        assert_eq!(groups[0], ("", vec!["v1"]));
        let autoscaling = groups.iter().find(|(g, _)| *g == "autoscaling").unwrap();
        assert_eq!(autoscaling.1, vec!["v2", "v1"]);
    }

    #[test]
    fn plural_and_kind_are_unique_per_group_version() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                if a.group == b.group && a.version == b.version {
                    assert_ne!(a.plural, b.plural);
                    assert_ne!(a.kind, b.kind);
                }
            }
        }
    }
}
