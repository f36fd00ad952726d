//! Subresources: `status` (spec and status writes kept apart), `scale` (autoscaling/v1 Scale for deployments,
//! replicasets, statefulsets and replication controllers), `pods/binding`, `pods/eviction`, `namespaces/finalize`,
//! CSR `approval`; `log` is streamed from the kubelet, `exec`, `attach`, `portforward` and `nodes/proxy` are
//! proxied to it, `pods/proxy` and `services/proxy` to the pod or a Service endpoint ([`crate::proxy`]). Also server-side apply's simple form.

use std::collections::HashMap;
use std::sync::Arc;

use api_types::patch::PatchType;
use api_types::{ApiError, Resource, status};
use bytes::Bytes;
use http::StatusCode;
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::api::{decode_body, delete_params, encode_response, patch_body};
use crate::negotiation::Output;
use crate::registry::meta_str;
use crate::request::RequestInfo;
use crate::server::{Apiserver, Resp, read_body};

fn dry_run(q: &HashMap<String, String>) -> bool {
    q.get("dryRun").is_some_and(|d| d == "All")
}

fn not_allowed(res: &Resource, sub: &str, verb: &str) -> ApiError {
    ApiError::method_not_allowed(format!("{verb} is not supported on {}/{sub}", res.plural))
}

/// A CRD's `.spec.replicas`-style path as a JSON pointer.
fn dotted_pointer(path: &str) -> String {
    path.split('.').filter(|s| !s.is_empty()).fold(String::new(), |p, seg| format!("{p}/{seg}"))
}

/// The Scale view of a custom resource, from its CRD's scale paths (upstream's `scaleFromCustomResource`).
fn custom_scale(paths: &crate::apiextensions::served::ScalePaths, obj: &Value) -> Value {
    let int = |path: &str| obj.pointer(&dotted_pointer(path)).and_then(Value::as_i64).unwrap_or(0);
    let selector = paths
        .label_selector
        .as_deref()
        .and_then(|p| obj.pointer(&dotted_pointer(p)))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut scale = to_scale_meta(obj);
    scale["spec"] = json!({"replicas": int(&paths.spec_replicas)});
    scale["status"] = json!({"replicas": int(&paths.status_replicas), "selector": selector});
    scale
}

fn to_scale_meta(obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    let mut scale_meta = json!({});
    for k in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(v) = meta.get(k) {
            scale_meta[k] = v.clone();
        }
    }
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": scale_meta})
}

