//! Conversion of custom resources between a CRD's versions (upstream's apiextensions `conversion` package): with
//! strategy `None` only `apiVersion` changes ([`crate::convert`]); with strategy `Webhook` the objects go to the
//! CRD's conversion webhook in one `ConversionReview` (apiextensions.k8s.io/v1, or v1beta1 when that is all the
//! webhook speaks), and what comes back is checked as upstream's webhook converter checks it: the request's uid,
//! one object per object sent, the desired apiVersion, the same kind, name, namespace and uid, and only labels and
//! annotations changed in metadata (the rest of the metadata is restored from the original).
//!
//! Objects are stored at the version they were written through; reads convert each object whose apiVersion is not
//! the one asked for (see the README's deliberate differences), then apply the version's defaults ([`ReadPlan`]).

use std::sync::Arc;
use std::time::Duration;

use api_types::{ApiError, Resource};
use serde_json::{Value, json};

use super::served::CustomVersion;
use crate::admission::webhook::Cluster;
use crate::admission::webhook::client::Clients;
use crate::admission::webhook::source::ClientConfig;
use crate::server::Apiserver;

/// Upstream's conversion webhook timeout (not configurable).
const TIMEOUT: Duration = Duration::from_secs(30);

/// A CRD's `spec.conversion` with strategy `Webhook`.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub client: ClientConfig,
    /// `conversionReviewVersions`, in the CRD's order of preference.
    pub review_versions: Vec<String>,
}

