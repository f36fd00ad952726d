//! The protobuf encoding of a Swagger 2.0 document that client-go asks for
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`) and decodes into gnostic's
//! `openapi.v2.Document` (google/gnostic-models `openapiv2/OpenAPIv2.proto`). Each message is a table of the JSON
//! keys it holds with their field numbers; `x-` keys are `NamedAny` vendor extensions whose `Any.yaml` holds the
//! value as text (JSON, which is YAML), as upstream's gnostic compiler fills it. Fields are written in field-number
//! order and proto3 zero scalars are left out, as Go's `proto.Marshal` does.

use serde_json::Value;

/// How a JSON value is written into a field.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ty {
    /// `string` (left out when empty).
    Str,
    /// `bool` (left out when false).
    Bool,
    /// `int64` (left out when zero).
    Int,
    /// `double` (left out when zero).
    Double,
    /// `repeated string` from a JSON array.
    Strs,
    /// `repeated string` from one JSON string or an array of them (`type`).
    StrOrStrs,
    /// `Any`: the value as YAML text.
    Any,
    /// `repeated Any`, one per array element.
    Anys,
    /// A sub-message from the JSON value.
    Msg(&'static Message),
    /// `repeated` sub-messages, one per array element.
    Msgs(&'static Message),
    /// `repeated` sub-messages from one JSON object or an array of them (`items`).
    MsgOrMsgs(&'static Message),
}

/// A gnostic message and how a JSON value maps to it.
pub(crate) struct Message {
    /// The gnostic message name.
    pub(crate) name: &'static str,
    /// (JSON key, field number, type) for the keys the message has by name.
    pub(crate) fields: &'static [(&'static str, u32, Ty)],
    /// The field number of `repeated NamedAny vendor_extension` for `x-` keys, 0 for none.
    pub(crate) extensions: u32,
    /// A map-like message (`Definitions`, `Paths`, `Responses`...): the field number of its repeated named entries
    /// (`{name = 1, value = 2}`) and the entries' value type, for the keys not matched above.
    pub(crate) entries: Option<(u32, Ty)>,
    /// A message the whole JSON value goes into one field of (a oneof, or `TypeItem`, `ItemsItem`,
    /// `StringArray`): the index in `fields` of that field for a value.
    pub(crate) wraps: Option<fn(&Value) -> Option<usize>>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "openapi.v2.{}", self.name)
    }
}

const fn msg(name: &'static str, fields: &'static [(&'static str, u32, Ty)], extensions: u32) -> Message {
    Message { name, fields, extensions, entries: None, wraps: None }
}

const fn map(name: &'static str, entry_field: u32, value: Ty, extensions: u32) -> Message {
    Message { name, fields: &[], extensions, entries: Some((entry_field, value)), wraps: None }
}

const fn oneof(
    name: &'static str,
    fields: &'static [(&'static str, u32, Ty)],
    wraps: fn(&Value) -> Option<usize>,
) -> Message {
    Message { name, fields, extensions: 0, entries: None, wraps: Some(wraps) }
}

use Ty::{Any, Anys, Bool, Double, Int, Msg, MsgOrMsgs, Msgs, Str, StrOrStrs, Strs};

pub(crate) static DOCUMENT: Message = msg(
    "Document",
    &[
        ("swagger", 1, Str),
        ("info", 2, Msg(&INFO)),
        ("host", 3, Str),
        ("basePath", 4, Str),
        ("schemes", 5, Strs),
        ("consumes", 6, Strs),
        ("produces", 7, Strs),
        ("paths", 8, Msg(&PATHS)),
        ("definitions", 9, Msg(&DEFINITIONS)),
        ("parameters", 10, Msg(&PARAMETER_DEFINITIONS)),
        ("responses", 11, Msg(&RESPONSE_DEFINITIONS)),
        ("security", 12, Msgs(&SECURITY_REQUIREMENT)),
        ("securityDefinitions", 13, Msg(&SECURITY_DEFINITIONS)),
        ("tags", 14, Msgs(&TAG)),
        ("externalDocs", 15, Msg(&EXTERNAL_DOCS)),
    ],
    16,
);

static INFO: Message = msg(
    "Info",
    &[
        ("title", 1, Str),
        ("version", 2, Str),
        ("description", 3, Str),
        ("termsOfService", 4, Str),
        ("contact", 5, Msg(&CONTACT)),
        ("license", 6, Msg(&LICENSE)),
    ],
    7,
);
static CONTACT: Message = msg("Contact", &[("name", 1, Str), ("url", 2, Str), ("email", 3, Str)], 4);
static LICENSE: Message = msg("License", &[("name", 1, Str), ("url", 2, Str)], 3);
static EXTERNAL_DOCS: Message = msg("ExternalDocs", &[("description", 1, Str), ("url", 2, Str)], 3);
static TAG: Message =
    msg("Tag", &[("name", 1, Str), ("description", 2, Str), ("externalDocs", 3, Msg(&EXTERNAL_DOCS))], 4);

static PATHS: Message = map("Paths", 2, Msg(&PATH_ITEM), 1);
static PATH_ITEM: Message = msg(
    "PathItem",
    &[
        ("$ref", 1, Str),
        ("get", 2, Msg(&OPERATION)),
        ("put", 3, Msg(&OPERATION)),
        ("post", 4, Msg(&OPERATION)),
        ("delete", 5, Msg(&OPERATION)),
        ("options", 6, Msg(&OPERATION)),
        ("head", 7, Msg(&OPERATION)),
        ("patch", 8, Msg(&OPERATION)),
        ("parameters", 9, Msgs(&PARAMETERS_ITEM)),
    ],
    10,
);
static OPERATION: Message = msg(
    "Operation",
    &[
        ("tags", 1, Strs),
        ("summary", 2, Str),
        ("description", 3, Str),
        ("externalDocs", 4, Msg(&EXTERNAL_DOCS)),
        ("operationId", 5, Str),
        ("produces", 6, Strs),
        ("consumes", 7, Strs),
        ("parameters", 8, Msgs(&PARAMETERS_ITEM)),
        ("responses", 9, Msg(&RESPONSES)),
        ("schemes", 10, Strs),
        ("deprecated", 11, Bool),
        ("security", 12, Msgs(&SECURITY_REQUIREMENT)),
    ],
    13,
);

/// `ParametersItem`: a `$ref` to a shared parameter, or the parameter.
static PARAMETERS_ITEM: Message =
    oneof("ParametersItem", &[("parameter", 1, Msg(&PARAMETER)), ("jsonReference", 2, Msg(&JSON_REFERENCE))], |v| {
        Some(usize::from(v.get("$ref").is_some()))
    });
static JSON_REFERENCE: Message = msg("JsonReference", &[("$ref", 1, Str), ("description", 2, Str)], 0);
/// `Parameter`: a body parameter, or one of the others.
static PARAMETER: Message = oneof(
    "Parameter",
    &[("bodyParameter", 1, Msg(&BODY_PARAMETER)), ("nonBodyParameter", 2, Msg(&NON_BODY_PARAMETER))],
    |v| Some(usize::from(v["in"] != "body")),
);
static BODY_PARAMETER: Message = msg(
    "BodyParameter",
    &[("description", 1, Str), ("name", 2, Str), ("in", 3, Str), ("required", 4, Bool), ("schema", 5, Msg(&SCHEMA))],
    6,
);
/// `NonBodyParameter`: by where the parameter is.
static NON_BODY_PARAMETER: Message = oneof(
    "NonBodyParameter",
    &[
        ("header", 1, Msg(&HEADER_PARAMETER)),
        ("formData", 2, Msg(&FORM_DATA_PARAMETER)),
        ("query", 3, Msg(&QUERY_PARAMETER)),
        ("path", 4, Msg(&PATH_PARAMETER)),
    ],
    |v| NON_BODY_PARAMETER.fields.iter().position(|(k, _, _)| v["in"] == *k),
);

/// The fields of parameters, headers and primitive items: `before`, then the validation keywords from `type` on
/// (consecutive in every one of those messages, `type` numbered `first`), then `after`.
macro_rules! primitive_fields {
    ($first:expr; $($before:expr),*; $($after:expr),*) => {
        &[
            $($before,)*
            ("type", $first, Str),
            ("format", $first + 1, Str),
            ("items", $first + 2, Msg(&PRIMITIVES_ITEMS)),
            ("collectionFormat", $first + 3, Str),
            ("default", $first + 4, Any),
            ("maximum", $first + 5, Double),
            ("exclusiveMaximum", $first + 6, Bool),
            ("minimum", $first + 7, Double),
            ("exclusiveMinimum", $first + 8, Bool),
            ("maxLength", $first + 9, Int),
            ("minLength", $first + 10, Int),
            ("pattern", $first + 11, Str),
            ("maxItems", $first + 12, Int),
            ("minItems", $first + 13, Int),
            ("uniqueItems", $first + 14, Bool),
            ("enum", $first + 15, Anys),
            ("multipleOf", $first + 16, Double),
            $($after,)*
        ]
    };
}

static HEADER_PARAMETER: Message = msg(
    "HeaderParameterSubSchema",
    primitive_fields!(5; ("required", 1, Bool), ("in", 2, Str), ("description", 3, Str), ("name", 4, Str); ),
    22,
);
static FORM_DATA_PARAMETER: Message = msg(
    "FormDataParameterSubSchema",
    primitive_fields!(6; ("required", 1, Bool), ("in", 2, Str), ("description", 3, Str), ("name", 4, Str),
        ("allowEmptyValue", 5, Bool); ),
    23,
);
static QUERY_PARAMETER: Message = msg(
    "QueryParameterSubSchema",
    primitive_fields!(6; ("required", 1, Bool), ("in", 2, Str), ("description", 3, Str), ("name", 4, Str),
        ("allowEmptyValue", 5, Bool); ),
    23,
);
static PATH_PARAMETER: Message = msg(
    "PathParameterSubSchema",
    primitive_fields!(5; ("required", 1, Bool), ("in", 2, Str), ("description", 3, Str), ("name", 4, Str); ),
    22,
);
static PRIMITIVES_ITEMS: Message = msg("PrimitivesItems", primitive_fields!(1; ; ), 18);
static HEADER: Message = msg("Header", primitive_fields!(1; ; ("description", 18, Str)), 19);

static RESPONSES: Message = map("Responses", 1, Msg(&RESPONSE_VALUE), 2);
/// `ResponseValue`: a `$ref` to a shared response, or the response.
static RESPONSE_VALUE: Message =
    oneof("ResponseValue", &[("response", 1, Msg(&RESPONSE)), ("jsonReference", 2, Msg(&JSON_REFERENCE))], |v| {
        Some(usize::from(v.get("$ref").is_some()))
    });
static RESPONSE: Message = msg(
    "Response",
    &[
        ("description", 1, Str),
        ("schema", 2, Msg(&SCHEMA_ITEM)),
        ("headers", 3, Msg(&HEADERS)),
        ("examples", 4, Msg(&EXAMPLES)),
    ],
    5,
);
static HEADERS: Message = map("Headers", 1, Msg(&HEADER), 0);
static EXAMPLES: Message = map("Examples", 1, Any, 0);
/// `SchemaItem`: a file, or a schema.
static SCHEMA_ITEM: Message =
    oneof("SchemaItem", &[("schema", 1, Msg(&SCHEMA)), ("fileSchema", 2, Msg(&FILE_SCHEMA))], |v| {
        Some(usize::from(v["type"] == "file"))
    });
static FILE_SCHEMA: Message = msg(
    "FileSchema",
    &[
        ("format", 1, Str),
        ("title", 2, Str),
        ("description", 3, Str),
        ("default", 4, Any),
        ("required", 5, Strs),
        ("type", 6, Str),
        ("readOnly", 7, Bool),
        ("externalDocs", 8, Msg(&EXTERNAL_DOCS)),
        ("example", 9, Any),
    ],
    10,
);

static DEFINITIONS: Message = map("Definitions", 1, Msg(&SCHEMA), 0);
static PROPERTIES: Message = map("Properties", 1, Msg(&SCHEMA), 0);
static PARAMETER_DEFINITIONS: Message = map("ParameterDefinitions", 1, Msg(&PARAMETER), 0);
static RESPONSE_DEFINITIONS: Message = map("ResponseDefinitions", 1, Msg(&RESPONSE), 0);
pub(crate) static SCHEMA: Message = msg(
    "Schema",
    &[
        ("$ref", 1, Str),
        ("format", 2, Str),
        ("title", 3, Str),
        ("description", 4, Str),
        ("default", 5, Any),
        ("multipleOf", 6, Double),
        ("maximum", 7, Double),
        ("exclusiveMaximum", 8, Bool),
        ("minimum", 9, Double),
        ("exclusiveMinimum", 10, Bool),
        ("maxLength", 11, Int),
        ("minLength", 12, Int),
        ("pattern", 13, Str),
        ("maxItems", 14, Int),
        ("minItems", 15, Int),
        ("uniqueItems", 16, Bool),
        ("maxProperties", 17, Int),
        ("minProperties", 18, Int),
        ("required", 19, Strs),
        ("enum", 20, Anys),
        ("additionalProperties", 21, Msg(&ADDITIONAL_PROPERTIES)),
        ("type", 22, Msg(&TYPE_ITEM)),
        ("items", 23, Msg(&ITEMS_ITEM)),
        ("allOf", 24, Msgs(&SCHEMA)),
        ("properties", 25, Msg(&PROPERTIES)),
        ("discriminator", 26, Str),
        ("readOnly", 27, Bool),
        ("xml", 28, Msg(&XML)),
        ("externalDocs", 29, Msg(&EXTERNAL_DOCS)),
        ("example", 30, Any),
    ],
    31,
);
/// `AdditionalPropertiesItem`: a schema, or a boolean.
static ADDITIONAL_PROPERTIES: Message =
    oneof("AdditionalPropertiesItem", &[("schema", 1, Msg(&SCHEMA)), ("boolean", 2, Bool)], |v| {
        Some(usize::from(v.is_boolean()))
    });
/// `TypeItem`: one type name or several.
static TYPE_ITEM: Message = oneof("TypeItem", &[("value", 1, StrOrStrs)], |_| Some(0));
/// `ItemsItem`: one schema or a list of them.
static ITEMS_ITEM: Message = oneof("ItemsItem", &[("schema", 1, MsgOrMsgs(&SCHEMA))], |_| Some(0));
static XML: Message = msg(
    "Xml",
    &[("name", 1, Str), ("namespace", 2, Str), ("prefix", 3, Str), ("attribute", 4, Bool), ("wrapped", 5, Bool)],
    6,
);

static SECURITY_REQUIREMENT: Message = map("SecurityRequirement", 1, Msg(&STRING_ARRAY), 0);
static STRING_ARRAY: Message = oneof("StringArray", &[("value", 1, Strs)], |_| Some(0));
static SECURITY_DEFINITIONS: Message = map("SecurityDefinitions", 1, Msg(&SECURITY_DEFINITIONS_ITEM), 0);
/// `SecurityDefinitionsItem`: by `type`, and for OAuth2 by `flow`.
static SECURITY_DEFINITIONS_ITEM: Message = oneof(
    "SecurityDefinitionsItem",
    &[
        ("basic", 1, Msg(&BASIC_SECURITY)),
        ("apiKey", 2, Msg(&API_KEY_SECURITY)),
        ("implicit", 3, Msg(&OAUTH2_IMPLICIT)),
        ("password", 4, Msg(&OAUTH2_PASSWORD)),
        ("application", 5, Msg(&OAUTH2_APPLICATION)),
        ("accessCode", 6, Msg(&OAUTH2_ACCESS_CODE)),
    ],
    |v| {
        let by = if v["type"] == "oauth2" { &v["flow"] } else { &v["type"] };
        SECURITY_DEFINITIONS_ITEM.fields.iter().position(|(k, _, _)| by == *k)
    },
);
static BASIC_SECURITY: Message = msg("BasicAuthenticationSecurity", &[("type", 1, Str), ("description", 2, Str)], 3);
static API_KEY_SECURITY: Message =
    msg("ApiKeySecurity", &[("type", 1, Str), ("name", 2, Str), ("in", 3, Str), ("description", 4, Str)], 5);
static OAUTH2_SCOPES: Message = map("Oauth2Scopes", 1, Str, 0);
static OAUTH2_IMPLICIT: Message = msg(
    "Oauth2ImplicitSecurity",
    &[
        ("type", 1, Str),
        ("flow", 2, Str),
        ("scopes", 3, Msg(&OAUTH2_SCOPES)),
        ("authorizationUrl", 4, Str),
        ("description", 5, Str),
    ],
    6,
);
static OAUTH2_PASSWORD: Message = msg(
    "Oauth2PasswordSecurity",
    &[
        ("type", 1, Str),
        ("flow", 2, Str),
        ("scopes", 3, Msg(&OAUTH2_SCOPES)),
        ("tokenUrl", 4, Str),
        ("description", 5, Str),
    ],
    6,
);
static OAUTH2_APPLICATION: Message = msg(
    "Oauth2ApplicationSecurity",
    &[
        ("type", 1, Str),
        ("flow", 2, Str),
        ("scopes", 3, Msg(&OAUTH2_SCOPES)),
        ("tokenUrl", 4, Str),
        ("description", 5, Str),
    ],
    6,
);
static OAUTH2_ACCESS_CODE: Message = msg(
    "Oauth2AccessCodeSecurity",
    &[
        ("type", 1, Str),
        ("flow", 2, Str),
        ("scopes", 3, Msg(&OAUTH2_SCOPES)),
        ("authorizationUrl", 4, Str),
        ("tokenUrl", 5, Str),
        ("description", 6, Str),
    ],
    7,
);

/// `NamedAny` (vendor extensions, examples): `{name = 1, value = 2 Any}`; `Any` keeps the text in `yaml = 2`.
const NAME: u32 = 1;
const VALUE: u32 = 2;
const ANY_YAML: u32 = 2;

/// Encodes a Swagger 2.0 JSON document as an `openapi.v2.Document`.
pub fn encode_document(doc: &Value) -> Vec<u8> {
    encode(&DOCUMENT, doc)
}

/// Encodes `v` as the message `m`.
pub(crate) fn encode(m: &Message, v: &Value) -> Vec<u8> {
    let mut fields: Vec<(u32, Vec<u8>)> = Vec::new();
    if let Some(wraps) = m.wraps {
        match wraps(v).and_then(|i| m.fields.get(i)) {
            // A oneof member is written even when it is a zero scalar (`additionalProperties: false`).
            Some((_, number, Ty::Bool)) => {
                let mut b = Vec::new();
                put_varint(&mut b, u64::from(number << 3));
                put_varint(&mut b, u64::from(v.as_bool() == Some(true)));
                fields.push((*number, b));
            }
            Some((_, number, ty)) => field(&mut fields, *number, *ty, v),
            None => {}
        }
    } else if let Some(obj) = v.as_object() {
        for (key, value) in obj {
            if let Some((_, number, ty)) = m.fields.iter().find(|(k, _, _)| k == key) {
                field(&mut fields, *number, *ty, value);
            } else if m.extensions != 0 && key.starts_with("x-") {
                let mut named = Vec::new();
                put_len(&mut named, NAME, key.as_bytes());
                put_len(&mut named, VALUE, &any(value));
                fields.push((m.extensions, tagged_len(m.extensions, &named)));
            } else if let Some((number, ty)) = m.entries {
                let mut named = Vec::new();
                put_len(&mut named, NAME, key.as_bytes());
                let mut inner = Vec::new();
                field(&mut inner, VALUE, ty, value);
                inner.into_iter().for_each(|(_, b)| named.extend(b));
                fields.push((number, tagged_len(number, &named)));
            }
        }
    }
    fields.sort_by_key(|(n, _)| *n);
    fields.into_iter().flat_map(|(_, b)| b).collect()
}

/// `Any{yaml}` for a value: JSON text, which YAML parsers read as the same value.
fn any(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    put_len(&mut out, ANY_YAML, v.to_string().as_bytes());
    out
}

/// Appends the encoding of one JSON value as field `number` of type `ty` (nothing for zero scalars or a value
/// of the wrong JSON type).
fn field(out: &mut Vec<(u32, Vec<u8>)>, number: u32, ty: Ty, v: &Value) {
    let mut b = Vec::new();
    match ty {
        Ty::Str => {
            if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
                put_len(&mut b, number, s.as_bytes());
            }
        }
        Ty::Bool => {
            if v.as_bool() == Some(true) {
                put_varint(&mut b, u64::from(number << 3));
                put_varint(&mut b, 1);
            }
        }
        Ty::Int => {
            if let Some(i) = v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)).filter(|i| *i != 0) {
                put_varint(&mut b, u64::from(number << 3));
                put_varint(&mut b, i as u64);
            }
        }
        Ty::Double => {
            if let Some(f) = v.as_f64().filter(|f| *f != 0.0) {
                put_varint(&mut b, u64::from(number << 3 | 1));
                b.extend(f.to_le_bytes());
            }
        }
        Ty::Strs | Ty::StrOrStrs => match v {
            Value::String(s) if matches!(ty, Ty::StrOrStrs) => put_len(&mut b, number, s.as_bytes()),
            Value::Array(a) => a.iter().filter_map(Value::as_str).for_each(|s| put_len(&mut b, number, s.as_bytes())),
            _ => {}
        },
        Ty::Any => put_len(&mut b, number, &any(v)),
        Ty::Anys => v.as_array().into_iter().flatten().for_each(|x| put_len(&mut b, number, &any(x))),
        Ty::Msg(m) => put_len(&mut b, number, &encode(m, v)),
        Ty::Msgs(m) => v.as_array().into_iter().flatten().for_each(|x| put_len(&mut b, number, &encode(m, x))),
        Ty::MsgOrMsgs(m) => match v {
            Value::Array(a) => a.iter().for_each(|x| put_len(&mut b, number, &encode(m, x))),
            one => put_len(&mut b, number, &encode(m, one)),
        },
    }
    if !b.is_empty() {
        out.push((number, b));
    }
}

fn tagged_len(number: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(payload.len() + 6);
    put_len(&mut b, number, payload);
    b
}

/// A length-delimited field (wire type 2).
fn put_len(out: &mut Vec<u8>, number: u32, payload: &[u8]) {
    put_varint(out, u64::from(number << 3 | 2));
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    /// One decoded field: number, and its varint or bytes.
    enum Raw<'a> {
        Varint(u64),
        Fixed64(u64),
        Bytes(&'a [u8]),
    }

    fn varint(b: &[u8], i: &mut usize) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = b[*i];
            *i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    /// The fields of a message in wire order; panics on anything but varint, fixed64 and length-delimited.
    fn raw(b: &[u8]) -> Vec<(u32, Raw<'_>)> {
        let (mut i, mut out) = (0, Vec::new());
        while i < b.len() {
            let key = varint(b, &mut i);
            let number = (key >> 3) as u32;
            out.push(match key & 7 {
                0 => (number, Raw::Varint(varint(b, &mut i))),
                1 => {
                    let v = u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
                    i += 8;
                    (number, Raw::Fixed64(v))
                }
                2 => {
                    let len = varint(b, &mut i) as usize;
                    i += len;
                    (number, Raw::Bytes(&b[i - len..i]))
                }
                w => panic!("wire type {w} in field {number}"),
            });
        }
        out
    }

    /// `Any{yaml}` back to the JSON value it holds.
    fn decode_any(b: &[u8]) -> Value {
        let fields = raw(b);
        let [(ANY_YAML, Raw::Bytes(text))] = fields.as_slice() else { panic!("Any without yaml") };
        serde_json::from_slice(text).unwrap()
    }

    /// One field's value as JSON; repeated fields arrive once per element and are gathered by the caller.
    fn decode_scalar(ty: Ty, r: &Raw<'_>) -> Value {
        match (ty, r) {
            (Ty::Str | Ty::Strs | Ty::StrOrStrs, Raw::Bytes(b)) => json!(std::str::from_utf8(b).unwrap()),
            (Ty::Bool, Raw::Varint(v)) => json!(*v != 0),
            (Ty::Int, Raw::Varint(v)) => json!(*v as i64),
            (Ty::Double, Raw::Fixed64(v)) => json!(f64::from_bits(*v)),
            (Ty::Any | Ty::Anys, Raw::Bytes(b)) => decode_any(b),
            (Ty::Msg(m) | Ty::Msgs(m) | Ty::MsgOrMsgs(m), Raw::Bytes(b)) => decode(m, b),
            (ty, _) => panic!("wrong wire type for {ty:?}"),
        }
    }

    fn repeated(ty: Ty) -> bool {
        matches!(ty, Ty::Strs | Ty::StrOrStrs | Ty::Anys | Ty::Msgs(_) | Ty::MsgOrMsgs(_))
    }

    /// Decodes `b` as message `m` back into the JSON it was encoded from, with the same tables.
    fn decode(m: &Message, b: &[u8]) -> Value {
        let fields = raw(b);
        if m.wraps.is_some() {
            let Some((number, r)) = fields.first() else {
                // Only `StringArray` is empty: `security: [{BearerToken: []}]`.
                return json!([]);
            };
            let (_, _, ty) = m.fields.iter().find(|(_, n, _)| n == number).expect("unknown oneof member");
            if !repeated(*ty) {
                return decode_scalar(*ty, r);
            }
            let all: Vec<Value> = fields.iter().map(|(_, r)| decode_scalar(*ty, r)).collect();
            return match (ty, all.len()) {
                (Ty::StrOrStrs | Ty::MsgOrMsgs(_), 1) => all.into_iter().next().unwrap(),
                _ => Value::Array(all),
            };
        }
        let mut out = Map::new();
        for (number, r) in &fields {
            let Raw::Bytes(bytes) = r else {
                let (key, _, ty) = m.fields.iter().find(|(_, n, _)| n == number).expect("unknown field");
                out.insert(key.to_string(), decode_scalar(*ty, r));
                continue;
            };
            if let Some((key, _, ty)) = m.fields.iter().find(|(_, n, _)| n == number) {
                let v = decode_scalar(*ty, r);
                if repeated(*ty) && !matches!(ty, Ty::StrOrStrs | Ty::MsgOrMsgs(_)) {
                    out.entry(key.to_string()).or_insert_with(|| json!([])).as_array_mut().unwrap().push(v);
                } else {
                    out.insert(key.to_string(), v);
                }
                continue;
            }
            let named = raw(bytes);
            let name = named.iter().find_map(|(n, r)| match r {
                Raw::Bytes(b) if *n == NAME => Some(std::str::from_utf8(b).unwrap().to_string()),
                _ => None,
            });
            let value = named.iter().find(|(n, _)| *n == VALUE).map(|(_, r)| r);
            if *number == m.extensions {
                out.insert(
                    name.unwrap(),
                    decode_any(match value {
                        Some(Raw::Bytes(b)) => b,
                        _ => panic!(),
                    }),
                );
            } else if let Some((_, ty)) = m.entries.filter(|(n, _)| n == number) {
                let v = match value {
                    Some(r) => decode_scalar(ty, r),
                    None => decode_scalar(ty, &Raw::Bytes(&[])),
                };
                out.insert(name.unwrap_or_default(), v);
            } else {
                panic!("{m:?} has no field {number}");
            }
        }
        Value::Object(out)
    }

    /// What survives the encoding: proto3 leaves out empty strings, false and zeros, and doubles are floats.
    fn normalize(m: &Message, v: &Value) -> Value {
        if let Some(wraps) = m.wraps {
            let (_, _, ty) = m.fields[wraps(v).unwrap()];
            // A oneof member is written even when it is zero (and `StringArray` may be empty).
            return normalize_field(ty, v).unwrap_or_else(|| v.clone());
        }
        let Some(obj) = v.as_object() else { return v.clone() };
        let mut out = Map::new();
        for (k, x) in obj {
            let normalized = if let Some((_, _, ty)) = m.fields.iter().find(|(key, _, _)| key == k) {
                normalize_field(*ty, x)
            } else if m.extensions != 0 && k.starts_with("x-") {
                Some(x.clone())
            } else if let Some((_, ty)) = m.entries {
                Some(normalize_field(ty, x).unwrap_or_else(|| decode_scalar(ty, &Raw::Bytes(&[]))))
            } else {
                Some(x.clone())
            };
            if let Some(n) = normalized {
                out.insert(k.clone(), n);
            }
        }
        Value::Object(out)
    }

    fn normalize_field(ty: Ty, v: &Value) -> Option<Value> {
        match ty {
            Ty::Str => v.as_str().filter(|s| !s.is_empty()).map(|s| json!(s)),
            Ty::Bool => v.as_bool().filter(|b| *b).map(|b| json!(b)),
            Ty::Int => v.as_i64().filter(|i| *i != 0).map(|i| json!(i)),
            Ty::Double => v.as_f64().filter(|f| *f != 0.0).map(|f| json!(f)),
            Ty::Msg(m) => Some(normalize(m, v)),
            Ty::MsgOrMsgs(m) if !v.is_array() => Some(normalize(m, v)),
            Ty::Msgs(m) | Ty::MsgOrMsgs(m) => {
                let a: Vec<Value> = v.as_array()?.iter().map(|x| normalize(m, x)).collect();
                (!a.is_empty()).then_some(Value::Array(a))
            }
            Ty::Strs | Ty::Anys => v.as_array().filter(|a| !a.is_empty()).map(|_| v.clone()),
            Ty::StrOrStrs | Ty::Any => Some(v.clone()),
        }
    }

    /// The first path where two values differ, for a readable failure on a large document.
    fn difference(a: &Value, b: &Value, path: &str) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for k in x.keys().chain(y.keys()) {
                    let (xa, yb) = (x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null));
                    if let Some(d) = difference(xa, yb, &format!("{path}.{k}")) {
                        return Some(d);
                    }
                }
                None
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                x.iter().zip(y).enumerate().find_map(|(i, (p, q))| difference(p, q, &format!("{path}[{i}]")))
            }
            _ => (a != b).then(|| format!("{path}: {a} != {b}")),
        }
    }

    #[test]
    fn document_fields_carry_gnostic_numbers() {
        let doc = json!({"swagger": "2.0", "info": {"title": "T", "version": "v"}, "host": ""});
        // Document.swagger = 1, Document.info = 2 {Info.title = 1, Info.version = 2}; the empty host is left out.
        assert_eq!(encode_document(&doc), b"\x0a\x032.0\x12\x06\x0a\x01T\x12\x01v");
        // Written in field-number order whatever the JSON order.
        let reordered = json!({"info": {"version": "v", "title": "T"}, "swagger": "2.0"});
        assert_eq!(encode_document(&reordered), encode_document(&doc));
    }

    #[test]
    fn vendor_extensions_are_named_any_with_the_value_as_text() {
        let schema = json!({"type": "object", "x-kubernetes-group-version-kind": [{"group": "", "kind": "Pod", "version": "v1"}]});
        let b = encode(&SCHEMA, &schema);
        let fields = raw(&b);
        // Schema.type = 22 (TypeItem{value = 1}), Schema.vendor_extension = 31 (NamedAny{name = 1, value = 2 Any{yaml = 2}}).
        assert_eq!(fields.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [22, 31]);
        let Raw::Bytes(type_item) = fields[0].1 else { panic!() };
        assert_eq!(type_item, b"\x0a\x06object");
        let Raw::Bytes(named) = fields[1].1 else { panic!() };
        let named = raw(named);
        let (NAME, Raw::Bytes(name)) = named[0] else { panic!() };
        assert_eq!(name, b"x-kubernetes-group-version-kind");
        let (VALUE, Raw::Bytes(any)) = named[1] else { panic!() };
        assert_eq!(decode_any(any), schema["x-kubernetes-group-version-kind"]);
    }

    #[test]
    fn parameters_pick_their_oneof_members() {
        let op = json!({"parameters": [
            {"name": "body", "in": "body", "required": true, "schema": {"$ref": "#/definitions/X"}},
            {"name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": true},
            {"name": "name", "in": "path", "required": true, "type": "string"},
            {"$ref": "#/parameters/pretty"},
        ]});
        let b = encode(&OPERATION, &op);
        let items: Vec<Vec<u32>> = raw(&b)
            .iter()
            .map(|(n, r)| {
                assert_eq!(*n, 8, "Operation.parameters");
                let Raw::Bytes(item) = r else { panic!() };
                // The path of first fields down to the parameter's own message.
                let mut path = Vec::new();
                let mut cur: &[u8] = item;
                for _ in 0..3 {
                    let f = raw(cur);
                    let (n, Raw::Bytes(inner)) = &f[0] else { break };
                    path.push(*n);
                    cur = inner;
                    if path == [2] || path.len() == 2 && path[1] == 1 {
                        break;
                    }
                }
                path
            })
            .collect();
        // ParametersItem.parameter = 1 / .json_reference = 2; Parameter.body_parameter = 1 / .non_body_parameter = 2;
        // NonBodyParameter.query_parameter_sub_schema = 3, .path_parameter_sub_schema = 4.
        assert_eq!(items, [vec![1, 1], vec![1, 2, 3], vec![1, 2, 4], vec![2]]);
        // QueryParameterSubSchema: in = 2, name = 4, type = 6, unique_items = 20.
        let query = &decode(&OPERATION, &b)["parameters"][1];
        assert_eq!(query, &op["parameters"][1]);
        let q = encode(&QUERY_PARAMETER, &op["parameters"][1]);
        assert_eq!(raw(&q).iter().map(|(n, _)| *n).collect::<Vec<_>>(), [2, 4, 6, 20]);
    }

    #[test]
    fn additional_properties_false_is_written() {
        let b = encode(&SCHEMA, &json!({"type": "object", "additionalProperties": false}));
        // Schema.additional_properties = 21 holding AdditionalPropertiesItem.boolean = 2 set to false.
        assert!(b.starts_with(b"\xaa\x01\x02\x10\x00"), "{b:x?}");
        assert_eq!(decode(&SCHEMA, &b)["additionalProperties"], json!(false));
    }

    #[test]
    fn scalars_round_trip() {
        let schema = json!({
            "description": "d", "type": "integer", "format": "int32", "minimum": 1.5, "maximum": 10,
            "maxLength": 300, "minItems": -1, "enum": [1, "a", null], "default": {"k": [true]},
            "required": ["a", "b"], "items": {"type": "string"}, "uniqueItems": true, "exclusiveMinimum": false,
        });
        let back = decode(&SCHEMA, &encode(&SCHEMA, &schema));
        assert_eq!(back, normalize(&SCHEMA, &schema));
        assert_eq!(back["maximum"], json!(10.0));
        assert_eq!(back["minItems"], json!(-1));
        assert!(back.get("exclusiveMinimum").is_none());
    }

    #[test]
    fn served_document_round_trips() {
        let doc = &crate::openapi_v2::served().document;
        let b = encode_document(doc);
        let diff = difference(&decode(&DOCUMENT, &b), &normalize(&DOCUMENT, doc), "");
        assert!(diff.is_none(), "{diff:?}");
        assert_eq!(&b[..], &crate::openapi_v2::served().protobuf[..]);
    }
}
