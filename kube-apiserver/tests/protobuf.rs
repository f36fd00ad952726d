//! Protobuf on the wire, over every kind of the resource table, as client-go speaks it: request bodies encoded with
//! the `k8s-pb` (prost) types in the `k8s\0` envelope, `Accept: application/vnd.kubernetes.protobuf, */*`, and
//! length-framed watch events. Each kind is created once from JSON and once from protobuf; both must be stored
//! alike, and a protobuf GET, LIST and WATCH must decode to what the JSON API shows.

use std::time::Duration;

use api_types::protobuf::{CONTENT_TYPE, decode_k8s_protobuf, encode_message_of, envelope};
use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::BodyExt;
use kube_apiserver::testing::TestApiserver;
use prost::Message;
use serde_json::{Value, json};

const PB_ACCEPT: &str = "application/vnd.kubernetes.protobuf, */*";

/// The k8s-pb type of a kind: decodes our encoding and encodes it again, so bodies are what prost writes.
type ReEncode = fn(&[u8]) -> Vec<u8>;

macro_rules! pb {
    ($ty:ty) => {
        (|b: &[u8]| <$ty>::decode(b).expect("k8s-pb decodes our encoding").encode_to_vec()) as ReEncode
    };
}

/// (group, version, plural, k8s-pb type, a valid object of the kind in YAML without a name).
fn fixtures() -> Vec<(&'static str, &'static str, &'static str, ReEncode, &'static str)> {
    use k8s_pb::api;
    let pod_template = "template: {metadata: {labels: {app: x}}, spec: {containers: [{name: c, image: busybox}]}}";
    let _ = pod_template;
    vec![
        ("", "v1", "configmaps", pb!(api::core::v1::ConfigMap), "data: {a: b}\nbinaryData: {bin: aGVsbG8=}"),
        (
            "",
            "v1",
            "endpoints",
            pb!(api::core::v1::Endpoints),
            "subsets: [{addresses: [{ip: 10.1.2.3}], ports: [{port: 80, protocol: TCP}]}]",
        ),
        (
            "",
            "v1",
            "events",
            pb!(api::core::v1::Event),
            "involvedObject: {kind: Pod, name: p, namespace: default}\nreason: Started\nmessage: hello\ntype: Normal\ncount: 2",
        ),
        (
            "",
            "v1",
            "limitranges",
            pb!(api::core::v1::LimitRange),
            "spec: {limits: [{type: Container, default: {cpu: 500m}}]}",
        ),
        ("", "v1", "namespaces", pb!(api::core::v1::Namespace), "metadata: {labels: {team: a}}"),
        (
            "",
            "v1",
            "nodes",
            pb!(api::core::v1::Node),
            "spec: {podCIDR: 10.244.1.0/24, taints: [{key: k, effect: NoSchedule}]}",
        ),
        (
            "",
            "v1",
            "persistentvolumeclaims",
            pb!(api::core::v1::PersistentVolumeClaim),
            "spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}",
        ),
        (
            "",
            "v1",
            "persistentvolumes",
            pb!(api::core::v1::PersistentVolume),
            "spec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], hostPath: {path: /tmp/pv}}",
        ),
        (
            "",
            "v1",
            "pods",
            pb!(api::core::v1::Pod),
            "spec: {containers: [{name: c, image: busybox, command: [sleep, '3600'], ports: [{containerPort: 80}], resources: {limits: {cpu: 100m, memory: 64Mi}}}]}",
        ),
        (
            "",
            "v1",
            "podtemplates",
            pb!(api::core::v1::PodTemplate),
            "template: {metadata: {labels: {app: x}}, spec: {containers: [{name: c, image: busybox}]}}",
        ),
        (
            "",
            "v1",
            "replicationcontrollers",
            pb!(api::core::v1::ReplicationController),
            "spec: {replicas: 0, selector: {app: x}, template: {metadata: {labels: {app: x}}, spec: {containers: [{name: c, image: busybox}]}}}",
        ),
        ("", "v1", "resourcequotas", pb!(api::core::v1::ResourceQuota), "spec: {hard: {pods: '10'}}"),
        ("", "v1", "secrets", pb!(api::core::v1::Secret), "type: Opaque\ndata: {password: c2VjcmV0}"),
        ("", "v1", "serviceaccounts", pb!(api::core::v1::ServiceAccount), "automountServiceAccountToken: false"),
        (
            "",
            "v1",
            "services",
            pb!(api::core::v1::Service),
            "spec: {selector: {app: x}, ports: [{port: 80, targetPort: 8080, protocol: TCP}]}",
        ),
        (
            "apps",
            "v1",
            "controllerrevisions",
            pb!(api::apps::v1::ControllerRevision),
            "revision: 3\ndata: {spec: {a: 1}}",
        ),
        (
            "apps",
            "v1",
            "daemonsets",
            pb!(api::apps::v1::DaemonSet),
            "spec: {selector: {matchLabels: {app: x}}, template: {metadata: {labels: {app: x}}, spec: {containers: [{name: c, image: busybox}]}}}",
        ),
        (
            "apps",
            "v1",
            "deployments",
            pb!(api::apps::v1::Deployment),
            "spec: {replicas: 0, selector: {matchLabels: {app: x}}, strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 25%, maxUnavailable: 1}}, template: {metadata: {labels: {app: x}}, spec: {containers: [{name: c, image: busybox}]}}}",
        ),
        (
            "apps",
            "v1",
            "replicasets",
            pb!(api::apps::v1::ReplicaSet),
            "spec: {replicas: 0, selector: {matchLabels: {app: x}}, template: {metadata: {labels: {app: x}}, spec: {containers: [{name: c, image: busybox}]}}}",
        ),
        (
            "apps",
            "v1",
            "statefulsets",
            pb!(api::apps::v1::StatefulSet),
            "spec: {replicas: 0, serviceName: s, selector: {matchLabels: {app: x}}, template: {metadata: {labels: {app: x}}, spec: {containers: [{name: c, image: busybox}]}}}",
        ),
        (
            "events.k8s.io",
            "v1",
            "events",
            pb!(api::events::v1::Event),
            "eventTime: '2024-01-02T03:04:05.123456Z'\nreportingController: example.com/c\nreportingInstance: i\naction: Start\nreason: Started\ntype: Normal\nregarding: {kind: Pod, name: p, namespace: default}",
        ),
        (
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            pb!(api::autoscaling::v2::HorizontalPodAutoscaler),
            "spec: {scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: d}, minReplicas: 1, maxReplicas: 3, metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}}]}",
        ),
        (
            "autoscaling",
            "v1",
            "horizontalpodautoscalers",
            pb!(api::autoscaling::v1::HorizontalPodAutoscaler),
            "spec: {scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: d}, maxReplicas: 3, targetCPUUtilizationPercentage: 70}",
        ),
        (
            "batch",
            "v1",
            "cronjobs",
            pb!(api::batch::v1::CronJob),
            "spec: {schedule: '*/5 * * * *', suspend: true, jobTemplate: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}}}}}",
        ),
        (
            "batch",
            "v1",
            "jobs",
            pb!(api::batch::v1::Job),
            "spec: {suspend: true, template: {spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}}}",
        ),
        (
            "certificates.k8s.io",
            "v1",
            "certificatesigningrequests",
            pb!(api::certificates::v1::CertificateSigningRequest),
            "spec: {request: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K, signerName: example.com/signer, usages: [digital signature]}",
        ),
        (
            "networking.k8s.io",
            "v1",
            "ingressclasses",
            pb!(api::networking::v1::IngressClass),
            "spec: {controller: example.com/ingress}",
        ),
        (
            "networking.k8s.io",
            "v1",
            "ingresses",
            pb!(api::networking::v1::Ingress),
            "spec: {rules: [{host: a.example.com, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: s, port: {number: 80}}}}]}}]}",
        ),
        (
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            pb!(api::networking::v1::NetworkPolicy),
            "spec: {podSelector: {matchLabels: {app: x}}, policyTypes: [Ingress], ingress: [{ports: [{port: 80, protocol: TCP}]}]}",
        ),
        (
            "policy",
            "v1",
            "poddisruptionbudgets",
            pb!(api::policy::v1::PodDisruptionBudget),
            "spec: {minAvailable: 1, selector: {matchLabels: {app: x}}}",
        ),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            pb!(api::rbac::v1::ClusterRoleBinding),
            "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\nsubjects: [{kind: User, apiGroup: rbac.authorization.k8s.io, name: alice}]",
        ),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            pb!(api::rbac::v1::ClusterRole),
            "rules: [{apiGroups: [''], resources: [pods], verbs: [get, list]}]",
        ),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            pb!(api::rbac::v1::RoleBinding),
            "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}\nsubjects: [{kind: ServiceAccount, name: default, namespace: default}]",
        ),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            pb!(api::rbac::v1::Role),
            "rules: [{apiGroups: [apps], resources: [deployments], verbs: ['*']}]",
        ),
        (
            "storage.k8s.io",
            "v1",
            "csidrivers",
            pb!(api::storage::v1::CSIDriver),
            "spec: {attachRequired: false, podInfoOnMount: true}",
        ),
        (
            "storage.k8s.io",
            "v1",
            "csinodes",
            pb!(api::storage::v1::CSINode),
            "spec: {drivers: [{name: example.com/csi, nodeID: n1}]}",
        ),
        (
            "storage.k8s.io",
            "v1",
            "csistoragecapacities",
            pb!(api::storage::v1::CSIStorageCapacity),
            "storageClassName: sc\ncapacity: 10Gi",
        ),
        (
            "storage.k8s.io",
            "v1",
            "storageclasses",
            pb!(api::storage::v1::StorageClass),
            "provisioner: example.com/p\nparameters: {a: b}\nreclaimPolicy: Delete",
        ),
        (
            "storage.k8s.io",
            "v1",
            "volumeattachments",
            pb!(api::storage::v1::VolumeAttachment),
            "spec: {attacher: example.com/csi, nodeName: n1, source: {persistentVolumeName: pv1}}",
        ),
        (
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            pb!(api::admissionregistration::v1::MutatingWebhookConfiguration),
            "metadata: {labels: {a: b}}",
        ),
        (
            "admissionregistration.k8s.io",
            "v1",
            "validatingadmissionpolicies",
            pb!(api::admissionregistration::v1::ValidatingAdmissionPolicy),
            "spec: {failurePolicy: Fail, matchConstraints: {resourceRules: [{apiGroups: [apps], apiVersions: [v1], operations: [CREATE], resources: [deployments]}]}, validations: [{expression: 'object.spec.replicas <= 5'}]}",
        ),
        (
            "admissionregistration.k8s.io",
            "v1",
            "validatingadmissionpolicybindings",
            pb!(api::admissionregistration::v1::ValidatingAdmissionPolicyBinding),
            "spec: {policyName: p, validationActions: [Deny]}",
        ),
        (
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            pb!(api::admissionregistration::v1::ValidatingWebhookConfiguration),
            "metadata: {labels: {a: b}}",
        ),
        (
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            pb!(k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition),
            "spec: {group: example.com, scope: Namespaced, names: {plural: NAMEs, singular: NAME, kind: Widget}, versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, properties: {spec: {type: object, x-kubernetes-preserve-unknown-fields: true, properties: {size: {type: integer, minimum: 1}}}}}}}]}",
        ),
        (
            "coordination.k8s.io",
            "v1",
            "leases",
            pb!(api::coordination::v1::Lease),
            "spec: {holderIdentity: me, leaseDurationSeconds: 15, renewTime: '2024-01-02T03:04:05.000000Z'}",
        ),
        (
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            pb!(api::discovery::v1::EndpointSlice),
            "addressType: IPv4\nendpoints: [{addresses: [10.1.2.3], conditions: {ready: true}}]\nports: [{name: http, port: 80, protocol: TCP}]",
        ),
        ("node.k8s.io", "v1", "runtimeclasses", pb!(api::node::v1::RuntimeClass), "handler: runc"),
        (
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "flowschemas",
            pb!(api::flowcontrol::v1::FlowSchema),
            "spec: {priorityLevelConfiguration: {name: global-default}, matchingPrecedence: 500, distinguisherMethod: {type: ByUser},\n  rules: [{subjects: [{kind: Group, group: {name: team}}], resourceRules: [{verbs: [get], apiGroups: ['*'], resources: ['*'], namespaces: ['*']}]}]}",
        ),
        (
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "prioritylevelconfigurations",
            pb!(api::flowcontrol::v1::PriorityLevelConfiguration),
            "spec: {type: Limited, limited: {nominalConcurrencyShares: 7, lendablePercent: 10, limitResponse: {type: Queue, queuing: {queues: 16, handSize: 4, queueLengthLimit: 20}}}}",
        ),
        (
            "scheduling.k8s.io",
            "v1",
            "priorityclasses",
            pb!(api::scheduling::v1::PriorityClass),
            "value: 1000\ndescription: high",
        ),
        (
            "apiregistration.k8s.io",
            "v1",
            "apiservices",
            pb!(k8s_pb::kube_aggregator::pkg::apis::apiregistration::v1::APIService),
            "spec: {group: example.com, version: VERSION, groupPriorityMinimum: 100, versionPriority: 10}",
        ),
    ]
}

