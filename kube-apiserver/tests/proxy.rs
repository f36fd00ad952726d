//! `pods/proxy` and `services/proxy` end to end, after upstream's conformance tests in `test/e2e/network/proxy.go`
//! ("A set of valid responses are returned for both pod and service ProxyWithPath", "... Proxy", "should proxy
//! through a service and a pod"): the URL forms `name`, `name:port`, `scheme:name:port` with port numbers and
//! Service port names, every proxied method, bodies echoing method, path and query, the 301 of a bare `.../proxy`,
//! links and redirects rewritten under the proxy path, TLS backends, upstream's errors (no or loopback pod IP, no
//! endpoints, unknown port), RBAC on `pods/proxy` by HTTP method, and `kubectl get --raw`.
//!
//! The backend runs inside a network namespace this test creates, joined to the host by a veth pair on a /30 of
//! 10.253.9.0/24 or 10.253.10.0/24 (blackholed on the host meanwhile): upstream refuses to proxy to a loopback pod IP,
//! so the pod IP is the namespace's end of the pair. Needs root and `ip`; everything is removed on drop.

use std::convert::Infallible;
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use kube_apiserver::testing::TestApiserver;
use serde_json::{Value, json};

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if !out.status.success() {
        return Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

/// The backend's network: a blackhole route for the /24, a namespace and a veth pair; all removed on drop.
struct Network {
    netns: String,
    host_link: String,
    blackhole: Option<String>,
    /// The namespace's address: the pod IP.
    pod_ip: String,
}

impl Network {
    fn new(tag: &str, third_octet: u8) -> Network {
        let cidr = format!("10.253.{third_octet}.0/24");
        let blackhole = ip(&["route", "add", "blackhole", &cidr]).is_ok().then_some(cidr);
        let pid = std::process::id();
        let net = Network {
            netns: format!("kapxy{tag}{pid}"),
            host_link: format!("kpx{tag}{pid}h"),
            blackhole,
            pod_ip: format!("10.253.{third_octet}.2"),
        };
        let peer = format!("kpx{tag}{pid}n");
        let _ = ip(&["netns", "del", &net.netns]);
        let _ = ip(&["link", "del", &net.host_link]);
        let must = |args: &[&str]| ip(args).unwrap_or_else(|e| panic!("{e}"));
        must(&["netns", "add", &net.netns]);
        must(&["link", "add", &net.host_link, "type", "veth", "peer", "name", &peer]);
        must(&["link", "set", &peer, "netns", &net.netns]);
        must(&["addr", "add", &format!("10.253.{third_octet}.1/30"), "dev", &net.host_link]);
        must(&["link", "set", &net.host_link, "up"]);
        must(&["-n", &net.netns, "addr", "add", &format!("{}/30", net.pod_ip), "dev", &peer]);
        must(&["-n", &net.netns, "link", "set", &peer, "up"]);
        must(&["-n", &net.netns, "link", "set", "lo", "up"]);
        net
    }

    /// Binds a listener on the pod IP inside the namespace (a socket stays in the namespace it was made in).
    fn listen(&self, port: u16) -> tokio::net::TcpListener {
        let addr = format!("{}:{port}", self.pod_ip);
        let std_listener = kube_apiserver::testing::in_netns(&self.netns, move || {
            let l = std::net::TcpListener::bind(&addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
            l.set_nonblocking(true).unwrap();
            l
        });
        tokio::net::TcpListener::from_std(std_listener).unwrap()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.netns]);
        let _ = ip(&["link", "del", &self.host_link]);
        if let Some(cidr) = &self.blackhole {
            let _ = ip(&["route", "del", "blackhole", cidr]);
        }
    }
}

