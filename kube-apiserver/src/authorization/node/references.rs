//! The API objects a pod or a persistent volume names, as upstream's `podutil.VisitPodSecretNames`,
//! `VisitPodConfigmapNames`, `ephemeral.VolumeClaimName`, `resourceclaim.Name` and
//! `pvutil.VisitPVSecretNames`: what the Node authorizer's graph links to a pod or a volume, and what the
//! NodeRestriction admission plugin forbids in a mirror pod.

use serde_json::Value;

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn items<'a>(v: &'a Value, pointer: &str) -> impl Iterator<Item = &'a Value> {
    v.pointer(pointer).and_then(Value::as_array).into_iter().flatten()
}

/// Init, regular and ephemeral containers, in upstream's `VisitContainers(AllContainers)` order.
fn all_containers(pod: &Value) -> impl Iterator<Item = &Value> {
    items(pod, "/spec/initContainers")
        .chain(items(pod, "/spec/containers"))
        .chain(items(pod, "/spec/ephemeralContainers"))
}

/// Pushes `name` unless it is empty (upstream's `skipEmptyNames`).
fn push(out: &mut Vec<String>, name: &str) {
    if !name.is_empty() {
        out.push(name.to_string());
    }
}

/// Every secret the pod spec names: image pull secrets, `envFrom[].secretRef` and `env[].valueFrom.secretKeyRef`
/// of every container, and the secret of each volume source that takes one. Transitive references
/// (pod -> pvc -> pv -> secret) are not included.
pub fn pod_secret_names(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for reference in items(pod, "/spec/imagePullSecrets") {
        push(&mut out, str_at(reference, "/name"));
    }
    for container in all_containers(pod) {
        for env in items(container, "/envFrom") {
            if env.get("secretRef").is_some() {
                push(&mut out, str_at(env, "/secretRef/name"));
            }
        }
        for env in items(container, "/env") {
            push(&mut out, str_at(env, "/valueFrom/secretKeyRef/name"));
        }
    }
    for volume in items(pod, "/spec/volumes") {
        // A volume has one source; upstream's switch takes the first of these that is set.
        if volume.get("azureFile").is_some() {
            push(&mut out, str_at(volume, "/azureFile/secretName"));
        } else if volume.get("cephfs").is_some() {
            push(&mut out, str_at(volume, "/cephfs/secretRef/name"));
        } else if volume.get("cinder").is_some() {
            push(&mut out, str_at(volume, "/cinder/secretRef/name"));
        } else if volume.get("flexVolume").is_some() {
            push(&mut out, str_at(volume, "/flexVolume/secretRef/name"));
        } else if volume.get("projected").is_some() {
            for source in items(volume, "/projected/sources") {
                push(&mut out, str_at(source, "/secret/name"));
            }
        } else if volume.get("rbd").is_some() {
            push(&mut out, str_at(volume, "/rbd/secretRef/name"));
        } else if volume.get("secret").is_some() {
            push(&mut out, str_at(volume, "/secret/secretName"));
        } else if volume.get("scaleIO").is_some() {
            push(&mut out, str_at(volume, "/scaleIO/secretRef/name"));
        } else if volume.get("iscsi").is_some() {
            push(&mut out, str_at(volume, "/iscsi/secretRef/name"));
        } else if volume.get("storageos").is_some() {
            push(&mut out, str_at(volume, "/storageos/secretRef/name"));
        } else if volume.get("csi").is_some() {
            push(&mut out, str_at(volume, "/csi/nodePublishSecretRef/name"));
        }
    }
    out
}

/// Every configmap the pod spec names: `envFrom[].configMapRef` and `env[].valueFrom.configMapKeyRef` of every
/// container, configmap volumes and configmap sources of projected volumes.
pub fn pod_configmap_names(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for container in all_containers(pod) {
        for env in items(container, "/envFrom") {
            push(&mut out, str_at(env, "/configMapRef/name"));
        }
        for env in items(container, "/env") {
            push(&mut out, str_at(env, "/valueFrom/configMapKeyRef/name"));
        }
    }
    for volume in items(pod, "/spec/volumes") {
        if volume.get("projected").is_some() {
            for source in items(volume, "/projected/sources") {
                push(&mut out, str_at(source, "/configMap/name"));
            }
        } else if volume.get("configMap").is_some() {
            push(&mut out, str_at(volume, "/configMap/name"));
        }
    }
    out
}

