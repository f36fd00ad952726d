//! Applying PATCH request bodies to objects held as `serde_json::Value`: JSON patch (RFC 6902),
//! JSON merge patch (RFC 7386), Kubernetes strategic merge patch (with upstream's directives and
//! a table of merge keys for the built-in kinds), and a simplified server-side apply.
//!
//! Status codes, as upstream's `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go`
//! answers them (see [`PatchError::status_code`]):
//! * a body that does not decode as a patch of its type: 400 BadRequest;
//! * a JSON patch that decodes but fails to apply (a `test` op fails, a path is missing): 422
//!   Invalid — upstream wraps the json-patch error in `NewGenericServerResponse(422, ...)`;
//! * a JSON patch with more than 10000 operations: 413 RequestEntityTooLarge;
//! * strategic merge patch: malformed directive lists (`$retainKeys`, `$setElementOrder`,
//!   `$deleteFromPrimitiveList`) are 400, lists of lists 422, and every other failure (a list item
//!   without its merge key, an unknown `$patch` value, a `$setElementOrder` list that contradicts
//!   the patch list) is returned unwrapped by upstream and so becomes a 500 InternalError.

use serde_json::{Map, Value};

type Object = Map<String, Value>;

/// The PATCH flavours, named by their request `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/json-patch+json`: RFC 6902 operations.
    Json,
    /// `application/merge-patch+json`: RFC 7386 merge patch.
    Merge,
    /// `application/strategic-merge-patch+json`: Kubernetes strategic merge patch.
    StrategicMerge,
    /// `application/apply-patch+yaml`: server-side apply (simplified, see [`apply_patch`]).
    Apply,
}

impl PatchType {
    /// The patch type for a request `Content-Type`, ignoring parameters such as
    /// `; charset=utf-8` and letter case; `None` for any other media type (upstream answers 415).
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge, PatchType::Apply]
            .into_iter()
            .find(|t| media.eq_ignore_ascii_case(t.content_type()))
    }

    /// The media type of this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Upstream's limit on the number of operations in one JSON patch.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Why a patch could not be applied; [`PatchError::status_code`] gives upstream's HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The body is not a valid patch document of its type, or a directive is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// The patch is well-formed but cannot be applied to this object: a JSON patch `test` op
    /// failed, a path does not exist, a list of lists (422).
    #[error("{0}")]
    Unprocessable(String),
    /// A strategic merge patch failure that upstream reports as an internal error (500), e.g. a
    /// list item without its merge key.
    #[error("{0}")]
    Internal(String),
    /// A JSON patch with more than [`MAX_JSON_PATCH_OPERATIONS`] operations (413).
    #[error("The allowed maximum operations in a JSON patch is {max}, got {got}")]
    TooManyOperations {
        /// The limit.
        max: usize,
        /// The number of operations in the patch.
        got: usize,
    },
}

impl PatchError {
    /// The HTTP status upstream's apiserver answers with for this error.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::BadRequest(_) => 400,
            PatchError::Unprocessable(_) => 422,
            PatchError::Internal(_) => 500,
            PatchError::TooManyOperations { .. } => 413,
        }
    }
}

/// Applies a PATCH body to `original` and returns the patched object.
///
/// `kind` (e.g. `"Pod"`, `"Deployment"`) selects the strategic-merge table of merge keys; with
/// `None` or a kind outside the table (custom resources), strategic merge merges maps and replaces
/// lists. Upstream refuses strategic merge patches for custom resources with 415: callers should
/// check [`supports_strategic_merge`] first.
///
/// `Apply` here is a plain strategic merge of a JSON body, without field ownership: the apiserver
/// serves server-side apply itself (`kube-apiserver/src/fieldmanager`, over [`crate::typeinfo`])
/// and never sends apply bodies here.
pub fn apply_patch(
    original: &Value,
    patch_type: PatchType,
    patch_body: &[u8],
    kind: Option<&str>,
) -> Result<Value, PatchError> {
    match patch_type {
        PatchType::Json => apply_json_patch(original, patch_body),
        PatchType::Merge => {
            let patch = decode_object_patch(patch_body, "merge patch")?;
            let mut doc = original.clone();
            merge_patch(&mut doc, &Value::Object(patch));
            Ok(doc)
        }
        PatchType::StrategicMerge => {
            let patch = decode_object_patch(patch_body, "strategic merge patch")?;
            strategic_merge(original, patch, kind)
        }
        PatchType::Apply => {
            let patch: Value = serde_json::from_slice(patch_body).map_err(|e| {
                PatchError::BadRequest(format!(
                    "error decoding apply configuration (only JSON-formatted apply bodies are supported): {e}"
                ))
            })?;
            let Value::Object(patch) = patch else {
                return Err(PatchError::BadRequest("apply configuration must be an object".to_string()));
            };
            strategic_merge(original, patch, kind)
        }
    }
}

/// Whether `kind` is a built-in kind with a strategic-merge table, i.e. one upstream accepts
/// `application/strategic-merge-patch+json` for.
pub fn supports_strategic_merge(kind: &str) -> bool {
    root_schema(kind).is_some()
}

fn apply_json_patch(original: &Value, body: &[u8]) -> Result<Value, PatchError> {
    let ops: json_patch::Patch = serde_json::from_slice(body).map_err(|e| PatchError::BadRequest(e.to_string()))?;
    if ops.0.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations { max: MAX_JSON_PATCH_OPERATIONS, got: ops.0.len() });
    }
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &ops).map_err(|e| PatchError::Unprocessable(e.to_string()))?;
    Ok(doc)
}

fn decode_object_patch(body: &[u8], what: &str) -> Result<Object, PatchError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(other) => Err(PatchError::BadRequest(format!(
            "invalid {what}: the patch must be a JSON object, got {}",
            kind_name(&other)
        ))),
        Err(e) => Err(PatchError::BadRequest(format!("invalid {what}: {e}"))),
    }
}

