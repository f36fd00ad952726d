//! Per-kind behaviour of the generic registry, named after upstream's REST strategies: what create, update and
//! delete prepare (metadata, status/spec split, generation, graceful deletion), defaulting and validation, the
//! fields each kind offers to field selectors, and TTLs.

use std::time::Duration;

use api_types::{ApiError, Cause, Resource};
use serde_json::{Map, Value, json};

use crate::defaults;
use crate::registry::{DeleteParams, meta_str};
use crate::validation;

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn rfc3339_in(secs: i64) -> String {
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs);
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// upstream's `--event-ttl` default: events expire an hour after their last write.
pub const EVENT_TTL: Duration = Duration::from_secs(3600);

pub fn ttl(res: &Resource) -> Option<Duration> {
    (res.storage == "events").then_some(EVENT_TTL)
}

fn meta_mut(obj: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let o = obj.as_object_mut().ok_or_else(|| ApiError::bad_request("the object must be a JSON object"))?;
    let meta = o.entry("metadata").or_insert_with(|| json!({}));
    if meta.is_null() {
        *meta = json!({});
    }
    meta.as_object_mut().ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

/// Five characters from upstream's generateName alphabet (no vowels, no confusable digits).
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5].iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

pub fn has_status_subresource(res: &Resource) -> bool {
    res.subresource("status").is_some()
}

/// apiVersion and kind must be the resource's (or absent: then they are filled in).
fn set_type_meta(res: &Resource, obj: &mut Value) -> Result<(), ApiError> {
    let o = obj.as_object_mut().ok_or_else(|| ApiError::bad_request("the object must be a JSON object"))?;
    if let Some(kind) = o.get("kind").and_then(Value::as_str).filter(|k| !k.is_empty())
        && kind != res.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the object ({kind}) does not match the kind of the resource ({})",
            res.kind
        )));
    }
    if let Some(av) = o.get("apiVersion").and_then(Value::as_str).filter(|k| !k.is_empty()) {
        let (group, _) = api_types::resources::split_api_version(av);
        if group != res.group {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                res.api_version()
            )));
        }
    }
    o.insert("apiVersion".into(), json!(res.api_version()));
    o.insert("kind".into(), json!(res.kind));
    Ok(())
}

fn set_namespace(res: &Resource, ns: Option<&str>, obj: &mut Value) -> Result<(), ApiError> {
    let meta = meta_mut(obj)?;
    if !res.namespaced {
        meta.remove("namespace");
        return Ok(());
    }
    let ns = ns.unwrap_or("default");
    match meta.get("namespace").and_then(Value::as_str) {
        Some(given) if !given.is_empty() && given != ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            meta.insert("namespace".into(), json!(ns));
            Ok(())
        }
    }
}

pub fn prepare_create(res: &Resource, ns: Option<&str>, obj: &mut Value) -> Result<(), ApiError> {
    set_type_meta(res, obj)?;
    // Upstream's decoding into the Go types writes every quantity in its canonical form. The request body was
    // canonicalized before admission (`api::decode_checked`); this pass covers what came after it or around it: a
    // webhook's patch (upstream decodes the patched object again), applies, and the server's own writes.
    api_types::protobuf::canonicalize_quantities(obj);
    set_namespace(res, ns, obj)?;
    let meta = meta_mut(obj)?;
    let name = meta.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    if name.is_empty() {
        match meta.get("generateName").and_then(Value::as_str).filter(|g| !g.is_empty()) {
            Some(prefix) => {
                let generated = format!("{prefix}{}", name_suffix());
                meta.insert("name".into(), json!(generated));
            }
            None => {
                let cause = Cause {
                    reason: "FieldValueRequired",
                    field: "metadata.name".into(),
                    message: "Required value: name or generateName is required".into(),
                };
                return Err(ApiError::invalid(res.group, res.kind, "", vec![cause]));
            }
        }
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
    for k in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "managedFields"] {
        meta.remove(k);
    }
    let tracks_generation = obj.get("spec").is_some() || has_status_subresource(res) || res.custom;
    if tracks_generation {
        meta_mut(obj)?.insert("generation".into(), json!(1));
    }
    if has_status_subresource(res)
        && res.plural != "nodes"
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    defaults::apply(res, obj, true);
    if crate::apiextensions::crd::is_crd(res) {
        crate::apiextensions::crd::prepare_create(obj);
    }
    if res.group == "batch" && res.plural == "jobs" {
        job_selector(obj);
    }
    Ok(())
}

