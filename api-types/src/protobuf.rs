//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) decoded to the JSON value upstream's
//! JSON encoding of the same object would be, so the apiserver can store and process them like JSON bodies.
//!
//! A body is the magic bytes `k8s\0` followed by a `runtime.Unknown` message: `typeMeta` (1: apiVersion, kind),
//! `raw` (2: the typed message), `contentEncoding` (3), `contentType` (4). The typed message is decoded with the
//! descriptor tables of `protobuf_schema.rs`, generated from the `k8s-pb` crate by `api-types/gen/protobuf_schema.py`
//! (run `python3 api-types/gen/protobuf_schema.py` from the workspace root to regenerate; see that script).
//!
//! Decoding rules: a field present on the wire is emitted under its upstream JSON name; absent fields, empty
//! repeated fields and empty maps are absent. Go clients write every non-pointer field, so a present zero value
//! ("", false, 0) is dropped for the fields upstream declares as non-pointer `omitempty` (`Field::omit_zero`, e.g.
//! `metadata.namespace`, `strategy.type`), as upstream's JSON encoding drops it; it is kept for pointer fields
//! (`replicas: 0`) and fields without `omitempty` (`containerPort`, `allowed: false`). Unknown fields are skipped.
//! `bytes` become base64 strings. The well-known messages decode to their JSON forms: `Time` and `MicroTime` to
//! RFC 3339 strings (`null` when empty, as upstream's zero time), `Duration` to a Go duration string, `Quantity` to
//! its string, `IntOrString` to a number or a string, `RawExtension` and `FieldsV1` to the embedded JSON. Fields
//! embedded in Go with `json:",inline"` (`Volume.volumeSource`, `Probe.handler`, ...) are merged into their parent.
//! Encoding (responses) is `encode`'s.

use serde_json::{Map, Number, Value};

use crate::protobuf_schema::ROOTS;

mod encode;
mod fieldindex;
#[cfg(test)]
mod k8s_pb_kinds;
mod normalize;
#[cfg(test)]
mod roundtrip;
mod stored;
pub use encode::{
    encode_list, encode_list_of, encode_message_of, encode_object, encode_object_lossless, encode_object_parts,
    encode_watch_frame, envelope, supports, watch_frame,
};
pub use normalize::canonicalize_quantities;
pub use stored::with_resource_version;

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// Nesting limit for messages (and protobuf-encoded `RawExtension`s), against stack exhaustion.
const MAX_DEPTH: usize = 100;

/// Why a protobuf body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error("not a Kubernetes protobuf body: it does not start with the magic bytes \"k8s\\x00\"")]
    BadMagic,
    /// The data ends in the middle of a field.
    #[error("truncated protobuf data in {message}: {detail}")]
    Truncated { message: &'static str, detail: &'static str },
    /// The data is not valid protobuf for the message, or a value has no JSON form.
    #[error("malformed protobuf data in {message}: {detail}")]
    Malformed { message: &'static str, detail: String },
    /// No descriptor for the apiVersion and kind of the `runtime.Unknown` envelope (the apiserver answers 415).
    #[error("the protobuf encoding of kind {kind:?} in apiVersion {api_version:?} is not supported, use JSON")]
    UnsupportedKind { api_version: String, kind: String },
    /// Messages nested deeper than the decoder allows.
    #[error("protobuf messages nested more than {MAX_DEPTH} levels deep")]
    TooDeep,
}

type Result<T> = std::result::Result<T, ProtobufError>;

/// A protobuf message: its fields, or a JSON form of its own.
#[derive(Debug)]
pub(crate) struct Message {
    /// The k8s-pb Rust path, e.g. `api::apps::v1::Deployment`; used in error messages.
    pub(crate) name: &'static str,
    pub(crate) special: Special,
    /// Sorted by tag; empty for the special messages.
    pub(crate) fields: &'static [Field],
    /// The fields by JSON name (inline fields excepted).
    pub(crate) index: fieldindex::FieldIndex,
    /// Whether a field embeds a struct inline (`Kind::Inline`).
    pub(crate) has_inline: bool,
    /// How many bytes the encoder reserves for the length of this message when it is nested: two for messages of
    /// many fields (ObjectMeta, PodSpec, Container... mostly 128 bytes or more), one for the rest.
    pub(crate) length_guess: usize,
}

impl Message {
    /// A message and its field index, computed when the `static` tables are compiled.
    pub(crate) const fn new(name: &'static str, special: Special, fields: &'static [Field]) -> Self {
        let mut has_inline = false;
        let mut i = 0;
        while i < fields.len() {
            has_inline |= matches!(fields[i].kind, Kind::Inline(_));
            i += 1;
        }
        let length_guess = if fields.len() >= 10 { 2 } else { 1 };
        Message { name, special, fields, index: fieldindex::FieldIndex::new(fields), has_inline, length_guess }
    }
}

/// The messages with a JSON form other than an object of their fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    None,
    /// meta/v1 Time: seconds=1, nanos=2 → `"2024-01-02T03:04:05Z"`, `null` when empty.
    Time,
    /// meta/v1 MicroTime: seconds=1, nanos=2 → `"2024-01-02T03:04:05.000000Z"`, `null` when empty.
    MicroTime,
    /// meta/v1 Duration: duration=1 (nanoseconds) → Go duration string `"1m30s"`.
    #[allow(dead_code, reason = "no served kind has a Duration field today; kept for regenerated tables")]
    Duration,
    /// api/resource Quantity: string=1 → the string.
    Quantity,
    /// util/intstr IntOrString: type=1 (0 int, 1 string), intVal=2, strVal=3 → number or string.
    IntOrString,
    /// runtime RawExtension: raw=1 → the embedded JSON (or nested Kubernetes protobuf), `null` when empty.
    RawExtension,
    /// meta/v1 FieldsV1: raw=1 → the embedded JSON, `null` when empty.
    FieldsV1,
    /// A Go `[]string` type wrapped as `repeated string items = 1` (`ExtraValue`) → the array, `null` when empty.
    StringList,
    /// apiextensions JSONSchemaPropsOrArray: schema=1, jSONSchemas=2 → the array when it has items, else the schema.
    SchemaOrArray,
    /// apiextensions JSONSchemaPropsOrBool: allows=1, schema=2 → the schema when set, else the boolean.
    SchemaOrBool,
    /// apiextensions JSONSchemaPropsOrStringArray: schema=1, property=2 → the strings when any, else the schema.
    SchemaOrStringArray,
}

/// One field of a message.
#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) tag: u32,
    /// The upstream JSON name (for `Kind::Inline`, the proto name; its fields are merged into the parent).
    pub(crate) json: &'static str,
    pub(crate) kind: Kind,
    pub(crate) repeated: bool,
    /// A non-pointer `omitempty` scalar in Go: a zero value on the wire is not emitted.
    pub(crate) omit_zero: bool,
    /// `json` as the message's [`FieldIndex`](fieldindex::FieldIndex) hashes and compares it.
    pub(crate) key: fieldindex::NameKey,
}

impl Field {
    /// A singular field; a zero value on the wire is emitted.
    pub(crate) const fn new(tag: u32, json: &'static str, kind: Kind) -> Self {
        Field { tag, json, kind, repeated: false, omit_zero: false, key: fieldindex::NameKey::of(json) }
    }

    /// A singular scalar field whose zero value is not emitted.
    pub(crate) const fn omitempty(tag: u32, json: &'static str, kind: Kind) -> Self {
        Field { tag, json, kind, repeated: false, omit_zero: true, key: fieldindex::NameKey::of(json) }
    }