/// The claim a generic ephemeral volume's PVC gets: `<pod name>-<volume name>` (upstream's
/// `ephemeral.VolumeClaimName`).
pub fn ephemeral_claim_name(pod: &Value, volume: &Value) -> String {
    format!("{}-{}", str_at(pod, "/metadata/name"), str_at(volume, "/name"))
}

/// The PVCs the pod's volumes use: `persistentVolumeClaim.claimName`, and the generated claim of each generic
/// ephemeral volume.
pub fn pod_pvc_names(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for volume in items(pod, "/spec/volumes") {
        if volume.get("persistentVolumeClaim").is_some() {
            push(&mut out, str_at(volume, "/persistentVolumeClaim/claimName"));
        } else if volume.get("ephemeral").is_some() {
            out.push(ephemeral_claim_name(pod, volume));
        }
    }
    out
}

/// The ResourceClaims the pod uses (upstream's `resourceclaim.Name` over `spec.resourceClaims`): a named claim
/// directly, a template's claim once `status.resourceClaimStatuses` records its generated name. Entries whose
/// claim does not exist yet, or never will, are skipped.
pub fn pod_resource_claim_names(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for claim in items(pod, "/spec/resourceClaims") {
        if let Some(name) = claim.get("resourceClaimName").and_then(Value::as_str) {
            push(&mut out, name);
        } else if claim.get("resourceClaimTemplateName").and_then(Value::as_str).is_some() {
            let pod_claim = str_at(claim, "/name");
            let status = items(pod, "/status/resourceClaimStatuses").find(|s| str_at(s, "/name") == pod_claim);
            if let Some(name) = status.and_then(|s| s.get("resourceClaimName")).and_then(Value::as_str) {
                push(&mut out, name);
            }
        }
    }
    out
}

/// A secret a persistent volume names: `(namespace, name, kubelet_visible)`. Only kubelet-visible secrets are
/// granted to nodes; CSI controller secrets are not.
pub type PvSecret = (String, String, bool);