/// The backend: answers what it was asked (method, path, query, body, a few headers) as JSON; `/page.html` is an
/// HTML page with an absolute link, `/redirect` a 302 to `/target`.
async fn echo(req: Request<Incoming>, tls: bool) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let reply = match parts.uri.path() {
        "/page.html" => Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .body(Full::new(Bytes::from_static(br#"<a href="/rewriteme">test</a>"#))),
        "/redirect" => Response::builder().status(302).header("location", "/target").body(Full::new(Bytes::new())),
        path => {
            let answer = json!({
                "method": parts.method.as_str(), "path": path, "query": parts.uri.query(), "tls": tls,
                "body": String::from_utf8_lossy(&body), "xForwardedUri": header("x-forwarded-uri"),
                "xTest": header("x-test"), "authorization": header("authorization"), "host": header("host"),
            });
            Response::builder()
                .header("content-type", "application/json")
                .header("access-control-allow-origin", "*")
                .header("x-backend", "echo")
                .body(Full::new(Bytes::from(answer.to_string())))
        }
    };
    Ok(reply.unwrap())
}

/// Serves [`echo`] on the listener, over TLS when an acceptor is given.
fn serve(listener: tokio::net::TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let tls = tls.clone();
            tokio::spawn(async move {
                let is_tls = tls.is_some();
                let service = hyper::service::service_fn(move |req| echo(req, is_tls));
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            let _ = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                        }
                    }
                    None => {
                        let _ = http.serve_connection(hyper_util::rt::TokioIo::new(tcp), service).await;
                    }
                }
            });
        }
    });
}

fn acceptor(api: &TestApiserver, ip: &str) -> tokio_rustls::TlsAcceptor {
    let pair = api.ca.issue("backend", &[], &[ip]).unwrap();
    let certs = rustls_pemfile::certs(&mut pair.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
    let key = rustls_pemfile::private_key(&mut pair.key_pem.as_bytes()).unwrap().unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

const NS: &str = "proxy-e2e";

/// The cluster side: a pod `echo` at the backend (first container port 8080, TLS on 8443), pods without an IP and
/// with a loopback one, a Service `echo-svc` (ports http 80 -> 8080, tls 443 -> 8443) and a Service `single` with one
/// unnamed port, with Endpoints naming the pod; a Service `empty` with Endpoints without subsets, `none` without.
async fn objects(api: &TestApiserver, pod_ip: &str) {
    api.namespace(NS).await;
    let pods = api.client.api("", "v1", "pods").unwrap().namespaced(NS);
    let pod = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "echo"}},
               "spec": {"containers": [{"name": "c", "image": "busybox",
                        "ports": [{"name": "http-alt", "containerPort": 8080}, {"name": "https-alt", "containerPort": 8443}]}]}})
    };
    for (name, ip) in [("echo", Some(pod_ip)), ("noip", None), ("loopback", Some("127.0.0.1"))] {
        pods.create(&pod(name)).await.unwrap();
        if let Some(ip) = ip {
            let mut p = pods.get(name).await.unwrap();
            p["status"]["podIP"] = json!(ip);
            p["status"]["podIPs"] = json!([{"ip": ip}]);
            pods.replace_status(name, &p).await.unwrap();
        }
    }
    let services = api.client.api("", "v1", "services").unwrap().namespaced(NS);
    let endpoints = api.client.api("", "v1", "endpoints").unwrap().namespaced(NS);
    let target = json!({"kind": "Pod", "namespace": NS, "name": "echo"});
    for (name, ports, subsets) in [
        (
            "echo-svc",
            json!([{"name": "http", "port": 80, "targetPort": 8080}, {"name": "tls", "port": 443, "targetPort": 8443}]),
            json!([{"addresses": [{"ip": pod_ip, "targetRef": target}],
                    "ports": [{"name": "http", "port": 8080}, {"name": "tls", "port": 8443}]}]),
        ),
        (
            "single",
            json!([{"port": 80, "targetPort": 8080}]),
            json!([{"addresses": [{"ip": pod_ip, "targetRef": target}], "ports": [{"port": 8080}]}]),
        ),
        ("empty", json!([{"port": 80}]), json!([])),
        ("none", json!([{"port": 80}]), Value::Null),
    ] {
        services
            .create(&json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                            "spec": {"selector": {"app": name}, "ports": ports}}))
            .await
            .unwrap();
        if !subsets.is_null() {
            endpoints
                .create(
                    &json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name}, "subsets": subsets}),
                )
                .await
                .unwrap();
        }
    }
}