/// A Job without `manualSelector` gets upstream's generated selector on its controller UID, and its pod template
/// the matching labels (`batch.kubernetes.io/controller-uid`, `batch.kubernetes.io/job-name` and the legacy
/// `controller-uid`, `job-name`).
fn job_selector(job: &mut Value) {
    if job.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let uid = meta_str(job, "uid").unwrap_or_default().to_string();
    let name = meta_str(job, "name").unwrap_or_default().to_string();
    let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) else { return };
    spec.insert("selector".into(), json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}));
    let template = spec.entry("template").or_insert_with(|| json!({}));
    if !template.get("metadata").is_some_and(Value::is_object) {
        template["metadata"] = json!({});
    }
    let meta = &mut template["metadata"];
    if !meta.get("labels").is_some_and(Value::is_object) {
        meta["labels"] = json!({});
    }
    let labels = &mut meta["labels"];
    labels["batch.kubernetes.io/controller-uid"] = json!(uid);
    labels["controller-uid"] = json!(uid);
    labels["batch.kubernetes.io/job-name"] = json!(name);
    labels["job-name"] = json!(name);
}

/// Everything but metadata and status: what a spec change means for `generation`.
fn without_metadata(obj: &Value) -> Value {
    let mut o = obj.as_object().cloned().unwrap_or_default();
    for k in ["metadata", "apiVersion", "kind"] {
        o.remove(k);
    }
    Value::Object(o)
}

fn spec_part(obj: &Value) -> Value {
    let mut o = obj.as_object().cloned().unwrap_or_default();
    for k in ["metadata", "status", "apiVersion", "kind"] {
        o.remove(k);
    }
    Value::Object(o)
}

