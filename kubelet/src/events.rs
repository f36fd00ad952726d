//! The kubelet's Events, as upstream's kubelet records them (source `kubelet` on the node's name, through the event
//! recorder's de-duplication, aggregation and spam filter): about pods (`Pulling`, `Pulled`, `Created`, `Started`,
//! `Killing`, `Unhealthy`, `BackOff`, `Failed`, `FailedMount`, `FailedCreatePodSandBox`, `DeadlineExceeded`,
//! admission reasons), with `involvedObject.fieldPath` `spec.containers{name}` for container events, and about the
//! node (`Starting`, `NodeReady`, `NodeNotReady`, `NodeHasSufficientMemory`, ...). Recording never blocks a sync:
//! each event is written in the background.

use serde_json::Value;

use runtime::events::{EventType, ObjectReference, Recorder};

pub use runtime::events::EventType::{Normal, Warning};

/// Records the kubelet's Events; a disabled one (hollow nodes, tests without an API) records nothing.
#[derive(Clone, Default)]
pub struct Events {
    recorder: Option<Recorder>,
    node: String,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("node", &self.node).field("enabled", &self.recorder.is_some()).finish()
    }
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

/// The reference to a pod (its list items carry no kind or apiVersion).
fn pod_ref(pod: &Value) -> ObjectReference {
    ObjectReference {
        kind: "Pod".into(),
        namespace: s(pod, "/metadata/namespace").into(),
        name: s(pod, "/metadata/name").into(),
        uid: s(pod, "/metadata/uid").into(),
        api_version: "v1".into(),
        resource_version: s(pod, "/metadata/resourceVersion").into(),
        field_path: String::new(),
    }
}

/// Upstream's `spec.containers{name}` / `spec.initContainers{name}` field path of a pod's container.
pub fn container_field_path(pod: &Value, container: &str) -> String {
    let is_init = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| s(c, "/name") == container));
    if is_init { format!("spec.initContainers{{{container}}}") } else { format!("spec.containers{{{container}}}") }
}

impl Events {
    /// Events of the kubelet of `node`.
    pub fn new(client: &client::Client, node: &str) -> Result<Self, client::Error> {
        Ok(Events { recorder: Some(Recorder::new(client, "kubelet", node)?), node: node.to_string() })
    }

    /// Records nothing.
    pub fn disabled() -> Self {
        Events::default()
    }

    fn emit(&self, reference: ObjectReference, type_: EventType, reason: &str, message: String) {
        let Some(recorder) = self.recorder.clone() else { return };
        let reason = reason.to_string();
        tokio::spawn(async move {
            if let Err(e) = recorder.event_for(&reference, type_, &reason, &message).await {
                tracing::debug!(object = %reference.name, %reason, error = %e, "could not record event");
            }
        });
    }

    /// The pod with this uid is gone: its entries leave the recorder's caches.
    pub fn forget_pod(&self, uid: &str) {
        if let Some(r) = &self.recorder {
            r.forget(uid);
        }
    }

    /// An event about a pod.
    pub fn pod(&self, pod: &Value, type_: EventType, reason: &str, message: impl Into<String>) {
        self.emit(pod_ref(pod), type_, reason, message.into());
    }

    /// An event about one of a pod's containers.
    pub fn container(&self, pod: &Value, container: &str, type_: EventType, reason: &str, message: impl Into<String>) {
        let reference = ObjectReference { field_path: container_field_path(pod, container), ..pod_ref(pod) };
        self.emit(reference, type_, reason, message.into());
    }

    /// An event about this node (upstream's nodeRef: kind Node, its name as UID).
    pub fn node(&self, type_: EventType, reason: &str, message: impl Into<String>) {
        let reference = ObjectReference {
            kind: "Node".into(),
            name: self.node.clone(),
            uid: self.node.clone(),
            ..Default::default()
        };
        self.emit(reference, type_, reason, message.into());
    }

    /// Upstream's node status event: "Node <name> status is now: <event>".
    pub fn node_status(&self, event: &str) {
        self.node(Normal, event, format!("Node {} status is now: {event}", self.node));
    }
}

/// A pod as upstream's `format.Pod` shows it: `name_namespace(uid)`.
pub fn format_pod(pod: &Value) -> String {
    format!("{}_{}({})", s(pod, "/metadata/name"), s(pod, "/metadata/namespace"), s(pod, "/metadata/uid"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_paths_and_pod_names() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "main"}]}});
        assert_eq!(container_field_path(&pod, "init"), "spec.initContainers{init}");
        assert_eq!(container_field_path(&pod, "main"), "spec.containers{main}");
        assert_eq!(format_pod(&pod), "p_ns(u)");
        assert_eq!(
            pod_ref(&pod).to_json(),
            json!({"kind": "Pod", "namespace": "ns", "name": "p", "uid": "u", "apiVersion": "v1"})
        );
    }
}
