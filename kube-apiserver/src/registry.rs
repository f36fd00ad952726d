//! The generic registry: create, get, list, update, patch, delete and watch for every resource in the table,
//! over the storage layer. Objects are JSON; `metadata.resourceVersion` is the storage revision, injected on read
//! and never stored. Per-kind behaviour (defaulting, validation, status/spec split) lives in [`crate::strategy`].

use std::sync::{Arc, OnceLock};

use api_types::patch::{PatchType, apply_patch};
use api_types::selector::{FieldSelector, LabelSelector};
use api_types::{ApiError, Resource};
use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::storage::{Backend, Event, KeyValue, ListOptions, Revision, Storage, StorageError};
use crate::strategy;

/// What a list or watch selects.
#[derive(Debug, Default, Clone)]
pub struct ListParams {
    pub label_selector: Option<LabelSelector>,
    pub field_selector: Option<FieldSelector>,
    pub limit: usize,
    pub continue_token: Option<String>,
    /// `resourceVersion` as sent (None = most recent, consistent read).
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`: `Exact` or `NotOlderThan`.
    pub resource_version_match: Option<String>,
}

/// `fieldValidation`: what to do with fields the kind does not have (upstream's default is Warn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(v: Option<&str>) -> Result<Self, ApiError> {
        match v {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other:?}: valid values are \"Ignore\", \"Warn\" and \"Strict\""
            ))),
        }
    }
}

/// Drops the fields the kind does not have; under Strict they are a 400 instead. Returns the Warn warnings.
pub fn check_fields(res: &Resource, obj: &mut Value, mode: FieldValidation) -> Result<Vec<String>, ApiError> {
    let unknown = api_types::schema::unknown_fields(res.group, res.version, res.kind, obj);
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let messages: Vec<String> = unknown.iter().map(|f| format!("unknown field {f:?}")).collect();
    if mode == FieldValidation::Strict {
        return Err(ApiError::bad_request(format!("strict decoding error: {}", messages.join(", "))));
    }
    api_types::schema::drop_fields(obj, &unknown);
    Ok(if mode == FieldValidation::Warn { messages } else { Vec::new() })
}

/// Adds the request body's duplicate fields (`api_types::duplicates`) to what [`check_fields`] found, after the
/// unknown ones as upstream's strict decoder lists them: one 400 under Strict, warnings under Warn.
pub fn with_duplicates(
    checked: Result<Vec<String>, ApiError>,
    duplicates: &[String],
    mode: FieldValidation,
) -> Result<Vec<String>, ApiError> {
    if duplicates.is_empty() || mode == FieldValidation::Ignore {
        return checked;
    }
    let messages: Vec<String> = duplicates.iter().map(|f| format!("duplicate field {f:?}")).collect();
    match (checked, mode) {
        (Err(e), FieldValidation::Strict) if e.message.starts_with("strict decoding error: ") => {
            Err(ApiError::bad_request(format!("{}, {}", e.message, messages.join(", "))))
        }
        (Ok(_), FieldValidation::Strict) => {
            Err(ApiError::bad_request(format!("strict decoding error: {}", messages.join(", "))))
        }
        (Ok(mut warnings), _) => {
            warnings.extend(messages);
            Ok(warnings)
        }
        (Err(e), _) => Err(e),
    }
}

/// The duplicate fields of a JSON request body (none for protobuf or YAML bodies, or when they are ignored).
pub fn body_duplicates(headers: &http::HeaderMap, body: &[u8], mode: FieldValidation) -> Vec<String> {
    let ct = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    if mode == FieldValidation::Ignore || !ct.contains("json") {
        return Vec::new();
    }
    api_types::duplicates::duplicate_fields(body)
}

/// A created object, with its resourceVersion, and the bytes it was stored as (`None` for a dry run).
pub struct Created {
    pub object: Value,
    pub stored: Option<Bytes>,
}

/// One page of a list.
#[derive(Debug)]
pub struct ListPage {
    pub items: Vec<Item>,
    pub resource_version: Revision,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

/// Delete options from the body or the query.
#[derive(Debug, Default, Clone)]
pub struct DeleteParams {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

/// What a delete did: the object is gone, or it stays with a deletionTimestamp (finalizers, graceful pods).
#[derive(Debug)]
pub enum Deleted {
    Gone(Value),
    Pending(Value),
}

/// One event of an API watch, ready to encode.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    Added(Shared),
    Modified(Shared),
    Deleted(Shared),
    Bookmark(Revision),
    Error(ApiError),
}

/// How long after its decoding an object is taken to have left the CPU's caches: the watch cache decodes ~1,000
/// pods (~15 MB of `Value`s, the size of a server's last-level cache) in about 5 ms.
const COLD_AFTER: std::time::Duration = std::time::Duration::from_millis(5);

/// An object as the watch cache holds it: shared by every watcher of an event, its JSON encoding made once, on first
/// use, for all of them (upstream's cacher caches serializations per event the same way).
#[derive(Debug, Clone)]
pub struct Shared(Arc<SharedInner>);

#[derive(Debug)]
struct SharedInner {
    value: Value,
    /// The object's protobuf body as stored (without resourceVersion), when it is stored as protobuf: its protobuf
    /// encoding is these bytes with the resourceVersion spliced in ([`api_types::protobuf::with_resource_version`]).
    stored: Option<Bytes>,
    /// When the object was decoded: an object older than [`COLD_AFTER`] has likely left the CPU's caches.
    born: std::time::Instant,
    json: OnceLock<Bytes>,
    /// The protobuf body and where the typed message lies in it: one encoding serves watch events and responses
    /// (the body) and lists (the message, a slice of the same bytes).
    protobuf: OnceLock<(Bytes, Bytes)>,
    /// The first watch event of the object in JSON and in protobuf encoded in place, with its type: every watcher
    /// of the event gets these bytes, which hold the object's encoding (an event framed around an encoding made
    /// before, as an ADDED replayed to a new watcher, is not kept: it would hold a second copy for the cache's life).
    events: [OnceLock<(&'static str, Bytes)>; 2],
}

impl Shared {
    pub fn new(value: Value) -> Self {
        Self::with_stored(value, None)
    }

    /// An object read from storage, with its resourceVersion: its stored bytes are kept when they are protobuf.
    pub fn decode(kv: &KeyValue) -> Result<Self, ApiError> {
        let stored = kv.value.starts_with(api_types::protobuf::MAGIC).then(|| kv.value.clone());
        Ok(Self::with_stored(decode(kv)?, stored))
    }

    /// `value` with the stored protobuf body it was decoded from (at another resourceVersion, or none).
    pub fn with_stored(value: Value, stored: Option<Bytes>) -> Self {
        Shared(Arc::new(SharedInner {
            value,
            stored,
            born: std::time::Instant::now(),
            json: OnceLock::new(),
            protobuf: OnceLock::new(),
            events: Default::default(),
        }))
    }

    /// Whether the object has likely left the CPU's caches, and is read ahead of its protobuf encoding (see
    /// [`api_types::protobuf::encode_object_parts`]): a watch event's object is mostly encoded just after the watch
    /// cache decoded it; an older one (an event replayed to a new watcher) is not.
    fn cold(&self) -> bool {
        self.0.born.elapsed() > COLD_AFTER
    }

    /// The object as a Kubernetes protobuf body (the stored shape), encoded once; empty when its kind has none.
    pub fn protobuf(&self) -> &Bytes {
        &self.protobuf_parts(self.cold()).0
    }

    /// The object's typed protobuf message (no envelope: a list item), from the same encoding as [`Self::protobuf`];
    /// empty when its kind has none. The objects of a list are read ahead of their encoding.
    pub fn protobuf_message(&self) -> &Bytes {
        &self.protobuf_parts(true).1
    }

    /// The stored protobuf body it was decoded from, when it is stored as protobuf.
    pub fn stored(&self) -> Option<&Bytes> {
        self.0.stored.as_ref()
    }

    fn protobuf_parts(&self, cold: bool) -> &(Bytes, Bytes) {
        self.0.protobuf.get_or_init(|| {
            let encoded = self.spliced(None).or_else(|| {
                let (body, message) = api_types::protobuf::encode_object_parts(&self.0.value, cold)?;
                Some((body, 0..0, message))
            });
            match encoded {
                Some((body, _, message)) => {
                    let body = Bytes::from(body);
                    (body.clone(), body.slice(message))
                }
                None => Default::default(),
            }
        })
    }

    /// The stored protobuf body with the object's resourceVersion spliced in (framed as a watch event of
    /// `event_type` when given), as [`api_types::protobuf::with_resource_version`] gives it; `None` when the object
    /// is not stored as protobuf.
    fn spliced(&self, event_type: Option<&str>) -> Option<(Vec<u8>, std::ops::Range<usize>, std::ops::Range<usize>)> {
        let rv = meta_str(&self.0.value, "resourceVersion")?;
        api_types::protobuf::with_resource_version(self.0.stored.as_ref()?, rv, event_type)
    }

    /// One event of a watch of this object, as the watch handler writes it: a length-framed protobuf
    /// `WatchEvent`, or a line of JSON. When the object has not been encoded yet, it is encoded into the event's
    /// bytes, its encoding for responses and lists is a slice of them, and every watcher of the event shares them.
    pub fn watch_event(&self, event_type: &'static str, protobuf: bool) -> Bytes {
        let kept = &self.0.events[usize::from(protobuf)];
        if let Some((kept_type, event)) = kept.get()
            && *kept_type == event_type
        {
            return event.clone();
        }
        let (event, in_place) = self.frame(event_type, protobuf);
        if in_place {
            let _ = kept.set((event_type, event.clone()));
        }
        event
    }

    /// A new watch event of the object, and whether the object was encoded in it: its encoding framed, or the
    /// object encoded in place when it has none yet.
    fn frame(&self, event_type: &str, protobuf: bool) -> (Bytes, bool) {
        match (protobuf, self.0.json.get(), self.0.protobuf.get()) {
            (true, _, Some((body, _))) => (Bytes::from(api_types::protobuf::watch_frame(event_type, body)), false),
            (true, _, None) => match self
                .spliced(Some(event_type))
                .or_else(|| api_types::protobuf::encode_watch_frame(event_type, &self.0.value, self.cold()))
            {
                Some((frame, body, message)) => {
                    let frame = Bytes::from(frame);
                    let body = frame.slice(body);
                    let _ = self.0.protobuf.set((body.clone(), body.slice(message)));
                    (frame, true)
                }
                None => (Bytes::from(api_types::protobuf::watch_frame(event_type, self.protobuf())), false),
            },
            (false, Some(json), _) => {
                let mut line = Vec::with_capacity(json.len() + 32);
                line_start(&mut line, event_type);
                line.extend_from_slice(json);
                line.extend_from_slice(b"}\n");
                (Bytes::from(line), false)
            }
            (false, None, _) => {
                // A pod's JSON is a few kilobytes: a buffer of 1 KiB spares the four smaller steps of `to_vec`'s.
                let mut line = Vec::with_capacity(1024);
                line_start(&mut line, event_type);
                let start = line.len();
                serde_json::to_writer(&mut line, &self.0.value).unwrap_or_default();
                let end = line.len();
                line.extend_from_slice(b"}\n");
                let line = Bytes::from(line);
                let _ = self.0.json.set(line.slice(start..end));
                (line, true)
            }
        }
    }

    /// The object's JSON (the stored shape), encoded once.
    pub fn json(&self) -> &bytes::Bytes {
        self.0.json.get_or_init(|| serde_json::to_vec(&self.0.value).unwrap_or_default().into())
    }
}

/// The start of a JSON watch event line, up to its object.
fn line_start(line: &mut Vec<u8>, event_type: &str) {
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(event_type.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
}

impl std::ops::Deref for Shared {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.0.value
    }
}

/// What one write attempt stored: the object, and whether the write removed it (its last finalizer gone).
struct Written {
    object: Value,
    deleted: bool,
}

#[derive(Clone)]
pub struct Registry {
    pub store: Arc<Backend>,
    pub cacher: Arc<crate::cacher::Cacher>,
    /// Validating admission for writes made on behalf of an API request (set once at start).
    pub admission: Arc<std::sync::OnceLock<Arc<dyn crate::admission::Validating>>>,
    /// The served resources, custom ones with their schemas (shared with the apiserver).
    pub served: Arc<crate::apiextensions::served::Served>,
    /// Conversion of custom resources to a patch request's version through conversion webhooks (set once at start).
    pub converter: Arc<std::sync::OnceLock<Arc<dyn crate::apiextensions::conversion::Converter>>>,
    /// The ClusterIP and node port allocators Service writes go through (set once at start; without them Services
    /// are stored as given).
    pub service_allocators: Arc<std::sync::OnceLock<crate::service::Allocators>>,
    /// How built-in objects are written to storage (`--storage-media-type`).
    pub storage_media_type: StorageMediaType,
}

/// The storage key of an object.
pub fn key(res: &Resource, namespace: Option<&str>, name: &str) -> String {
    match (res.namespaced, namespace) {
        (true, Some(ns)) => format!("/{}/{ns}/{name}", res.storage),
        _ => format!("/{}/{name}", res.storage),
    }
}

/// The storage prefix of a collection, in one namespace or across all.
pub fn prefix(res: &Resource, namespace: Option<&str>) -> String {
    match (res.namespaced, namespace) {
        (true, Some(ns)) => format!("/{}/{ns}/", res.storage),
        _ => format!("/{}/", res.storage),
    }
}

pub fn storage_error(res: &Resource, name: &str, e: StorageError) -> ApiError {
    match e {
        StorageError::NotFound { .. } => ApiError::not_found(res.group, res.plural, name),
        StorageError::AlreadyExists { .. } => ApiError::already_exists(res.group, res.plural, name),
        StorageError::Conflict { .. } => ApiError::stale(res.group, res.plural, name),
        StorageError::Compacted { compact_revision, .. } => ApiError::gone(format!(
            "The resourceVersion for the provided list is too old (compacted to {compact_revision})"
        )),
        StorageError::FutureRevision { requested, current } => {
            ApiError::timeout(format!("Too large resource version: {requested}, current: {current}"))
        }
        StorageError::InvalidKey { key, reason } => ApiError::bad_request(format!("invalid name {key:?}: {reason}")),
        StorageError::Unavailable(m) => ApiError::unavailable(m),
    }
}

/// Decodes a stored value, protobuf or JSON, and sets its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj = decode_stored(&kv.key, &kv.value)?;
    set_rv(&mut obj, kv.mod_revision);
    Ok(obj)
}

/// A stored value as it is (without resourceVersion): a protobuf body (`k8s\0`), or JSON.
fn decode_stored(key: &str, value: &[u8]) -> Result<Value, ApiError> {
    if value.starts_with(api_types::protobuf::MAGIC) {
        return api_types::protobuf::decode_k8s_protobuf(value)
            .map_err(|e| ApiError::internal(format!("stored object {key} is not valid protobuf: {e}")));
    }
    serde_json::from_slice(value).map_err(|e| ApiError::internal(format!("stored object {key} is not JSON: {e}")))
}

/// How built-in objects are stored (`--storage-media-type`): as protobuf bodies, upstream's default, or as JSON.
/// Custom resources and kinds without a protobuf encoding are JSON either way, and reads take both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StorageMediaType {
    #[default]
    Protobuf,
    Json,
}

impl std::str::FromStr for StorageMediaType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            api_types::protobuf::CONTENT_TYPE => Ok(Self::Protobuf),
            "application/json" => Ok(Self::Json),
            other => Err(format!(
                "unsupported storage media type {other:?}: supported are \"application/json\" and \"{}\"",
                api_types::protobuf::CONTENT_TYPE
            )),
        }
    }
}

pub fn set_rv(obj: &mut Value, rev: Revision) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
    }
}

/// The stored form: without resourceVersion, and with apiVersion, kind and metadata first, so that
/// [`inject_rv`] finds the top-level metadata as the first `"metadata":{` in JSON, and the splice of
/// [`api_types::protobuf::with_resource_version`] finds it first in protobuf. As protobuf when `media` says so and
/// the kind has an encoding and the object comes back from it unchanged (else as JSON, as given).
pub fn encode(obj: &Value, media: StorageMediaType) -> Result<Bytes, ApiError> {
    let Some(src) = obj.as_object() else { return Err(ApiError::bad_request("the object must be a JSON object")) };
    let meta = src.get("metadata").and_then(Value::as_object);
    if meta.is_some_and(|m| m.contains_key("resourceVersion") || m.contains_key("selfLink")) {
        // An update's object: written without them (a create's never has them).
        let mut bare = obj.clone();
        if let Some(m) = bare.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("selfLink");
        }
        return encode(&bare, media);
    }
    if media == StorageMediaType::Protobuf
        && let Some(body) = api_types::protobuf::encode_object_lossless(obj)
    {
        return Ok(Bytes::from(body));
    }
    serde_json::to_vec(&StoredOrder(src)).map(Bytes::from).map_err(|e| ApiError::internal(e.to_string()))
}

/// An object's fields with apiVersion, kind and metadata first, serialized without a copy.
struct StoredOrder<'a>(&'a serde_json::Map<String, Value>);

impl serde::Serialize for StoredOrder<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        const FIRST: [&str; 3] = ["apiVersion", "kind", "metadata"];
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for k in FIRST {
            if let Some(v) = self.0.get(k) {
                m.serialize_entry(k, v)?;
            }
        }
        for (k, v) in self.0.iter().filter(|(k, _)| !FIRST.contains(&k.as_str())) {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A stored object as JSON with `metadata.resourceVersion` set. Stored JSON is spliced, without parsing it: inside
/// JSON strings quotes are escaped, so the first unescaped `"metadata":{` is a key, and [`encode`] puts the top-level
/// one before any nested one. Stored protobuf is decoded and encoded.
pub fn inject_rv(stored: &[u8], rev: Revision) -> Result<Bytes, ApiError> {
    const KEY: &[u8] = b"\"metadata\":{";
    let json = !stored.starts_with(api_types::protobuf::MAGIC);
    let Some(at) = stored.windows(KEY.len()).position(|w| w == KEY).filter(|_| json) else {
        let mut obj = decode_stored("", stored)?;
        set_rv(&mut obj, rev);
        return serde_json::to_vec(&obj).map(Bytes::from).map_err(|e| ApiError::internal(e.to_string()));
    };
    let split = at + KEY.len();
    let field = if stored.get(split) == Some(&b'}') {
        format!("\"resourceVersion\":\"{rev}\"")
    } else {
        format!("\"resourceVersion\":\"{rev}\",")
    };
    let mut out = Vec::with_capacity(stored.len() + field.len());
    out.extend_from_slice(&stored[..split]);
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(&stored[split..]);
    Ok(Bytes::from(out))
}

/// One object of a list: its stored bytes (without resourceVersion), with the storage key and revision they were
/// read at, or the watch cache's object, whose encodings are made once and shared by every list and watch that
/// serves it.
#[derive(Debug, Clone)]
pub enum Item {
    Raw { stored: Bytes, key: String, revision: Revision },
    Cached(Shared),
}

impl Item {
    pub fn value(&self) -> Result<Value, ApiError> {
        match self {
            Item::Raw { stored, key, revision } => {
                let mut obj = decode_stored(key, stored)?;
                set_rv(&mut obj, *revision);
                Ok(obj)
            }
            Item::Cached(v) => Ok((**v).clone()),
        }
    }

    /// The object's JSON: stored JSON with the resourceVersion spliced in, stored protobuf decoded and encoded, or
    /// the cache's encoding.
    pub fn json(&self) -> Result<std::borrow::Cow<'_, [u8]>, ApiError> {
        match self {
            Item::Raw { stored, revision, .. } => Ok(std::borrow::Cow::Owned(inject_rv(stored, *revision)?.into())),
            Item::Cached(v) => Ok(std::borrow::Cow::Borrowed(v.json())),
        }
    }

    /// The object's typed protobuf message (a list item): the cache's encoding, or stored protobuf with the
    /// resourceVersion spliced in. `None` for stored JSON, or a kind without protobuf.
    pub fn protobuf_message(&self) -> Option<std::borrow::Cow<'_, [u8]>> {
        match self {
            Item::Cached(v) => {
                Some(&v.protobuf_message()[..]).filter(|m| !m.is_empty()).map(std::borrow::Cow::Borrowed)
            }
            Item::Raw { stored, revision, .. } => {
                let (body, _, message) =
                    api_types::protobuf::with_resource_version(stored, &revision.to_string(), None)?;
                Some(std::borrow::Cow::Owned(body[message].to_vec()))
            }
        }
    }

    /// Whether the object is stored bytes that are protobuf.
    pub fn stored_as_protobuf(&self) -> bool {
        matches!(self, Item::Raw { stored, .. } if stored.starts_with(api_types::protobuf::MAGIC))
    }
}

/// Replaces the stored items of a list read from storage with the watch cache's objects at the same revision (the
/// same bytes: a revision is one write), when the cache of `res` runs: their encodings are made once and shared,
/// where a stored item would be decoded and encoded for each list. For the encoding that is not the stored one:
/// an item is served in its stored encoding by splicing its resourceVersion into the bytes, which is cheaper still.
pub fn share_cached(cacher: &crate::cacher::Cacher, res: &Resource, items: &mut [Item]) {
    let Some(cache) = cacher.started(res) else { return };
    let stored = items.iter().filter_map(|i| match i {
        Item::Raw { key, revision, .. } => Some((key.as_str(), *revision)),
        Item::Cached(_) => None,
    });
    let mut cached = cache.get_at(stored).into_iter();
    for item in items.iter_mut().filter(|i| matches!(i, Item::Raw { .. })) {
        if let Some(Some(shared)) = cached.next() {
            *item = Item::Cached(shared);
        }
    }
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn parse_rv(rv: &str) -> Result<Revision, ApiError> {
    rv.parse::<Revision>().map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))
}

/// Upstream's continue token: base64 of `{"v":"meta.k8s.io/v1","rv":N,"start":"<key after the prefix>"}`.
fn encode_continue(rev: Revision, start_after: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": format!("{start_after}\u{0}")});
    base64::engine::general_purpose::STANDARD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(Revision, String), ApiError> {
    let bad = || ApiError::bad_request("continue key is not valid: the continue token could not be decoded");
    let raw = base64::engine::general_purpose::STANDARD.decode(token).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    // rv -1: continue at the current revision (the token handed out with an expired one, as upstream).
    let rev = v.get("rv").and_then(Value::as_i64).filter(|r| *r > 0 || *r == -1).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    let start = start.strip_suffix('\u{0}').unwrap_or(start);
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    Ok((rev, start.to_string()))
}

/// Whether an object matches a list's label and field selectors.
pub fn matches(res: &Resource, obj: &Value, p: &ListParams) -> Result<bool, ApiError> {
    if let Some(sel) = &p.label_selector
        && !sel.matches_value(obj.get("metadata").and_then(|m| m.get("labels")))
    {
        return Ok(false);
    }
    if let Some(fs) = &p.field_selector {
        for req in fs.requirements() {
            if !strategy::field_supported(res, &req.field) {
                return Err(ApiError::bad_request(format!("field label not supported: {}", req.field)));
            }
        }
        return Ok(fs.matches(|f| strategy::field_value(res, obj, f)));
    }
    Ok(true)
}

impl Registry {
    pub fn new(store: Arc<Backend>) -> Self {
        let cacher = Arc::new(crate::cacher::Cacher::new(store.clone()));
        Registry {
            store,
            cacher,
            admission: Default::default(),
            served: Default::default(),
            converter: Default::default(),
            service_allocators: Default::default(),
            storage_media_type: StorageMediaType::default(),
        }
    }

    /// The Service allocators, for a write of a Service itself (not its status).
    fn service_allocators(&self, res: &Resource, subresource: Option<&str>) -> Option<&crate::service::Allocators> {
        let is_service = res.group.is_empty() && res.plural == "services" && subresource.is_none();
        is_service.then(|| self.service_allocators.get()).flatten()
    }

    /// Field checks of a decoded request object: unknown fields of a built-in kind dropped (or refused under
    /// Strict); a custom resource pruned and defaulted by its CRD's structural schema. Returns the Warn warnings.
    pub fn check_fields(
        &self,
        res: &Resource,
        obj: &mut Value,
        mode: FieldValidation,
    ) -> Result<Vec<String>, ApiError> {
        if !res.custom {
            return check_fields(res, obj, mode);
        }
        match self.served.load().custom_of(res) {
            Some(cv) => crate::apiextensions::customresource::normalize(cv, obj, mode),
            None => Ok(Vec::new()),
        }
    }

    /// A custom resource's schema validation (after the strategy's own), as a 422.
    fn validate_custom(&self, res: &Resource, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
        if !res.custom {
            return Ok(());
        }
        let snap = self.served.load();
        let Some(cv) = snap.custom_of(res) else { return Ok(()) };
        let causes = crate::apiextensions::customresource::validate(cv, obj, old);
        if causes.is_empty() {
            return Ok(());
        }
        Err(ApiError::invalid(res.group, res.kind, meta_str(obj, "name").unwrap_or_default(), causes))
    }

    /// Records the manager of an API request's write in `metadata.managedFields` (upstream's field manager, after
    /// decoding and defaulting: here after the strategy's defaults, with the fields it resets left out).
    /// `requested` is the managedFields the request carried. Apply writes arrive with theirs computed (kept through
    /// the strategy of a create); the apiserver's own writes (no request manager) are not recorded.
    fn track_write(
        &self,
        res: &Resource,
        subresource: Option<&str>,
        live: Option<&Value>,
        new: &mut Value,
        requested: Option<Value>,
    ) {
        let Some(fm) = crate::fieldmanager::current() else { return };
        if fm.apply {
            if live.is_none()
                && let Some(r) = requested
                && let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut)
            {
                meta.insert("managedFields".into(), r);
            }
            return;
        }
        let snap = self.served.load();
        let schema = snap.custom_of(res).and_then(|c| c.structural.as_ref());
        let ty = crate::fieldmanager::type_of(res, schema);
        let reset = crate::fieldmanager::reset_fields(strategy::has_status_subresource(res), subresource);
        crate::fieldmanager::update(ty, &reset, live, new, requested.as_ref(), &fm);
    }

    /// Server-side apply of `config` (in `served`'s version) to the stored object or its status: the merge, its
    /// managedFields and conflicts computed inside the write's retry loop, as upstream's apply patcher.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        config: &Value,
        dry_run: bool,
        force: bool,
        served: &Resource,
    ) -> Result<Value, ApiError> {
        let fm = crate::fieldmanager::current().ok_or_else(|| ApiError::internal("apply without a field manager"))?;
        self.write_loop(
            res,
            ns,
            name,
            dry_run,
            |_rev, cur| {
                let snap = self.served.load();
                let schema = snap.custom_of(served).and_then(|c| c.structural.as_ref());
                let ty = crate::fieldmanager::type_of(served, schema);
                let reset = crate::fieldmanager::reset_fields(strategy::has_status_subresource(served), subresource);
                let external = crate::convert::to_external(served, cur.clone());
                let merged = crate::fieldmanager::apply(ty, &reset, Some(&external), config, &fm, force)?;
                Ok(crate::convert::to_internal(served, merged))
            },
            subresource,
        )
        .await
    }

    /// The user of the API request a write is made for, taken once per write; None for the apiserver's own writes,
    /// which admission skips.
    fn admission_user(&self) -> Option<crate::auth::UserInfo> {
        self.admission.get()?;
        crate::admission::current_user()
    }

    /// Validating admission: the built-in plugins, then the validating webhooks (none apply: nothing awaited).
    async fn admit(&self, r: &crate::admission::Request<'_>) -> Result<(), ApiError> {
        let Some(v) = self.admission.get() else { return Ok(()) };
        v.validate(r)?;
        if let Some(webhooks) = v.validate_webhooks(r) {
            webhooks.await?;
        }
        Ok(())
    }

    /// Mutating webhooks on the object about to be written (None for a delete).
    async fn mutate(&self, r: &crate::admission::Request<'_>, object: Option<&mut Value>) -> Result<(), ApiError> {
        let Some(v) = self.admission.get() else { return Ok(()) };
        if let Some(webhooks) = v.mutate_webhooks(r, object) {
            webhooks.await?;
        }
        Ok(())
    }

    pub async fn get(&self, res: &Resource, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        decode(&self.get_stored(res, ns, name).await?)
    }

    /// An object as stored, with its revision.
    pub async fn get_stored(&self, res: &Resource, ns: Option<&str>, name: &str) -> Result<KeyValue, ApiError> {
        self.store.get(&key(res, ns, name), None).await.map_err(|e| storage_error(res, name, e))
    }

    async fn get_kv(&self, res: &Resource, ns: Option<&str>, name: &str) -> Result<(KeyValue, Value), ApiError> {
        let kv = self.get_stored(res, ns, name).await?;
        let obj = decode(&kv)?;
        Ok((kv, obj))
    }

    /// A page of objects matching the selectors, following upstream's resourceVersion and continue rules.
    pub async fn list(&self, res: &'static Resource, ns: Option<&str>, p: &ListParams) -> Result<ListPage, ApiError> {
        if p.resource_version.as_deref() == Some("0") && p.continue_token.is_none() {
            // "Any" resourceVersion: served from the watch cache, limit ignored (as upstream's cacher).
            let cache = self.cacher.cache(res).await?;
            let (items, rev) = cache.list_shared(ns, p)?;
            let items = items.into_iter().map(Item::Cached).collect();
            return Ok(ListPage { items, resource_version: rev, continue_token: None, remaining: None });
        }
        let pfx = prefix(res, ns);
        let (mut at, mut start_after) = (None, None);
        if let Some(token) = &p.continue_token {
            let (rev, start) = decode_continue(token)?;
            at = (rev > 0).then_some(rev);
            start_after = Some(format!("{pfx}{start}"));
        } else if let Some(rv) = p.resource_version.as_deref().filter(|rv| !rv.is_empty()) {
            let rev = parse_rv(rv)?;
            // "0" means any version (served as the current state); an exact match pins the read.
            if rev > 0 && p.resource_version_match.as_deref() == Some("Exact") {
                at = Some(rev);
            } else if rev > 0 {
                self.wait_for_revision(res, rev).await?;
            }
        }
        let filtering = p.label_selector.as_ref().is_some_and(|s| !s.is_empty()) || p.field_selector.is_some();
        let mut items = Vec::new();
        let mut revision;
        loop {
            let want = if p.limit == 0 {
                0
            } else if filtering {
                p.limit.max(500)
            } else {
                p.limit - items.len()
            };
            let page = self
                .store
                .list(&pfx, ListOptions { start_after: start_after.clone(), at_revision: at, limit: want })
                .await
                .map_err(|e| match e {
                    StorageError::Compacted { .. } if p.continue_token.is_some() => {
                        let start = start_after.as_deref().and_then(|k| k.strip_prefix(&pfx)).unwrap_or_default();
                        ApiError {
                            continue_token: Some(encode_continue(-1, start)),
                            ..ApiError::gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
                        }
                    }
                    e => storage_error(res, "", e),
                })?;
            revision = page.revision;
            at = Some(page.revision);
            let mut last_key = None;
            for kv in &page.items {
                last_key = Some(kv.key.clone());
                let keep = !filtering || matches(res, &decode(kv)?, p)?;
                if keep {
                    items.push(Item::Raw { stored: kv.value.clone(), key: kv.key.clone(), revision: kv.mod_revision });
                    if p.limit > 0 && items.len() >= p.limit {
                        break;
                    }
                }
            }
            let exhausted_page = last_key.as_ref() == page.items.last().map(|kv| &kv.key);
            let more = page.more || !exhausted_page;
            if p.limit > 0 && items.len() >= p.limit && more {
                let last = last_key.unwrap_or_default();
                let token = encode_continue(revision, last.strip_prefix(&pfx).unwrap_or(&last));
                let remaining = (!filtering && exhausted_page).then_some(page.remaining);
                return Ok(ListPage { items, resource_version: revision, continue_token: Some(token), remaining });
            }
            if !page.more {
                break;
            }
            start_after = last_key;
        }
        Ok(ListPage { items, resource_version: revision, continue_token: None, remaining: None })
    }

    /// Checks a field selector against the resource before any work (unknown fields are a 400).
    pub fn check_field_selector(res: &Resource, fs: &FieldSelector) -> Result<(), ApiError> {
        for req in fs.requirements() {
            if !strategy::field_supported(res, &req.field) {
                return Err(ApiError::bad_request(format!("field label not supported: {}", req.field)));
            }
        }
        Ok(())
    }

    /// Namespaced objects may only be created in a namespace that exists and is not terminating.
    async fn check_namespace(&self, res: &Resource, ns: &str, name: &str) -> Result<(), ApiError> {
        let ns_res =
            api_types::resources::find("", "v1", "namespaces").ok_or_else(|| ApiError::internal("no namespaces"))?;
        // From the watch cache (upstream's NamespaceLifecycle reads its informer); a namespace the cache has not
        // seen yet, e.g. created a moment ago, is read from storage.
        let cached = self.cacher.cache(ns_res).await?.get(&key(ns_res, None, ns));
        let namespace = match cached {
            Some(n) => n,
            None => Shared::new(self.get(ns_res, None, ns).await?),
        };
        let terminating = namespace.pointer("/metadata/deletionTimestamp").is_some()
            || namespace.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating");
        if terminating {
            return Err(ApiError::forbidden(format!(
                "{} {name:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                res.qualified()
            )));
        }
        Ok(())
    }

    /// Creates an object (201): defaulting, validation, uid, creationTimestamp, generateName, generation.
    pub async fn create(&self, res: &Resource, ns: Option<&str>, obj: Value, dry_run: bool) -> Result<Value, ApiError> {
        self.create_stored(res, ns, obj, dry_run).await.map(|c| c.object)
    }

    /// [`Self::create`], also giving the bytes the object was stored as.
    pub async fn create_stored(
        &self,
        res: &Resource,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Created, ApiError> {
        if res.custom {
            self.check_fields(res, &mut obj, FieldValidation::Ignore)?;
        }
        let requested = obj.pointer("/metadata/managedFields").cloned();
        strategy::prepare_create(res, ns, &mut obj)?;
        self.track_write(res, None, None, &mut obj, requested);
        // A Service's ClusterIPs and node ports are allocated before validation, as upstream's BeginCreate; a
        // create that fails gives them back.
        let txn = match self.service_allocators(res, None) {
            Some(al) => Some(crate::service::storage::begin_create(al, &mut obj, dry_run).await?),
            None => None,
        };
        let out = self.create_prepared(res, ns, obj, dry_run).await;
        if let Some(t) = txn {
            match &out {
                Ok(_) => t.commit().await,
                Err(_) => t.revert().await,
            }
        }
        out
    }

    /// The rest of a create once the object is prepared: validation, admission, the write.
    async fn create_prepared(
        &self,
        res: &Resource,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Created, ApiError> {
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        strategy::validate(res, &obj, None)?;
        self.validate_custom(res, &obj, None)?;
        if let Some(ns) = ns.filter(|_| res.namespaced && res.plural != "namespaces") {
            self.check_namespace(res, ns, &name).await?;
        }
        if let Some(user) = self.admission_user() {
            let r = crate::admission::Request {
                operation: crate::admission::Operation::Create,
                resource: res,
                subresource: "",
                namespace: ns.unwrap_or_default(),
                name: &name,
                object: Some(&obj),
                old: None,
                user: &user,
                dry_run,
            };
            self.admit(&r).await?;
        }
        let ttl = strategy::ttl(res);
        if dry_run {
            if self.store.get(&key(res, ns, &name), None).await.is_ok() {
                return Err(ApiError::already_exists(res.group, res.plural, &name));
            }
            return Ok(Created { object: obj, stored: None });
        }
        // A generated name that is taken is generated again (upstream's RetryGenerateName: 8 attempts in all).
        let generated = obj.pointer("/metadata/generateName").and_then(Value::as_str).filter(|g| !g.is_empty());
        let prefix = generated.filter(|g| name.starts_with(*g)).map(str::to_string);
        let mut name = name;
        let mut attempts = 0;
        let (kv, stored) = loop {
            let stored = encode(&obj, self.storage_media_type)?;
            match self.store.create(&key(res, ns, &name), stored.clone(), ttl).await {
                Ok(kv) => break (kv, stored),
                Err(crate::storage::StorageError::AlreadyExists { .. }) if prefix.is_some() && attempts < 7 => {
                    attempts += 1;
                    name = format!("{}{}", prefix.as_deref().unwrap_or_default(), strategy::name_suffix());
                    obj["metadata"]["name"] = json!(name);
                }
                Err(e) => return Err(storage_error(res, &name, e)),
            }
        };
        set_rv(&mut obj, kv.mod_revision);
        Ok(Created { object: obj, stored: Some(stored) })
    }

    /// Replaces an object (PUT) or its status; 409 on a stale resourceVersion.
    pub async fn update(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        body: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if meta_str(&body, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta_str(&body, "name").unwrap_or_default()
            )));
        }
        let pinned = meta_str(&body, "resourceVersion").filter(|rv| !rv.is_empty()).map(parse_rv).transpose()?;
        self.write_loop(
            res,
            ns,
            name,
            dry_run,
            |cur_rev, _cur| {
                if pinned.is_some_and(|p| p != cur_rev) {
                    return Err(ApiError::stale(res.group, res.plural, name));
                }
                Ok(body.clone())
            },
            subresource,
        )
        .await
    }

    /// Applies a patch to the stored object and writes the result, retrying on concurrent changes unless the
    /// patch pins a resourceVersion.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        patch_type: PatchType,
        patch: &[u8],
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.patch_checked(res, ns, name, subresource, patch_type, patch, dry_run, FieldValidation::Ignore, res)
            .await
            .map(|(v, _)| v)
    }

    /// Patch with field validation of the patched object; returns the warnings for `Warn`.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch_checked(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        patch_type: PatchType,
        patch: &[u8],
        dry_run: bool,
        mode: FieldValidation,
        served: &Resource,
    ) -> Result<(Value, Vec<String>), ApiError> {
        let warnings = std::sync::Mutex::new(Vec::new());
        let out = self
            .write_loop(
                res,
                ns,
                name,
                dry_run,
                |cur_rev, cur| {
                    // The patch applies to the object as the client's version shows it.
                    let external = match self.converter.get() {
                        Some(c) if served.custom => c.to_request_version(served, cur.clone())?,
                        _ => crate::convert::to_external(served, cur.clone()),
                    };
                    let mut patched =
                        apply_patch(&external, patch_type, patch, Some(served.kind)).map_err(patch_error)?;
                    if let Some(rv) = meta_str(&patched, "resourceVersion").filter(|rv| !rv.is_empty())
                        && parse_rv(rv)? != cur_rev
                    {
                        return Err(ApiError::stale(res.group, res.plural, name));
                    }
                    let w = self.check_fields(served, &mut patched, mode)?;
                    if let Ok(mut all) = warnings.lock() {
                        *all = w;
                    }
                    Ok(crate::convert::to_internal(served, patched))
                },
                subresource,
            )
            .await?;
        Ok((out, warnings.into_inner().unwrap_or_default()))
    }

    /// Read, compute the new object, CAS-write; retries when someone else wrote in between.
    async fn write_loop(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        dry_run: bool,
        compute: impl Fn(Revision, &Value) -> Result<Value, ApiError>,
        subresource: Option<&str>,
    ) -> Result<Value, ApiError> {
        let user = self.admission_user();
        for _ in 0..16 {
            let (kv, cur) = self.get_kv(res, ns, name).await?;
            let mut new = compute(kv.mod_revision, &cur)?;
            // Mutating webhooks see the object as the request made it, before the strategy (upstream's order, inside
            // the retry as its GuaranteedUpdate).
            if let Some(user) = &user {
                let r = crate::admission::Request {
                    operation: crate::admission::Operation::Update,
                    resource: res,
                    subresource: subresource.unwrap_or_default(),
                    namespace: ns.unwrap_or_default(),
                    name,
                    object: None,
                    old: Some(&cur),
                    user,
                    dry_run,
                };
                self.mutate(&r, Some(&mut new)).await?;
            }
            if res.custom {
                // Every write of a custom resource (status and scale too) is pruned and defaulted.
                self.check_fields(res, &mut new, FieldValidation::Ignore)?;
            }
            // A Service's allocations follow its new type and ports before the strategy runs (upstream's
            // BeginUpdate, on the object defaulted as its decoder leaves it); committed once written, reverted
            // when the write fails or is retried.
            let txn = match self.service_allocators(res, subresource) {
                Some(al) => {
                    crate::defaults::apply(res, &mut new, false);
                    Some(crate::service::storage::begin_update(al, &mut new, &cur, dry_run).await?)
                }
                None => None,
            };
            let out =
                self.write_once(res, ns, name, subresource, dry_run, user.as_ref(), kv.mod_revision, cur, new).await;
            if let Some(t) = txn {
                match &out {
                    Ok(Some(_)) => t.commit().await,
                    _ => t.revert().await,
                }
            }
            match out? {
                None => continue,
                Some(Written { object, deleted }) => {
                    if deleted && let Some(al) = self.service_allocators(res, None) {
                        crate::service::storage::after_delete(al, &object).await;
                    }
                    return Ok(object);
                }
            }
        }
        Err(ApiError::stale(res.group, res.plural, name))
    }

    /// One attempt of [`Self::write_loop`] on the object read at `rev`: strategy, validation, admission and the
    /// compare-and-swap write. None when someone else wrote first.
    #[allow(clippy::too_many_arguments)]
    async fn write_once(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        dry_run: bool,
        user: Option<&crate::auth::UserInfo>,
        rev: Revision,
        cur: Value,
        mut new: Value,
    ) -> Result<Option<Written>, ApiError> {
        let requested = new.pointer("/metadata/managedFields").cloned();
        strategy::prepare_update(res, subresource, &cur, &mut new)?;
        self.track_write(res, subresource, Some(&cur), &mut new, requested);
        strategy::validate(res, &new, Some(&cur))?;
        self.validate_custom(res, &new, Some(&cur))?;
        if let Some(user) = user {
            let r = crate::admission::Request {
                operation: crate::admission::Operation::Update,
                resource: res,
                subresource: subresource.unwrap_or_default(),
                namespace: ns.unwrap_or_default(),
                name,
                object: Some(&new),
                old: Some(&cur),
                user,
                dry_run,
            };
            self.admit(&r).await?;
        }
        let mut cur_cmp = cur.clone();
        set_rv(&mut new, rev);
        set_rv(&mut cur_cmp, rev);
        if new == cur_cmp {
            // A no-op write changes nothing, not even the resourceVersion.
            return Ok(Some(Written { object: cur, deleted: false }));
        }
        // The last finalizer removed from an object being deleted: it goes away now. A namespace also waits
        // for its spec.finalizers, which only the finalize subresource removes.
        let deleting = new.pointer("/metadata/deletionTimestamp").is_some();
        let empty = |p: &str| new.pointer(p).and_then(Value::as_array).is_none_or(|f| f.is_empty());
        let finalizers_empty = empty("/metadata/finalizers")
            && (res.plural != "namespaces" || !res.group.is_empty() || empty("/spec/finalizers"));
        if dry_run {
            return Ok(Some(Written { object: new, deleted: false }));
        }
        let deleted = deleting && finalizers_empty && !strategy::graceful_pending(res, &new);
        let written = if deleted {
            self.cas_delete(res, ns, name, rev).await?
        } else {
            self.cas_put(res, ns, name, &new, rev).await?
        };
        let Some(rev) = written else { return Ok(None) };
        set_rv(&mut new, rev);
        Ok(Some(Written { object: new, deleted }))
    }

    /// One compare-and-swap write over the revision the object was read at: Some(new revision) when written, None
    /// when someone else wrote first (the caller reads again and retries).
    async fn cas_put(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        obj: &Value,
        rev: Revision,
    ) -> Result<Option<Revision>, ApiError> {
        match self
            .store
            .update(&key(res, ns, name), encode(obj, self.storage_media_type)?, rev, strategy::ttl(res))
            .await
        {
            Ok(w) => Ok(Some(w.mod_revision)),
            Err(StorageError::Conflict { .. }) => Ok(None),
            Err(e) => Err(storage_error(res, name, e)),
        }
    }

    /// Deletes an object if it is still at the revision it was read at; as [`Self::cas_put`].
    async fn cas_delete(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        rev: Revision,
    ) -> Result<Option<Revision>, ApiError> {
        match self.store.delete(&key(res, ns, name), Some(rev)).await {
            Ok((deleted_at, _)) => Ok(Some(deleted_at)),
            Err(StorageError::Conflict { .. }) => Ok(None),
            Err(e) => Err(storage_error(res, name, e)),
        }
    }

    /// Writes an object exactly as given (no strategy), if it is still at the revision it was read at: for
    /// pods/binding, which sets spec.nodeName and a status condition together.
    pub async fn bind(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        mut new: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let rv = meta_str(&new, "resourceVersion").map(parse_rv).transpose()?.unwrap_or(0);
        if dry_run {
            return Ok(new);
        }
        let written = self
            .store
            .update(&key(res, ns, name), encode(&new, self.storage_media_type)?, rv, None)
            .await
            .map_err(|e| storage_error(res, name, e))?;
        set_rv(&mut new, written.mod_revision);
        Ok(new)
    }

    /// `namespaces/<name>/finalize`: sets spec.finalizers; a terminating namespace left with no finalizers of
    /// either kind is deleted.
    pub async fn finalize(
        &self,
        res: &Resource,
        name: &str,
        finalizers: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        for _ in 0..16 {
            let (kv, cur) = self.get_kv(res, None, name).await?;
            let mut new = cur.clone();
            new["spec"]["finalizers"] = finalizers.clone();
            let empty = |v: Option<&Value>| v.and_then(Value::as_array).is_none_or(|a| a.is_empty());
            let gone = new.pointer("/metadata/deletionTimestamp").is_some()
                && empty(new.pointer("/spec/finalizers"))
                && empty(new.pointer("/metadata/finalizers"));
            if dry_run {
                return Ok(new);
            }
            let written = if gone {
                self.cas_delete(res, None, name, kv.mod_revision).await?
            } else {
                self.cas_put(res, None, name, &new, kv.mod_revision).await?
            };
            let Some(rev) = written else { continue };
            set_rv(&mut new, rev);
            return Ok(new);
        }
        Err(ApiError::stale(res.group, res.plural, name))
    }

    /// Deletes an object, honouring preconditions, finalizers, propagation and pods' graceful deletion.
    pub async fn delete(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        p: &DeleteParams,
    ) -> Result<Deleted, ApiError> {
        let user = self.admission_user();
        for _ in 0..16 {
            let (kv, cur) = self.get_kv(res, ns, name).await?;
            if let Some(uid) = &p.precondition_uid
                && meta_str(&cur, "uid") != Some(uid.as_str())
            {
                return Err(ApiError::conflict(
                    res.group,
                    res.plural,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&cur, "uid").unwrap_or_default()
                    ),
                ));
            }
            if let Some(rv) = &p.precondition_rv
                && parse_rv(rv)? != kv.mod_revision
            {
                return Err(ApiError::conflict(
                    res.group,
                    res.plural,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        kv.mod_revision
                    ),
                ));
            }
            if let Some(user) = &user {
                let r = crate::admission::Request {
                    operation: crate::admission::Operation::Delete,
                    resource: res,
                    subresource: "",
                    namespace: ns.unwrap_or_default(),
                    name,
                    object: None,
                    old: Some(&cur),
                    user,
                    dry_run: p.dry_run,
                };
                self.mutate(&r, None).await?;
                self.admit(&r).await?;
            }
            let mut new = cur.clone();
            let keep = strategy::prepare_delete(res, &mut new, p)?;
            if keep {
                if new == cur {
                    return Ok(Deleted::Pending(cur));
                }
                if p.dry_run {
                    return Ok(Deleted::Pending(new));
                }
                let Some(rev) = self.cas_put(res, ns, name, &new, kv.mod_revision).await? else { continue };
                set_rv(&mut new, rev);
                return Ok(Deleted::Pending(new));
            }
            if p.dry_run {
                return Ok(Deleted::Gone(cur));
            }
            if self.cas_delete(res, ns, name, kv.mod_revision).await?.is_some() {
                // A deleted Service's ClusterIPs and node ports are free again (upstream's AfterDelete).
                if let Some(al) = self.service_allocators(res, None) {
                    crate::service::storage::after_delete(al, &cur).await;
                }
                return Ok(Deleted::Gone(cur));
            }
        }
        Err(ApiError::stale(res.group, res.plural, name))
    }

    /// Waits (up to 3 s, as upstream) for the store to reach a revision a client asked for; then 504
    /// "Too large resource version".
    async fn wait_for_revision(&self, res: &Resource, rev: Revision) -> Result<(), ApiError> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            let current = self.store.current_revision().await.map_err(|e| storage_error(res, "", e))?;
            if rev <= current {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::timeout(format!("Too large resource version: {rev}, current: {current}")));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Starts an API watch, served by the watch cache: the events after `resourceVersion`, or (unset or "0")
    /// the current objects as ADDED followed by what happens next.
    pub async fn watch(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        p: ListParams,
        bookmarks: bool,
    ) -> Result<tokio::sync::mpsc::Receiver<WatchEvent>, ApiError> {
        let from = p.resource_version.as_deref().filter(|rv| !rv.is_empty() && *rv != "0").map(parse_rv).transpose()?;
        let cache = self.cacher.cache(res).await?;
        if let Some(rev) = from {
            self.wait_for_revision(res, rev).await?;
        }
        match from {
            // Older than the cache's history (e.g. the cache started after the client listed): storage has it.
            Some(rev) if rev < cache.floor(&p) => self.direct_watch(res, ns, rev, p, bookmarks).await,
            _ => cache.watch(ns, from, p, bookmarks),
        }
    }

    /// A watch straight from storage history, for resourceVersions the cache no longer (or never) held.
    async fn direct_watch(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        from: Revision,
        p: ListParams,
        bookmarks: bool,
    ) -> Result<tokio::sync::mpsc::Receiver<WatchEvent>, ApiError> {
        let mut stream = self.store.watch(&prefix(res, ns), from).await.map_err(|e| storage_error(res, "", e))?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                let out = match item {
                    Err(StorageError::Compacted { compact_revision, .. }) => Some(WatchEvent::Error(ApiError::gone(
                        format!("too old resource version: {from} ({compact_revision})"),
                    ))),
                    Err(e) => Some(WatchEvent::Error(storage_error(res, "", e))),
                    Ok(Event::Progress { revision }) => bookmarks.then_some(WatchEvent::Bookmark(revision)),
                    Ok(Event::Put { kv, prev }) => {
                        let old = prev.as_ref().and_then(|prev| Shared::decode(prev).ok());
                        let Ok(new) = Shared::decode(&kv) else {
                            continue;
                        };
                        crate::cacher::selection_change(res, &p, Some(&new), old.as_ref(), kv.mod_revision, None)
                    }
                    Ok(Event::Delete { revision, prev, .. }) => {
                        let Some(Ok(old)) = prev.as_ref().map(Shared::decode) else {
                            continue;
                        };
                        crate::cacher::selection_change(res, &p, None, Some(&old), revision, None)
                    }
                };
                if let Some(out) = out {
                    let last = matches!(out, WatchEvent::Error(_));
                    if tx.send(out).await.is_err() || last {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}

/// Patch failures with upstream's codes: 400 for a malformed patch, 422 when it cannot apply, 413 for too many
/// operations, 500 for the strategic-merge failures upstream reports as internal.
fn patch_error(e: api_types::patch::PatchError) -> ApiError {
    match e.status_code() {
        400 => ApiError::bad_request(e.to_string()),
        413 => ApiError::new(413, "RequestEntityTooLarge", e.to_string()),
        422 => ApiError::new(422, "Invalid", e.to_string()),
        _ => ApiError::internal(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One protobuf encoding serves a watch event (the body, framed) and a list (the message, a slice of it), read
    /// ahead or not; the JSON event is the object's JSON in a line; a kind without protobuf gives empty bytes.
    #[test]
    fn shared_encodings_of_a_watch_event_and_a_list_item() {
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n"},
                                      "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        let message = api_types::protobuf::encode_message_of(&pod).unwrap();
        let within = |part: &[u8], whole: &Bytes| whole.as_ptr_range().contains(&part.as_ptr());
        for encoded_first in [true, false] {
            let shared = Shared::new(pod.clone());
            if encoded_first {
                assert_eq!(shared.protobuf_message()[..], message[..]);
                assert_eq!(shared.json()[..], serde_json::to_vec(&pod).unwrap()[..]);
            }
            let frame = shared.watch_event("ADDED", true);
            let line = shared.watch_event("ADDED", false);
            assert_eq!(shared.protobuf()[..], api_types::protobuf::envelope("v1", "Pod", &message)[..]);
            assert_eq!(shared.protobuf_message()[..], message[..]);
            assert_eq!(frame[..], api_types::protobuf::watch_frame("ADDED", shared.protobuf())[..]);
            let event: Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(event, serde_json::json!({"type": "ADDED", "object": pod}));
            assert!(line.ends_with(b"}\n"));
            assert_eq!(shared.json()[..], serde_json::to_vec(&pod).unwrap()[..]);
            // Encoded into the first event when nothing was encoded before: the object's encodings are its slices.
            assert_eq!(within(shared.protobuf(), &frame), !encoded_first);
            assert_eq!(within(shared.protobuf_message(), &frame), !encoded_first);
            assert_eq!(within(shared.json(), &line), !encoded_first);
            // Every watcher of the event gets the same bytes when the object was encoded into them; an event
            // framed around an earlier encoding is not kept (it would be a second copy of the object).
            assert_eq!(shared.watch_event("ADDED", true).as_ptr() == frame.as_ptr(), !encoded_first);
            assert_eq!(shared.watch_event("ADDED", false).as_ptr() == line.as_ptr(), !encoded_first);
            // Another type (an ADDED replayed after a MODIFIED was sent) is its own event, from the same encoding.
            let deleted = shared.watch_event("DELETED", true);
            assert_eq!(deleted[..], api_types::protobuf::watch_frame("DELETED", shared.protobuf())[..]);
            let deleted = shared.watch_event("DELETED", false);
            let event: Value = serde_json::from_slice(&deleted).unwrap();
            assert_eq!(event, serde_json::json!({"type": "DELETED", "object": pod}));
            assert_eq!(shared.watch_event("ADDED", true).as_ptr() == frame.as_ptr(), !encoded_first);
        }
        let custom = Shared::new(serde_json::json!({"apiVersion": "example.com/v1", "kind": "Widget"}));
        let frame = custom.watch_event("ADDED", true);
        assert_eq!(frame[..], api_types::protobuf::watch_frame("ADDED", &[])[..]);
        assert!(custom.protobuf().is_empty() && custom.protobuf_message().is_empty());
    }

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = encode_continue(42, "default/web-1");
        assert_eq!(decode_continue(&t).unwrap(), (42, "default/web-1".to_string()));
        assert_eq!(decode_continue("not base64!").unwrap_err().code, 400);
        let evil = base64::engine::general_purpose::STANDARD.encode(r#"{"v":"meta.k8s.io/v1","rv":1,"start":"../x"}"#);
        assert_eq!(decode_continue(&evil).unwrap_err().code, 400);
    }

    /// Built-in objects are stored as protobuf by default (upstream's `--storage-media-type`), and read back the same;
    /// one whose protobuf would not give it back (a number in a string map) is stored as JSON, as given; objects stored
    /// as JSON before are read, updated (and then stored as protobuf), listed and watched alike.
    #[tokio::test]
    async fn objects_are_stored_as_protobuf_unless_it_would_change_them() {
        let (_dir, mut reg) = registry_with_default_namespace().await;
        let cms = api_types::resources::find("", "v1", "configmaps").unwrap();
        let stored =
            async |reg: &Registry, name: &str| reg.store.get(&key(cms, Some("default"), name), None).await.unwrap();
        let cm = reg.create(cms, Some("default"), json!({"metadata": {"name": "pb"}, "data": {"k": "v"}}), false).await;
        let kv = stored(&reg, "pb").await;
        assert!(kv.value.starts_with(api_types::protobuf::MAGIC), "{:?}", kv.value);
        assert_eq!(decode(&kv).unwrap(), cm.unwrap());
        let odd = json!({"metadata": {"name": "odd"}, "data": {"n": 1}});
        let created = reg.create(cms, Some("default"), odd, false).await.unwrap();
        let kv = stored(&reg, "odd").await;
        assert!(kv.value.starts_with(b"{"), "kept as JSON");
        assert_eq!(decode(&kv).unwrap()["data"], json!({"n": 1}));
        assert_eq!(decode(&kv).unwrap(), created);
        // Written as JSON (`--storage-media-type=application/json`), then read and updated as protobuf.
        reg.storage_media_type = StorageMediaType::Json;
        reg.create(cms, Some("default"), json!({"metadata": {"name": "js"}, "data": {"k": "v"}}), false).await.unwrap();
        assert!(stored(&reg, "js").await.value.starts_with(b"{"));
        reg.storage_media_type = StorageMediaType::Protobuf;
        let page = reg.list(cms, Some("default"), &ListParams::default()).await.unwrap();
        let names: Vec<_> = page.items.iter().map(|i| i.value().unwrap()["metadata"]["name"].clone()).collect();
        assert_eq!(names, ["js", "odd", "pb"]);
        let protobuf: Vec<bool> = page.items.iter().map(Item::stored_as_protobuf).collect();
        assert_eq!(protobuf, [false, false, true]);
        for item in &page.items {
            let json: Value = serde_json::from_slice(&item.json().unwrap()).unwrap();
            assert_eq!(json, item.value().unwrap());
        }
        let mut js = reg.get(cms, Some("default"), "js").await.unwrap();
        js["data"]["k"] = json!("w");
        reg.update(cms, Some("default"), "js", None, js, false).await.unwrap();
        let kv = stored(&reg, "js").await;
        assert!(kv.value.starts_with(api_types::protobuf::MAGIC));
        assert_eq!(decode(&kv).unwrap()["data"]["k"], "w");
    }

    /// A list read from storage (no resourceVersion) takes the watch cache's objects at the same revision, whose
    /// protobuf encodings are shared; an object the cache holds at another revision, or a cache not started, keeps
    /// the stored bytes.
    #[tokio::test]
    async fn stored_list_items_share_the_cache_objects_of_their_revision() {
        let (_dir, reg) = registry_with_default_namespace().await;
        let cms = api_types::resources::find("", "v1", "configmaps").unwrap();
        for name in ["a", "b"] {
            reg.create(cms, Some("default"), json!({"metadata": {"name": name}, "data": {"k": name}}), false)
                .await
                .unwrap();
        }
        let page = reg.list(cms, Some("default"), &ListParams::default()).await.unwrap();
        let mut items = page.items.clone();
        share_cached(&reg.cacher, cms, &mut items);
        assert!(items.iter().all(|i| matches!(i, Item::Raw { .. })), "no cache started: stored bytes");

        let cache = reg.cacher.cache(cms).await.unwrap();
        let mut items = page.items.clone();
        // The second item as read at an older revision than the cache's object.
        if let Item::Raw { revision, .. } = &mut items[1] {
            *revision -= 1;
        }
        share_cached(&reg.cacher, cms, &mut items);
        let Item::Cached(shared) = &items[0] else { panic!("the cache's object at the stored revision: {items:?}") };
        let key = key(cms, Some("default"), "a");
        assert!(Arc::ptr_eq(&shared.0, &cache.get(&key).unwrap().0), "the cache's own object");
        assert!(matches!(items[1], Item::Raw { .. }), "another revision keeps the stored bytes");
        // The same object either way, in the same bytes: stored as protobuf (the default), the stored item's
        // encodings are its bytes with the resourceVersion spliced in (protobuf) or decoded and encoded (JSON).
        assert!(page.items[0].stored_as_protobuf());
        assert_eq!(items[0].value().unwrap(), page.items[0].value().unwrap());
        let message = items[0].protobuf_message().unwrap();
        assert_eq!(message, page.items[0].protobuf_message().unwrap());
        assert_eq!(items[0].json().unwrap(), page.items[0].json().unwrap());
        let body = api_types::protobuf::envelope("v1", "ConfigMap", &message);
        assert_eq!(api_types::protobuf::decode_k8s_protobuf(&body).unwrap(), page.items[0].value().unwrap());
    }

    /// A registry on a fresh SQLite store (kept while the directory lives) with the `default` namespace.
    async fn registry_with_default_namespace() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::storage::sqlite::SqliteStore::open(crate::storage::sqlite::SqliteConfig::in_dir(dir.path()))
            .unwrap();
        let reg = Registry::new(Arc::new(Backend::Sqlite(store)));
        let ns = api_types::resources::find("", "v1", "namespaces").unwrap();
        reg.create(ns, None, json!({"metadata": {"name": "default"}}), false).await.unwrap();
        (dir, reg)
    }

    /// The next event of a watch, as (type, name, node).
    async fn next_event(rx: &mut tokio::sync::mpsc::Receiver<WatchEvent>) -> (String, String, String) {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        let (ty, o) = match ev {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            other => panic!("unexpected {other:?}"),
        };
        let node = o.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default();
        (ty.to_string(), meta_str(&o, "name").unwrap().to_string(), node.to_string())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_watch_sees_exactly_the_pods_entering_and_leaving_its_node() {
        let (_dir, reg) = registry_with_default_namespace().await;
        let pods = api_types::resources::find("", "v1", "pods").unwrap();
        let pod = |name: &str, node: &str| json!({"metadata": {"name": name}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}});
        reg.create(pods, Some("default"), pod("before", "n1"), false).await.unwrap();
        let on_n1 = || ListParams {
            field_selector: Some(FieldSelector::parse("spec.nodeName=n1").unwrap()),
            ..Default::default()
        };
        // From "now": the pod already there comes first, as ADDED.
        let mut n1 = reg.watch(pods, None, on_n1(), false).await.unwrap();
        assert_eq!(next_event(&mut n1).await, ("ADDED".into(), "before".into(), "n1".into()));
        let mut all = reg.watch(pods, Some("default"), ListParams::default(), false).await.unwrap();
        assert_eq!(next_event(&mut all).await.1, "before");

        reg.create(pods, Some("default"), pod("elsewhere", "n2"), false).await.unwrap();
        let unbound = reg.create(pods, Some("default"), pod("moving", ""), false).await.unwrap();
        let mut bound = unbound.clone();
        bound["spec"]["nodeName"] = json!("n1");
        reg.bind(pods, Some("default"), "moving", bound, false).await.unwrap();
        let gone = DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
        reg.delete(pods, Some("default"), "before", &gone).await.unwrap();
        let mut later = reg.create(pods, Some("default"), pod("later", "n2"), false).await.unwrap();
        later["metadata"]["labels"] = json!({"x": "y"});
        reg.update(pods, Some("default"), "later", None, later, false).await.unwrap();

        // The node's watch: the pod bound to n1 arrives as ADDED, the deleted one leaves; n2's pods never show.
        assert_eq!(next_event(&mut n1).await, ("ADDED".into(), "moving".into(), "n1".into()));
        assert_eq!(next_event(&mut n1).await, ("DELETED".into(), "before".into(), "n1".into()));
        assert!(tokio::time::timeout(std::time::Duration::from_millis(300), n1.recv()).await.is_err());
        // The cluster-wide watch sees every change in order.
        let mut seen = Vec::new();
        for _ in 0..6 {
            let (ty, name, _) = next_event(&mut all).await;
            seen.push(format!("{ty} {name}"));
        }
        assert_eq!(
            seen,
            ["ADDED elsewhere", "ADDED moving", "MODIFIED moving", "DELETED before", "ADDED later", "MODIFIED later"]
        );

        // A new node watch resuming from an older resourceVersion replays that node's events only.
        let rv = meta_str(&unbound, "resourceVersion").unwrap().to_string();
        let from = ListParams { resource_version: Some(rv), ..on_n1() };
        let mut again = reg.watch(pods, None, from, false).await.unwrap();
        assert_eq!(next_event(&mut again).await, ("ADDED".into(), "moving".into(), "n1".into()));
        assert_eq!(next_event(&mut again).await, ("DELETED".into(), "before".into(), "n1".into()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn paging_pins_a_revision_and_expires_with_compaction() {
        let (_dir, reg) = registry_with_default_namespace().await;
        let cms = api_types::resources::find("", "v1", "configmaps").unwrap();
        for n in ["a", "b", "c"] {
            reg.create(cms, Some("default"), json!({"metadata": {"name": n}}), false).await.unwrap();
        }
        let first = reg.list(cms, Some("default"), &ListParams { limit: 2, ..Default::default() }).await.unwrap();
        assert_eq!(first.items.len(), 2);
        assert_eq!(first.remaining, Some(1));
        let token = first.continue_token.clone().unwrap();
        // A write after the first page does not show up in the next one.
        reg.create(cms, Some("default"), json!({"metadata": {"name": "d"}}), false).await.unwrap();
        let p = ListParams { limit: 2, continue_token: Some(token.clone()), ..Default::default() };
        let second = reg.list(cms, Some("default"), &p).await.unwrap();
        let names: Vec<_> =
            second.items.iter().map(|o| meta_str(&o.value().unwrap(), "name").unwrap().to_string()).collect();
        assert_eq!(names, ["c"]);
        assert!(second.continue_token.is_none());
        // Once history is compacted past the token's revision, the token is 410 Expired.
        let now = reg.store.current_revision().await.unwrap();
        reg.store.compact(now).await.unwrap();
        let err = reg.list(cms, Some("default"), &p).await.unwrap_err();
        assert_eq!((err.code, err.reason), (410, "Expired"));
        // The Status carries a fresh token that continues at the current revision, after the same key.
        let fresh = ListParams { limit: 2, continue_token: err.continue_token.clone(), ..Default::default() };
        let rest = reg.list(cms, Some("default"), &fresh).await.unwrap();
        let names: Vec<_> =
            rest.items.iter().map(|o| meta_str(&o.value().unwrap(), "name").unwrap().to_string()).collect();
        assert_eq!(names, ["c", "d"]);
        // Label selectors page through until the page is full.
        let sel =
            ListParams { label_selector: Some(LabelSelector::parse("x=y").unwrap()), limit: 1, ..Default::default() };
        assert!(reg.list(cms, Some("default"), &sel).await.unwrap().items.is_empty());
    }

    #[test]
    fn resource_version_is_spliced_into_stored_bytes() {
        for media in [StorageMediaType::Json, StorageMediaType::Protobuf] {
            let obj = json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}}}}, "metadata": {"name": "x", "resourceVersion": "9"}, "kind": "Deployment", "apiVersion": "apps/v1"});
            let stored = encode(&obj, media).unwrap();
            assert_eq!(stored.starts_with(api_types::protobuf::MAGIC), media == StorageMediaType::Protobuf);
            let out: Value = serde_json::from_slice(&inject_rv(&stored, 42).unwrap()).unwrap();
            assert_eq!(out["metadata"]["resourceVersion"], "42");
            assert!(out["spec"]["template"]["metadata"].get("resourceVersion").is_none());
            // A kind without protobuf is stored as JSON either way.
            let empty = encode(&json!({"kind": "X", "metadata": {}}), media).unwrap();
            let out: Value = serde_json::from_slice(&inject_rv(&empty, 1).unwrap()).unwrap();
            assert_eq!(out["metadata"], json!({"resourceVersion": "1"}));
            let tricky =
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"annotations": {"a": "\"metadata\":{"}}});
            let out: Value = serde_json::from_slice(&inject_rv(&encode(&tricky, media).unwrap(), 3).unwrap()).unwrap();
            assert_eq!(out["metadata"]["resourceVersion"], "3");
            assert_eq!(out["metadata"]["annotations"], tricky["metadata"]["annotations"]);
        }
    }

    #[test]
    fn keys_follow_upstream_layout() {
        let svc = api_types::resources::find("", "v1", "services").unwrap();
        assert_eq!(key(svc, Some("default"), "kubernetes"), "/services/specs/default/kubernetes");
        let node = api_types::resources::find("", "v1", "nodes").unwrap();
        assert_eq!(key(node, None, "n1"), "/minions/n1");
        assert_eq!(prefix(svc, None), "/services/specs/");
    }
}
