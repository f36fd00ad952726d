//! Encoding JSON objects as Kubernetes protobuf (responses to clients whose `Accept` prefers
//! `application/vnd.kubernetes.protobuf`), with the same descriptor tables the decoder reads.
//!
//! An object is the `k8s\0` magic and a `runtime.Unknown` envelope around the typed message ([`encode_object`]); a
//! list is written from its items' message bytes ([`encode_list`]) so the watch cache can encode each object once
//! ([`encode_message_of`]) and reuse it for every list and watcher; a watch event is a `meta.v1.WatchEvent` framed
//! with a 4-byte big-endian length, as upstream's length-delimited protobuf stream ([`watch_frame`], or
//! [`encode_watch_frame`], which encodes the object in place for its first watcher).
//!
//! Fields are written in the object's key order (in tag order where a message embeds a struct inline). A field
//! absent from the JSON (or `null`) is not written; the decoders on the other side (client-go's generated code,
//! prost) read an absent field as its zero value, which is also what upstream's JSON encoding means by leaving it
//! out. A JSON value of the wrong type for its field (a number where a string belongs)
//! is skipped rather than failing the whole response.

use serde_json::{Map, Value};

use super::{Field, Kind, MAGIC, Message, Special, find_root};

const WIRE_VARINT: u32 = 0;
const WIRE_64: u32 = 1;
const WIRE_LEN: u32 = 2;

/// Whether objects of this apiVersion and kind have a protobuf encoding (custom resources and `Table` do not).
pub fn supports(api_version: &str, kind: &str) -> bool {
    find_root(api_version, kind).is_some()
}

/// The typed message of an object just decoded or built (no envelope, no read-ahead), or `None` when its kind has
/// no protobuf encoding.
pub fn encode_message_of(obj: &Value) -> Option<Vec<u8>> {
    let (api_version, kind) = type_meta(obj)?;
    let message = find_root(api_version, kind)?;
    let mut w = Writer::with_capacity(1024);
    w.fields(message, obj.as_object()?, 0);
    Some(w.finish())
}

/// An object as a full Kubernetes protobuf body (`k8s\0` + `runtime.Unknown`), or `None` when its kind has no
/// protobuf encoding.
pub fn encode_object(obj: &Value) -> Option<Vec<u8>> {
    encode_object_parts(obj, false).map(|(body, _)| body)
}

/// The protobuf body of an object to store, or `None` when its kind has no protobuf encoding or when decoding the
/// body would not give the object back: a value of the wrong type for its field (a number in a string map), a key
/// its kind does not have, an int32 out of range. The encoder skips such values in a response; storage keeps the
/// object as JSON instead, as given.
pub fn encode_object_lossless(obj: &Value) -> Option<Vec<u8>> {
    let root = Root::of(obj)?;
    let mut w = Writer::with_capacity(1024);
    w.object(&root, false);
    (!w.lossy).then(|| w.finish())
}

/// An object's full protobuf body and where its typed message (a list item's bytes) lies in it, so one encoding
/// serves both. `cold`: the object has likely left the CPU caches (a list's items), and is read ahead of the
/// encoding ([`touch`]); an object just decoded or built (a watch event, a response) is encoded straight away.
pub fn encode_object_parts(obj: &Value, cold: bool) -> Option<(Vec<u8>, std::ops::Range<usize>)> {
    let root = Root::of(obj)?;
    let mut w = Writer::with_capacity(1024);
    let range = w.object(&root, cold);
    Some((w.finish(), range))
}

/// One event of a protobuf watch stream for `obj` (the bytes of `watch_frame(event_type, &encode_object(obj))`), with
/// the object's body and its typed message encoded in place: where the body lies in the frame, and where the message
/// lies in the body (as [`encode_object_parts`] gives it). The first watcher of an event encodes the object into its
/// frame, with no copy, and the body and message serve responses and lists as slices of the same bytes. `None` when
/// the object's kind has no protobuf encoding.
pub fn encode_watch_frame(
    event_type: &str,
    obj: &Value,
    cold: bool,
) -> Option<(Vec<u8>, std::ops::Range<usize>, std::ops::Range<usize>)> {
    let root = Root::of(obj)?;
    let mut w = Writer::with_capacity(1024);
    w.buf.extend_from_slice(&[0; 4]);
    w.string(1, event_type);
    // object = RawExtension{raw = body}: a pod's body is some hundred bytes, so two bytes are reserved for each
    // length (moved, as any nested message, when the guess is wrong).
    let mut in_body = 0..0;
    w.nested_in(2, 2, |w| {
        w.nested_in(1, 2, |w| {
            let start = w.buf.len();
            let range = w.object(&root, cold);
            in_body = range.start - start..range.end - start;
        })
    });
    let len = (w.buf.len() - 4) as u32;
    w.buf[..4].copy_from_slice(&len.to_be_bytes());
    // The body starts after the event type and the two keys and lengths before it.
    let mut at = 4 + 1 + varint_at(&w.buf[5..]) + event_type.len();
    for _ in 0..2 {
        at += 1 + varint_at(&w.buf[at + 1..]);
    }
    let body = at..w.buf.len();
    Some((w.finish(), body, in_body))
}

