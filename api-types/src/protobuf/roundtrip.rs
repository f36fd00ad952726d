//! Every root kind of the descriptor tables against its `k8s-pb` (prost) type: a sample object with every field set
//! is encoded by us, decoded and re-encoded by k8s-pb, and decoded by us again; it must come back unchanged. This
//! checks each field's tag, wire type, nesting and JSON form in both directions.

use serde_json::{Map, Value, json};

use super::k8s_pb_kinds::KINDS;
use super::{Field, Kind, Message, ROOTS, Special, decode_k8s_protobuf, encode_object, find_root};

/// A JSON value of `message` with every field set (nested messages down to where a message repeats on the path).
fn sample(message: &'static Message, path: &mut Vec<&'static str>) -> Value {
    match message.special {
        Special::Time => return json!("2024-01-02T03:04:05Z"),
        Special::MicroTime => return json!("2024-01-02T03:04:05.123456Z"),
        Special::Duration => return json!("1m30s"),
        Special::Quantity => return json!("1500m"),
        Special::IntOrString => return json!("http"),
        Special::RawExtension => return json!({"apiVersion": "v1", "kind": "ConfigMap"}),
        Special::FieldsV1 => return json!({"f:metadata": {}}),
        Special::StringList => return json!(["a", "b"]),
        Special::SchemaOrBool => return json!(true),
        Special::SchemaOrArray | Special::SchemaOrStringArray => return json!(["a-or-schema"]),
        Special::None => {}
    }
    let mut out = Map::new();
    path.push(message.name);
    fill(message, &mut out, path);
    path.pop();
    Value::Object(out)
}

fn fill(message: &'static Message, out: &mut Map<String, Value>, path: &mut Vec<&'static str>) {
    for field in message.fields {
        if let Kind::Inline(m) = field.kind {
            fill(m, out, path);
            continue;
        }
        if let Some(v) = field_sample(field, path) {
            out.insert(field.json.to_string(), v);
        }
    }
}

fn field_sample(field: &Field, path: &mut Vec<&'static str>) -> Option<Value> {
    let one = match field.kind {
        Kind::String => json!(format!("{}-value", field.json)),
        Kind::Bool => json!(true),
        Kind::Int32 => json!(-7),
        Kind::Int64 => json!(1_234_567_890_123i64),
        Kind::Double => json!(1.5),
        Kind::Bytes => json!("aGVsbG8="),
        Kind::Message(m) if path.contains(&m.name) => return None,
        Kind::Message(m) => sample(m, path),
        Kind::MapString => json!({"k": "v"}),
        Kind::MapBytes => json!({"k": "aGk="}),
        Kind::MapMessage(m) if path.contains(&m.name) => return None,
        Kind::MapMessage(m) => json!({"k": sample(m, path)}),
        Kind::Inline(_) => return None,
    };
    // The string-array unions only take strings.
    let one = match (field.kind, &one) {
        (Kind::Message(m), _) if m.special == Special::SchemaOrArray => json!({"description": "d"}),
        _ => one,
    };
    Some(if field.repeated { json!([one]) } else { one })
}

#[test]
fn every_kind_round_trips_through_k8s_pb() {
    let mut checked = 0;
    for (api_version, kind, message) in ROOTS {
        let re_encode = KINDS.iter().find(|(v, k, _)| v == api_version && k == kind).expect("k8s-pb kind").2;
        let mut obj = sample(message, &mut Vec::new());
        obj["apiVersion"] = json!(api_version);
        obj["kind"] = json!(kind);
        let ours = encode_object(&obj).unwrap_or_else(|| panic!("{api_version} {kind} does not encode"));
        // Our envelope's raw message, through k8s-pb and back into an envelope.
        let raw = super::encode_message_of(&obj).unwrap();
        assert_eq!(ours, super::envelope(api_version, kind, &raw), "{api_version} {kind}: object and item differ");
        let theirs = re_encode(&raw).unwrap_or_else(|e| panic!("k8s-pb cannot decode our {kind}: {e}"));
        let back = decode_k8s_protobuf(&super::envelope(api_version, kind, &theirs)).unwrap();
        assert_eq!(back, obj, "{api_version} {kind} changed going through k8s-pb");
        assert_eq!(decode_k8s_protobuf(&ours).unwrap(), obj);
        checked += 1;
    }
    assert!(checked > 100, "only {checked} kinds");
    assert!(find_root("v1", "PodList").is_some() && find_root("events.k8s.io/v1", "Event").is_some());
}
