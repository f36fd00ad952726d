//! Real clients' defaults against the apiserver: a protobuf client built on the `k8s-pb` (prost) types that speaks as
//! client-go does, the Python `kubernetes` client (JSON, run as a subprocess with a kubeconfig), and kube-rs (JSON,
//! with its `watcher`).

use std::collections::BTreeMap;
use std::time::Instant;

use api_types::protobuf::{CONTENT_TYPE, envelope};
use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::BodyExt;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use kube_apiserver::testing::{TestApiserver, within};
use prost::Message;

/// client-go's default for clients configured with protobuf (every upstream component).
const PB_ACCEPT: &str = "application/vnd.kubernetes.protobuf, */*";

/// A response as client-go's REST client sees it.
struct Answer {
    status: StatusCode,
    content_type: String,
    body: Bytes,
}

impl Answer {
    /// The typed object of a protobuf answer; panics unless it is one of kind `kind`.
    fn object<M: Message + Default>(&self, kind: &str) -> M {
        assert_eq!(self.content_type, CONTENT_TYPE, "protobuf answer expected ({})", self.status);
        let (api_version, got_kind, raw) = unwrap_unknown(&self.body);
        assert_eq!(got_kind, kind, "{} answered a {api_version} {got_kind}", self.status);
        M::decode(raw.as_slice()).unwrap_or_else(|e| panic!("{kind} does not decode with k8s-pb: {e}"))
    }

    /// The `Status` of a failed request, in protobuf.
    fn status(&self) -> meta::Status {
        self.object("Status")
    }

    fn expect(self, code: StatusCode, what: &str) -> Self {
        assert_eq!(self.status, code, "{what}: {}", String::from_utf8_lossy(&self.body));
        self
    }
}

/// client-go's protobuf serializer: the `k8s\0` magic, then a `runtime.Unknown` whose `raw` holds the typed message.
fn unwrap_unknown(body: &[u8]) -> (String, String, Vec<u8>) {
    assert!(body.starts_with(b"k8s\0"), "no protobuf magic: {:?}", String::from_utf8_lossy(body));
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(&body[4..]).expect("runtime.Unknown");
    let tm = unknown.type_meta.unwrap_or_default();
    assert_eq!(unknown.content_encoding.as_deref().unwrap_or(""), "");
    assert_eq!(unknown.content_type.as_deref().unwrap_or(""), "");
    (tm.api_version.unwrap_or_default(), tm.kind.unwrap_or_default(), unknown.raw.unwrap_or_default())
}

/// The protobuf-speaking client: typed k8s-pb messages in, typed messages out.
struct PbClient<'a>(&'a client::Client);

impl PbClient<'_> {
    async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Answer {
        let body = body.map(|b| (Bytes::from(b), CONTENT_TYPE));
        let resp = self.0.send_accepting(method, path, PB_ACCEPT, body).await.expect("transport");
        let status = resp.status();
        let content_type =
            resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        Answer { status, content_type, body: resp.into_body().collect().await.unwrap().to_bytes() }
    }

    /// A write whose body is `msg` in the `k8s\0` envelope of `api_version`/`kind`, as client-go's `Body(obj)`.
    async fn write<M: Message>(&self, method: Method, path: &str, api_version: &str, kind: &str, msg: &M) -> Answer {
        self.send(method, path, Some(envelope(api_version, kind, &msg.encode_to_vec()))).await
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    /// A protobuf watch: `Content-Type: ...;stream=watch`, events framed with a 4-byte big-endian length.
    async fn watch(&self, path: &str) -> PbWatch {
        let resp = self.0.send_accepting(Method::GET, path, PB_ACCEPT, None).await.expect("watch");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/vnd.kubernetes.protobuf;stream=watch");
        PbWatch { body: resp.into_body(), buf: Vec::new() }
    }
}

struct PbWatch {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
}

impl PbWatch {
    /// The next event (type, the object's apiVersion, kind and typed message bytes); bookmarks are skipped.
    async fn next(&mut self) -> (String, String, String, Vec<u8>) {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
                if self.buf.len() >= 4 + len {
                    let event = meta::WatchEvent::decode(&self.buf[4..4 + len]).expect("meta.v1.WatchEvent");
                    self.buf.drain(..4 + len);
                    let ty = event.r#type.unwrap_or_default();
                    let raw = event.object.and_then(|o| o.raw).unwrap_or_default();
                    if ty == "BOOKMARK" {
                        continue;
                    }
                    let (api_version, kind, msg) = unwrap_unknown(&raw);
                    return (ty, api_version, kind, msg);
                }
            }
            let frame = within(10, "a protobuf watch event", self.body.frame()).await;
            let frame = frame.expect("watch stream ended").expect("watch stream");
            if let Ok(data) = frame.into_data() {
                self.buf.extend_from_slice(&data);
            }
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn meta(name: &str, l: &[(&str, &str)]) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta { name: Some(name.into()), labels: labels(l), ..Default::default() })
}

