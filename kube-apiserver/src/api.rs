//! The resource API: each verb of each resource in the table (and the subresources kubectl uses), decoding
//! requests, calling the registry and encoding objects, lists, Tables and watch streams.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use api_types::ApiError;
use api_types::patch::PatchType;
use api_types::resources::Resource;
use api_types::selector::{FieldSelector, LabelSelector};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};

use crate::negotiation::{Encoding, Output, Target};
use crate::registry::{DeleteParams, Deleted, FieldValidation, ListParams, WatchEvent, meta_str};
use crate::server::{Apiserver, Resp, User, json_response, read_body};
use crate::table;

/// Adds a `Warning: 299 - "<message>"` header per warning, as upstream reports fieldValidation=Warn.
pub fn with_warnings(mut resp: Resp, warnings: &[String]) -> Resp {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

/// Decodes a request body: JSON, or the Kubernetes protobuf envelope kubectl's generators send.
pub fn decode_body(headers: &http::HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    if is_protobuf(headers) {
        return decode_protobuf(body);
    }
    decode_json(headers, body)
}

/// A create or update body decoded and field-checked under the request's `fieldValidation`: unknown fields of a
/// JSON body dropped, warned of or refused, and its duplicate fields too. A protobuf body has neither, as upstream's
/// protobuf decoder has no strict mode: its decoding keeps only the fields the kind's message has. Returns the object
/// and the Warn warnings.
fn decode_checked(
    server: &Apiserver,
    res: &Resource,
    headers: &http::HeaderMap,
    body: &Bytes,
    q: &HashMap<String, String>,
) -> Result<(Value, Vec<String>), ApiError> {
    let mut obj = decode_body(headers, body)?;
    let mode = field_validation(q)?;
    // Decoded as upstream decodes into the Go types, before admission sees the object: canonical quantities.
    api_types::protobuf::canonicalize_quantities(&mut obj);
    if is_protobuf(headers) && !res.custom {
        return Ok((obj, Vec::new()));
    }
    let duplicates = crate::registry::body_duplicates(headers, body, mode);
    let checked =
        crate::registry::with_duplicates(server.registry.check_fields(res, &mut obj, mode), &duplicates, mode);
    let warnings = checked.map_err(|mut e| {
        if e.message.starts_with("strict decoding error: ") {
            // Upstream's create and update handlers wrap decoding errors (`transformDecodeError`): the kind and
            // version the body gave, then the kind decoded into.
            let kind = obj.get("kind").and_then(Value::as_str).filter(|k| !k.is_empty()).unwrap_or(res.kind);
            let api_version = obj.get("apiVersion").and_then(Value::as_str).filter(|v| !v.is_empty());
            let version = api_version.map_or(res.version, |v| v.rsplit('/').next().unwrap_or(v));
            e.message = format!("{kind} in version {version:?} cannot be handled as a {}: {}", res.kind, e.message);
        }
        e
    })?;
    Ok((obj, warnings))
}

/// Whether a request body is in protobuf.
fn is_protobuf(headers: &http::HeaderMap) -> bool {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    ct.split(';').next().unwrap_or_default().trim() == "application/vnd.kubernetes.protobuf"
}

fn decode_protobuf(body: &Bytes) -> Result<Value, ApiError> {
    use api_types::protobuf::{ProtobufError, decode_k8s_protobuf};
    decode_k8s_protobuf(body).map_err(|e| match e {
        ProtobufError::UnsupportedKind { .. } => ApiError::unsupported_media_type(&e.to_string()),
        e => ApiError::bad_request(format!("the body of the request could not be decoded: {e}")),
    })
}

/// A DeleteOptions body as JSON bytes (drain sends it as protobuf).
fn as_json(headers: &http::HeaderMap, body: Bytes) -> Result<Bytes, ApiError> {
    if is_protobuf(headers) && !body.is_empty() {
        return Ok(Bytes::from(decode_protobuf(&body)?.to_string()));
    }
    Ok(body)
}

/// Decodes a request body as JSON (also when no Content-Type is given, as `kubectl scale` sends it).
fn decode_json(headers: &http::HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let media = ct.split(';').next().unwrap_or_default().trim();
    match media {
        "application/json" | "" | "*/*" => {}
        "application/vnd.kubernetes.protobuf" => {
            return Err(ApiError::unsupported_media_type(ct));
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body of the request could not be decoded: {e}")))
}

fn field_validation(q: &HashMap<String, String>) -> Result<FieldValidation, ApiError> {
    FieldValidation::parse(q.get("fieldValidation").map(String::as_str))
}

fn dry_run(q: &HashMap<String, String>) -> Result<bool, ApiError> {
    match q.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!("Invalid dryRun value {other:?}: supported values: \"All\""))),
    }
}

