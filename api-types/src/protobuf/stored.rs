//! Stored protobuf bodies served as they are: upstream's apiserver keeps built-in objects in storage as protobuf
//! (`--storage-media-type`), without `metadata.resourceVersion`, which is the storage revision. A response, list
//! item or watch event in protobuf is the stored body with the resourceVersion spliced into its ObjectMeta
//! ([`with_resource_version`]): a few copies of bytes, where encoding the decoded object walks all of it.

use std::ops::Range;

use super::encode::varint_len;
use super::{MAGIC, Reader, WIRE_LEN};

/// Field numbers of `runtime.Unknown` (typeMeta, raw, contentEncoding, contentType), of the object's ObjectMeta, and
/// of `ObjectMeta.resourceVersion`.
const TYPE_META: u32 = 1;
const RAW: u32 = 2;
const METADATA: u32 = 1;
const RESOURCE_VERSION: u32 = 6;

/// The pieces of a stored body around which the resourceVersion goes.
struct Parts<'a> {
    type_meta: &'a [u8],
    /// The typed message before its ObjectMeta field, the ObjectMeta's content, and the message after it.
    before: &'a [u8],
    metadata: &'a [u8],
    after: &'a [u8],
}

impl<'a> Parts<'a> {
    /// `None` unless `stored` is a body this server writes: the envelope with empty content encoding and type, and an
    /// ObjectMeta (field 1) that occurs once, without a resourceVersion.
    fn of(stored: &'a [u8]) -> Option<Self> {
        let data = stored.strip_prefix(MAGIC)?;
        let (mut type_meta, mut raw) = (None, None);
        let mut r = Reader::new(data, "runtime.Unknown");
        while let Some((tag, wire)) = r.key().ok()? {
            let bytes = r.length_delimited(wire, "").ok()?;
            match tag {
                TYPE_META => type_meta = Some(bytes),
                RAW => raw = Some(bytes),
                // contentEncoding and contentType: empty, or the body is not raw protobuf.
                _ if bytes.is_empty() => {}
                _ => return None,
            }
        }
        let (type_meta, raw) = (type_meta?, raw?);
        let mut r = Reader::new(raw, "object");
        let mut found = None;
        loop {
            let start = r.pos;
            let Some((tag, wire)) = r.key().ok()? else { break };
            if tag == METADATA && wire == WIRE_LEN {
                if found.is_some() {
                    return None;
                }
                let content = r.length_delimited(wire, "metadata").ok()?;
                found = Some((start, r.pos - content.len(), r.pos));
            } else {
                r.skip(wire).ok()?;
            }
        }
        let (start, content_start, end) = found.unwrap_or((0, 0, 0));
        let metadata = &raw[content_start..end];
        let mut m = Reader::new(metadata, "metadata");
        while let Some((tag, wire)) = m.key().ok()? {
            if tag == RESOURCE_VERSION {
                return None;
            }
            m.skip(wire).ok()?;
        }
        Some(Parts { type_meta, before: &raw[..start], metadata, after: &raw[end..] })
    }
}

/// `stored` (a protobuf body written by [`super::encode_object`] for storage, without resourceVersion) with
/// `metadata.resourceVersion` set to `rv`: the body, the range of its typed message (a list item), and, when
/// `event_type` is given, the body framed as a watch event (as [`super::watch_frame`] frames it), in which case the
/// ranges are the body's in the frame and the message's in the body. The resourceVersion is the ObjectMeta's last
/// field, where encoding the decoded object (its resourceVersion set last) writes it, so the bytes are the same.
/// `None` when `stored` is not such a body.
pub fn with_resource_version(
    stored: &[u8],
    rv: &str,
    event_type: Option<&str>,
) -> Option<(Vec<u8>, Range<usize>, Range<usize>)> {
    let parts = Parts::of(stored)?;
    let field = |len: usize| 1 + varint_len(len as u64) + len;
    let metadata_len = parts.metadata.len() + field(rv.len());
    let raw_len = parts.before.len() + field(metadata_len) + parts.after.len();
    let body_len = MAGIC.len() + field(parts.type_meta.len()) + field(raw_len) + 4;
    let frame_head = match event_type {
        Some(t) => 4 + field(t.len()) + 1 + varint_len(field(body_len) as u64) + 1 + varint_len(body_len as u64),
        None => 0,
    };
    let mut out = Vec::with_capacity(frame_head + body_len);
    if let Some(t) = event_type {
        out.extend_from_slice(&((frame_head + body_len - 4) as u32).to_be_bytes());
        bytes(&mut out, 1, t.len());
        out.extend_from_slice(t.as_bytes());
        bytes(&mut out, 2, field(body_len));
        bytes(&mut out, 1, body_len);
    }
    let body_start = out.len();
    out.extend_from_slice(MAGIC);
    bytes(&mut out, TYPE_META, parts.type_meta.len());
    out.extend_from_slice(parts.type_meta);
    bytes(&mut out, RAW, raw_len);
    let message_start = out.len();
    out.extend_from_slice(parts.before);
    bytes(&mut out, METADATA, metadata_len);
    out.extend_from_slice(parts.metadata);
    bytes(&mut out, RESOURCE_VERSION, rv.len());
    out.extend_from_slice(rv.as_bytes());
    out.extend_from_slice(parts.after);
    let message_end = out.len();
    out.extend_from_slice(&[3 << 3 | 2, 0, 4 << 3 | 2, 0]);
    debug_assert_eq!(out.len(), frame_head + body_len);
    let body = body_start..out.len();
    let message = message_start - body_start..message_end - body_start;
    Some((out, body, message))
}