fn busybox(name: &str) -> core::Container {
    core::Container {
        name: Some(name.into()),
        image: Some("busybox:1.36".into()),
        command: vec!["sleep".into(), "3600".into()],
        ..Default::default()
    }
}

fn now() -> Option<meta::Time> {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    Some(meta::Time { seconds: Some(secs as i64), nanos: Some(0) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_client_like_client_go() {
    let started = Instant::now();
    let api = TestApiserver::start().await;
    let pb = PbClient(&api.client);
    let ns = "pb-client";

    // A Namespace from a typed message.
    let created: core::Namespace = pb
        .write(
            Method::POST,
            "/api/v1/namespaces",
            "v1",
            "Namespace",
            &core::Namespace { metadata: meta(ns, &[("team", "pb")]), ..Default::default() },
        )
        .await
        .expect(StatusCode::CREATED, "create namespace")
        .object("Namespace");
    assert_eq!(created.status.and_then(|s| s.phase).as_deref(), Some("Active"));

    // The informer's LIST (empty), then a WATCH from its resourceVersion, both in protobuf.
    let deployments = format!("/apis/apps/v1/namespaces/{ns}/deployments");
    let list: apps::DeploymentList =
        pb.get(&deployments).await.expect(StatusCode::OK, "list deployments").object("DeploymentList");
    assert!(list.items.is_empty());
    let rv = list.metadata.and_then(|m| m.resource_version).expect("list resourceVersion");
    assert!(!rv.is_empty());
    let mut watch = pb.watch(&format!("{deployments}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true")).await;

    // Create a Deployment from a typed k8s-pb message; the answer is the defaulted object.
    let deployment = apps::Deployment {
        metadata: meta("web", &[("app", "web")]),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(2),
            selector: Some(meta::LabelSelector { match_labels: labels(&[("app", "web")]), ..Default::default() }),
            template: Some(core::PodTemplateSpec {
                metadata: meta("", &[("app", "web")]).map(|m| meta::ObjectMeta { name: None, ..m }),
                spec: Some(core::PodSpec { containers: vec![busybox("c")], ..Default::default() }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let created: apps::Deployment = pb
        .write(Method::POST, &deployments, "apps/v1", "Deployment", &deployment)
        .await
        .expect(StatusCode::CREATED, "create deployment")
        .object("Deployment");
    let m = created.metadata.clone().unwrap();
    assert_eq!((m.name.as_deref(), m.namespace.as_deref(), m.generation), (Some("web"), Some(ns), Some(1)));
    assert!(m.uid.is_some_and(|u| !u.is_empty()) && m.creation_timestamp.is_some());
    let spec = created.spec.clone().unwrap();
    assert_eq!(spec.strategy.as_ref().and_then(|s| s.r#type.as_deref()), Some("RollingUpdate"), "defaulted");
    assert_eq!((spec.revision_history_limit, spec.progress_deadline_seconds), (Some(10), Some(600)), "defaulted");
    let pod_spec = spec.template.as_ref().and_then(|t| t.spec.clone()).unwrap();
    assert_eq!(pod_spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(pod_spec.containers[0].termination_message_path.as_deref(), Some("/dev/termination-log"));
    assert_eq!(pod_spec.containers[0].image_pull_policy.as_deref(), Some("IfNotPresent"));

    // Creating it again: a protobuf Status, AlreadyExists.
    let st = pb
        .write(Method::POST, &deployments, "apps/v1", "Deployment", &deployment)
        .await
        .expect(StatusCode::CONFLICT, "again")
        .status();
    assert_eq!((st.reason.as_deref(), st.code), (Some("AlreadyExists"), Some(409)));
    assert_eq!(st.details.as_ref().and_then(|d| d.name.as_deref()), Some("web"));
    assert_eq!(st.details.as_ref().and_then(|d| d.group.as_deref()), Some("apps"));

    // UpdateStatus: PUT .../status with the whole object; spec changes in that body are ignored.
    let mut with_status = created.clone();
    with_status.spec.as_mut().unwrap().replicas = Some(7);
    with_status.status = Some(apps::DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(2),
        updated_replicas: Some(2),
        ready_replicas: Some(1),
        available_replicas: Some(1),
        unavailable_replicas: Some(1),
        conditions: vec![apps::DeploymentCondition {
            r#type: Some("Available".into()),
            status: Some("False".into()),
            last_update_time: now(),
            last_transition_time: now(),
            reason: Some("MinimumReplicasUnavailable".into()),
            message: Some("Deployment does not have minimum availability.".into()),
        }],
        ..Default::default()
    });
    let updated: apps::Deployment = pb
        .write(Method::PUT, &format!("{deployments}/web/status"), "apps/v1", "Deployment", &with_status)
        .await
        .expect(StatusCode::OK, "update status")
        .object("Deployment");
    let status = updated.status.clone().unwrap();
    assert_eq!((status.replicas, status.ready_replicas, status.observed_generation), (Some(2), Some(1), Some(1)));
    assert_eq!(status.conditions[0].reason.as_deref(), Some("MinimumReplicasUnavailable"));
    assert!(status.conditions[0].last_update_time.is_some_and(|t| t.seconds.unwrap_or(0) > 0));
    assert_eq!(updated.spec.as_ref().unwrap().replicas, Some(2), "a status write keeps the stored spec");
    assert_eq!(updated.metadata.as_ref().unwrap().generation, Some(1), "a status write does not bump generation");

    // The same status body again, now with a stale resourceVersion: 409 Conflict in protobuf.
    let st = pb
        .write(Method::PUT, &format!("{deployments}/web/status"), "apps/v1", "Deployment", &with_status)
        .await
        .expect(StatusCode::CONFLICT, "stale status update")
        .status();
    assert_eq!(st.reason.as_deref(), Some("Conflict"));

    // Update (spec): generation 2, status kept.
    let mut scaled = updated.clone();
    scaled.spec.as_mut().unwrap().replicas = Some(3);
    let scaled: apps::Deployment = pb
        .write(Method::PUT, &format!("{deployments}/web"), "apps/v1", "Deployment", &scaled)
        .await
        .expect(StatusCode::OK, "update")
        .object("Deployment");
    assert_eq!(scaled.metadata.as_ref().unwrap().generation, Some(2));
    assert_eq!(scaled.spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(scaled.status.as_ref().unwrap().ready_replicas, Some(1), "an update keeps the stored status");

    // GET and a LIST with a label selector, in protobuf.
    let got: apps::Deployment =
        pb.get(&format!("{deployments}/web")).await.expect(StatusCode::OK, "get").object("Deployment");
    assert_eq!(got, scaled);
    let list: apps::DeploymentList = pb
        .get(&format!("{deployments}?labelSelector=app%3Dweb"))
        .await
        .expect(StatusCode::OK, "list")
        .object("DeploymentList");
    assert_eq!(list.items, vec![scaled.clone()]);
    let list: apps::DeploymentList = pb
        .get(&format!("{deployments}?labelSelector=app%3Dother"))
        .await
        .expect(StatusCode::OK, "list")
        .object("DeploymentList");
    assert!(list.items.is_empty());

    // DELETE with a protobuf DeleteOptions body (client-go encodes it with the client's content type).
    let opts = meta::DeleteOptions { propagation_policy: Some("Background".into()), ..Default::default() };
    let deleted = pb
        .write(Method::DELETE, &format!("{deployments}/web"), "apps/v1", "DeleteOptions", &opts)
        .await
        .expect(StatusCode::OK, "delete with protobuf DeleteOptions");
    match unwrap_unknown(&deleted.body).1.as_str() {
        "Status" => assert_eq!(deleted.status().status.as_deref(), Some("Success")),
        "Deployment" => {
            assert_eq!(deleted.object::<apps::Deployment>("Deployment").metadata.unwrap().name.as_deref(), Some("web"))
        }
        other => panic!("delete answered a {other}"),
    }

    // The watch saw all of it, each object a typed Deployment.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (ty, api_version, kind, raw) = watch.next().await;
        assert_eq!((api_version.as_str(), kind.as_str()), ("apps/v1", "Deployment"));
        let d = apps::Deployment::decode(raw.as_slice()).expect("a Deployment in the watch");
        seen.push((ty, d.spec.unwrap().replicas, d.status.and_then(|s| s.ready_replicas)));
    }
    assert_eq!(
        seen,
        [
            ("ADDED".to_string(), Some(2), None),
            ("MODIFIED".to_string(), Some(2), Some(1)),
            ("MODIFIED".to_string(), Some(3), Some(1)),
            ("DELETED".to_string(), Some(3), Some(1)),
        ]
    );

    // A Pod: create, status written as the kubelet does (UpdateStatus), read back typed.
    let pods = format!("/api/v1/namespaces/{ns}/pods");
    let pod = core::Pod {
        metadata: meta("p", &[("app", "web")]),
        spec: Some(core::PodSpec { containers: vec![busybox("c")], ..Default::default() }),
        status: None,
    };
    let mut pod: core::Pod =
        pb.write(Method::POST, &pods, "v1", "Pod", &pod).await.expect(StatusCode::CREATED, "create pod").object("Pod");
    assert_eq!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Pending"));
    assert_eq!(pod.spec.as_ref().unwrap().dns_policy.as_deref(), Some("ClusterFirst"));
    pod.status = Some(core::PodStatus {
        phase: Some("Running".into()),
        conditions: vec![core::PodCondition {
            r#type: Some("Ready".into()),
            status: Some("True".into()),
            last_transition_time: now(),
            ..Default::default()
        }],
        host_ip: Some("10.0.0.1".into()),
        host_ips: vec![core::HostIp { ip: Some("10.0.0.1".into()) }],
        pod_ip: Some("10.244.0.5".into()),
        pod_ips: vec![core::PodIp { ip: Some("10.244.0.5".into()) }],
        start_time: now(),
        qos_class: Some("BestEffort".into()),
        ..Default::default()
    });
    let running: core::Pod = pb
        .write(Method::PUT, &format!("{pods}/p/status"), "v1", "Pod", &pod)
        .await
        .expect(StatusCode::OK, "pod status")
        .object("Pod");
    let status = running.status.unwrap();
    assert_eq!((status.phase.as_deref(), status.pod_ip.as_deref()), (Some("Running"), Some("10.244.0.5")));
    assert_eq!(status.conditions[0].r#type.as_deref(), Some("Ready"));
    let list: core::PodList = pb.get(&pods).await.expect(StatusCode::OK, "list pods").object("PodList");
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].status.as_ref().unwrap().phase.as_deref(), Some("Running"));
    let opts = meta::DeleteOptions { grace_period_seconds: Some(0), ..Default::default() };
    pb.write(Method::DELETE, &format!("{pods}/p"), "v1", "DeleteOptions", &opts)
        .await
        .expect(StatusCode::OK, "delete pod with protobuf DeleteOptions");
    pb.get(&format!("{pods}/p")).await.expect(StatusCode::NOT_FOUND, "deleted pod");

    // A ConfigMap with binary data survives the round trip byte for byte.
    let cms = format!("/api/v1/namespaces/{ns}/configmaps");
    let bin: Vec<u8> = (0..=255).collect();
    let cm = core::ConfigMap {
        metadata: meta("cm", &[]),
        data: labels(&[("greeting", "héllo\nworld")]),
        binary_data: [("bin".to_string(), bin.clone())].into_iter().collect(),
        ..Default::default()
    };
    pb.write(Method::POST, &cms, "v1", "ConfigMap", &cm).await.expect(StatusCode::CREATED, "create configmap");
    let got: core::ConfigMap = pb.get(&format!("{cms}/cm")).await.expect(StatusCode::OK, "get cm").object("ConfigMap");
    assert_eq!(got.data, cm.data);
    assert_eq!(got.binary_data["bin"], bin);

    // 404 as a protobuf Status.
    let st = pb.get(&format!("{pods}/missing")).await.expect(StatusCode::NOT_FOUND, "missing pod").status();
    assert_eq!((st.status.as_deref(), st.reason.as_deref(), st.code), (Some("Failure"), Some("NotFound"), Some(404)));
    assert_eq!(st.message.as_deref(), Some("pods \"missing\" not found"));
    let details = st.details.unwrap();
    assert_eq!((details.name.as_deref(), details.kind.as_deref()), (Some("missing"), Some("pods")));

    // 422 with causes, in protobuf: a selector that does not match the template's labels.
    let mut bad = deployment.clone();
    bad.metadata = meta("bad", &[]);
    bad.spec.as_mut().unwrap().selector =
        Some(meta::LabelSelector { match_labels: labels(&[("app", "other")]), ..Default::default() });
    let st = pb
        .write(Method::POST, &deployments, "apps/v1", "Deployment", &bad)
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY, "invalid deployment")
        .status();
    assert_eq!(st.reason.as_deref(), Some("Invalid"));
    let causes = st.details.unwrap().causes;
    assert!(causes.iter().any(|c| c.field.as_deref() == Some("spec.template.metadata.labels")), "causes: {causes:?}");
    api.stop().await;
    eprintln!("protobuf_client_like_client_go: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_leases_scale_patches_and_pages() {
    use k8s_pb::api::autoscaling::v1 as autoscaling;
    use k8s_pb::api::coordination::v1 as coordination;
    let started = Instant::now();
    let api = TestApiserver::start().await;
    let pb = PbClient(&api.client);

    // Leader election's Lease (every upstream component): create, renew with an update, MicroTime kept to the µs.
    let leases = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
    let renew = |micros: i32| {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        Some(meta::MicroTime { seconds: Some(secs), nanos: Some(micros * 1000) })
    };
    let lease = coordination::Lease {
        metadata: meta("kube-controller-manager", &[]),
        spec: Some(coordination::LeaseSpec {
            holder_identity: Some("a_1".into()),
            lease_duration_seconds: Some(15),
            acquire_time: renew(1),
            renew_time: renew(123_456),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    };
    let mut held: coordination::Lease = pb
        .write(Method::POST, leases, "coordination.k8s.io/v1", "Lease", &lease)
        .await
        .expect(StatusCode::CREATED, "create lease")
        .object("Lease");
    assert_eq!(held.spec, lease.spec, "MicroTimes and every field round-trip");
    let spec = held.spec.as_mut().unwrap();
    spec.holder_identity = Some("b_2".into());
    spec.lease_transitions = Some(1);
    spec.renew_time = renew(999_999);
    let renewed: coordination::Lease = pb
        .write(Method::PUT, &format!("{leases}/kube-controller-manager"), "coordination.k8s.io/v1", "Lease", &held)
        .await
        .expect(StatusCode::OK, "renew lease")
        .object("Lease");
    assert_eq!(renewed.spec, held.spec);
    // The old resourceVersion again: the other candidate loses with a protobuf Conflict.
    let st = pb
        .write(Method::PUT, &format!("{leases}/kube-controller-manager"), "coordination.k8s.io/v1", "Lease", &held)
        .await
        .expect(StatusCode::CONFLICT, "stale renew")
        .status();
    assert_eq!(st.reason.as_deref(), Some("Conflict"));

    // GetScale / UpdateScale with the typed autoscaling/v1 Scale.
    let deployments = "/apis/apps/v1/namespaces/default/deployments";
    let deployment = apps::Deployment {
        metadata: meta("web", &[]),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(2),
            selector: Some(meta::LabelSelector { match_labels: labels(&[("app", "web")]), ..Default::default() }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta { labels: labels(&[("app", "web")]), ..Default::default() }),
                spec: Some(core::PodSpec { containers: vec![busybox("c")], ..Default::default() }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    pb.write(Method::POST, deployments, "apps/v1", "Deployment", &deployment)
        .await
        .expect(StatusCode::CREATED, "create deployment");
    let scale_path = format!("{deployments}/web/scale");
    let mut scale: autoscaling::Scale = pb.get(&scale_path).await.expect(StatusCode::OK, "get scale").object("Scale");
    assert_eq!(scale.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(scale.status.as_ref().unwrap().selector.as_deref(), Some("app=web"));
    scale.spec = Some(autoscaling::ScaleSpec { replicas: Some(5) });
    let scaled: autoscaling::Scale = pb
        .write(Method::PUT, &scale_path, "autoscaling/v1", "Scale", &scale)
        .await
        .expect(StatusCode::OK, "update scale")
        .object("Scale");
    assert_eq!(scaled.spec.unwrap().replicas, Some(5));

    // Patch (client-go sends the patch as JSON, accepts protobuf): a strategic merge patch answered in protobuf.
    let patch = br#"{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"busybox:1.37"}]}}}}"#;
    let resp = api
        .client
        .send_accepting(
            Method::PATCH,
            &format!("{deployments}/web"),
            PB_ACCEPT,
            Some((Bytes::from_static(patch), "application/strategic-merge-patch+json")),
        )
        .await
        .unwrap();
    let answer = Answer {
        status: resp.status(),
        content_type: resp.headers()[header::CONTENT_TYPE].to_str().unwrap().to_string(),
        body: resp.into_body().collect().await.unwrap().to_bytes(),
    };
    let patched: apps::Deployment = answer.expect(StatusCode::OK, "strategic merge patch").object("Deployment");
    let spec = patched.spec.unwrap();
    assert_eq!(spec.replicas, Some(5));
    let containers = spec.template.unwrap().spec.unwrap().containers;
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].image.as_deref(), Some("busybox:1.37"));
    assert_eq!(containers[0].command, ["sleep", "3600"], "merged by name, not replaced");
    assert_eq!(patched.metadata.unwrap().generation, Some(3));

    // A reflector's paged LIST in protobuf: limit, continue, remainingItemCount (set only without selectors, as
    // upstream's store cannot count what a selector would keep).
    api.namespace("paged").await;
    let cms = "/api/v1/namespaces/paged/configmaps";
    for i in 0..5 {
        let cm = core::ConfigMap { metadata: meta(&format!("page-{i}"), &[("paged", "yes")]), ..Default::default() };
        pb.write(Method::POST, cms, "v1", "ConfigMap", &cm).await.expect(StatusCode::CREATED, "create configmap");
    }
    for selector in ["", "&labelSelector=paged%3Dyes"] {
        let mut names = Vec::new();
        let mut query = format!("{cms}?limit=2{selector}");
        let mut pages = 0;
        loop {
            let page: core::ConfigMapList = pb.get(&query).await.expect(StatusCode::OK, "page").object("ConfigMapList");
            pages += 1;
            assert!(page.items.len() <= 2);
            names.extend(page.items.iter().map(|c| c.metadata.as_ref().unwrap().name.clone().unwrap()));
            let lm = page.metadata.unwrap();
            match lm.r#continue.filter(|c| !c.is_empty()) {
                Some(token) => {
                    let remaining = selector.is_empty().then_some(5 - names.len() as i64);
                    assert_eq!(lm.remaining_item_count, remaining, "remainingItemCount (selector {selector:?})");
                    query = format!("{cms}?limit=2{selector}&continue={token}");
                }
                None => break,
            }
        }
        assert_eq!((pages, names), (3, (0..5).map(|i| format!("page-{i}")).collect::<Vec<_>>()), "{selector}");
    }
    api.stop().await;
    eprintln!("protobuf_leases_scale_patches_and_pages: {:?}", started.elapsed());
}

/// Starts an apiserver and writes an admin kubeconfig for it (TLS, client certificate) into its temp dir.
async fn apiserver_with_kubeconfig() -> (TestApiserver, std::path::PathBuf) {
    let api = TestApiserver::start().await;
    let kubeconfig = api.dir.path().join("admin.conf");
    e2e::write_kubeconfig(&api.config, &kubeconfig);
    (api, kubeconfig)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_kubernetes_client() {
    let probe = tokio::process::Command::new("python3").args(["-c", "import kubernetes"]).output().await;
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "SKIPPED python_kubernetes_client: the Python `kubernetes` module is missing (bash deploy/install-deps.sh installs it)"
        );
        return;
    }
    let started = Instant::now();
    let (api, kubeconfig) = apiserver_with_kubeconfig().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/client.py");
    let out = within(
        120,
        "the Python client script",
        tokio::process::Command::new("python3")
            .arg(script)
            .arg(&kubeconfig)
            .arg("py-client")
            .env("HOME", api.dir.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "the Python client failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    api.stop().await;
    eprintln!("python_kubernetes_client: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_client() {
    use futures_util::StreamExt;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
    use kube::config::{KubeConfigOptions, Kubeconfig};
    use kube::runtime::{WatchStreamExt, watcher};
    use serde_json::json;

    let started = Instant::now();
    let (api, kubeconfig) = apiserver_with_kubeconfig().await;
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig).expect("kubeconfig"),
        &KubeConfigOptions::default(),
    )
    .await
    .expect("kube-rs config");
    let client = kube::Client::try_from(config).expect("kube-rs client");

    let info = client.apiserver_version().await.expect("apiserver_version");
    assert_eq!(info.major, "1");
    assert!(info.git_version.starts_with("v1."), "{info:?}");

    let ns = "kube-rs";
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let created = namespaces
        .create(
            &PostParams::default(),
            &Namespace { metadata: ObjectMeta { name: Some(ns.into()), ..Default::default() }, ..Default::default() },
        )
        .await
        .expect("create namespace");
    assert_eq!(created.status.and_then(|s| s.phase).as_deref(), Some("Active"));

    // A watcher (list, then watch with bookmarks) running before the writes.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = watcher(cms.clone(), watcher::Config::default().labels("app=kube-rs")).applied_objects();
    let watching = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            if tx.send(item.map_err(|e| e.to_string())).is_err() {
                return;
            }
        }
    });

    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("cm".into()),
            labels: Some([("app".to_string(), "kube-rs".to_string())].into()),
            ..Default::default()
        },
        data: Some([("a".to_string(), "1".to_string())].into()),
        ..Default::default()
    };
    let created = cms.create(&PostParams::default(), &cm).await.expect("create");
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    let err = cms.create(&PostParams::default(), &cm).await.expect_err("create twice");
    assert!(matches!(&err, kube::Error::Api(s) if s.is_already_exists() && s.code == 409), "{err:?}");
    let got = cms.get("cm").await.expect("get");
    assert_eq!(got.data, cm.data);
    assert!(cms.get_opt("missing").await.expect("get_opt").is_none());
    let err = cms.get("missing").await.expect_err("get missing");
    assert!(matches!(&err, kube::Error::Api(s) if s.is_not_found() && s.reason == "NotFound"), "{err:?}");

    let listed = cms.list(&ListParams::default().labels("app=kube-rs")).await.expect("list");
    assert_eq!(listed.items.iter().map(|c| c.metadata.name.clone().unwrap()).collect::<Vec<_>>(), ["cm"]);
    assert!(listed.metadata.resource_version.is_some());

    let patched = cms
        .patch("cm", &PatchParams::default(), &Patch::Merge(json!({"data": {"b": "2"}})))
        .await
        .expect("merge patch");
    assert_eq!(patched.data.as_ref().unwrap().get("b").map(String::as_str), Some("2"));
    let patched = cms
        .patch("cm", &PatchParams::default(), &Patch::Strategic(json!({"data": {"a": null}})))
        .await
        .expect("strategic merge patch");
    assert_eq!(patched.data, Some([("b".to_string(), "2".to_string())].into()));

    // Server-side apply (kube-rs's Patch::Apply): creates, then changes what this manager owns.
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"k": "1"}});
    let ssa = PatchParams::apply("kube-rs-e2e").force();
    let created = cms.patch("applied", &ssa, &Patch::Apply(&applied)).await.expect("server-side apply creates");
    assert_eq!(created.data, Some([("k".to_string(), "1".to_string())].into()));
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"k": "2"}});
    let changed = cms.patch("applied", &ssa, &Patch::Apply(&applied)).await.expect("server-side apply updates");
    assert_eq!(changed.data, Some([("k".to_string(), "2".to_string())].into()));

    // The watcher saw the object as created and as patched.
    let mut seen = Vec::new();
    within(15, "kube-rs watcher events", async {
        while !seen.iter().any(|c: &ConfigMap| c.data == patched.data) {
            let cm = rx.recv().await.expect("watcher stream").expect("watcher event");
            seen.push(cm);
        }
    })
    .await;
    assert_eq!(seen[0].data, cm.data, "first Applied is the created object");

    // Pods, listed with a label selector.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for (name, app) in [("p1", "kube-rs"), ("p2", "other")] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.expect("create pod");
    }
    let listed = pods.list(&ListParams::default().labels("app=kube-rs")).await.expect("list pods");
    assert_eq!(listed.items.iter().map(|p| p.metadata.name.clone().unwrap()).collect::<Vec<_>>(), ["p1"]);
    let all: Api<Pod> = Api::all(client.clone());
    assert_eq!(
        all.list(&ListParams::default().fields(&format!("metadata.namespace={ns}"))).await.unwrap().items.len(),
        2
    );

    // Discovery, both ways kube-rs does it: per group, and aggregated (apidiscovery.k8s.io/v2).
    let gvk = kube::api::GroupVersionKind::gvk("batch", "v1", "CronJob");
    for aggregated in [false, true] {
        let discovery = kube::Discovery::new(client.clone());
        let discovery = if aggregated { discovery.run_aggregated().await } else { discovery.run().await };
        let discovery = discovery.unwrap_or_else(|e| panic!("discovery (aggregated: {aggregated}): {e}"));
        let (ar, caps) = discovery.get("apps").and_then(|g| g.recommended_kind("Deployment")).expect("apps Deployment");
        assert_eq!((ar.version.as_str(), ar.plural.as_str()), ("v1", "deployments"), "aggregated: {aggregated}");
        assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
        assert!(caps.supports_operation("watch") && caps.supports_operation("patch"), "{caps:?}");
        assert!(caps.subresources.iter().any(|(sub, _)| sub.plural == "scale"), "aggregated: {aggregated}: {caps:?}");
        let (ar, _) = discovery.resolve_gvk(&gvk).expect("batch/v1 CronJob");
        assert_eq!(ar.plural, "cronjobs");
    }

    // A Deployment: the scale subresource and `restart` (the template annotation kubectl rollout restart sets).
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}
    }))
    .unwrap();
    deployments.create(&PostParams::default(), &deployment).await.expect("create deployment");
    let scale = deployments.get_scale("web").await.expect("get scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(1));
    let scale = deployments
        .patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}})))
        .await
        .expect("patch scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));
    let restarted = deployments.restart("web").await.expect("restart");
    let annotations = restarted.spec.unwrap().template.metadata.unwrap().annotations.unwrap_or_default();
    assert!(annotations.contains_key("kube.kubernetes.io/restartedAt"), "{annotations:?}");

    // Eviction (policy/v1), then waiting for the pod to be gone with kube-runtime's await_condition.
    let uid = pods.get("p1").await.unwrap().metadata.uid.unwrap();
    let evicted = pods.evict("p1", &kube::api::EvictParams::default()).await.expect("evict");
    assert!(evicted.is_success(), "{evicted:?}");
    within(
        15,
        "the evicted pod gone",
        kube::runtime::wait::await_condition(pods.clone(), "p1", kube::runtime::wait::conditions::is_deleted(&uid)),
    )
    .await
    .expect("await_condition");

    // Delete; the next get is a 404.
    cms.delete("cm", &DeleteParams::default()).await.expect("delete");
    assert!(cms.get_opt("cm").await.expect("get_opt after delete").is_none());
    watching.abort();
    api.stop().await;
    eprintln!("kube_rs_client: {:?}", started.elapsed());
}

