//! An admission webhook server for tests and benchmarks, on 127.0.0.1 (upstream's `webhook/testing/
//! webhook_server.go`): HTTPS with a serving certificate from its own CA, one behaviour per path (`/allow`,
//! `/disallow`, `/disallowReason`, `/shouldNotBeCalled`, `/internalErr`, `/nilResponse`, `/addLabel`,
//! `/removeLabel`, `/invalidMutation`, `/noop`, `/warn`, `/slow`, `/denySpecificAttachment`, `/scaleToTwo`), answering in the AdmissionReview version it was
//! asked in and recording every call; and a CRD conversion webhook (`/convert`, the converter of upstream's
//! conversion e2e test: `spec.hostPort` "host:port" in v1, `spec.host` and `spec.port` in v2; `/convertFail`
//! answers a failed review).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

/// One call the server received: its path and the AdmissionReview request.
#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub review: Value,
}

/// A running webhook server; it stops when dropped.
pub struct WebhookServer {
    pub port: u16,
    /// PEM of the CA that signed the serving certificate.
    pub ca_pem: String,
    calls: Arc<Mutex<Vec<Call>>>,
    down: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(path: &str, review: &Value) -> Option<Value> {
    let uid = review.pointer("/request/uid").cloned().unwrap_or(Value::Null);
    let allowed = |extra: Value| {
        let mut r = json!({"uid": uid, "allowed": true});
        if let (Some(r), Some(extra)) = (r.as_object_mut(), extra.as_object()) {
            r.extend(extra.clone());
        }
        r
    };
    let patch = |p: &str| {
        allowed(json!({"patchType": "JSONPatch", "patch": base64::engine::general_purpose::STANDARD.encode(p)}))
    };
    let denied = |status: Value| json!({"uid": uid, "allowed": false, "status": status});
    Some(match path {
        "/allow" => allowed(json!({"auditAnnotations": {"key1": "value1"}})),
        "/noop" => allowed(json!({})),
        "/warn" => allowed(json!({"warnings": ["a warning from the webhook", "another one"]})),
        "/disallow" => denied(json!({"code": 403})),
        "/disallowReason" => denied(json!({"message": "you shall not pass", "code": 403})),
        "/shouldNotBeCalled" => {
            denied(json!({"message": "doesn't expect labels to match object selector", "code": 403}))
        }
        "/removeLabel" => patch(r#"[{"op": "remove", "path": "/metadata/labels/remove"}]"#),
        "/addLabel" => patch(r#"[{"op": "add", "path": "/metadata/labels/added", "value": "test"}]"#),
        "/scaleToTwo" => patch(r#"[{"op": "replace", "path": "/spec/replicas", "value": 2}]"#),
        "/invalidMutation" => patch(r#"[{"op": "add", "CORRUPTED_KEY":}]"#),
        "/denySpecificAttachment" => return Some(deny_specific_attachment(review, uid)),
        _ => return None,
    })
}

/// agnhost's `denySpecificAttachment`: attaching to `to-be-attached-pod`'s `container1` with stdin is refused;
/// a review that is not a CONNECT of `pods/attach` with a `PodAttachOptions` object is an error answer.
pub fn deny_specific_attachment(review: &Value, uid: Value) -> Value {
    let req = &review["request"];
    let allowed = json!({"uid": uid, "allowed": true});
    if req["name"] != "to-be-attached-pod" {
        return allowed;
    }
    let error = |m: String| json!({"uid": uid, "allowed": false, "status": {"message": m}});
    if req["resource"] != json!({"group": "", "version": "v1", "resource": "pods"}) {
        return error(format!("expect resource to be pods, got {}", req["resource"]));
    }
    if req["subResource"] != "attach" {
        return error(format!("expect subresource to be attach, got {}", req["subResource"]));
    }
    let opts = &req["object"];
    if (opts["apiVersion"].as_str(), opts["kind"].as_str()) != (Some("v1"), Some("PodAttachOptions")) {
        return error(format!("couldn't decode PodAttachOptions from {opts}"));
    }
    if opts["stdin"] != true || opts["container"] != "container1" {
        return allowed;
    }
    json!({"uid": uid, "allowed": false, "status": {"message": "attaching to pod 'to-be-attached-pod' is not allowed"}})
}

/// A ConversionReview's response: v1 `spec.hostPort` <-> v2 `spec.host` + `spec.port`.
pub fn convert_answer(review: &Value, fail: bool) -> Value {
    let uid = review.pointer("/request/uid").cloned().unwrap_or(Value::Null);
    if fail {
        return json!({"uid": uid, "result": {"status": "Failure", "message": "the converter refuses"}});
    }
    let desired = review.pointer("/request/desiredAPIVersion").and_then(Value::as_str).unwrap_or_default();
    let objects = review.pointer("/request/objects").and_then(Value::as_array).cloned().unwrap_or_default();
    let converted: Vec<Value> = objects
        .into_iter()
        .map(|mut o| {
            let spec = o["spec"].as_object_mut().cloned().unwrap_or_default();
            let mut out = serde_json::Map::new();
            for (k, v) in spec {
                match (k.as_str(), desired.ends_with("/v2")) {
                    ("hostPort", true) => {
                        let hp = v.as_str().unwrap_or_default();
                        let (host, port) = hp.split_once(':').unwrap_or((hp, ""));
                        out.insert("host".into(), json!(host));
                        out.insert("port".into(), json!(port));
                    }
                    ("host" | "port", false) => {}
                    _ => {
                        out.insert(k, v);
                    }
                }
            }
            if !desired.ends_with("/v2") && o["spec"].get("host").is_some() {
                let host = o["spec"]["host"].as_str().unwrap_or_default();
                let port = o["spec"]["port"].as_str().unwrap_or_default();
                out.insert("hostPort".into(), json!(format!("{host}:{port}")));
            }
            o["spec"] = Value::Object(out);
            o["apiVersion"] = json!(desired);
            o
        })
        .collect();
    json!({"uid": uid, "result": {"status": "Success"}, "convertedObjects": converted})
}

async fn serve(
    req: hyper::Request<hyper::body::Incoming>,
    calls: Arc<Mutex<Vec<Call>>>,
) -> hyper::Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    calls.lock().unwrap_or_else(|p| p.into_inner()).push(Call { path: path.clone(), review: review.clone() });
    let respond = |code: u16, body: Vec<u8>, ct: &str| {
        let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::OK);
        if let Ok(v) = http::HeaderValue::from_str(ct) {
            r.headers_mut().insert(http::header::CONTENT_TYPE, v);
        }
        r
    };
    let api_version = review["apiVersion"].as_str().unwrap_or("admission.k8s.io/v1").to_string();
    let review_of = |response: Option<Value>| {
        let mut r = json!({"apiVersion": api_version, "kind": "AdmissionReview"});
        if let Some(resp) = response {
            r["response"] = resp;
        }
        serde_json::to_vec(&r).unwrap_or_default()
    };
    match path.as_str() {
        "/convert" | "/convertFail" => {
            let response = convert_answer(&review, path == "/convertFail");
            let out = json!({"apiVersion": review["apiVersion"], "kind": "ConversionReview", "response": response});
            respond(200, serde_json::to_vec(&out).unwrap_or_default(), "application/json")
        }
        "/internalErr" => respond(500, b"webhook internal server error\n".to_vec(), "text/plain; charset=utf-8"),
        "/nilResponse" => respond(200, review_of(None), "application/json"),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            respond(200, review_of(answer("/allow", &review)), "application/json")
        }
        p => match answer(p, &review) {
            Some(a) => respond(200, review_of(Some(a)), "application/json"),
            None => respond(404, b"404 page not found\n".to_vec(), "text/plain; charset=utf-8"),
        },
    }
}

impl WebhookServer {
    /// Starts the server on 127.0.0.1 with a certificate for `names` (DNS names or IPs).
    pub async fn start(names: &[&str]) -> WebhookServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = crate::pki::Ca::new("webhook-ca").expect("CA");
        let pair = ca.issue("webhook", &[], names).expect("serving certificate");
        let (cert, key) = (dir.path().join("webhook.crt"), dir.path().join("webhook.key"));
        pair.write(&cert, &key).expect("certificate files");
        let tls = crate::pki::server_config(&cert, &key, None).expect("TLS configuration");
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listener");
        let port = listener.local_addr().expect("address").port();
        let calls: Arc<Mutex<Vec<Call>>> = Default::default();
        let down = Arc::new(AtomicBool::new(false));
        let (c, d) = (calls.clone(), down.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    continue; // dropped: the caller sees the connection closed
                }
                let _ = tcp.set_nodelay(true);
                let (acceptor, calls, down) = (acceptor.clone(), c.clone(), d.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else { return };
                    let svc = hyper::service::service_fn(move |req| {
                        let (calls, down) = (calls.clone(), down.clone());
                        async move {
                            if down.load(Ordering::SeqCst) {
                                // An error closes the connection without an answer.
                                return Err(std::io::Error::other("webhook server is down"));
                            }
                            Ok(serve(req, calls).await)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        WebhookServer { port, ca_pem: ca.cert_pem.clone(), calls, down, task, _dir: dir }
    }

    /// `caBundle` for a webhook configuration: the CA, base64.
    /// Puts the server behind Service `default/webhook` (port 443) and its Endpoints, as a webhook's `service`
    /// client config names it, on the apiserver `client` talks to.
    pub async fn expose(&self, client: &client::Client) -> client::Result<()> {
        let services = client.api("", "v1", "services")?.namespaced("default");
        services.create(&json!({"metadata": {"name": "webhook"}, "spec": {"ports": [{"port": 443}]}})).await?;
        let endpoints = client.api("", "v1", "endpoints")?.namespaced("default");
        endpoints
            .create(&json!({"metadata": {"name": "webhook"},
                "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": self.port}]}]}))
            .await?;
        Ok(())
    }

    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// While down, connections are closed without an answer, new and pooled ones alike.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The calls received so far, oldest first, and forgets them.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