fn list_params(res: &'static Resource, q: &HashMap<String, String>) -> Result<ListParams, ApiError> {
    let label_selector = match q.get("labelSelector").filter(|s| !s.is_empty()) {
        Some(s) => Some(
            LabelSelector::parse(s).map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
        ),
        None => None,
    };
    let field_selector = match q.get("fieldSelector").filter(|s| !s.is_empty()) {
        Some(s) => {
            let (s, checked) = if res.group == "events.k8s.io" && res.plural == "events" {
                (events_v1_field_selector(s)?, crate::convert::storage_resource(res))
            } else {
                (s.clone(), res)
            };
            let fs = FieldSelector::parse(&s).map_err(|e| ApiError::bad_request(e.to_string()))?;
            crate::registry::Registry::check_field_selector(checked, &fs)?;
            Some(fs)
        }
        None => None,
    };
    let limit = match q.get("limit") {
        Some(l) => l.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?.max(0) as usize,
        None => 0,
    };
    Ok(ListParams {
        label_selector,
        field_selector,
        limit,
        continue_token: q.get("continue").filter(|c| !c.is_empty()).cloned(),
        resource_version: q.get("resourceVersion").cloned(),
        resource_version_match: q.get("resourceVersionMatch").cloned(),
    })
}

/// An events.k8s.io/v1 field selector in the core/v1 field labels its storage is selected with; an unknown label is
/// upstream's 400 `field label not supported`.
fn events_v1_field_selector(s: &str) -> Result<String, ApiError> {
    let mut terms = Vec::new();
    for term in s.split(',') {
        let at = term.find(['=', '!']).unwrap_or(term.len());
        let (field, rest) = term.split_at(at);
        let field = field.trim();
        let core = crate::strategy::EVENTS_V1_FIELD_LABELS.iter().find(|(v1, _)| *v1 == field).map(|(_, core)| *core);
        let core = core.ok_or_else(|| ApiError::bad_request(format!("field label not supported: {field}")))?;
        terms.push(format!("{core}{rest}"));
    }
    Ok(terms.join(","))
}

fn accept(req_headers: &http::HeaderMap) -> String {
    req_headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

fn object_response(
    code: StatusCode,
    res: &Resource,
    printer: Option<&Printer>,
    obj: &Value,
    out: Output,
    q: &HashMap<String, String>,
) -> Resp {
    let converted;
    let obj = if crate::convert::converts(res) {
        converted = crate::convert::to_external(res, obj.clone());
        &converted
    } else {
        obj
    };
    match out.target {
        Target::Table => {
            let include = q.get("includeObject").map(String::as_str).unwrap_or("Metadata");
            let meta = json!({"resourceVersion": meta_str(obj, "resourceVersion").unwrap_or_default()});
            json_response(code, &table::table(res, printer, std::slice::from_ref(obj), meta, include, true))
        }
        Target::PartialObjectMetadata => encode_response(code, &partial_object_metadata(obj), out.encoding),
        Target::Object => encode_response(code, obj, out.encoding),
    }
}

/// An object in protobuf as its stored bytes with its resourceVersion spliced in, which is what encoding it gives,
/// without decoding or encoding it; `None` when it is not stored as protobuf or the answer is not the object itself in
/// protobuf in its storage version.
fn stored_response(code: StatusCode, res: &Resource, stored: Option<&[u8]>, rv: &str, out: Output) -> Option<Resp> {
    if out.target != Target::Object || out.encoding != Encoding::Protobuf || crate::convert::converts(res) {
        return None;
    }
    let (body, _, _) = api_types::protobuf::with_resource_version(stored?, rv, None)?;
    Some(crate::server::bytes_response(code, body, api_types::protobuf::CONTENT_TYPE))
}

/// An object's `PartialObjectMetadata` (client-go's metadata client and informers).
fn partial_object_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

/// An object in the negotiated encoding: protobuf when asked and its kind has one, JSON otherwise.
pub fn encode_response(code: StatusCode, v: &Value, encoding: Encoding) -> Resp {
    if encoding == Encoding::Protobuf
        && let Some(body) = api_types::protobuf::encode_object(v)
    {
        return crate::server::bytes_response(code, body, api_types::protobuf::CONTENT_TYPE);
    }
    json_response(code, v)
}

/// The Table columns of a custom resource (its CRD's printer columns).
type Printer = crate::apiextensions::printer::TableConvertor;

fn printer_of(server: &Apiserver, res: &Resource) -> Option<Printer> {
    server.served.load().custom_of(res).and_then(|c| c.table.clone())
}

/// Finds the resource of a request, built-in or custom, or the 404 upstream answers.
fn resource_of(server: &Apiserver, group: &str, version: &str, plural: &str) -> Result<&'static Resource, ApiError> {
    server
        .served
        .load()
        .find(group, version, plural)
        .ok_or_else(|| ApiError::new(404, "NotFound", "the server could not find the requested resource"))
}