/// The Scale view of a workload.
fn to_scale(res: &Resource, obj: &Value) -> Value {
    let selector = obj.pointer("/spec/selector").map(|s| {
        let map = s.get("matchLabels").or(if s.get("matchExpressions").is_none() { Some(s) } else { None });
        map.and_then(Value::as_object)
            .map(|m| {
                m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")
            })
            .unwrap_or_default()
    });
    let _ = res;
    let mut scale = to_scale_meta(obj);
    scale["spec"] = json!({"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)});
    scale["status"] = json!({"replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0), "selector": selector.unwrap_or_default()});
    scale
}

fn replicas_of(scale: &Value, name: &str) -> Result<i64, ApiError> {
    let r = scale.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
    if r < 0 {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            name,
            vec![api_types::Cause::invalid("spec.replicas", &json!(r), "must be greater than or equal to 0")],
        ));
    }
    Ok(r)
}

#[allow(clippy::too_many_arguments)]
pub async fn serve(
    server: &Arc<Apiserver>,
    res: &'static Resource,
    ns: Option<&str>,
    name: &str,
    sub: &str,
    info: &RequestInfo,
    parts: &mut http::request::Parts,
    body: Incoming,
    q: &HashMap<String, String>,
    out: Output,
) -> Result<Resp, ApiError> {
    let Some(subresource) = res.subresource(sub) else {
        return Err(ApiError::new(404, "NotFound", "the server could not find the requested resource"));
    };
    let verb = info.verb.as_str();
    // A proxy also forwards OPTIONS (upstream's proxyMethods), a verb discovery does not list.
    let proxied_options = sub == "proxy" && verb == "options";
    if !subresource.verbs.contains(&verb) && !proxied_options {
        return Err(not_allowed(res, sub, verb));
    }
    let reg = &server.registry;
    match sub {
        "status" | "approval" | "ephemeralcontainers" => match verb {
            "get" => Ok(encode_response(StatusCode::OK, &reg.get(res, ns, name).await?, out.encoding)),
            "update" => {
                let bytes = read_body(body).await?;
                let obj = decode_body(&parts.headers, &bytes)?;
                let updated = reg.update(res, ns, name, Some(sub), obj, dry_run(q)).await?;
                Ok(encode_response(StatusCode::OK, &updated, out.encoding))
            }
            "patch" => {
                let (pt, bytes) = patch_body(&parts.headers, body).await?;
                crate::api::check_patch_options(q, pt)?;
                if pt == PatchType::Apply {
                    let (code, applied, warnings) =
                        crate::api::server_side_apply(server, res, ns, name, Some(sub), &bytes, q).await?;
                    return Ok(crate::api::with_warnings(encode_response(code, &applied, out.encoding), &warnings));
                }
                let patched = reg.patch(res, ns, name, Some(sub), pt, &bytes, dry_run(q)).await?;
                Ok(encode_response(StatusCode::OK, &patched, out.encoding))
            }
            _ => Err(not_allowed(res, sub, verb)),
        },
        "scale" => {
            let custom = server.served.load().custom_of(res).and_then(|c| c.scale.clone());
            let view = |obj: &Value| match &custom {
                Some(paths) => custom_scale(paths, obj),
                None => to_scale(res, obj),
            };
            let obj = reg.get(res, ns, name).await?;
            let current = view(&obj);
            // The replicas go to the workload's `.spec.replicas`, or where the CRD's specReplicasPath says.
            let path = custom.as_ref().map(|c| c.spec_replicas.clone()).unwrap_or_else(|| ".spec.replicas".into());
            // An apply computes the parent's managedFields itself (upstream's scale handler).
            let mut managed_fields = None;
            let wanted = match verb {
                "get" => return Ok(encode_response(StatusCode::OK, &current, out.encoding)),
                "update" => {
                    let bytes = read_body(body).await?;
                    decode_body(&parts.headers, &bytes)?
                }
                "patch" => {
                    let (pt, bytes) = patch_body(&parts.headers, body).await?;
                    crate::api::check_patch_options(q, pt)?;
                    if pt == PatchType::Apply {
                        let (scale, managed) = apply_to_scale(&obj, &current, &path, &bytes, q)?;
                        managed_fields = Some(managed);
                        scale
                    } else {
                        api_types::patch::apply_patch(&current, pt, &bytes, Some("Scale"))
                            .map_err(|e| ApiError::bad_request(e.to_string()))?
                    }
                }
                _ => return Err(not_allowed(res, sub, verb)),
            };
            let replicas = replicas_of(&wanted, name)?;
            // The Scale's uid, when given, must be the workload's (upstream's scale preconditions).
            if let Some(uid) = meta_str(&wanted, "uid").filter(|u| !u.is_empty())
                && Some(uid) != meta_str(&obj, "uid")
            {
                let actual = meta_str(&obj, "uid").unwrap_or_default();
                let why = format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}");
                return Err(ApiError::conflict(res.group, res.plural, name, &why));
            }
            // The Scale's resourceVersion, when given, is a precondition on the workload.
            let rv = meta_str(&wanted, "resourceVersion").filter(|rv| !rv.is_empty());
            let mut p = json!({});
            let mut at = &mut p;
            for seg in path.split('.').filter(|s| !s.is_empty()) {
                at = &mut at[seg];
            }
            *at = json!(replicas);
            if let Some(rv) = rv {
                p["metadata"] = json!({"resourceVersion": rv});
            }
            // Admission sees the write as a Scale update of the subresource (upstream's scale REST).
            let shown: Arc<dyn Fn(&Value) -> Value + Send + Sync> = match custom.clone() {
                Some(paths) => Arc::new(move |o: &Value| custom_scale(&paths, o)),
                None => Arc::new(move |o: &Value| to_scale(res, o)),
            };
            let scale = crate::admission::ScaleView { view: shown, replicas: dotted_pointer(&path) };
            let write = async {
                Ok::<_, ApiError>(match managed_fields {
                    Some(m) => {
                        p["metadata"]["managedFields"] = m;
                        let fm =
                            crate::fieldmanager::current().map(|f| crate::fieldmanager::Request { apply: true, ..f });
                        let body = p.to_string();
                        let patch = reg.patch(res, ns, name, None, PatchType::Merge, body.as_bytes(), dry_run(q));
                        match fm {
                            Some(fm) => crate::fieldmanager::scope(fm, patch).await?,
                            None => patch.await?,
                        }
                    }
                    None => {
                        reg.patch(res, ns, name, None, PatchType::Merge, p.to_string().as_bytes(), dry_run(q)).await?
                    }
                })
            };
            let scaled = crate::admission::SCALE.scope(scale, write).await?;
            Ok(encode_response(StatusCode::OK, &view(&scaled), out.encoding))
        }
        "binding" => {
            let bytes = read_body(body).await?;
            let binding = decode_body(&parts.headers, &bytes)?;
            bind(server, res, ns, name, &binding, dry_run(q), out).await
        }
        "eviction" => {
            let bytes = read_body(body).await?;
            let ev: Value = if bytes.is_empty() { json!({}) } else { decode_body(&parts.headers, &bytes)? };
            crate::admission::admit_subresource(server, res, sub, ns.unwrap_or_default(), name, &ev)?;
            let opts = ev.get("deleteOptions").map(|d| d.to_string()).unwrap_or_default();
            let mut dp = delete_params(&Bytes::from(opts), q)?;
            dp.dry_run |= dry_run(q);
            let pod = reg.get(res, ns, name).await?;
            check_disruption_budget(server, &pod, dp.dry_run).await?;
            if !dp.dry_run {
                add_disruption_target(server, res, ns, name).await?;
            }
            crate::admission::delete(server, res, ns, name, &dp).await?;
            Ok(encode_response(StatusCode::CREATED, &status::success(None), out.encoding))
        }
        "token" => {
            let bytes = read_body(body).await?;
            let obj = decode_body(&parts.headers, &bytes)?;
            crate::admission::admit_subresource(server, res, sub, ns.unwrap_or_default(), name, &obj)?;
            let answer = crate::tokenrequest::create(server, ns.unwrap_or_default(), name, obj, dry_run(q)).await?;
            Ok(encode_response(StatusCode::CREATED, &answer, out.encoding))
        }
        "finalize" => {
            let bytes = read_body(body).await?;
            let obj = decode_body(&parts.headers, &bytes)?;
            finalize_namespace(server, res, name, &obj, dry_run(q), out).await
        }
        "log" => {
            let pod = reg.get(res, ns, name).await?;
            pod_log(server, &pod, q, parts).await
        }
        "exec" | "attach" | "portforward" | "proxy" => {
            crate::admission::connect::admit(server, res, ns, name, sub, &info.rest, &parts.uri).await?;
            crate::proxy::serve(server, res, ns, name, sub, info, parts, body).await
        }
        _ => Err(ApiError::unavailable(format!("{}/{sub} is not implemented yet", res.plural))),
    }
}

/// Upstream's `addConditionAndDeletePod`: before an evicted pod is deleted its status gets the `DisruptionTarget`
/// condition (`EvictionByEvictionAPI`), written on the latest pod (retried on a concurrent change).
async fn add_disruption_target(
    server: &Arc<Apiserver>,
    res: &Resource,
    ns: Option<&str>,
    name: &str,
) -> Result<(), ApiError> {
    for _ in 0..5 {
        let mut pod = server.registry.get(res, ns, name).await?;
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let condition = json!({"type": "DisruptionTarget", "status": "True", "lastProbeTime": null,
            "lastTransitionTime": now, "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"});
        let conditions = pod["status"].as_object_mut().map(|st| st.entry("conditions").or_insert_with(|| json!([])));
        let Some(conditions) = conditions.and_then(Value::as_array_mut) else { return Ok(()) };
        match conditions.iter_mut().find(|c| c["type"] == "DisruptionTarget") {
            // UpdatePodCondition: the transition time moves only when the status does.
            Some(c) if c["status"] == "True" => {
                if c["reason"] == condition["reason"] && c["message"] == condition["message"] {
                    return Ok(());
                }
                c["reason"] = condition["reason"].clone();
                c["message"] = condition["message"].clone();
            }
            Some(c) => *c = condition,
            None => conditions.push(condition),
        }
        match server.registry.update(res, ns, name, Some("status"), pod, false).await {
            Ok(_) => return Ok(()),
            Err(e) if e.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(res.group, res.plural, name, "the pod kept changing"))
}

/// `pods/log`: proxied to the kubelet of the pod's node (`/containerLogs/...`), streamed back as it comes, or
/// over a WebSocket when the request is an upgrade ([`crate::wsstream`]).
async fn pod_log(
    server: &Arc<Apiserver>,
    pod: &Value,
    q: &HashMap<String, String>,
    parts: &mut http::request::Parts,
) -> Result<Resp, ApiError> {
    let name = meta_str(pod, "name").unwrap_or_default();
    let ns = meta_str(pod, "namespace").unwrap_or_default();
    let container = crate::proxy::container_of(pod, q.get("container").map(String::as_str))?;
    let node = crate::proxy::node_of(pod)?;
    let (ip, port) = crate::proxy::kubelet_address(server, &node).await?;
    let query = {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for k in ["follow", "previous", "timestamps", "tailLines", "sinceSeconds", "limitBytes"] {
            if let Some(v) = q.get(k) {
                query.append_pair(k, v);
            }
        }
        query.finish()
    };
    let cfg = client::Config { server: format!("https://{ip}:{port}"), ..server.kubelet_client.clone() };
    let kubelet = client::Client::new(&cfg).map_err(|e| ApiError::internal(e.to_string()))?;
    let path = format!("/containerLogs/{ns}/{name}/{container}?{query}");
    let upstream = kubelet
        .get_stream(&path)
        .await
        .map_err(|e| ApiError::unavailable(format!("the kubelet on node {node:?} did not answer: {e}")))?;
    let status = upstream.status();
    if !status.is_success() {
        let body =
            http_body_util::BodyExt::collect(upstream.into_body()).await.map(|b| b.to_bytes()).unwrap_or_default();
        return Err(ApiError::bad_request(String::from_utf8_lossy(&body).trim().to_string()));
    }
    if crate::wsstream::is_websocket_request(&parts.headers) {
        return Ok(crate::wsstream::serve(parts, http_body_util::BodyDataStream::new(upstream.into_body())));
    }
    // The stream ends quietly if the kubelet connection drops.
    use futures_util::StreamExt;
    let stream = http_body_util::BodyDataStream::new(upstream.into_body())
        .take_while(|r| std::future::ready(r.is_ok()))
        .filter_map(|r| std::future::ready(r.ok()))
        .map(|b| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b)));
    let body = http_body_util::BodyExt::boxed_unsync(http_body_util::StreamBody::new(stream));
    let mut resp = http::Response::new(body);
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    Ok(resp)
}