/// An object to encode whole: its apiVersion and kind, the message of its kind, and its fields.
struct Root<'a> {
    obj: &'a Value,
    api_version: &'a str,
    kind: &'a str,
    message: &'static Message,
    fields: &'a Map<String, Value>,
}

impl<'a> Root<'a> {
    /// `None` when the object's kind has no protobuf encoding.
    fn of(obj: &'a Value) -> Option<Self> {
        let (api_version, kind) = type_meta(obj)?;
        Some(Root { obj, api_version, kind, message: find_root(api_version, kind)?, fields: obj.as_object()? })
    }
}

/// The length of the varint at the start of `b`.
fn varint_at(b: &[u8]) -> usize {
    b.iter().position(|b| b & 0x80 == 0).map_or(b.len(), |i| i + 1)
}

/// `k8s\0` + `runtime.Unknown{typeMeta{apiVersion, kind}, raw, contentEncoding: "", contentType: ""}`.
pub fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(raw.len() + api_version.len() + kind.len() + 16);
    w.buf.extend_from_slice(MAGIC);
    w.nested(1, |w| {
        w.string(1, api_version);
        w.string(2, kind);
    });
    w.bytes(2, raw);
    w.string(3, "");
    w.string(4, "");
    w.buf
}

/// A list (`PodList`...) from its `metadata` (a ListMeta) and its items as objects, enveloped; each item is written
/// in place, with no buffer of its own. `None` when the list kind or an item's kind has no protobuf encoding.
pub fn encode_list_of<'a>(
    api_version: &str,
    kind: &str,
    metadata: &Value,
    items: impl IntoIterator<Item = &'a Value>,
) -> Option<Vec<u8>> {
    let message = find_root(api_version, kind)?;
    let mut w = Writer::with_capacity(4096);
    w.buf.extend_from_slice(MAGIC);
    w.nested(1, |w| {
        w.string(1, api_version);
        w.string(2, kind);
    });
    let mut ok = true;
    let mut queue = Vec::new();
    // A list's raw bytes are megabytes: four bytes of length (up to 256 MiB) spare moving them.
    w.nested_in(2, 4, |w| {
        if let (Some(Field { kind: Kind::Message(m), .. }), Some(obj)) =
            (message.fields.iter().find(|f| f.tag == 1), metadata.as_object())
        {
            w.nested(1, |w| w.fields(m, obj, 1));
        }
        for item in items {
            let item_message = type_meta(item).and_then(|(v, k)| find_root(v, k));
            match (item_message, item.as_object()) {
                (Some(m), Some(obj)) => {
                    touch(item, &mut w.seen, &mut queue);
                    w.nested_in(2, m.length_guess, |w| w.fields(m, obj, 1))
                }
                _ => ok = false,
            }
        }
    });
    w.string(3, "");
    w.string(4, "");
    ok.then_some(w.finish())
}

/// A list (`PodList`...) from its `metadata` (a ListMeta) and the typed message bytes of its items, enveloped.
/// The list's length is known before it is written, so the items are copied once, into a buffer of the exact size
/// (a LIST served from the watch cache is little more than this copy).
pub fn encode_list(api_version: &str, kind: &str, metadata: &Value, items: &[&[u8]]) -> Option<Vec<u8>> {
    let message = find_root(api_version, kind)?;
    let meta = message.fields.iter().find(|f| f.tag == 1)?;
    let mut head = Writer::default();
    if let (Kind::Message(m), Some(obj)) = (meta.kind, metadata.as_object()) {
        head.nested(1, |w| w.fields(m, obj, 1));
    }
    let head = head.finish();
    // Each item is field 2: a one-byte key, its length, its bytes.
    let items_len: usize = items.iter().map(|i| 1 + varint_len(i.len() as u64) + i.len()).sum();
    let raw_len = head.len() + items_len;
    let mut w = Writer::with_capacity(raw_len + api_version.len() + kind.len() + 32);
    w.buf.extend_from_slice(MAGIC);
    w.nested(1, |w| {
        w.string(1, api_version);
        w.string(2, kind);
    });
    // The envelope's `raw` (field 2), written in place.
    w.key(2, WIRE_LEN);
    w.varint(raw_len as u64);
    w.buf.extend_from_slice(&head);
    for item in items {
        w.bytes(2, item);
    }
    w.string(3, "");
    w.string(4, "");
    Some(w.finish())
}

