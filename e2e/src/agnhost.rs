//! The webhook servers of upstream's `agnhost` test image (`test/images/agnhost/webhook` and
//! `crd-conversion-webhook`), which upstream's admission and CRD conversion e2e tests deploy as pods: the same
//! command line (`agnhost webhook --tls-cert-file=... --tls-private-key-file=... --port=8443`), the same paths and
//! the same answers, so those tests and ours run against a webhook served from the cluster's own pods.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

/// What `agnhost` was asked to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// `webhook` or `crd-conversion-webhook`.
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub port: u16,
}

/// Parses agnhost's command line (`--flag=value` or `--flag value`; flags it does not need, such as
/// `--alsologtostderr` and `-v=4`, are accepted and ignored, as upstream's manifests pass them).
pub fn parse(args: &[String]) -> Result<Command, String> {
    let name = args.first().cloned().ok_or(
        "usage: agnhost webhook|crd-conversion-webhook --tls-cert-file=... --tls-private-key-file=... [--port=N]",
    )?;
    if name != "webhook" && name != "crd-conversion-webhook" {
        return Err(format!("unknown command {name:?}: this agnhost serves webhook and crd-conversion-webhook"));
    }
    let mut cmd = Command { name, cert: PathBuf::new(), key: PathBuf::new(), port: 443 };
    let mut i = 1;
    while i < args.len() {
        let (flag, inline) = match args[i].split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (args[i].clone(), None),
        };
        let wants_value = matches!(flag.as_str(), "--tls-cert-file" | "--tls-private-key-file" | "--port");
        let value = match (inline, wants_value) {
            (Some(v), _) => v,
            (None, true) => {
                i += 1;
                args.get(i).cloned().ok_or(format!("{flag} needs a value"))?
            }
            (None, false) => String::new(),
        };
        match flag.as_str() {
            "--tls-cert-file" => cmd.cert = value.into(),
            "--tls-private-key-file" => cmd.key = value.into(),
            "--port" => cmd.port = value.parse().map_err(|e| format!("--port {value:?}: {e}"))?,
            _ => {}
        }
        i += 1;
    }
    if cmd.cert.as_os_str().is_empty() || cmd.key.as_os_str().is_empty() {
        return Err("--tls-cert-file and --tls-private-key-file are required".into());
    }
    Ok(cmd)
}

/// A JSONPatch answer.
fn patch(uid: &Value, ops: Value) -> Value {
    let p = base64::engine::general_purpose::STANDARD.encode(ops.to_string());
    json!({"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": p})
}

fn allow(uid: &Value) -> Value {
    json!({"uid": uid, "allowed": true})
}

/// A denial with `result.reason` (how agnhost's configmap, custom resource and CRD handlers word theirs).
fn deny_reason(uid: &Value, reason: &str) -> Value {
    json!({"uid": uid, "allowed": false, "status": {"reason": reason}})
}

/// The object of a review (the old one for a delete).
fn object(req: &Value) -> &Value {
    if req["operation"] == "DELETE" { &req["oldObject"] } else { &req["object"] }
}

/// Two-stage mutation of a `data` map (agnhost's `mutateConfigmaps` and `mutateCustomResource`): `mutation-start`
/// gets `mutation-stage-1`, `mutation-stage-1` gets `mutation-stage-2`.
fn mutate_data(uid: &Value, data: &Value) -> Value {
    let mut ops = Vec::new();
    if data["mutation-start"] == "yes" {
        ops.push(json!({"op": "add", "path": "/data/mutation-stage-1", "value": "yes"}));
    }
    if data["mutation-stage-1"] == "yes" {
        ops.push(json!({"op": "add", "path": "/data/mutation-stage-2", "value": "yes"}));
    }
    if ops.is_empty() { allow(uid) } else { patch(uid, Value::Array(ops)) }
}