async fn bind(
    server: &Arc<Apiserver>,
    res: &Resource,
    ns: Option<&str>,
    name: &str,
    binding: &Value,
    dry_run: bool,
    out: Output,
) -> Result<Resp, ApiError> {
    let target = binding.pointer("/target/name").and_then(Value::as_str).filter(|t| !t.is_empty());
    let Some(node) = target else {
        return Err(ApiError::invalid("", "Binding", name, vec![api_types::Cause::required("target.name")]));
    };
    let pod = server.registry.get(res, ns, name).await?;
    if pod.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty()) {
        return Err(ApiError::conflict(
            res.group,
            res.plural,
            name,
            &format!(
                "pod {name} is already assigned to node {:?}",
                pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default()
            ),
        ));
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(ApiError::conflict(
            res.group,
            res.plural,
            name,
            "pod is being deleted, cannot be assigned to a host",
        ));
    }
    let mut new = pod.clone();
    new["spec"]["nodeName"] = json!(node);
    let conds = new["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let mut conds: Vec<Value> = conds.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
    conds.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": crate::strategy::now_rfc3339()}));
    new["status"]["conditions"] = json!(conds);
    // Binding writes both spec.nodeName and the PodScheduled condition, as upstream's BindingREST does.
    server.registry.bind(res, ns, name, new, dry_run).await?;
    Ok(encode_response(StatusCode::CREATED, &status::success(None), out.encoding))
}