/// One event of a protobuf watch stream: the length (4 bytes, big-endian) and a raw `meta.v1.WatchEvent`
/// (type=1, object=2 a `RawExtension` whose raw=1 holds the object's full protobuf body).
pub fn watch_frame(event_type: &str, object_body: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(object_body.len() + 32);
    w.buf.extend_from_slice(&[0; 4]);
    w.string(1, event_type);
    // object = RawExtension{raw: body}; its length is known, so the body is not moved after the fact.
    w.key(2, WIRE_LEN);
    w.varint((1 + varint_len(object_body.len() as u64) + object_body.len()) as u64);
    w.bytes(1, object_body);
    let len = (w.buf.len() - 4) as u32;
    w.buf[..4].copy_from_slice(&len.to_be_bytes());
    w.buf
}

/// Whether `field` is a map (a JSON object of entries, written as repeated entry messages).
fn is_map(field: &Field) -> bool {
    matches!(field.kind, Kind::MapString | Kind::MapBytes | Kind::MapMessage(_))
}

/// Whether `key` is the JSON name of a field of `m` or of a struct it embeds.
fn knows(m: &Message, key: &str) -> bool {
    m.fields.iter().any(|f| match f.kind {
        Kind::Inline(inner) => knows(inner, key),
        _ => f.json == key,
    })
}

/// Whether any field of `m` (or of the structs it embeds) is in `obj`.
fn present(m: &Message, obj: &Map<String, Value>) -> bool {
    m.fields.iter().any(|f| match f.kind {
        Kind::Inline(inner) => present(inner, obj),
        _ => get(obj, f.json).is_some(),
    })
}

/// Reads a byte of everything `root` points to (keys, strings, nested objects and arrays) before the object is
/// encoded. The objects of a large LIST or of a busy watch are mostly out of cache, and the encoder, branching on
/// each field's type, would wait on their cache misses one after the other; this walk has few branches and goes
/// level by level (`queue` is its work list), so the misses of all the objects of one level overlap. What is read
/// is folded into `seen`, so the loads stay.
fn touch<'a>(root: &'a Value, seen: &mut usize, queue: &mut Vec<&'a Value>) {
    let first = |b: &[u8]| b.first().map_or(0, |b| usize::from(*b));
    queue.clear();
    queue.push(root);
    let mut next = 0;
    while let Some(value) = queue.get(next).copied() {
        next += 1;
        let mut visit = |key: &[u8], value: &'a Value| {
            *seen ^= first(key);
            match value {
                Value::String(s) => *seen ^= first(s.as_bytes()),
                Value::Object(_) | Value::Array(_) => queue.push(value),
                _ => {}
            }
        };
        match value {
            Value::Object(map) => map.iter().for_each(|(key, value)| visit(key.as_bytes(), value)),
            Value::Array(items) => items.iter().for_each(|item| visit(&[], item)),
            _ => {}
        }
    }
}

/// `obj[name]`, by comparing keys rather than hashing `name`: objects with inline structs (probes, volumes) have a
/// few keys, fewer than the hasher's rounds.
fn get<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter().find(|(k, _)| k.len() == name.len() && *k == name).map(|(_, v)| v)
}

/// The object's apiVersion and kind. Its keys are searched in order rather than hashed: they are few at the top of
/// an object, and these two come first.
fn type_meta(obj: &Value) -> Option<(&str, &str)> {
    let (mut api_version, mut kind) = (None, None);
    for (key, value) in obj.as_object()? {
        match key.as_str() {
            "apiVersion" => api_version = Some(value.as_str()?),
            "kind" => kind = Some(value.as_str()?),
            _ => continue,
        }
        if let (Some(v), Some(k)) = (api_version, kind) {
            return Some((v, k));
        }
    }
    None
}