    pub(crate) const fn repeated(tag: u32, json: &'static str, kind: Kind) -> Self {
        Field { tag, json, kind, repeated: true, omit_zero: false, key: fieldindex::NameKey::of(json) }
    }
}

/// The type of a field.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    String,
    Bool,
    Int32,
    Int64,
    Double,
    /// Base64 in JSON.
    Bytes,
    Message(&'static Message),
    /// A Go struct embedded with `json:",inline"`: its fields are merged into the parent object.
    Inline(&'static Message),
    /// `map<string, string>`.
    MapString,
    /// `map<string, bytes>`: values in base64.
    MapBytes,
    /// `map<string, message>`.
    MapMessage(&'static Message),
}

/// Decodes a Kubernetes protobuf body (`k8s\0` + `runtime.Unknown`) into the JSON object upstream's JSON encoding
/// would produce, with `apiVersion` and `kind` set from the envelope.
pub fn decode_k8s_protobuf(body: &[u8]) -> Result<Value> {
    decode_envelope(body, 0)
}

const UNKNOWN: &str = "runtime.Unknown";
const TYPE_META: &str = "runtime.TypeMeta";

fn decode_envelope(body: &[u8], depth: usize) -> Result<Value> {
    let data = body.strip_prefix(MAGIC).ok_or(ProtobufError::BadMagic)?;
    let (mut type_meta, mut raw) = (Vec::new(), &[][..]);
    let mut r = Reader::new(data, UNKNOWN);
    while let Some((tag, wire)) = r.key()? {
        match tag {
            1 => type_meta.extend_from_slice(r.length_delimited(wire, "typeMeta")?),
            2 => raw = r.length_delimited(wire, "raw")?,
            _ => r.skip(wire)?,
        }
    }
    let (mut api_version, mut kind) = (String::new(), String::new());
    let mut r = Reader::new(&type_meta, TYPE_META);
    while let Some((tag, wire)) = r.key()? {
        match tag {
            1 => api_version = lossy(r.length_delimited(wire, "apiVersion")?),
            2 => kind = lossy(r.length_delimited(wire, "kind")?),
            _ => r.skip(wire)?,
        }
    }
    let Some(message) = find_root(&api_version, &kind) else {
        return Err(ProtobufError::UnsupportedKind { api_version, kind });
    };
    let mut object = Map::with_capacity(2 + count_keys(raw));
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    decode_fields_into(&mut object, message, raw, depth + 1)?;
    Ok(Value::Object(object))
}

/// The message for an apiVersion and kind. `DeleteOptions` is registered in every group version upstream.
fn find_root(api_version: &str, kind: &str) -> Option<&'static Message> {
    ROOTS
        .iter()
        .find(|(v, k, _)| *k == kind && (*v == api_version || kind == "DeleteOptions"))
        .map(|(_, _, message)| *message)
}

fn decode_message(message: &'static Message, data: &[u8], depth: usize) -> Result<Value> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep);
    }
    match message.special {
        Special::None => decode_object(message, data, depth).map(Value::Object),
        Special::Time | Special::MicroTime => decode_time(message, data),
        Special::Duration => decode_duration(message, data),
        Special::Quantity => decode_quantity(message, data),
        Special::IntOrString => decode_int_or_string(message, data),
        Special::RawExtension | Special::FieldsV1 => decode_raw(message, data, depth),
        Special::StringList => decode_string_list(message, data),
        Special::SchemaOrArray | Special::SchemaOrBool | Special::SchemaOrStringArray => {
            decode_schema_union(message, data, depth)
        }
    }
}

/// The JSON form of apiextensions' schema unions, as their upstream `MarshalJSON` writes it.
fn decode_schema_union(message: &'static Message, data: &[u8], depth: usize) -> Result<Value> {
    let mut fields = decode_object(message, data, depth)?;
    let mut take = |tag: u32| {
        message.fields.iter().find(|f| f.tag == tag).and_then(|f| fields.shift_remove(f.json)).unwrap_or(Value::Null)
    };
    let (first, second) = (take(1), take(2));
    let has_items = second.as_array().is_some_and(|a| !a.is_empty());
    Ok(match message.special {
        Special::SchemaOrBool if !second.is_null() => second,
        Special::SchemaOrBool => Value::Bool(first.as_bool().unwrap_or(false)),
        _ if has_items => second,
        _ => first,
    })
}

fn decode_object(message: &'static Message, data: &[u8], depth: usize) -> Result<Map<String, Value>> {
    let mut out = Map::with_capacity(count_keys(data));
    decode_fields_into(&mut out, message, data, depth)?;
    Ok(out)
}

/// The fields of `message` appended to `out`. Each singular message field is decoded where it stands, which is all
/// Go's encoder (and ours) writes; when one occurs twice, protobuf merges the occurrences, and the whole message is
/// decoded again the slow way ([`decode_merging`]).
fn decode_fields_into(
    out: &mut Map<String, Value>,
    message: &'static Message,
    data: &[u8],
    depth: usize,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep);
    }
    let first_key = out.len();
    // The singular message fields seen (tags below 64; a higher tag takes the slow way).
    let mut seen = 0u64;
    let mut r = Reader::new(data, message.name);
    while let Some((field, wire)) = next_field(&mut r, message)? {
        match field.kind {
            Kind::Message(m) | Kind::Inline(m) if !field.repeated => {
                let bit = 1u64.checked_shl(field.tag).unwrap_or(0);
                if bit == 0 || seen & bit != 0 {
                    let decoded: Vec<String> = out.keys().skip(first_key).cloned().collect();
                    for key in decoded {
                        out.shift_remove(&key);
                    }
                    let merged = decode_merging(message, data, depth)?;
                    out.extend(merged);
                    return Ok(());
                }
                seen |= bit;
                let bytes = r.length_delimited(wire, field.json)?;
                if let Kind::Inline(m) = field.kind {
                    // An embedded struct's fields are the object's own, where Go's encoder writes them.
                    decode_fields_into(out, m, bytes, depth + 1)?;
                } else {
                    out.insert(field.json.into(), decode_message(m, bytes, depth + 1)?);
                }
            }
            _ => decode_field(out, message, field, &mut r, wire, depth)?,
        }
    }
    Ok(())
}

/// The next field of `message` in `r` and its wire type, fields of tags `message` does not have skipped.
fn next_field(r: &mut Reader<'_>, message: &'static Message) -> Result<Option<(&'static Field, u8)>> {
    while let Some((tag, wire)) = r.key()? {
        match field_of(message, tag) {
            Some(field) => return Ok(Some((field, wire))),
            None => r.skip(wire)?,
        }
    }
    Ok(None)
}