impl Webhook {
    /// The webhook of a CRD whose conversion strategy is `Webhook`.
    pub fn of(crd: &Value) -> Option<Arc<Self>> {
        let conversion = crd.pointer("/spec/conversion")?;
        if conversion["strategy"] != "Webhook" {
            return None;
        }
        let webhook = conversion.get("webhook")?;
        Some(Arc::new(Webhook {
            client: ClientConfig::from_json(&webhook["clientConfig"]),
            review_versions: webhook["conversionReviewVersions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        }))
    }

    /// The ConversionReview version to send: the first of the CRD's list this apiserver speaks.
    fn review_version(&self) -> Option<&'static str> {
        self.review_versions.iter().find_map(|v| match v.as_str() {
            "v1" => Some("v1"),
            "v1beta1" => Some("v1beta1"),
            _ => None,
        })
    }
}

/// Go's `GroupVersionKind.String()`: `stable.example.com/v1, Kind=CronTab`.
fn gvk(obj: &Value) -> String {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    format!("{api_version}, Kind={}", obj["kind"].as_str().unwrap_or_default())
}

/// Converts `objects` to `res`'s version: those already there are left as they are, the others go to the webhook
/// in one review. An error is upstream's message, answered as a 500.
pub async fn convert(
    cluster: &dyn Cluster,
    clients: &Clients,
    webhook: &Webhook,
    res: &Resource,
    mut objects: Vec<Value>,
) -> Result<Vec<Value>, ApiError> {
    let desired = res.api_version();
    let todo: Vec<usize> = (0..objects.len()).filter(|i| objects[*i]["apiVersion"] != desired.as_str()).collect();
    let Some(first) = todo.first() else { return Ok(objects) };
    let what = gvk(&objects[*first]);
    let failed = |e: String| ApiError::internal(format!("conversion webhook for {what} failed: {e}"));
    let review_version =
        webhook.review_version().ok_or_else(|| failed("no supported conversion review versions".into()))?;
    let uid = uuid::Uuid::new_v4().to_string();
    let sent: Vec<&Value> = todo.iter().map(|i| &objects[*i]).collect();
    let review = json!({
        "apiVersion": format!("apiextensions.k8s.io/{review_version}"),
        "kind": "ConversionReview",
        "request": {"uid": uid, "desiredAPIVersion": desired, "objects": sent},
    });
    let body = serde_json::to_vec(&review).map_err(|e| failed(e.to_string()))?;
    let answer = clients.post(cluster, &webhook.client, body, TIMEOUT).await.map_err(failed)?;
    let answer: Value = serde_json::from_slice(&answer).map_err(|e| failed(e.to_string()))?;
    let converted = converted_objects(&answer, review_version, &uid).map_err(failed)?;
    if converted.len() != todo.len() {
        return Err(ApiError::internal(format!(
            "conversion webhook for {what} returned {} objects, expected {}",
            converted.len(),
            todo.len()
        )));
    }
    let single = objects.len() == 1;
    for (index, (i, mut out)) in todo.into_iter().zip(converted).enumerate() {
        let original = &objects[i];
        let at = if single { "object".to_string() } else { format!("converted object at index {index}") };
        let invalid =
            |e: String| ApiError::internal(format!("conversion webhook for {what} returned invalid {at}: {e}"));
        if out["apiVersion"] != desired.as_str() {
            let got = out["apiVersion"].as_str().unwrap_or_default();
            return Err(invalid(format!("invalid groupVersion (expected {desired}, received {got})")));
        }
        if out["kind"] != original["kind"] {
            let (e, g) = (original["kind"].as_str().unwrap_or_default(), out["kind"].as_str().unwrap_or_default());
            return Err(invalid(format!("invalid kind (expected {e}, received {g})")));
        }
        validate_converted(original, &out).map_err(invalid)?;
        restore_object_meta(original, &mut out).map_err(|e| {
            let at = if single { String::new() } else { format!(" in object at index {index}") };
            ApiError::internal(format!("conversion webhook for {what} returned invalid metadata{at}: {e}"))
        })?;
        objects[i] = out;
    }
    Ok(objects)
}

/// The review's `response.convertedObjects` after upstream's checks of the response.
fn converted_objects(answer: &Value, review_version: &str, uid: &str) -> Result<Vec<Value>, String> {
    let expected = format!("apiextensions.k8s.io/{review_version}");
    if answer["apiVersion"] != expected.as_str() || answer["kind"] != "ConversionReview" {
        return Err(format!("expected webhook response of {expected}, Kind=ConversionReview, got {}", gvk(answer)));
    }
    let response = answer.get("response").filter(|r| r.is_object()).ok_or("no response provided")?;
    if review_version == "v1" && response["uid"] != uid {
        return Err(format!("expected response.uid={uid:?}, got {:?}", response["uid"].as_str().unwrap_or_default()));
    }
    if response.pointer("/result/status") != Some(&json!("Success")) {
        let message = response.pointer("/result/message").and_then(Value::as_str).unwrap_or_default();
        if !message.is_empty() {
            return Err(message.to_string());
        }
        let status = response.pointer("/result/status").and_then(Value::as_str).unwrap_or_default();
        return Err(format!("response.result.status was '{status}', not 'Success'"));
    }
    Ok(response["convertedObjects"].as_array().cloned().unwrap_or_default())
}

/// What reading a custom resource involves beyond its apiVersion: the CRD's conversion webhook, and the requested
/// version's schema defaults (upstream defaults objects read from storage too, after conversion, so a default added
/// to a CRD shows on objects stored before it).
pub struct ReadPlan {
    webhook: Option<Arc<Webhook>>,
    version: Arc<CustomVersion>,
}

/// The read plan of a custom resource; None when reads need nothing beyond [`crate::convert::to_external`].
pub fn read_plan(server: &Apiserver, res: &Resource) -> Option<ReadPlan> {
    if !res.custom {
        return None;
    }
    let version = server.served.load().custom_of(res)?.clone();
    (version.conversion.is_some() || version.has_defaults)
        .then(|| ReadPlan { webhook: version.conversion.clone(), version })
}

impl ReadPlan {
    /// Objects read from storage in the requested version (webhook) with its defaults.
    pub async fn apply(&self, server: &Apiserver, res: &Resource, objs: Vec<Value>) -> Result<Vec<Value>, ApiError> {
        let mut objs = match &self.webhook {
            Some(hook) => convert(server, &server.webhooks.clients, hook, res, objs).await?,
            None => objs,
        };
        if self.version.has_defaults {
            for o in &mut objs {
                super::schema::defaulting::apply_defaults(o, self.version.structural.as_ref());
            }
        }
        Ok(objs)
    }
}

/// Objects read from storage as the request's version shows them when the CRD has a conversion webhook or defaults
/// (see [`ReadPlan`]); otherwise as they are (the callers' [`crate::convert::to_external`] does the rest).
pub async fn for_request(server: &Apiserver, res: &Resource, objs: Vec<Value>) -> Result<Vec<Value>, ApiError> {
    match read_plan(server, res) {
        Some(plan) => plan.apply(server, res, objs).await,
        None => Ok(objs),
    }
}

/// One object, as [`for_request`].
pub async fn one_for_request(server: &Apiserver, res: &Resource, obj: Value) -> Result<Value, ApiError> {
    let mut out = for_request(server, res, vec![obj]).await?;
    out.pop().ok_or_else(|| ApiError::internal("conversion returned no object"))
}

/// Conversion for the registry's synchronous patch computation: a patch applies to the object as the client's
/// version shows it, so a custom resource stored at another version goes through the webhook first.
pub trait Converter: Send + Sync {
    fn to_request_version(&self, res: &Resource, obj: Value) -> Result<Value, ApiError>;
}

/// The apiserver's [`Converter`]: blocks the patching thread on the webhook call (the apiserver's runtime is
/// multi-threaded; anywhere else the conversion is refused rather than deadlocking).
pub struct ServerConverter {
    pub server: std::sync::Weak<Apiserver>,
}

impl Converter for ServerConverter {
    fn to_request_version(&self, res: &Resource, obj: Value) -> Result<Value, ApiError> {
        let server = self.server.upgrade().ok_or_else(|| ApiError::unavailable("the apiserver is shutting down"))?;
        let has_webhook = res.custom && server.served.load().custom_of(res).is_some_and(|cv| cv.conversion.is_some());
        if !has_webhook || obj["apiVersion"] == res.api_version().as_str() {
            return Ok(crate::convert::to_external(res, obj));
        }
        let handle = tokio::runtime::Handle::try_current().map_err(|e| ApiError::internal(e.to_string()))?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err(ApiError::internal("conversion webhooks need the apiserver's multi-threaded runtime"));
        }
        tokio::task::block_in_place(|| handle.block_on(one_for_request(&server, res, obj)))
    }
}

/// Upstream's `validateConvertedObject`.
fn validate_converted(input: &Value, out: &Value) -> Result<(), String> {
    for (field, what) in [("/metadata/name", "name"), ("/metadata/namespace", "namespace"), ("/metadata/uid", "UID")] {
        let (e, a) = (
            input.pointer(field).and_then(Value::as_str).unwrap_or_default(),
            out.pointer(field).and_then(Value::as_str).unwrap_or_default(),
        );
        if e != a {
            return Err(format!("must have the same {what}: {e} != {a}"));
        }
    }
    Ok(())
}

/// Upstream's `restoreObjectMeta`: the converted object keeps the original metadata, except labels and annotations,
/// which the webhook may change (to valid ones).
fn restore_object_meta(original: &Value, converted: &mut Value) -> Result<(), String> {
    let response = match converted.get("metadata") {
        None => return Err("missing metadata in converted object".into()),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => return Err(format!("invalid metadata of type {} in converted object", type_name(other))),
    };
    let mut restored = original.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    for field in ["labels", "annotations"] {
        match response.get(field) {
            None | Some(Value::Null) => {
                restored.remove(field);
            }
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let Some(v) = v.as_str() else {
                        return Err(format!(
                            "metadata.{field}[{k}] must be a string, but is {} in converted object",
                            type_name(v)
                        ));
                    };
                    if field == "labels"
                        && (!crate::validation::is_qualified_name(k) || !crate::validation::is_label_value(v))
                    {
                        return Err(format!("metadata.labels: Invalid value: {k:?}: invalid label"));
                    }
                }
                restored.insert(field.to_string(), Value::Object(m.clone()));
            }
            Some(other) => {
                return Err(format!("invalid metadata.{field} of type {} in converted object", type_name(other)));
            }
        }
    }
    converted["metadata"] = Value::Object(restored);
    Ok(())
}