#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
    /// What [`touch`] read.
    seen: usize,
    /// Whether a value was skipped (of the wrong type, or under a key the message does not have).
    lossy: bool,
}

impl Writer {
    /// An object's full protobuf body (`k8s\0` + `runtime.Unknown`), appended; where its typed message lies in the
    /// buffer. `cold`: the object has likely left the CPU caches (a list's items), and is read ahead of the encoding
    /// ([`touch`]); an object just decoded or built (a watch event, a response) is encoded straight away.
    fn object(&mut self, root: &Root<'_>, cold: bool) -> std::ops::Range<usize> {
        if cold {
            touch(root.obj, &mut self.seen, &mut Vec::new());
        }
        self.buf.extend_from_slice(MAGIC);
        self.nested(1, |w| {
            w.string(1, root.api_version);
            w.string(2, root.kind);
        });
        // raw: its key, its length, then the message, which the two empty strings after it end.
        let key = self.buf.len();
        self.nested_in(2, 2, |w| w.fields(root.message, root.fields, 0));
        let (start, end) = (key + 1 + varint_at(&self.buf[key + 1..]), self.buf.len());
        self.string(3, "");
        self.string(4, "");
        start..end
    }

    fn with_capacity(capacity: usize) -> Self {
        Writer { buf: Vec::with_capacity(capacity), seen: 0, lossy: false }
    }

    fn finish(self) -> Vec<u8> {
        std::hint::black_box(self.seen);
        self.buf
    }

    #[inline(always)]
    fn varint(&mut self, v: u64) {
        if v < 0x80 {
            self.buf.push(v as u8);
        } else {
            self.long_varint(v);
        }
    }

    #[inline(never)]
    fn long_varint(&mut self, v: u64) {
        let mut bytes = [0u8; 10];
        let n = varint_into(&mut bytes, v);
        self.buf.extend_from_slice(&bytes[..n]);
    }

    #[inline(always)]
    fn key(&mut self, tag: u32, wire: u32) {
        self.varint(u64::from(tag << 3 | wire));
    }