/// RFC 7386, keeping the order of existing keys.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Object::new());
    }
    if let Value::Object(target) = target {
        for (k, v) in patch {
            if v.is_null() {
                target.shift_remove(k);
            } else {
                merge_patch(target.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch
// ---------------------------------------------------------------------------------------------

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

const ERR_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
const ERR_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";
const ERR_SET_ELEMENT_ORDER: &str = "invalid patch format of setElementOrder list";
const ERR_LIST_OF_LISTS: &str = "lists of lists are not supported";

fn strategic_merge(original: &Value, patch: Object, kind: Option<&str>) -> Result<Value, PatchError> {
    let original = match original {
        Value::Object(o) => o.clone(),
        Value::Null => Object::new(),
        other => {
            return Err(PatchError::Internal(format!("expected a map, but received a {}", kind_name(other))));
        }
    };
    let schema = kind.and_then(root_schema);
    Ok(Value::Object(merge_map(original, patch, schema)?))
}

/// How the elements of a list field are patched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    /// No `patchStrategy`: maps merge, lists are replaced whole.
    Replace,
    /// `patchStrategy:"merge"` with `patchMergeKey`: a list of objects merged by that key.
    MergeByKey(&'static str),
    /// `patchStrategy:"merge"` on a list of primitives: merged as a set.
    MergeSet,
}

/// One field of a type: its JSON name, strategy, and the type of its value (or list element).
#[derive(Debug)]
struct Field {
    name: &'static str,
    strategy: Strategy,
    schema: Option<&'static Schema>,
}

/// The fields of a type that matter for strategic merge (the others merge/replace by default).
#[derive(Debug)]
struct Schema {
    fields: &'static [Field],
}

impl Field {
    fn merge_key(&self) -> Option<&'static str> {
        match self.strategy {
            Strategy::MergeByKey(k) => Some(k),
            _ => None,
        }
    }

    fn merges(&self) -> bool {
        self.strategy != Strategy::Replace
    }
}

const fn nested(name: &'static str, schema: &'static Schema) -> Field {
    Field { name, strategy: Strategy::Replace, schema: Some(schema) }
}

const fn by_key(name: &'static str, key: &'static str) -> Field {
    Field { name, strategy: Strategy::MergeByKey(key), schema: None }
}

const fn by_key_of(name: &'static str, key: &'static str, elem: &'static Schema) -> Field {
    Field { name, strategy: Strategy::MergeByKey(key), schema: Some(elem) }
}

const fn set(name: &'static str) -> Field {
    Field { name, strategy: Strategy::MergeSet, schema: None }
}

// The tables below transcribe the `patchStrategy` / `patchMergeKey` struct tags of k8s.io/api
// (core/v1, apps/v1, batch/v1, policy/v1, autoscaling/v2, ...). `retainKeys` strategies
// (volumes, resourceClaims, Deployment spec.strategy) only change how clients compute patches:
// the server applies any `$retainKeys` directive it is sent, so they need no entry.

/// metav1.ObjectMeta
static OBJECT_META: Schema = Schema { fields: &[set("finalizers"), by_key("ownerReferences", "uid")] };

/// core/v1 Container and EphemeralContainer
static CONTAINER: Schema = Schema {
    fields: &[
        by_key("ports", "containerPort"),
        by_key("env", "name"),
        by_key("volumeMounts", "mountPath"),
        by_key("volumeDevices", "devicePath"),
    ],
};

/// core/v1 PodSpec
static POD_SPEC: Schema = Schema {
    fields: &[
        by_key_of("containers", "name", &CONTAINER),
        by_key_of("initContainers", "name", &CONTAINER),
        by_key_of("ephemeralContainers", "name", &CONTAINER),
        by_key("volumes", "name"),
        by_key("imagePullSecrets", "name"),
        by_key("hostAliases", "ip"),
        by_key("topologySpreadConstraints", "topologyKey"),
        by_key("resourceClaims", "name"),
        by_key("schedulingGates", "name"),
    ],
};

/// core/v1 PodStatus
static POD_STATUS: Schema = Schema {
    fields: &[
        by_key("conditions", "type"),
        by_key("podIPs", "ip"),
        by_key("hostIPs", "ip"),
        by_key("resourceClaimStatuses", "name"),
    ],
};

/// core/v1 PodTemplateSpec
static POD_TEMPLATE_SPEC: Schema = Schema { fields: &[nested("metadata", &OBJECT_META), nested("spec", &POD_SPEC)] };

/// A status whose only tagged field is `conditions` merged by `type`.
static CONDITIONS: Schema = Schema { fields: &[by_key("conditions", "type")] };

/// The spec of a workload with a pod template at `spec.template`.
static WORKLOAD_SPEC: Schema = Schema { fields: &[nested("template", &POD_TEMPLATE_SPEC)] };

/// batch/v1 JobTemplateSpec
static JOB_TEMPLATE_SPEC: Schema =
    Schema { fields: &[nested("metadata", &OBJECT_META), nested("spec", &WORKLOAD_SPEC)] };

static CRON_JOB_SPEC: Schema = Schema { fields: &[nested("jobTemplate", &JOB_TEMPLATE_SPEC)] };

static NODE_SPEC: Schema = Schema { fields: &[set("podCIDRs")] };

static NODE_STATUS: Schema = Schema { fields: &[by_key("conditions", "type"), by_key("addresses", "type")] };

static SERVICE_SPEC: Schema = Schema { fields: &[by_key("ports", "port")] };

// ----- roots, one per shape of kind -----

static POD: Schema =
    Schema { fields: &[nested("metadata", &OBJECT_META), nested("spec", &POD_SPEC), nested("status", &POD_STATUS)] };

static POD_TEMPLATE: Schema =
    Schema { fields: &[nested("metadata", &OBJECT_META), nested("template", &POD_TEMPLATE_SPEC)] };

static WORKLOAD: Schema = Schema {
    fields: &[nested("metadata", &OBJECT_META), nested("spec", &WORKLOAD_SPEC), nested("status", &CONDITIONS)],
};

static CRON_JOB: Schema = Schema { fields: &[nested("metadata", &OBJECT_META), nested("spec", &CRON_JOB_SPEC)] };

static NODE: Schema =
    Schema { fields: &[nested("metadata", &OBJECT_META), nested("spec", &NODE_SPEC), nested("status", &NODE_STATUS)] };

static SERVICE: Schema = Schema {
    fields: &[nested("metadata", &OBJECT_META), nested("spec", &SERVICE_SPEC), nested("status", &CONDITIONS)],
};

static SERVICE_ACCOUNT: Schema = Schema { fields: &[nested("metadata", &OBJECT_META), by_key("secrets", "name")] };

static COMPONENT_STATUS: Schema = Schema { fields: &[nested("metadata", &OBJECT_META), by_key("conditions", "type")] };

static STATUS_CONDITIONS: Schema =
    Schema { fields: &[nested("metadata", &OBJECT_META), nested("status", &CONDITIONS)] };

static META_ONLY: Schema = Schema { fields: &[nested("metadata", &OBJECT_META)] };

fn root_schema(kind: &str) -> Option<&'static Schema> {
    Some(match kind {
        "Pod" => &POD,
        "PodTemplate" => &POD_TEMPLATE,
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" | "ReplicationController" => &WORKLOAD,
        "CronJob" => &CRON_JOB,
        "Node" => &NODE,
        "Service" => &SERVICE,
        "ServiceAccount" => &SERVICE_ACCOUNT,
        "ComponentStatus" => &COMPONENT_STATUS,
        "Namespace"
        | "PersistentVolumeClaim"
        | "PodDisruptionBudget"
        | "HorizontalPodAutoscaler"
        | "APIService"
        | "FlowSchema"
        | "PriorityLevelConfiguration" => &STATUS_CONDITIONS,
        "ConfigMap"
        | "Secret"
        | "Endpoints"
        | "Event"
        | "LimitRange"
        | "ResourceQuota"
        | "PersistentVolume"
        | "Binding"
        | "ControllerRevision"
        | "Scale"
        | "Ingress"
        | "IngressClass"
        | "NetworkPolicy"
        | "EndpointSlice"
        | "Role"
        | "RoleBinding"
        | "ClusterRole"
        | "ClusterRoleBinding"
        | "StorageClass"
        | "CSIDriver"
        | "CSINode"
        | "CSIStorageCapacity"
        | "VolumeAttachment"
        | "Lease"
        | "PriorityClass"
        | "RuntimeClass"
        | "CertificateSigningRequest"
        | "MutatingWebhookConfiguration"
        | "ValidatingWebhookConfiguration"
        | "ValidatingAdmissionPolicy"
        | "ValidatingAdmissionPolicyBinding"
        | "CustomResourceDefinition" => &META_ONLY,
        _ => return None,
    })
}

fn lookup(schema: Option<&'static Schema>, name: &str) -> Option<&'static Field> {
    schema?.fields.iter().find(|f| f.name == name)
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

fn same_kind(a: &Value, b: &Value) -> bool {
    kind_name(a) == kind_name(b)
}

/// Equality as Go compares decoded JSON scalars: numbers by value.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// `$setElementOrder/containers` -> `containers`; `None` when the prefix is not followed by `/`.
fn strip_directive_prefix<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    key.strip_prefix(prefix)?.strip_prefix('/')
}

/// A directive value as upstream prints it (`%s`): strings bare, anything else as JSON.
fn directive_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn no_merge_key(item: &Value, key: &str) -> PatchError {
    PatchError::Internal(format!("map: {item} does not contain declared merge key: {key}"))
}

/// Upstream's `mergeMap`: merges `patch` into `original` (server side: parallel lists are merged,
/// unmatched nulls dropped).
fn merge_map(mut original: Object, mut patch: Object, schema: Option<&'static Schema>) -> Result<Object, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                patch.shift_remove(DIRECTIVE);
                merge_map(Object::new(), patch, schema)
            }
            Some("delete") => Ok(Object::new()),
            _ => Err(PatchError::Internal(format!(
                "unknown patch type: {} in map: {}",
                directive_text(directive),
                Value::Object(patch.clone())
            ))),
        };
    }

    apply_retain_keys(&mut original, &mut patch)?;
    merge_element_orders(&mut original, &mut patch, schema)?;

    for (key, patch_value) in patch {
        let (key, delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            let Some(field) = strip_directive_prefix(&key, DELETE_FROM_PRIMITIVE_LIST) else {
                return Err(PatchError::BadRequest(ERR_PRIMITIVE_LIST.to_string()));
            };
            (field.to_string(), true)
        } else {
            (key, false)
        };
        let field = lookup(schema, &key);

        if patch_value.is_null() {
            original.shift_remove(&key);
            continue;
        }
        let Some(current) = original.get_mut(&key) else {
            // Deleting from a list that does not exist is a no-op (upstream stores the deletion
            // list itself as the field's value, which is a bug this does not reproduce).
            if !delete_list {
                let value = normalize(patch_value, field)?;
                original.insert(key, value);
            }
            continue;
        };

        if delete_list {
            let (Value::Array(items), Value::Array(remove)) = (&mut *current, &patch_value) else {
                return Err(PatchError::BadRequest(ERR_PRIMITIVE_LIST.to_string()));
            };
            items.retain(|v| !remove.iter().any(|r| json_eq(r, v)));
            continue;
        }

        let merged = match (std::mem::take(current), patch_value) {
            (Value::Object(cur), Value::Object(p)) => Value::Object(merge_map(cur, p, field.and_then(|f| f.schema))?),
            (Value::Array(cur), Value::Array(p)) => match field {
                Some(f) if f.merges() => Value::Array(merge_list(cur, p, f)?),
                _ => normalize(Value::Array(p), field)?,
            },
            (cur, p) if same_kind(&cur, &p) => p,
            (_, p) => normalize(p, field)?,
        };
        *current = merged;
    }
    Ok(original)
}

