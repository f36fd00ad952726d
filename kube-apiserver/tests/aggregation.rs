//! API aggregation as upstream's kube-aggregator tests check it (`handler_proxy_test.go`,
//! `remote_available_controller_test.go`, `handler_apis_test.go`): an APIService routes its group-version to an
//! extension apiserver behind a Service (TLS checked against `caBundle`, the proxy client certificate presented,
//! the user passed in `X-Remote-*` headers and never the client's credentials), the `Available` condition follows
//! the backend, discovery merges the remote group, and an unavailable backend answers 503 while the rest works.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kube_apiserver::testing::TestApiserver;
use serde_json::{Value, json};

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>;

fn json_response(v: Value) -> hyper::Response<Body> {
    let mut r = hyper::Response::new(Full::new(Bytes::from(v.to_string())).boxed_unsync());
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r
}

/// A wardle-like extension apiserver: its discovery document, and an echo of what the aggregator sent.
fn backend(req: hyper::Request<hyper::body::Incoming>, client_cert: bool) -> hyper::Response<Body> {
    if req.uri().path() == "/apis/wardle.example.com/v1alpha1" {
        return json_response(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "wardle.example.com/v1alpha1",
            "resources": [{"name": "flunders", "singularName": "flunder", "namespaced": true, "kind": "Flunder", "verbs": ["get", "list"]},
                          {"name": "flunders/status", "singularName": "", "namespaced": true, "kind": "Flunder", "verbs": ["get"]}]}),
        );
    }
    if req.uri().path() == "/openapi/v3" {
        return json_response(json!({"paths": {"apis/wardle.example.com/v1alpha1":
            {"serverRelativeURL": "/openapi/v3/apis/wardle.example.com/v1alpha1?hash=F1A2"}}}));
    }
    if req.uri().path() == "/openapi/v3/apis/wardle.example.com/v1alpha1" {
        return json_response(flunder_openapi());
    }
    let header = |n: &str| -> Vec<String> {
        req.headers().get_all(n).iter().map(|v| v.to_str().unwrap_or_default().to_string()).collect()
    };
    json_response(json!({"kind": "Echo", "path": req.uri().path(), "query": req.uri().query(),
        "user": header("x-remote-user"), "groups": header("x-remote-group"),
        "authorization": header("authorization"), "impersonate": header("impersonate-user"),
        "clientCert": client_cert}))
}