/// The AdmissionReview response `webhook` gives on `path` (None: not one of its paths).
pub fn admission_response(path: &str, review: &Value) -> Option<Value> {
    let req = &review["request"];
    let uid = &req["uid"];
    Some(match path {
        "/always-allow-delay-5s" => allow(uid),
        "/always-deny" => {
            json!({"uid": uid, "allowed": false, "status": {"message": "this webhook denies all requests"}})
        }
        "/add-label" => {
            let op = if req["object"]["metadata"]["labels"].is_object() {
                json!({"op": "add", "path": "/metadata/labels/added-label", "value": "yes"})
            } else {
                json!({"op": "add", "path": "/metadata/labels", "value": {"added-label": "yes"}})
            };
            patch(uid, json!([op]))
        }
        "/pods" => {
            let pod = &req["object"];
            let mut msg = String::new();
            if pod["metadata"]["labels"]["webhook-e2e-test"] == "webhook-disallow" {
                msg.push_str("the pod contains unwanted label; ");
            }
            let containers = pod["spec"]["containers"].as_array().cloned().unwrap_or_default();
            if containers.iter().any(|c| c["name"].as_str().is_some_and(|n| n.contains("webhook-disallow"))) {
                msg.push_str("the pod contains unwanted container name; ");
            }
            if msg.is_empty() {
                allow(uid)
            } else {
                json!({"uid": uid, "allowed": false, "status": {"message": msg.trim()}})
            }
        }
        "/pods/attach" => kube_apiserver::admission::webhook::testserver::deny_specific_attachment(review, uid.clone()),
        "/mutating-pods" => {
            if req["object"]["metadata"]["name"] == "webhook-to-be-mutated" {
                patch(
                    uid,
                    json!([{"op": "add", "path": "/spec/initContainers", "value": [
                        {"image": "webhook-added-image", "name": "webhook-added-init-container", "resources": {}}]}]),
                )
            } else {
                allow(uid)
            }
        }
        "/configmaps" => {
            let data = &object(req)["data"];
            match req["operation"].as_str() {
                Some("DELETE") if data["webhook-e2e-test"] == "webhook-nondeletable" => {
                    deny_reason(uid, "the configmap cannot be deleted because it contains unwanted key and value")
                }
                Some("CREATE" | "UPDATE") if data["webhook-e2e-test"] == "webhook-disallow" => {
                    deny_reason(uid, "the configmap contains unwanted key and value")
                }
                _ => allow(uid),
            }
        }
        "/mutating-configmaps" | "/mutating-custom-resource" => mutate_data(uid, &req["object"]["data"]),
        "/custom-resource" => {
            let data = &object(req)["data"];
            match req["operation"].as_str() {
                Some("DELETE") if data["webhook-e2e-test"] == "webhook-nondeletable" => {
                    deny_reason(uid, "the custom resource cannot be deleted because it contains unwanted key and value")
                }
                Some("CREATE" | "UPDATE") if data["webhook-e2e-test"] == "webhook-disallow" => {
                    deny_reason(uid, "the custom resource contains unwanted data")
                }
                _ => allow(uid),
            }
        }
        "/crd" => {
            if req["object"]["metadata"]["labels"]["webhook-e2e-test"] == "webhook-disallow" {
                deny_reason(uid, "the crd contains unwanted label")
            } else {
                allow(uid)
            }
        }
        _ => return None,
    })
}

/// `crd-conversion-webhook`'s converter for `stable.example.com` (upstream's CRD conversion e2e test): v1 has a
/// top-level `hostPort` "host:port", v2 `host` and `port`; an object of another group is an error.
pub fn conversion_response(review: &Value) -> Value {
    let req = &review["request"];
    let uid = &req["uid"];
    let desired = req["desiredAPIVersion"].as_str().unwrap_or_default();
    let mut converted = Vec::new();
    for obj in req["objects"].as_array().into_iter().flatten() {
        let from = obj["apiVersion"].as_str().unwrap_or_default();
        if from == desired {
            return json!({"uid": uid, "result": {"status": "Failure", "message": format!("conversion from a version to itself should not call the webhook: {from}")}});
        }
        let mut out = obj.clone();
        match (from, desired) {
            ("stable.example.com/v1", "stable.example.com/v2") => {
                if let Some(hp) = out.as_object_mut().and_then(|o| o.remove("hostPort")) {
                    let hp = hp.as_str().unwrap_or_default().to_string();
                    let Some((host, port)) = hp.split_once(':').filter(|(_, p)| !p.contains(':')) else {
                        return json!({"uid": uid, "result": {"status": "Failure", "message": format!("invalid hostPort value `{hp}`")}});
                    };
                    out["host"] = json!(host);
                    out["port"] = json!(port);
                }
            }
            ("stable.example.com/v2", "stable.example.com/v1") => {
                let host = out.as_object_mut().and_then(|o| o.remove("host"));
                let port = out.as_object_mut().and_then(|o| o.remove("port"));
                if let (Some(h), Some(p)) = (host, port) {
                    out["hostPort"] =
                        json!(format!("{}:{}", h.as_str().unwrap_or_default(), p.as_str().unwrap_or_default()));
                }
            }
            _ => {
                return json!({"uid": uid, "result": {"status": "Failure", "message": format!("unexpected conversion version {from:?} -> {desired:?}")}});
            }
        }
        out["apiVersion"] = json!(desired);
        converted.push(out);
    }
    json!({"uid": uid, "result": {"status": "Success"}, "convertedObjects": converted})
}