/// Every secret the PV's source names (upstream's `pvutil.VisitPVSecretNames`); sources whose secret reference
/// carries no namespace use the namespace of the bound claim, as volumes persisted before the field existed.
pub fn pv_secret_names(pv: &Value) -> Vec<PvSecret> {
    let claim_ns = str_at(pv, "/spec/claimRef/namespace");
    let spec = pv.get("spec").unwrap_or(&Value::Null);
    let mut out: Vec<PvSecret> = Vec::new();
    let mut add = |ns: &str, name: &str, visible: bool| {
        if !name.is_empty() {
            out.push((ns.to_string(), name.to_string(), visible));
        }
    };
    // The secret namespace if set, else the claim's.
    let ns_or_claim = |r: &Value| -> String {
        let ns = str_at(r, "/namespace");
        if ns.is_empty() { claim_ns.to_string() } else { ns.to_string() }
    };
    // A volume has one source; upstream's switch takes the first of these that is set.
    let source = ["azureFile", "cephfs", "cinder", "flexVolume", "rbd", "scaleIO", "iscsi", "storageos", "csi"]
        .into_iter()
        .find_map(|key| spec.get(key).map(|v| (key, v)));
    match source {
        Some(("azureFile", azure)) => {
            let ns = str_at(azure, "/secretNamespace");
            add(if ns.is_empty() { claim_ns } else { ns }, str_at(azure, "/secretName"), true);
        }
        // Sources added after secret namespaces existed take the reference as written.
        Some(("cinder" | "storageos", source)) => {
            if let Some(r) = source.get("secretRef") {
                add(str_at(r, "/namespace"), str_at(r, "/name"), true);
            }
        }
        Some(("csi", csi)) => {
            for (field, visible) in [
                ("controllerPublishSecretRef", false),
                ("controllerExpandSecretRef", false),
                ("nodePublishSecretRef", true),
                ("nodeStageSecretRef", true),
                ("nodeExpandSecretRef", true),
            ] {
                if let Some(r) = csi.get(field) {
                    add(str_at(r, "/namespace"), str_at(r, "/name"), visible);
                }
            }
        }
        Some((_, source)) => {
            if let Some(r) = source.get("secretRef") {
                add(&ns_or_claim(r), str_at(r, "/name"), true);
            }
        }
        None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_references_every_place_a_secret_or_configmap_can_be_named() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "imagePullSecrets": [{"name": "pull"}, {"name": ""}],
                "initContainers": [{"envFrom": [{"secretRef": {"name": "init-envfrom"}}]}],
                "containers": [{
                    "envFrom": [{"configMapRef": {"name": "cm-envfrom"}}],
                    "env": [
                        {"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
                        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}},
                        {"name": "C", "value": "plain"}
                    ]
                }],
                "ephemeralContainers": [{"env": [{"name": "D", "valueFrom": {"secretKeyRef": {"name": "debug"}}}]}],
                "volumes": [
                    {"name": "s", "secret": {"secretName": "vol-secret"}},
                    {"name": "c", "configMap": {"name": "vol-cm"}},
                    {"name": "p", "projected": {"sources": [
                        {"secret": {"name": "proj-secret"}}, {"configMap": {"name": "proj-cm"}},
                        {"serviceAccountToken": {"path": "t"}}
                    ]}},
                    {"name": "csi", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "csi-secret"}}},
                    {"name": "rbd", "rbd": {"monitors": [], "image": "i", "secretRef": {"name": "rbd-secret"}}},
                    {"name": "claim", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}
                ]
            }
        });
        assert_eq!(
            pod_secret_names(&pod),
            ["pull", "init-envfrom", "env-secret", "debug", "vol-secret", "proj-secret", "csi-secret", "rbd-secret"]
        );
        assert_eq!(pod_configmap_names(&pod), ["cm-envfrom", "env-cm", "vol-cm", "proj-cm"]);
        assert_eq!(pod_pvc_names(&pod), ["data", "p-scratch"]);
    }

    #[test]
    fn resource_claims_resolve_templates_through_status() {
        let pod = json!({
            "metadata": {"name": "p"},
            "spec": {"resourceClaims": [
                {"name": "a", "resourceClaimName": "shared"},
                {"name": "b", "resourceClaimTemplateName": "t"},
                {"name": "c", "resourceClaimTemplateName": "t"},
                {"name": "d", "resourceClaimTemplateName": "t"}
            ]},
            "status": {"resourceClaimStatuses": [{"name": "b", "resourceClaimName": "p-b-x1"}, {"name": "d"}]}
        });
        assert_eq!(pod_resource_claim_names(&pod), ["shared", "p-b-x1"]);
    }

    #[test]
    fn pv_secrets_default_to_the_claim_namespace_and_mark_controller_secrets_invisible() {
        let flex = json!({"spec": {"claimRef": {"namespace": "ns", "name": "c"}, "flexVolume": {"driver": "d", "secretRef": {"name": "s"}}}});
        assert_eq!(pv_secret_names(&flex), [("ns".to_string(), "s".to_string(), true)]);
        let csi = json!({"spec": {"csi": {
            "driver": "d", "volumeHandle": "h",
            "controllerPublishSecretRef": {"namespace": "a", "name": "cp"},
            "nodeStageSecretRef": {"namespace": "b", "name": "ns"}
        }}});
        assert_eq!(
            pv_secret_names(&csi),
            [("a".to_string(), "cp".to_string(), false), ("b".to_string(), "ns".to_string(), true)]
        );
        let azure =
            json!({"spec": {"claimRef": {"namespace": "ns"}, "azureFile": {"secretName": "az", "shareName": "x"}}});
        assert_eq!(pv_secret_names(&azure), [("ns".to_string(), "az".to_string(), true)]);
    }
}