/// Whether a pod counts as healthy for a disruption budget (Ready True).
fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// The 429 upstream answers when an eviction would violate a budget.
fn budget_violated(pdb: &Value) -> ApiError {
    let name = meta_str(pdb, "name").unwrap_or_default();
    let status = |k: &str| pdb.pointer(&format!("/status/{k}")).and_then(Value::as_i64).unwrap_or(0);
    let mut e =
        ApiError::new(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.");
    e.details = Some(Box::new(json!({"causes": [{"reason": "DisruptionBudget", "message": format!(
        "The disruption budget {name} needs {} healthy pods and has {} currently",
        status("desiredHealthy"), status("currentHealthy"))}]})));
    e
}

/// Upstream's eviction check (pkg/registry/core/pod/storage/eviction.go): a pod that is not terminal, pending or
/// already deleting and that one PodDisruptionBudget covers may go only while the budget's
/// `status.disruptionsAllowed` is above 0; the budget is then decremented and the pod recorded in
/// `status.disruptedPods` (compare-and-swap, retried on conflict). Not-ready pods skip the budget when it is
/// already met (`unhealthyPodEvictionPolicy: IfHealthyBudget`) or always (`AlwaysAllow`).
async fn check_disruption_budget(server: &Arc<Apiserver>, pod: &Value, dry_run: bool) -> Result<(), ApiError> {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default();
    if matches!(phase, "Succeeded" | "Failed" | "Pending") || pod.pointer("/metadata/deletionTimestamp").is_some() {
        return Ok(());
    }
    let ns = meta_str(pod, "namespace").unwrap_or_default().to_string();
    let pod_name = meta_str(pod, "name").unwrap_or_default().to_string();
    let labels = pod.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
    let pdbs_res = api_types::resources::find("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| ApiError::internal("no poddisruptionbudgets resource"))?;
    for _attempt in 0..5 {
        let page = server.registry.list(pdbs_res, Some(&ns), &crate::registry::ListParams::default()).await?;
        let mut matching = Vec::new();
        for item in &page.items {
            let pdb = item.value()?;
            // A null selector matches nothing; an empty one everything (policy/v1).
            let Some(sel) = pdb.pointer("/spec/selector").filter(|s| !s.is_null()) else { continue };
            let Ok(sel) = api_types::selector::LabelSelector::from_json(sel) else { continue };
            if sel.matches_value(Some(&labels)) {
                matching.push(pdb);
            }
        }
        let mut pdb = match matching.len() {
            0 => return Ok(()),
            1 => matching.remove(0),
            _ => {
                return Err(ApiError::internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                ));
            }
        };
        let status = |k: &str| pdb.pointer(&format!("/status/{k}")).and_then(Value::as_i64).unwrap_or(0);
        let policy =
            pdb.pointer("/spec/unhealthyPodEvictionPolicy").and_then(Value::as_str).unwrap_or("IfHealthyBudget");
        if !pod_ready(pod) && (policy == "AlwaysAllow" || status("currentHealthy") >= status("desiredHealthy")) {
            return Ok(());
        }
        let generation = pdb.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
        if status("observedGeneration") < generation {
            let name = meta_str(&pdb, "name").unwrap_or_default();
            return Err(ApiError::too_many_requests(
                format!(
                    "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {name} is still being processed by the server."
                ),
                10,
            ));
        }
        let allowed = status("disruptionsAllowed");
        if allowed < 0 {
            return Err(ApiError::forbidden("pdb disruptions allowed is negative"));
        }
        if allowed == 0 {
            return Err(budget_violated(&pdb));
        }
        if dry_run {
            return Ok(());
        }
        pdb["status"]["disruptionsAllowed"] = json!(allowed - 1);
        if allowed - 1 == 0
            && let Some(conds) = pdb["status"]["conditions"].as_array_mut()
        {
            for c in conds.iter_mut().filter(|c| c["type"] == "DisruptionAllowed") {
                if c["status"] != "False" {
                    c["lastTransitionTime"] = json!(crate::strategy::now_rfc3339());
                }
                c["status"] = json!("False");
                c["reason"] = json!("InsufficientPods");
            }
        }
        if !pdb["status"]["disruptedPods"].is_object() {
            pdb["status"]["disruptedPods"] = json!({});
        }
        pdb["status"]["disruptedPods"][pod_name.as_str()] = json!(crate::strategy::now_rfc3339());
        let pdb_name = meta_str(&pdb, "name").unwrap_or_default().to_string();
        match server.registry.update(pdbs_res, Some(&ns), &pdb_name, Some("status"), pdb, false).await {
            Ok(_) => return Ok(()),
            Err(e) if e.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::too_many_requests("Cannot evict pod as it would violate the pod's disruption budget.", 1))
}

/// Server-side apply of a Scale: the configuration applied to the Scale view, whose managers are the parent's
/// owners of its replicas path (upstream's scale handler); returns the applied Scale and the parent's new
/// managedFields (null for none).
fn apply_to_scale(
    parent: &Value,
    current: &Value,
    replicas_path: &str,
    body: &Bytes,
    q: &HashMap<String, String>,
) -> Result<(Value, Value), ApiError> {
    use crate::fieldmanager::{self, fieldpath::Set, managers::Managed, scalehandler, typed::Ty};
    let config = crate::api::decode_apply_body(body)?;
    let fm = fieldmanager::current().ok_or_else(|| ApiError::internal("apply without a field manager"))?;
    let parent_path = scalehandler::replicas_path(replicas_path);
    let mut scale = current.clone();
    scale["metadata"]["managedFields"] = scalehandler::to_scale(parent, &parent_path).encode();
    let scale_fm = fieldmanager::Request { api_version: "autoscaling/v1".into(), ..fm.clone() };
    let force = crate::request::flag(q, "force");
    let ty = Ty::of_kind("autoscaling", "v1", "Scale");
    let applied = fieldmanager::apply(ty, &Set::new(), Some(&scale), &config, &scale_fm, force)?;
    let scale_managed = Managed::decode(&applied).unwrap_or_default();
    let managed = scalehandler::to_parent(parent, &parent_path, &scale_managed, &fm.api_version).encode();
    let managed = if managed.as_array().is_some_and(Vec::is_empty) { Value::Null } else { managed };
    Ok((applied, managed))
}

/// `namespaces/<name>/finalize`: replaces spec.finalizers; a terminating namespace with none left goes away.
async fn finalize_namespace(
    server: &Arc<Apiserver>,
    res: &Resource,
    name: &str,
    obj: &Value,
    dry_run: bool,
    out: Output,
) -> Result<Resp, ApiError> {
    let finalizers = obj.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
    let finalized = server.registry.finalize(res, name, finalizers, dry_run).await?;
    Ok(encode_response(StatusCode::OK, &finalized, out.encoding))
}