/// The field of `message` with this tag: tags mostly run 1, 2, 3..., so the field at `tag - 1` is tried first.
fn field_of(message: &'static Message, tag: u32) -> Option<&'static Field> {
    let fields = message.fields;
    match fields.get(tag as usize - 1) {
        Some(f) if f.tag == tag => Some(f),
        _ => fields.binary_search_by_key(&tag, |f| f.tag).ok().map(|i| &fields[i]),
    }
}

/// How many keys a message's object will have, to size its map: one per run of one tag (a repeated field's items
/// and a map's entries are consecutive and take one key). An inline struct's fields make it an underestimate.
fn count_keys(data: &[u8]) -> usize {
    let mut r = Reader::new(data, "");
    let (mut keys, mut last) = (0, 0);
    while let Ok(Some((tag, wire))) = r.key() {
        keys += usize::from(tag != last);
        last = tag;
        if r.skip(wire).is_err() {
            break;
        }
    }
    keys
}

/// One field that is not a singular message: a scalar, a string, a map entry, or an item of a repeated field.
fn decode_field(
    out: &mut Map<String, Value>,
    message: &'static Message,
    field: &'static Field,
    r: &mut Reader<'_>,
    wire: u8,
    depth: usize,
) -> Result<()> {
    match field.kind {
        Kind::Message(m) | Kind::Inline(m) => {
            let bytes = r.length_delimited(wire, field.json)?;
            push(out, field.json, decode_message(m, bytes, depth + 1)?);
        }
        Kind::MapString | Kind::MapBytes | Kind::MapMessage(_) => {
            let bytes = r.length_delimited(wire, field.json)?;
            let (key, value) = decode_map_entry(message, field, bytes, depth)?;
            if let Some(Value::Object(map)) = out.get_mut(field.json) {
                map.insert(key, value);
            } else {
                out.insert(field.json.into(), Value::Object(Map::from_iter([(key, value)])));
            }
        }
        Kind::String | Kind::Bytes => {
            let bytes = r.length_delimited(wire, field.json)?;
            let value = match field.kind {
                Kind::Bytes => Value::String(base64(bytes)),
                _ => Value::String(lossy(bytes)),
            };
            set(out, field, value);
        }
        Kind::Bool | Kind::Int32 | Kind::Int64 | Kind::Double => {
            if wire == WIRE_LEN && field.repeated {
                let packed = r.length_delimited(wire, field.json)?;
                let mut p = Reader::new(packed, message.name);
                let element_wire = if let Kind::Double = field.kind { WIRE_64 } else { WIRE_VARINT };
                while !p.at_end() {
                    let value = p.scalar(field, element_wire)?;
                    push(out, field.json, value);
                }
            } else {
                let value = r.scalar(field, wire)?;
                set(out, field, value);
            }
        }
    }
    Ok(())
}

/// A message in which a singular message field occurs more than once: protobuf merges the occurrences, which is
/// decoding their concatenation. Each takes the wire position of its first occurrence.
fn decode_merging(message: &'static Message, data: &[u8], depth: usize) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    let mut pending: Vec<(&'static Field, Vec<u8>)> = Vec::new();
    let mut r = Reader::new(data, message.name);
    while let Some((field, wire)) = next_field(&mut r, message)? {
        match field.kind {
            Kind::Message(_) | Kind::Inline(_) if !field.repeated => {
                let bytes = r.length_delimited(wire, field.json)?;
                match pending.iter_mut().find(|(f, _)| f.tag == field.tag) {
                    Some((_, buf)) => buf.extend_from_slice(bytes),
                    None => {
                        // Keep the wire position of the key; the value is filled in below.
                        out.insert(placeholder_key(field), Value::Null);
                        pending.push((field, bytes.to_vec()));
                    }
                }
            }
            _ => decode_field(&mut out, message, field, &mut r, wire, depth)?,
        }
    }
    let mut inlined = Vec::new();
    for (field, bytes) in pending {
        match field.kind {
            Kind::Inline(m) => inlined.push((placeholder_key(field), decode_object(m, &bytes, depth + 1)?)),
            Kind::Message(m) => {
                out.insert(field.json.into(), decode_message(m, &bytes, depth + 1)?);
            }
            _ => {}
        }
    }
    if inlined.is_empty() {
        return Ok(out);
    }
    // Splice the inlined fields in where their placeholder is, as Go's encoder writes embedded structs in place.
    let mut merged = Map::new();
    for (key, value) in out {
        match inlined.iter_mut().find(|(k, _)| *k == key) {
            Some((_, fields)) => merged.extend(std::mem::take(fields)),
            None => {
                merged.insert(key, value);
            }
        }
    }
    Ok(merged)
}

/// The key a singular message field takes until it is decoded: its JSON name, or for an inlined struct a key no
/// JSON name can be.
fn placeholder_key(field: &Field) -> String {
    match field.kind {
        Kind::Inline(_) => format!("\0inline {}", field.tag),
        _ => field.json.into(),
    }
}

/// A map entry: key=1 (string), value=2; missing parts take their defaults.
fn decode_map_entry(
    message: &'static Message,
    field: &'static Field,
    data: &[u8],
    depth: usize,
) -> Result<(String, Value)> {
    let mut key = String::new();
    let mut value: Option<Vec<u8>> = None;
    let mut r = Reader::new(data, message.name);
    while let Some((tag, wire)) = r.key()? {
        match tag {
            1 => key = lossy(r.length_delimited(wire, field.json)?),
            2 => {
                let bytes = r.length_delimited(wire, field.json)?;
                match (&mut value, field.kind) {
                    // Repeated message values merge; repeated scalars: the last one wins.
                    (Some(buf), Kind::MapMessage(_)) => buf.extend_from_slice(bytes),
                    _ => value = Some(bytes.to_vec()),
                }
            }
            _ => r.skip(wire)?,
        }
    }
    let value = value.unwrap_or_default();
    let value = match field.kind {
        Kind::MapMessage(m) => decode_message(m, &value, depth + 1)?,
        Kind::MapBytes => Value::String(base64(&value)),
        _ => Value::String(lossy(&value)),
    };
    Ok((key, value))
}

/// Go's zero `time.Time` (January 1, year 1, UTC) in Unix seconds: it marshals to JSON `null`.
const GO_ZERO_TIME_UNIX: i64 = -62_135_596_800;

fn decode_time(message: &'static Message, data: &[u8]) -> Result<Value> {
    if data.is_empty() {
        return Ok(Value::Null);
    }
    let (mut seconds, mut nanos) = (0i64, 0i64);
    let mut r = Reader::new(data, message.name);
    while let Some((tag, wire)) = r.key()? {
        match tag {
            1 => seconds = r.varint_field(wire, "seconds")? as i64,
            2 => nanos = i64::from(r.varint_field(wire, "nanos")? as i32),
            _ => r.skip(wire)?,
        }
    }
    // Go's time.Unix normalizes nanoseconds outside [0, 1e9).
    let seconds = seconds.saturating_add(nanos.div_euclid(1_000_000_000));
    let nanos = nanos.rem_euclid(1_000_000_000);
    Ok(match message.special {
        // Upstream's Time unmarshals seconds only and marshals RFC 3339 at second precision.
        Special::Time if seconds == GO_ZERO_TIME_UNIX => Value::Null,
        Special::Time => Value::String(format_rfc3339(seconds, None)),
        _ if seconds == GO_ZERO_TIME_UNIX && nanos < 1000 => Value::Null,
        _ => Value::String(format_rfc3339(seconds, Some(nanos / 1000))),
    })
}

/// `2024-01-02T03:04:05Z`, or with `micros` `2024-01-02T03:04:05.000000Z`.
fn format_rfc3339(unix_seconds: i64, micros: Option<i64>) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let secs_of_day = unix_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    match micros {
        Some(us) => format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{us:06}Z"),
        None => format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z"),
    }
}

/// (year, month, day) of a count of days since 1970-01-01 (proleptic Gregorian; Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn decode_duration(message: &'static Message, data: &[u8]) -> Result<Value> {
    let mut nanos = 0i64;
    let mut r = Reader::new(data, message.name);
    while let Some((tag, wire)) = r.key()? {
        match tag {
            1 => nanos = r.varint_field(wire, "duration")? as i64,
            _ => r.skip(wire)?,
        }
    }
    Ok(Value::String(crate::duration::format(nanos)))
}