/// Serves one resource request; writes of objects, their status and scale run with their field manager (the
/// `fieldManager` query, else the User-Agent) in scope, for managedFields.
pub async fn serve(
    server: &Arc<Apiserver>,
    req: Request<Incoming>,
    info: crate::request::RequestInfo,
    q: HashMap<String, String>,
    user: User,
) -> Result<Resp, ApiError> {
    let tracked = matches!(info.verb.as_str(), "create" | "update" | "patch")
        && matches!(info.subresource.as_deref(), None | Some("status") | Some("scale"));
    if !tracked {
        return serve_resource(server, req, info, q, user).await;
    }
    let user_agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok());
    let fm = crate::fieldmanager::Request {
        manager: crate::fieldmanager::manager_of(q.get("fieldManager").map(String::as_str), user_agent),
        api_version: if info.group.is_empty() {
            info.version.clone()
        } else {
            format!("{}/{}", info.group, info.version)
        },
        subresource: info.subresource.clone().unwrap_or_default(),
        apply: false,
    };
    crate::fieldmanager::scope(fm, serve_resource(server, req, info, q, user)).await
}

async fn serve_resource(
    server: &Arc<Apiserver>,
    req: Request<Incoming>,
    info: crate::request::RequestInfo,
    q: HashMap<String, String>,
    user: User,
) -> Result<Resp, ApiError> {
    let res = resource_of(server, &info.group, &info.version, &info.resource)?;
    if res.namespaced
        && info.namespace.is_none()
        && info.verb != "list"
        && info.verb != "watch"
        && info.verb != "deletecollection"
    {
        if info.verb == "create" && !res.stored() {
            // Namespaced reviews are created under a namespace.
        }
        return Err(ApiError::new(404, "NotFound", "the server could not find the requested resource"));
    }
    if !res.namespaced && info.namespace.is_some() && res.plural != "namespaces" {
        // A cluster-scoped resource has no paths under a namespace.
        return Err(ApiError::new(404, "NotFound", "the server could not find the requested resource"));
    }
    let ns = info.namespace.as_deref().filter(|_| res.namespaced);
    let printer = printer_of(server, res);
    let (mut parts, body) = req.into_parts();
    // Connecters (exec, attach, port-forward, proxy) and the log stream answer in their own media types; a proxied
    // browser's `Accept: text/html` must not be refused.
    let streaming = matches!(info.subresource.as_deref(), Some("exec" | "attach" | "portforward" | "proxy" | "log"));
    let out = match crate::negotiation::negotiate(&accept(&parts.headers), Some(res), true) {
        Err(_) if streaming => crate::negotiation::Output::JSON,
        out => out?,
    };
    let verb = info.verb.as_str();
    let allowed = |v: &str| -> Result<(), ApiError> {
        if res.has_verb(v) {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource"))
        }
    };
    if let Some(sub) = info.subresource.as_deref() {
        let name = info.name.as_deref().unwrap_or_default();
        return crate::subresources::serve(server, res, ns, name, sub, &info, &mut parts, body, &q, out).await;
    }
    if !res.stored() {
        allowed(verb)?;
        let body = read_body(body).await?;
        let obj = decode_body(&parts.headers, &body)?;
        return crate::reviews::create(server, res, ns, obj, &user)
            .await
            .map(|v| encode_response(StatusCode::CREATED, &v, out.encoding));
    }
    let reg = &server.registry;
    // The registry works on the stored shape; conversion happens at the edges (events.k8s.io, autoscaling/v1).
    let sres = crate::convert::storage_resource(res);
    match verb {
        "get" => {
            allowed("get")?;
            let name = info.name.as_deref().unwrap_or_default();
            let kv = reg.get_stored(sres, ns, name).await?;
            let rv = kv.mod_revision.to_string();
            if let Some(resp) = stored_response(StatusCode::OK, res, Some(&kv.value), &rv, out) {
                return Ok(resp);
            }
            let obj = crate::registry::decode(&kv)?;
            let obj = crate::apiextensions::conversion::one_for_request(server, res, obj).await?;
            Ok(object_response(StatusCode::OK, res, printer.as_ref(), &obj, out, &q))
        }
        "list" => {
            allowed("list")?;
            let p = list_params(res, &q)?;
            let page = reg.list(sres, ns, &p).await?;
            // Custom resources stored at other versions go through the CRD's conversion webhook, all at once, and
            // take the version's defaults.
            let converted = match crate::apiextensions::conversion::read_plan(server, res) {
                Some(plan) => {
                    let objs = page.items.iter().map(|i| i.value()).collect::<Result<Vec<_>, _>>()?;
                    Some(plan.apply(server, res, objs).await?)
                }
                None => None,
            };
            let mut meta = json!({"resourceVersion": page.resource_version.to_string()});
            if let Some(c) = &page.continue_token {
                meta["continue"] = json!(c);
            }
            if let Some(r) = page.remaining.filter(|r| *r > 0) {
                meta["remainingItemCount"] = json!(r);
            }
            if out.is_table() {
                let include = q.get("includeObject").map(String::as_str).unwrap_or("Metadata");
                let objs = match converted {
                    Some(objs) => objs,
                    None => {
                        let objs = page.items.iter().map(|i| i.value()).collect::<Result<Vec<_>, _>>()?;
                        objs.into_iter().map(|o| crate::convert::to_external(res, o)).collect()
                    }
                };
                return Ok(json_response(
                    StatusCode::OK,
                    &table::table(res, printer.as_ref(), &objs, meta, include, true),
                ));
            }
            if out.encoding == Encoding::Protobuf || out.target == Target::PartialObjectMetadata {
                let mut items = page.items;
                if out.target != Target::PartialObjectMetadata {
                    crate::registry::share_cached(&server.registry.cacher, sres, &mut items);
                }
                return list_response(res, &meta, &items, out);
            }
            // Written by hand so objects go out as stored JSON or as the watch cache's encodings, never decoded and
            // encoded again, into a buffer of their size.
            let as_stored = converted.is_none() && !crate::convert::converts(res);
            let mut items = page.items;
            if as_stored && items.iter().any(crate::registry::Item::stored_as_protobuf) {
                // Stored protobuf would be decoded and encoded for each list: the watch cache's objects carry their
                // JSON, encoded once. Its cache is started for that (upstream runs one for every resource).
                if !sres.custom {
                    let _ = server.registry.cacher.cache(sres).await;
                }
                crate::registry::share_cached(&server.registry.cacher, sres, &mut items);
            }
            let jsons = match as_stored {
                true => items.iter().map(crate::registry::Item::json).collect::<Result<Vec<_>, _>>()?,
                false => Vec::new(),
            };
            let items_len: usize = match as_stored {
                true => jsons.iter().map(|j| j.len() + 1).sum(),
                false => items.len() * 1024,
            };
            let mut body = Vec::with_capacity(items_len + 256);
            body.extend_from_slice(
                format!("{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":", res.kind, res.api_version())
                    .as_bytes(),
            );
            let _ = serde_json::to_writer(&mut body, &meta);
            body.extend_from_slice(b",\"items\":[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                if let Some(objs) = &converted {
                    let _ = serde_json::to_writer(&mut body, &objs[i]);
                } else if !as_stored {
                    let _ = serde_json::to_writer(&mut body, &crate::convert::to_external(res, item.value()?));
                } else {
                    body.extend_from_slice(&jsons[i]);
                }
            }
            body.extend_from_slice(b"]}\n");
            Ok(crate::server::bytes_response(StatusCode::OK, body, "application/json"))
        }
        "watch" => {
            allowed("watch")?;
            let mut p = list_params(res, &q)?;
            if let Some(name) = &info.name {
                // A watch on one object is a watch on its collection filtered by name.
                p.field_selector = Some(
                    FieldSelector::parse(&format!("metadata.name={name}"))
                        .map_err(|e| ApiError::bad_request(e.to_string()))?,
                );
            }
            watch(server, res, ns, p, &q, out).await
        }
        "create" => {
            allowed("create")?;
            if server.served.load().custom_of(res).is_some_and(|c| c.terminating) {
                return Err(ApiError::method_not_allowed(
                    "create not allowed while custom resource definition is terminating",
                ));
            }
            crate::fieldmanager::check_options(
                "CreateOptions",
                q.get("fieldManager").map(String::as_str),
                None,
                false,
            )?;
            let body = read_body(body).await?;
            let (obj, warnings) = decode_checked(server, res, &parts.headers, &body, &q)?;
            let obj = crate::convert::to_internal(res, obj);
            let created = crate::admission::create_stored(server, sres, ns, obj, dry_run(&q)?).await?;
            let rv = meta_str(&created.object, "resourceVersion").unwrap_or_default();
            let resp =
                stored_response(StatusCode::CREATED, res, created.stored.as_deref(), rv, out).unwrap_or_else(|| {
                    object_response(StatusCode::CREATED, res, printer.as_ref(), &created.object, out, &q)
                });
            Ok(with_warnings(resp, &warnings))
        }
        "update" => {
            allowed("update")?;
            let name = info.name.as_deref().unwrap_or_default();
            crate::fieldmanager::check_options(
                "UpdateOptions",
                q.get("fieldManager").map(String::as_str),
                None,
                false,
            )?;
            let body = read_body(body).await?;
            let (obj, warnings) = decode_checked(server, res, &parts.headers, &body, &q)?;
            let obj = crate::convert::to_internal(res, obj);
            let updated = reg.update(sres, ns, name, None, obj, dry_run(&q)?).await?;
            let resp = object_response(StatusCode::OK, res, printer.as_ref(), &updated, out, &q);
            Ok(with_warnings(resp, &warnings))
        }
        "patch" => {
            allowed("patch")?;
            let name = info.name.as_deref().unwrap_or_default();
            let (pt, body) = patch_body(&parts.headers, body).await?;
            if pt == PatchType::StrategicMerge && res.custom {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                ));
            }
            check_patch_options(&q, pt)?;
            if pt == PatchType::Apply {
                let (code, obj, warnings) = server_side_apply(server, res, ns, name, None, &body, &q).await?;
                let resp = object_response(code, res, printer.as_ref(), &obj, out, &q);
                return Ok(with_warnings(resp, &warnings));
            }
            let mode = field_validation(&q)?;
            let (patched, warnings) =
                reg.patch_checked(sres, ns, name, None, pt, &body, dry_run(&q)?, mode, res).await?;
            let resp = object_response(StatusCode::OK, res, printer.as_ref(), &patched, out, &q);
            Ok(with_warnings(resp, &warnings))
        }
        "delete" => {
            allowed("delete")?;
            let name = info.name.as_deref().unwrap_or_default();
            let body = read_body(body).await?;
            let p = delete_params(&as_json(&parts.headers, body)?, &q)?;
            let obj = match crate::admission::delete(server, sres, ns, name, &p).await? {
                Deleted::Pending(obj) | Deleted::Gone(obj) => obj,
            };
            let obj = crate::apiextensions::conversion::one_for_request(server, res, obj).await?;
            Ok(object_response(StatusCode::OK, res, printer.as_ref(), &obj, out, &q))
        }
        "deletecollection" => {
            allowed("deletecollection")?;
            let body = read_body(body).await?;
            let dp = delete_params(&as_json(&parts.headers, body)?, &q)?;
            let lp = list_params(res, &q)?;
            let page = reg.list(sres, ns, &ListParams { limit: 0, continue_token: None, ..lp }).await?;
            let mut items = Vec::new();
            for item in page.items {
                let obj = item.value()?;
                let name = meta_str(&obj, "name").unwrap_or_default().to_string();
                let ons = meta_str(&obj, "namespace").map(str::to_string);
                match crate::admission::delete(server, sres, ons.as_deref(), &name, &dp).await {
                    Ok(Deleted::Gone(o)) | Ok(Deleted::Pending(o)) => items.push(o),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let items = crate::apiextensions::conversion::for_request(server, res, items).await?;
            let items: Vec<Value> = items.into_iter().map(|o| crate::convert::to_external(res, o)).collect();
            let list = json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(), "metadata": {"resourceVersion": ""}, "items": items});
            Ok(encode_response(StatusCode::OK, &list, out.encoding))
        }
        other => Err(ApiError::method_not_allowed(format!("{other} is not supported"))),
    }
}