/// Go's `%T` of a decoded JSON value.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// A CRD's `spec.conversion` checked as upstream's `validateCustomResourceConversion`.
pub fn validate(conversion: &Value, at: &str) -> Vec<api_types::Cause> {
    use api_types::Cause;
    let mut causes = Vec::new();
    // Absent: defaulted to None before validation (apply_defaults).
    let Some(strategy) = conversion.get("strategy").and_then(Value::as_str) else { return causes };
    let webhook = conversion.get("webhook").filter(|w| !w.is_null());
    match strategy {
        "None" => {
            if webhook.and_then(|w| w.get("clientConfig")).is_some_and(|c| !c.is_null()) {
                causes.push(Cause::forbidden(
                    format!("{at}.webhook.clientConfig"),
                    "should not be set when strategy is not set to Webhook",
                ));
            }
        }
        "Webhook" => {
            let Some(webhook) = webhook else {
                causes.push(Cause::required(format!("{at}.webhook")));
                return causes;
            };
            let cc = &webhook["clientConfig"];
            if !cc.is_object() {
                causes.push(Cause::required(format!("{at}.webhook.clientConfig")));
            } else {
                let (url, service) =
                    (cc.get("url").filter(|u| !u.is_null()), cc.get("service").filter(|s| !s.is_null()));
                match (url, service) {
                    (Some(_), Some(_)) | (None, None) => causes.push(Cause {
                        reason: "FieldValueRequired",
                        field: format!("{at}.webhook.clientConfig"),
                        message: "Required value: exactly one of url or service is required".into(),
                    }),
                    (Some(u), None) => {
                        let u = u.as_str().unwrap_or_default();
                        if !u.starts_with("https://") {
                            causes.push(Cause::invalid(
                                format!("{at}.webhook.clientConfig.url"),
                                &json!(u),
                                "'https' is the only allowed URL scheme",
                            ));
                        }
                    }
                    (None, Some(s)) => {
                        for f in ["name", "namespace"] {
                            if s[f].as_str().is_none_or(str::is_empty) {
                                causes.push(Cause::required(format!("{at}.webhook.clientConfig.service.{f}")));
                            }
                        }
                    }
                }
            }
            let versions: Vec<&str> = webhook["conversionReviewVersions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let field = format!("{at}.webhook.conversionReviewVersions");
            if versions.is_empty() {
                causes.push(Cause::required(field));
            } else if !versions.iter().any(|v| matches!(*v, "v1" | "v1beta1")) {
                causes.push(Cause::invalid(field, &json!(versions), "must include at least one of v1, v1beta1"));
            }
        }
        other => causes.push(Cause::not_supported(format!("{at}.strategy"), &json!(other), &["None", "Webhook"])),
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_of_a_crd() {
        let crd = json!({"spec": {"conversion": {"strategy": "Webhook", "webhook": {
            "clientConfig": {"url": "https://x.example/convert", "caBundle": "Zm9v"},
            "conversionReviewVersions": ["v2", "v1beta1", "v1"]}}}});
        let w = Webhook::of(&crd).unwrap();
        assert_eq!(w.review_version(), Some("v1beta1"));
        assert_eq!(w.client.ca_bundle.as_deref(), Some(&b"foo"[..]));
        assert!(Webhook::of(&json!({"spec": {"conversion": {"strategy": "None"}}})).is_none());
    }

    #[test]
    fn responses_checked_as_upstream() {
        let ok = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "response": {"uid": "u1", "result": {"status": "Success"}, "convertedObjects": [{"a": 1}]}});
        assert_eq!(converted_objects(&ok, "v1", "u1").unwrap(), vec![json!({"a": 1})]);
        assert_eq!(converted_objects(&ok, "v1", "u2").unwrap_err(), "expected response.uid=\"u2\", got \"u1\"");
        let failed = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "response": {"uid": "u1", "result": {"status": "Failure", "message": "nope"}}});
        assert_eq!(converted_objects(&failed, "v1", "u1").unwrap_err(), "nope");
        let bare = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "response": {"uid": "u1", "result": {"status": "Failure"}}});
        assert_eq!(
            converted_objects(&bare, "v1", "u1").unwrap_err(),
            "response.result.status was 'Failure', not 'Success'"
        );
        let none = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview"});
        assert_eq!(converted_objects(&none, "v1", "u1").unwrap_err(), "no response provided");
        assert!(
            converted_objects(&json!({"kind": "Other"}), "v1", "u1")
                .unwrap_err()
                .starts_with("expected webhook response of")
        );
    }

    #[test]
    fn metadata_restored_but_labels_and_annotations() {
        let original = json!({"metadata": {"name": "a", "uid": "1", "labels": {"x": "1"}, "generation": 3}});
        let mut out = json!({"metadata": {"name": "a", "uid": "1", "labels": {"x": "2", "y": "3"}, "generation": 9,
            "annotations": {"note": "hi"}}});
        validate_converted(&original, &out).unwrap();
        restore_object_meta(&original, &mut out).unwrap();
        assert_eq!(
            out["metadata"],
            json!({"name": "a", "uid": "1", "labels": {"x": "2", "y": "3"}, "generation": 3,
            "annotations": {"note": "hi"}})
        );
        let renamed = json!({"metadata": {"name": "b", "uid": "1"}});
        assert_eq!(validate_converted(&original, &renamed).unwrap_err(), "must have the same name: a != b");
        let mut bad = json!({"metadata": {"labels": {"x": 1}}});
        assert_eq!(
            restore_object_meta(&original, &mut bad).unwrap_err(),
            "metadata.labels[x] must be a string, but is int64 in converted object"
        );
        assert_eq!(restore_object_meta(&original, &mut json!({})).unwrap_err(), "missing metadata in converted object");
    }

    #[test]
    fn conversion_field_validated() {
        let at = "spec.conversion";
        let text =
            |c: &Value| validate(c, at).iter().map(|c| format!("{}: {}", c.field, c.message)).collect::<Vec<_>>();
        assert!(text(&json!({"strategy": "None"})).is_empty());
        assert_eq!(text(&json!({"strategy": "Webhook"})), ["spec.conversion.webhook: Required value"]);
        let hook = json!({"strategy": "Webhook", "webhook": {"clientConfig": {"url": "http://x"}, "conversionReviewVersions": ["v2"]}});
        assert_eq!(
            text(&hook),
            [
                "spec.conversion.webhook.clientConfig.url: Invalid value: \"http://x\": 'https' is the only allowed URL scheme",
                "spec.conversion.webhook.conversionReviewVersions: Invalid value: [\"v2\"]: must include at least one of v1, v1beta1",
            ]
        );
        assert_eq!(
            text(&json!({"strategy": "None", "webhook": {"clientConfig": {"url": "https://x"}}})),
            ["spec.conversion.webhook.clientConfig: Forbidden: should not be set when strategy is not set to Webhook"]
        );
        assert_eq!(
            text(&json!({"strategy": "Magic"})),
            ["spec.conversion.strategy: Unsupported value: \"Magic\": supported values: \"None\", \"Webhook\""]
        );
    }
}