/// One request through the apiserver: status, Location, a header of the answer and the body.
struct Answer {
    status: StatusCode,
    location: Option<String>,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The message of an error Status.
    fn message(&self) -> String {
        self.json()["message"].as_str().unwrap_or_default().to_string()
    }
}

async fn call(client: &client::Client, method: Method, path: &str, body: Option<&str>) -> Answer {
    let body = body.map(|b| (Bytes::from(b.to_string()), "text/plain"));
    let resp = client.send_accepting(method, path, "*/*", body).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let location = headers.get("location").and_then(|l| l.to_str().ok()).map(str::to_string);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Answer { status, location, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
}

fn pods_path(id: &str) -> String {
    format!("/api/v1/namespaces/{NS}/pods/{id}/proxy")
}

fn services_path(id: &str) -> String {
    format!("/api/v1/namespaces/{NS}/services/{id}/proxy")
}

async fn start(tag: &str, third_octet: u8, flags: &[&str]) -> (TestApiserver, Network) {
    let api = TestApiserver::start_with(flags).await;
    let net = Network::new(tag, third_octet);
    serve(net.listen(8080), None);
    serve(net.listen(8443), Some(acceptor(&api, &net.pod_ip)));
    objects(&api, &net.pod_ip).await;
    (api, net)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_and_services_proxy_with_path() {
    let (api, net) = start("a", 9, &[]).await;
    let c = &api.client;

    // The bare `.../proxy` redirects to `.../proxy/` for GET and HEAD (upstream's proxyRedirectsforRootPath).
    for id in ["echo", "echo:8080"] {
        let a = call(c, Method::GET, &pods_path(id), None).await;
        assert_eq!(
            (a.status, a.location.as_deref()),
            (StatusCode::MOVED_PERMANENTLY, Some(&*format!("{}/", pods_path(id))))
        );
    }
    let a = call(c, Method::HEAD, &format!("{}?a=b", services_path("single")), None).await;
    assert_eq!(a.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(a.location.unwrap(), format!("{}/?a=b", services_path("single")));

    // Pods: no port means the first container port; a number picks the port; http: and https: the scheme.
    for (id, tls) in [("echo", false), ("echo:8080", false), ("http:echo:8080", false), ("https:echo:8443", true)] {
        let a = call(c, Method::GET, &format!("{}/", pods_path(id)), None).await;
        assert_eq!(a.status, StatusCode::OK, "{id}: {}", a.body);
        let j = a.json();
        assert_eq!(
            (j["method"].as_str(), j["path"].as_str(), j["tls"].as_bool()),
            (Some("GET"), Some("/"), Some(tls)),
            "{id}"
        );
        assert_eq!(j["xForwardedUri"], format!("{}/", pods_path(id)));
    }
    // Services: by port name, by port number (its name), the only unnamed port; https: for the TLS port.
    for (id, tls) in [
        ("echo-svc:http", false),
        ("http:echo-svc:80", false),
        ("single", false),
        ("single:80", false),
        ("https:echo-svc:tls", true),
        ("https:echo-svc:443", true),
    ] {
        let a = call(c, Method::GET, &format!("{}/some/path?x=1&y=2", services_path(id)), None).await;
        assert_eq!(a.status, StatusCode::OK, "{id}: {}", a.body);
        let j = a.json();
        assert_eq!(
            (j["path"].as_str(), j["query"].as_str(), j["tls"].as_bool()),
            (Some("/some/path"), Some("x=1&y=2"), Some(tls)),
            "{id}"
        );
    }

    // ProxyWithPath: every proxied method reaches the backend with its path, body and headers; HEAD answers no body.
    for base in [pods_path("echo"), services_path("single")] {
        for verb in ["DELETE", "OPTIONS", "PATCH", "POST", "PUT", "GET"] {
            let path = format!("{base}/some/path/with/{verb}");
            let a = call(c, Method::from_bytes(verb.as_bytes()).unwrap(), &path, Some("payload")).await;
            assert_eq!(a.status, StatusCode::OK, "{verb} {path}: {}", a.body);
            let j = a.json();
            assert_eq!(j["method"], verb);
            assert_eq!(j["path"], format!("/some/path/with/{verb}"));
            if verb != "GET" {
                assert_eq!(j["body"], "payload", "{verb}");
            }
        }
        let a = call(c, Method::HEAD, &format!("{base}/x"), None).await;
        assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, ""));
        // "... Proxy": the bare `.../proxy?method=VERB` is no redirect for these methods: the backend's `/`.
        for verb in ["DELETE", "OPTIONS", "PATCH", "POST", "PUT"] {
            let a = call(c, Method::from_bytes(verb.as_bytes()).unwrap(), &format!("{base}?method={verb}"), None).await;
            let j = a.json();
            assert_eq!((j["method"].as_str(), j["path"].as_str()), (Some(verb), Some("/")));
            assert_eq!(j["query"], format!("method={verb}"));
        }
    }
    // The trailing slash is kept; the client's credentials are not passed on; CORS headers are dropped, others kept.
    let a = call(c, Method::GET, &format!("{}/a/b/", pods_path("echo:8080")), None).await;
    let j = a.json();
    assert_eq!(j["path"], "/a/b/");
    assert_eq!(j["authorization"], Value::Null);
    assert_eq!(j["host"], c_host(&api), "Go's reverse proxy keeps the Host asked for");
    assert_eq!(a.headers.get("x-backend").unwrap(), "echo");
    assert!(a.headers.get("access-control-allow-origin").is_none(), "CORS headers are removed");

    // "should proxy through a service and a pod": links in HTML pages and redirects go through the proxy.
    let a = call(c, Method::GET, &format!("{}/page.html", pods_path("echo:8080")), None).await;
    assert_eq!(a.body, format!(r#"<a href="{}/rewriteme">test</a>"#, pods_path("echo:8080")));
    let a = call(c, Method::GET, &format!("{}/page.html", services_path("http:echo-svc:http")), None).await;
    assert_eq!(a.body, format!(r#"<a href="{}/rewriteme">test</a>"#, services_path("http:echo-svc:http")));
    let a = call(c, Method::GET, &format!("{}/redirect", pods_path("echo")), None).await;
    assert_eq!((a.status.as_u16(), a.location.unwrap()), (302, format!("{}/target", pods_path("echo"))));

    // Upstream's errors.
    let cases: Vec<(String, u16, String)> = vec![
        (pods_path("missing"), 404, "pods \"missing\" not found".into()),
        (pods_path("a:b:c:d"), 400, "invalid pod request \"a:b:c:d\"".into()),
        (pods_path("ftp:echo:80"), 400, "invalid pod request \"ftp:echo:80\"".into()),
        (pods_path("noip"), 400, "address not allowed".into()),
        (pods_path("loopback:8080"), 400, "address not allowed".into()),
        (services_path("none"), 404, "endpoints \"none\" not found".into()),
        (services_path("empty"), 503, "no endpoints available for service \"empty\"".into()),
        (services_path("echo-svc:81"), 503, "no service port 81 found for service \"echo-svc\"".into()),
        (services_path("echo-svc:nope"), 503, "no endpoints available for service \"echo-svc:nope\"".into()),
        (services_path("echo-svc"), 503, "no endpoints available for service \"echo-svc\"".into()),
        (services_path("missing:80"), 404, "services \"missing\" not found".into()),
        (
            pods_path("echo:dest1"),
            503,
            "error trying to reach service: dial tcp: lookup tcp/dest1: unknown port".into(),
        ),
    ];
    for (path, code, message) in cases {
        let a = call(c, Method::GET, &format!("{path}/"), None).await;
        assert_eq!((a.status.as_u16(), a.message()), (code, message), "{path}");
    }
    let refused = call(c, Method::GET, &format!("{}/", pods_path("echo:9")), None).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        refused.message().starts_with(&format!("error trying to reach service: dial tcp {}:9: ", net.pod_ip)),
        "{}",
        refused.body
    );

    // The real kubectl reads through both.
    let k = kubectl(&api);
    let out = k(&["get", "--raw", &format!("{}/hello?q=1", pods_path("echo:8080"))]);
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((j["path"].as_str(), j["query"].as_str()), (Some("/hello"), Some("q=1")));
    let out = k(&["get", "--raw", &format!("{}/svc", services_path("echo-svc:http"))]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["path"], "/svc");
    drop(net);
}

/// The Host the client sends (`127.0.0.1:<port>`).
fn c_host(api: &TestApiserver) -> String {
    api.config.server.trim_start_matches("https://").to_string()
}

/// Runs `/usr/bin/kubectl` with the admin's kubeconfig; its stdout.
fn kubectl(api: &TestApiserver) -> impl Fn(&[&str]) -> String {
    use base64::Engine;
    let b64 = |b: &Option<Vec<u8>>| base64::engine::general_purpose::STANDARD.encode(b.as_deref().unwrap_or_default());
    let c = &api.config;
    let dir = api.dir.path().to_path_buf();
    let kubeconfig = dir.join("admin.conf");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: a\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: t\n  context: {{cluster: t, user: a}}\ncurrent-context: t\n",
            c.server,
            b64(&c.ca_pem),
            b64(&c.client_cert_pem),
            b64(&c.client_key_pem)
        ),
    )
    .unwrap();
    move |args: &[&str]| {
        let out = Command::new("/usr/bin/kubectl")
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", &dir)
            .output()
            .expect("kubectl");
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_verbs_are_authorized_by_http_method() {
    let (api, net) = start("b", 10, &["--authorization-mode=RBAC"]).await;
    // alice may get pods/proxy in the namespace, nothing else.
    let roles = api.client.api("rbac.authorization.k8s.io", "v1", "roles").unwrap().namespaced(NS);
    roles
        .create(
            &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "proxy-get"},
                        "rules": [{"apiGroups": [""], "resources": ["pods/proxy"], "verbs": ["get"]}]}),
        )
        .await
        .unwrap();
    let bindings = api.client.api("rbac.authorization.k8s.io", "v1", "rolebindings").unwrap().namespaced(NS);
    bindings
        .create(
            &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "alice"},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "proxy-get"},
                        "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]}),
        )
        .await
        .unwrap();
    let cert = api.ca.issue("alice", &[], &[]).unwrap();
    let config = client::Config {
        client_cert_pem: Some(cert.cert_pem.into_bytes()),
        client_key_pem: Some(cert.key_pem.into_bytes()),
        ..api.config.clone()
    };
    let alice = client::Client::new(&config).unwrap();
    let path = format!("{}/x", pods_path("echo:8080"));
    // RBAC is fed by a watch: wait for the binding to take effect.
    let mut ok = call(&alice, Method::GET, &path, None).await;
    for _ in 0..100 {
        if ok.status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        ok = call(&alice, Method::GET, &path, None).await;
    }
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(call(&alice, Method::HEAD, &path, None).await.status, StatusCode::OK, "HEAD is get");
    for (method, verb) in
        [(Method::POST, "create"), (Method::PUT, "update"), (Method::PATCH, "patch"), (Method::DELETE, "delete")]
    {
        let a = call(&alice, method, &path, Some("x")).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{verb}");
        assert_eq!(
            a.message(),
            format!(
                "pods \"echo:8080\" is forbidden: User \"alice\" cannot {verb} resource \"pods/proxy\" in API group \"\" in the namespace \"{NS}\""
            )
        );
    }
    let a = call(&alice, Method::GET, &format!("{}/", services_path("single")), None).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.message().contains("cannot get resource \"services/proxy\""), "{}", a.body);
    drop(net);
}