/// PatchOptions checks: `fieldManager` required for apply, `force` only with apply.
pub fn check_patch_options(q: &HashMap<String, String>, pt: PatchType) -> Result<(), ApiError> {
    let manager = q.get("fieldManager").map(String::as_str);
    crate::fieldmanager::check_options(
        "PatchOptions",
        manager,
        q.get("force").map(String::as_str),
        pt == PatchType::Apply,
    )
}

/// Decodes an apply body: YAML (JSON is YAML too), an object.
pub fn decode_apply_body(body: &Bytes) -> Result<Value, ApiError> {
    let parsed: Result<Value, String> = match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(_) => serde_yaml_ng::from_slice(body).map_err(|e| e.to_string()),
    };
    match parsed {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(ApiError::bad_request("error decoding YAML: the apply configuration must be an object")),
        Err(e) => Err(ApiError::bad_request(format!("error decoding YAML: {e}"))),
    }
}

/// The duplicate fields of an apply body: a JSON one's paths; in a YAML one, under Strict, the first duplicate key
/// is a 400 with its line as upstream's strict YAML decoder reports it (`line 11: key "foo" already set in map`).
fn apply_duplicates(body: &Bytes, mode: FieldValidation) -> Result<Vec<String>, ApiError> {
    if mode == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        return Ok(api_types::duplicates::duplicate_fields(body));
    }
    if mode == FieldValidation::Strict
        && let Some(duplicate) = api_types::duplicates::first_yaml_duplicate(body)
    {
        return Err(ApiError::bad_request(format!("error decoding YAML: yaml: unmarshal errors:\n  {duplicate}")));
    }
    Ok(Vec::new())
}