/// The HTTP answer (status, body) to one request of `cmd`.
async fn answer(cmd: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    if path == "/readyz" {
        return (200, b"ok".to_vec());
    }
    let Ok(review) = serde_json::from_slice::<Value>(body) else {
        return (400, b"could not decode the request body\n".to_vec());
    };
    let kind = review["kind"].as_str().unwrap_or_default().to_string();
    let response = match (cmd, path) {
        ("crd-conversion-webhook", "/crdconvert") => conversion_response(&review),
        ("webhook", p) => {
            if p == "/always-allow-delay-5s" {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            match admission_response(p, &review) {
                Some(r) => r,
                None => return (404, b"404 page not found\n".to_vec()),
            }
        }
        _ => return (404, b"404 page not found\n".to_vec()),
    };
    let out = json!({"apiVersion": review["apiVersion"], "kind": kind, "response": response});
    (200, serde_json::to_vec(&out).unwrap_or_default())
}

/// Serves `cmd` on every address at its port until the process ends.
pub async fn serve(cmd: Command) -> Result<(), String> {
    use http_body_util::BodyExt;
    let tls = kube_apiserver::pki::server_config(&cmd.cert, &cmd.key, None).map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let addr = SocketAddr::from(([0, 0, 0, 0], cmd.port));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("listening on {addr}: {e}"))?;
    eprintln!("agnhost {}: serving on {addr}", cmd.name);
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let acceptor = acceptor.clone();
        let name = cmd.name.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else { return };
            let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let name = name.clone();
                async move {
                    let path = req.uri().path().to_string();
                    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let (code, out) = answer(&name, &path, &body).await;
                    let mut resp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(out)));
                    *resp.status_mut() = hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::OK);
                    resp.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(op: &str, object: Value) -> Value {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u1", "operation": op, "object": object, "oldObject": object}})
    }

    fn patched(r: &Value) -> Value {
        let p = base64::engine::general_purpose::STANDARD.decode(r["patch"].as_str().unwrap()).unwrap();
        serde_json::from_slice(&p).unwrap()
    }

    #[test]
    fn command_lines_of_upstreams_manifests() {
        let args: Vec<String> = [
            "webhook",
            "--tls-cert-file=/c/tls.crt",
            "--tls-private-key-file",
            "/c/tls.key",
            "--alsologtostderr",
            "-v=4",
            "--port=8444",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            parse(&args).unwrap(),
            Command { name: "webhook".into(), cert: "/c/tls.crt".into(), key: "/c/tls.key".into(), port: 8444 }
        );
        assert!(parse(&["netexec".to_string()]).is_err());
        assert!(parse(&["webhook".to_string()]).unwrap_err().contains("--tls-cert-file"));
    }

    #[test]
    fn admission_answers_as_agnhost() {
        let cm = |data: Value| json!({"metadata": {"name": "c"}, "data": data});
        let r =
            admission_response("/configmaps", &review("CREATE", cm(json!({"webhook-e2e-test": "webhook-disallow"}))))
                .unwrap();
        assert_eq!(
            (r["allowed"].clone(), r["status"]["reason"].clone()),
            (json!(false), json!("the configmap contains unwanted key and value"))
        );
        let r = admission_response(
            "/configmaps",
            &review("DELETE", cm(json!({"webhook-e2e-test": "webhook-nondeletable"}))),
        )
        .unwrap();
        assert_eq!(r["allowed"], false);
        assert_eq!(
            admission_response("/configmaps", &review("CREATE", cm(json!({"a": "b"})))).unwrap()["allowed"],
            true
        );
        let r = admission_response("/mutating-configmaps", &review("CREATE", cm(json!({"mutation-start": "yes"}))))
            .unwrap();
        assert_eq!(patched(&r), json!([{"op": "add", "path": "/data/mutation-stage-1", "value": "yes"}]));
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "webhook-disallow"}]}});
        let r = admission_response("/pods", &review("CREATE", pod)).unwrap();
        assert_eq!(r["status"]["message"], "the pod contains unwanted container name;");
        let r = admission_response("/add-label", &review("CREATE", json!({"metadata": {"name": "x"}}))).unwrap();
        assert_eq!(patched(&r), json!([{"op": "add", "path": "/metadata/labels", "value": {"added-label": "yes"}}]));
        let r = admission_response(
            "/mutating-pods",
            &review("CREATE", json!({"metadata": {"name": "webhook-to-be-mutated"}})),
        )
        .unwrap();
        assert_eq!(patched(&r)[0]["value"][0]["name"], "webhook-added-init-container");
        assert!(admission_response("/nope", &review("CREATE", json!({}))).is_none());
    }

    #[test]
    fn conversion_as_the_crd_conversion_webhook() {
        let r = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview", "request": {"uid": "u",
            "desiredAPIVersion": "stable.example.com/v2",
            "objects": [{"apiVersion": "stable.example.com/v1", "kind": "E2e", "metadata": {"name": "a"}, "hostPort": "localhost:7070"}]}});
        let out = conversion_response(&r);
        assert_eq!(out["result"]["status"], "Success");
        let o = &out["convertedObjects"][0];
        assert_eq!(
            (o["apiVersion"].as_str(), o["host"].as_str(), o["port"].as_str()),
            (Some("stable.example.com/v2"), Some("localhost"), Some("7070"))
        );
        assert!(o.get("hostPort").is_none());
        let back = json!({"request": {"uid": "u", "desiredAPIVersion": "stable.example.com/v1", "objects": [o]}});
        assert_eq!(conversion_response(&back)["convertedObjects"][0]["hostPort"], "localhost:7070");
        let bad = json!({"request": {"uid": "u", "desiredAPIVersion": "stable.example.com/v2",
            "objects": [{"apiVersion": "stable.example.com/v1", "hostPort": "nope"}]}});
        assert_eq!(conversion_response(&bad)["result"]["status"], "Failure");
    }
}