fn decode_quantity(message: &'static Message, data: &[u8]) -> Result<Value> {
    // An unset Quantity is zero, which upstream writes as "0".
    let mut quantity = "0".to_string();
    let mut r = Reader::new(data, message.name);
    while let Some((tag, wire)) = r.key()? {
        match tag {
            1 => quantity = lossy(r.length_delimited(wire, "string")?),
            _ => r.skip(wire)?,
        }
    }
    Ok(Value::String(quantity))
}

fn decode_int_or_string(message: &'static Message, data: &[u8]) -> Result<Value> {
    let (mut kind, mut int_val, mut str_val) = (0i64, 0i32, String::new());
    let mut r = Reader::new(data, message.name);
    while let Some((tag, wire)) = r.key()? {
        match tag {
            1 => kind = r.varint_field(wire, "type")? as i64,
            2 => int_val = r.varint_field(wire, "intVal")? as i32,
            3 => str_val = lossy(r.length_delimited(wire, "strVal")?),
            _ => r.skip(wire)?,
        }
    }
    match kind {
        0 => Ok(Value::from(int_val)),
        1 => Ok(Value::String(str_val)),
        other => Err(ProtobufError::Malformed {
            message: message.name,
            detail: format!("IntOrString type {other} is neither 0 (int) nor 1 (string)"),
        }),
    }
}

fn decode_raw(message: &'static Message, data: &[u8], depth: usize) -> Result<Value> {
    let mut raw: &[u8] = &[];
    let mut r = Reader::new(data, message.name);
    while let Some((tag, wire)) = r.key()? {
        match tag {
            1 => raw = r.length_delimited(wire, "raw")?,
            _ => r.skip(wire)?,
        }
    }
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    if message.special == Special::RawExtension && raw.starts_with(MAGIC) {
        return decode_envelope(raw, depth + 1);
    }
    serde_json::from_slice(raw)
        .map_err(|e| ProtobufError::Malformed { message: message.name, detail: format!("raw is not JSON: {e}") })
}

fn decode_string_list(message: &'static Message, data: &[u8]) -> Result<Value> {
    let mut items = Vec::new();
    let mut r = Reader::new(data, message.name);
    while let Some((tag, wire)) = r.key()? {
        match tag {
            1 => items.push(Value::String(lossy(r.length_delimited(wire, "items")?))),
            _ => r.skip(wire)?,
        }
    }
    Ok(if items.is_empty() { Value::Null } else { Value::Array(items) })
}

/// Sets a singular field (the last occurrence wins; a zero value of an `omit_zero` field unsets it) or appends to a
/// repeated one.
fn set(out: &mut Map<String, Value>, field: &Field, value: Value) {
    if field.repeated {
        push(out, field.json, value);
    } else if field.omit_zero && is_zero(&value) {
        out.shift_remove(field.json);
    } else {
        out.insert(field.json.into(), value);
    }
}

/// Go's zero value of a scalar: what `omitempty` leaves out.
fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

fn push(out: &mut Map<String, Value>, key: &str, value: Value) {
    match out.get_mut(key) {
        Some(Value::Array(items)) => items.push(value),
        Some(other) => *other = Value::Array(vec![value]),
        None => {
            out.insert(key.into(), Value::Array(vec![value]));
        }
    }
}