pub fn prepare_update(res: &Resource, sub: Option<&str>, old: &Value, new: &mut Value) -> Result<(), ApiError> {
    set_type_meta(res, new)?;
    api_types::protobuf::canonicalize_quantities(new);
    let ns = meta_str(old, "namespace").map(str::to_string);
    set_namespace(res, ns.as_deref(), new)?;
    if let Some(uid) = meta_str(new, "uid").filter(|u| !u.is_empty())
        && Some(uid) != meta_str(old, "uid")
    {
        let name = meta_str(old, "name").unwrap_or_default();
        return Err(ApiError::invalid(
            res.group,
            res.kind,
            name,
            vec![Cause::invalid("metadata.uid", &json!(uid), "field is immutable")],
        ));
    }
    let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
    match sub {
        Some("status") => return prepare_status_update(res, old, new),
        Some("ephemeralcontainers") => {
            // Upstream's podEphemeralContainersStrategy: the stored pod with the request's ephemeral containers.
            let ephemeral = new.pointer("/spec/ephemeralContainers").cloned();
            let managed = new.pointer("/metadata/managedFields").cloned();
            *new = old.clone();
            match ephemeral {
                Some(e) => new["spec"]["ephemeralContainers"] = e,
                None => {
                    if let Some(s) = new.get_mut("spec").and_then(Value::as_object_mut) {
                        s.remove("ephemeralContainers");
                    }
                }
            }
            if let Some(m) = managed {
                meta_mut(new)?.insert("managedFields".into(), m);
            }
            return Ok(());
        }
        Some("approval") => {
            // CSR approval: only status.conditions comes from the request (upstream's csrApprovalStrategy).
            let conditions = new.pointer("/status/conditions").cloned();
            *new = old.clone();
            match conditions {
                Some(c) => new["status"]["conditions"] = c,
                None => {
                    if let Some(s) = new.get_mut("status").and_then(Value::as_object_mut) {
                        s.remove("conditions");
                    }
                }
            }
            return Ok(());
        }
        _ => {}
    }
    if res.group.is_empty() && res.kind == "Pod" {
        // Ephemeral containers change only through pods/ephemeralcontainers: an update keeps the stored ones.
        let stored = old.pointer("/spec/ephemeralContainers").cloned();
        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
            match stored {
                Some(e) => spec.insert("ephemeralContainers".into(), e),
                None => spec.remove("ephemeralContainers"),
            };
        }
    }
    let meta = meta_mut(new)?;
    for k in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "name"] {
        match old_meta.get(k) {
            Some(v) => meta.insert(k.into(), v.clone()),
            None => meta.remove(k),
        };
    }
    meta.remove("selfLink");
    if has_status_subresource(res) {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    defaults::apply(res, new, false);
    if res.group.is_empty() && res.kind == "Service" {
        crate::service::strategy::drop_type_dependent_fields(new, old);
    }
    if crate::apiextensions::crd::is_crd(res) {
        crate::apiextensions::crd::prepare_update(new);
    }
    if let Some(generation) = old_meta.get("generation").and_then(Value::as_i64) {
        // A custom resource without a status subresource counts status changes too (upstream's CR strategy).
        let changed = if res.custom && !has_status_subresource(res) {
            without_metadata(old) != without_metadata(new)
        } else {
            spec_part(old) != spec_part(new)
        };
        let bumped = if changed { generation + 1 } else { generation };
        meta_mut(new)?.insert("generation".into(), json!(bumped));
    }
    Ok(())
}

/// A write to `/status`, as upstream's per-kind status strategies prepare it: the spec is the stored one, metadata
/// the generic registry protects (uid, name, creationTimestamp, deletionTimestamp, deletionGracePeriodSeconds,
/// generation) is the stored one, and the rest of the metadata (labels, annotations, finalizers, ownerReferences)
/// is written as sent, except where a kind's strategy resets it: a Pod keeps its ownerReferences, a Deployment its
/// labels, a VolumeAttachment and a ValidatingAdmissionPolicy all of it (`ResetObjectMetaForStatus`); a CSR keeps
/// its Approved and Denied conditions, which only `/approval` changes.
fn prepare_status_update(res: &Resource, old: &Value, new: &mut Value) -> Result<(), ApiError> {
    if res.custom {
        // Upstream's customresource status strategy: the stored object with only `status` (and managedFields)
        // from the request.
        let status = new.get("status").cloned();
        let managed = new.pointer("/metadata/managedFields").cloned();
        *new = old.clone();
        match status {
            Some(s) => new["status"] = s,
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        if let Some(m) = managed {
            meta_mut(new)?.insert("managedFields".into(), m);
        }
        return Ok(());
    }
    let restore = |new: &mut Value, path: &str, key: &str| {
        let old_value = old.pointer(path).and_then(|o| o.get(key)).cloned();
        let Some(parent) = new.pointer_mut(path).and_then(Value::as_object_mut) else { return };
        match old_value {
            Some(v) => parent.insert(key.into(), v),
            None => parent.remove(key),
        };
    };
    if !new.get("metadata").is_some_and(Value::is_object) {
        new["metadata"] = json!({});
    }
    restore(new, "", "spec");
    for k in ["uid", "name", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
        restore(new, "/metadata", k);
    }
    meta_mut(new)?.remove("selfLink");
    let reset: &[&str] = match (res.group, res.kind) {
        ("", "Pod") => &["ownerReferences"],
        ("apps", "Deployment") => &["labels"],
        ("storage.k8s.io", "VolumeAttachment") | ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => {
            &["labels", "annotations", "finalizers", "ownerReferences"]
        }
        _ => &[],
    };
    for k in reset {
        restore(new, "/metadata", k);
    }
    if (res.group, res.kind) == ("certificates.k8s.io", "CertificateSigningRequest") {
        let decisions = |obj: &Value| -> Vec<Value> {
            obj.pointer("/status/conditions")
                .and_then(Value::as_array)
                .map(|cs| cs.iter().filter(|c| c["type"] == "Approved" || c["type"] == "Denied").cloned().collect())
                .unwrap_or_default()
        };
        let (kept, sent) = (decisions(old), decisions(new));
        if kept.len() != sent.len() || kept.iter().zip(&sent).any(|(k, s)| k["type"] != s["type"]) {
            let name = meta_str(old, "name").unwrap_or_default();
            return Err(ApiError::invalid(
                res.group,
                res.kind,
                name,
                vec![Cause::forbidden(
                    "status.conditions",
                    "updates may not add or remove Approved or Denied conditions",
                )],
            ));
        }
        if let Some(conds) = new.pointer_mut("/status/conditions").and_then(Value::as_array_mut) {
            let mut kept = kept.into_iter();
            for c in conds.iter_mut().filter(|c| c["type"] == "Approved" || c["type"] == "Denied") {
                if let Some(k) = kept.next() {
                    *c = k;
                }
            }
        }
    }
    Ok(())
}

/// A pod in graceful termination stays until the kubelet deletes it with a zero grace period.
pub fn graceful_pending(res: &Resource, obj: &Value) -> bool {
    res.plural == "pods"
        && res.group.is_empty()
        && obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).is_some_and(|g| g > 0)
}