/// The object of a fixture with a name (CRDs need `<plural>.<group>`).
fn object(group: &str, version: &str, plural: &str, yaml: &str, name: &str) -> Value {
    let res = api_types::resources::find(group, version, plural).unwrap();
    let (yaml, name) = if plural == "customresourcedefinitions" {
        let plural_name = format!("{}s", name.replace('-', ""));
        (
            yaml.replace("NAMEs", &plural_name).replace("NAME", &name.replace('-', "")),
            format!("{plural_name}.example.com"),
        )
    } else if plural == "apiservices" {
        // An APIService is named `<version>.<group>`.
        let version = name.replace('-', "");
        (yaml.replace("VERSION", &version), format!("{version}.example.com"))
    } else {
        (yaml.to_string(), name.to_string())
    };
    let mut obj: Value = serde_yaml_ng::from_str(&yaml).unwrap();
    obj["apiVersion"] = json!(res.api_version());
    obj["kind"] = json!(res.kind);
    obj["metadata"]["name"] = json!(name);
    obj
}

fn path(group: &str, version: &str, plural: &str, namespaced: bool) -> String {
    let base = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
    if namespaced { format!("{base}/namespaces/default/{plural}") } else { format!("{base}/{plural}") }
}

async fn call(
    api: &TestApiserver,
    method: Method,
    path: &str,
    body: Option<(Bytes, &str)>,
) -> (StatusCode, String, Bytes) {
    let resp = api.client.send_accepting(method, path, PB_ACCEPT, body).await.unwrap();
    let status = resp.status();
    let ct = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    (status, ct, resp.into_body().collect().await.unwrap().to_bytes())
}