/// Server-side apply (`application/apply-patch+yaml`) of an object or its status (upstream's apply patcher): the
/// configuration merged into the live object by field ownership, 409 on fields other managers own unless
/// `force=true`; an object that does not exist is created from the configuration (201). Returns the status code,
/// the object and the fieldValidation warnings.
pub async fn server_side_apply(
    server: &Arc<Apiserver>,
    res: &'static Resource,
    ns: Option<&str>,
    name: &str,
    subresource: Option<&str>,
    body: &Bytes,
    q: &HashMap<String, String>,
) -> Result<(StatusCode, Value, Vec<String>), ApiError> {
    let mut config = decode_apply_body(body)?;
    let mode = field_validation(q)?;
    let duplicates = apply_duplicates(body, mode)?;
    // Fields a built-in kind does not have never become anyone's (Strict: 400, Warn: warnings); a custom
    // resource's merged object is pruned by its schema in the registry.
    let checked = if res.custom { Ok(Vec::new()) } else { server.registry.check_fields(res, &mut config, mode) };
    let warnings = crate::registry::with_duplicates(checked, &duplicates, mode)?;
    let want = res.api_version();
    if let Some(av) = config.get("apiVersion").and_then(Value::as_str).filter(|av| *av != want) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({want})"
        )));
    }
    if let Some(kind) = config.get("kind").and_then(Value::as_str).filter(|k| *k != res.kind) {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            res.kind
        )));
    }
    if let Some(n) = config.pointer("/metadata/name").and_then(Value::as_str).filter(|n| *n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    let force = crate::request::flag(q, "force");
    let dry = dry_run(q)?;
    let fm = crate::fieldmanager::current().ok_or_else(|| ApiError::internal("apply without a field manager"))?;
    let fm = crate::fieldmanager::Request { apply: true, ..fm };
    let sres = crate::convert::storage_resource(res);
    let applied = crate::fieldmanager::scope(
        fm.clone(),
        server.registry.apply(sres, ns, name, subresource, &config, dry, force, res),
    )
    .await;
    match applied {
        Err(e) if e.code == 404 && subresource.is_none() => {
            let mut obj = {
                let snap = server.served.load();
                let schema = snap.custom_of(res).and_then(|c| c.structural.as_ref());
                let ty = crate::fieldmanager::type_of(res, schema);
                let reset = crate::fieldmanager::reset_fields(crate::strategy::has_status_subresource(res), None);
                crate::fieldmanager::apply(ty, &reset, None, &config, &fm, force)?
            };
            if obj.pointer("/metadata/name").is_none() {
                obj["metadata"]["name"] = json!(name);
            }
            server.registry.check_fields(res, &mut obj, FieldValidation::Ignore)?;
            let obj = crate::convert::to_internal(res, obj);
            let created = crate::fieldmanager::scope(fm, crate::admission::create(server, sres, ns, obj, dry)).await?;
            Ok((StatusCode::CREATED, created, warnings))
        }
        Err(e) => Err(e),
        Ok(v) => Ok((StatusCode::OK, v, warnings)),
    }
}