fn lossy(bytes: &[u8]) -> String {
    // Go does not validate UTF-8 in proto2 strings; its JSON encoder writes invalid bytes as U+FFFD.
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Standard base64 with padding, as Go's `encoding/json` writes `[]byte`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

const WIRE_VARINT: u8 = 0;
const WIRE_64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_START_GROUP: u8 = 3;
const WIRE_END_GROUP: u8 = 4;
const WIRE_32: u8 = 5;

/// A cursor over protobuf wire data of one message.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], message: &'static str) -> Self {
        Reader { data, pos: 0, message }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn truncated(&self, detail: &'static str) -> ProtobufError {
        ProtobufError::Truncated { message: self.message, detail }
    }

    fn malformed(&self, detail: String) -> ProtobufError {
        ProtobufError::Malformed { message: self.message, detail }
    }

    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&byte) = self.data.get(self.pos) else {
                return Err(self.truncated("varint runs past the end of the data"));
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.malformed("varint longer than 10 bytes".into()))
    }

    fn take(&mut self, len: usize, detail: &'static str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(len).filter(|&end| end <= self.data.len());
        let Some(end) = end else {
            return Err(self.truncated(detail));
        };
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// The next field's (tag, wire type), or `None` at the end of the message.
    fn key(&mut self) -> Result<Option<(u32, u8)>> {
        if self.at_end() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = key >> 3;
        if tag == 0 || tag > u64::from(u32::MAX >> 3) {
            return Err(self.malformed(format!("invalid field number {tag}")));
        }
        Ok(Some((tag as u32, (key & 7) as u8)))
    }

    fn length_delimited(&mut self, wire: u8, field: &str) -> Result<&'a [u8]> {
        if wire != WIRE_LEN {
            return Err(self.wrong_wire_type(field, wire));
        }
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| self.truncated("length exceeds the data"))?;
        self.take(len, "length-delimited field runs past the end of the data")
    }

    fn varint_field(&mut self, wire: u8, field: &str) -> Result<u64> {
        if wire != WIRE_VARINT {
            return Err(self.wrong_wire_type(field, wire));
        }
        self.varint()
    }

    fn wrong_wire_type(&self, field: &str, wire: u8) -> ProtobufError {
        self.malformed(format!("wrong wire type {wire} for field {field}"))
    }

    /// One bool/int32/int64/double value of `field` encoded with wire type `wire`.
    fn scalar(&mut self, field: &Field, wire: u8) -> Result<Value> {
        match field.kind {
            Kind::Bool => Ok(Value::Bool(self.varint_field(wire, field.json)? != 0)),
            // Go's int32(v): negative int32s are sign-extended to 10-byte varints.
            Kind::Int32 => Ok(Value::from(self.varint_field(wire, field.json)? as i32)),
            Kind::Int64 => Ok(Value::from(self.varint_field(wire, field.json)? as i64)),
            _ => {
                if wire != WIRE_64 {
                    return Err(self.wrong_wire_type(field.json, wire));
                }
                let bytes = self.take(8, "fixed64 runs past the end of the data")?;
                let mut le = [0u8; 8];
                le.copy_from_slice(bytes);
                let value = f64::from_le_bytes(le);
                // Go's JSON encoder writes an integral float64 without a fraction (`1`, not `1.0`).
                if value.fract() == 0.0 && value.abs() < 9.0e15 {
                    return Ok(Value::from(value as i64));
                }
                Number::from_f64(value)
                    .map(Value::Number)
                    .ok_or_else(|| self.malformed(format!("{} is {value}, which JSON cannot represent", field.json)))
            }
        }
    }

    /// Skips a field of an unknown tag.
    fn skip(&mut self, wire: u8) -> Result<()> {
        match wire {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_64 => self.take(8, "fixed64 runs past the end of the data").map(drop),
            WIRE_LEN => self.length_delimited(wire, "(unknown)").map(drop),
            WIRE_32 => self.take(4, "fixed32 runs past the end of the data").map(drop),
            WIRE_START_GROUP => {
                // Deprecated groups: skip up to the matching end-group key.
                loop {
                    match self.key()? {
                        None => return Err(self.truncated("group without an end")),
                        Some((_, WIRE_END_GROUP)) => return Ok(()),
                        Some((_, wire)) => self.skip(wire)?,
                    }
                }
            }
            other => Err(self.malformed(format!("invalid wire type {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A tiny protobuf encoder for building test bodies.
    #[derive(Default, Clone)]
    struct Enc(Vec<u8>);

    impl Enc {
        fn new() -> Self {
            Enc::default()
        }

        fn varint(mut self, mut v: u64) -> Self {
            while v >= 0x80 {
                self.0.push((v as u8) | 0x80);
                v >>= 7;
            }
            self.0.push(v as u8);
            self
        }

        fn key(self, tag: u32, wire: u8) -> Self {
            self.varint(u64::from(tag) << 3 | u64::from(wire))
        }

        fn int(self, tag: u32, v: i64) -> Self {
            self.key(tag, WIRE_VARINT).varint(v as u64)
        }

        fn boolean(self, tag: u32, v: bool) -> Self {
            self.int(tag, i64::from(v))
        }

        fn bytes(self, tag: u32, b: &[u8]) -> Self {
            let mut e = self.key(tag, WIRE_LEN).varint(b.len() as u64);
            e.0.extend_from_slice(b);
            e
        }

        fn str(self, tag: u32, s: &str) -> Self {
            self.bytes(tag, s.as_bytes())
        }

        fn msg(self, tag: u32, m: Enc) -> Self {
            self.bytes(tag, &m.0)
        }

        fn map_str(self, tag: u32, k: &str, v: &str) -> Self {
            self.msg(tag, Enc::new().str(1, k).str(2, v))
        }

        fn map_bytes(self, tag: u32, k: &str, v: &[u8]) -> Self {
            self.msg(tag, Enc::new().str(1, k).bytes(2, v))
        }
    }

    /// `k8s\0` + runtime.Unknown{typeMeta, raw, contentEncoding: "", contentType: ""}, as client-go writes it.
    fn body(api_version: &str, kind: &str, raw: Enc) -> Vec<u8> {
        let unknown = Enc::new().msg(1, Enc::new().str(1, api_version).str(2, kind)).msg(2, raw).str(3, "").str(4, "");
        [MAGIC.as_slice(), &unknown.0].concat()
    }

    fn decode(api_version: &str, kind: &str, raw: Enc) -> Value {
        decode_k8s_protobuf(&body(api_version, kind, raw)).expect("decodes")
    }

    fn labels_app_web(tag: u32) -> Enc {
        Enc::new().map_str(tag, "app", "web")
    }

    #[test]
    fn kubectl_create_deployment() {
        // kubectl create deployment web --image=nginx:1.25 --replicas=2 --port=80
        let metadata = || labels_app_web(11).str(1, "web").msg(8, Enc::new());
        let container =
            Enc::new().str(1, "nginx").str(2, "nginx:1.25").msg(6, Enc::new().int(3, 80)).msg(8, Enc::new());
        let pod_metadata = labels_app_web(11).msg(8, Enc::new());
        let template = Enc::new().msg(1, pod_metadata).msg(2, Enc::new().msg(2, container));
        let spec = Enc::new().int(1, 2).msg(2, labels_app_web(1)).msg(3, template).msg(4, Enc::new());
        let deployment = Enc::new().msg(1, metadata()).msg(2, spec).msg(3, Enc::new());
        assert_eq!(
            decode("apps/v1", "Deployment", deployment),
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "creationTimestamp": null, "labels": {"app": "web"}},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                        "spec": {
                            "containers": [{
                                "name": "nginx",
                                "image": "nginx:1.25",
                                "ports": [{"containerPort": 80}],
                                "resources": {}
                            }]
                        }
                    },
                    "strategy": {}
                },
                "status": {}
            })
        );
    }

    /// A singular message field written twice is merged (protobuf's rule for concatenated messages), at the place
    /// of its first occurrence, an embedded struct's too; fields written once are decoded in place.
    #[test]
    fn repeated_singular_messages_merge() {
        let first = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "readinessProbe": {"exec": {"command": ["true"]}}}]}});
        let second = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"l": "v"}},
            "status": {"phase": "Running"}});
        let mut raw = encode_message_of(&first).unwrap();
        raw.extend(encode_message_of(&second).unwrap());
        let merged = decode_k8s_protobuf(&envelope("v1", "Pod", &raw)).unwrap();
        assert_eq!(
            merged,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"l": "v"}},
                "spec": first["spec"], "status": {"phase": "Running"}})
        );
        let keys: Vec<&String> = merged.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["apiVersion", "kind", "metadata", "spec", "status"]);
        // Probe.handler (an embedded struct, tag 1) twice: exec, periodSeconds=3, then httpGet. Its fields merge
        // into the probe where the first occurrence stood.
        let message = |m: &'static Message, json: &str| match m.fields.iter().find(|f| f.json == json).unwrap().kind {
            Kind::Message(m) => m,
            _ => panic!("{json} is not a message"),
        };
        let pod = find_root("v1", "Pod").unwrap();
        let probe = message(message(message(pod, "spec"), "containers"), "readinessProbe");
        let bytes = [b"\x0a\x08\x0a\x06\x0a\x04true\x20\x03".as_slice(), b"\x0a\x05\x12\x03\x0a\x01/"].concat();
        let decoded = decode_object(probe, &bytes, 0).unwrap();
        assert_eq!(
            serde_json::to_string(&decoded).unwrap(),
            r#"{"exec":{"command":["true"]},"httpGet":{"path":"/"},"periodSeconds":3}"#
        );
        // Written once, the same fields decode in place.
        let once = [b"\x0a\x0d\x0a\x06\x0a\x04true\x12\x03\x0a\x01/".as_slice(), b"\x20\x03"].concat();
        assert_eq!(decode_object(probe, &once, 0).unwrap(), decoded);
    }

    #[test]
    fn zero_values_follow_go_omitempty() {
        // Non-pointer omitempty fields (name, hostPort, protocol, workingDir, stdin, ...) lose their zero value;
        // pointers (terminationGracePeriodSeconds) and fields without omitempty (containerPort, container name) keep it.
        let port = Enc::new().str(1, "").int(2, 0).int(3, 0).str(4, "").str(5, "");
        let container =
            Enc::new().str(1, "").str(2, "img").str(5, "").msg(6, port).boolean(16, false).boolean(17, true);
        let pod = Enc::new().msg(2, Enc::new().msg(2, container).int(4, 0).str(3, "").boolean(11, false));
        let value = decode("v1", "Pod", pod);
        let expected = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "spec": {
                "containers": [{"name": "", "image": "img", "ports": [{"containerPort": 0}], "stdinOnce": true}],
                "terminationGracePeriodSeconds": 0
            }
        });
        assert_eq!(value, expected);
        assert_eq!(value.to_string(), expected.to_string());
        // A later zero occurrence of an omitempty field unsets it; replicas (a pointer) keeps 0.
        let spec = Enc::new().int(1, 0).int(5, 10).int(5, 0);
        assert_eq!(
            decode("apps/v1", "Deployment", Enc::new().msg(2, spec)),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 0}})
        );
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
    }

    /// Bodies captured from kubectl v1.32.4. The expected values of the `create` commands are what
    /// `kubectl create ... --dry-run=client -o json` prints for the same command: upstream's JSON encoding.
    #[test]
    fn real_kubectl_bodies() {
        let cases = [
            (
                // kubectl create deployment web --image=nginx:1.25 --replicas=2 --port=80
                concat!(
                    "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412bd010a1f0a0377656212001a0022002a00320038",
                    "0042005a0a0a036170701203776562128b010802120c0a0a0a0361707012037765621a710a1c0a0012001a0022002a00",
                    "3200380042005a0a0a036170701203776562125112330a056e67696e78120a6e67696e783a312e32352a00320a0a0010",
                    "00185022002a0042006a007200800100880100900100a201001a00320042004a0052005800600068008201008a01009a",
                    "0100c2010022020a00280038001a0c0800100018002000280038001a002200"
                ),
                json!({
                    "kind": "Deployment",
                    "apiVersion": "apps/v1",
                    "metadata": {"name": "web", "creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {
                        "replicas": 2,
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": {
                            "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                            "spec": {
                                "containers": [{
                                    "name": "nginx",
                                    "image": "nginx:1.25",
                                    "ports": [{"containerPort": 80}],
                                    "resources": {}
                                }]
                            }
                        },
                        "strategy": {}
                    },
                    "status": {}
                }),
            ),
            (
                // kubectl create configmap cfg --from-literal=a=1 --from-literal=b=two
                concat!(
                    "6b3873000a0f0a0276311209436f6e6669674d617012270a130a0363666712001a0022002a0032003800420012060a01",
                    "6112013112080a0162120374776f1a002200"
                ),
                json!({
                    "kind": "ConfigMap",
                    "apiVersion": "v1",
                    "metadata": {"name": "cfg", "creationTimestamp": null},
                    "data": {"a": "1", "b": "two"}
                }),
            ),
            (
                // kubectl create secret generic s --from-literal=password=s3cr3t
                concat!(
                    "6b3873000a0c0a027631120653656372657412290a110a017312001a0022002a0032003800420012120a087061737377",
                    "6f726412067333637233741a001a002200"
                ),
                json!({
                    "kind": "Secret",
                    "apiVersion": "v1",
                    "metadata": {"name": "s", "creationTimestamp": null},
                    "data": {"password": "czNjcjN0"}
                }),
            ),
            (
                // kubectl create namespace team-a
                concat!(
                    "6b3873000a0f0a02763112094e616d657370616365121e0a160a067465616d2d6112001a0022002a00320038004200",
                    "12001a020a001a002200"
                ),
                json!({
                    "kind": "Namespace",
                    "apiVersion": "v1",
                    "metadata": {"name": "team-a", "creationTimestamp": null},
                    "spec": {},
                    "status": {}
                }),
            ),
            (
                // kubectl auth whoami
                concat!(
                    "6b3873000a2d0a1861757468656e7469636174696f6e2e6b38732e696f2f7631121153656c665375626a6563745265",
                    "76696577121a0a100a0012001a0022002a0032003800420012060a040a0012001a002200"
                ),
                json!({
                    "kind": "SelfSubjectReview",
                    "apiVersion": "authentication.k8s.io/v1",
                    "metadata": {"creationTimestamp": null},
                    "status": {"userInfo": {}}
                }),
            ),
            (
                // kubectl auth can-i create pods -n default
                concat!(
                    "6b3873000a320a17617574686f72697a6174696f6e2e6b38732e696f2f7631121753656c665375626a656374416363",
                    "657373526576696577123f0a100a0012001a0022002a0032003800420012210a1f0a0764656661756c741206637265",
                    "6174651a0022002a04706f647332003a001a08080012001a0020001a002200"
                ),
                json!({
                    "kind": "SelfSubjectAccessReview",
                    "apiVersion": "authorization.k8s.io/v1",
                    "metadata": {"creationTimestamp": null},
                    "spec": {"resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods"}},
                    "status": {"allowed": false}
                }),
            ),
            (
                // kubectl auth can-i --list -n default. Upstream's JSON also has `"resourceRules": null` and
                // `"nonResourceRules": null` (nil slices without omitempty), which are absent on the wire.
                concat!(
                    "6b3873000a310a17617574686f72697a6174696f6e2e6b38732e696f2f7631121653656c665375626a65637452756c",
                    "657352657669657712230a100a0012001a0022002a0032003800420012090a0764656661756c741a04180022001a00",
                    "2200"
                ),
                json!({
                    "kind": "SelfSubjectRulesReview",
                    "apiVersion": "authorization.k8s.io/v1",
                    "metadata": {"creationTimestamp": null},
                    "spec": {"namespace": "default"},
                    "status": {"incomplete": false}
                }),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(decode_k8s_protobuf(&hex(body)), Ok(expected));
        }
    }

    #[test]
    fn config_map_with_data_and_binary_data() {
        let cm = Enc::new()
            .msg(1, Enc::new().str(1, "settings").str(3, "default"))
            .map_str(2, "color", "blue")
            .map_str(2, "size", "")
            .map_bytes(3, "blob", &[0, 1, 2, 0xff]);
        assert_eq!(
            decode("v1", "ConfigMap", cm),
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": "default"},
                "data": {"color": "blue", "size": ""},
                "binaryData": {"blob": "AAEC/w=="}
            })
        );
    }

    #[test]
    fn secret_data_is_base64() {
        let secret = Enc::new()
            .msg(1, Enc::new().str(1, "creds"))
            .map_bytes(2, "password", b"s3cr3t")
            .map_bytes(2, "user", b"admin")
            .map_bytes(2, "empty", b"")
            .str(3, "Opaque");
        assert_eq!(
            decode("v1", "Secret", secret),
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "creds"},
                "data": {"password": "czNjcjN0", "user": "YWRtaW4=", "empty": ""},
                "type": "Opaque"
            })
        );
    }

    #[test]
    fn namespace() {
        let ns =
            Enc::new().msg(1, Enc::new().str(1, "team-a").msg(8, Enc::new())).msg(2, Enc::new()).msg(3, Enc::new());
        assert_eq!(
            decode("v1", "Namespace", ns),
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "team-a", "creationTimestamp": null},
                "spec": {},
                "status": {}
            })
        );
    }

    #[test]
    fn self_subject_review_empty() {
        assert_eq!(
            decode("authentication.k8s.io/v1", "SelfSubjectReview", Enc::new()),
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        );
        // What client-go actually sends: empty metadata and status.
        let review = Enc::new().msg(1, Enc::new().msg(8, Enc::new())).msg(2, Enc::new());
        assert_eq!(
            decode("authentication.k8s.io/v1", "SelfSubjectReview", review),
            json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "SelfSubjectReview",
                "metadata": {"creationTimestamp": null},
                "status": {}
            })
        );
    }

    #[test]
    fn self_subject_access_review() {
        let attributes = Enc::new().str(1, "default").str(2, "create").str(5, "pods");
        let review = Enc::new().msg(2, Enc::new().msg(1, attributes));
        assert_eq!(
            decode("authorization.k8s.io/v1", "SelfSubjectAccessReview", review),
            json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods"}}
            })
        );
    }

    #[test]
    fn subject_access_review_extra_and_rules_review() {
        let extra = Enc::new().str(1, "scopes").msg(2, Enc::new().str(1, "a").str(1, "b"));
        let spec = Enc::new()
            .str(3, "alice")
            .str(4, "system:authenticated")
            .msg(5, extra)
            .msg(2, Enc::new().str(1, "/healthz").str(2, "get"));
        assert_eq!(
            decode("authorization.k8s.io/v1", "SubjectAccessReview", Enc::new().msg(2, spec)),
            json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": "alice",
                    "groups": ["system:authenticated"],
                    "extra": {"scopes": ["a", "b"]},
                    "nonResourceAttributes": {"path": "/healthz", "verb": "get"}
                }
            })
        );
        let rules = Enc::new().msg(2, Enc::new().str(1, "kube-system"));
        assert_eq!(
            decode("authorization.k8s.io/v1", "SelfSubjectRulesReview", rules),
            json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectRulesReview",
                "spec": {"namespace": "kube-system"}
            })
        );
    }

    #[test]
    fn delete_options() {
        let options = Enc::new().int(1, 30).str(4, "Foreground").str(5, "All");
        let expected = |api_version: &str| {
            json!({
                "apiVersion": api_version,
                "kind": "DeleteOptions",
                "gracePeriodSeconds": 30,
                "propagationPolicy": "Foreground",
                "dryRun": ["All"]
            })
        };
        for api_version in ["v1", "meta.k8s.io/v1", "apps/v1"] {
            assert_eq!(decode(api_version, "DeleteOptions", options.clone()), expected(api_version));
        }
        let zero = Enc::new().int(1, 0).boolean(3, false);
        assert_eq!(
            decode("v1", "DeleteOptions", zero),
            json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "orphanDependents": false})
        );
    }

    #[test]
    fn eviction() {
        let eviction = Enc::new().msg(1, Enc::new().str(1, "web-1").str(3, "default")).msg(2, Enc::new().int(1, -1));
        assert_eq!(
            decode("policy/v1", "Eviction", eviction),
            json!({
                "apiVersion": "policy/v1",
                "kind": "Eviction",
                "metadata": {"name": "web-1", "namespace": "default"},
                "deleteOptions": {"gracePeriodSeconds": -1}
            })
        );
    }

    #[test]
    fn time_int_or_string_quantity_and_inline_fields() {
        let http_get = |port: Enc| Enc::new().msg(2, Enc::new().str(1, "/healthz").msg(2, port));
        let resources = Enc::new()
            .msg(1, Enc::new().str(1, "cpu").msg(2, Enc::new().str(1, "500m")))
            .msg(1, Enc::new().str(1, "memory").msg(2, Enc::new().str(1, "128Mi")))
            .msg(2, Enc::new().str(1, "cpu").msg(2, Enc::new()));
        let env = Enc::new()
            .str(1, "MODE")
            .msg(3, Enc::new().msg(3, Enc::new().msg(1, Enc::new().str(1, "cfg")).str(2, "mode")));
        let container = Enc::new()
            .str(1, "app")
            .msg(7, env)
            .msg(8, resources)
            .msg(10, Enc::new().msg(1, http_get(Enc::new().int(1, 1).str(3, "http"))).int(2, 5))
            .msg(11, Enc::new().msg(1, http_get(Enc::new().int(1, 0).int(2, 8080))));
        let volume = Enc::new()
            .str(1, "data")
            .msg(2, Enc::new().msg(2, Enc::new().str(1, "Memory").msg(2, Enc::new().str(1, "1Gi"))));
        let owner_time = Enc::new().int(1, 1_704_164_645).int(2, 123_456_789);
        let metadata = Enc::new().str(1, "p").msg(8, owner_time).msg(9, Enc::new().int(1, 0));
        let pod = Enc::new().msg(1, metadata).msg(2, Enc::new().msg(1, volume).msg(2, container));
        let expected = json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": "p",
                    "creationTimestamp": "2024-01-02T03:04:05Z",
                    "deletionTimestamp": "1970-01-01T00:00:00Z"
                },
                "spec": {
                    "volumes": [{"name": "data", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}],
                    "containers": [{
                        "name": "app",
                        "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}}],
                        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "0"}},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "initialDelaySeconds": 5},
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}
                    }]
                }
        });
        let value = decode("v1", "Pod", pod);
        assert_eq!(value, expected);
        // Inlined structs keep their place, as in Go's output (`httpGet` before `initialDelaySeconds`).
        assert_eq!(value.to_string(), expected.to_string());
    }

    #[test]
    fn rolling_update_int_or_string() {
        let rolling = Enc::new().msg(1, Enc::new().int(2, 1)).msg(2, Enc::new().int(1, 1).str(3, "25%"));
        let deployment = Enc::new().msg(2, Enc::new().msg(4, Enc::new().str(1, "RollingUpdate").msg(2, rolling)));
        assert_eq!(
            decode("apps/v1", "Deployment", deployment),
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}}}
            })
        );
    }

    #[test]
    fn acronym_json_names() {
        let spec = Enc::new()
            .boolean(12, true) // hostPID
            .boolean(13, true) // hostIPC
            .boolean(35, true); // setHostnameAsFQDN
        let status = Enc::new().str(5, "10.0.0.1").str(6, "10.1.0.5").msg(12, Enc::new().str(1, "10.1.0.5"));
        let value = decode("v1", "Pod", Enc::new().msg(2, spec).msg(3, status));
        assert_eq!(
            value,
            json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "spec": {"hostPID": true, "hostIPC": true, "setHostnameAsFQDN": true},
                "status": {"hostIP": "10.0.0.1", "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}]}
            })
        );
        let service = Enc::new()
            .msg(2, Enc::new().str(3, "10.96.0.10").str(18, "10.96.0.10").str(5, "1.2.3.4").str(8, "5.6.7.8"));
        assert_eq!(
            decode("v1", "Service", service),
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "spec": {
                    "clusterIP": "10.96.0.10",
                    "clusterIPs": ["10.96.0.10"],
                    "externalIPs": ["1.2.3.4"],
                    "loadBalancerIP": "5.6.7.8"
                }
            })
        );
    }

    #[test]
    fn packed_and_unpacked_repeated_scalars() {
        static MSG: Message = Message::new(
            "test::Ints",
            Special::None,
            &[
                Field::repeated(1, "ints", Kind::Int32),
                Field::repeated(2, "flags", Kind::Bool),
                Field::new(3, "ratio", Kind::Double),
                Field::repeated(4, "blobs", Kind::Bytes),
            ],
        );
        let packed = Enc::new().varint(1).varint(300).varint(-2i64 as u64).0;
        let data = Enc::new().int(1, 7).bytes(1, &packed).bytes(2, &[1, 0]).boolean(2, true).key(3, WIRE_64);
        let mut data = data.0;
        data.extend_from_slice(&0.5f64.to_le_bytes());
        let data = Enc(data).bytes(4, b"hi").bytes(4, b"").0;
        assert_eq!(
            decode_message(&MSG, &data, 0).expect("decodes"),
            json!({"ints": [7, 1, 300, -2], "flags": [true, false, true], "ratio": 0.5, "blobs": ["aGk=", ""]})
        );
        let nan = [Enc::new().key(3, WIRE_64).0, f64::NAN.to_le_bytes().to_vec()].concat();
        assert!(matches!(decode_message(&MSG, &nan, 0), Err(ProtobufError::Malformed { .. })));
    }

    #[test]
    fn unknown_fields_are_skipped_and_repeated_messages_merge() {
        let mut unknown = Enc::new().int(99, 5).str(98, "x").key(97, WIRE_32).0;
        unknown.extend_from_slice(&[1, 2, 3, 4]);
        let mut unknown = Enc(unknown).key(96, WIRE_64).0;
        unknown.extend_from_slice(&[0; 8]);
        let group = Enc(unknown).key(95, WIRE_START_GROUP).int(1, 1).key(95, WIRE_END_GROUP);
        let cm = group
            .msg(1, Enc::new().str(1, "a"))
            .msg(1, Enc::new().str(3, "ns"))
            .msg(1, Enc::new().str(1, "b"))
            .map_str(2, "k", "v1")
            .map_str(2, "k", "v2");
        assert_eq!(
            decode("v1", "ConfigMap", cm),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "ns"}, "data": {"k": "v2"}})
        );
    }

    #[test]
    fn well_known_messages() {
        static TIME: Message = Message::new("Time", Special::Time, &[]);
        static MICRO: Message = Message::new("MicroTime", Special::MicroTime, &[]);
        static DURATION: Message = Message::new("Duration", Special::Duration, &[]);
        static RAW: Message = Message::new("RawExtension", Special::RawExtension, &[]);
        static FIELDS: Message = Message::new("FieldsV1", Special::FieldsV1, &[]);
        let time = |s: i64, n: i64| Enc::new().int(1, s).int(2, n).0;
        assert_eq!(decode_message(&TIME, &time(1_704_164_645, 999), 0), Ok(json!("2024-01-02T03:04:05Z")));
        assert_eq!(decode_message(&TIME, &[], 0), Ok(Value::Null));
        assert_eq!(decode_message(&TIME, &time(-1, 0), 0), Ok(json!("1969-12-31T23:59:59Z")));
        assert_eq!(decode_message(&TIME, &time(951_782_400, 0), 0), Ok(json!("2000-02-29T00:00:00Z")));
        assert_eq!(decode_message(&TIME, &time(GO_ZERO_TIME_UNIX, 0), 0), Ok(Value::Null));
        assert_eq!(decode_message(&MICRO, &time(1_704_164_645, 0), 0), Ok(json!("2024-01-02T03:04:05.000000Z")));
        assert_eq!(
            decode_message(&MICRO, &time(1_704_164_645, 123_456_789), 0),
            Ok(json!("2024-01-02T03:04:05.123456Z"))
        );
        assert_eq!(decode_message(&MICRO, &[], 0), Ok(Value::Null));
        let duration = |n: i64| Enc::new().int(1, n).0;
        assert_eq!(decode_message(&DURATION, &duration(90_000_000_000), 0), Ok(json!("1m30s")));
        assert_eq!(decode_message(&DURATION, &[], 0), Ok(json!("0s")));
        for (nanos, text) in [
            (1, "1ns"),
            (1_500, "1.5µs"),
            (100_000_000, "100ms"),
            (1_500_000_000, "1.5s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_000_000_001, "1h2m3.000000001s"),
            (-90_000_000_000, "-1m30s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ] {
            assert_eq!(crate::duration::format(nanos), text);
        }
        let raw = |b: &[u8]| Enc::new().bytes(1, b).0;
        assert_eq!(decode_message(&RAW, &raw(br#"{"a":[1]}"#), 0), Ok(json!({"a": [1]})));
        assert_eq!(decode_message(&RAW, &[], 0), Ok(Value::Null));
        let nested = body("v1", "Namespace", Enc::new().msg(1, Enc::new().str(1, "n")));
        assert_eq!(
            decode_message(&RAW, &raw(&nested), 0),
            Ok(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}))
        );
        assert!(matches!(decode_message(&RAW, &raw(b"{"), 0), Err(ProtobufError::Malformed { .. })));
        assert_eq!(decode_message(&FIELDS, &raw(br#"{"f:metadata":{}}"#), 0), Ok(json!({"f:metadata": {}})));
    }

    #[test]
    fn base64_padding() {
        for (input, output) in
            [(&b""[..], ""), (b"f", "Zg=="), (b"fo", "Zm8="), (b"foo", "Zm9v"), (b"foob", "Zm9vYg==")]
        {
            assert_eq!(base64(input), output);
        }
    }

    #[test]
    fn errors() {
        assert_eq!(decode_k8s_protobuf(b"{\"kind\":\"Pod\"}"), Err(ProtobufError::BadMagic));
        assert_eq!(decode_k8s_protobuf(b"k8s"), Err(ProtobufError::BadMagic));

        // A varint whose continuation bit runs off the end.
        let truncated = [MAGIC.as_slice(), &[0x0a, 0x80]].concat();
        assert!(matches!(decode_k8s_protobuf(&truncated), Err(ProtobufError::Truncated { message: UNKNOWN, .. })));
        let truncated_raw =
            [MAGIC.as_slice(), &Enc::new().msg(1, Enc::new().str(1, "v1").str(2, "Pod")).0, &[0x12, 10, 1]].concat();
        assert!(matches!(decode_k8s_protobuf(&truncated_raw), Err(ProtobufError::Truncated { .. })));
        let pod = body("v1", "Pod", Enc::new().msg(1, Enc::new().int(7, 1)).key(2, WIRE_LEN).varint(5).varint(1));
        assert_eq!(
            decode_k8s_protobuf(&pod),
            Err(ProtobufError::Truncated {
                message: "api::core::v1::Pod",
                detail: "length-delimited field runs past the end of the data"
            })
        );
        let too_long =
            body("v1", "Pod", Enc(vec![0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]));
        assert!(matches!(decode_k8s_protobuf(&too_long), Err(ProtobufError::Malformed { .. })));
        let wrong_wire = body("v1", "ConfigMap", Enc::new().int(1, 5));
        assert_eq!(
            decode_k8s_protobuf(&wrong_wire).map_err(|e| e.to_string()),
            Err("malformed protobuf data in api::core::v1::ConfigMap: wrong wire type 0 for field metadata".into())
        );

        let unknown = decode_k8s_protobuf(&body("example.com/v1", "Widget", Enc::new()));
        assert_eq!(
            unknown,
            Err(ProtobufError::UnsupportedKind { api_version: "example.com/v1".into(), kind: "Widget".into() })
        );
        assert_eq!(
            unknown.map_err(|e| e.to_string()),
            Err("the protobuf encoding of kind \"Widget\" in apiVersion \"example.com/v1\" is not supported, use JSON"
                .into())
        );
        // Right kind, wrong group.
        assert!(matches!(
            decode_k8s_protobuf(&body("extensions/v1beta1", "Deployment", Enc::new())),
            Err(ProtobufError::UnsupportedKind { .. })
        ));
        assert!(matches!(
            decode_k8s_protobuf(&[MAGIC.as_slice(), &[]].concat()),
            Err(ProtobufError::UnsupportedKind { .. })
        ));
        let bad_int_or_string =
            Enc::new().msg(2, Enc::new().msg(4, Enc::new().msg(2, Enc::new().msg(1, Enc::new().int(1, 7)))));
        assert!(matches!(
            decode_k8s_protobuf(&body("apps/v1", "Deployment", bad_int_or_string)),
            Err(ProtobufError::Malformed { message: "apimachinery::pkg::util::intstr::IntOrString", .. })
        ));
    }

    #[test]
    fn nesting_is_limited() {
        let mut data = Enc::new().0;
        for _ in 0..MAX_DEPTH + 5 {
            data = Enc::new().msg(1, Enc(data)).0;
        }
        static NESTED: Message =
            Message::new("Nested", Special::None, &[Field::new(1, "child", Kind::Message(&NESTED))]);
        assert_eq!(decode_message(&NESTED, &data, 0), Err(ProtobufError::TooDeep));
        let mut shallow = Enc::new().0;
        for _ in 0..10 {
            shallow = Enc::new().msg(1, Enc(shallow)).0;
        }
        assert!(decode_message(&NESTED, &shallow, 0).is_ok());
    }
}
