//! `/openapi/v2`: the Swagger 2.0 document of every served group-version, as JSON or as gnostic's protobuf
//! (what client-go's `OpenAPISchema()`, kubectl's v2 validation and Helm read), built from the OpenAPI v3
//! documents (custom resources and extension apiservers' documents included, rebuilt when they change) and served with upstream's content negotiation, `ETag` and `If-None-Match`.

pub mod convert;
pub mod gnostic;

use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde_json::Value;

use crate::apiextensions::served::Snapshot;
use crate::discovery;
use crate::server::{Resp, full};

/// The protobuf media type client-go asks for, and the one upstream answers with (both select protobuf).
pub const PROTOBUF_DEPRECATED: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
pub const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
pub const JSON: &str = "application/json";

/// The document in both encodings, and its ETag.
pub struct Served {
    pub document: Value,
    pub json: Bytes,
    pub protobuf: Bytes,
    /// Upstream's form: the upper-case hex SHA-512 of the JSON encoding, quoted; the protobuf shares it.
    pub etag: String,
}

/// The v3 documents of every group-version `/openapi/v3` lists for a snapshot of the served resources.
fn v3_documents(snap: &Snapshot) -> Vec<Value> {
    let index = discovery::openapi_index(snap);
    let mut docs = Vec::new();
    for key in index["paths"].as_object().into_iter().flatten().map(|(k, _)| k) {
        let parts: Vec<&str> = key.split('/').collect();
        let (group, version) = match parts.as_slice() {
            ["api", v] => ("", *v),
            ["apis", g, v] => (*g, *v),
            _ => continue,
        };
        if let Some(doc) = discovery::openapi_gv(snap, group, version) {
            docs.push(doc);
        }
    }
    docs
}

/// Converts and encodes the document of a snapshot, with the extension apiservers' v3 documents.
fn build(snap: &Snapshot, aggregated: &[Value]) -> Served {
    let mut docs = v3_documents(snap);
    docs.extend(aggregated.iter().cloned());
    let document = convert::swagger(&docs);
    let json = serde_json::to_vec(&document).unwrap_or_default();
    let protobuf = gnostic::encode_document(&document);
    let digest = ring::digest::digest(&ring::digest::SHA512, &json);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    Served { document, json: json.into(), protobuf: protobuf.into(), etag: format!("\"{hex}\"") }
}

/// The document of the built-in resources, built once per process.
pub fn served() -> Arc<Served> {
    static SERVED: OnceLock<Arc<Served>> = OnceLock::new();
    SERVED.get_or_init(|| Arc::new(build(&Snapshot::default(), &[]))).clone()
}

/// The document of one apiserver: the built-in one while no CRD is served and no extension apiserver has a
/// document, else rebuilt (once per change of either, on the first request after it) with the custom resources'
/// definitions and the extension apiservers' documents merged in (upstream's aggregated OpenAPI v2).
#[derive(Default)]
pub struct Cache {
    built: Mutex<Option<(Generation, Arc<Served>)>>,
}

/// What a built document reflects: the served resources' generation and the remote documents' digest.
type Generation = (u64, u64);

impl Cache {
    pub fn get(
        &self,
        served: &crate::apiextensions::served::Served,
        aggregator: &crate::aggregator::Aggregator,
    ) -> Arc<Served> {
        let snap = served.load();
        let aggregated = aggregator.openapi_documents();
        if !snap.has_custom() && aggregated.is_empty() {
            return self::served();
        }
        let generation = (served.generation(), aggregator.openapi_generation());
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((g, doc)) = built.as_ref()
            && *g == generation
        {
            return doc.clone();
        }
        let docs: Vec<Value> = aggregated.iter().map(|(_, d)| (**d).clone()).collect();
        let doc = Arc::new(build(&snap, &docs));
        *built = Some((generation, doc.clone()));
        doc
    }
}

/// Which encoding an Accept header selects, as upstream's handler: the clauses by preference (q, then
/// specificity), the first that matches JSON or either protobuf type; `None` is 406.
pub fn negotiate(accept: &str) -> Option<(&'static str, bool)> {
    let accept = if accept.trim().is_empty() { "*/*" } else { accept };
    let mut clauses: Vec<(f32, u8, usize, &str, &str)> = Vec::new();
    for (i, clause) in accept.split(',').enumerate() {
        let mut parts = clause.split(';');
        let range = parts.next().unwrap_or_default().trim();
        let q =
            parts.filter_map(|p| p.trim().strip_prefix("q=")).find_map(|q| q.trim().parse::<f32>().ok()).unwrap_or(1.0);
        let (ty, sub) = range.split_once('/').unwrap_or((range, ""));
        let specificity = u8::from(ty != "*") + u8::from(sub != "*");
        clauses.push((q, specificity, i, ty, sub));
    }
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    let offered = [(JSON, false), (PROTOBUF_DEPRECATED, true), (PROTOBUF, true)];
    for (_, _, _, ty, sub) in clauses {
        for (media, protobuf) in offered {
            let (oty, osub) = media.split_once('/').unwrap_or_default();
            if (ty == oty || ty == "*") && (sub == osub || sub == "*") {
                return Some((if protobuf { PROTOBUF } else { JSON }, protobuf));
            }
        }
    }
    None
}