    fn bytes(&mut self, tag: u32, b: &[u8]) {
        self.key(tag, WIRE_LEN);
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    fn string(&mut self, tag: u32, s: &str) {
        self.bytes(tag, s.as_bytes());
    }

    fn int(&mut self, tag: u32, v: i64) {
        self.key(tag, WIRE_VARINT);
        // Negative int32s and int64s are ten-byte two's complement varints, as Go writes them.
        self.varint(v as u64);
    }

    /// A length-delimited field whose content `f` writes: one byte is reserved for the length and the content is
    /// moved when the length needs more.
    #[inline]
    fn nested(&mut self, tag: u32, f: impl FnOnce(&mut Writer)) {
        self.nested_in(tag, 1, f)
    }

    /// A length-delimited field whose length is expected to take `guess` bytes: that many are reserved before `f`
    /// writes the content, which is moved only when the guess was wrong (a pod's ObjectMeta, PodSpec and
    /// PodStatus are a few hundred bytes: reserving one byte moved each of them, and their parents again).
    #[inline]
    fn nested_in(&mut self, tag: u32, guess: usize, f: impl FnOnce(&mut Writer)) {
        self.key(tag, WIRE_LEN);
        let at = self.buf.len();
        self.buf.resize(at + guess, 0);
        f(self);
        let end = self.buf.len();
        let len = end - at - guess;
        if guess == 1 && len < 0x80 {
            self.buf[at] = len as u8;
            return;
        }
        self.patch_length(at, guess, len);
    }

    /// Writes the varint `len` at `at`, where `guess` bytes were reserved, moving the `len` bytes after them when
    /// the varint is longer or shorter than the reservation.
    #[inline(never)]
    fn patch_length(&mut self, at: usize, guess: usize, len: usize) {
        let mut prefix = [0u8; 10];
        let n = varint_into(&mut prefix, len as u64);
        let content = at + guess..at + guess + len;
        if n > guess {
            self.buf.resize(content.end + n - guess, 0);
            self.buf.copy_within(content, at + n);
        } else if n < guess {
            self.buf.copy_within(content, at + n);
            self.buf.truncate(at + n + len);
        }
        self.buf[at..at + n].copy_from_slice(&prefix[..n]);
    }

    /// The fields of `message` found in `obj`: in the object's key order (each key found through the message's
    /// [`FieldIndex`](super::fieldindex::FieldIndex), one probe), or in tag order for messages that embed structs
    /// inline, whose fields must be gathered into one nested message.
    fn fields(&mut self, message: &'static Message, obj: &Map<String, Value>, depth: usize) {
        self.fields_in(message, obj, depth, false)
    }

    /// [`Self::fields`]; `inline`: `message` is a struct embedded in the message `obj` belongs to, whose other keys
    /// are its parent's (which checks that every key is someone's).
    fn fields_in(&mut self, message: &'static Message, obj: &Map<String, Value>, depth: usize, inline: bool) {
        if depth > super::MAX_DEPTH {
            return;
        }
        if !message.has_inline {
            let mut prev = super::fieldindex::START;
            for (key, value) in obj {
                match message.index.find_following(message.fields, key, prev) {
                    Some((at, field)) => {
                        self.field(field, value, depth);
                        prev = at;
                    }
                    // The parent's key (for an embedded struct), or Go's TypeMeta of an embedded object (a
                    // StatefulSet's volumeClaimTemplates), which its protobuf message leaves out, as upstream's does.
                    None if inline || key == "apiVersion" || key == "kind" => {}
                    None => self.lossy = true,
                }
            }
            return;
        }
        if !inline && !obj.keys().all(|key| knows(message, key)) {
            self.lossy = true;
        }
        for field in message.fields {
            if let Kind::Inline(m) = field.kind {
                // The embedded struct's fields live in this same JSON object.
                if present(m, obj) {
                    self.nested_in(field.tag, m.length_guess, |w| w.fields_in(m, obj, depth + 1, true));
                }
                continue;
            }
            if let Some(value) = get(obj, field.json) {
                self.field(field, value, depth);
            }
        }
    }

    /// One field's JSON value.
    fn field(&mut self, field: &'static Field, value: &Value, depth: usize) {
        {
            match value {
                // Go's zero `Time` is JSON null and an empty message on the wire (creationTimestamp of a template).
                Value::Null if matches!(field.kind, Kind::Message(m) if matches!(m.special, Special::Time | Special::MicroTime)) =>
                {
                    self.nested(field.tag, |_| {});
                }
                Value::Null => {}
                Value::Array(items) if field.repeated && !is_map(field) => {
                    for item in items {
                        self.value(field, item, depth);
                    }
                }
                Value::Object(map) if matches!(field.kind, Kind::MapString | Kind::MapBytes | Kind::MapMessage(_)) => {
                    for (k, v) in map {
                        self.nested(field.tag, |w| {
                            w.string(1, k);
                            match field.kind {
                                Kind::MapMessage(m) => w.message(2, m, v, depth + 1),
                                Kind::MapBytes => match v.as_str().and_then(base64_decode) {
                                    Some(b) => w.bytes(2, &b),
                                    None => w.lossy = true,
                                },
                                _ => match v.as_str() {
                                    Some(s) => w.string(2, s),
                                    None => w.lossy = true,
                                },
                            }
                        });
                    }
                }
                _ if !field.repeated && !is_map(field) => self.value(field, value, depth),
                _ => self.lossy = true,
            }
        }
    }

    /// One (non-map) value of `field`.
    fn value(&mut self, field: &Field, value: &Value, depth: usize) {
        let tag = field.tag;
        match field.kind {
            Kind::String => match value.as_str() {
                Some(s) => self.string(tag, s),
                None => self.lossy = true,
            },
            Kind::Bytes => match value.as_str().and_then(base64_decode) {
                Some(b) => self.bytes(tag, &b),
                None => self.lossy = true,
            },
            Kind::Bool => match value.as_bool() {
                Some(b) => {
                    self.key(tag, WIRE_VARINT);
                    self.buf.push(u8::from(b));
                }
                None => self.lossy = true,
            },
            Kind::Int32 | Kind::Int64 => {
                let v = value.as_i64().or_else(|| value.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64));
                match v {
                    Some(v) if matches!(field.kind, Kind::Int64) || i32::try_from(v).is_ok() => self.int(tag, v),
                    _ => self.lossy = true,
                }
            }
            Kind::Double => match value.as_f64() {
                Some(f) => {
                    self.key(tag, WIRE_64);
                    self.buf.extend_from_slice(&f.to_le_bytes());
                }
                None => self.lossy = true,
            },
            Kind::Message(m) => self.message(tag, m, value, depth + 1),
            Kind::Inline(_) | Kind::MapString | Kind::MapBytes | Kind::MapMessage(_) => self.lossy = true,
        }
    }