/// A patch value stored where the original has nothing to merge with: nested maps are merged
/// into empty maps, so that nulls are dropped and directives processed instead of being stored
/// (upstream stores the raw value and relies on typed decoding to drop `$`-keys and nulls).
fn normalize(value: Value, field: Option<&'static Field>) -> Result<Value, PatchError> {
    let schema = field.and_then(|f| f.schema);
    match value {
        Value::Object(obj) => Ok(Value::Object(merge_map(Object::new(), obj, schema)?)),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::Object(obj) if obj.contains_key(DIRECTIVE) => {}
                    Value::Object(obj) => out.push(Value::Object(merge_map(Object::new(), obj, schema)?)),
                    other => out.push(other),
                }
            }
            Ok(Value::Array(out))
        }
        other => Ok(other),
    }
}

/// `$retainKeys`: after validating that the patch only sets listed keys, drops every key of the
/// original that is not listed.
fn apply_retain_keys(original: &mut Object, patch: &mut Object) -> Result<(), PatchError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::BadRequest(ERR_RETAIN_KEYS.to_string()));
    };
    let listed = |k: &str| retain.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_FROM_PRIMITIVE_LIST) || k.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        if !listed(k) {
            return Err(PatchError::BadRequest(ERR_RETAIN_KEYS.to_string()));
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// Processes every `$setElementOrder/<field>` together with `<field>` of the patch: merges the
/// list, then orders the result: items named in the order list come in that order, and the
/// other (server-only) items keep their place relative to them as in the live list.
fn merge_element_orders(
    original: &mut Object,
    patch: &mut Object,
    schema: Option<&'static Schema>,
) -> Result<(), PatchError> {
    let order_keys: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER)).cloned().collect();
    for order_key in order_keys {
        let order = match patch.shift_remove(&order_key) {
            Some(Value::Array(order)) => order,
            Some(other) => {
                return Err(PatchError::Internal(format!("expected a slice, but received a {}", kind_name(&other))));
            }
            None => continue,
        };
        let Some(name) = strip_directive_prefix(&order_key, SET_ELEMENT_ORDER) else {
            return Err(PatchError::BadRequest(ERR_SET_ELEMENT_ORDER.to_string()));
        };
        let field = lookup(schema, name);
        let merge_key = field.and_then(Field::merge_key);

        let original_list = match original.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(items.clone()),
            Some(other) => {
                return Err(PatchError::Internal(format!("expected a slice, but received a {}", kind_name(other))));
            }
        };
        let patch_list = match patch.get(name) {
            // a null patch value deletes the list in the main loop
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(items.clone()),
            Some(other) => {
                return Err(PatchError::Internal(format!("expected a slice, but received a {}", kind_name(other))));
            }
        };
        validate_against_order(patch_list.as_deref().unwrap_or(&[]), &order, merge_key)?;

        let merged = match (&original_list, patch_list) {
            (None, None) => continue,
            (Some(o), None) => o.clone(),
            (None, Some(p)) => match normalize(Value::Array(p), field)? {
                Value::Array(items) => items,
                _ => Vec::new(),
            },
            (Some(o), Some(p)) => match field {
                Some(f) if f.merges() => merge_list(o.clone(), p, f)?,
                _ => match normalize(Value::Array(p), field)? {
                    Value::Array(items) => items,
                    _ => Vec::new(),
                },
            },
        };
        let (in_order, server_only) = partition(merged, &order, merge_key)?;
        let server_order = original_list.unwrap_or_default();
        let ordered = order_items(in_order, server_only, &order, &server_order, merge_key)?;
        original.insert(name.to_string(), Value::Array(ordered));
        patch.shift_remove(name);
    }
    Ok(())
}

/// Upstream's `validatePatchWithSetOrderList`: the patch list (deletions and directive items
/// aside) must be a subsequence of the order list.
fn validate_against_order(patch_list: &[Value], order: &[Value], merge_key: Option<&str>) -> Result<(), PatchError> {
    if patch_list.is_empty() || order.is_empty() {
        return Ok(());
    }
    let mut kept = Vec::with_capacity(patch_list.len());
    for item in patch_list {
        if merge_key.is_some() {
            let Value::Object(obj) = item else {
                return Err(expected_map(item));
            };
            if obj.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                continue;
            }
        }
        kept.push(item);
    }
    let (mut pi, mut oi) = (0, 0);
    while pi < kept.len() && oi < order.len() {
        if kept[pi].as_object().is_some_and(|o| o.contains_key(DIRECTIVE)) {
            pi += 1;
            continue;
        }
        if json_eq(identity(kept[pi], merge_key)?, identity(&order[oi], merge_key)?) {
            pi += 1;
        }
        oi += 1;
    }
    if pi < kept.len() {
        return Err(PatchError::Internal(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}\n",
            Value::Array(patch_list.to_vec()),
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}

fn expected_map(item: &Value) -> PatchError {
    PatchError::Internal(format!("expected a map, but received a {}", kind_name(item)))
}

/// What identifies a list item: its merge key value for keyed lists, else the item itself.
fn identity<'a>(item: &'a Value, merge_key: Option<&str>) -> Result<&'a Value, PatchError> {
    let Some(key) = merge_key else {
        return Ok(item);
    };
    match item {
        Value::Object(obj) => obj.get(key).ok_or_else(|| no_merge_key(item, key)),
        other => Err(expected_map(other)),
    }
}

fn position(list: &[Value], item: &Value, merge_key: Option<&str>) -> Option<usize> {
    let wanted = identity(item, merge_key).ok()?;
    list.iter().position(|v| identity(v, merge_key).is_ok_and(|id| json_eq(id, wanted)))
}