fn add_finalizer(obj: &mut Value, name: &str) -> Result<(), ApiError> {
    let meta = meta_mut(obj)?;
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(arr) = list.as_array_mut()
        && !arr.iter().any(|f| f == name)
    {
        arr.push(json!(name));
    }
    Ok(())
}

/// Prepares a delete; returns whether the object stays (with a deletionTimestamp) instead of going now.
pub fn prepare_delete(res: &Resource, obj: &mut Value, p: &DeleteParams) -> Result<bool, ApiError> {
    match p.propagation_policy.as_deref() {
        None | Some("Background") => {}
        Some("Foreground") => add_finalizer(obj, "foregroundDeletion")?,
        Some("Orphan") => add_finalizer(obj, "orphan")?,
        Some(other) => {
            return Err(ApiError::invalid(
                res.group,
                res.kind,
                meta_str(obj, "name").unwrap_or_default(),
                vec![Cause::not_supported("propagationPolicy", &json!(other), &["Foreground", "Background", "Orphan"])],
            ));
        }
    }
    if crate::apiextensions::crd::is_crd(res) {
        crate::apiextensions::crd::prepare_delete(obj);
    }
    let already = obj.pointer("/metadata/deletionTimestamp").is_some();
    let mut grace = 0;
    if res.plural == "pods" && res.group.is_empty() {
        let scheduled = obj.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
        let finished = matches!(obj.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"));
        let spec_grace = obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30);
        grace = if scheduled && !finished { p.grace_period_seconds.unwrap_or(spec_grace).max(0) } else { 0 };
        let current = obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
        // A second delete may only shorten the grace period.
        if let Some(cur) = current {
            grace = grace.min(cur);
        }
    }
    if res.plural == "namespaces" && res.group.is_empty() {
        let spec_finalizers = obj.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
        let has_finalizers = spec_finalizers
            || obj.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
        if has_finalizers {
            let meta = meta_mut(obj)?;
            if !already {
                meta.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            }
            obj["status"] = json!({"phase": "Terminating"});
            return Ok(true);
        }
        return Ok(false);
    }
    let has_finalizers = obj.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    if grace > 0 || has_finalizers {
        let meta = meta_mut(obj)?;
        let shorten = meta.get("deletionGracePeriodSeconds").and_then(Value::as_i64).is_some_and(|g| grace < g);
        if !already || shorten {
            meta.insert("deletionTimestamp".into(), json!(rfc3339_in(grace)));
            meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            if let Some(generation) = meta.get("generation").and_then(Value::as_i64) {
                meta.insert("generation".into(), json!(generation + 1));
            }
        }
        if grace == 0 && !has_finalizers {
            return Ok(false);
        }
        return Ok(true);
    }
    Ok(false)
}