/// A list in protobuf, or as PartialObjectMetadataList: each item encoded on its own into the list's `items`.
fn list_response(res: &Resource, meta: &Value, items: &[crate::registry::Item], out: Output) -> Result<Resp, ApiError> {
    let partial = out.target == Target::PartialObjectMetadata;
    // Objects of the watch cache carry their protobuf message, encoded once for every list that serves them; stored
    // protobuf is spliced; the others (stored JSON the cache has not caught up with) are encoded here.
    if out.encoding == Encoding::Protobuf && !partial && !crate::convert::converts(res) {
        let mut messages = Vec::with_capacity(items.len());
        for item in items {
            match item.protobuf_message() {
                Some(message) => messages.push(message),
                None => match api_types::protobuf::encode_message_of(&item.value()?) {
                    Some(message) => messages.push(std::borrow::Cow::Owned(message)),
                    None => break,
                },
            }
        }
        let slices: Vec<&[u8]> = messages.iter().map(|m| &m[..]).collect();
        if slices.len() == items.len()
            && let Some(body) =
                api_types::protobuf::encode_list(&res.api_version(), &format!("{}List", res.kind), meta, &slices)
        {
            return Ok(crate::server::bytes_response(StatusCode::OK, body, api_types::protobuf::CONTENT_TYPE));
        }
    }
    let (api_version, kind) = if partial {
        ("meta.k8s.io/v1".to_string(), "PartialObjectMetadataList".to_string())
    } else {
        (res.api_version(), format!("{}List", res.kind))
    };
    let mut objects = Vec::with_capacity(items.len());
    for item in items {
        let obj = crate::convert::to_external(res, item.value()?);
        objects.push(if partial { partial_object_metadata(&obj) } else { obj });
    }
    if out.encoding == Encoding::Protobuf
        && let Some(body) = api_types::protobuf::encode_list_of(&api_version, &kind, meta, &objects)
    {
        return Ok(crate::server::bytes_response(StatusCode::OK, body, api_types::protobuf::CONTENT_TYPE));
    }
    let list = json!({"kind": kind, "apiVersion": api_version, "metadata": meta, "items": objects});
    Ok(json_response(StatusCode::OK, &list))
}