/// Whether an `If-None-Match` value names this ETag (or is `*`); weak validators compare equal as in Go's
/// `http.ServeContent`.
fn none_match(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// The `/openapi/v2` response for a request's headers: the document in the negotiated encoding, 304 when the
/// client's copy is current, 406 for an Accept header naming neither encoding.
pub fn respond(headers: &HeaderMap, served: &Served) -> Resp {
    let accept = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).unwrap_or_default();
    let Some((content_type, protobuf)) = negotiate(accept) else {
        let mut r = Response::new(full(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_ACCEPTABLE;
        r.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept"));
        return r;
    };
    let current =
        headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| none_match(v, &served.etag));
    let body = if current {
        Bytes::new()
    } else if protobuf {
        served.protobuf.clone()
    } else {
        served.json.clone()
    };
    let mut r = Response::new(full(body));
    *r.status_mut() = if current { StatusCode::NOT_MODIFIED } else { StatusCode::OK };
    let h = r.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(etag) = HeaderValue::from_str(&served.etag) {
        h.insert(header::ETAG, etag);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_selects_encoding_as_upstream() {
        assert_eq!(negotiate(""), Some((JSON, false)));
        assert_eq!(negotiate("*/*"), Some((JSON, false)));
        assert_eq!(negotiate("application/json"), Some((JSON, false)));
        assert_eq!(negotiate("application/*"), Some((JSON, false)));
        // client-go's OpenAPISchema() asks for the deprecated name; both get the current one back.
        assert_eq!(negotiate(PROTOBUF_DEPRECATED), Some((PROTOBUF, true)));
        assert_eq!(negotiate(PROTOBUF), Some((PROTOBUF, true)));
        assert_eq!(
            negotiate("application/json;q=0.5, application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
            Some((PROTOBUF, true))
        );
        assert_eq!(negotiate("application/json, */*"), Some((JSON, false)));
        assert_eq!(negotiate("text/html, */*;q=0.1"), Some((JSON, false)));
        assert_eq!(negotiate("application/yaml"), None);
        assert_eq!(negotiate("text/html"), None);
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.clone(), HeaderValue::from_str(v).unwrap())).collect()
    }

    async fn body(r: Resp) -> Bytes {
        use http_body_util::BodyExt;
        r.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn serves_json_protobuf_etag_and_not_modified() {
        let served = served();
        // Upstream's ETag: the quoted upper-case hex SHA-512 of the JSON encoding.
        let digest = ring::digest::digest(&ring::digest::SHA512, &served.json);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(served.etag, format!("\"{hex}\""));

        let r = respond(&HeaderMap::new(), &self::served());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], JSON);
        assert_eq!(r.headers()[header::ETAG], served.etag.as_str());
        assert_eq!(r.headers()[header::VARY], "Accept");
        let doc: Value = serde_json::from_slice(&body(r).await).unwrap();
        assert_eq!(doc["swagger"], "2.0");

        let r = respond(&headers(&[(header::ACCEPT, PROTOBUF_DEPRECATED)]), &self::served());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROTOBUF);
        assert_eq!(r.headers()[header::ETAG], served.etag.as_str());
        assert_eq!(body(r).await, served.protobuf);

        for tag in [served.etag.clone(), format!("W/{}", served.etag), format!("\"x\", {}", served.etag), "*".into()] {
            let r = respond(&headers(&[(header::ACCEPT, PROTOBUF), (header::IF_NONE_MATCH, &tag)]), &self::served());
            assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{tag}");
            assert_eq!(r.headers()[header::ETAG], served.etag.as_str());
            assert!(body(r).await.is_empty());
        }
        let r = respond(&headers(&[(header::IF_NONE_MATCH, "\"stale\"")]), &self::served());
        assert_eq!(r.status(), StatusCode::OK);

        let r = respond(&headers(&[(header::ACCEPT, "text/html")]), &self::served());
        assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE);
    }
}