    /// A message-typed field: an object of fields, or one of the messages with a JSON form of their own.
    fn message(&mut self, tag: u32, m: &'static Message, value: &Value, depth: usize) {
        if depth > super::MAX_DEPTH {
            return;
        }
        match m.special {
            Special::None => match value.as_object() {
                Some(obj) => self.nested_in(tag, m.length_guess, |w| w.fields(m, obj, depth)),
                None => self.lossy = true,
            },
            Special::Time | Special::MicroTime => {
                if value.is_null() {
                    self.nested(tag, |_| {});
                } else if let Some((seconds, nanos)) = value.as_str().and_then(parse_rfc3339) {
                    self.nested(tag, |w| {
                        w.int(1, seconds);
                        if nanos != 0 && m.special == Special::MicroTime {
                            w.int(2, nanos);
                        }
                    });
                } else {
                    self.lossy = true;
                }
            }
            Special::Duration => match value.as_str().and_then(parse_go_duration) {
                Some(nanos) => self.nested(tag, |w| w.int(1, nanos)),
                None => self.lossy = true,
            },
            Special::Quantity => match value {
                Value::String(s) => self.nested(tag, |w| w.string(1, s)),
                Value::Number(n) => {
                    let s = n.to_string();
                    self.nested(tag, |w| w.string(1, &s));
                }
                _ => self.lossy = true,
            },
            Special::IntOrString => match value {
                Value::String(s) => self.nested(tag, |w| {
                    w.int(1, 1);
                    w.string(3, s);
                }),
                Value::Number(n) => {
                    let v = n.as_i64().filter(|v| i32::try_from(*v).is_ok());
                    self.lossy |= v.is_none();
                    self.nested(tag, |w| {
                        w.int(1, 0);
                        w.int(2, v.unwrap_or_default());
                    })
                }
                _ => self.lossy = true,
            },
            Special::RawExtension | Special::FieldsV1 => {
                let raw = serde_json::to_vec(value).unwrap_or_default();
                self.nested(tag, |w| w.bytes(1, &raw));
            }
            Special::StringList => match value.as_array() {
                Some(items) => {
                    self.lossy |= !items.iter().all(Value::is_string);
                    self.nested(tag, |w| {
                        for s in items.iter().filter_map(Value::as_str) {
                            w.string(1, s);
                        }
                    });
                }
                None => self.lossy = true,
            },
            Special::SchemaOrArray | Special::SchemaOrBool | Special::SchemaOrStringArray => {
                self.nested(tag, |w| w.schema_union(m, value, depth));
            }
        }
    }

    /// apiextensions' schema unions, as their upstream `UnmarshalJSON` reads the JSON form.
    fn schema_union(&mut self, m: &'static Message, value: &Value, depth: usize) {
        let field = |tag: u32| m.fields.iter().find(|f| f.tag == tag);
        match (m.special, value) {
            (Special::SchemaOrBool, Value::Bool(b)) => {
                self.key(1, WIRE_VARINT);
                self.buf.push(u8::from(*b));
            }
            (Special::SchemaOrBool, Value::Object(_)) => {
                self.key(1, WIRE_VARINT);
                self.buf.push(1);
                if let Some(f) = field(2) {
                    self.value(f, value, depth);
                }
            }
            (_, Value::Array(items)) => {
                if let Some(f) = field(2) {
                    for item in items {
                        self.value(f, item, depth);
                    }
                }
            }
            (_, Value::Object(_)) => {
                if let Some(f) = field(1) {
                    self.value(f, value, depth);
                }
            }
            _ => {}
        }
    }
}

/// The length of `v` as a varint.
pub(super) fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// `v` as a varint at the start of `out`; its length.
#[inline]
fn varint_into(out: &mut [u8; 10], mut v: u64) -> usize {
    let mut n = 0;
    while v >= 0x80 {
        out[n] = v as u8 | 0x80;
        v >>= 7;
        n += 1;
    }
    out[n] = v as u8;
    n + 1
}

/// `2024-01-02T03:04:05Z` or with a fraction and/or an offset → (Unix seconds, nanoseconds).
fn parse_rfc3339(s: &str) -> Option<(i64, i64)> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| digits(b.get(r)?);
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, m, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = s.get(19..)?;
    let mut nanos = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        // Nanoseconds: the first 9 digits, padded with zeros.
        let kept = digits(&frac.as_bytes()[..n.min(9)])?;
        nanos = kept * 10i64.pow(9 - n.min(9) as u32);
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, om) = (digits(rest.as_bytes().get(1..3)?)?, digits(rest.as_bytes().get(4..6)?)?);
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + h * 3600 + m * 60 + sec - offset, nanos))
}