/// What must match between an object created from JSON and one created from protobuf: all but the names (also
/// where the apiserver copied them, as a Job's `job-name` label) and what the server generated.
fn comparable(obj: &Value, i: usize) -> Value {
    let text = obj.to_string();
    let text = text.replace(&format!("from-json-{i}"), "NAME").replace(&format!("from-pb-{i}"), "NAME");
    let text = text.replace(&format!("fromjson{i}"), "NAME").replace(&format!("frompb{i}"), "NAME");
    let mut obj: Value = serde_json::from_str(&text).unwrap();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in ["name", "uid", "resourceVersion", "creationTimestamp", "managedFields", "selfLink"] {
            meta.remove(k);
        }
        if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
            labels.remove("kubernetes.io/metadata.name");
        }
    }
    for p in [
        "/spec/clusterIP",
        "/spec/clusterIPs",
        "/spec/selector/matchLabels/batch.kubernetes.io~1controller-uid",
        "/spec/selector/matchLabels/controller-uid",
        "/spec/template/metadata/labels/batch.kubernetes.io~1controller-uid",
        "/spec/template/metadata/labels/controller-uid",
    ] {
        if let Some((parent, key)) = p.rsplit_once('/')
            && let Some(o) = obj.pointer_mut(parent).and_then(Value::as_object_mut)
        {
            o.remove(&key.replace("~1", "/"));
        }
    }
    if let Some(s) = obj.get_mut("spec").and_then(|s| s.get_mut("names")) {
        *s = json!(null);
    }
    obj
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_speaks_protobuf_like_client_go() {
    let api = TestApiserver::start().await;
    let mut checked = 0;
    for (i, (group, version, plural, re_encode, yaml)) in fixtures().into_iter().enumerate() {
        let res = api_types::resources::find(group, version, plural).unwrap();
        let base = path(group, version, plural, res.namespaced);
        let what = format!("{}/{version} {}", group, res.kind);

        // JSON create, as a baseline.
        let from_json = object(group, version, plural, yaml, &format!("from-json-{i}"));
        let created_json = api
            .client
            .request(Method::POST, &base, Some((Bytes::from(from_json.to_string()), "application/json")))
            .await;
        let created_json = created_json.unwrap_or_else(|e| panic!("{what}: JSON create: {e}"));

        // Protobuf create: the message as k8s-pb encodes it, in the k8s\0 envelope; the answer is protobuf.
        let from_pb = object(group, version, plural, yaml, &format!("from-pb-{i}"));
        let raw = re_encode(&encode_message_of(&from_pb).unwrap());
        let body = Bytes::from(envelope(&res.api_version(), res.kind, &raw));
        let (status, ct, answer) = call(&api, Method::POST, &base, Some((body, CONTENT_TYPE))).await;
        assert_eq!(status, StatusCode::CREATED, "{what}: protobuf create: {}", String::from_utf8_lossy(&answer));
        assert_eq!(ct, CONTENT_TYPE, "{what}");
        let created_pb = decode_k8s_protobuf(&answer).unwrap();
        re_encode(&encode_message_of(&created_pb).unwrap());
        // The answer is the stored bytes with the resourceVersion spliced in: the bytes encoding the object gives.
        assert!(created_pb["metadata"]["resourceVersion"].as_str().is_some_and(|rv| rv.parse::<u64>().is_ok()));
        let encoded = api_types::protobuf::encode_object(&created_pb).unwrap();
        assert!(encoded == answer, "{what}: the protobuf answer to a create is not the object's encoding");
        assert_eq!(
            comparable(&created_pb, i),
            comparable(&created_json, i),
            "{what}: protobuf and JSON creates differ"
        );

        // GET in protobuf decodes to what the JSON GET shows.
        let name = created_pb["metadata"]["name"].as_str().unwrap().to_string();
        if let Some(settled) = match plural {
            "customresourcedefinitions" => Some("Established"),
            "apiservices" => Some("Available"),
            _ => None,
        } {
            // The CRD and APIService controllers write the status right after a create: compare once they are done.
            for _ in 0..100 {
                let got = api.client.request(Method::GET, &format!("{base}/{name}"), None).await.unwrap();
                let done = got["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == settled && c["status"] == "True"));
                if done {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        let (status, ct, got) = call(&api, Method::GET, &format!("{base}/{name}"), None).await;
        assert_eq!((status, ct.as_str()), (StatusCode::OK, CONTENT_TYPE), "{what}");
        let json_get = api.client.request(Method::GET, &format!("{base}/{name}"), None).await.unwrap();
        assert_eq!(decode_k8s_protobuf(&got).unwrap(), json_get, "{what}: protobuf GET differs from JSON GET");
        let encoded = api_types::protobuf::encode_object(&json_get).unwrap();
        assert!(encoded == got, "{what}: the protobuf GET is not the object's encoding");

        // LIST in protobuf: the list kind, both objects.
        let (status, _, list) = call(&api, Method::GET, &base, None).await;
        assert_eq!(status, StatusCode::OK, "{what}");
        let list = decode_k8s_protobuf(&list).unwrap();
        assert_eq!(list["kind"], format!("{}List", res.kind), "{what}");
        assert!(list["metadata"]["resourceVersion"].as_str().is_some_and(|rv| !rv.is_empty()), "{what}");
        assert!(list["items"].as_array().unwrap().len() >= 2, "{what}: {list}");
        // The same list from the watch cache (resourceVersion=0), written from cached item messages.
        let (status, _, cached) = call(&api, Method::GET, &format!("{base}?resourceVersion=0"), None).await;
        assert_eq!(status, StatusCode::OK, "{what}");
        let cached = decode_k8s_protobuf(&cached).unwrap();
        let json_cached = api.client.request(Method::GET, &format!("{base}?resourceVersion=0"), None).await.unwrap();
        // Protobuf list items carry no type meta on the wire (upstream's do not either).
        // (Only this test's objects: built-in ones such as system PriorityClasses are stored with zero values
        // upstream's JSON would omit.)
        let mine = |items: &Value| -> Vec<Value> {
            items
                .as_array()
                .unwrap()
                .iter()
                .filter(|o| {
                    o["metadata"]["name"].as_str().is_some_and(|n| {
                        // Names `from-json-{i}`, CRDs' `fromjson{i}s.<group>`, APIServices' `fromjson{i}.<group>`.
                        n.contains(&format!("-{i}")) || n.contains(&format!("{i}s.")) || n.contains(&format!("{i}."))
                    })
                })
                .map(|o| {
                    let mut o = o.clone();
                    o.as_object_mut().unwrap().retain(|k, _| k != "apiVersion" && k != "kind");
                    o
                })
                .collect()
        };
        let pb_items = mine(&cached["items"]);
        assert!(pb_items.len() >= 2, "{what}");
        assert_eq!(pb_items, mine(&json_cached["items"]), "{what}: cached protobuf LIST differs from JSON");
        // A list read from storage once the cache runs: items the cache holds at the revision read are written from
        // its messages (`registry::share_cached`), the same objects as the stored JSON.
        let (status, _, stored) = call(&api, Method::GET, &base, None).await;
        assert_eq!(status, StatusCode::OK, "{what}");
        let stored = decode_k8s_protobuf(&stored).unwrap();
        let json_stored = api.client.request(Method::GET, &base, None).await.unwrap();
        assert_eq!(
            mine(&stored["items"]),
            mine(&json_stored["items"]),
            "{what}: protobuf LIST from storage differs from JSON"
        );
        checked += 1;
    }
    assert_eq!(checked, fixtures().len());
    // Every stored, creatable resource of the table has a fixture.
    let creatable = api_types::RESOURCES.iter().filter(|r| r.stored() && r.has_verb("create")).count();
    assert_eq!(checked, creatable, "a creatable resource has no fixture");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protobuf_watch_delivers_length_framed_events() {
    let api = TestApiserver::start().await;
    let base = "/api/v1/namespaces/default/configmaps";
    let resp = api
        .client
        .send_accepting(Method::GET, &format!("{base}?watch=true&allowWatchBookmarks=true"), PB_ACCEPT, None)
        .await
        .unwrap();
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/vnd.kubernetes.protobuf;stream=watch");
    let mut body = resp.into_body();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "watched"}, "data": {"a": "1"}});
    api.client.request(Method::POST, base, Some((Bytes::from(cm.to_string()), "application/json"))).await.unwrap();
    let patch = json!({"data": {"a": "2"}}).to_string();
    api.client
        .request(Method::PATCH, &format!("{base}/watched"), Some((Bytes::from(patch), "application/merge-patch+json")))
        .await
        .unwrap();
    api.client.request(Method::DELETE, &format!("{base}/watched"), None).await.unwrap();

    let mut buf = Vec::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while events.len() < 3 {
        let frame =
            tokio::time::timeout_at(deadline, body.frame()).await.expect("watch events in time").unwrap().unwrap();
        buf.extend_from_slice(&frame.into_data().unwrap());
        while buf.len() >= 4 {
            let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            if buf.len() < 4 + len {
                break;
            }
            let event = k8s_pb::apimachinery::pkg::apis::meta::v1::WatchEvent::decode(&buf[4..4 + len]).unwrap();
            buf.drain(..4 + len);
            let raw = event.object.unwrap().raw.unwrap();
            let obj = decode_k8s_protobuf(&raw).unwrap();
            // The object itself decodes with k8s-pb as client-go's embedded decoder would.
            assert!(raw.starts_with(b"k8s\0"));
            events.push((event.r#type.unwrap(), obj));
        }
    }
    let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "DELETED"]);
    assert_eq!(events[1].1["data"]["a"], "2");
    assert_eq!(events[1].1["kind"], "ConfigMap");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_status_subresources_in_protobuf() {
    let api = TestApiserver::start().await;
    // A 404 comes back as a protobuf Status to a client that prefers protobuf.
    let (status, ct, body) = call(&api, Method::GET, "/api/v1/namespaces/default/pods/missing", None).await;
    assert_eq!((status, ct.as_str()), (StatusCode::NOT_FOUND, CONTENT_TYPE));
    let st = decode_k8s_protobuf(&body).unwrap();
    assert_eq!(
        (st["kind"].as_str(), st["reason"].as_str(), st["code"].as_i64()),
        (Some("Status"), Some("NotFound"), Some(404))
    );
    assert_eq!(st["message"], "pods \"missing\" not found");

    // A status update with a protobuf body (client-go's UpdateStatus).
    let base = "/apis/apps/v1/namespaces/default/deployments";
    let d = object("apps", "v1", "deployments", fixtures()[17].4, "d");
    api.client.request(Method::POST, base, Some((Bytes::from(d.to_string()), "application/json"))).await.unwrap();
    let mut current = api.client.request(Method::GET, &format!("{base}/d"), None).await.unwrap();
    current["status"] = json!({"observedGeneration": 1, "replicas": 0, "conditions": [{"type": "Available", "status": "True", "lastUpdateTime": "2024-01-02T03:04:05Z", "lastTransitionTime": "2024-01-02T03:04:05Z", "reason": "MinimumReplicasAvailable", "message": "ok"}]});
    let body = api_types::protobuf::encode_object(&current).unwrap();
    let (status, _, answer) =
        call(&api, Method::PUT, &format!("{base}/d/status"), Some((Bytes::from(body), CONTENT_TYPE))).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer));
    let updated = decode_k8s_protobuf(&answer).unwrap();
    assert_eq!(updated["status"]["conditions"][0]["reason"], "MinimumReplicasAvailable");

    // Scale with a protobuf body and answer.
    let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "d", "namespace": "default"}, "spec": {"replicas": 0}});
    let body = api_types::protobuf::encode_object(&scale).unwrap();
    let (status, ct, answer) =
        call(&api, Method::PUT, &format!("{base}/d/scale"), Some((Bytes::from(body), CONTENT_TYPE))).await;
    assert_eq!((status, ct.as_str()), (StatusCode::OK, CONTENT_TYPE), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(decode_k8s_protobuf(&answer).unwrap()["kind"], "Scale");

    // A Table is never protobuf: the next clause (JSON) answers, and with nothing else acceptable it is 406.
    let table_pb = "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io";
    let resp = api.client.send_accepting(Method::GET, base, table_pb, None).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_ACCEPTABLE);
    let review = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let ssar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}});
    let resp = api
        .client
        .send_accepting(
            Method::POST,
            review,
            "application/json;as=Table;v=v1;g=meta.k8s.io",
            Some((Bytes::from(ssar.to_string()), "application/json")),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_ACCEPTABLE);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(body.ends_with(b"}\n"), "a Status ends with a newline");
    // Streams and connecters are not refused for their Accept (a browser through services/proxy sends text/html).
    let resp = api
        .client
        .send_accepting(Method::GET, "/api/v1/namespaces/default/pods/missing/log", "text/plain", None)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let st: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(st["reason"], "NotAcceptable");
    api.stop().await;
}