/// Reads a patch body and its type from the Content-Type.
pub async fn patch_body(headers: &http::HeaderMap, body: Incoming) -> Result<(PatchType, Bytes), ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let pt = PatchType::from_content_type(ct).ok_or_else(|| ApiError::unsupported_media_type(ct))?;
    Ok((pt, read_body(body).await?))
}

/// DeleteOptions from the body (JSON, with or without kind) and the query.
pub fn delete_params(body: &Bytes, q: &HashMap<String, String>) -> Result<DeleteParams, ApiError> {
    let opts: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|_| ApiError::unsupported_media_type("DeleteOptions must be JSON"))?
    };
    let grace = opts
        .get("gracePeriodSeconds")
        .and_then(Value::as_i64)
        .or_else(|| q.get("gracePeriodSeconds").and_then(|g| g.parse().ok()));
    let policy = opts
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| q.get("propagationPolicy").cloned());
    let orphan = opts.get("orphanDependents").and_then(Value::as_bool);
    let policy = policy.or_else(|| orphan.map(|o| if o { "Orphan".to_string() } else { "Background".to_string() }));
    let body_dry = opts.get("dryRun").and_then(Value::as_array).is_some_and(|d| d.iter().any(|x| x == "All"));
    Ok(DeleteParams {
        grace_period_seconds: grace,
        propagation_policy: policy,
        precondition_uid: opts.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_string),
        precondition_rv: opts.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(str::to_string),
        dry_run: body_dry || dry_run(q)?,
    })
}

/// One event of a watch stream: a line of JSON, or a length-framed protobuf `WatchEvent`. An object served in its
/// stored shape is written from the encoding shared by every watcher of the event.
/// A watch event of a custom resource as the watcher's version shows it ([`crate::apiextensions::conversion::ReadPlan`]).
async fn converted_event(
    server: &crate::server::Apiserver,
    plan: &crate::apiextensions::conversion::ReadPlan,
    res: &Resource,
    ev: WatchEvent,
) -> Result<WatchEvent, ApiError> {
    let convert = async |o: &crate::registry::Shared| -> Result<crate::registry::Shared, ApiError> {
        let mut out = plan.apply(server, res, vec![(**o).clone()]).await?;
        Ok(crate::registry::Shared::new(out.pop().unwrap_or_default()))
    };
    Ok(match &ev {
        WatchEvent::Added(o) => WatchEvent::Added(convert(o).await?),
        WatchEvent::Modified(o) => WatchEvent::Modified(convert(o).await?),
        WatchEvent::Deleted(o) => WatchEvent::Deleted(convert(o).await?),
        _ => ev,
    })
}