/// Splits `items` into those present in `by` and the others, keeping relative order.
fn partition(items: Vec<Value>, by: &[Value], merge_key: Option<&str>) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for item in items {
        identity(&item, merge_key)?;
        if position(by, &item, merge_key).is_some() {
            present.push(item);
        } else {
            absent.push(item);
        }
    }
    Ok((present, absent))
}

/// Upstream's `normalizeElementOrder`: sorts the patch items by `patch_order` and the server-only
/// items by `server_order`, then interleaves them: a server-only item goes before a patch item
/// when both are in the live list and it came first there; otherwise patch items go first.
fn order_items(
    mut patch_items: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    if merge_key.is_some() {
        for item in patch_order.iter().chain(server_order) {
            identity(item, merge_key)?;
        }
    }
    patch_items.sort_by_key(|v| position(patch_order, v, merge_key).unwrap_or(usize::MAX));
    server_only.sort_by_key(|v| position(server_order, v, merge_key).unwrap_or(usize::MAX));

    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (position(server_order, l, merge_key), position(server_order, r, merge_key)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

/// The common kind of the elements of both lists; errors for lists of lists and mixed kinds.
fn element_kind(original: &[Value], patch: &[Value]) -> Result<Option<&'static str>, PatchError> {
    let mut kind = None;
    for v in original.iter().chain(patch) {
        let k = kind_name(v);
        if k == "slice" {
            return Err(PatchError::Unprocessable(ERR_LIST_OF_LISTS.to_string()));
        }
        match kind {
            None => kind = Some(k),
            Some(prev) if prev != k => {
                return Err(PatchError::Internal(format!(
                    "list element types are not identical: {} and {}",
                    Value::Array(original.to_vec()),
                    Value::Array(patch.to_vec())
                )));
            }
            Some(_) => {}
        }
    }
    Ok(kind)
}

/// Upstream's `mergeSlice` for a list with `patchStrategy: merge`.
fn merge_list(original: Vec<Value>, patch: Vec<Value>, field: &'static Field) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    if element_kind(&original, &patch)? != Some("map") {
        // primitives: set union, original first
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(&patch) {
            if !merged.iter().any(|m| json_eq(m, v)) {
                merged.push(v.clone());
            }
        }
        let (in_patch, server_only) = partition(merged, &patch, None)?;
        return order_items(in_patch, server_only, &patch, &original, None);
    }
    let Some(key) = field.merge_key() else {
        return Err(PatchError::Internal("cannot merge lists without merge key for type map".to_string()));
    };

    // Directive items: `$patch: delete` removes items, `$patch: replace` replaces the list.
    let mut original = original;
    let mut items = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let directive = item.get(DIRECTIVE).cloned();
        match directive {
            None => items.push(item),
            Some(d) => match d.as_str() {
                Some("delete") => {
                    let Some(value) = item.get(key) else {
                        return Err(no_merge_key(&item, key));
                    };
                    original.retain(|o| !o.get(key).is_some_and(|v| json_eq(v, value)));
                }
                Some("replace") => replace = true,
                Some("merge") => {
                    return Err(PatchError::Internal("merging lists cannot yet be specified in the patch".to_string()));
                }
                _ => {
                    return Err(PatchError::Internal(format!(
                        "unknown patch type: {} in map: {item}",
                        directive_text(&d)
                    )));
                }
            },
        }
    }
    if replace {
        return match normalize(Value::Array(items), Some(field))? {
            Value::Array(items) => Ok(items),
            _ => Ok(Vec::new()),
        };
    }

    let server_order = original.clone();
    let mut merged = original;
    for item in &items {
        let Some(value) = item.get(key) else {
            return Err(no_merge_key(item, key));
        };
        let Value::Object(patch_obj) = item.clone() else {
            continue; // element_kind guarantees maps
        };
        let found = merged.iter().position(|o| o.get(key).is_some_and(|v| json_eq(v, value)));
        match found {
            Some(i) => {
                let current = match std::mem::take(&mut merged[i]) {
                    Value::Object(o) => o,
                    _ => Object::new(),
                };
                merged[i] = Value::Object(merge_map(current, patch_obj, field.schema)?);
            }
            None => merged.push(Value::Object(merge_map(Object::new(), patch_obj, field.schema)?)),
        }
    }
    let (in_patch, server_only) = partition(merged, &items, Some(key))?;
    order_items(in_patch, server_only, &items, &server_order, Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(original: &Value, patch: Value, kind: &str) -> Value {
        let body = serde_json::to_vec(&patch).unwrap_or_default();
        apply_patch(original, PatchType::StrategicMerge, &body, Some(kind))
            .unwrap_or_else(|e| panic!("patch {patch} failed: {e}"))
    }

    fn smp_err(original: &Value, patch: Value, kind: &str) -> PatchError {
        let body = serde_json::to_vec(&patch).unwrap_or_default();
        match apply_patch(original, PatchType::StrategicMerge, &body, Some(kind)) {
            Ok(v) => panic!("patch {patch} unexpectedly gave {v}"),
            Err(e) => e,
        }
    }

    fn merge(original: &Value, patch: Value) -> Value {
        let body = serde_json::to_vec(&patch).unwrap_or_default();
        apply_patch(original, PatchType::Merge, &body, None)
            .unwrap_or_else(|e| panic!("merge patch {patch} failed: {e}"))
    }

    fn json_patch(original: &Value, patch: Value) -> Result<Value, PatchError> {
        let body = serde_json::to_vec(&patch).unwrap_or_default();
        apply_patch(original, PatchType::Json, &body, None)
    }

    fn names(list: &Value) -> Vec<String> {
        list.as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| match i.get("name").or(i.get("type")) {
                        Some(Value::String(s)) => s.clone(),
                        _ => i.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "labels": {"app": "web"},
                "annotations": {"deployment.kubernetes.io/revision": "1"}
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "nginx",
                            "image": "nginx:1.25",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
                        }, {
                            "name": "sidecar",
                            "image": "busybox:1.36",
                            "command": ["sleep", "infinity"]
                        }],
                        "volumes": [{"name": "data", "emptyDir": {}}]
                    }
                }
            },
            "status": {
                "conditions": [
                    {"type": "Available", "status": "True"},
                    {"type": "Progressing", "status": "True"}
                ]
            }
        })
    }

    fn node() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}},
            "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
            "status": {
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "True", "reason": "KubeletReady"}
                ],
                "addresses": [
                    {"type": "InternalIP", "address": "10.0.0.5"},
                    {"type": "Hostname", "address": "node-1"}
                ]
            }
        })
    }

    // ----- content types -----

    #[test]
    fn content_types() {
        assert_eq!(PatchType::from_content_type("application/json-patch+json"), Some(PatchType::Json));
        assert_eq!(PatchType::from_content_type("application/merge-patch+json; charset=utf-8"), Some(PatchType::Merge));
        assert_eq!(
            PatchType::from_content_type("Application/Strategic-Merge-Patch+JSON"),
            Some(PatchType::StrategicMerge)
        );
        assert_eq!(
            PatchType::from_content_type(" application/apply-patch+yaml ;charset=utf-8"),
            Some(PatchType::Apply)
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
        assert_eq!(PatchType::from_content_type(""), None);
        for t in [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge, PatchType::Apply] {
            assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
        }
    }

    #[test]
    fn error_status_codes() {
        assert_eq!(PatchError::BadRequest(String::new()).status_code(), 400);
        assert_eq!(PatchError::Unprocessable(String::new()).status_code(), 422);
        assert_eq!(PatchError::Internal(String::new()).status_code(), 500);
        assert_eq!(PatchError::TooManyOperations { max: 1, got: 2 }.status_code(), 413);
    }

    // ----- JSON patch -----

    #[test]
    fn json_patch_rollout_undo() {
        // kubectl rollout undo: replace the pod template and the annotations
        let template = json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.24"}]}
        });
        let out = json_patch(
            &deployment(),
            json!([
                {"op": "replace", "path": "/spec/template", "value": template},
                {"op": "replace", "path": "/metadata/annotations",
                 "value": {"deployment.kubernetes.io/revision": "3"}}
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out["spec"]["template"], template);
        assert_eq!(out["metadata"]["annotations"], json!({"deployment.kubernetes.io/revision": "3"}));
        assert_eq!(out["spec"]["replicas"], 1);
    }

    #[test]
    fn json_patch_all_operations() {
        let doc = json!({"a": 1, "b": {"c": [1, 2]}, "d": "x"});
        let out = json_patch(
            &doc,
            json!([
                {"op": "test", "path": "/a", "value": 1},
                {"op": "add", "path": "/b/c/-", "value": 3},
                {"op": "add", "path": "/b/c/0", "value": 0},
                {"op": "remove", "path": "/d"},
                {"op": "copy", "from": "/a", "path": "/e"},
                {"op": "move", "from": "/a", "path": "/f"},
                {"op": "replace", "path": "/e", "value": "one"}
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, json!({"b": {"c": [0, 1, 2, 3]}, "e": "one", "f": 1}));
    }

    #[test]
    fn json_patch_failing_test_op_is_unprocessable_and_atomic() {
        let doc = json!({"metadata": {"resourceVersion": "5"}, "spec": {"x": 1}});
        let err = json_patch(
            &doc,
            json!([
                {"op": "replace", "path": "/spec/x", "value": 2},
                {"op": "test", "path": "/metadata/resourceVersion", "value": "4"}
            ]),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::Unprocessable(_)), "{err:?}");
        assert_eq!(err.status_code(), 422);
        assert!(err.to_string().contains("/metadata/resourceVersion"), "{err}");
    }

    #[test]
    fn json_patch_missing_path_is_unprocessable() {
        let doc = json!({"spec": {}});
        for op in [
            json!({"op": "replace", "path": "/spec/missing", "value": 1}),
            json!({"op": "remove", "path": "/spec/missing"}),
            json!({"op": "add", "path": "/nope/deeper", "value": 1}),
            json!({"op": "move", "from": "/spec/missing", "path": "/x"}),
        ] {
            let err = json_patch(&doc, json!([op])).unwrap_err();
            assert!(matches!(err, PatchError::Unprocessable(_)), "{op}: {err:?}");
        }
    }

    #[test]
    fn json_patch_invalid_documents_are_bad_requests() {
        for body in [
            &b"{\"op\":\"add\"}"[..],
            b"[{\"op\":\"frobnicate\",\"path\":\"/a\"}]",
            b"[{\"op\":\"add\",\"path\":\"/a\"}]",
            b"not json",
        ] {
            let err = apply_patch(&json!({}), PatchType::Json, body, None).unwrap_err();
            assert!(matches!(err, PatchError::BadRequest(_)), "{err:?}");
        }
    }

    #[test]
    fn json_patch_operation_limit() {
        let ops: Vec<Value> =
            (0..=MAX_JSON_PATCH_OPERATIONS).map(|_| json!({"op": "test", "path": "", "value": {}})).collect();
        let err = json_patch(&json!({}), Value::Array(ops)).unwrap_err();
        assert_eq!(err, PatchError::TooManyOperations { max: 10_000, got: 10_001 });
        assert_eq!(err.to_string(), "The allowed maximum operations in a JSON patch is 10000, got 10001");
    }

    // ----- JSON merge patch -----

    #[test]
    fn merge_patch_labels() {
        // kubectl label: set one label, remove another
        let doc = json!({"metadata": {"name": "p", "labels": {"app": "web", "tier": "fe"}}});
        let out = merge(&doc, json!({"metadata": {"labels": {"env": "prod", "app": null}}}));
        assert_eq!(out, json!({"metadata": {"name": "p", "labels": {"tier": "fe", "env": "prod"}}}));
        // key order of the untouched keys is kept
        let keys: Vec<&String> = out["metadata"]["labels"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
        assert_eq!(keys, ["tier", "env"]);
    }

    #[test]
    fn merge_patch_replaces_lists_and_creates_maps() {
        let doc = deployment();
        let out = merge(
            &doc,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "x"}]}}},
                   "metadata": {"annotations": null},
                   "status": {"new": {"a": {"b": 1, "gone": null}}}}),
        );
        assert_eq!(out["spec"]["template"]["spec"]["containers"], json!([{"name": "only", "image": "x"}]));
        assert!(out["metadata"].get("annotations").is_none());
        assert_eq!(out["status"]["new"], json!({"a": {"b": 1}}));
        assert_eq!(out["spec"]["replicas"], 1);
    }

    #[test]
    fn merge_patch_scale() {
        let out = merge(&deployment(), json!({"spec": {"replicas": 3}}));
        assert_eq!(out["spec"]["replicas"], 3);
    }

    #[test]
    fn merge_patch_rejects_non_objects() {
        for body in [&b"null"[..], b"[1]", b"\"x\"", b"{bad"] {
            let err = apply_patch(&json!({}), PatchType::Merge, body, None).unwrap_err();
            assert!(matches!(err, PatchError::BadRequest(_)), "{err:?}");
        }
    }

    // ----- strategic merge patch: kubectl requests -----

    #[test]
    fn smp_kubectl_apply_three_way_patch() {
        let patch = json!({
            "metadata": {"annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"apps/v1\"}\n"
            }},
            "spec": {
                "replicas": 3,
                "template": {"spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                    "containers": [{"image": "nginx:1.26", "name": "nginx"}]
                }}
            }
        });
        let out = smp(&deployment(), patch, "Deployment");
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(names(containers), ["nginx", "sidecar"]);
        assert_eq!(containers[0]["image"], "nginx:1.26");
        assert_eq!(containers[0]["ports"], json!([{"containerPort": 80, "protocol": "TCP"}]));
        assert_eq!(containers[0]["env"][1]["value"], "2");
        assert_eq!(containers[1]["image"], "busybox:1.36");
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(out["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1");
        assert!(out["metadata"]["annotations"].get("kubectl.kubernetes.io/last-applied-configuration").is_some());
        assert!(!out.to_string().contains("$setElementOrder"));
    }

    #[test]
    fn smp_kubectl_apply_with_single_container_order() {
        // exactly the request from the brief: the order names only nginx
        let patch = json!({"spec": {"replicas": 3, "template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}],
            "containers": [{"image": "nginx:1.26", "name": "nginx"}]
        }}}});
        let out = smp(&deployment(), patch, "Deployment");
        let containers = &out["spec"]["template"]["spec"]["containers"];
        // sidecar is server-only; it keeps its place after nginx as in the live list
        assert_eq!(names(containers), ["nginx", "sidecar"]);
        assert_eq!(containers[0]["image"], "nginx:1.26");
        assert_eq!(containers[0]["ports"][0]["containerPort"], 80);
    }

    #[test]
    fn smp_kubectl_apply_removes_container_and_field() {
        // three-way patch when the user removed the sidecar and the env var B from their file
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}],
            "containers": [
                {"name": "nginx",
                 "$setElementOrder/env": [{"name": "A"}],
                 "env": [{"$patch": "delete", "name": "B"}]},
                {"$patch": "delete", "name": "sidecar"}
            ]
        }}}});
        let out = smp(&deployment(), patch, "Deployment");
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(names(containers), ["nginx"]);
        assert_eq!(containers[0]["env"], json!([{"name": "A", "value": "1"}]));
        assert!(!out.to_string().contains("$patch"));
    }

    #[test]
    fn smp_set_image_keeps_other_container() {
        // kubectl set image deployment/web sidecar=busybox:1.37
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "sidecar", "image": "busybox:1.37"}
            ]}}}}),
            "Deployment",
        );
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(names(containers), ["nginx", "sidecar"]);
        assert_eq!(containers[0]["image"], "nginx:1.25");
        assert_eq!(containers[1]["image"], "busybox:1.37");
        assert_eq!(containers[1]["command"], json!(["sleep", "infinity"]));
    }

    #[test]
    fn smp_rollout_restart_adds_template_annotation() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z"
            }}}}}),
            "Deployment",
        );
        assert_eq!(
            out["spec"]["template"]["metadata"],
            json!({"labels": {"app": "web"},
                   "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z"}})
        );
        assert_eq!(out["spec"]["template"]["spec"], deployment()["spec"]["template"]["spec"]);
    }

    #[test]
    fn smp_cordon_and_uncordon() {
        let cordoned = smp(&node(), json!({"spec": {"unschedulable": true}}), "Node");
        assert_eq!(cordoned["spec"]["unschedulable"], true);
        assert_eq!(cordoned["spec"]["podCIDR"], "10.244.0.0/24");
        let uncordoned = smp(&cordoned, json!({"spec": {"unschedulable": null}}), "Node");
        assert!(uncordoned["spec"].get("unschedulable").is_none());
        assert_eq!(uncordoned, node());
    }

    #[test]
    fn smp_taints_are_replaced_and_removed() {
        let tainted = smp(
            &node(),
            json!({"spec": {"taints": [{"effect": "NoSchedule", "key": "dedicated", "value": "gpu"}]}}),
            "Node",
        );
        assert_eq!(tainted["spec"]["taints"], json!([{"effect": "NoSchedule", "key": "dedicated", "value": "gpu"}]));
        // taints have no patch strategy: a second taint request sends the whole list
        let two = smp(
            &tainted,
            json!({"spec": {"taints": [
                {"effect": "NoSchedule", "key": "dedicated", "value": "gpu"},
                {"effect": "NoExecute", "key": "maintenance"}
            ]}}),
            "Node",
        );
        assert_eq!(two["spec"]["taints"].as_array().map(Vec::len), Some(2));
        let one = smp(&two, json!({"spec": {"taints": [{"effect": "NoExecute", "key": "maintenance"}]}}), "Node");
        assert_eq!(one["spec"]["taints"], json!([{"effect": "NoExecute", "key": "maintenance"}]));
        // removing the last taint
        let none = smp(&one, json!({"spec": {"taints": null}}), "Node");
        assert!(none["spec"].get("taints").is_none());
    }

    #[test]
    fn smp_node_status_conditions_merge_by_type() {
        let out = smp(
            &node(),
            json!({"status": {"conditions": [
                {"type": "Ready", "status": "False", "reason": "KubeletNotReady"},
                {"type": "DiskPressure", "status": "False"}
            ]}}),
            "Node",
        );
        let conditions = &out["status"]["conditions"];
        // without $setElementOrder, patch items come first, then server-only items in their
        // live order unless the live list puts them before a patch item
        assert_eq!(names(conditions), ["MemoryPressure", "Ready", "DiskPressure"]);
        assert_eq!(conditions[1]["status"], "False");
        assert_eq!(conditions[1]["reason"], "KubeletNotReady");
        assert_eq!(out["status"]["addresses"], node()["status"]["addresses"]);
    }

    #[test]
    fn smp_pod_status_patch_from_kubelet() {
        let pod = json!({
            "metadata": {"name": "p", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}]
            }
        });
        let out = smp(
            &pod,
            json!({
                "metadata": {"uid": "u1"},
                "status": {
                    "$setElementOrder/conditions": [
                        {"type": "PodScheduled"}, {"type": "Initialized"}, {"type": "Ready"}
                    ],
                    "conditions": [
                        {"type": "Initialized", "status": "True"},
                        {"type": "Ready", "status": "True"}
                    ],
                    "phase": "Running",
                    "podIP": "10.244.0.7",
                    "podIPs": [{"ip": "10.244.0.7"}],
                    "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0}]
                }
            }),
            "Pod",
        );
        assert_eq!(names(&out["status"]["conditions"]), ["PodScheduled", "Initialized", "Ready"]);
        assert_eq!(out["status"]["phase"], "Running");
        assert_eq!(out["status"]["podIPs"], json!([{"ip": "10.244.0.7"}]));
    }

    // ----- strategic merge patch: directives and list semantics -----

    #[test]
    fn smp_env_merged_by_name() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {"containers": [{
                "name": "nginx",
                "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}]
            }]}}}}),
            "Deployment",
        );
        let env = &out["spec"]["template"]["spec"]["containers"][0]["env"];
        // patch items first in patch order; A is server-only and came before B in the live list
        assert_eq!(
            env,
            &json!([
                {"name": "A", "value": "1"},
                {"name": "B", "value": "two"},
                {"name": "C", "value": "3"}
            ])
        );
    }

    #[test]
    fn smp_new_items_without_order_go_first() {
        // upstream's mergeSlice: with no $setElementOrder, an item new to the list is placed
        // before server-only items
        let pod = json!({"spec": {"containers": [{"name": "a", "image": "x"}]}});
        let out = smp(&pod, json!({"spec": {"containers": [{"name": "b", "image": "y"}]}}), "Pod");
        assert_eq!(names(&out["spec"]["containers"]), ["b", "a"]);
    }

    #[test]
    fn smp_patch_delete_removes_container() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {"containers": [
                {"$patch": "delete", "name": "sidecar"}
            ]}}}}),
            "Deployment",
        );
        assert_eq!(names(&out["spec"]["template"]["spec"]["containers"]), ["nginx"]);
    }

    #[test]
    fn smp_patch_delete_removes_all_duplicates() {
        let pod = json!({"spec": {"volumes": [
            {"name": "a"}, {"name": "b"}, {"name": "a", "emptyDir": {}}
        ]}});
        let out = smp(&pod, json!({"spec": {"volumes": [{"name": "a", "$patch": "delete"}]}}), "Pod");
        assert_eq!(out["spec"]["volumes"], json!([{"name": "b"}]));
    }

    #[test]
    fn smp_patch_delete_without_merge_key_fails() {
        let err = smp_err(
            &deployment(),
            json!({"spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}}),
            "Deployment",
        );
        assert_eq!(err.status_code(), 500);
        assert!(err.to_string().contains("does not contain declared merge key: name"), "{err}");
    }

    #[test]
    fn smp_item_without_merge_key_fails() {
        let err = smp_err(
            &deployment(),
            json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
            "Deployment",
        );
        assert!(matches!(err, PatchError::Internal(_)), "{err:?}");
    }

    #[test]
    fn smp_patch_replace_in_list_replaces_the_list() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "only", "image": "x"},
                {"$patch": "replace"}
            ]}}}}),
            "Deployment",
        );
        assert_eq!(out["spec"]["template"]["spec"]["containers"], json!([{"name": "only", "image": "x"}]));
        // `[{"$patch": "replace"}]` alone empties the list
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {"volumes": [{"$patch": "replace"}]}}}}),
            "Deployment",
        );
        assert_eq!(out["spec"]["template"]["spec"]["volumes"], json!([]));
    }

    #[test]
    fn smp_patch_replace_in_map_replaces_the_map() {
        let out = smp(&deployment(), json!({"metadata": {"labels": {"$patch": "replace", "new": "1"}}}), "Deployment");
        assert_eq!(out["metadata"]["labels"], json!({"new": "1"}));
        let mut d = deployment();
        d["spec"]["template"]["spec"]["securityContext"] = json!({"runAsUser": 1000, "fsGroup": 2000});
        let out = smp(
            &d,
            json!({"spec": {"template": {"spec": {"securityContext": {
                "$patch": "replace", "runAsNonRoot": true
            }}}}}),
            "Deployment",
        );
        assert_eq!(out["spec"]["template"]["spec"]["securityContext"], json!({"runAsNonRoot": true}));
        // inside a merge list, an item carrying `$patch: replace` is a list-level marker (as
        // upstream's mergeSliceWithSpecialElements): the list becomes the other patch items
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "nginx", "$patch": "replace", "image": "nginx:2"},
                {"name": "other", "image": "o"}
            ]}}}}),
            "Deployment",
        );
        assert_eq!(out["spec"]["template"]["spec"]["containers"], json!([{"name": "other", "image": "o"}]));
    }

    #[test]
    fn smp_patch_delete_in_map_empties_it() {
        let out = smp(&deployment(), json!({"metadata": {"annotations": {"$patch": "delete"}}}), "Deployment");
        assert_eq!(out["metadata"]["annotations"], json!({}));
    }

    #[test]
    fn smp_unknown_patch_directive_fails() {
        let err = smp_err(&deployment(), json!({"metadata": {"$patch": "frob"}}), "Deployment");
        assert!(err.to_string().starts_with("unknown patch type: frob in map: "), "{err}");
        let err = smp_err(
            &deployment(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "$patch": "merge"}]}}}}),
            "Deployment",
        );
        assert_eq!(err.to_string(), "merging lists cannot yet be specified in the patch");
    }

    #[test]
    fn smp_retain_keys() {
        // kubectl apply switching a Deployment strategy from RollingUpdate to Recreate
        let mut d = deployment();
        d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}});
        let out = smp(&d, json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}), "Deployment");
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));

        // volumes: switching the volume source
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/volumes": [{"name": "data"}],
                "volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "cm"}, "name": "data"}]
            }}}}),
            "Deployment",
        );
        assert_eq!(out["spec"]["template"]["spec"]["volumes"], json!([{"name": "data", "configMap": {"name": "cm"}}]));
    }

    #[test]
    fn smp_retain_keys_errors() {
        let err = smp_err(
            &deployment(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
            "Deployment",
        );
        assert_eq!(err, PatchError::BadRequest("invalid patch format of retainKeys".into()));
        let err = smp_err(&deployment(), json!({"spec": {"strategy": {"$retainKeys": "type"}}}), "Deployment");
        assert_eq!(err.status_code(), 400);
        // nulls are allowed for keys outside the list
        let out = smp(
            &deployment(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
            "Deployment",
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn smp_finalizers_merge_as_a_set() {
        let obj = json!({"metadata": {"name": "x", "finalizers": ["a", "b"]}});
        let out = smp(&obj, json!({"metadata": {"finalizers": ["c", "a"]}}), "ConfigMap");
        // patch items first in patch order; b is server-only and after a in the live list
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "a", "b"]));
        let out = smp(
            &obj,
            json!({"metadata": {"$setElementOrder/finalizers": ["a", "b", "c"], "finalizers": ["c"]}}),
            "ConfigMap",
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
    }

    #[test]
    fn smp_delete_from_primitive_list() {
        let obj = json!({"metadata": {"finalizers": ["a", "b", "c", "b"]}});
        let out = smp(&obj, json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}), "Secret");
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "c"]));
        // with $setElementOrder, as kubectl apply sends it (upstream's test case)
        let obj = json!({"metadata": {"finalizers": ["1", "2", "3", "4"]}});
        let out = smp(
            &obj,
            json!({"metadata": {
                "$setElementOrder/finalizers": ["1", "2"],
                "$deleteFromPrimitiveList/finalizers": ["3"]
            }}),
            "Secret",
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["1", "2", "4"]));
        // deleting from an absent list does nothing
        let out = smp(
            &json!({"metadata": {"name": "x"}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            "Secret",
        );
        assert_eq!(out, json!({"metadata": {"name": "x"}}));
        let err = smp_err(&obj, json!({"metadata": {"$deleteFromPrimitiveListfinalizers": ["3"]}}), "Secret");
        assert_eq!(err, PatchError::BadRequest("invalid patch format of primitive list".into()));
    }

    #[test]
    fn smp_set_element_order_reorders() {
        // upstream "merge lists of maps": new items placed by the order list
        let pod = json!({"spec": {"containers": [
            {"name": "1", "other": "a"},
            {"name": "2", "value": "2", "other": "b"}
        ]}});
        let out = smp(
            &pod,
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "4"}, {"name": "1"}, {"name": "2"}, {"name": "3"}],
                "containers": [{"name": "4", "value": "4"}, {"name": "3", "value": "3"}]
            }}),
            "Pod",
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([
                {"name": "4", "value": "4"},
                {"name": "1", "other": "a"},
                {"name": "2", "value": "2", "other": "b"},
                {"name": "3", "value": "3"}
            ])
        );
    }

    #[test]
    fn smp_set_element_order_keeps_server_only_items_in_place() {
        let pod = json!({"spec": {"containers": [
            {"name": "a"}, {"name": "server"}, {"name": "b"}
        ]}});
        let out = smp(
            &pod,
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            }}),
            "Pod",
        );
        // b, a reordered; "server" was before b in the live list, so upstream's interleaving puts
        // it before b
        assert_eq!(names(&out["spec"]["containers"]), ["server", "b", "a"]);
        // order list naming items not in the list is fine (upstream's test case)
        let pod = json!({"spec": {"containers": [{"name": "1"}, {"name": "3"}]}});
        let out = smp(
            &pod,
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "3"}, {"name": "2"}, {"name": "1"}],
                "containers": [{"name": "3", "value": "3"}, {"name": "1", "value": "1"}]
            }}),
            "Pod",
        );
        assert_eq!(out["spec"]["containers"], json!([{"name": "3", "value": "3"}, {"name": "1", "value": "1"}]));
    }

    #[test]
    fn smp_set_element_order_for_primitive_lists() {
        let node = json!({"spec": {"podCIDRs": ["1", "3"]}});
        let out = smp(&node, json!({"spec": {"$setElementOrder/podCIDRs": ["3", "2", "1"]}}), "Node");
        assert_eq!(out["spec"]["podCIDRs"], json!(["3", "1"]));
    }

    #[test]
    fn smp_set_element_order_mismatch_fails() {
        let pod = json!({"spec": {"containers": [{"name": "1"}, {"name": "3"}, {"name": "2"}]}});
        let err = smp_err(
            &pod,
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "1"}, {"name": "2"}, {"name": "3"}],
                "containers": [{"name": "3", "value": "3"}, {"name": "1", "value": "1"}]
            }}),
            "Pod",
        );
        assert!(err.to_string().contains("doesn't match"), "{err}");
        assert_eq!(err.status_code(), 500);
        let err = smp_err(&pod, json!({"spec": {"$setElementOrdercontainers": []}}), "Pod");
        assert_eq!(err.status_code(), 400);
    }

    #[test]
    fn smp_preserves_patch_order_like_upstream() {
        // upstream "preserve the order from the patch in a merging list 2"
        let pod = json!({"spec": {"containers": [
            {"name": "1"}, {"name": "2", "value": "b"}, {"name": "3"}
        ]}});
        let out = smp(
            &pod,
            json!({"spec": {"containers": [{"name": "3", "value": "c"}, {"name": "1", "value": "a"}]}}),
            "Pod",
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([
                {"name": "2", "value": "b"},
                {"name": "3", "value": "c"},
                {"name": "1", "value": "a"}
            ])
        );
    }

    #[test]
    fn smp_ports_merge_by_container_port_and_service_port() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {"containers": [{
                "name": "nginx",
                "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]
            }]}}}}),
            "Deployment",
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["ports"],
            json!([
                {"containerPort": 80, "protocol": "TCP", "name": "http"},
                {"containerPort": 443}
            ])
        );
        let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}], "type": "ClusterIP"}});
        let out =
            smp(&svc, json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}}), "Service");
        assert_eq!(out["spec"]["ports"], json!([{"port": 80, "targetPort": 8080, "nodePort": 30080}]));
    }

    #[test]
    fn smp_pod_template_paths_for_each_workload_kind() {
        let template = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}
        ]}});
        let set_b = json!({"spec": {"containers": [{"name": "b", "image": "b:2"}]}});
        for (kind, path) in [
            ("Deployment", vec!["spec", "template"]),
            ("ReplicaSet", vec!["spec", "template"]),
            ("StatefulSet", vec!["spec", "template"]),
            ("DaemonSet", vec!["spec", "template"]),
            ("Job", vec!["spec", "template"]),
            ("ReplicationController", vec!["spec", "template"]),
            ("CronJob", vec!["spec", "jobTemplate", "spec", "template"]),
            ("PodTemplate", vec!["template"]),
            ("Pod", vec![]),
        ] {
            let wrap = |inner: &Value| {
                path.iter().rev().fold(inner.clone(), |acc, seg| {
                    let mut m = Object::new();
                    m.insert(seg.to_string(), acc);
                    Value::Object(m)
                })
            };
            let out = smp(&wrap(&template), wrap(&set_b), kind);
            let mut cur = &out;
            for seg in &path {
                cur = &cur[*seg];
            }
            assert_eq!(
                cur["spec"]["containers"],
                json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}]),
                "{kind}"
            );
        }
    }

    #[test]
    fn smp_owner_references_merge_by_uid() {
        let obj = json!({"metadata": {"ownerReferences": [
            {"uid": "1", "kind": "ReplicaSet", "name": "rs"}
        ]}});
        let out =
            smp(&obj, json!({"metadata": {"ownerReferences": [{"uid": "2", "kind": "Job", "name": "j"}]}}), "Pod");
        assert_eq!(out["metadata"]["ownerReferences"].as_array().map(Vec::len), Some(2));
        let out = smp(&out, json!({"metadata": {"ownerReferences": [{"uid": "1", "$patch": "delete"}]}}), "Pod");
        assert_eq!(out["metadata"]["ownerReferences"], json!([{"uid": "2", "kind": "Job", "name": "j"}]));
    }

    #[test]
    fn smp_lists_without_strategy_are_replaced() {
        // tolerations, command and args have no patch strategy
        let pod = json!({"spec": {
            "tolerations": [{"key": "a", "operator": "Exists"}],
            "containers": [{"name": "c", "command": ["a", "b"]}]
        }});
        let out = smp(
            &pod,
            json!({"spec": {
                "tolerations": [{"key": "b", "operator": "Exists"}],
                "containers": [{"name": "c", "command": ["x"]}]
            }}),
            "Pod",
        );
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "b", "operator": "Exists"}]));
        assert_eq!(out["spec"]["containers"][0]["command"], json!(["x"]));
    }

    #[test]
    fn smp_unknown_kinds_merge_maps_and_replace_lists() {
        assert!(!supports_strategic_merge("Widget"));
        assert!(supports_strategic_merge("Deployment"));
        assert!(supports_strategic_merge("ConfigMap"));
        let cr = json!({"spec": {"items": [{"name": "a", "v": 1}], "m": {"a": 1, "b": 2}}});
        let out = smp(&cr, json!({"spec": {"items": [{"name": "a", "v": 2}], "m": {"b": null, "c": 3}}}), "Widget");
        assert_eq!(out, json!({"spec": {"items": [{"name": "a", "v": 2}], "m": {"a": 1, "c": 3}}}));
        let body = serde_json::to_vec(&json!({"spec": {"m": {"d": 4}}})).unwrap_or_default();
        let out = apply_patch(&cr, PatchType::StrategicMerge, &body, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out["spec"]["m"], json!({"a": 1, "b": 2, "d": 4}));
    }

    #[test]
    fn smp_new_values_drop_nulls_and_directives() {
        let out = smp(
            &json!({"metadata": {"name": "p"}}),
            json!({"metadata": {"labels": {"a": "1", "b": null}},
            "spec": {"containers": [
                {"name": "c", "image": "i", "env": [{"name": "X", "$patch": "delete"}]}
            ]}}),
            "Pod",
        );
        assert_eq!(out["metadata"]["labels"], json!({"a": "1"}));
        assert_eq!(out["spec"]["containers"], json!([{"name": "c", "image": "i", "env": []}]));
    }

    #[test]
    fn smp_type_changes_replace() {
        let obj = json!({"data": {"a": "1"}, "x": [1], "y": "s", "n": null});
        let out = smp(&obj, json!({"data": "flat", "x": {"k": 1, "z": null}, "y": 2, "n": {"a": 1}}), "ConfigMap");
        assert_eq!(out, json!({"data": "flat", "x": {"k": 1}, "y": 2, "n": {"a": 1}}));
    }

    #[test]
    fn smp_list_errors() {
        let obj = json!({"metadata": {"finalizers": ["a"]}});
        let err = smp_err(&obj, json!({"metadata": {"finalizers": [["b"]]}}), "Pod");
        assert_eq!(err, PatchError::Unprocessable("lists of lists are not supported".into()));
        let err = smp_err(&obj, json!({"metadata": {"finalizers": [1]}}), "Pod");
        assert!(err.to_string().starts_with("list element types are not identical"), "{err}");
    }

    #[test]
    fn smp_bad_bodies() {
        for body in [&b"[]"[..], b"null", b"{", b"3"] {
            let err = apply_patch(&json!({}), PatchType::StrategicMerge, body, Some("Pod")).unwrap_err();
            assert_eq!(err.status_code(), 400, "{body:?}: {err}");
        }
    }

    #[test]
    fn smp_directives_never_reach_the_result() {
        let out = smp(
            &deployment(),
            json!({
                "metadata": {"$setElementOrder/finalizers": ["f"], "finalizers": ["f"]},
                "spec": {"template": {"spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                    "$setElementOrder/volumes": [{"name": "data"}],
                    "containers": [{"name": "nginx", "$setElementOrder/env": [{"name": "B"}, {"name": "A"}]}],
                    "volumes": [{"name": "data", "$retainKeys": ["name", "emptyDir"], "emptyDir": {"medium": "Memory"}}]
                }}}
            }),
            "Deployment",
        );
        assert!(!out.to_string().contains('$'), "{out}");
        assert_eq!(out["metadata"]["finalizers"], json!(["f"]));
        assert_eq!(names(&out["spec"]["template"]["spec"]["containers"][0]["env"]), ["B", "A"]);
    }

    // ----- server-side apply (simplified) -----

    #[test]
    fn apply_merges_applied_configuration() {
        let body = serde_json::to_vec(&json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "nginx", "image": "nginx:1.27"}
            ]}}}
        }))
        .unwrap_or_default();
        let out =
            apply_patch(&deployment(), PatchType::Apply, &body, Some("Deployment")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out["spec"]["replicas"], 2);
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "nginx:1.27");
        assert_eq!(containers[0]["ports"][0]["containerPort"], 80);
        assert_eq!(names(containers), ["nginx", "sidecar"]);
        // creating through apply: an empty live object
        let out =
            apply_patch(&Value::Null, PatchType::Apply, &body, Some("Deployment")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out["metadata"]["name"], "web");
    }

    #[test]
    fn apply_rejects_non_json_bodies() {
        let err = apply_patch(&json!({}), PatchType::Apply, b"apiVersion: v1\nkind: ConfigMap\n", Some("ConfigMap"))
            .unwrap_err();
        assert_eq!(err.status_code(), 400);
        let err = apply_patch(&json!({}), PatchType::Apply, b"[]", None).unwrap_err();
        assert_eq!(err.status_code(), 400);
    }
}