/// The key and length of a length-delimited field.
fn bytes(out: &mut Vec<u8>, tag: u32, len: usize) {
    push_varint(out, u64::from(tag << 3) | u64::from(WIRE_LEN));
    push_varint(out, len as u64);
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::protobuf::{decode_k8s_protobuf, encode_object, encode_watch_frame};

    fn pod(name_len: usize) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "n".repeat(name_len), "namespace": "default", "labels": {"a": "b"}},
               "spec": {"containers": [{"name": "c", "image": "busybox"}]},
               "status": {"phase": "Running"}})
    }

    /// The spliced body is what encoding the object with its resourceVersion writes, byte for byte, whatever the
    /// sizes around the varint boundaries; framed, it is the watch event the encoder frames.
    #[test]
    fn the_splice_is_the_encoding_of_the_object_with_its_resource_version() {
        for name_len in [1, 60, 100, 110, 118, 120, 125, 126, 127, 128, 200, 16_300, 16_370, 16_384, 20_000] {
            for rv in ["7", "123456789012"] {
                let stored = encode_object(&pod(name_len)).unwrap();
                let mut want = pod(name_len);
                want["metadata"]["resourceVersion"] = json!(rv);
                let encoded = encode_object(&want).unwrap();
                let (body, range, message) = with_resource_version(&stored, rv, None).unwrap();
                assert_eq!(range, 0..body.len());
                assert_eq!(body, encoded, "{name_len} {rv}");
                assert_eq!(decode_k8s_protobuf(&body).unwrap(), want);
                let (_, parts) = crate::protobuf::encode_object_parts(&want, false).unwrap();
                assert_eq!(message, parts, "{name_len} {rv}");
                let (frame, body_range, message) = with_resource_version(&stored, rv, Some("MODIFIED")).unwrap();
                let (want_frame, want_body, want_message) = encode_watch_frame("MODIFIED", &want, false).unwrap();
                assert_eq!(frame, want_frame, "{name_len} {rv}");
                assert_eq!((body_range, message), (want_body, want_message));
            }
        }
    }

    /// An object without metadata gets one; a body that already has a resourceVersion, that is not raw protobuf, or
    /// that is not protobuf at all is not spliced (the caller encodes the decoded object instead).
    #[test]
    fn bodies_it_does_not_splice() {
        let bare = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}});
        let (body, _, _) = with_resource_version(&encode_object(&bare).unwrap(), "5", None).unwrap();
        assert_eq!(
            decode_k8s_protobuf(&body).unwrap(),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"resourceVersion": "5"}, "data": {"k": "v"}})
        );
        let mut with_rv = pod(3);
        with_rv["metadata"]["resourceVersion"] = json!("9");
        assert!(with_resource_version(&encode_object(&with_rv).unwrap(), "10", None).is_none());
        let mut gzipped = encode_object(&pod(3)).unwrap();
        gzipped.extend_from_slice(b"\x1a\x04gzip");
        assert!(with_resource_version(&gzipped, "1", None).is_none());
        assert!(with_resource_version(br#"{"kind":"Pod"}"#, "1", None).is_none());
        assert!(with_resource_version(b"k8s\0\x12\x05ab", "1", None).is_none(), "truncated");
    }
}