fn event_line(res: &Resource, printer: Option<&Printer>, ev: &WatchEvent, out: Output, first: &mut bool) -> Bytes {
    let shared = match ev {
        WatchEvent::Added(o) => Some(("ADDED", o)),
        WatchEvent::Modified(o) => Some(("MODIFIED", o)),
        WatchEvent::Deleted(o) => Some(("DELETED", o)),
        _ => None,
    };
    let as_is = out.target == Target::Object && !crate::convert::converts(res);
    if let Some((ty, obj)) = shared
        && as_is
    {
        return obj.watch_event(ty, out.encoding == Encoding::Protobuf);
    }
    let event = event_json(res, printer, ev, out, first);
    if out.encoding == Encoding::Protobuf {
        let body = api_types::protobuf::encode_object(&event["object"]).unwrap_or_default();
        return Bytes::from(api_types::protobuf::watch_frame(event["type"].as_str().unwrap_or_default(), &body));
    }
    let mut line = serde_json::to_vec(&event).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn event_json(res: &Resource, printer: Option<&Printer>, ev: &WatchEvent, out: Output, first: &mut bool) -> Value {
    let (ty, obj) = match ev {
        WatchEvent::Added(o) => ("ADDED", (**o).clone()),
        WatchEvent::Modified(o) => ("MODIFIED", (**o).clone()),
        WatchEvent::Deleted(o) => ("DELETED", (**o).clone()),
        WatchEvent::Bookmark(rev) => {
            let (kind, api_version) = match out.target {
                Target::Table => ("Table".to_string(), "meta.k8s.io/v1".to_string()),
                Target::PartialObjectMetadata => ("PartialObjectMetadata".to_string(), "meta.k8s.io/v1".to_string()),
                Target::Object => (res.kind.to_string(), res.api_version()),
            };
            return json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": rev.to_string()}}});
        }
        WatchEvent::Error(e) => return json!({"type": "ERROR", "object": e.to_status()}),
    };
    let obj = crate::convert::to_external(res, obj);
    match out.target {
        Target::Table => {
            let meta = json!({"resourceVersion": meta_str(&obj, "resourceVersion").unwrap_or_default()});
            let t = table::table(res, printer, std::slice::from_ref(&obj), meta, "Metadata", *first);
            *first = false;
            json!({"type": ty, "object": t})
        }
        Target::PartialObjectMetadata => json!({"type": ty, "object": partial_object_metadata(&obj)}),
        Target::Object => json!({"type": ty, "object": obj}),
    }
}

/// A watch: chunked newline-delimited JSON events until the client leaves, `timeoutSeconds` passes (default:
/// a random time between --min-request-timeout and twice it) or the server shuts down.
async fn watch(
    server: &Arc<Apiserver>,
    res: &'static Resource,
    ns: Option<&str>,
    p: ListParams,
    q: &HashMap<String, String>,
    out: Output,
) -> Result<Resp, ApiError> {
    let bookmarks = crate::request::flag(q, "allowWatchBookmarks");
    let timeout = match q.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()) {
        Some(t) => Duration::from_secs(t),
        None => {
            let min = server.opts.min_request_timeout.max(1);
            Duration::from_secs(min + (uuid::Uuid::new_v4().as_u128() % min as u128) as u64)
        }
    };
    let mut events = server.registry.watch(crate::convert::storage_resource(res), ns, p, bookmarks).await?;
    let printer = printer_of(server, res);
    let plan = crate::apiextensions::conversion::read_plan(server, res);
    let server = server.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let mut stop = server.stop_signal();
    let gauge = server.watch_gauge();
    tokio::spawn(async move {
        let _gauge = gauge;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut first = true;
        loop {
            let ev = tokio::select! {
                ev = events.recv() => match ev { Some(ev) => ev, None => return },
                _ = &mut deadline => return,
                _ = stop.changed() => return,
                _ = tx.closed() => return,
            };
            let ev = match &plan {
                Some(plan) => match converted_event(&server, plan, res, ev).await {
                    Ok(ev) => ev,
                    Err(e) => WatchEvent::Error(e),
                },
                None => ev,
            };
            if tx.send(event_line(res, printer.as_ref(), &ev, out, &mut first)).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::convert::Infallible>(Frame::data(b)), rx))
    });
    let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
    let content_type = match out.encoding {
        Encoding::Protobuf => "application/vnd.kubernetes.protobuf;stream=watch",
        Encoding::Json => "application/json",
    };
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    Ok(resp)
}
