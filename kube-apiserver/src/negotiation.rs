//! Output negotiation (upstream's `endpoints/handlers/negotiation`): which media type and which shape (the object, a
//! `meta.k8s.io` Table, PartialObjectMetadata) a response takes, from the request's `Accept`.
//!
//! The clauses of `Accept` are tried by quality (stable for equal quality, so in the client's order); the first one
//! the server can produce wins: `application/json` (also `application/*`, `*/*`) and
//! `application/vnd.kubernetes.protobuf` for kinds with a protobuf encoding, each optionally transformed with
//! `;as=Table;g=meta.k8s.io;v=v1` (JSON only, and only for resources that have a table conversion: not the review
//! kinds) or `;as=PartialObjectMetadata` / `PartialObjectMetadataList`. An empty `Accept` is JSON; nothing acceptable
//! is 406 NotAcceptable with upstream's message.

use api_types::{ApiError, Resource};

/// The encoding of a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Protobuf,
}

/// What a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The object (or list) itself.
    Object,
    /// A `meta.k8s.io/v1` Table (`kubectl get`).
    Table,
    /// Only `kind`, `apiVersion` and `metadata` (client-go's metadata informers).
    PartialObjectMetadata,
}

/// The negotiated output of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    pub encoding: Encoding,
    pub target: Target,
}

impl Output {
    pub const JSON: Output = Output { encoding: Encoding::Json, target: Target::Object };

    pub fn is_table(&self) -> bool {
        self.target == Target::Table
    }

    /// The `Content-Type` of a body in this output (`;stream=watch` is added by the watch handler).
    pub fn content_type(&self) -> &'static str {
        match self.encoding {
            Encoding::Json => "application/json",
            Encoding::Protobuf => api_types::protobuf::CONTENT_TYPE,
        }
    }
}

/// The media types upstream lists in a 406 (for kinds with a protobuf encoding).
const ACCEPTED: &str = "application/json, application/yaml, application/vnd.kubernetes.protobuf";

/// One clause of an `Accept` header.
struct Clause<'a> {
    media: &'a str,
    quality: f32,
    params: Vec<(&'a str, &'a str)>,
}

fn clauses(accept: &str) -> Vec<Clause<'_>> {
    let mut out: Vec<Clause<'_>> = accept
        .split(',')
        .filter_map(|c| {
            let mut parts = c.split(';').map(str::trim);
            let media = parts.next().filter(|m| !m.is_empty())?;
            let mut quality = 1.0;
            let mut params = Vec::new();
            for p in parts {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                let v = v.trim_matches('"');
                if k == "q" {
                    quality = v.parse().unwrap_or(1.0);
                } else {
                    params.push((k, v));
                }
            }
            Some(Clause { media, quality, params })
        })
        .filter(|c| c.quality > 0.0)
        .collect();
    out.sort_by(|a, b| b.quality.total_cmp(&a.quality));
    out
}

/// The output of a request for `res` (None: a path outside the resource table), whose objects have a protobuf
/// encoding when `protobuf` is true.
pub fn negotiate(accept: &str, res: Option<&Resource>, protobuf: bool) -> Result<Output, ApiError> {
    if accept.trim().is_empty() {
        return Ok(Output::JSON);
    }
    for c in clauses(accept) {
        let encoding = match c.media {
            "application/json" | "application/*" | "*/*" => Encoding::Json,
            "application/vnd.kubernetes.protobuf" if protobuf => Encoding::Protobuf,
            _ => continue,
        };
        let param = |k: &str| c.params.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v);
        let target = match param("as") {
            None => Target::Object,
            Some(kind) => {
                // Transformations exist in meta.k8s.io v1 (and v1beta1, which upstream still serves).
                if param("g") != Some("meta.k8s.io") || !matches!(param("v"), Some("v1" | "v1beta1")) {
                    continue;
                }
                match kind {
                    "Table" if encoding == Encoding::Json && res.is_some_and(Resource::stored) => Target::Table,
                    "PartialObjectMetadata" | "PartialObjectMetadataList" if res.is_some_and(Resource::stored) => {
                        Target::PartialObjectMetadata
                    }
                    _ => continue,
                }
            }
        };
        // Custom resources have no protobuf form; their metadata does (controller-runtime's metadata informers).
        if encoding == Encoding::Protobuf && res.is_some_and(|r| r.custom) && target != Target::PartialObjectMetadata {
            continue;
        }
        return Ok(Output { encoding, target });
    }
    Err(ApiError::new(406, "NotAcceptable", format!("only the following media types are accepted: {ACCEPTED}")))
}

/// Whether an error answer to this `Accept` goes out as protobuf (the first acceptable clause is protobuf).
pub fn prefers_protobuf(accept: &str) -> bool {
    clauses(accept).first().is_some_and(|c| c.media == api_types::protobuf::CONTENT_TYPE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(plural: &str, group: &str) -> &'static Resource {
        api_types::resources::RESOURCES.iter().find(|r| r.plural == plural && r.group == group).unwrap()
    }

    #[test]
    fn client_go_and_kubectl_accept_headers() {
        let pods = res("pods", "");
        let o = |a: &str| negotiate(a, Some(pods), true).unwrap();
        assert_eq!(o(""), Output::JSON);
        assert_eq!(o("application/json"), Output::JSON);
        assert_eq!(o("*/*"), Output::JSON);
        // client-go's default for built-in types.
        assert_eq!(o("application/vnd.kubernetes.protobuf, */*").encoding, Encoding::Protobuf);
        assert_eq!(o("application/json;q=0.5, application/vnd.kubernetes.protobuf").encoding, Encoding::Protobuf);
        // kubectl get.
        let table = o(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
        );
        assert_eq!(table.target, Target::Table);
        // A protobuf Table is not served: the next clause is taken.
        let next = o("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json");
        assert_eq!(next, Output::JSON);
        let meta = o("application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1");
        assert_eq!((meta.encoding, meta.target), (Encoding::Protobuf, Target::PartialObjectMetadata));
    }

    #[test]
    fn nothing_acceptable_is_406() {
        let review = res("selfsubjectaccessreviews", "authorization.k8s.io");
        let e = negotiate("application/json;as=Table;v=v1;g=meta.k8s.io", Some(review), true).unwrap_err();
        assert_eq!((e.code, e.reason), (406, "NotAcceptable"));
        assert_eq!(
            e.message,
            "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf"
        );
        // With a fallback the review is plain JSON.
        let ok = negotiate("application/json;as=Table;v=v1;g=meta.k8s.io, application/json", Some(review), true);
        assert_eq!(ok.unwrap(), Output::JSON);
        assert!(negotiate("text/html", None, true).is_err());
        assert!(negotiate("application/vnd.kubernetes.protobuf", None, false).is_err());
        assert!(prefers_protobuf("application/vnd.kubernetes.protobuf, */*"));
        assert!(!prefers_protobuf("application/json"));
    }
}