/// A small controller written with kube-rs (`kube::runtime::Controller` over `DynamicObject`s) reconciling a
/// custom resource against the real apiserver: the CRD applied and waited for with kube-runtime's
/// `is_crd_established`, kube's discovery finding the new kind, the reconciler writing `status` through the status
/// subresource, and a spec change reconciled again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_controller_reconciles_a_custom_resource() {
    use futures_util::StreamExt;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
    use kube::config::{KubeConfigOptions, Kubeconfig};
    use kube::runtime::controller::{Action, Controller};
    use kube::runtime::watcher;
    use serde_json::json;
    use std::sync::Arc;

    let (api, kubeconfig) = apiserver_with_kubeconfig().await;
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig).expect("kubeconfig"),
        &KubeConfigOptions::default(),
    )
    .await
    .expect("kube-rs config");
    let client = kube::Client::try_from(config).expect("kube-rs client");

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                    "status": {"type": "object", "properties": {"observedSize": {"type": "integer"}}}}}}}]}
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.expect("create CRD");
    within(
        20,
        "the CRD established",
        kube::runtime::wait::await_condition(
            crds.clone(),
            "widgets.example.com",
            kube::runtime::wait::conditions::is_crd_established(),
        ),
    )
    .await
    .expect("await established");

    // kube's discovery finds the kind.
    let discovery = kube::Discovery::new(client.clone()).run_aggregated().await.expect("discovery");
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    let (ar, caps) = discovery.resolve_gvk(&gvk).expect("example.com/v1 Widget discovered");
    assert_eq!(ar.plural, "widgets");
    assert!(caps.subresources.iter().any(|(sub, _)| sub.plural == "status"), "{caps:?}");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "widgets");
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);

    // The controller: status.observedSize follows spec.size.
    struct Ctx {
        api: Api<DynamicObject>,
    }
    #[derive(Debug)]
    struct Error(kube::Error);
    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.0.fmt(f)
        }
    }
    impl std::error::Error for Error {}
    async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, Error> {
        let size = obj.data["spec"]["size"].as_i64().unwrap_or(0);
        if obj.data["status"]["observedSize"].as_i64() != Some(size) {
            let name = obj.metadata.name.clone().unwrap_or_default();
            let patch = Patch::Merge(json!({"status": {"observedSize": size}}));
            ctx.api.patch_status(&name, &PatchParams::default(), &patch).await.map_err(Error)?;
        }
        Ok(Action::await_change())
    }
    fn error_policy(_: Arc<DynamicObject>, _: &Error, _: Arc<Ctx>) -> Action {
        Action::requeue(std::time::Duration::from_millis(200))
    }
    let ctx = Arc::new(Ctx { api: widgets.clone() });
    let controller = tokio::spawn(
        Controller::new_with(widgets.clone(), watcher::Config::default(), ar.clone())
            .run(reconcile, error_policy, ctx)
            .for_each(|_| async {}),
    );

    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}
    }))
    .unwrap();
    widgets.create(&PostParams::default(), &w).await.expect("create widget");
    let observed = |want: i64| {
        let widgets = widgets.clone();
        async move {
            loop {
                let got = widgets.get("w1").await.expect("get widget");
                if got.data["status"]["observedSize"].as_i64() == Some(want) {
                    return got;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    let got = within(20, "status.observedSize 3", observed(3)).await;
    assert_eq!(got.data["spec"]["size"], 3);
    widgets
        .patch("w1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 5}})))
        .await
        .expect("patch spec");
    let got = within(20, "status.observedSize 5", observed(5)).await;
    assert_eq!(got.metadata.generation, Some(2), "the spec change bumped the generation; the status write did not");
    controller.abort();
    api.stop().await;
}