/// Upstream's protobuf decoder has no strict mode: a field number the kind's message does not have is skipped, with
/// no warning and no 400 even under `fieldValidation=Strict`, where the same unknown field in JSON is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_bodies_skip_unknown_fields_under_every_field_validation() {
    let api = TestApiserver::start().await;
    let base = "/api/v1/namespaces/default/configmaps";
    for (i, mode) in ["Strict", "Warn", "Ignore"].iter().enumerate() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm{i}")}, "data": {"k": "v"}});
        // The ConfigMap message, then field 99 (varint 1), which ConfigMap does not have.
        let mut raw = encode_message_of(&cm).unwrap();
        raw.extend_from_slice(&[0x98, 0x06, 0x01]);
        let body = Bytes::from(envelope("v1", "ConfigMap", &raw));
        let path = format!("{base}?fieldValidation={mode}");
        let resp = api.client.send_accepting(Method::POST, &path, PB_ACCEPT, Some((body, CONTENT_TYPE))).await.unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "{mode}");
        assert!(resp.headers().get(header::WARNING).is_none(), "{mode}: no warning for a protobuf body");
        let created = decode_k8s_protobuf(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(created["data"], json!({"k": "v"}), "{mode}");

        // The same unknown field in JSON: refused under Strict, a warning under Warn, dropped under Ignore.
        let mut cm = cm.clone();
        cm["metadata"]["name"] = json!(format!("json{i}"));
        cm["unknownField"] = json!(1);
        let body = Some((Bytes::from(cm.to_string()), "application/json"));
        let resp = api.client.send_accepting(Method::POST, &path, "application/json", body).await.unwrap();
        let warned = resp.headers().get(header::WARNING).map(|w| w.to_str().unwrap().to_string());
        match *mode {
            "Strict" => assert_eq!(resp.status(), StatusCode::BAD_REQUEST),
            "Warn" => assert_eq!(warned.as_deref(), Some("299 - \"unknown field \\\"unknownField\\\"\"")),
            _ => assert!(resp.status() == StatusCode::CREATED && warned.is_none()),
        }
    }
    api.stop().await;
}