pub fn validate(res: &Resource, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let causes = validation::validate(res, obj, old);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(res.group, res.kind, meta_str(obj, "name").unwrap_or_default(), causes))
    }
}

/// The fields a kind offers to field selectors, as upstream's `GetAttrs` / field label conversion functions.
fn kind_fields(res: &Resource) -> &'static [&'static str] {
    match (res.group, res.plural) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("", "nodes") => &["spec.unschedulable"],
        ("", "secrets") => &["type"],
        ("", "namespaces") => &["status.phase"],
        ("", "replicationcontrollers") | ("apps", "replicasets") => &["status.replicas"],
        ("batch", "jobs") => &["status.successful"],
        ("certificates.k8s.io", "certificatesigningrequests") => &["spec.signerName"],
        ("", "persistentvolumeclaims") | ("", "persistentvolumes") => &["status.phase"],
        _ => &[],
    }
}

/// events.k8s.io/v1 field selector labels and the core/v1 fields they select on (upstream's
/// AddFieldLabelConversionsForEvent): both versions share one storage, selected in its core shape.
pub const EVENTS_V1_FIELD_LABELS: &[(&str, &str)] = &[
    ("regarding.kind", "involvedObject.kind"),
    ("regarding.namespace", "involvedObject.namespace"),
    ("regarding.name", "involvedObject.name"),
    ("regarding.uid", "involvedObject.uid"),
    ("regarding.apiVersion", "involvedObject.apiVersion"),
    ("regarding.resourceVersion", "involvedObject.resourceVersion"),
    ("regarding.fieldPath", "involvedObject.fieldPath"),
    ("reportingController", "reportingComponent"),
    ("reason", "reason"),
    ("type", "type"),
    ("metadata.name", "metadata.name"),
    ("metadata.namespace", "metadata.namespace"),
];

pub fn field_supported(res: &Resource, field: &str) -> bool {
    matches!(field, "metadata.name" | "metadata.namespace")
        || kind_fields(res).contains(&field)
        || res.selectable_fields.contains(&field)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The value of a selectable field; absent fields read as upstream's zero values.
pub fn field_value(res: &Resource, obj: &Value, field: &str) -> Option<String> {
    if !field_supported(res, field) {
        return None;
    }
    if field == "source" && res.plural == "events" {
        // Upstream's event ToSelectableFields: the source component, else the reporting controller.
        let component = obj.pointer("/source/component").and_then(scalar).filter(|c| !c.is_empty());
        return Some(component.or_else(|| obj.get("reportingComponent").and_then(scalar)).unwrap_or_default());
    }
    if field == "status.podIPs" {
        return Some(obj.pointer("/status/podIPs/0/ip").and_then(scalar).unwrap_or_default());
    }
    if res.selectable_fields.contains(&field) {
        // Upstream's custom resource selectableFields: the value printed as Go's fmt.Sprint, "" when absent.
        let found = field.split('.').try_fold(obj, |v, segment| v.get(segment));
        return Some(found.and_then(scalar).unwrap_or_default());
    }
    let zero = match field {
        "spec.unschedulable" | "spec.hostNetwork" => "false",
        "status.replicas" | "status.successful" => "0",
        _ => "",
    };
    let found = field.split('.').try_fold(obj, |v, segment| v.get(segment));
    Some(found.and_then(scalar).unwrap_or_else(|| zero.to_string()))
}