/// A run of ASCII digits as a number (0 when empty).
fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |n, c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Go's duration strings (`1m30s`, `-1.5h`, `300ms`, `2us`, `10ns`) → nanoseconds.
fn parse_go_duration(s: &str) -> Option<i64> {
    let (sign, mut rest) = match s.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest.bytes().take_while(|c| c.is_ascii_digit() || *c == b'.').count();
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let unit_len = rest.bytes().take_while(|c| !c.is_ascii_digit() && *c != b'.').count();
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    Some((sign * total).round() as i64)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    }
    let data: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').collect();
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    for chunk in data.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::protobuf::decode_k8s_protobuf;

    #[test]
    fn times_durations_and_base64() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(parse_rfc3339("2024-01-02T03:04:05.123456Z"), Some((1_704_164_645, 123_456_000)));
        assert_eq!(parse_rfc3339("2024-01-02T04:04:05+01:00"), Some((1_704_164_645, 0)));
        assert_eq!(parse_rfc3339("2024-01-02T03:04:05.Z"), Some((1_704_164_645, 0)));
        assert_eq!(parse_rfc3339("2024-01-02T03:04:05.1234567891Z"), Some((1_704_164_645, 123_456_789)));
        assert_eq!(parse_rfc3339("2024-01-02T03:04:05.5-00:30"), Some((1_704_166_445, 500_000_000)));
        assert_eq!(parse_rfc3339("2024-01-02T03:04:0xZ"), None);
        assert_eq!(parse_go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_go_duration("-1.5h"), Some(-5_400_000_000_000));
        assert_eq!(parse_go_duration("2us"), Some(2_000));
        assert_eq!(base64_decode("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(base64_decode("aGVsbG8"), Some(b"hello".to_vec()));
        for v in [0, 1, 127, 128, 16_383, 16_384, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(varint_len(v), varint_into(&mut [0; 10], v), "{v}");
        }
    }

    #[test]
    fn an_object_survives_encoding_and_decoding() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "labels": {"a": "b"},
                         "creationTimestamp": "2024-01-02T03:04:05Z", "generation": 3},
            "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 80}],
                                     "resources": {"limits": {"cpu": "500m"}},
                                     "livenessProbe": {"httpGet": {"port": "http", "path": "/"}}}],
                     "volumes": [{"name": "v", "emptyDir": {}}]},
            "status": {"phase": "Running", "startTime": "2024-01-02T03:04:06Z"}
        });
        let body = encode_object(&pod).unwrap();
        assert_eq!(decode_k8s_protobuf(&body).unwrap(), pod);
    }

    #[test]
    fn a_list_and_a_watch_frame() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}});
        let item = encode_message_of(&cm).unwrap();
        let list = encode_list("v1", "ConfigMapList", &json!({"resourceVersion": "7"}), &[item.as_slice()]).unwrap();
        let decoded = decode_k8s_protobuf(&list).unwrap();
        assert_eq!(decoded["metadata"]["resourceVersion"], "7");
        assert_eq!(decoded["items"][0]["data"]["k"], "v");
        // From cached item bytes or from the objects, the same bytes (an item past 127 bytes takes a longer length).
        let big =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}, "data": {"k": "v".repeat(300)}});
        let items = [cm.clone(), big.clone(), cm.clone()];
        let bytes: Vec<Vec<u8>> = items.iter().map(|i| encode_message_of(i).unwrap()).collect();
        let slices: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
        let meta = json!({"resourceVersion": "8", "continue": "x".repeat(200)});
        assert_eq!(
            encode_list("v1", "ConfigMapList", &meta, &slices).unwrap(),
            encode_list_of("v1", "ConfigMapList", &meta, &items).unwrap()
        );
        assert!(encode_object(&json!({"apiVersion": "meta.k8s.io/v1", "kind": "Table"})).is_none());
        assert!(
            encode_watch_frame("ADDED", &json!({"apiVersion": "example.com/v1", "kind": "Widget"}), false).is_none()
        );

        let frame = watch_frame("ADDED", &encode_object(&cm).unwrap());
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        // type=1 "ADDED", then object=2 { raw=1 k8s\0... }
        assert_eq!(&frame[4..11], b"\x0a\x05ADDED");
    }

    /// Storage gets a protobuf body only when decoding it gives the object back: a value of the wrong type, a key
    /// its kind does not have, an int32 out of range or an unparsable time make it keep the object as JSON. An
    /// embedded object's apiVersion and kind (a StatefulSet's volumeClaimTemplates), which upstream's protobuf
    /// leaves out too, do not.
    #[test]
    fn lossless_encoding_for_storage() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "b"}, "creationTimestamp": "2024-01-02T03:04:05Z"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "args": ["x"], "ports": [{"containerPort": 80}],
                                     "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 3}}],
                     "priority": 7, "activeDeadlineSeconds": 30},
        });
        assert_eq!(encode_object_lossless(&pod), encode_object(&pod));
        assert!(encode_object_lossless(&pod).is_some());
        for (pointer, bad) in [
            ("/metadata/labels/a", json!(1)),
            ("/metadata/labels", json!("a=b")),
            ("/metadata/creationTimestamp", json!("yesterday")),
            ("/metadata/unknown", json!("x")),
            ("/spec/containers/0/ports/0/containerPort", json!("80")),
            ("/spec/containers/0/args/0", Value::Null),
            ("/spec/containers/0/readinessProbe/bogus", json!(1)),
            ("/spec/containers/0/readinessProbe/periodSeconds", json!(1.5)),
            ("/spec/priority", json!(5_000_000_000i64)),
            ("/spec/activeDeadlineSeconds", json!(true)),
            ("/spec/containers", json!({"name": "c"})),
        ] {
            let mut obj = pod.clone();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            match obj.pointer_mut(parent).unwrap() {
                Value::Object(map) => {
                    map.insert(key.to_string(), bad);
                }
                Value::Array(items) => items[key.parse::<usize>().unwrap()] = bad,
                _ => unreachable!(),
            }
            assert!(encode_object_lossless(&obj).is_none(), "{pointer}");
            assert!(encode_object(&obj).is_some(), "{pointer}: a response skips the value");
        }
        let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
            "spec": {"volumeClaimTemplates": [{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                               "metadata": {"name": "data"}}]}});
        assert!(encode_object_lossless(&sts).is_some());
        assert!(encode_object_lossless(&json!({"apiVersion": "example.com/v1", "kind": "Widget"})).is_none());
    }

    /// Lengths are reserved by guess (one or two bytes, four for a list) and patched: whatever the content's size
    /// around the varint boundaries, the bytes are the canonical ones k8s-pb (prost) writes, and the message range
    /// of [`encode_object_parts`] is the item [`encode_message_of`] writes.
    #[test]
    fn lengths_are_canonical_whatever_the_guess() {
        let re_encode = crate::protobuf::k8s_pb_kinds::KINDS.iter().find(|(_, k, _)| *k == "Pod").unwrap().2;
        // (From 1: an empty map value is written, as Go's generated code does, where prost leaves it out.)
        for size in [1, 60, 126, 127, 128, 129, 200, 16_250, 16_383, 16_384, 16_500, 2_100_000] {
            // ObjectMeta (a two-byte guess), PodSpec's containers (two), a label map entry (one): each around the size.
            let pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "n".repeat(size), "labels": {"l": "v".repeat(size)}},
                "spec": {"containers": [{"name": "c", "image": "i".repeat(size)}], "securityContext": {}},
            });
            let (body, range) = encode_object_parts(&pod, size % 2 == 0).unwrap();
            let message = encode_message_of(&pod).unwrap();
            assert_eq!(&body[range], message.as_slice(), "{size}");
            assert_eq!(re_encode(&message).unwrap(), message, "{size}: not what prost writes");
            assert_eq!(body, envelope("v1", "Pod", &message), "{size}");
            // The frame a watcher gets, the body encoded in place (its two lengths reserved by guess too).
            let (frame, body_range, message_range) = encode_watch_frame("MODIFIED", &pod, size % 2 == 1).unwrap();
            assert_eq!(frame, watch_frame("MODIFIED", &body), "{size}");
            assert_eq!(&frame[body_range.clone()], body.as_slice(), "{size}");
            assert_eq!(&frame[body_range][message_range], message.as_slice(), "{size}");
            assert_eq!(decode_k8s_protobuf(&body).unwrap(), pod, "{size}");
            let list = encode_list_of("v1", "PodList", &json!({}), [&pod]).unwrap();
            assert_eq!(list, encode_list("v1", "PodList", &json!({}), &[message.as_slice()]).unwrap(), "{size}");
        }
    }
}