/// The backend's OpenAPI v3 document: a Flunder kind and its list path.
fn flunder_openapi() -> Value {
    json!({"openapi": "3.0.0", "info": {"title": "wardle", "version": "v0"},
        "paths": {"/apis/wardle.example.com/v1alpha1/namespaces/{namespace}/flunders": {"get": {
            "operationId": "listWardleV1alpha1NamespacedFlunder", "x-kubernetes-action": "list",
            "x-kubernetes-group-version-kind": {"group": "wardle.example.com", "version": "v1alpha1", "kind": "Flunder"},
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/com.example.wardle.v1alpha1.Flunder"}}}}}}}},
        "components": {"schemas": {"com.example.wardle.v1alpha1.Flunder": {
            "type": "object", "description": "A Flunder is a wardle object.",
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                           "spec": {"type": "object", "properties": {"reference": {"type": "string", "description": "A name of another flunder."}}}},
            "x-kubernetes-group-version-kind": [{"group": "wardle.example.com", "version": "v1alpha1", "kind": "Flunder"}]}}}})
}

/// Starts the backend with a serving certificate for `api.default.svc`; `down` makes it refuse connections.
async fn start_backend(
    dir: &std::path::Path,
    front_proxy_ca: &std::path::Path,
    down: Arc<AtomicBool>,
) -> (u16, String) {
    let ca = kube_apiserver::pki::Ca::new("wardle-ca").unwrap();
    let pair = ca.issue("api", &[], &["api.default.svc"]).unwrap();
    pair.write(&dir.join("wardle.crt"), &dir.join("wardle.key")).unwrap();
    let tls =
        kube_apiserver::pki::server_config(&dir.join("wardle.crt"), &dir.join("wardle.key"), Some(front_proxy_ca))
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if down.load(Ordering::SeqCst) {
                continue;
            }
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else { return };
                let client_cert = stream.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
                let svc = hyper::service::service_fn(move |req| async move {
                    Ok::<_, std::convert::Infallible>(backend(req, client_cert))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (port, ca.cert_pem.clone())
}

async fn create(api: &TestApiserver, group: &str, plural: &str, ns: Option<&str>, obj: Value) -> Value {
    let mut a = api.client.api(group, "v1", plural).unwrap();
    if let Some(ns) = ns {
        a = a.namespaced(ns);
    }
    a.create(&obj).await.unwrap()
}

/// A group's entry in aggregated discovery (`/apis` as kubectl 1.30+ asks for it).
async fn aggregated_group(api: &TestApiserver, name: &str) -> Value {
    let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
    let resp = api.client.send_accepting(Method::GET, "/apis", accept, None).await.unwrap();
    let agg: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    agg["items"].as_array().unwrap().iter().find(|g| g["metadata"]["name"] == name).unwrap().clone()
}

async fn available(api: &TestApiserver, name: &str, want: &str) -> Value {
    let svcs = api.client.api("apiregistration.k8s.io", "v1", "apiservices").unwrap();
    let mut last = Value::Null;
    for _ in 0..200 {
        last = svcs.get(name).await.unwrap();
        let cond = last["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Available"))
            .cloned();
        if let Some(c) = cond
            && c["status"] == want
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} never Available={want}: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiservices_route_to_extension_apiservers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let front = kube_apiserver::pki::Ca::new("front-proxy-ca").unwrap();
    std::fs::write(d.join("front-proxy-ca.crt"), &front.cert_pem).unwrap();
    front.issue("front-proxy-client", &[], &[]).unwrap().write(&d.join("fp.crt"), &d.join("fp.key")).unwrap();
    let down = Arc::new(AtomicBool::new(false));
    let (port, backend_ca) = start_backend(d, &d.join("front-proxy-ca.crt"), down.clone()).await;
    let api = TestApiserver::start_with(&[
        &format!("--proxy-client-cert-file={}", d.join("fp.crt").display()),
        &format!("--proxy-client-key-file={}", d.join("fp.key").display()),
    ])
    .await;

    // The built-in group-versions have local APIServices.
    let local = available(&api, "v1.apps", "True").await;
    assert_eq!(
        (local["reason"].clone(), local["message"].clone()),
        (json!("Local"), json!("Local APIServices are always available"))
    );
    let core = api.client.api("apiregistration.k8s.io", "v1", "apiservices").unwrap().get("v1.").await.unwrap();
    // The core group's empty name is left out (`group,omitempty`), as upstream's `kubectl get apiservice v1.` shows.
    assert_eq!(core["spec"], json!({"version": "v1", "groupPriorityMinimum": 18000, "versionPriority": 1}));
    assert_eq!(core["metadata"]["labels"]["kube-aggregator.kubernetes.io/automanaged"], "onstart");

    // Invalid APIServices are refused as upstream.
    let bad = json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1.wrong"},
        "spec": {"group": "wardle.example.com", "version": "v1alpha1", "groupPriorityMinimum": 0, "versionPriority": 15}});
    let err = api.client.api("apiregistration.k8s.io", "v1", "apiservices").unwrap().create(&bad).await.unwrap_err();
    assert_eq!(err.code(), Some(422));
    let msg = err.to_string();
    assert!(msg.contains("metadata.name: Invalid value: \"v1.wrong\": must be `spec.version+\".\"+spec.group`: \"v1alpha1.wardle.example.com\""), "{msg}");
    assert!(msg.contains("spec.groupPriorityMinimum: Invalid value: 0: must be positive and less than 20000"), "{msg}");

    // A Service without a selector and its Endpoints pointing at the backend.
    create(
        &api,
        "",
        "services",
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"},
        "spec": {"ports": [{"port": 443, "targetPort": 8443}]}}),
    )
    .await;
    create(
        &api,
        "",
        "endpoints",
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "api"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": port}]}]}),
    )
    .await;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&backend_ca);
    let svcs = api.client.api("apiregistration.k8s.io", "v1", "apiservices").unwrap();
    svcs.create(&json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1alpha1.wardle.example.com"},
        "spec": {"group": "wardle.example.com", "version": "v1alpha1", "groupPriorityMinimum": 1000, "versionPriority": 15,
                 "caBundle": ca_bundle, "service": {"namespace": "default", "name": "api", "port": 443}}})).await.unwrap();
    let cond = available(&api, "v1alpha1.wardle.example.com", "True").await;
    assert_eq!((cond["reason"].clone(), cond["message"].clone()), (json!("Passed"), json!("all checks passed")));

    // Discovery lists the remote group.
    let groups = api.client.request(Method::GET, "/apis", None).await.unwrap();
    let wardle =
        groups["groups"].as_array().unwrap().iter().find(|g| g["name"] == "wardle.example.com").unwrap().clone();
    assert_eq!(wardle["preferredVersion"]["groupVersion"], "wardle.example.com/v1alpha1");
    let group = api.client.request(Method::GET, "/apis/wardle.example.com", None).await.unwrap();
    assert_eq!(group["kind"], "APIGroup");
    let w = aggregated_group(&api, "wardle.example.com").await;
    assert_eq!(w["versions"][0]["freshness"], "Current");
    assert_eq!(w["versions"][0]["resources"][0]["resource"], "flunders");
    assert_eq!(w["versions"][0]["resources"][0]["subresources"][0]["subresource"], "status");
    // The group-version's own discovery document comes from the backend.
    let list = api.client.request(Method::GET, "/apis/wardle.example.com/v1alpha1", None).await.unwrap();
    assert_eq!(list["groupVersion"], "wardle.example.com/v1alpha1");

    // OpenAPI: the backend's v3 document is listed in /openapi/v3 beside the local ones, served at its URL, and
    // merged into /openapi/v2 (upstream's aggregated OpenAPI).
    let index = api.client.request(Method::GET, "/openapi/v3", None).await.unwrap();
    let url = index["paths"]["apis/wardle.example.com/v1alpha1"]["serverRelativeURL"].as_str().unwrap().to_string();
    assert!(url.starts_with("/openapi/v3/apis/wardle.example.com/v1alpha1?hash="), "{url}");
    assert!(index["paths"].get("apis/apps/v1").is_some());
    let doc = api.client.request(Method::GET, &url, None).await.unwrap();
    assert_eq!(doc, flunder_openapi());
    let v2 = api.client.request(Method::GET, "/openapi/v2", None).await.unwrap();
    let flunder = &v2["definitions"]["com.example.wardle.v1alpha1.Flunder"];
    assert_eq!(flunder["properties"]["spec"]["properties"]["reference"]["description"], "A name of another flunder.");
    assert!(v2["paths"].get("/apis/wardle.example.com/v1alpha1/namespaces/{namespace}/flunders").is_some());
    assert!(v2["definitions"].get("io.k8s.api.apps.v1.Deployment").is_some(), "the local definitions stay");

    // Requests are proxied with the user in headers, never the client's credentials.
    let echo = api
        .client
        .request(Method::GET, "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders?limit=5", None)
        .await
        .unwrap();
    assert_eq!(echo["path"], "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders");
    assert_eq!(echo["query"], "limit=5");
    let me = api
        .client
        .request(
            Method::POST,
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            Some((
                Bytes::from(r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#),
                "application/json",
            )),
        )
        .await
        .unwrap();
    assert_eq!(echo["user"], json!([me["status"]["userInfo"]["username"]]));
    assert_eq!(echo["groups"], me["status"]["userInfo"]["groups"]);
    assert_eq!(echo["authorization"], json!([]));
    assert_eq!(echo["clientCert"], true, "the proxy client certificate is presented");

    // The backend goes away: the next check marks it unavailable, its group answers 503, the rest still works.
    down.store(true, Ordering::SeqCst);
    svcs.patch(
        "v1alpha1.wardle.example.com",
        api_types::patch::PatchType::Merge,
        &json!({"metadata": {"labels": {"poke": "1"}}}),
    )
    .await
    .unwrap();
    let cond = available(&api, "v1alpha1.wardle.example.com", "False").await;
    assert_eq!(cond["reason"], "FailedDiscoveryCheck");
    assert!(
        cond["message"].as_str().unwrap().starts_with("failing or missing response from https://127.0.0.1:"),
        "{cond}"
    );
    let resp = api
        .client
        .send_accepting(
            Method::GET,
            "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders",
            "application/json",
            None,
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "service unavailable\n");
    api.client.api("", "v1", "configmaps").unwrap().namespaced("default").list(&Default::default()).await.unwrap();
    let w = aggregated_group(&api, "wardle.example.com").await;
    assert_eq!(w["versions"][0]["freshness"], "Stale");

    // A Service that does not exist.
    svcs.create(&json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1.nope.example.com"},
        "spec": {"group": "nope.example.com", "version": "v1", "groupPriorityMinimum": 1000, "versionPriority": 15,
                 "insecureSkipTLSVerify": true, "service": {"namespace": "default", "name": "nope"}}})).await.unwrap();
    let cond = available(&api, "v1.nope.example.com", "False").await;
    assert_eq!(
        (cond["reason"].clone(), cond["message"].clone()),
        (json!("ServiceNotFound"), json!("service/nope in \"default\" is not present"))
    );
    // Deleting an APIService removes its route.
    svcs.delete("v1.nope.example.com", None).await.unwrap();
    for _ in 0..100 {
        let resp = api
            .client
            .send_accepting(Method::GET, "/apis/nope.example.com/v1", "application/json", None)
            .await
            .unwrap();
        if resp.status() == 404 {
            api.stop().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the route of a deleted APIService stays");
}
